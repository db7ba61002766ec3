# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What part of a node's kernel log could not be read: its gaps, so "no OOM in the log" is not read as "no OOM".

Pure functions over log records (``log_lines.Record``) and plain values. A gap is a dict:

``kind``        what was lost (below), ``count`` how many lines or messages (None where unknown), ``lines`` how many
                log lines reported it, ``first_time``/``last_time`` (ISO 8601 UTC, None where unknown), ``source``
                (the kernel function, the unit, the command), ``vmid`` (the CT a unit names), ``message`` (one line
                or error as written), ``affects`` (``kernel_log``, ``lifecycle_log`` or ``none``) and ``meaning``
                (what it means for the verdict, in words).

Kinds, and where they come from (systemd 257 journald, Linux 6.x):

* ``journal_missed``: journald found a gap in /dev/kmsg's sequence numbers and wrote ``Missed N kernel messages``
  (MESSAGE_ID e9bf28e6e834481bb6f48f548ad13606, SD_MESSAGE_JOURNAL_MISSED, ``_TRANSPORT=driver``,
  ``SYSLOG_IDENTIFIER=systemd-journald``);
* ``journal_overrun``: journald's poll on /dev/kmsg saw EPOLLERR and it logged ``/dev/kmsg buffer overrun, some
  messages lost.`` to /dev/kmsg, which it reads back with ``_TRANSPORT=kernel`` and
  ``SYSLOG_IDENTIFIER=systemd-journald``;
* ``journal_dropped``: journald's per-unit rate limit: ``Suppressed N messages from UNIT`` (MESSAGE_ID
  a596d6fe7bfa4994828e72309e95d61e, SD_MESSAGE_JOURNAL_DROPPED, field ``N_DROPPED``); it affects the lifecycle
  of a CT when UNIT is its ``pve-container@VMID.service`` (kernel lines are never rate-limited by journald);
* ``kernel_ratelimit``: lib/ratelimit.c's ``FUNC: N callbacks suppressed``; ``oom_kill_process`` is the OOM
  killer's limit on its report header (memory cgroup, task dump); the kill lines themselves are not limited;
* ``printk_suppressed``: ``printk: N messages suppressed``; ``devkmsg_ratelimit``:
  ``[printk: ]NAME: N output lines suppressed due to ratelimiting`` (lines a program wrote to /dev/kmsg);
* ``no_kernel_log``: the journal holds no kernel line for this boot (journald with ``ReadKMsg=no``, or no
  /dev/kmsg where it runs); ``dmesg_unreadable``: dmesg failed (``kernel.dmesg_restrict``, no /dev/kmsg);
  ``dmesg_starts_late``: the ring buffer's first line is later than the window's start;
  ``journald_notices_unreadable``: the query for journald's own notices failed.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.enva.pve.plugins.module_utils.log_lines import iso_utc, parse_line

__metaclass__ = type

JOURNAL_MISSED_ID = "e9bf28e6e834481bb6f48f548ad13606"
JOURNAL_DROPPED_ID = "a596d6fe7bfa4994828e72309e95d61e"
JOURNALD = "systemd-journald"
JOURNALD_NOTICES = ["_TRANSPORT=driver", "SYSLOG_IDENTIFIER=%s" % JOURNALD]
"""journalctl matches of journald's own notices (Missed ..., Suppressed ...); both fields must match, so the
overrun line (``_TRANSPORT=kernel``) comes only with the kernel query and is not counted twice."""
KERNEL_BOOT_PROBE = ["_TRANSPORT=kernel", "-b", "-n", "1"]
"""journalctl arguments that show whether the journal holds any kernel line of this boot."""
OOM_FUNCTIONS = ("oom_kill_process", "dump_header", "out_of_memory", "mem_cgroup_out_of_memory")
"""Kernel functions whose rate-limited output is part of an OOM report."""
DMESG_LATE_SLACK = 2.0
"""Seconds a dmesg ring buffer may start after the window's start before that counts as a gap."""

