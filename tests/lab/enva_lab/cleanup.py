"""What ``labctl down`` removes, planned from what it finds (a pure function of the facts).

``down`` must leave ``ip link``, ``lxc-ls``, the cgroup trees and ``ps`` as they were before the
lab, even after an ``up`` that failed half-way or a lab directory that lost its state file. So
the plan does not trust a record of what ``up`` did: it starts from what is there now (PID files,
running containers, processes naming the lab's paths, mounts under the lab directory, links,
cgroups) and uses the state file only for what cannot be seen (whether the bridge and LXC's
parent cgroups existed before the lab, the sysctl values to restore).
"""

import re
from collections import namedtuple

from enva_lab import settings
from enva_lab.lxcconf import veth_name

Action = namedtuple("Action", "kind target detail")
"""One step: ``kind`` is stop_process, stop_ct, kill_process, kill_ct_process, umount, delete_link,
rmdir_cgroup, restore_sysctl, remove_tree; ``target`` what it acts on; ``detail`` a few words for the log."""

_VETH = re.compile(r"^veth(\d+)i\d+$")


def _cgroup_owner(relative):
    """``(hierarchy, parent, vmid or None)`` of a cgroup path such as ``memory/lxc/2017/ns``; None
    when it is not under one of LXC's parents."""
    parts = relative.split("/")
    for index, part in enumerate(parts):
        if part in settings.LXC_CGROUP_PARENTS:
            vmid = parts[index + 1] if len(parts) > index + 1 else None
            return "/".join(parts[:index]), part, vmid
    return None


LAB_COMMANDS = ("lxc-start", "lxc-attach", "lxc-stop", "unbound")


def is_lab_process(argv):
    """Whether a process that names the lab directory is one the lab runs (and ``down`` may end):
    LXC's tools and monitors, unbound, the lab's own Python (supervisors, follower, PVE API lab).
    A shell or ``tail -f`` someone points at a lab file is not."""
    if not argv:
        return False
    program = argv[0].rsplit("/", 1)[-1]
    if program in LAB_COMMANDS or argv[0].startswith("[lxc monitor]"):
        return True
    return program.startswith("python") and any(
        part == "enva_lab" or part.startswith("enva_lab.") for part in argv[1:3])


def plan_down(facts, purge=False):
    """The ordered Actions that take the lab away. ``facts`` is a dict:

    * ``labdir``, ``labdir_exists``, ``cache``;
    * ``processes``: ``[(name, pid, starttime)]`` from the lab's PID files (API, supervisors, unbound,
      the kernel log follower), only those still running;
    * ``running_cts``: VMIDs LXC runs under the lab's lxcpath;
    * ``stray_processes``: ``[(pid, argv)]`` of other processes that name the lab directory;
    * ``ct_leftovers``: ``[(vmid, pid)]`` of processes still in a lab CT's cgroup (``lxc/VMID``) once
      LXC no longer runs it (its monitor gone): nothing else would end them, and their cgroup stays busy;
    * ``mounts``: mount points at or under the lab directory;
    * ``links``: ``{name: {"alias": ..., "kind": ...}}``;
    * ``lab_vmids``: every VMID the lab knows (configs, lxcpath, state);
    * ``cgroups``: existing cgroup directories relative to the cgroup root (``memory/lxc/2017/ns``);
    * ``dns_dir``, ``dns_dir_exists``: the lab's unbound directory under /var/lib/unbound (enva_lab.dns);
    * ``state``: the state file's dict (``bridge_created``, ``cgroup_parents_before``, ``sysctl_before``).
    """
    state = facts.get("state") or {}
    lab_vmids = {str(vmid) for vmid in facts.get("lab_vmids", ())}
    actions = []
    processes = sorted(facts.get("processes", ()), key=lambda item: (item[0] != "api", not item[0].startswith("ct-")))
    known_pids = {pid for _name, pid, _started in processes}
    api = [item for item in processes if item[0] == "api"]
    for name, pid, started in api:
        actions.append(Action("stop_process", (pid, started), name))
    for vmid in sorted(facts.get("running_cts", ())):
        actions.append(Action("stop_ct", vmid, "lxc-stop --kill"))
    for name, pid, started in processes[len(api):]:
        actions.append(Action("stop_process", (pid, started), name))
    for pid, argv in facts.get("stray_processes", ()):
        if pid not in known_pids:
            actions.append(Action("kill_process", pid, " ".join(argv)[:120]))
    running = {str(vmid) for vmid in facts.get("running_cts", ())}
    for vmid, pid in sorted(facts.get("ct_leftovers", ())):
        if str(vmid) in lab_vmids and str(vmid) not in running and pid not in known_pids:
            actions.append(Action("kill_ct_process", pid, "left in CT %s's cgroup, LXC no longer runs it" % vmid))
    for mount in sorted(facts.get("mounts", ()), key=lambda path: path.count("/"), reverse=True):
        actions.append(Action("umount", mount, "under the lab directory"))
    links = facts.get("links", {})
    for name in sorted(links):
        match = _VETH.match(name)
        if match and match.group(1) in lab_vmids and name == veth_name(int(match.group(1))):
            actions.append(Action("delete_link", name, "a lab CT's veth"))
    bridge = links.get(settings.BRIDGE)
    if bridge is not None:
        if bridge.get("alias") == settings.BRIDGE_ALIAS or state.get("bridge_created"):
            actions.append(Action("delete_link", settings.BRIDGE, "the lab's bridge"))
    before = set(state.get("cgroup_parents_before", ()))
    owned = []
    parents = []
    for relative in facts.get("cgroups", ()):
        owner = _cgroup_owner(relative)
        if owner is None:
            continue
        hierarchy, parent, vmid = owner
        if vmid is None:
            if "/".join(part for part in (hierarchy, parent) if part) not in before:
                parents.append(relative)
        elif vmid in lab_vmids:
            owned.append(relative)
    for relative in sorted(owned, key=lambda path: path.count("/"), reverse=True):
        actions.append(Action("rmdir_cgroup", relative, "a lab CT's cgroup"))
    for relative in sorted(parents):
        actions.append(Action("rmdir_cgroup", relative, "LXC's parent cgroup, absent before the lab (if empty)"))
    for name, value in sorted(state.get("sysctl_before", {}).items()):
        actions.append(Action("restore_sysctl", name, value))
    if facts.get("dns_dir_exists"):
        actions.append(Action("remove_tree", facts["dns_dir"], "the lab's unbound files (where its AppArmor profile "
                                                               "allows them)"))
    if facts.get("labdir_exists"):
        actions.append(Action("remove_tree", facts["labdir"], "the lab directory"))
    if purge and facts.get("cache_exists"):
        actions.append(Action("remove_tree", facts["cache"], "the rootfs cache (--purge)"))
    return actions
