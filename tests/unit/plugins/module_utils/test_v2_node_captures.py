"""Real captures from a cgroup v2 VM node (``labctl vm``, tests/unit/fixtures/vm-node/README.md): the CT 2017
OOM as the node's journal keeps it, and the stall at memory.high that leaves no kernel line."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import read_counters
from ansible_collections.enva.pve.plugins.module_utils.ct_census import parse_stat, summarize
from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import parse_lifecycle
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import parse_kernel_log
from ansible_collections.enva.pve.plugins.module_utils.oom_report import build_report, memory_high_stall, verdict

NODE = Path(__file__).resolve().parents[2] / "fixtures" / "vm-node"
UTC = datetime.timezone.utc
REF = datetime.datetime(2026, 12, 31, tzinfo=UTC).timestamp()
MIB = 1 << 20
CONFIG = {"memory_mb": 128, "swap_mb": 128}


def kernel(name):
    with open(NODE / "kernel" / name, encoding="utf-8", errors="replace") as handle:
        return parse_kernel_log(handle, REF, tz=UTC)


def lifecycle():
    with open(NODE / "lifecycle" / "pve-container@2017.jsonl") as handle:
        return parse_lifecycle(handle, REF, tz=UTC)


@pytest.mark.parametrize("name", ["oom-2017.journal.jsonl", "oom-2017.short-iso-precise.log"])
def test_the_oom_on_the_node_from_its_journal_alone(name):
    """The CT's cgroup is gone once it stopped (no counters): the node's journal is the whole record."""
    reports, unattributed = build_report(kernel(name), lifecycle(), [2017], {2017: None}, {}, {2017: CONFIG})
    report = reports[2017]
    assert unattributed == []
    (incident,) = report["incidents"]
    assert incident["oom_memcg"] == "/lxc/2017" and incident["constraint"] == "CONSTRAINT_MEMCG"
    assert [victim["name"] for victim in incident["victims"]] == ["haproxy", "systemd"]   # largest anon RSS first
    assert "/lxc/2017/ns/system.slice/haproxy.service" in incident["task_memcgs"]
    assert incident["memory_at_oom"]["limit_kb"] == 128 * 1024
    assert incident["top_processes"][0]["name"] == "socat" and incident["top_processes"][0]["count"] == 399
    assert incident["stop"]["event"] == "failed" and incident["stop"]["detail"] == "exit-code"
    the_verdict = report["verdict"]
    assert the_verdict["oom_killed"] and the_verdict["fork_storm"] and the_verdict["oom_kills_in_log"] == 2
    assert the_verdict["likely_cause"].startswith("socat fork storm: 399 socat processes in the OOM task dump")
    assert not the_verdict["memory_high_stall"] and report["stall"] is None
    assert report["recommended_memory_mb"] == 256


def test_the_units_own_words_on_the_node():
    messages = [event["message"] for event in lifecycle()]
    assert any("Failed with result 'exit-code'" in message for message in messages)
    assert [event["event"] for event in lifecycle()].count("started") >= 1


def counters(usage_mb=60, high_events=0, max_events=0, oom_kills=0, some10=0.0, full10=0.0, memory_mb=96):
    """cgroup_memory.normalize()'s v2 shape for a CT of ``memory_mb`` with PVE's memory.high."""
    return {"cgroup_version": 2, "limit_bytes": memory_mb * MIB, "high_bytes": memory_mb * 1016 * 1024,
            "usage_bytes": usage_mb * MIB, "peak_bytes": memory_mb * MIB, "high_events": high_events,
            "limit_hits": max_events, "oom_events": 0, "oom_kills": oom_kills,
            "pressure": {"some": {"avg10": some10, "avg60": some10 / 2}, "full": {"avg10": full10, "avg60": full10 / 2}}}


@pytest.mark.parametrize("the_counters, stalled, ongoing", [
    (counters(), False, False),                                                      # calm
    (counters(usage_mb=95, high_events=34167, max_events=1131, some10=41.0, full10=27.0), True, True),
    (counters(usage_mb=95, high_events=40, some10=30.0), True, True),                # stuck now, few events yet
    (counters(usage_mb=60, high_events=34167, max_events=1131), True, False),        # it was stuck, not now
    (counters(usage_mb=95, high_events=10, some10=1.0, full10=0.5), False, False),   # full, but not stalling
    (dict(counters(high_events=50000), cgroup_version=1, high_bytes=None), False, False),   # v1 has no memory.high
    (None, False, False),                                                            # CT not running
])
def test_memory_high_stall(the_counters, stalled, ongoing):
    stall = memory_high_stall(2017, the_counters)
    assert (stall is not None) == stalled
    if stall:
        assert stall["kind"] == "memory_high_stall" and stall["ongoing"] == ongoing
        assert stall["reason"].startswith("CT 2017 %s at memory.high (95 MiB)" % ("is stalled" if ongoing else "was stalled"))
        assert "No kernel line records a stall" in stall["reason"]


def test_a_stall_with_no_oom_line_is_an_incident_of_its_own_kind_with_the_census():
    census = summarize([(1, "systemd", 0, 2000)] + [(100 + n, "socat", 99, 60) for n in range(175)] +
                       [(99, "socat", 1, 300)])
    stalled = counters(usage_mb=95, high_events=34167, max_events=1131, some10=41.0, full10=27.0)
    reports, _unattributed = build_report({"events": [], "network": []}, [], [2017], {2017: stalled},
                                          {2017: census}, {2017: {"memory_mb": 96, "swap_mb": 96}})
    report = reports[2017]
    assert report["incidents"] == [] and not report["verdict"]["oom_killed"]
    assert report["verdict"]["memory_high_stall"] and report["stall"]["high_events"] == 34167
    assert report["stall"]["filled_by"] == {"name": "socat", "count": 176, "rss_kb": 176 * 60 * 4 + 300 * 4 - 60 * 4}
    assert "socat fills it: 176 process(es)" in report["stall"]["reason"]
    assert report["verdict"]["likely_cause"].startswith("socat fork storm: 176 socat processes running in the CT now")
    assert "stalled at memory.high" in report["verdict"]["likely_cause"]
    assert report["recommended_memory_mb"] == 256
    assert "stalled at memory.high" in report["recommendation"] and "enva.pve.dns_relay" in report["recommendation"]


def test_the_counters_the_node_read_right_after_its_oom_are_an_oom_not_a_stall():
    """memory.events and PSI as labctl reproduce read them on the node just after the OOM (128 MiB CT)."""
    after = counters(usage_mb=127, high_events=186, max_events=407, oom_kills=2, some10=11.01, full10=5.8,
                     memory_mb=128)
    the_verdict = verdict([], after, None, 2017)
    assert the_verdict["oom_killed"] and not the_verdict["memory_high_stall"]
    assert the_verdict["likely_cause"].startswith("the kernel counted 2 OOM kill(s)")


def census_capture(name):
    with open(NODE / name / "proc-stat.txt") as handle:
        return summarize([parse_stat(line) for line in handle if parse_stat(line)])


def test_the_cgroup_of_a_ct_that_survived_its_oom_as_the_node_shows_it():
    """A 96 MiB CT 2017 (memory changed live in pve-common's order) whose OOM killed haproxy only: its cgroup
    files and its processes' /proc/PID/stat, captured right after the flood."""
    the_counters = read_counters(str(NODE / "after-oom-96m" / "cgroup"), 2017)
    assert the_counters["cgroup_version"] == 2 and the_counters["limit_bytes"] == 96 * MIB
    assert the_counters["high_bytes"] == 96 * 1016 * 1024 and the_counters["swap_limit_bytes"] == 96 * MIB
    assert (the_counters["high_events"], the_counters["limit_hits"], the_counters["oom_events"],
            the_counters["oom_kills"]) == (435, 284, 2, 1)
    assert the_counters["pressure"]["full"]["avg10"] == 0.85
    census = census_capture("after-oom-96m")
    assert census["fork_storm"] and census["by_command"][0]["name"] == "socat"
    the_verdict = verdict([], the_counters, census, 2017)
    assert the_verdict["oom_killed"] and the_verdict["oom_kills_counted"] == 1 and the_verdict["fork_storm"]
    assert not the_verdict["memory_high_stall"]        # 435 high events, usage below memory.high now, PSI low


STALL = NODE / "stall-128m"


def test_before_the_flood_the_node_ct_is_calm():
    the_counters = read_counters(str(STALL / "before" / "cgroup"), 2017)
    assert the_counters["high_bytes"] == 128 * 1016 * 1024 and the_counters["high_events"] == 0
    assert memory_high_stall(2017, the_counters, census_capture("stall-128m/before")) is None


def test_the_stall_then_the_oom_captured_on_the_node():
    """128 MiB CT 2017 at 100 q/s: stuck at memory.high for minutes (no answers, no kernel line), then one OOM
    kill (haproxy) after 415 s; the cgroup files read right after. The stall is named from them."""
    the_counters = read_counters(str(STALL / "after" / "cgroup"), 2017)
    assert (the_counters["high_events"], the_counters["limit_hits"], the_counters["oom_kills"]) == (4939, 22417, 1)
    census = census_capture("stall-128m/after")
    stall = memory_high_stall(2017, the_counters, census)
    assert stall is not None and not stall["ongoing"]         # PSI had decayed when the files were read
    assert stall["filled_by"]["name"] == "socat" and stall["filled_by"]["count"] == 312
    assert stall["reason"].startswith("CT 2017 was stalled at memory.high (127 MiB): the kernel throttled it 4,939 "
                                      "times (memory.events high) and it hit memory.max 22,417 times with 1 OOM kill")
    the_verdict = verdict([], the_counters, census, 2017)
    assert the_verdict["oom_killed"] and the_verdict["memory_high_stall"] and the_verdict["fork_storm"]


def test_the_kernel_said_nothing_while_the_ct_was_stuck():
    with open(STALL / "kernel.short-iso-precise.log") as handle:
        parsed = parse_kernel_log(handle, REF, tz=UTC)
    flood_started = datetime.datetime(2026, 12, 5, 8, 24, 7, tzinfo=UTC).timestamp()
    first_line = min(event["epoch"] for event in parsed["events"])
    assert first_line - flood_started > 390        # journalctl -k from 08:24:00 has nothing before the OOM
    (event,) = [event for event in parsed["events"] if event["victims"]]
    assert event["oom_memcg"] == "/lxc/2017" and event["victims"][0]["name"] == "haproxy"
