"""The PVE 9 trickle stall (tests/unit/fixtures/vm-node/trickle-trixie, synthesized from issue 22's figures):
the CT still answers now and then, memory.events high climbs, PSI full is 53 %, no OOM kill. The evidence
names it "stalled at memory.high" with the figures, from the node's cgroup (PVE 8) or the API's fields (PVE 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils import pve_pressure
from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import read_counters
from ansible_collections.enva.pve.plugins.module_utils.oom_report import build_report, memory_high_stall
from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TRICKLE = FIXTURES / "vm-node" / "trickle-trixie" / "cgroup"
NO_KERNEL = {"events": [], "network": [], "lines": 0, "first_epoch": None, "last_epoch": None}


def api_status():
    return json.loads((FIXTURES / "pve-api" / "pve9-status-current-2017-stalled.json").read_text())["data"]


def test_the_counters_of_the_trickle():
    counters = read_counters(str(TRICKLE), 2017)
    assert (counters["high_events"], counters["limit_hits"], counters["oom_kills"]) == (241166, 6181, 0)
    assert counters["pressure"]["full"]["avg10"] == 53.0


@pytest.mark.parametrize("api_pressure, source", [
    (None, "cgroup"),                                             # PVE 8: the node's memory.pressure
    (pve_pressure.from_status(api_status()), "api"),              # PVE 9: the API's fields
])
def test_the_trickle_is_named_a_stall_now(api_pressure, source):
    stall = memory_high_stall(2017, read_counters(str(TRICKLE), 2017), None, api_pressure)
    assert stall["ongoing"] and stall["pressure_source"] == source
    assert stall["pressure"]["full_avg10"] == 53.0
    assert stall["reason"].startswith(
        "CT 2017 is stalled at memory.high (127 MiB): the kernel throttled it 241,166 times (memory.events high)"
        " and it hit memory.max 6,181 times with 0 OOM kill(s)")
    assert "PSI full avg10 53.0%" in stall["reason"]


def test_the_api_decides_where_it_has_the_fields():
    """PSI decayed on the node's file but the API read at the stall: the API's values are the ones judged."""
    counters = read_counters(str(TRICKLE), 2017)
    counters["pressure"] = {"some": {"avg10": 0.0}, "full": {"avg10": 0.0}}
    counters["high_events"] = 10                                 # and too few high events to say "was"
    assert memory_high_stall(2017, counters) is None
    stall = memory_high_stall(2017, counters, None, pve_pressure.from_status(api_status()))
    assert stall is not None and stall["ongoing"] and stall["pressure_source"] == "api"


def test_the_report_names_the_trickle_without_an_oom():
    counters = read_counters(str(TRICKLE), 2017)
    reports, _unattributed = build_report(NO_KERNEL, [], [2017], {2017: counters}, {},
                                          {2017: {"memory_mb": 128, "swap_mb": 128}})
    report = reports[2017]
    assert report["incidents"] == [] and not report["verdict"]["oom_killed"]
    assert report["verdict"]["memory_high_stall"] and report["stall"]["high_events"] == 241166
    assert "stalled at memory.high" in report["verdict"]["likely_cause"]
    assert "241,166" in report["verdict"]["likely_cause"] and "53.0%" in report["verdict"]["likely_cause"]
    assert "stalled at memory.high" in report["recommendation"]


@pytest.mark.parametrize("given, expected", [
    ({"2017": api_status()}, {2017: 53.0}),
    ({2017: {"memory_full": "53.00", "memory_some": 61.84}}, {2017: 53.0}),     # pve_resources' shape
    ({"2017": {"vmid": 2017, "mem": 1}}, {}),                                   # PVE 8: no fields, not an error
    (None, {}),
])
def test_the_api_pressure_option(given, expected):
    got = lxc_oom_evidence.api_pressure_by_vmid(given)
    assert {vmid: pressure["memory_full"] for vmid, pressure in got.items()} == expected


def test_the_api_pressure_option_keyed_wrong():
    with pytest.raises(lxc_oom_evidence.EvidenceError, match="keyed by VMID"):
        lxc_oom_evidence.api_pressure_by_vmid({"ct-2017": api_status()})
