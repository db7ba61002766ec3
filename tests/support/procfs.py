"""What the tests and benchmarks read of a process from /proc: its memory, its CPU time, its TCP send queues."""

from __future__ import annotations

import os

_RAISE = object()


def status_kib(pid, field, default=_RAISE):
    """The ``field`` (VmRSS, VmHWM, ...) of /proc/PID/status, KiB; when the process or the field is gone:
    ``default``, or AssertionError naming them when no default is given."""
    try:
        with open("/proc/%d/status" % pid, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        if default is _RAISE:
            raise AssertionError("no /proc/%d/status" % pid) from None
        return default
    if default is _RAISE:
        raise AssertionError("no %s for %d" % (field, pid))
    return default


def cpu_seconds(pid):
    """User + system CPU seconds of a running process so far (from /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_send_queue_bytes(port):
    """Bytes the kernel holds in the send queues of the established TCP (IPv4) connections on local ``port``
    (/proc/net/tcp tx_queue); they count against a CT's memory cgroup as its processes' RSS does."""
    total = 0
    with open("/proc/net/tcp", encoding="ascii") as handle:
        for line in handle.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                total += int(fields[4].split(":")[0], 16)
    return total
