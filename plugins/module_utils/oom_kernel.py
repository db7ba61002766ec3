# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel OOM reports, parsed from log text in one pass for every CT.

What the kernel prints for one OOM kill (mm/oom_kill.c, mm/memcontrol.c),
from 4.x to 6.x, in order:

1. ``socat invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0``
   (4.x: ``..., nodemask=(null), order=0, ...`` and ``socat cpuset=ns mems_allowed=0``)
2. a stack trace (ignored);
3. 4.x only: ``Task in /lxc/2017/ns killed as a result of limit of /lxc/2017``;
4. ``memory: usage 262144kB, limit 262144kB, failcnt 1234``, then
   ``memory+swap: ...`` and ``kmem: ...`` (v1) or ``swap: ...`` (v2);
5. ``Memory cgroup stats for /lxc/2017:`` and its counters (ignored);
6. the task dump: ``Tasks state (memory values in pages):``, a header
   (``[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name``,
   older ``[ pid ] ... nr_ptes nr_pmds swapents ...``, newer with
   ``rss_anon rss_file rss_shmem``) and one row per process;
7. 4.19+: ``oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,
   mems_allowed=0,oom_memcg=/lxc/2017,task_memcg=/lxc/2017/ns,task=socat,pid=N,uid=0``;
8. the kill: ``Memory cgroup out of memory: Killed process N (socat) total-vm:..kB,
   anon-rss:..kB, file-rss:..kB, shmem-rss:..kB, UID:0 pgtables:..kB oom_score_adj:0``;
   before 5.1: ``Memory cgroup out of memory: Kill process N (x) score M or sacrifice child``
   then ``Killed process N (x) total-vm:...``;
9. later, from the reaper thread: ``oom_reaper: reaped process N (socat), now anon-rss:0kB, ...``.

Steps 1-7 are the "header" (dump_header), rate-limited by the kernel: in a
fork storm most kills print only step 8. A dmesg ring buffer that wrapped can
also start in the middle of a report. Such events are kept and marked
``partial``; they are attributed to a CT through the pids of an earlier task
dump when they name no memory cgroup.

Also collected: bridge port state lines of PVE veth devices
(``vmbr0: port 2(veth2017i0) entered disabled state``).
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.enva.pve.plugins.module_utils.kernel_log_gaps import JOURNALD, record_gap
from ansible_collections.enva.pve.plugins.module_utils.log_lines import iso_utc, parse_line

__metaclass__ = type

# How long a pid seen in a task dump keeps pointing at its CT, for kills that
# name no memory cgroup (pids are reused, so not forever).
PID_OWNER_TTL = 600.0

_MEMCG_VMID = re.compile(r"^/lxc(?:\.payload|\.monitor)?[/.](\d+)(?:/|$)")
_VETH_VMID = re.compile(r"^(?:veth|tap|fwpr|fwln)(\d+)(?:i|p)\d+$")

_INVOKED = re.compile(
    r"^(.+?) invoked oom-killer: gfp_mask=([^,]+),(?: nodemask=[^,]*,)? order=(-?\d+), oom_score_adj=(-?\d+)")
_CPUSET = re.compile(r"^(.+?) cpuset=(\S+) mems_allowed=(\S+)$")
_TASK_IN = re.compile(r"^Task in (\S+) killed as a result of limit of (\S+)")
_MEMINFO = re.compile(r"^(memory|memory\+swap|swap|kmem): usage (\d+)kB, limit (\d+)kB, failcnt (\d+)")
_STATS = re.compile(r"^Memory cgroup stats for (\S*?):")
_HEADER = re.compile(r"^\[\s*pid\s*\]\s+uid\s+tgid\s+total_vm\s+rss\b(.*)\bname\s*$")
_ROW = re.compile(r"^\[\s*(\d+)\]\s+(.*)$")
_SUMMARY_MEMCG = re.compile(r"(?:^|,)oom_memcg=([^,]*)")
_SUMMARY_TASK_MEMCG = re.compile(r"(?:^|,)task_memcg=([^,]*)")
_SUMMARY_CONSTRAINT = re.compile(r"(?:^|,)constraint=(\w+)")
_SUMMARY_CPUSET = re.compile(r"(?:^|,)cpuset=([^,]*)")
_SUMMARY_TASK = re.compile(r",task=(.*),pid=(\d+),uid=(\d+)\s*$")
_SELECT = re.compile(r"^(?:(.*?): )?Kill process (\d+) \((.*)\) score (\d+) or sacrifice child")
_KILLED = re.compile(
    r"^(?:(.*?): )?Killed process (\d+) \((.*)\)(?:,? (?:UID (\d+), )?total-vm:(\d+)kB, anon-rss:(\d+)kB, "
    r"file-rss:(\d+)kB(?:, shmem-rss:(\d+)kB)?(?:,? UID:(\d+) pgtables:(\d+)kB oom_score_adj:(-?\d+))?)?")
_REAPED = re.compile(
    r"^oom_reaper: reaped process (\d+) \((.*)\), now anon-rss:(\d+)kB, file-rss:(\d+)kB(?:, shmem-rss:(\d+)kB)?")
_GROUP = re.compile(r"^Tasks in (\S+) are going to be killed due to memory\.oom\.group set")
_NO_KILLABLE = "Out of memory and no killable processes"
_PORT = re.compile(r"^(\S+): port (\d+)\((\S+?)\) entered (\w+) state")

# Substrings that any OOM-related line contains; a line with none of them is
# skipped without trying every pattern (most of a kernel log is unrelated).
_TRIGGERS = ("oom", "OOM", "Kill", "kill", "memory", "swap", "kmem", "Memory", "[", "cpuset=", "Task", "port ")


def memcg_vmid(path):
    """The VMID of a PVE CT's memory cgroup path, or None.

    ``/lxc/2017``, ``/lxc/2017/ns``, ``/lxc/703/ns/system.slice/x.service``,
    ``/lxc.monitor/2017``, ``/lxc.payload.2017`` and ``/lxc.payload/2017``
    all belong to their CT; anything else (``/``, ``/system.slice/...``) is no CT.
    """
    if not path:
        return None
    match = _MEMCG_VMID.match(path)
    return int(match.group(1)) if match else None


def interface_vmid(name):
    """The VMID in a PVE guest interface name (``veth2017i0``, ``tap100i0``, ``fwpr2017p0``)."""
    match = _VETH_VMID.match(name or "")
    return int(match.group(1)) if match else None


class _Event(object):
    """One OOM kill as the kernel reported it (possibly partly)."""

    __slots__ = ("epoch", "monotonic", "header", "invoker", "gfp_mask", "order", "cpuset", "constraint",
                 "oom_memcg", "task_memcg", "stats_memcg", "meminfo", "columns", "tasks", "task_count",
                 "selected", "summary_task", "victims", "reaped", "group_memcg", "no_killable", "vmid",
                 "attributed_by", "reported")

    def __init__(self, epoch, monotonic, header):
        self.epoch = epoch
        self.monotonic = monotonic
        self.header = header
        self.invoker = self.gfp_mask = self.order = self.cpuset = self.constraint = None
        self.oom_memcg = self.task_memcg = self.stats_memcg = self.group_memcg = None
        self.meminfo = {}
        self.columns = None
        self.tasks = {}
        self.task_count = 0
        self.selected = self.summary_task = None
        self.victims = []
        self.reaped = []
        self.no_killable = False
        self.vmid = None
        self.attributed_by = None
        self.reported = 0

    @property
    def finished(self):
        """A kill was printed: further dump lines belong to another report."""
        return (bool(self.victims) and self.group_memcg is None) or self.no_killable

    def as_dict(self, page_kb):
        missing = []
        if not self.header:
            missing.append("header")
        if not self.task_count:
            missing.append("task dump")
        if not self.victims:
            missing.append("kill line")
        if not (self.oom_memcg or self.task_memcg or self.stats_memcg):
            missing.append("memory cgroup")
        by_command = sorted(
            ({"name": name, "count": count, "rss_kb": rss_pages * page_kb}
             for name, (count, rss_pages) in self.tasks.items()),
            key=lambda item: (-item["count"], -item["rss_kb"], item["name"]))
        return {
            "time": iso_utc(self.epoch),
            "epoch": self.epoch,
            "uptime": self.monotonic,
            "vmid": self.vmid,
            "attributed_by": self.attributed_by,
            "partial": not self.header,
            "missing": missing,
            "invoker": self.invoker,
            "gfp_mask": self.gfp_mask,
            "order": self.order,
            "constraint": self.constraint,
            "cpuset": self.cpuset,
            "oom_memcg": self.oom_memcg or self.stats_memcg,
            "task_memcg": self.task_memcg,
            "memory": self.meminfo.get("memory"),
            "swap": self.meminfo.get("swap") or self.meminfo.get("memory+swap"),
            "swap_is_memory_plus_swap": "memory+swap" in self.meminfo and "swap" not in self.meminfo,
            "kmem": self.meminfo.get("kmem"),
            "tasks_total": self.task_count,
            "tasks_by_command": by_command,
            "selected": self.selected,
            "summary_task": self.summary_task,
            "victims": self.victims,
            "reaped": self.reaped,
            "oom_group": self.group_memcg,
            "no_killable_processes": self.no_killable,
        }


def _row_fields(rest, columns):
    """Split a task dump row (after the pid) into its numbers and the command name.

    ``columns`` is the header's list of numeric columns after ``[pid]`` (None
    when the header was lost: then every leading number is a column).
    """
    parts = rest.split(None, len(columns)) if columns else rest.split()
    if columns:
        if len(parts) <= len(columns):
            return None
        numbers, name = parts[:len(columns)], parts[len(columns)]
    else:
        numbers = []
        while parts and re.match(r"^-?\d+$", parts[0]) and len(parts) > 1:
            numbers.append(parts.pop(0))
        name = " ".join(parts)
    try:
        return [int(value) for value in numbers], name
    except ValueError:
        return None


def _victim(match, epoch):
    def number(index):
        value = match.group(index)
        return int(value) if value is not None else None

    uid = number(4) if match.group(4) is not None else number(9)
    return {
        "pid": int(match.group(2)),
        "name": match.group(3),
        "time": iso_utc(epoch),
        "epoch": epoch,
        "context": match.group(1),
        "total_vm_kb": number(5),
        "anon_rss_kb": number(6),
        "file_rss_kb": number(7),
        "shmem_rss_kb": number(8),
        "uid": uid,
        "pgtables_kb": number(10),
        "oom_score_adj": number(11),
    }


class KernelLogParser(object):
    """Feed log lines in order (``feed``), then read ``result()``.

    Holds only the open report, the finished events and a pid -> event map,
    so a log of any length is read in one pass.
    """

    def __init__(self, reference_epoch, boot_epoch=None, tz=None, page_size=4096):
        self.reference_epoch = reference_epoch
        self.boot_epoch = boot_epoch
        self.tz = tz
        self.page_kb = page_size // 1024
        self.events = []
        self.network = []
        self.gaps = []
        self.lines = 0
        self.kernel_lines = 0
        self.first_epoch = None
        self.last_epoch = None
        self._current = None
        self._pid_owner = {}
        self._victim_event = {}

    # -- helpers -----------------------------------------------------------
    def _open(self, epoch, monotonic, header):
        self._current = _Event(epoch, monotonic, header)
        self.events.append(self._current)
        return self._current

    def _event_for_dump_line(self, epoch, monotonic):
        """The open report, or a new partial one when the header was lost."""
        current = self._current
        if current is None or current.finished:
            current = self._open(epoch, monotonic, header=False)
        return current

    def _owner_of(self, pid, epoch):
        owner = self._pid_owner.get(pid)
        if owner is None:
            return None
        if epoch is not None and owner.epoch is not None and abs(epoch - owner.epoch) > PID_OWNER_TTL:
            return None
        return owner

    # -- one line ------------------------------------------------------------
    def feed(self, line):
        self.lines += 1
        record = parse_line(line, self.reference_epoch, self.boot_epoch, self.tz)
        if record is None:
            return
        if record.ident == JOURNALD or "suppressed" in record.message:
            gap = record_gap(record)          # what the log itself says it lost (kernel_log_gaps)
            if gap is not None:
                self.gaps.append(gap)
        if record.ident is not None and record.ident != "kernel":
            return
        self.kernel_lines += 1
        epoch = record.epoch
        if epoch is not None:
            if self.first_epoch is None or epoch < self.first_epoch:
                self.first_epoch = epoch
            if self.last_epoch is None or epoch > self.last_epoch:
                self.last_epoch = epoch
        self.feed_message(record.message, epoch, record.monotonic)

    def feed_message(self, message, epoch, monotonic):
        if not any(trigger in message for trigger in _TRIGGERS):
            return
        first = message[:1]
        if first == "[":
            self._row_or_header(message, epoch, monotonic)
            return
        match = _INVOKED.match(message)
        if match:
            event = self._open(epoch, monotonic, header=True)
            event.invoker, event.gfp_mask = match.group(1), match.group(2)
            event.order = int(match.group(3))
            return
        match = _MEMINFO.match(message)
        if match:
            event = self._event_for_dump_line(epoch, monotonic)
            event.meminfo[match.group(1)] = {
                "usage_kb": int(match.group(2)), "limit_kb": int(match.group(3)),
                "failcnt": int(match.group(4))}
            return
        if message.startswith("oom-kill:"):
            self._summary(message, epoch, monotonic)
            return
        match = _KILLED.match(message)
        if match:
            self._killed(match, epoch, monotonic)
            return
        match = _REAPED.match(message)
        if match:
            self._reaped(match, epoch, monotonic)
            return
        match = _SELECT.match(message)
        if match:
            event = self._event_for_dump_line(epoch, monotonic)
            event.selected = {"pid": int(match.group(2)), "name": match.group(3), "score": int(match.group(4))}
            return
        match = _STATS.match(message)
        if match:
            event = self._event_for_dump_line(epoch, monotonic)
            if event.stats_memcg is None:
                event.stats_memcg = match.group(1)
            return
        match = _TASK_IN.match(message)
        if match:
            event = self._event_for_dump_line(epoch, monotonic)
            event.task_memcg, event.oom_memcg = match.group(1), match.group(2)
            return
        match = _GROUP.match(message)
        if match:
            # Printed right after the first kill: the rest of the group is killed in the same report.
            event = self._current or self._open(epoch, monotonic, header=False)
            event.group_memcg = match.group(1)
            return
        match = _CPUSET.match(message)
        if match and self._current is not None and not self._current.finished:
            self._current.cpuset = match.group(2)
            return
        if message.startswith(_NO_KILLABLE):
            self._event_for_dump_line(epoch, monotonic).no_killable = True
            return
        match = _PORT.match(message)
        if match:
            self.network.append({
                "time": iso_utc(epoch), "epoch": epoch, "bridge": match.group(1), "port": int(match.group(2)),
                "interface": match.group(3), "state": match.group(4), "vmid": interface_vmid(match.group(3))})

    def _row_or_header(self, message, epoch, monotonic):
        match = _HEADER.match(message)
        if match:
            event = self._event_for_dump_line(epoch, monotonic)
            event.columns = ["uid", "tgid", "total_vm", "rss"] + match.group(1).split()
            return
        match = _ROW.match(message)
        if not match:
            return
        event = self._event_for_dump_line(epoch, monotonic)
        fields = _row_fields(match.group(2), event.columns)
        if fields is None:
            return
        numbers, name = fields
        rss_index = event.columns.index("rss") if event.columns else 3
        rss = numbers[rss_index] if len(numbers) > rss_index else 0
        entry = event.tasks.get(name)
        if entry is None:
            event.tasks[name] = [1, rss]
        else:
            entry[0] += 1
            entry[1] += rss
        event.task_count += 1
        self._pid_owner[int(match.group(1))] = event

    def _summary(self, message, epoch, monotonic):
        event = self._event_for_dump_line(epoch, monotonic)
        text = message[len("oom-kill:"):]
        for pattern, attribute in ((_SUMMARY_MEMCG, "oom_memcg"), (_SUMMARY_TASK_MEMCG, "task_memcg"),
                                   (_SUMMARY_CONSTRAINT, "constraint"), (_SUMMARY_CPUSET, "cpuset")):
            match = pattern.search(text)
            if match:
                setattr(event, attribute, match.group(1))
        match = _SUMMARY_TASK.search(text)
        if match:
            event.summary_task = {"pid": int(match.group(2)), "name": match.group(1), "uid": int(match.group(3))}

    def _killed(self, match, epoch, monotonic):
        current = self._current
        victim = _victim(match, epoch)
        if current is not None and (not current.finished or current.group_memcg is not None):
            event = current
        else:
            event = self._open(epoch, monotonic, header=False)
        event.victims.append(victim)
        self._victim_event[victim["pid"]] = event

    def _reaped(self, match, epoch, monotonic):
        pid = int(match.group(1))
        entry = {
            "pid": pid, "name": match.group(2), "time": iso_utc(epoch), "epoch": epoch,
            "anon_rss_kb": int(match.group(3)), "file_rss_kb": int(match.group(4)),
            "shmem_rss_kb": int(match.group(5)) if match.group(5) is not None else None}
        event = self._victim_event.get(pid)
        if event is None:
            # The kill line itself was lost: keep the reaping as a partial event.
            event = _Event(epoch, monotonic, header=False)
            self.events.append(event)
            self._victim_event[pid] = event
        event.reaped.append(entry)

    # -- the end -------------------------------------------------------------
    @staticmethod
    def _memcg_attribution(event):
        for path, how in ((event.oom_memcg, "oom_memcg"), (event.task_memcg, "task_memcg"),
                          (event.stats_memcg, "memcg_stats")):
            vmid = memcg_vmid(path)
            if vmid is not None:
                return vmid, how
        return None, None

    def _attribute(self, index, event):
        """The CT an event belongs to: by its memory cgroup, else by a pid an
        earlier task dump listed, else by its command (kills whose header was
        rate-limited or lost)."""
        vmid, how = self._memcg_attribution(event)
        if vmid is not None or event.oom_memcg or event.task_memcg:
            return vmid, how
        pids = [victim["pid"] for victim in event.victims] + [entry["pid"] for entry in event.reaped]
        if event.selected:
            pids.append(event.selected["pid"])
        for pid in pids:
            owner = self._owner_of(pid, event.epoch)
            if owner is not None and owner is not event:
                vmid, _how = self._memcg_attribution(owner)
                if vmid is not None:
                    return vmid, "pid in an earlier task dump"
        return self._by_command(index, event)

    def _by_command(self, index, event):
        """Children forked after the last dump have pids no dump listed: a kill of such a
        command is the CT's whose recent task dumps (within PID_OWNER_TTL) alone hold that command."""
        names = {victim["name"] for victim in event.victims} | {entry["name"] for entry in event.reaped}
        if not names or event.epoch is None:
            return None, None
        candidates = set()
        for earlier in reversed(self.events[:index]):
            if earlier.epoch is not None and event.epoch - earlier.epoch > PID_OWNER_TTL:
                break
            if earlier.tasks and names & set(earlier.tasks):
                vmid, _how = self._memcg_attribution(earlier)
                if vmid is None:
                    return None, None          # the command also ran outside CTs: cannot tell
                candidates.add(vmid)
        if len(candidates) == 1:
            return candidates.pop(), "command in a recent task dump"
        return None, None

    def take_kills(self):
        """Kills printed since the last call, for a reader that follows the log as it grows.

        Each is ``{"vmid", "attributed_by", "pid", "name", "epoch", "uptime", "event"}``
        (``event`` the report as ``result()`` gives it); every victim is returned once.
        """
        kills = []
        for index, event in enumerate(self.events):
            if len(event.victims) <= event.reported:
                continue
            event.vmid, event.attributed_by = self._attribute(index, event)
            report = event.as_dict(self.page_kb)
            for victim in event.victims[event.reported:]:
                kills.append({"vmid": event.vmid, "attributed_by": event.attributed_by, "pid": victim["pid"],
                              "name": victim["name"], "epoch": victim["epoch"], "uptime": event.monotonic,
                              "event": report})
            event.reported = len(event.victims)
        return kills

    def forget(self, keep=64):
        """Drop all but the last ``keep`` events and the pid maps that point at dropped ones (a follower's
        memory stays bounded; attribution needs only the recent task dumps)."""
        if len(self.events) <= keep:
            return
        self.events = self.events[-keep:]
        kept = set(id(event) for event in self.events)
        if self._current is not None and id(self._current) not in kept:
            self._current = None
        self._pid_owner = dict((pid, event) for pid, event in self._pid_owner.items() if id(event) in kept)
        self._victim_event = dict((pid, event) for pid, event in self._victim_event.items() if id(event) in kept)
        self.network = self.network[-keep:]
        self.gaps = self.gaps[-keep:]

    def result(self):
        """Every event (as dicts, in log order), the veth port lines, and counts."""
        events = []
        for index, event in enumerate(self.events):
            event.vmid, event.attributed_by = self._attribute(index, event)
            events.append(event.as_dict(self.page_kb))
        return {
            "events": events,
            "network": self.network,
            "gaps": self.gaps,
            "lines": self.lines,
            "kernel_lines": self.kernel_lines,
            "first_epoch": self.first_epoch,
            "last_epoch": self.last_epoch,
        }


def parse_kernel_log(lines, reference_epoch, boot_epoch=None, tz=None, page_size=4096):
    """Parse an iterable of kernel log lines (any supported form) in one pass."""
    parser = KernelLogParser(reference_epoch, boot_epoch=boot_epoch, tz=tz, page_size=page_size)
    for line in lines:
        parser.feed(line)
    return parser.result()
