"""The kernel log copy: every ``/dev/kmsg`` record appended to ``<labdir>/log/kern.log`` the way
``journalctl -k -o short-iso-precise`` prints it on a PVE 8 node (systemd 252):
``2024-11-24T00:35:38.412345+0100 pve1 kernel: Memory cgroup out of memory: Killed process ...``.

The host has no journald and dmesg's ring buffer wraps during a big OOM dump (the task dump
of 5,000 socat pushes the event's header out), so a follower started by ``labctl up`` reads
``/dev/kmsg`` as journald does and keeps the lines (see :func:`follow`). The copy's last sequence
number is kept next to it, so a restarted follower continues without repeating lines.
"""

import errno
import os
import re
import select
import signal
import time

from enva_lab import journal, settings

_SYSLOG_IDENT = re.compile(r"^([^\s\[:]+)(?:\[(\d+)\])?: (.*)$", re.S)
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


class Record:
    """One ``/dev/kmsg`` record."""

    def __init__(self, sequence, monotonic_usec, facility, level, message):
        self.sequence = sequence
        self.monotonic_usec = monotonic_usec
        self.facility = facility
        self.level = level
        self.message = message


def parse_record(data):
    """A Record from one ``read()`` of ``/dev/kmsg``: ``PRI,SEQ,USEC,FLAGS[,...];MESSAGE`` then
    `` KEY=VALUE`` lines; the message's ``\\xNN`` escapes are undone. None for anything else."""
    head, sep, rest = data.partition(b";")
    if not sep:
        return None
    fields = head.split(b",")
    try:
        priority, sequence, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None
    message = rest.split(b"\n", 1)[0]
    message = _ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), message)
    return Record(sequence, usec, priority >> 3, priority & 7, message.decode("utf-8", "replace"))


def render(record, boot_epoch_usec, tz=None):
    """The ``journalctl -k -o short-iso-precise`` line for a record (journald's identifier rules:
    ``kernel`` for the kernel facility, else the ``ident[pid]:`` prefix of the message)."""
    ident, message = "kernel", record.message
    if record.facility != 0:
        match = _SYSLOG_IDENT.match(message)
        if match:
            ident = "%s[%s]" % (match.group(1), match.group(2)) if match.group(2) else match.group(1)
            message = match.group(3)
    stamp = journal.timestamp(boot_epoch_usec + record.monotonic_usec, "short-iso-precise", tz)
    prefix = "%s %s %s: " % (stamp, settings.NODE, ident)
    return prefix + message.replace("\n", "\n" + " " * len(prefix))   # journalctl indents continuation lines


def boot_epoch_usec():
    """Wall-clock time of the kernel's monotonic zero, in microseconds (what kmsg times count from)."""
    realtime = time.clock_gettime_ns(time.CLOCK_REALTIME)
    monotonic = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return (realtime - monotonic) // 1000


def _prioritise():
    """Run before ordinary tasks: a big OOM report writes thousands of records in a few milliseconds,
    five times what the 128 KiB ring buffer holds. (Not bound to a CPU: the scheduler moves a
    real-time task off a CPU that is busy printing in the kernel, which cannot be preempted here.)"""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (AttributeError, OSError):
        os.nice(-20)


def read_last(seq_file):
    """The sequence number of the last record in the copy (None before the first)."""
    try:
        with open(seq_file) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _save_last(seq_file, last):
    with open(seq_file + ".new", "w") as handle:
        handle.write("%d\n" % last)
    os.replace(seq_file + ".new", seq_file)


def _log(text):
    print(text, flush=True)


def collect(raw, last, boot, report=_log):
    """``(lines, last)``: the copy's lines for the records in ``raw`` that come after ``last``, and the new
    last sequence number. A jump in the numbers is reported: those records were overwritten before
    they could be read."""
    lines = []
    for data in raw:
        record = parse_record(data)
        if record is None or (last is not None and record.sequence <= last):
            continue
        if last is not None and record.sequence > last + 1:
            report("%s: kernel records %d-%d were overwritten before they could be read"
                   % (time.strftime("%Y-%m-%dT%H:%M:%S"), last + 1, record.sequence - 1))
        lines.append(render(record, boot) + "\n")
        last = record.sequence
    return lines, last


def follow(kern_log, seq_file, device="/dev/kmsg", burst_seconds=2.0):
    """Append every new kernel record to ``kern_log`` until SIGTERM (the follower's main loop).

    Once records come, the follower polls without sleeping until none has come for
    ``burst_seconds``: while a CPU prints an OOM report the wake-up that ends a sleep can come too
    late, and the ring buffer is overwritten meanwhile. The last sequence number is saved at most
    once a second and when a burst is over, so that nothing slow sits between two reads.
    """
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    _prioritise()
    last = saved = read_last(seq_file)
    fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    if last is None:
        os.lseek(fd, 0, os.SEEK_END)     # a first start copies what happens from now on
    boot = boot_epoch_usec()
    busy_until = saved_at = 0.0
    with open(kern_log, "a", encoding="utf-8") as out:
        while not stopping:
            if time.monotonic() > busy_until:
                try:
                    if not select.select([fd], [], [], 0.5)[0]:
                        continue
                except InterruptedError:
                    continue
            lines, last = collect(_available(fd), last, boot)
            now = time.monotonic()
            if lines:
                busy_until = now + burst_seconds
                out.write("".join(lines))
                out.flush()
            if last != saved and (not lines or now - saved_at > 1.0):
                _save_last(seq_file, last)
                saved, saved_at = last, now
    if last != saved:
        _save_last(seq_file, last)
    os.close(fd)


def _available(fd, limit=2000):
    """The records the device has now (at most ``limit``, so that rendering keeps up as they come)."""
    raw = []
    while len(raw) < limit:
        try:
            raw.append(os.read(fd, 8192))
        except BlockingIOError:
            break
        except OSError as error:
            if error.errno != errno.EPIPE:      # EPIPE: overwritten records; the next read goes on
                raise
    return raw
