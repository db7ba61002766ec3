#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pve_resources
short_description: Every node and CT of a Proxmox VE cluster in one API call (C(/cluster/resources))
version_added: "0.1.0"
description:
  - Reads C(GET /cluster/resources) once and returns the cluster's CTs keyed by VMID (node, name, status,
    tags, memory in use and configured, uptime) and its nodes (status, C(cgroup-mode)), so a fleet-wide task
    needs one round trip however many CTs there are.
  - The API lists only what the user may see (C(VM.Audit) on a guest, C(Sys.Audit) on a node); RV(cts) is
    what is visible, not necessarily the whole cluster.
  - The module only reads; it changes nothing.
author:
  - enva.pve developers (@enva)
options:
  type:
    description:
      - Only resources of this kind, as the API's C(type) parameter.
      - V(vm) lists guests (CTs and VMs) only; V(node) nodes only. Omitted lists everything
        (nodes, guests, storage, SDN), which is what a fleet report wants.
    type: str
    choices: [vm, node, storage, sdn]
  node:
    description:
      - Only the CTs and the node of these PVE nodes (filtered after the one call).
    type: list
    elements: str
  raw:
    description:
      - Also return the API's answer as it came, in RV(resources).
    type: bool
    default: false
extends_documentation_fragment:
  - enva.pve.pve
  - enva.pve.attributes
  - enva.pve.attributes.read_only
notes:
  - Needs C(VM.Audit) on the guests (C(/vms)) and C(Sys.Audit) on the nodes (C(/nodes)) it should see.
  - "C(/cluster/resources) has the configured memory of a CT (C(maxmem)) but not its swap: read swap from the
    CT's config (M(enva.pve.lxc_oom_evidence) returns it per node)."
seealso:
  - module: enva.pve.lxc_memory
  - module: enva.pve.lxc_oom_evidence
  - name: Proxmox VE API, cluster resources
    description: The endpoint this module reads.
    link: https://pve.proxmox.com/pve-docs/api-viewer/#/cluster/resources
"""

EXAMPLES = r"""
- name: Every CT of the cluster, one API call
  enva.pve.pve_resources:
    api_host: node1.example.org
    api_user: enva@pve
    api_token_id: readonly
    api_token_secret: "{{ vault_pve_readonly_secret }}"
    ca_path: /etc/ssl/pve-root-ca.pem
  delegate_to: localhost
  run_once: true
  register: cluster

- name: Where CT 2017 runs and how much memory it uses
  ansible.builtin.debug:
    msg: "{{ cluster.cts['2017'].node }}: {{ cluster.cts['2017'].mem_mb }} of {{ cluster.cts['2017'].maxmem_mb }} MiB"

- name: The CTs of node node2 only (connection from PROXMOX_* environment variables)
  enva.pve.pve_resources:
    node: [node2]
  delegate_to: localhost
  register: node2_cts
"""

RETURN = r"""
cts:
  description:
    - The LXC containers, keyed by VMID (a string).
    - C(vmid), C(node), C(name), C(status) (C(running), C(stopped)), C(tags) (a list), C(template) (bool),
      C(lock) (null when none), C(uptime) (seconds), C(cpu), C(maxcpu), C(mem_bytes) and C(maxmem_bytes)
      (memory in use and configured, as the API gives them), C(mem_mb) and C(maxmem_mb) (the same in MiB,
      rounded down), C(disk_bytes), C(maxdisk_bytes).
  returned: always
  type: dict
  sample:
    "2017": {vmid: 2017, node: node1, name: haproxy, status: running, tags: [edge, haproxy], template: false,
             lock: null, uptime: 86400, cpu: 0.02, maxcpu: 2, mem_bytes: 222298112, maxmem_bytes: 1073741824,
             mem_mb: 212, maxmem_mb: 1024, disk_bytes: 0, maxdisk_bytes: 8589934592}
nodes:
  description:
    - The nodes, keyed by name, with C(status) (C(online), C(offline), C(unknown)), C(cgroup_mode) (1 or 2,
      null when the API does not say), C(mem_bytes), C(maxmem_bytes), C(maxcpu), C(uptime).
    - A node the user has no C(Sys.Audit) on is missing here, but its CTs are in RV(cts).
  returned: always
  type: dict
  sample:
    node1: {node: node1, status: online, cgroup_mode: 2, mem_bytes: 8589934592, maxmem_bytes: 68719476736,
           maxcpu: 16, uptime: 1209600}
