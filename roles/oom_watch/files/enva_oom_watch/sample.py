# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One reading of every CT's memory cgroup, through the collection's cgroup parser.

A CT may be created or destroyed between two reads: a file that cannot be read is left out of the
sample (and counted), a CT whose directory vanished mid-read is dropped from this scan; nothing raises.
"""

import os

from ansible_collections.enva.pve.plugins.module_utils import cgroup_memory

V2_READ = ("memory.events", "memory.pressure", "memory.current", "memory.max", "memory.high",
           "memory.swap.current", "memory.swap.max", "memory.stat")
V1_READ = ("memory.failcnt", "memory.oom_control", "memory.usage_in_bytes", "memory.limit_in_bytes",
           "memory.memsw.usage_in_bytes", "memory.memsw.limit_in_bytes", "memory.stat")
# Files every CT has; one that cannot be read is a scan error (the others are optional: swap accounting off).
ESSENTIAL = {"v2": ("memory.events", "memory.current", "memory.max"),
             "v1": ("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.oom_control")}
# Counter name -> where it comes from (the file and key; v1 names the nearest equivalent).
V2_COUNTERS = {"high": ("memory.events", "high"), "max": ("memory.events", "max"),
               "oom": ("memory.events", "oom"), "oom_kill": ("memory.events", "oom_kill"),
               "oom_group_kill": ("memory.events", "oom_group_kill")}
V1_COUNTERS = {"max": ("memory.failcnt", None), "oom_kill": ("memory.oom_control", "oom_kill")}


class Sample(object):
    """What one scan read of one CT."""

    __slots__ = ("vmid", "version", "path", "inode", "counters", "pressure", "usage", "limit", "high",
                 "swap_usage", "swap_limit", "page_cache", "tasks", "under_oom", "raw", "errors")

    def __init__(self, vmid, version, path, inode):
        self.vmid, self.version, self.path, self.inode = vmid, version, path, inode
        self.counters = {}
        self.pressure = {}
        self.usage = self.limit = self.high = self.swap_usage = self.swap_limit = None
        self.page_cache = self.tasks = self.under_oom = None
        self.raw = {}
        self.errors = 0


def discover(root):
    """``(version, base, {vmid: cgroup dir})`` of every CT with a memory cgroup under ``root``."""
    version, base = cgroup_memory.layout(root)
    if version is None:
        return None, None, {}
    return version, base, dict((vmid, os.path.join(base, "lxc", str(vmid)))
                               for vmid in cgroup_memory.discover_vmids(root))


def _tasks(version, root, path, vmid):
    candidates = [os.path.join(path, "pids.current")]
    if version == "v1":
        candidates.append(os.path.join(root, "pids", "lxc", str(vmid), "pids.current"))
    for candidate in candidates:
        value = cgroup_memory.parse_value(cgroup_memory.read_file(candidate))
        if isinstance(value, int):
            return value
    tasks = 0
    for directory, _subdirs, files in os.walk(path):
        name = "tasks" if "tasks" in files else ("cgroup.threads" if "cgroup.threads" in files else None)
        if name:
            text = cgroup_memory.read_file(os.path.join(directory, name))
            tasks += len((text or "").split())
    return tasks


def read_ct(root, version, vmid, path):
    """A Sample of CT ``vmid``, or None when its cgroup is gone (destroyed between discovery and now)."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return None
    names = V2_READ if version == "v2" else V1_READ
    raw = cgroup_memory.read_raw(version, path, names)
    if not raw and not os.path.isdir(path):
        return None
    sample = Sample(vmid, version, path, inode)
    sample.raw = raw
    sample.errors = len([name for name in ESSENTIAL[version] if name not in raw])
    normal = cgroup_memory.normalize(version, path, raw)
    sample.usage, sample.limit, sample.high = normal["usage_bytes"], normal["limit_bytes"], normal["high_bytes"]
    sample.swap_usage, sample.swap_limit = normal["swap_usage_bytes"], normal["swap_limit_bytes"]
    sample.under_oom = normal["under_oom"]
    sample.page_cache = cgroup_memory.page_cache_bytes(version, raw.get("memory.stat"))
    sample.pressure = cgroup_memory.pressure_seconds(raw.get("memory.pressure"))
    for name, (filename, key) in (V2_COUNTERS if version == "v2" else V1_COUNTERS).items():
        value = raw.get(filename)
        if key is not None:
            value = (value or {}).get(key) if isinstance(value, dict) else None
        if isinstance(value, int):
            sample.counters[name] = value
    sample.tasks = _tasks(version, root, path, vmid)
    if not os.path.isdir(path):
        return None                      # destroyed while being read: its numbers may be half of two CTs
    return sample
