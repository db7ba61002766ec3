# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A census of a CT's processes now: per command, how many and how much RSS.

The CT's processes are the pids in ``cgroup.procs`` of its cgroup and every
cgroup below it (``lxc/VMID/ns/system.slice/...``); each is read from
``/proc/PID/stat`` (command, parent, RSS pages). A fork storm is many
processes of one command, most of them children of that same command, as
``socat UDP4-LISTEN:53,fork`` makes one child per client source port.
"""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.enva.pve.plugins.module_utils.report_format import thousands

__metaclass__ = type

FORK_STORM_MIN = 100
"""A command with at least this many processes ..."""
FORK_STORM_SHARE = 0.5
"""... that are at least this share of all the CT's (or the task dump's) processes is a fork storm."""


def cgroup_pids(cgroup_dir):
    """Every pid in ``cgroup.procs`` of ``cgroup_dir`` and its descendants."""
    pids = set()
    for directory, _subdirs, files in os.walk(cgroup_dir):
        if "cgroup.procs" not in files:
            continue
        try:
            with open(os.path.join(directory, "cgroup.procs")) as handle:
                pids.update(int(line) for line in handle if line.strip().isdigit())
        except (IOError, OSError):
            continue
    return pids


def parse_stat(text):
    """``/proc/PID/stat`` as ``(pid, command, ppid, rss_pages)``; None when malformed.

    The command sits between the first ``(`` and the last ``)``: it may hold
    spaces and parentheses itself.
    """
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        return None
    fields = text[close_paren + 2:].split()
    if len(fields) < 22:
        return None
    try:
        return int(text[:open_paren]), text[open_paren + 1:close_paren], int(fields[1]), int(fields[21])
    except ValueError:
        return None


def read_processes(pids, proc_root="/proc"):
    """``(pid, command, ppid, rss_pages)`` of each pid still alive."""
    processes = []
    for pid in sorted(pids):
        try:
            with open(os.path.join(proc_root, str(pid), "stat")) as handle:
                parsed = parse_stat(handle.read())
        except (IOError, OSError):
            continue  # exited since cgroup.procs was read
        if parsed is not None:
            processes.append(parsed)
    return processes


def fork_storm_reason(name, count, total, where, forked_by_same=None):
    """Why ``count`` processes of ``name`` out of ``total`` are a fork storm, or None when they are not."""
    if count < FORK_STORM_MIN or total <= 0 or count < FORK_STORM_SHARE * total:
        return None
    reason = "%s fork storm: %s %s processes %s (%d%% of %s)" % (
        name, thousands(count), name, where, round(100.0 * count / total), thousands(total))
    if forked_by_same:
        reason += ", %s of them children of %s" % (thousands(forked_by_same), name)
    return reason


def summarize(processes, page_size=4096):
    """Fold processes into per-command counts and flag fork storms.

    Returns ``{"processes": N, "by_command": [{"name", "count", "rss_kb",
    "children_of_same"}...] (most processes first), "fork_storm": bool,
    "fork_storms": [{"name", "count", "reason"}]}``.
    """
    by_pid = {pid: name for pid, name, _ppid, _rss in processes}
    folded = {}
    for _pid, name, ppid, rss_pages in processes:
        entry = folded.setdefault(name, [0, 0, 0])
        entry[0] += 1
        entry[1] += rss_pages * page_size // 1024
        if by_pid.get(ppid) == name:
            entry[2] += 1
    total = len(processes)
    by_command = sorted(
        ({"name": name, "count": count, "rss_kb": rss_kb, "children_of_same": same}
         for name, (count, rss_kb, same) in folded.items()),
        key=lambda item: (-item["count"], -item["rss_kb"], item["name"]))
    storms = []
    for item in by_command:
        reason = fork_storm_reason(item["name"], item["count"], total, "running in the CT now",
                                   item["children_of_same"])
        if reason:
            storms.append({"name": item["name"], "count": item["count"], "reason": reason})
    return {
        "processes": total,
        "rss_kb": sum(item["rss_kb"] for item in by_command),
        "by_command": by_command,
        "fork_storm": bool(storms),
        "fork_storms": storms,
    }


def take_census(cgroup_dir, proc_root="/proc", page_size=4096):
    """The census of the processes in ``cgroup_dir`` (a CT's cgroup) now."""
    return summarize(read_processes(cgroup_pids(cgroup_dir), proc_root), page_size)
