#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pve_permissions
short_description: Check that the PVE API user or token holds the privileges a job needs, before it starts
version_added: "1.0.0"
description:
  - Reads the caller's effective privileges (C(GET /access/permissions)) on each path of O(privileges) and
    fails, naming every missing privilege and its path, when one is missing; a preflight that a play runs
    before its first change, so that a token without C(VM.Config.Memory) fails there and not half way.
  - The effective privileges are PVE's own computation, so a privilege-separated token is seen as it is
    (only what both the token and its user are granted).
  - The module only reads; it changes nothing.
author:
  - enva.pve developers (@enva)
options:
  privileges:
    description:
      - "The privileges each ACL path must grant: a mapping of path to a list of privilege names, such as
        C(/vms/2017: [VM.Audit, VM.Config.Memory]) and C(/nodes/node1: [Sys.Audit])."
    type: dict
    required: true
  fail_on_missing:
    description:
      - Fail when a privilege is missing (the default); with V(false), report RV(missing) and go on.
    type: bool
    default: true
extends_documentation_fragment:
  - enva.pve.pve
  - enva.pve.attributes
  - enva.pve.attributes.read_only
notes:
  - Every user and token may read its own permissions; no privilege is needed for this call.
seealso:
  - module: enva.pve.lxc_memory
  - name: Proxmox VE API, access permissions
    description: The endpoint this module reads.
    link: https://pve.proxmox.com/pve-docs/api-viewer/#/access/permissions
"""

EXAMPLES = r"""
- name: The token can change CT 2017's memory and read the nodes
  enva.pve.pve_permissions:
    privileges:
      /vms/2017: [VM.Audit, VM.Config.Memory]
      /nodes/node1: [Sys.Audit]
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
permissions:
  description: The privileges held on each path asked for.
  returned: always
  type: dict
  sample: {"/vms/2017": [VM.Audit, VM.Config.Memory], "/nodes/node1": [Sys.Audit]}
missing:
  description: The privileges missing on each path (empty when none is).
  returned: always
  type: dict
  sample: {"/vms/2017": [VM.Config.Memory]}
"""

from ansible_collections.enva.pve.plugins.module_utils.pve_client import PveApiError, connect, pve_module


def missing_privileges(wanted, held):
    """``{path: [privilege]}`` of what ``wanted`` asks that ``held`` (``{path: [privilege]}``) lacks."""
    missing = {}
    for path, privileges in wanted.items():
        lacking = sorted(set(privileges) - set(held.get(path, ())))
        if lacking:
            missing[path] = lacking
    return missing


def missing_message(who, missing, user):
    """What to tell the operator: every missing privilege, and the pveum line that grants it."""
    parts = ["%s on %s" % (", ".join(privileges), path) for path, privileges in sorted(missing.items())]
    text = "The %s lacks %s (PVE: GET /access/permissions)." % (who, "; ".join(parts))
    if "!" in user:
        username = user.split("!", 1)[0]
        text += (" A privilege-separated token holds only what both it and its user are granted: grant both, e.g."
                 " pveum acl modify %s --roles ROLE --users %s --tokens '%s'" % (
                     sorted(missing)[0], username, user))
    return text


def main():
    module = pve_module(
        dict(privileges=dict(type="dict", required=True), fail_on_missing=dict(type="bool", default=True)))
    wanted = {}
    for path, privileges in module.params["privileges"].items():
        if not str(path).startswith("/"):
            module.fail_json(msg="privileges: %r is not an ACL path (they start with /, e.g. /vms/2017)" % path)
        if isinstance(privileges, str):
            privileges = [privileges]
        if not isinstance(privileges, list) or not all(isinstance(item, str) for item in privileges):
            module.fail_json(msg="privileges: %s must map to a list of privilege names, not %r" % (path, privileges))
        wanted[str(path)] = privileges
    api = connect(module)
    held = {}
    try:
        for path in sorted(wanted):
            answer = api.get("access/permissions", "read the permissions on %s" % path, path=path) or {}
            held[path] = sorted(answer.get(path, {}))
    except PveApiError as error:
        module.fail_json(msg=str(error), kind=error.kind, status=error.status)
    missing = missing_privileges(wanted, held)
    result = dict(changed=False, permissions=held, missing=missing)
    user = module.params["api_user"]
    if module.params.get("api_token_id"):
        user += "!%s" % module.params["api_token_id"]
    if missing and module.params["fail_on_missing"]:
        who = ("PVE API token %s" % user) if "!" in user else ("PVE user %s" % user)
        module.fail_json(msg=missing_message(who, missing, user), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
