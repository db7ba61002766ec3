#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lxc_memory_info
short_description: Read the memory and swap of a Proxmox VE LXC container through the PVE API
version_added: "1.1.0"
description:
  - Reads the CT's configuration (C(GET /nodes/{node}/lxc/{vmid}/config)) and C(status/current), that is its memory
    and swap as configured, the limits the running CT has now and what it uses, pending changes, the
    configuration's C(digest), and the CT's hostname and network interfaces.
  - What M(enva.pve.lxc_memory) would start from, without asking for a size; pass RV(digest) to
    M(enva.pve.lxc_memory) so that a change made by someone else in between is refused.
  - The module only reads; it changes nothing.
author:
  - enva.pve developers (@enva)
options: {}
extends_documentation_fragment:
  - enva.pve.lxc_ct
  - enva.pve.pve
  - enva.pve.attributes
  - enva.pve.attributes.read_only
notes:
  - Needs C(VM.Audit) on C(/vms/VMID).
  - "A CT config without C(memory) or C(swap) has PVE's defaults: 512 MiB each."
seealso:
  - module: enva.pve.lxc_memory
  - name: Proxmox VE API, LXC config
    description: The endpoint this module reads.
    link: https://pve.proxmox.com/pve-docs/api-viewer/#/nodes/{node}/lxc/{vmid}/config
"""

EXAMPLES = r"""
- name: Read CT 2017's memory and swap
  enva.pve.lxc_memory_info:
    api_host: node1.example.org
    api_user: enva@pve
    api_token_id: audit
    api_token_secret: "{{ vault_pve_token_secret }}"
    ca_path: /etc/ssl/pve-root-ca.pem
    vmid: 2017
  register: ct

- name: Raise it to 2 GiB only if it has less, refused if its config changed since it was read
  enva.pve.lxc_memory:
    vmid: "{{ ct.vmid }}"
    node: "{{ ct.node }}"
    memory: "{{ 2048 | enva.pve.memory_target(ct.memory) }}"
    digest: "{{ ct.digest }}"
"""

RETURN = r"""
vmid:
  description: The CT's VMID.
  returned: always
  type: int
  sample: 2017
node:
  description: The node the CT is on.
  returned: always
  type: str
  sample: node1
status:
  description: Whether the CT runs (C(running)) or not (C(stopped)).
  returned: always
  type: str
  sample: running
memory:
  description: The CT's memory in MiB as configured (PVE's default 512 where the config has none).
  returned: always
  type: int
  sample: 1024
swap:
  description: The CT's swap in MiB as configured (PVE's default 512 where the config has none).
  returned: always
  type: int
  sample: 1024
live:
  description:
    - What the running CT has now, from C(status/current), as RV(enva.pve.lxc_memory#module:live) returns
      it (limits C(maxmem) and C(maxswap), use C(mem), in MiB); None for a stopped CT.
  returned: always
  type: dict
  sample: {"maxmem": 1024, "maxswap": 1024, "mem": 212}
pending:
  description:
    - Pending memory and swap (MiB) that PVE applies at the CT's next start, as in
      RV(enva.pve.lxc_memory#module:pending).
  returned: always
  type: dict
  sample: {}
digest:
  description: The digest of the CT's configuration, for O(enva.pve.lxc_memory#module:digest).
  returned: always
  type: str
  sample: 5e1b4a4ad4b2c3c1b1f5f1d4c1b1a0c9d8e7f6a5
ct:
  description:
    - The hostname and C(netN) interfaces of the CT's PVE config, as RV(enva.pve.lxc_memory#module:ct) returns
      them (what a play checks it reached the right CT by).
  returned: always
  type: dict
  sample: {hostname: haproxy, interfaces: [{key: net0, name: eth0, hwaddr: "BC:24:11:5E:0A:17", bridge: vmbr0,
           ip: 192.0.2.17/24, address: 192.0.2.17}]}
"""

from ansible_collections.enva.pve.plugins.module_utils.lxc_ct import (
    KEYS, Refusal, config_sizes, ct_identity, live_sizes, locate)
from ansible_collections.enva.pve.plugins.module_utils.pve_client import PveApiError, connect, pve_module


def read(api, vmid, hostname, node):
    """The CT's sizes, limits, digest and identity (the module's result)."""
    vmid, node = locate(api, vmid, hostname, node)
    base = "nodes/%s/lxc/%d" % (node, vmid)
    where = "CT %d on node %s" % (vmid, node)
    config = api.get(base + "/config", "read the config of %s" % where, current=1)
    status = api.get(base + "/status/current", "read status/current of %s" % where)
    pending_items = api.get(base + "/pending", "read the pending changes of %s" % where)
    running = status.get("status") == "running"
    result = {"vmid": vmid, "node": node, "status": status.get("status"), "digest": config["digest"],
              "live": live_sizes(status) if running else None, "ct": ct_identity(config), "changed": False,
              "pending": dict((item["key"], int(item["pending"])) for item in pending_items
                              if item.get("key") in KEYS and "pending" in item)}
    result.update(config_sizes(config))
    return result


def main():
    module = pve_module(
        argument_spec=dict(
            vmid=dict(type="int"),
            hostname=dict(type="str"),
            node=dict(type="str"),
        ),
        required_one_of=[("vmid", "hostname")],
        mutually_exclusive=[("vmid", "hostname")],
    )
    api = connect(module)
    try:
        result = read(api, module.params["vmid"], module.params["hostname"], module.params["node"])
    except (Refusal, PveApiError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