counts:
  description: How many resources of each kind the call returned (C(lxc), C(qemu), C(node), C(storage), ...).
  returned: always
  type: dict
  sample: {lxc: 3, qemu: 1, node: 1, storage: 2}
resources:
  description: The API's answer as it came.
  returned: when O(raw=true)
  type: list
  elements: dict
"""

from ansible_collections.enva.pve.plugins.module_utils.memory_size import bytes_to_mib
from ansible_collections.enva.pve.plugins.module_utils.pve_client import PveApiError, connect, pve_module


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def split_tags(value):
    """PVE's tag string (``lab;haproxy``; older releases also used ``,`` or spaces) as a list."""
    if not value:
        return []
    if isinstance(value, list):
        return [str(tag) for tag in value]
    return [tag for tag in str(value).replace(",", ";").replace(" ", ";").split(";") if tag]


def ct_entry(item):
    """One ``type: lxc`` item of /cluster/resources in the module's shape."""
    return {
        "vmid": _int(item.get("vmid")),
        "node": item.get("node"),
        "name": item.get("name"),
        "status": item.get("status"),
        "tags": split_tags(item.get("tags")),
        "template": _int(item.get("template")) == 1,
        "lock": item.get("lock") or None,
        "uptime": _int(item.get("uptime")),
        "cpu": item.get("cpu"),
        "maxcpu": item.get("maxcpu"),
        "mem_bytes": _int(item.get("mem")),
        "maxmem_bytes": _int(item.get("maxmem")),
        "mem_mb": bytes_to_mib(_int(item.get("mem"))),
        "maxmem_mb": bytes_to_mib(_int(item.get("maxmem"))),
        "disk_bytes": _int(item.get("disk")),
        "maxdisk_bytes": _int(item.get("maxdisk")),
    }


def node_entry(item):
    """One ``type: node`` item of /cluster/resources in the module's shape."""
    return {
        "node": item.get("node"),
        "status": item.get("status"),
        "cgroup_mode": _int(item.get("cgroup-mode")),
        "mem_bytes": _int(item.get("mem")),
        "maxmem_bytes": _int(item.get("maxmem")),
        "maxcpu": item.get("maxcpu"),
        "uptime": _int(item.get("uptime")),
    }


def summarize(resources, nodes=None):
    """``(cts, nodes, counts)`` from the API's list; ``nodes`` (names) keeps only those nodes' entries."""
    wanted = set(nodes) if nodes else None
    cts, node_entries, counts = {}, {}, {}
    for item in resources:
        kind = item.get("type") or "unknown"
        counts[kind] = counts.get(kind, 0) + 1
        if wanted is not None and item.get("node") not in wanted:
            continue
        if kind == "lxc" and _int(item.get("vmid")) is not None:
            entry = ct_entry(item)
            cts[str(entry["vmid"])] = entry
        elif kind == "node" and item.get("node"):
            node_entries[item["node"]] = node_entry(item)
    return cts, node_entries, counts


def main():
    module = pve_module(
        argument_spec=dict(
            type=dict(type="str", choices=["vm", "node", "storage", "sdn"]),
            node=dict(type="list", elements="str"),
            raw=dict(type="bool", default=False),
        ),
    )
    api = connect(module)
    params = {"type": module.params["type"]} if module.params["type"] else {}
    try:
        resources = api.get("cluster/resources", "read /cluster/resources", privilege="VM.Audit", **params)
    except PveApiError as error:
        module.fail_json(msg=str(error), kind=error.kind, status=error.status)
    if not isinstance(resources, list):
        module.fail_json(msg="Cannot read /cluster/resources: the PVE API at %s answered %s, not a list"
                             % (api.conn.url, type(resources).__name__))
    cts, nodes, counts = summarize(resources, module.params["node"])
    if module.params["node"]:
        known = {item.get("node") for item in resources if item.get("node")}
        unknown = sorted(set(module.params["node"]) - known)
        if unknown:
            module.fail_json(msg="No node named %s in /cluster/resources (nodes listed: %s)" % (
                ", ".join(unknown), ", ".join(sorted(known)) or "none"))
    result = {"changed": False, "cts": cts, "nodes": nodes, "counts": counts}
    if module.params["raw"]:
        result["resources"] = resources
    module.exit_json(**result)


if __name__ == "__main__":
    main()
