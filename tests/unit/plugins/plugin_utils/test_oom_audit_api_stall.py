"""The fleet audit names a CT stalled at memory.high from the PVE API (PVE 9 pressure fields) when its node
gave no evidence (SSH down), and falls back to the node's cgroup when the API has no fields (PVE 8)."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.enva.pve.plugins.modules import pve_resources
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_render as render
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from support.audit_inputs import cluster, node_evidence

API = Path(__file__).resolve().parents[2] / "fixtures" / "pve-api"


def node_list(name):
    items = json.loads((API / name).read_text())["data"]
    for item in items:
        item["vmid"] = {2020: 101, 2021: 102, 2022: 9000}.get(item["vmid"], item["vmid"])
    return items


def test_the_audit_asks_only_nodes_with_a_near_full_ct():
    resources = cluster()
    assert pve_resources.nodes_for_pressure(resources["cts"], resources["nodes"], "near_full") == ["pve1"]
    assert pve_resources.nodes_for_pressure(resources["cts"], resources["nodes"], "none") == []
    resources["nodes"]["pve1"]["status"] = "offline"
    assert pve_resources.nodes_for_pressure(resources["cts"], resources["nodes"], "all") == []


def test_a_stall_named_from_the_api_when_the_node_gave_no_evidence():
    resources = cluster()
    assert pve_resources.add_pressure(resources["cts"], "pve1", node_list("pve9-lxc-list-pve1.json"))
    assert resources["cts"]["2017"]["pressure"]["memory_full"] == 53.0
    report = audit.build_report(resources, {}, failed_nodes={"pve1": "unreachable over SSH"})
    entry = next(item for item in report["cts"] if item["vmid"] == 2017)
    assert entry["severity"] == "high_stall" and entry["stall"]["source"] == "api"
    markdown = render.render_markdown(report)
    assert "At risk, stalled at memory.high: CT 2017 is stalled at memory.high (127 MiB), from the PVE API" in markdown
    assert "PSI memory full avg10 53.0%" in markdown


def test_pve8_lists_no_fields_and_the_audit_uses_the_node():
    resources = cluster()
    assert not pve_resources.add_pressure(resources["cts"], "pve1", node_list("pve8-lxc-list-pve1.json"))
    assert resources["cts"]["2017"]["pressure"] is None and resources["cts"]["2017"]["stall"] is None
    report = audit.build_report(resources, {"pve1": node_evidence()})
    entry = next(item for item in report["cts"] if item["vmid"] == 2017)
    assert entry["severity"] == "oom" and entry["api_pressure"] is None
