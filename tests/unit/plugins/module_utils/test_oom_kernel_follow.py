"""oom_kernel for a follower (the watch): kills taken as they are printed, memory kept bounded."""

from __future__ import annotations

import re
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.log_lines import kmsg_fields
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import KernelLogParser

KERNEL = Path(__file__).resolve().parents[2] / "fixtures" / "kernel"
_MONO = re.compile(r"^\[\s*(\d+)\.(\d+)\] ?(.*)$")


def as_kmsg(name):
    """A dmesg capture as /dev/kmsg records (prio,seq,usec,flags;message), its test cgroup renamed to PVE's."""
    records = []
    for seq, line in enumerate((KERNEL / name).read_text(encoding="utf-8").splitlines(), 100):
        match = _MONO.match(line)
        if match:
            usec = int(match.group(1)) * 1000000 + int(match.group(2).ljust(6, "0")[:6])
            records.append("6,%d,%d,-;%s" % (seq, usec, match.group(3).replace("/enva-oom-evidence/", "/lxc/")))
    return records


def test_kmsg_fields():
    assert kmsg_fields("6,1234,6463511270,-;socat invoked oom-killer: x\n") == (
        1234, 6463511270, "socat invoked oom-killer: x")
    assert kmsg_fields("4,7,1,c,caller=T12;msg") == (7, 1, "msg")
    assert kmsg_fields(" SUBSYSTEM=memory") is None
    assert kmsg_fields("[ 1.0] dmesg form") is None


def test_kills_are_taken_once_as_they_arrive():
    records = as_kmsg("host-6.18-v1-socat-storm-dmesg.log")
    parser = KernelLogParser(0.0, boot_epoch=1000.0)
    taken = []
    for record in records:
        parser.feed(record)
        taken.extend(parser.take_kills())
    assert len(taken) == 2
    assert {kill["vmid"] for kill in taken} == {2017}
    assert {kill["name"] for kill in taken} <= {"socat", "rsyslogd", "systemd-network"}
    first = taken[0]["event"]
    socat = [item for item in first["tasks_by_command"] if item["name"] == "socat"]
    assert socat and socat[0]["count"] > 100                    # the storm is in the task dump
    assert parser.take_kills() == []                            # nothing twice


def test_forget_keeps_memory_bounded_and_attribution_working():
    records = as_kmsg("host-6.18-v1-socat-storm-dmesg.log")
    parser = KernelLogParser(0.0, boot_epoch=1000.0)
    kills = 0
    for _round in range(30):
        for record in records:
            parser.feed(record)
        taken = parser.take_kills()
        kills += len(taken)
        assert {kill["vmid"] for kill in taken} == {2017}
        parser.forget(keep=4)
        assert len(parser.events) <= 4
    assert kills == 60
