"""oom_kernel: kernel OOM reports from 4.x to 6.x, in every log form, for every CT in one pass."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import (
    interface_vmid, memcg_vmid, parse_kernel_log)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
KERNEL = FIXTURES / "kernel"
UTC = datetime.timezone.utc
REF = datetime.datetime(2026, 12, 31, tzinfo=UTC).timestamp()


def parse(name, **kwargs):
    with open(KERNEL / name, encoding="utf-8", errors="replace") as handle:
        return parse_kernel_log(handle, REF, tz=UTC, **kwargs)


def complete(result):
    return [event for event in result["events"] if not event["partial"]]


@pytest.mark.parametrize("path, vmid", [
    ("/lxc/2017", 2017), ("/lxc/2017/ns", 2017), ("/lxc/703/ns/system.slice/x.service", 703),
    ("/lxc.monitor/703", 703), ("/lxc.payload.2017", 2017), ("/lxc.payload/2017/system.slice", 2017),
    ("/", None), ("", None), (None, None), ("/system.slice/pvestatd.service", None), ("/lxc", None),
    ("/lxc/haproxy", None), ("/lxcfoo/2017", None), ("/enva-fixture/9990", None), ("/machine.slice/lxc/2017", None),
])
def test_memcg_vmid(path, vmid):
    assert memcg_vmid(path) == vmid


@pytest.mark.parametrize("name, vmid", [
    ("veth2017i0", 2017), ("veth101i3", 101), ("tap100i0", 100), ("fwpr2017p0", 2017), ("eno1", None),
    ("vethA1b2C3", None), ("", None)])
def test_interface_vmid(name, vmid):
    assert interface_vmid(name) == vmid


# -- the incident (PVE 8, kernel 6.8, cgroup v2) in two log forms -------------------------------

@pytest.mark.parametrize("name", ["incident-2017-v2.journal.jsonl", "incident-2017-v2.short-iso-precise.log"])
def test_incident_2017(name):
    result = parse(name)
    events = result["events"]
    assert {event["vmid"] for event in events} == {2017}
    first, second = complete(result)
    assert first["time"] == "2024-11-23T23:35:38.412345+00:00"     # 00:35:38 at +01:00
    assert (first["oom_memcg"], first["task_memcg"], first["constraint"]) == (
        "/lxc/2017", "/lxc/2017/ns", "CONSTRAINT_MEMCG")
    assert first["invoker"] == "socat" and first["gfp_mask"] == "0xcc0(GFP_KERNEL)" and first["order"] == 0
    assert first["memory"] == {"usage_kb": 1048576, "limit_kb": 1048576, "failcnt": 0}
    assert first["swap"]["limit_kb"] == 1048576 and not first["swap_is_memory_plus_swap"]
    assert first["tasks_total"] == 1372
    assert first["tasks_by_command"][0] == {"name": "socat", "count": 1361, "rss_kb": 988800}
    victim = first["victims"][0]
    assert (victim["pid"], victim["name"], victim["anon_rss_kb"], victim["file_rss_kb"], victim["uid"]) == (
        1974108, "in:imuxsock", 2816, 1024, 100000)
    assert [entry["pid"] for entry in first["reaped"]] == [1974108]
    assert second["victims"][0]["name"] == "systemd-network" and second["tasks_by_command"][0]["count"] == 1200
    # Rate-limited kills print no header: kept as partial events, tied to CT 2017 by the earlier dump.
    partial = [event for event in events if event["partial"]]
    assert [event["victims"][0]["pid"] for event in partial] == [2362337, 2361007, 2361012, 2361044, 2361050]
    assert {event["attributed_by"] for event in partial} == {"pid in an earlier task dump"}
    assert partial[0]["missing"] == ["header", "task dump", "memory cgroup"]
    assert partial[0]["reaped"][0]["name"] == "socat"          # from a MESSAGE byte array in the JSON form
    ports = [(entry["vmid"], entry["interface"], entry["state"]) for entry in result["network"]]
    assert ports[0] == (2017, "veth2017i0", "disabled")
    assert result["network"][0]["time"] == "2024-11-23T23:36:07.412345+00:00"


def _without_float_times(value):
    """Drop epoch/uptime floats (the JSON form carries microseconds as integers, the text as decimals)."""
    if isinstance(value, dict):
        return {k: _without_float_times(v) for k, v in value.items() if k not in ("epoch", "uptime")}
    if isinstance(value, list):
        return [_without_float_times(v) for v in value]
    return value


def test_both_forms_of_the_incident_agree():
    json_events = parse("incident-2017-v2.journal.jsonl")["events"]
    text_events = parse("incident-2017-v2.short-iso-precise.log")["events"]
    assert len(json_events) == 7
    assert _without_float_times(json_events) == _without_float_times(text_events)


# -- real text captured on this machine (6.18, cgroup v1, nested memcg) -----------------------

@pytest.mark.parametrize("name, boot, expected_time", [
    ("host-6.18-v1-dmesg-iso.log", None, "2026-11-24T06:36:44.791634+00:00"),
    ("host-6.18-v1-dmesg.log", 1795497015.0, "2026-11-24T06:36:44.791634+00:00"),
    ("host-6.18-v1-dmesg.log", None, None),
])
def test_real_6_18_report(name, boot, expected_time):
    (event,) = parse(name, boot_epoch=boot)["events"]
    assert event["time"] == expected_time
    assert not event["partial"] and event["missing"] == []
    assert (event["oom_memcg"], event["task_memcg"]) == ("/enva-fixture/9990", "/enva-fixture/9990/ns")
    assert event["vmid"] is None                                   # not a CT's cgroup
    assert event["swap_is_memory_plus_swap"] and event["swap"]["limit_kb"] == 49152
    assert event["kmem"]["usage_kb"] == 2108
    assert event["tasks_by_command"] == [
        {"name": "sleep", "count": 30, "rss_kb": 48476}, {"name": "python3", "count": 1, "rss_kb": 45704}]
    assert event["victims"][0]["pgtables_kb"] == 144 and event["victims"][0]["oom_score_adj"] == 0


# -- older kernels ---------------------------------------------------------------------------

def test_kernel_4_15_kern_log_nested_memcg():
    result = parse("kernel-4.15-v1-703.kern.log")
    (event,) = result["events"]
    assert event["vmid"] == 703 and event["attributed_by"] == "oom_memcg"
    assert event["oom_memcg"] == "/lxc/703"
    assert event["task_memcg"] == "/lxc/703/ns/system.slice/apache2.service"   # from "Task in ... killed as a result of limit of"
    assert event["cpuset"] == "ns"
    assert event["uptime"] == pytest.approx(811203.221840)
    assert event["selected"] == {"pid": 22877, "name": "apache2", "score": 149}  # "Kill process ... sacrifice child"
    assert event["tasks_by_command"][0] == {"name": "apache2", "count": 4, "rss_kb": (2210 + 61200 + 60110 + 62911) * 4}
    victim = event["victims"][0]
    assert (victim["pid"], victim["anon_rss_kb"], victim["shmem_rss_kb"], victim["uid"]) == (22877, 250980, 0, None)
    assert event["reaped"][0]["pid"] == 22877
    assert result["kernel_lines"] == 28                               # the systemd line is not the kernel's
    assert result["network"][0]["vmid"] == 703


def test_kernel_4_4_dmesg_t_nr_ptes_layout():
    (event,) = parse("kernel-4.4-v1-105-dmesg-T.log")["events"]
    assert event["time"] == "2017-06-13T09:14:52+00:00"
    assert event["vmid"] == 105 and event["cpuset"] == "105"
    assert event["gfp_mask"] == "0x24000c0"
    assert event["tasks_by_command"][0] == {"name": "java", "count": 1, "rss_kb": 521544 * 4}
    assert event["memory"]["failcnt"] == 3390
    victim = event["victims"][0]
    assert (victim["name"], victim["anon_rss_kb"], victim["shmem_rss_kb"]) == ("java", 2084108, None)


def test_global_oom_is_attributed_by_task_memcg():
    (event,) = parse("global-oom-2018-dmesg-iso.log")["events"]
    assert event["constraint"] == "CONSTRAINT_NONE" and event["oom_memcg"] is None
    assert (event["vmid"], event["attributed_by"]) == (2018, "task_memcg")
    assert event["victims"][0]["context"] == "Out of memory"
    assert event["time"] == "2025-02-10T10:20:05.100200+00:00"


# -- interleaved CTs, wrapped ring buffer, garbage ---------------------------------------------

def test_interleaved_events_of_two_cts_are_separated():
    result = parse("interleaved-101-703-v2.short.log")
    by_vmid = {}
    for event in result["events"]:
        by_vmid.setdefault(event["vmid"], []).append(event)
    ct101, ct703 = by_vmid[101], by_vmid[703]
    assert ct101[0]["task_memcg"] == "/lxc/101/ns/system.slice/app.service"
    assert [entry["pid"] for entry in ct101[0]["reaped"]] == [88120]      # reaped line arrived inside 703's dump
    assert ct101[0]["tasks_by_command"][1]["name"] == "npm start"          # a command name with a space
    assert ct703[0]["tasks_total"] == 3 and ct703[0]["victims"][0]["pid"] == 91501
    assert [entry["pid"] for entry in ct703[0]["reaped"]] == [91501]
    # header-less kill of a pid from 101's dump, after 703's report
    assert ct101[1]["partial"] and ct101[1]["victims"][0]["name"] == "npm start"
    # the truncated summary line names no CT: kept, unattributed
    assert [event["missing"] for event in by_vmid[None]] == [["header", "task dump", "kill line", "memory cgroup"]]


def test_wrapped_ring_buffer_keeps_partial_events():
    events = parse("wrapped-2017-v1-dmesg.log")["events"]
    first = events[0]
    assert first["partial"] and first["missing"] == ["header"]
    assert first["vmid"] == 2017 and first["tasks_by_command"][0] == {"name": "socat", "count": 6, "rss_kb": 4560}
    assert first["memory"] is None
    assert [event["vmid"] for event in events] == [2017, 2017, 2017, None]
    assert events[1]["reaped"][0]["pid"] == 9913
    assert events[3]["reaped"][0]["name"] == "rsyslogd" and events[3]["victims"] == []


@pytest.mark.parametrize("lines", [
    ["", "\x00\x01\x02", "random words", "[  pid  ] not a header", "[12] 1 2", "oom-kill:", "Killed process x (y)",
     "memory: usage lots", "{\"MESSAGE\": 5}", "Nov 24 00:35:38 pve1 kernel: [ 1.0]"],
])
def test_garbage_makes_no_victims(lines):
    result = parse_kernel_log(lines, REF)
    assert all(not event["victims"] for event in result["events"])
    assert result["lines"] == len(lines)


def test_dump_rows_without_their_header_use_the_leading_numbers():
    result = parse_kernel_log([
        "[ 10.0] [   9912]     0  9912     2054      190       64      126         0    49152        0             0 socat",
        "[ 10.1] [   9913]     0  9913     2054      200       64      126         0    49152        0             0 socat",
    ], REF)
    (event,) = result["events"]
    assert event["tasks_by_command"] == [{"name": "socat", "count": 2, "rss_kb": 1560}]


def test_page_size_scales_rss():
    (event,) = parse("kernel-4.4-v1-105-dmesg-T.log", page_size=65536)["events"]
    assert event["tasks_by_command"][0]["rss_kb"] == 521544 * 64


def test_oom_group_kill_keeps_every_victim_in_one_event():
    messages = [
        "app invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,mems_allowed=0,oom_memcg=/lxc/300,"
        "task_memcg=/lxc/300/ns/app.service,task=app,pid=10,uid=0",
        "Memory cgroup out of memory: Killed process 10 (app) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, "
        "UID:0 pgtables:4kB oom_score_adj:0",
        "Tasks in /lxc/300/ns/app.service are going to be killed due to memory.oom.group set",
        "Memory cgroup out of memory: Killed process 11 (worker) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
        "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]
    (event,) = parse_kernel_log(["[ %d.0] %s" % (i, m) for i, m in enumerate(messages)], REF)["events"]
    assert [victim["pid"] for victim in event["victims"]] == [10, 11]
    assert event["oom_group"] == "/lxc/300/ns/app.service" and event["vmid"] == 300


def test_pid_attribution_expires():
    lines = [
        "[ 100.0] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,mems_allowed=0,oom_memcg=/lxc/7,"
        "task_memcg=/lxc/7/ns,task=a,pid=1,uid=0",
        "[ 100.0] [    500]     0   500     2054      190        0             0 a",
        "[ 100.1] Memory cgroup out of memory: Killed process 1 (a)",
        "[ 150.0] Memory cgroup out of memory: Killed process 500 (a)",
        "[5000.0] Memory cgroup out of memory: Killed process 500 (a)",
    ]
    events = parse_kernel_log(lines, REF, boot_epoch=0.0)["events"]
    assert [event["vmid"] for event in events] == [7, 7, None]


def _summary(vmid, pid, name):
    return ("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,mems_allowed=0,oom_memcg=/lxc/%d,"
            "task_memcg=/lxc/%d/ns,task=%s,pid=%d,uid=0" % (vmid, vmid, name, pid))


@pytest.mark.parametrize("dumps, kill_at, vmid, how", [
    # a socat child forked after the dump: its pid is new, its command is in 2017's dump only
    ([(2017, "socat")], 30.0, 2017, "command in a recent task dump"),
    ([(2017, "socat"), (101, "node")], 30.0, 2017, "command in a recent task dump"),
    ([(2017, "socat"), (101, "socat")], 30.0, None, None),        # two CTs ran socat: cannot tell
    ([(2017, "socat")], 5000.0, None, None),                       # too long after the dump
])
def test_new_pid_of_a_dumped_command(dumps, kill_at, vmid, how):
    lines = []
    for n, (ct, name) in enumerate(dumps):
        lines += ["[ %d.0] [  %5d]     0 %5d     2054      190        0             0 %s" % (10 + n, ct, ct, name),
                  "[ %d.0] %s" % (10 + n, _summary(ct, ct, name)),
                  "[ %d.1] Memory cgroup out of memory: Killed process %d (%s)" % (10 + n, ct, name)]
    lines.append("[%.1f] Memory cgroup out of memory: Killed process 77777 (socat)" % kill_at)
    event = parse_kernel_log(lines, REF, boot_epoch=0.0)["events"][-1]
    assert (event["vmid"], event["attributed_by"]) == (vmid, how)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=40))
def test_any_text_never_raises(lines):
    result = parse_kernel_log(lines, REF, boot_epoch=0.0)
    assert result["lines"] == len(lines)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=14),
                          st.text(alphabet="abcdefghijklmnopqrstuvwxyz 0123456789.", max_size=80)), max_size=20))
def test_garbage_between_the_lines_changes_nothing(insertions):
    lines = (KERNEL / "wrapped-2017-v1-dmesg.log").read_text().splitlines()
    expected = parse_kernel_log(lines, REF, boot_epoch=0.0)["events"]
    noisy = list(lines)
    for position, garbage in sorted(insertions, reverse=True):
        noisy.insert(position, garbage)
    assert parse_kernel_log(noisy, REF, boot_epoch=0.0)["events"] == expected
