# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The connection options every enva.pve module that talks to the PVE API shares."""

    DOCUMENTATION = r"""
options:
  api_host:
    description:
      - Host name or address of a Proxmox VE node that serves the API (any node of the cluster).
      - Read from E(PROXMOX_HOST) when not given.
    type: str
    required: true
  api_port:
    description:
      - TCP port of the PVE API.
      - Read from E(PROXMOX_PORT) when not given.
    type: int
    default: 8006
  api_user:
    description:
      - The PVE user, with its realm (V(root@pam), V(enva@pve)).
      - For an API token this is the token's owner; the token itself is O(api_token_id).
      - Read from E(PROXMOX_USER) when not given.
    type: str
    required: true
  api_password:
    description:
      - Password of O(api_user); the module logs in for a ticket and sends the CSRF token with every write.
      - Read from E(PROXMOX_PASSWORD) when not given.
      - Give this or O(api_token_id) and O(api_token_secret); when both are given the token is used.
    type: str
  api_token_id:
    description:
      - The ID of an API token of O(api_user), without the user (V(ansible) for V(enva@pve!ansible)).
      - Read from E(PROXMOX_TOKEN_ID) when not given.
    type: str
  api_token_secret:
    description:
      - The secret of the API token O(api_token_id), as C(pveum user token add) printed it.
      - Read from E(PROXMOX_TOKEN_SECRET) when not given.
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of the PVE API.
      - PVE nodes use a certificate signed by the cluster's own CA (C(/etc/pve/pve-root-ca.pem)); give that CA
        as O(ca_path) instead of turning this off.
      - Read from E(PROXMOX_VALIDATE_CERTS) when not given.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA (or CA bundle) that signed the PVE API's certificate, used when O(validate_certs=true).
      - Omitted means the system's CA bundle.
      - Read from E(PROXMOX_CA_PATH) when not given.
    type: path
  api_timeout:
    description:
      - Seconds to wait for the PVE API to connect and to answer each request.
      - Read from E(PROXMOX_API_TIMEOUT) when not given.
    type: int
    default: 5
requirements:
  - proxmoxer >= 2.0
  - requests
notes:
  - The API user needs only the privileges the module names; a privilege-separated API token needs them granted
    to the token as well as to its user.
  - Secrets (O(api_password), O(api_token_secret), the login ticket and CSRF token) are kept out of the task's
    output and logs.
"""
