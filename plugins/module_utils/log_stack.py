# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much of a CT's memory its logging stack holds, from its census and its cgroup's memory.stat.

The logging stack is journald and a syslog daemon (rsyslog, syslog-ng, busybox syslogd): their
resident memory (the census's RSS per command), and the page cache charged to the CT's memory
cgroup, where the journal's mapped files and the log files written by the CT sit. ``memory.stat``
names it ``file``/``file_mapped``/``shmem`` on cgroup v2 and ``cache``/``mapped_file``/``shmem``
on v1 (``total_*`` there counts the cgroups below too: the CT's ``ns`` and its units). A volatile
journal (``Storage=volatile``, /run/log/journal) lives in tmpfs: ``shmem``, which cannot be
reclaimed without swap.

Everything here is pure: text and numbers in, a summary out (``read_memory_stat`` only reads a
file). enva.pve.ct_logging is the role that lowers it.
"""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.enva.pve.plugins.module_utils.report_format import mib_1

__metaclass__ = type

# /proc/PID/stat names (15 characters at most): journald's is cut to "systemd-journal".
LOGGING_COMMANDS = {
    "systemd-journal": "journald",
    "systemd-journald": "journald",
    "rsyslogd": "rsyslog",
    "syslog-ng": "syslog-ng",
    "syslogd": "syslogd",
}
RECOMMEND_SHARE_PCT = 5.0
"""The audit recommends enva.pve.ct_logging when the logging stack holds at least this share of the CT's
memory limit (or, with no limit known, of its usage)."""

# memory.stat keys per cgroup version: (file pages, mapped file pages, shmem); v1 prefers total_*.
_V2_KEYS = ("file", "file_mapped", "shmem")
_V1_KEYS = ("cache", "mapped_file", "shmem")


def parse_memory_stat(text):
    """``memory.stat`` (``key value`` lines) as a dict of ints; lines that are not so are skipped."""
    stat = {}
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("-").isdigit():
            stat[fields[0]] = int(fields[1])
    return stat


def read_memory_stat(cgroup_dir):
    """The parsed ``memory.stat`` of ``cgroup_dir``; None when it cannot be read."""
    try:
        with open(os.path.join(cgroup_dir, "memory.stat")) as handle:
            return parse_memory_stat(handle.read())
    except (IOError, OSError):
        return None


def stat_version(stat):
    """``v2`` (a ``file`` key), ``v1`` (a ``cache`` key) or None."""
    if not stat:
        return None
    if "file" in stat:
        return "v2"
    if "cache" in stat or "total_cache" in stat:
        return "v1"
    return None


def file_pages(stat):
    """The page cache charged to the cgroup, in bytes: ``{"cgroup_version", "file_bytes",
    "file_mapped_bytes", "shmem_bytes"}``, v1 and v2 in one shape (None values when unknown).

    On v1 the hierarchical ``total_*`` keys are used when present: a CT's processes sit in cgroups
    below its own (``lxc/VMID/ns/system.slice/...``).
    """
    version = stat_version(stat)
    if version is None:
        return {"cgroup_version": None, "file_bytes": None, "file_mapped_bytes": None, "shmem_bytes": None}
    keys = _V2_KEYS if version == "v2" else _V1_KEYS

    def pick(key):
        if version == "v1" and "total_" + key in stat:
            return stat["total_" + key]
        return stat.get(key)

    file_bytes, mapped, shmem = (pick(key) for key in keys)
    return {"cgroup_version": version, "file_bytes": file_bytes, "file_mapped_bytes": mapped, "shmem_bytes": shmem}


def logging_processes(by_command):
    """The census's ``by_command`` entries of the logging stack: ``[{"name", "service", "count", "rss_kb"}]``."""
    found = []
    for item in by_command or []:
        service = LOGGING_COMMANDS.get(item.get("name"))
        if service:
            found.append({"name": item["name"], "service": service, "count": item.get("count", 0),
                          "rss_kb": item.get("rss_kb", 0)})
    return sorted(found, key=lambda item: (-item["rss_kb"], item["name"]))


def summarize(census, stat, limit_bytes=None, usage_bytes=None, threshold_pct=RECOMMEND_SHARE_PCT):
    """What the logging stack holds of the CT's memory, and whether enva.pve.ct_logging is worth running.

    ``census`` is ct_census's summary (its ``by_command``), ``stat`` a parsed ``memory.stat`` (or None),
    ``limit_bytes``/``usage_bytes`` the cgroup's limit and usage (None when unknown). Returns
    ``{"processes", "rss_bytes", "cgroup_version", "file_bytes", "file_mapped_bytes", "shmem_bytes",
    "share_pct", "of", "recommend_ct_logging", "reason"}``. ``share_pct`` is the logging processes' RSS
    (journald's includes the journal files it maps) as a share of the limit (or of the usage when no limit
    is known); the cgroup's file pages and shmem are the CT's whole page cache and tmpfs, logs among them.
    """
    processes = logging_processes((census or {}).get("by_command"))
    rss_bytes = sum(item["rss_kb"] for item in processes) * 1024
    pages = file_pages(stat)
    base, of = (limit_bytes, "limit") if limit_bytes else (usage_bytes, "usage") if usage_bytes else (None, None)
    share = round(100.0 * rss_bytes / base, 1) if base else None
    recommend = bool(processes) and share is not None and share >= threshold_pct
    if not processes:
        reason = "no journald or syslog daemon runs in the CT"
    elif share is None:
        reason = "the CT's memory limit and usage are unknown"
    else:
        named = ", ".join("%s %s MiB" % (item["name"], mib_1(item["rss_kb"] * 1024)) for item in processes)
        reason = "the logging stack holds %s MiB RSS (%s), %s%% of the CT's %s MiB %s" % (
            mib_1(rss_bytes), named, share, mib_1(base), of)
        if pages["file_bytes"] is not None:
            reason += "; the CT's page cache %s MiB (mapped %s MiB), shmem %s MiB" % (
                mib_1(pages["file_bytes"]), mib_1(pages["file_mapped_bytes"] or 0), mib_1(pages["shmem_bytes"] or 0))
        reason += ("; at least %s%%: enva.pve.ct_logging can lower it" % threshold_pct if recommend
                   else "; under %s%%: not worth changing the CT's logging for memory" % threshold_pct)
    result = {"processes": processes, "rss_bytes": rss_bytes, "share_pct": share, "of": of,
              "recommend_ct_logging": recommend, "reason": reason}
    result.update(pages)
    return result
