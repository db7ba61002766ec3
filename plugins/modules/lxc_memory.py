#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lxc_memory
short_description: Set the memory and swap of a Proxmox VE LXC container through the PVE API
version_added: "0.1.0"
description:
  - Reads the CT's configuration (C(GET /nodes/{node}/lxc/{vmid}/config)) and changes only the keys that differ,
    with the configuration's C(digest), so an edit made by someone else in between is refused by PVE rather
    than overwritten.
  - On a running CT, PVE changes the memory cgroup at once (hot-plug); the module then reads
    C(status/current) and C(pending) to confirm that the new limits are live, and fails if they are not.
    On a stopped CT the new values apply at the next start.
  - Lowering the memory of a running CT below what it uses now is refused unless O(force=true)
    (on cgroup v1 the kernel refuses such a limit, on cgroup v2 it reclaims and may OOM-kill).
  - Returns the values before and after, and a diff in the CT configuration's own format.
author:
  - enva.pve developers (@enva)
options:
  memory:
    description:
      - The CT's memory limit. An integer is MiB, as in the CT configuration (V(2048)).
      - A string may carry a binary unit, K, M, G or T, in any case and optionally followed by C(B) or C(iB)
        (V(2G), V(2GiB) and V(2048M) are all 2048 MiB, V(1.5G) is 1536 MiB). The result must be a whole
        number of MiB, and at least 16 MiB (the minimum of PVE's API schema).
      - Give O(memory), O(swap) or both.
    type: raw
  swap:
    description:
      - The CT's swap limit, with the same units as O(memory); V(0) means no swap.
    type: raw
  force:
    description:
      - Lower the memory of a running CT even below what it uses now.
      - PVE then asks the kernel for the new limit; on cgroup v1 the kernel refuses (EBUSY) if it cannot
        reclaim enough, and the module reports that; on cgroup v2 the kernel reclaims and may OOM-kill.
    type: bool
    default: false
  digest:
    description:
      - Only change the CT if its configuration still has this digest (as returned in RV(digest) by an
        earlier run, or by C(GET .../config)). PVE refuses the change otherwise.
      - A configuration whose digest differs fails the task also when nothing needs to change, and in check mode.
      - Omitted means the digest of the configuration the module just read.
    type: str
extends_documentation_fragment:
  - enva.pve.lxc_ct
  - enva.pve.pve
  - enva.pve.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the CT and reports what would change and the diff; writes nothing.
  diff_mode:
    support: full
    details:
      - The C(memory) and C(swap) lines of the CT configuration before and after.
  idempotent:
    support: full
    details:
      - A second run with the same values changes nothing.
notes:
  - Needs C(VM.Audit) and C(VM.Config.Memory) on C(/vms/VMID); finding the node or a CT by name needs the CT
    to be visible in C(/cluster/resources), which lists only the CTs the user has C(VM.Audit) on.
  - "A CT config without C(memory) or C(swap) has PVE's defaults: 512 MiB each."
seealso:
  - module: enva.pve.lxc_oom_evidence
  - name: Proxmox VE API, LXC config
    description: The endpoint this module changes.
    link: https://pve.proxmox.com/pve-docs/api-viewer/#/nodes/{node}/lxc/{vmid}/config
"""

EXAMPLES = r"""
- name: Raise CT 2017 to 2 GiB of memory, live
  enva.pve.lxc_memory:
    api_host: node1.example.org
    api_user: enva@pve
    api_token_id: ansible
    api_token_secret: "{{ vault_pve_token_secret }}"
    ca_path: /etc/ssl/pve-root-ca.pem
    vmid: 2017
    memory: 2G

- name: Memory and swap of the CT named haproxy, connection from PROXMOX_* environment variables
  enva.pve.lxc_memory:
    hostname: haproxy
    memory: 2048
    swap: 1024
  register: result

- name: Say what changed
  ansible.builtin.debug:
    msg: "CT {{ result.vmid }} on {{ result.node }}: {{ result.before }} -> {{ result.after }}"
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
ct:
  description:
    - The CT's hostname and network interfaces from its PVE config (C(netN)), each with C(key), C(name),
      C(hwaddr), C(bridge), C(ip) (as configured, C(dhcp) or C(ADDR/PREFIX)) and C(address) (the static
      address without prefix, null for DHCP).
  returned: always
  type: dict
  sample: {hostname: haproxy, interfaces: [{key: net0, name: eth0, hwaddr: "BC:24:11:5E:0A:17", bridge: vmbr0,
           ip: 192.0.2.17/24, address: 192.0.2.17}]}
status:
  description: Whether the CT runs (C(running)) or not (C(stopped)).
  returned: always
  type: str
  sample: running
before:
  description: C(memory) and C(swap) in MiB before the task (PVE's default 512 where the config has none).
  returned: always
  type: dict
  sample: {"memory": 1024, "swap": 1024}
after:
  description: C(memory) and C(swap) in MiB after the task (in check mode, what they would be).
  returned: always
  type: dict
  sample: {"memory": 2048, "swap": 1024}
changes:
  description: The keys that were (or in check mode would be) sent to PVE, in MiB.
  returned: always
  type: dict
  sample: {"memory": 2048}
digest:
  description: The digest of the CT configuration after the task (before it, in check mode).
  returned: always
  type: str
  sample: 5e1b4a4ad4b2c3c1b1f5f1d4c1b1a0c9d8e7f6a5
live:
  description:
    - The limits the running CT has now, in MiB, from C(status/current) (C(maxmem), C(maxswap)),
      and what it uses (C(mem)).
    - None when the CT is stopped.
  returned: always
  type: dict
  sample: {"maxmem": 2048, "maxswap": 1024, "mem": 212}
pending:
  description: Memory and swap changes PVE keeps as pending (applied at the next CT start), in MiB.
  returned: always
  type: dict
  sample: {}
"""

from ansible_collections.enva.pve.plugins.module_utils.lxc_ct import (
    KEYS, Refusal, config_sizes, ct_identity, live_sizes, locate)
from ansible_collections.enva.pve.plugins.module_utils.memory_policy import checked_size
from ansible_collections.enva.pve.plugins.module_utils.memory_size import bytes_to_mib
from ansible_collections.enva.pve.plugins.module_utils.pve_client import PveApiError, connect, pve_module

PRIVILEGE = "VM.Config.Memory"


def wanted_sizes(params):
    """``{key: MiB}`` of the memory/swap options given, checked against PVE's minimums (the memory policy)."""
    wanted = {}
    for key in KEYS:
        if params[key] is None:
            continue
        try:
            wanted[key] = checked_size(key, params[key])
        except ValueError as error:
            raise Refusal(str(error))
    return wanted


def config_lines(sizes):
    return "".join("%s: %d\n" % (key, sizes[key]) for key in KEYS)


def confirm_live(api, base, vmid, node, after):
    """``(live, pending)`` of a running CT after the change; Refusal when PVE did not apply it."""
    status = api.get(base + "/status/current", "read status/current of CT %d on node %s" % (vmid, node))
    pending_items = api.get(base + "/pending", "read the pending changes of CT %d on node %s" % (vmid, node))
    pending = {item["key"]: int(item["pending"]) for item in pending_items
               if item.get("key") in KEYS and "pending" in item}
    live = live_sizes(status)
    if status.get("status") != "running":
        return None, pending
    wrong = []
    if "memory" not in pending and live["maxmem"] != after["memory"]:
        wrong.append("maxmem %s MiB (wanted %d)" % (live["maxmem"], after["memory"]))
    if "swap" not in pending and live["maxswap"] is not None and live["maxswap"] != after["swap"]:
        wrong.append("maxswap %s MiB (wanted %d)" % (live["maxswap"], after["swap"]))
    if wrong:
        raise Refusal("PVE saved the new limits of CT %d on node %s but the running CT does not have them:"
                      " status/current reports %s" % (vmid, node, ", ".join(wrong)))
    return live, pending


def run(module, api):
    params = module.params
    wanted = wanted_sizes(params)
    vmid, node = locate(api, params["vmid"], params["hostname"], params["node"])
    base = "nodes/%s/lxc/%d" % (node, vmid)
    where = "CT %d on node %s" % (vmid, node)
    config = api.get(base + "/config", "read the config of %s" % where, current=1)
    before = config_sizes(config)
    after = dict(before, **wanted)
    changes = dict((key, value) for key, value in wanted.items() if before[key] != value)
    status = api.get(base + "/status/current", "read status/current of %s" % where)
    running = status.get("status") == "running"
    result = {"vmid": vmid, "node": node, "status": status.get("status"), "before": before, "after": after,
              "changes": changes, "digest": config["digest"], "live": None, "pending": {}, "changed": bool(changes),
              "ct": ct_identity(config)}
    if running:
        result["live"] = live_sizes(status)
    digest = params["digest"] or config["digest"]
    if params["digest"] and params["digest"] != config["digest"] and (module.check_mode or not changes):
        raise Refusal("The config of %s has digest %s, not the digest %s the task asked for: it was changed since"
                      " that digest was read. Nothing was changed." % (where, config["digest"], params["digest"]))
    if running and "memory" in changes and changes["memory"] < before["memory"] and not params["force"]:
        used = bytes_to_mib(status.get("mem")) or 0
        if changes["memory"] < used:
            raise Refusal("Refusing to lower the memory of %s to %d MiB: it uses %d MiB now (status/current mem)."
                          " Set force: true to ask the kernel anyway (cgroup v1 refuses with EBUSY what it cannot"
                          " reclaim; cgroup v2 reclaims and may OOM-kill)." % (where, changes["memory"], used))
    if module._diff:
        result["diff"] = {"before": config_lines(before), "after": config_lines(after),
                          "before_header": "%s: nodes/%s/lxc/%d.conf" % (where, node, vmid),
                          "after_header": "%s: nodes/%s/lxc/%d.conf" % (where, node, vmid)}
    if not changes or module.check_mode:
        return result
    try:
        api.put(base + "/config", "set %s of %s" % (" and ".join(sorted(changes)), where), privilege=PRIVILEGE,
                digest=digest, **changes)
    except PveApiError as error:
        if "Device or resource busy" in str(error):
            raise Refusal("%s The CT uses more memory than the new limit and the kernel could not reclaim enough"
                          " (EBUSY); nothing was changed. Free memory in the CT or choose a larger size."
                          % error)
        raise
    written = api.get(base + "/config", "read back the config of %s" % where, current=1)
    result["digest"] = written["digest"]
    if config_sizes(written) != after:
        raise Refusal("PVE accepted the change but the config of %s now has %s, not %s" % (
            where, config_sizes(written), after))
    if running:
        result["live"], result["pending"] = confirm_live(api, base, vmid, node, after)
        for key, value in result["pending"].items():
            module.warn("%s=%d MiB of %s is pending: PVE applies it at the next start of the CT" % (key, value, where))
    return result


def main():
    module = pve_module(
        argument_spec=dict(
            vmid=dict(type="int"),
            hostname=dict(type="str"),
            node=dict(type="str"),
            memory=dict(type="raw"),
            swap=dict(type="raw"),
            force=dict(type="bool", default=False),
            digest=dict(type="str"),
        ),
        required_one_of=[("vmid", "hostname"), ("memory", "swap")],
        mutually_exclusive=[("vmid", "hostname")],
    )
    try:
        wanted_sizes(module.params)
    except Refusal as error:
        module.fail_json(msg=str(error))
    api = connect(module)
    try:
        result = run(module, api)
    except (Refusal, PveApiError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
