# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CT as the PVE API shows it: found by VMID or name, its config's sizes and identity, its live limits.

What ``lxc_memory`` (which changes the sizes) and ``lxc_memory_info`` (which only reads them) share.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.enva.pve.plugins.module_utils.memory_size import bytes_to_mib
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import DEFAULT_MIB, parse_property_string

__metaclass__ = type

KEYS = ("memory", "swap")


class Refusal(Exception):
    """The task cannot go on; the message says why and what to do."""


def config_sizes(config):
    """``{memory, swap}`` in MiB of a config as GET returns it (PVE's defaults where absent)."""
    return {key: int(config.get(key, DEFAULT_MIB[key])) for key in KEYS}


def ct_identity(config):
    """The CT's hostname and network interfaces as its PVE config has them (what a play checks it is
    connected to the right CT by, and the address it asks the CT's DNS at)."""
    interfaces = []
    for key in sorted((key for key in config if key.startswith("net") and key[3:].isdigit()), key=lambda k: int(k[3:])):
        props = parse_property_string(str(config[key]))
        ip = props.get("ip") or ""
        interfaces.append({"key": key, "name": props.get("name"), "hwaddr": props.get("hwaddr"),
                           "bridge": props.get("bridge"), "ip": ip,
                           "address": ip.split("/")[0] if ip and ip not in ("dhcp", "manual") else None})
    return {"hostname": config.get("hostname"), "interfaces": interfaces}


def live_sizes(status):
    """``{maxmem, maxswap, mem}`` in MiB from a CT's ``status/current``."""
    return {"maxmem": bytes_to_mib(status.get("maxmem")), "maxswap": bytes_to_mib(status.get("maxswap")),
            "mem": bytes_to_mib(status.get("mem"))}


def find_ct(api, vmid, hostname):
    """``(vmid, node)`` from /cluster/resources, by VMID or by name."""
    what = "CT %s" % vmid if vmid is not None else "the CT named %s" % hostname
    resources = api.get("cluster/resources", "find %s in /cluster/resources" % what, type="vm")
    if vmid is not None:
        found = [item for item in resources if item.get("vmid") == vmid]
        if found and found[0].get("type") != "lxc":
            raise Refusal("VMID %d is a %s guest on node %s, not an LXC container" % (
                vmid, found[0].get("type"), found[0].get("node")))
        if not found:
            raise Refusal("CT %d does not exist in this cluster: /cluster/resources does not list it (it lists only"
                          " guests the API user has VM.Audit on, %d of them here)" % (vmid, len(resources)))
        return vmid, found[0]["node"]
    found = [item for item in resources if item.get("type") == "lxc" and item.get("name") == hostname]
    if not found:
        names = sorted(item.get("name", "?") for item in resources if item.get("type") == "lxc")
        raise Refusal("No CT is named %s in /cluster/resources (CTs visible to this API user: %s)" % (
            hostname, ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") or "none"))
    if len(found) > 1:
        raise Refusal("%d CTs are named %s (VMIDs %s): give vmid instead" % (
            len(found), hostname, ", ".join(str(item["vmid"]) for item in found)))
    return found[0]["vmid"], found[0]["node"]


def locate(api, vmid, hostname, node):
    """``(vmid, node)`` of the CT the options name: as given, or found through /cluster/resources."""
    if node is not None and vmid is not None:
        return vmid, node
    vmid, found_on = find_ct(api, vmid, hostname)
    if node is not None and node != found_on:
        raise Refusal("CT %d (%s) is on node %s, not on node %s" % (vmid, hostname, found_on, node))
    return vmid, found_on
