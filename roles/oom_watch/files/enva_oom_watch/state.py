# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counters that never go back, kept on disk.

A CT's ``memory.events`` and PSI totals restart at 0 when its cgroup is made again (a CT restart,
a node reboot). Each counter is exported as ``offset + raw``: when the cgroup is a new one (its
directory's inode changed) or a raw value went down, the last value seen is added to the offset.
The state file (JSON, written atomically) keeps offsets, last values, kernel-log kill counts and the
last kmsg sequence of this boot across agent restarts. A state file that cannot be read (missing,
truncated by a crash before rename existed, not JSON) starts the agent from zero, said in the log.
"""

import json
import os

from .atomic import write_atomic

FORMAT = 1


class CtCounters(object):
    """One CT's monotonic counters and what is known of it across restarts."""

    __slots__ = ("inode", "last", "offset", "oom_kills", "last_kill", "last_seen", "running")

    def __init__(self):
        self.inode = None
        self.last = {}
        self.offset = {}
        self.oom_kills = 0           # kills the kernel log named for this CT
        self.last_kill = None        # {"name", "pid", "epoch"} of the last victim
        self.last_seen = None        # wall time of the last scan that found the cgroup
        self.running = False

    def update(self, inode, raw):
        """Fold a scan's raw counters in; returns the counters' increases since the last scan."""
        increases = {}
        new_cgroup = self.inode is not None and inode != self.inode
        for name, value in raw.items():
            last = self.last.get(name)
            if last is not None and (new_cgroup or value < last):
                self.offset[name] = self.offset.get(name, 0) + last
                last = 0
            if last is None:
                last = 0 if (new_cgroup or self.inode is not None) else value
            if value > last:
                increases[name] = value - last
            self.last[name] = value
        if new_cgroup:
            for name in list(self.last):
                if name not in raw:        # the new cgroup lacks it: the old total stays in the offset
                    self.offset[name] = self.offset.get(name, 0) + self.last.pop(name)
        self.inode = inode
        return increases

    def total(self, name):
        if name not in self.last and name not in self.offset:
            return None
        return self.offset.get(name, 0) + self.last.get(name, 0)

    def as_dict(self):
        return dict((key, getattr(self, key)) for key in self.__slots__)

    @classmethod
    def from_dict(cls, data):
        counters = cls()
        for key in cls.__slots__:
            if key in data:
                setattr(counters, key, data[key])
        counters.last = dict(counters.last or {})
        counters.offset = dict(counters.offset or {})
        counters.running = False          # proven again by the next scan
        return counters


class State(object):
    """Every CT's counters, the agent's own counters and the kmsg position, as one JSON file."""

    def __init__(self, path):
        self.path = path
        self.cts = {}
        self.agent = {}                   # agent totals kept across restarts (errors, lost lines, ...)
        self.kmsg_boot_id = None
        self.kmsg_last_seq = None
        self.load_error = None

    def ct(self, vmid):
        counters = self.cts.get(vmid)
        if counters is None:
            counters = self.cts[vmid] = CtCounters()
        return counters

    def load(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("not a state file of format %d" % FORMAT)
            self.cts = dict((int(vmid), CtCounters.from_dict(item)) for vmid, item in data.get("cts", {}).items())
            self.agent = dict(data.get("agent") or {})
            self.kmsg_boot_id = data.get("kmsg_boot_id")
            self.kmsg_last_seq = data.get("kmsg_last_seq")
        except (IOError, OSError, ValueError, TypeError, AttributeError) as error:
            if not (isinstance(error, (IOError, OSError)) and not os.path.exists(self.path)):
                self.load_error = "%s: %s" % (self.path, error)
            self.cts, self.agent = {}, {}
            self.kmsg_boot_id = self.kmsg_last_seq = None

    def save(self):
        """Write the state atomically; raises OSError (the caller counts it) and leaves the old file."""
        data = {"format": FORMAT, "kmsg_boot_id": self.kmsg_boot_id, "kmsg_last_seq": self.kmsg_last_seq,
                "agent": self.agent,
                "cts": dict((str(vmid), counters.as_dict()) for vmid, counters in sorted(self.cts.items()))}
        write_atomic(self.path, json.dumps(data, sort_keys=True, separators=(",", ":")), mode=0o600)

    def forget_gone(self, now, keep_seconds):
        """Drop CTs not seen for ``keep_seconds`` (a destroyed CT's series end; a stopped CT's stay a while)."""
        for vmid in [vmid for vmid, item in self.cts.items()
                     if not item.running and item.last_seen is not None and now - item.last_seen > keep_seconds]:
            del self.cts[vmid]
