"""oom_report: OOM events, lifecycle, counters and census correlated into one report per CT."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import read_counters
from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import parse_lifecycle
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import parse_kernel_log
from ansible_collections.enva.pve.plugins.module_utils.oom_report import (
    build_incident, build_report, group_incidents, headroom_pct, recommend, verdict)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
UTC = datetime.timezone.utc
REF = datetime.datetime(2024, 12, 31, tzinfo=UTC).timestamp()
MIB = 1 << 20


def kernel(name, tz=UTC):
    with open(FIXTURES / "kernel" / name, encoding="utf-8", errors="replace") as handle:
        return parse_kernel_log(handle, REF, tz=tz)


def lifecycle(name):
    with open(FIXTURES / "lifecycle" / name) as handle:
        return parse_lifecycle(handle, REF, tz=UTC)


@pytest.fixture(scope="module")
def incident_2017():
    counters = {2017: read_counters(str(FIXTURES / "cgroup" / "v2-node"), 2017)}
    configs = {2017: {"memory_mb": 1024, "swap_mb": 1024}}
    reports, unattributed = build_report(kernel("incident-2017-v2.journal.jsonl"),
                                         lifecycle("pve-container@2017.jsonl"), [2017], counters, {}, configs)
    return reports[2017], unattributed


def test_incident_2017_is_one_incident_with_every_victim(incident_2017):
    report, unattributed = incident_2017
    assert unattributed == []
    (incident,) = report["incidents"]
    assert incident["start"] == "2024-11-23T23:35:38.412345+00:00"
    assert incident["events"] == 7 and incident["complete_events"] == 2 and incident["partial"]
    assert incident["oom_memcg"] == "/lxc/2017" and incident["task_memcgs"] == ["/lxc/2017/ns"]
    assert incident["invoked_by"] == ["socat"]
    assert incident["victims_total"] == 7
    assert incident["victims_by_name"] == {"in:imuxsock": 1, "socat": 5, "systemd-network": 1}
    first = incident["victims"][0]
    assert (first["pid"], first["name"], first["anon_rss_kb"], first["file_rss_kb"], first["reaped"]) == (
        1974108, "in:imuxsock", 2816, 1024, True)
    assert {entry["pid"] for entry in incident["reaped"]} == {1974108, 2362337, 1974080}
    assert incident["tasks_in_dump"] == 1372
    assert incident["top_processes"][0] == {"name": "socat", "count": 1361, "rss_kb": 988800}
    assert incident["memory_at_oom"]["limit_kb"] == 1048576


def test_incident_2017_stop_and_start_that_followed(incident_2017):
    report = incident_2017[0]
    (incident,) = report["incidents"]
    # the seed: OOM at 00:35:38, Deactivated at 00:36:07 (+01:00)
    assert incident["stop"]["event"] == "deactivated"
    assert incident["stop"]["time"] == "2024-11-23T23:36:07.220000+00:00"
    assert incident["stop"]["seconds_after_oom"] == pytest.approx(28.808, abs=1e-3)
    assert incident["next_start"]["event"] == "started"
    assert incident["next_start"]["time"] == "2024-11-23T23:41:12.640000+00:00"
    assert incident["network_down"]["interface"] == "veth2017i0"
    assert incident["network_down"]["seconds_after_oom"] == pytest.approx(29.0)


def test_incident_2017_verdict_and_recommendation(incident_2017):
    report = incident_2017[0]
    the_verdict = report["verdict"]
    assert the_verdict["oom_killed"] and the_verdict["fork_storm"]
    assert the_verdict["likely_cause"] == "socat fork storm: 1,361 socat processes in the OOM task dump (99% of 1,372)"
    assert the_verdict["headroom_pct"] == 0.0
    assert (the_verdict["oom_kills_in_log"], the_verdict["oom_kills_counted"]) == (7, 7)
    assert report["recommended_memory_mb"] == 2048
    assert "1,024 MiB limit" in report["recommendation"] and "doubled to 2,048 MiB" in report["recommendation"]
    assert "does not cure the fork storm" in report["recommendation"]
    assert report["partial_events"] == 5 and report["oom_events"] == 7


def test_interleaved_cts_each_get_their_own_incident_and_stop():
    events = lifecycle("101.short-iso.log") + lifecycle("pve-container@703.short.log")
    cest = datetime.timezone(datetime.timedelta(hours=2))      # the node that wrote both logs
    reports, unattributed = build_report(kernel("interleaved-101-703-v2.short.log", tz=cest), events, [101, 703])
    ct101, ct703 = reports[101], reports[703]
    assert ct101["incidents"][0]["victims_by_name"] == {"node": 1, "npm start": 1}
    assert ct101["incidents"][0]["stop"]["event"] == "stopping"
    assert ct101["incidents"][0]["stop"]["seconds_after_oom"] == 4.0
    assert ct101["incidents"][0]["next_start"]["time"] == "2024-08-02T01:12:00+00:00"
    assert ct703["incidents"][0]["victims_by_name"] == {"postgres": 1}
    assert ct703["incidents"][0]["stop"] is None        # 703's journal is from March: nothing after this OOM
    assert len(unattributed) == 1 and unattributed[0]["victims"] == []
    assert ct101["verdict"]["likely_cause"].startswith("node held the most memory in the OOM task dump: 2,027 MiB")


def test_since_drops_older_evidence():
    reports = build_report(kernel("incident-2017-v2.journal.jsonl"), lifecycle("pve-container@2017.jsonl"),
                           [2017], since_epoch=datetime.datetime(2024, 11, 24, tzinfo=UTC).timestamp())[0]
    assert reports[2017]["incidents"] == [] and reports[2017]["lifecycle"] == []
    assert not reports[2017]["verdict"]["oom_killed"]


def _event(epoch, vmid=1):
    return {"epoch": epoch, "vmid": vmid}


@pytest.mark.parametrize("epochs, sizes", [
    ([0, 1, 2], [3]), ([0, 100, 300], [2, 1]), ([0, None, 500, 501], [2, 2]), ([], [])])
def test_group_incidents(epochs, sizes):
    assert [len(group) for group in group_incidents([_event(e) for e in epochs])] == sizes


@pytest.mark.parametrize("counters, pct", [
    ({"limit_bytes": 1024 * MIB, "peak_bytes": 1024 * MIB, "usage_bytes": 10}, 0.0),
    ({"limit_bytes": 2048 * MIB, "peak_bytes": 1228 * MIB, "usage_bytes": 10}, 40.0),
    ({"limit_bytes": 2048 * MIB, "peak_bytes": None, "usage_bytes": 1024 * MIB}, 50.0),
    ({"limit_bytes": None, "peak_bytes": 1, "usage_bytes": 1}, None), (None, None)])
def test_headroom(counters, pct):
    assert headroom_pct(counters) == pct


def _verdict(**overrides):
    base = {"oom_killed": False, "incidents": 0, "oom_kills_in_log": 0, "oom_kills_counted": 0,
            "likely_cause": None, "fork_storm": False, "headroom_pct": None}
    base.update(overrides)
    return base


@pytest.mark.parametrize("the_verdict, counters, config, memory, words", [
    (_verdict(oom_killed=True, incidents=1, oom_kills_in_log=3, headroom_pct=0.0),
     {"limit_bytes": 1024 * MIB, "peak_bytes": 1024 * MIB}, None, 2048, "doubled to 2,048 MiB"),
    (_verdict(headroom_pct=10.0), {"limit_bytes": 1024 * MIB, "peak_bytes": 922 * MIB}, None, 1280,
     "raise to 1,280 MiB"),
    (_verdict(headroom_pct=60.0), {"limit_bytes": 2048 * MIB, "peak_bytes": 819 * MIB}, None, 2048, "keep 2,048 MiB"),
    (_verdict(), None, {"memory_mb": 512}, 512, "peak usage is not known"),
    (_verdict(), None, None, None, "no memory limit known"),
    (_verdict(oom_killed=True, oom_kills_counted=2), None, {"memory_mb": 512}, 1024, "doubled to 1,024 MiB"),
    (_verdict(headroom_pct=55.0, fork_storm=True, likely_cause="socat fork storm: 150 socat processes"),
     {"limit_bytes": 1024 * MIB, "peak_bytes": 460 * MIB}, None, 1024, "fix the forking process"),
])
def test_recommend(the_verdict, counters, config, memory, words):
    got, reasoning = recommend(2017, the_verdict, counters, config, [])
    assert got == memory
    assert words in reasoning


def test_counted_kills_without_log_lines_are_still_a_verdict():
    the_verdict = verdict([], {"oom_kills": 4, "limit_bytes": 1, "peak_bytes": 1}, None)
    assert the_verdict["oom_killed"] and "counted 4 OOM kill(s)" in the_verdict["likely_cause"]


def test_census_fork_storm_without_oom_is_the_likely_cause():
    census = {"fork_storm": True, "fork_storms": [{"name": "socat", "count": 300, "reason": "socat fork storm: now"}]}
    the_verdict = verdict([], None, census)
    assert not the_verdict["oom_killed"] and the_verdict["fork_storm"]
    assert the_verdict["likely_cause"] == "socat fork storm: now"


def test_real_socat_fork_storm_captured_on_this_host():
    """A real socat UDP4-LISTEN fork storm in a 40 MiB memcg (kernel 6.18, cgroup v1): two full reports."""
    events = kernel("host-6.18-v1-socat-storm-dmesg.log")["events"]
    assert [event["partial"] for event in events] == [False, False]
    incident = build_incident(events, [], [])
    assert incident["victims_by_name"] == {"socat": 2}
    assert incident["memory_at_oom"] == {"usage_kb": 40960, "limit_kb": 40960, "failcnt": 0}
    the_verdict = verdict([incident], None, None)
    assert the_verdict["likely_cause"] == "socat fork storm: 210 socat processes in the OOM task dump (100% of 210)"
    assert the_verdict["fork_storm"]


@pytest.mark.parametrize("limit_now_mb, memory, words", [
    (1024, 2048, "doubled to 2,048 MiB"),                # not raised yet: double the limit the OOM hit
    (2048, 2048, "has 2,048 MiB now, at least double that; its peak usage is 48 MiB (2% of the limit): keep it"),
    (4096, 4096, "has 4,096 MiB now"),                   # raised further by hand: never lowered
    (1536, 2048, "at its 1,024 MiB limit"),              # raised, but not enough
])
def test_recommend_doubles_the_limit_the_oom_happened_at_not_todays(limit_now_mb, memory, words):
    """An audit that remediates is run again: a CT raised after its OOM must not be raised again."""
    the_verdict = {"oom_killed": True, "incidents": 1, "oom_kills_counted": 0, "oom_kills_in_log": 2,
                   "fork_storm": False, "headroom_pct": 97.7, "likely_cause": "x"}
    counters = {"limit_bytes": limit_now_mb * 2 ** 20, "peak_bytes": 48 * 2 ** 20}
    incident = {"memory_at_oom": {"usage_kb": 1048576, "limit_kb": 1048576}}
    got, reasoning = recommend(2017, the_verdict, counters, None, [incident])
    assert got == memory
    assert words in reasoning
