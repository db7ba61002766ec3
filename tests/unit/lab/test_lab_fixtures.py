"""The captures of one ``labctl reproduce`` (kernel log copy and pve-container@2017 journal) kept as
fixtures for the evidence parsers: what they hold, and that the collection reads them as one incident."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import parse_lifecycle
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import parse_kernel_log
from enva_lab import journal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KERNEL = FIXTURES / "kernel" / "lab-oom-v1.log"
LIFECYCLE = FIXTURES / "lab-lifecycle" / "pve-container@2017.jsonl"
SHORT = FIXTURES / "lab-lifecycle" / "pve-container@2017.short.log"


def test_the_kernel_capture_is_three_memcg_ooms_of_ct_2017_then_its_port_going_down():
    lines = KERNEL.read_text().splitlines()
    assert all(" pve1 kernel: " in line for line in lines)
    result = parse_kernel_log(lines, 1795513400, tz=datetime.timezone.utc)
    events = result["events"]
    assert [event["oom_memcg"] for event in events] == ["/lxc/2017"] * 3
    assert [event["invoker"] for event in events] == ["socat"] * 3
    assert [victim["name"] for event in events for victim in event["victims"]] == ["haproxy", "systemd"]
    assert all(event["tasks_by_command"][0]["name"] == "socat" for event in events)
    assert "OOM victim 69595 (sshd) is already exiting. Skip killing the task" in KERNEL.read_text()
    assert {(item["interface"], item["state"]) for item in result["network"]} == {("veth2017i0", "disabled")}


def test_the_journal_capture_is_start_oom_stop_restart_stop_start():
    records = [json.loads(line) for line in LIFECYCLE.read_text().splitlines()]
    events = parse_lifecycle([journal.dumps(record) for record in records], 0)
    assert [event["event"] for event in events] == ["starting", "started", "deactivated", "starting", "started",
                                                    "stopping", "deactivated", "stopped", "starting", "started"]
    assert {record["_HOSTNAME"] for record in records} == {"pve1"}
    assert SHORT.read_text() == journal.render(records, "short", tz=0)


def test_the_ct_went_down_right_after_the_last_oom():
    kernel = parse_kernel_log(KERNEL.read_text().splitlines(), 1795513400, tz=datetime.timezone.utc)["events"]
    lifecycle = parse_lifecycle(LIFECYCLE.read_text().splitlines(), 0)
    deactivated = next(event for event in lifecycle if event["event"] == "deactivated")
    assert 0 < deactivated["epoch"] - kernel[-1]["epoch"] < 5