_CALLBACKS = re.compile(r"^(\S+): (\d+) callbacks suppressed\s*$")
_DEVKMSG = re.compile(r"^(?:printk: )?(.+?): (\d+) output lines suppressed due to ratelimiting\s*$")
_PRINTK = re.compile(r"^printk: (\d+) messages suppressed\.?\s*$")
_MISSED = re.compile(r"^Missed (\d+) kernel messages\s*$")
_OVERRUN = "/dev/kmsg buffer overrun"
_DROPPED = re.compile(r"^Suppressed (\d+) messages from (\S+)\s*$")
_CT_UNIT = re.compile(r"^pve-container@(\d+)\.service$")

MEANING = {
    "journal_missed": "journald lost these kernel lines before it stored them; an OOM report among them is not in "
                      "this evidence, so no OOM seen here does not mean none happened",
    "journal_overrun": "the kernel overwrote /dev/kmsg records before journald read them; lines are missing from "
                       "the journal, so no OOM seen here does not mean none happened",
    "journal_dropped": "journald's rate limit dropped lines of this unit; start/stop events may be missing",
    "kernel_ratelimit_oom": "the kernel left out this many OOM report headers (memory cgroup, task dump); the kills "
                            "still show, as partial events that may not be attributed to a CT",
    "kernel_ratelimit": "the kernel left out lines of this function; not part of an OOM report",
    "printk_suppressed": "the kernel's printk rate limit dropped messages; an OOM report may be among them",
    "devkmsg_ratelimit": "lines this program wrote to /dev/kmsg were dropped; kernel OOM reports are not affected",
    "no_kernel_log": "the journal holds no kernel line of this boot (journald does not read /dev/kmsg: ReadKMsg=no, "
                     "or no /dev/kmsg where it runs); OOM reports of this boot are not in the journal",
    "dmesg_instead": "the kernel lines were read from dmesg instead (this boot only, as far as its ring buffer goes)",
    "dmesg_unreadable": "dmesg could not read the kernel ring buffer either (kernel.dmesg_restrict=1 without root, "
                        "or no /dev/kmsg); no kernel OOM report could be read",
    "dmesg_starts_late": "the ring buffer starts after the window's start (it wrapped, or the node booted later); "
                         "an OOM before its first line is not in this evidence",
    "journald_notices_unreadable": "journald's own notices could not be read, so kernel lines it lost go unnoticed",
}


def _gap(kind, message, count=None, epoch=None, source=None, affects="kernel_log", vmid=None, meaning=None):
    return {"kind": kind, "count": count, "lines": 1, "first_epoch": epoch, "last_epoch": epoch, "source": source,
            "vmid": vmid, "message": message, "affects": affects, "meaning": meaning or MEANING[kind]}


def record_gap(record):
    """The gap one log record reports (a kernel rate-limit line, or a journald notice), or None."""
    if record is None:
        return None
    message = record.message.strip()
    if record.ident == JOURNALD:
        match = _MISSED.match(message)
        if match:
            return _gap("journal_missed", message, int(match.group(1)), record.epoch, source=JOURNALD)
        if message.startswith(_OVERRUN):
            return _gap("journal_overrun", message, None, record.epoch, source=JOURNALD)
        match = _DROPPED.match(message)
        if match:
            unit = match.group(2)
            ct = _CT_UNIT.match(unit)
            return _gap("journal_dropped", message, int(match.group(1)), record.epoch, source=unit,
                        affects="lifecycle_log" if ct else "none", vmid=int(ct.group(1)) if ct else None)
        return None
    if record.ident not in (None, "kernel") or "suppressed" not in message:
        return None
    match = _CALLBACKS.match(message)
    if match:
        oom = match.group(1) in OOM_FUNCTIONS
        return _gap("kernel_ratelimit", message, int(match.group(2)), record.epoch, source=match.group(1),
                    affects="kernel_log" if oom else "none",
                    meaning=MEANING["kernel_ratelimit_oom" if oom else "kernel_ratelimit"])
    match = _PRINTK.match(message)
    if match:
        return _gap("printk_suppressed", message, int(match.group(1)), record.epoch, source="printk")
    match = _DEVKMSG.match(message)
    if match:
        return _gap("devkmsg_ratelimit", message, int(match.group(2)), record.epoch, source=match.group(1),
                    affects="none")
    return None


