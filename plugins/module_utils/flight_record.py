# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flight records of the watch (enva-oom-watch): their names and how to read them back.

The agent writes one JSON file per record, ``flight-<epoch ms>-<vmid>-<reason>.json``, into its
flight directory (``/var/lib/enva-oom-watch/flight`` by default) when a CT stalls, is OOM-killed or
forks fast: the process census by command, the cgroup's memory files, its PSI and the kernel lines
around it, taken before the cgroup vanishes. ``lxc_oom_evidence`` and the audit read them here.
"""

from __future__ import absolute_import, division, print_function

import json
import os

from ansible_collections.enva.pve.plugins.module_utils import ct_census

__metaclass__ = type

DEFAULT_DIR = "/var/lib/enva-oom-watch/flight"
PREFIX = "flight-"
REASONS = ("oom_kill", "stall", "fork_storm")


def record_name(epoch, vmid, reason):
    """The file name of a record: sorting the names sorts the records by time."""
    return "%s%015d-%d-%s.json" % (PREFIX, int(epoch * 1000), vmid, reason)


def list_records(directory):
    """Record file names in ``directory``, oldest first; [] when it cannot be listed."""
    try:
        names = os.listdir(directory)
    except (IOError, OSError):
        return []
    return sorted(name for name in names if name.startswith(PREFIX) and name.endswith(".json"))


def read_records(directory, vmid=None, since=None):
    """Every readable record (oldest first) as dicts with ``file`` added; only CT ``vmid``'s and those at or
    after epoch ``since`` when given. Unreadable or foreign files are skipped."""
    records = []
    for name in list_records(directory):
        try:
            with open(os.path.join(directory, name)) as handle:
                record = json.load(handle)
        except (IOError, OSError, ValueError):
            continue
        if not isinstance(record, dict) or (vmid is not None and record.get("vmid") != vmid):
            continue
        if since is not None and not (isinstance(record.get("epoch"), (int, float)) and record["epoch"] >= since):
            continue
        record["file"] = name
        records.append(record)
    return records


def storm_commands(record):
    """``[{"name", "count", "rss_kb"}]`` of a record, most processes first: the live census when the cgroup
    was still there, else the task dump of the OOM report it holds."""
    census = record.get("census") or {}
    commands = census.get("by_command") or []
    if not commands:
        report = (record.get("detail") or {}).get("event") or {}
        commands = report.get("tasks_by_command") or []
    return [{"name": item.get("name"), "count": item.get("count", 0), "rss_kb": item.get("rss_kb", 0)}
            for item in commands if isinstance(item, dict)]


def summarize(records, top=3):
    """What ``lxc_oom_evidence`` reports of a CT's flight records: ``{"records": [...], "cause": str}``, or None
    when there are none. ``cause`` names the record with the most processes of one command, as a fork storm
    when it is one (ct_census's thresholds), so an incident is named after its CT restarted."""
    if not records:
        return None
    entries = []
    best = None
    for record in records:
        commands = storm_commands(record)
        census = record.get("census") or {}
        total = census.get("processes") or sum(item["count"] for item in commands)
        entries.append({"file": record.get("file"), "time": record.get("time"), "reason": record.get("reason"),
                        "processes": total, "top_commands": commands[:top],
                        "cgroup_version": record.get("cgroup_version")})
        if commands and (best is None or commands[0]["count"] > best[0]["count"]):
            best = (commands[0], total, record)
    cause = None
    if best is not None:
        command, total, record = best
        where = "in the watch's flight record of %s (%s)" % (record.get("time"), record.get("reason"))
        cause = ct_census.fork_storm_reason(command["name"], command["count"], total, where)
        if cause is None:
            cause = "%s recorded by the watch at %s; most processes: %s x%s of %s" % (
                record.get("reason"), record.get("time"), command["name"], "{:,}".format(command["count"]),
                "{:,}".format(total))
    return {"records": entries, "cause": cause}
