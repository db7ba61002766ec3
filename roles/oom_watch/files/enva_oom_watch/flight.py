# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flight recorder: what a CT looked like when it stalled, was OOM-killed or forked fast.

Written the moment the watch sees it, before PVE stops the CT and its cgroup (``memory.events``, the
process list) vanishes. One JSON file per record, ``flight-<epoch ms>-<vmid>-<reason>.json`` in the
flight directory (written atomically), bounded in count and bytes: the oldest go first. The census
comes from the collection's ``ct_census``, the cgroup files from ``cgroup_memory``, the OOM report
(its task dump, counted by command) from ``oom_kernel``. ``lxc_oom_evidence`` and the audit read them.
"""

import json
import os
import time

from ansible_collections.enva.pve.plugins.module_utils import cgroup_memory, ct_census
from ansible_collections.enva.pve.plugins.module_utils.flight_record import list_records, record_name

from .atomic import clean_temp, write_atomic

FORMAT = 1
COMMANDS_KEPT = 40
KERNEL_LINES_KEPT = 200


class Recorder(object):
    def __init__(self, directory, node, max_records=100, max_bytes=16 << 20, cooldown=60.0,
                 proc_root="/proc", monotonic=time.monotonic, wall=time.time):
        self.directory = directory
        self.node = node
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.cooldown = cooldown
        self.proc_root = proc_root
        self.written = 0
        self.errors = 0
        self._last = {}                  # (vmid, reason) -> monotonic time of the last record
        self._monotonic, self._wall = monotonic, wall
        self.ready = self._prepare()

    def _prepare(self):
        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
        except OSError:
            return False
        clean_temp(self.directory)
        return True

    def due(self, vmid, reason):
        last = self._last.get((vmid, reason))
        return last is None or self._monotonic() - last >= self.cooldown

    def snapshot(self, vmid, reason, version, path, kernel_lines, detail=None):
        """Write a record for CT ``vmid`` now (``path`` its cgroup, None when gone); the file name or None."""
        if not self.due(vmid, reason):
            return None
        self._last[(vmid, reason)] = self._monotonic()
        epoch = self._wall()
        record = {"format": FORMAT, "node": self.node, "vmid": vmid, "reason": reason, "epoch": epoch,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)), "cgroup_version": None,
                  "cgroup": path, "memory": None, "pressure": None, "census": None, "detail": detail or {},
                  "kernel_lines": list(kernel_lines)[-KERNEL_LINES_KEPT:]}
        if path is not None and os.path.isdir(path):
            record["cgroup_version"] = 2 if version == "v2" else 1
            raw = cgroup_memory.read_raw(version, path, (cgroup_memory.V2_FILES if version == "v2"
                                                         else cgroup_memory.V1_FILES) + ("memory.stat",))
            record["pressure"] = raw.pop("memory.pressure", None)
            record["memory"] = raw
            census = ct_census.take_census(path, self.proc_root, os.sysconf("SC_PAGE_SIZE"))
            census["by_command"] = census["by_command"][:COMMANDS_KEPT]
            record["census"] = census
        name = record_name(epoch, vmid, reason)
        data = json.dumps(record, sort_keys=True, indent=1, default=str)
        if len(data) > self.max_bytes // 4:
            record["kernel_lines"] = record["kernel_lines"][-20:]
            data = json.dumps(record, sort_keys=True, indent=1, default=str)
        try:
            if not self.ready:
                self.ready = self._prepare()
            write_atomic(os.path.join(self.directory, name), data, mode=0o640)
        except OSError:
            self.errors += 1
            return None
        self.written += 1
        self.rotate()
        return name

    def rotate(self):
        """Remove the oldest records until at most max_records and max_bytes are kept."""
        names = list_records(self.directory)
        sizes = {}
        for name in names:
            try:
                sizes[name] = os.path.getsize(os.path.join(self.directory, name))
            except OSError:
                sizes[name] = 0
        total = sum(sizes.values())
        while names and (len(names) > self.max_records or total > self.max_bytes):
            oldest = names.pop(0)
            try:
                os.unlink(os.path.join(self.directory, oldest))
            except OSError:
                pass
            total -= sizes[oldest]