def line_gaps(lines, reference_epoch):
    """The gaps reported in log lines (any form ``log_lines`` reads), unmerged."""
    gaps = []
    for line in lines:
        gap = record_gap(parse_line(line, reference_epoch))
        if gap is not None:
            gaps.append(gap)
    return gaps


def journald_notices(run, since_arguments, reference_epoch):
    """The gaps journald's own notices report (``run(argv) -> (rc, out, err)`` runs journalctl); a query that
    fails is a gap of its own."""
    rc, out, err = run(["journalctl", "--no-pager", "-o", "json"] + JOURNALD_NOTICES + list(since_arguments))
    if rc != 0:
        return [source_gap("journald_notices_unreadable", (err or out).strip() or "rc=%s" % rc, affects="none")]
    return line_gaps(out.splitlines(), reference_epoch)


def merge(gaps, since_epoch=None):
    """Gaps of one kind and source folded into one: counts summed, first and last time, the last message.

    Gaps reported before ``since_epoch`` are left out (a saved log holds more than the window)."""
    merged = {}
    for gap in gaps:
        if since_epoch is not None and gap["last_epoch"] is not None and gap["last_epoch"] < since_epoch:
            continue
        key = (gap["kind"], gap["source"], gap["affects"])
        into = merged.get(key)
        if into is None:
            merged[key] = dict(gap)
            continue
        into["lines"] += gap["lines"]
        if gap["count"] is not None:
            into["count"] = (into["count"] or 0) + gap["count"]
        for name, pick in (("first_epoch", min), ("last_epoch", max)):
            known = [value for value in (into[name], gap[name]) if value is not None]
            into[name] = pick(known) if known else None
        into["message"] = gap["message"]
    result = []
    for gap in sorted(merged.values(), key=lambda item: item["first_epoch"] or 0.0):   # ties: as found
        gap["first_time"] = iso_utc(gap.pop("first_epoch"))
        gap["last_time"] = iso_utc(gap.pop("last_epoch"))
        result.append(gap)
    return result


def source_gap(kind, message, first_epoch=None, last_epoch=None, affects="kernel_log", meaning=None):
    """A gap of the source itself (no kernel log, dmesg unreadable or starting late), not of a line."""
    gap = _gap(kind, message, None, first_epoch, source=None, affects=affects, meaning=meaning)
    gap["lines"] = 0
    gap["last_epoch"] = last_epoch
    return gap


def dmesg_starts_late(first_epoch, since_epoch):
    """The gap of a dmesg ring buffer whose first line is later than the window's start, or None."""
    if first_epoch is None or since_epoch is None or first_epoch <= since_epoch + DMESG_LATE_SLACK:
        return None
    return source_gap("dmesg_starts_late", "the ring buffer's first line is at %s, the window starts at %s"
                      % (iso_utc(first_epoch), iso_utc(since_epoch)), since_epoch, first_epoch)


def warning(gap):
    """One gap as a module warning."""
    parts = ["kernel_log gap (%s)" % gap["kind"]]
    if gap["source"]:
        parts.append("from %s" % gap["source"])
    if gap["count"] is not None:
        parts.append("%d line(s) or message(s)" % gap["count"])
    if gap["first_time"]:
        parts.append("%s to %s" % (gap["first_time"], gap["last_time"] or gap["first_time"]))
    return "%s: %s (%r)" % (", ".join(parts), gap["meaning"], gap["message"])


def apply(reports, gaps):
    """Mark each CT's verdict with what the gaps leave out: ``kernel_log_complete`` (False when a gap affects the
    kernel log), ``lifecycle_log_complete`` (False when the CT's unit lost lines) and ``log_gaps`` (their kinds)."""
    kernel = [gap for gap in gaps if gap["affects"] == "kernel_log"]
    for vmid, report in reports.items():
        lifecycle = [gap for gap in gaps if gap["affects"] == "lifecycle_log" and gap["vmid"] == int(vmid)]
        verdict = report["verdict"]
        verdict["kernel_log_complete"] = not kernel
        verdict["lifecycle_log_complete"] = not lifecycle
        verdict["log_gaps"] = sorted(set(gap["kind"] for gap in kernel + lifecycle))
    return reports
