"""pve_pressure: the PVE 9 pressure fields as the API gives them (tests/unit/fixtures/pve-api, written from
pve-container 6.0.7's vmstatus), what PVE 8 gives (nothing), and the stall rule on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils import pve_pressure

API = Path(__file__).resolve().parents[2] / "fixtures" / "pve-api"
MIB = 1 << 20


def answer(name):
    return json.loads((API / name).read_text())["data"]


@pytest.mark.parametrize("raw, expected", [
    ("53.00", 53.0),          # status/current: the kernel's text, a JSON string
    ("0.00", 0.0),
    (" 7.5 ", 7.5),
    (52.7716666666667, 52.7716666666667),   # rrddata: an RRD average, a number
    (0, 0.0),
    (None, None),             # PVE 9, no pressure file: null
    (True, None),
    ("n/a", None),
    ("", None),
])
def test_value(raw, expected):
    assert pve_pressure.value(raw) == expected


def test_the_six_fields_are_named_as_pve_container_names_them():
    assert pve_pressure.FIELDS == ("pressurecpusome", "pressurecpufull", "pressureiosome", "pressureiofull",
                                   "pressurememorysome", "pressurememoryfull")


@pytest.mark.parametrize("name, expected", [
    ("pve9-status-current-2017-stalled.json",
     {"cpu_some": 4.12, "cpu_full": 0.0, "io_some": 38.2, "io_full": 33.95, "memory_some": 61.84, "memory_full": 53.0}),
    ("pve8-status-current-2017.json", None),
])
def test_from_status(name, expected):
    assert pve_pressure.from_status(answer(name)) == expected


def test_from_a_node_list_pve9_running_null_and_stopped():
    items = {item["vmid"]: item for item in answer("pve9-lxc-list-pve1.json")}
    assert pve_pressure.from_status(items[2017])["memory_full"] == 53.0
    assert pve_pressure.from_status(items[2020])["memory_full"] == 0.0
    assert pve_pressure.from_status(items[2021]) == dict.fromkeys(
        ("cpu_some", "cpu_full", "io_some", "io_full", "memory_some", "memory_full"))   # keys there, null
    assert pve_pressure.from_status(items[2022]) is None                                 # stopped: no keys
    assert all(pve_pressure.from_status(item) is None for item in answer("pve8-lxc-list-pve1.json"))


def test_rrddata_points_carry_numbers():
    empty, point = answer("pve9-rrddata-2017-hour.json")
    assert pve_pressure.from_status(empty) is None
    assert round(pve_pressure.from_status(point)["memory_full"], 2) == 52.77


def status(mem_mib, maxmem_mib=128, some=None, full=None, state="running"):
    item = {"vmid": 2017, "status": state, "mem": mem_mib * MIB, "maxmem": maxmem_mib * MIB}
    if some is not None or full is not None:
        item.update(dict.fromkeys(pve_pressure.FIELDS, "0.00"), pressurememorysome=some, pressurememoryfull=full)
    return item


@pytest.mark.parametrize("item, stalled", [
    (status(125, some="61.84", full="53.00"), True),      # the trickle: full 53 %
    (status(125, some="0.00", full="10.00"), True),       # full at the threshold
    (status(125, some="0.00", full="9.99"), False),
    (status(125, some="20.00", full="0.00"), True),       # some at the threshold, at memory.high
    (status(100, some="25.00", full="0.00"), False),      # some high but far from memory.high
    (status(40, some="0.00", full="30.00"), True),        # full does not need mem (page cache left out of it)
    (status(125, some=None, full=None), False),           # PVE 9 without a pressure file: null
    (status(125), False),                                 # PVE 8: no fields
    (status(125, some="61.84", full="53.00", state="stopped"), False),
])
def test_api_stall_table(item, stalled):
    assert (pve_pressure.api_stall(2017, item) is not None) is stalled


def test_the_api_stall_names_the_figures():
    stall = pve_pressure.api_stall(2017, answer("pve9-status-current-2017-stalled.json"))
    assert stall["source"] == "api" and stall["ongoing"] and stall["high_bytes"] == 128 * 1016 * 1024
    assert stall["pressure"]["full_avg10"] == 53.0 and stall["pressure"]["some_avg10"] == 61.84
    assert stall["reason"].startswith("CT 2017 is stalled at memory.high (127 MiB), from the PVE API")
    assert "PSI memory full avg10 53.0%, some avg10 61.84%" in stall["reason"]
    assert stall["high_events"] is None          # only the node's memory.events has it


@pytest.mark.parametrize("cts, expected", [
    ({}, []),
    ({"1": {"node": "a", "status": "running", "mem_bytes": 90, "maxmem_bytes": 100}}, ["a"]),
    ({"1": {"node": "a", "status": "running", "mem_bytes": 89, "maxmem_bytes": 100}}, []),
    ({"1": {"node": "a", "status": "stopped", "mem_bytes": 100, "maxmem_bytes": 100}}, []),
    ({"1": {"node": "b", "status": "running", "mem_bytes": 99, "maxmem_bytes": 100},
      "2": {"node": "a", "status": "running", "mem_bytes": 95, "maxmem_bytes": 100},
      "3": {"node": "a", "status": "running", "mem_bytes": None, "maxmem_bytes": 100}}, ["a", "b"]),
])
def test_nodes_to_ask(cts, expected):
    assert pve_pressure.nodes_to_ask(cts) == expected


def test_paths():
    assert pve_pressure.node_cts_path("pve1") == "nodes/pve1/lxc"
    assert pve_pressure.status_path("pve1", "2017") == "nodes/pve1/lxc/2017/status/current"
