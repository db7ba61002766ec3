"""/dev/kmsg records copied into kern.log as ``journalctl -k -o short-iso-precise`` prints them, and
read back by the collection's own kernel log parser."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.enva.pve.plugins.module_utils.log_lines import parse_line
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import parse_kernel_log
from enva_lab import incident, kmsg

BOOT = 1795511000 * 10 ** 6          # wall-clock time of the monotonic zero, in microseconds
UTC = datetime.timezone.utc

# Records as read() returns them from /dev/kmsg on the lab host (kernel 6.18), one per read.
OOM_RECORDS = [
    b"4,90311,553905415,-;socat invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n",
    b"6,90320,553905997,-;memory: usage 1048576kB, limit 1048576kB, failcnt 2602\n",
    b"6,90330,553906011,-;Memory cgroup stats for /lxc/2017:\n",
    b"6,90360,553906124,-;Tasks state (memory values in pages):\n",
    b"6,90361,553906130,-;[  pid  ]   uid  tgid total_pages rss rss_anon rss_file rss_shmem pgtables_bytes swapents"
    b" oom_score_adj name\n",
    b"6,90362,553906131,-;[  19669]     0 19669    23899     3255      544     2711         0    98304        0"
    b"             0 haproxy\n",
    b"6,90363,553906133,-;[  20001]     0 20001     2586      593      188      405         0    61440        0"
    b"             0 socat\n",
    b"6,90364,553964438,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,mems_allowed=0,"
    b"oom_memcg=/lxc/2017,task_memcg=/lxc/2017/ns/system.slice/haproxy.service,task=haproxy,pid=19669,uid=0\n",
    b"3,90365,553964464,-;Memory cgroup out of memory: Killed process 19669 (haproxy) total-vm:95596kB, "
    b"anon-rss:2176kB, file-rss:10844kB, shmem-rss:0kB, UID:0 pgtables:96kB oom_score_adj:0\n",
    b"6,90366,555215263,-;vmbr0: port 1(veth2017i0) entered disabled state\n SUBSYSTEM=net\n DEVICE=n7\n",
]


def test_a_record_is_parsed_with_its_sequence_time_and_level():
    record = kmsg.parse_record(OOM_RECORDS[-1])
    assert (record.sequence, record.monotonic_usec, record.facility, record.level) == (90366, 555215263, 0, 6)
    assert record.message == "vmbr0: port 1(veth2017i0) entered disabled state"


def test_escapes_are_undone():
    record = kmsg.parse_record(b"6,1,2,-;caf\\xc3\\xa9 \\x5cpath\n")
    assert record.message == "café \\path"


@pytest.mark.parametrize("data", [b"", b"garbage without a semicolon\n", b"x,y,z,-;message\n"])
def test_what_is_not_a_record_is_skipped(data):
    assert kmsg.parse_record(data) is None


def test_render_is_short_iso_precise_with_the_node_name():
    line = kmsg.render(kmsg.parse_record(OOM_RECORDS[-1]), BOOT, tz=0)
    assert line == "2026-11-24T09:12:35.215263+0000 pve1 kernel: vmbr0: port 1(veth2017i0) entered disabled state"


def test_userspace_records_get_their_own_identifier_as_journald_gives_them():
    record = kmsg.parse_record(b"30,5,1000000,-;systemd-journald[123]: Journal started\n")
    assert kmsg.render(record, BOOT, tz=3600).endswith("+0100 pve1 systemd-journald[123]: Journal started")


def test_a_multi_line_message_is_indented_as_journalctl_does():
    line = kmsg.render(kmsg.parse_record(b"6,1,0,-;first\\x0asecond\n"), BOOT, tz=0)
    first, second = line.split("\n")
    assert first.endswith("kernel: first") and second == " " * (len(first) - len("first")) + "second"


def test_the_collections_parsers_read_the_copy():
    lines = [kmsg.render(kmsg.parse_record(data), BOOT, tz=0) for data in OOM_RECORDS]
    record = parse_line(lines[-1], BOOT / 1e6, tz=UTC)
    assert record.message == "vmbr0: port 1(veth2017i0) entered disabled state"
    assert abs(record.epoch - (BOOT + 555215263) / 1e6) < 1e-5
    (event,) = parse_kernel_log(lines, BOOT / 1e6 + 600, tz=UTC)["events"]
    assert (event["vmid"], event["oom_memcg"], event["cpuset"], event["partial"]) == (2017, "/lxc/2017", "ns", False)
    assert [victim["name"] for victim in event["victims"]] == ["haproxy"]
    assert {item["name"] for item in event["tasks_by_command"]} == {"haproxy", "socat"}


def test_collect_renders_what_comes_after_the_last_record_and_reports_gaps():
    records = [b"6,%d,%d,-;line %d\n" % (number, number * 1000, number) for number in (3, 4, 5, 7, 8)]
    gaps = []
    lines, last = kmsg.collect(records, 4, BOOT, gaps.append)
    assert [line.split("kernel: ")[1] for line in lines] == ["line 5\n", "line 7\n", "line 8\n"]
    assert last == 8 and len(gaps) == 1 and gaps[0].endswith("kernel records 6-6 were overwritten before they could be read")
    lines, last = kmsg.collect(records, None, BOOT, gaps.append)
    assert len(lines) == 5 and last == 8 and len(gaps) == 2


def test_reproduce_reads_the_time_back_from_a_copied_line():
    line = kmsg.render(kmsg.parse_record(OOM_RECORDS[7]), BOOT, tz=3600)
    assert abs(incident.kernel_epoch(line) - (BOOT + 553964438) / 1e6) < 1e-6
