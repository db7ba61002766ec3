"""The fleet audit ranks a CT stuck at memory.high (cgroup v2, no OOM line) as at risk, and says why."""

from __future__ import annotations

import copy

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_render as render
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from support.audit_inputs import MIB, cluster, node_evidence


def stalled_evidence():
    """The fixture node's evidence with CT 101 stuck at memory.high: the figures measured on a VM node
    (memory.events high 34,167, max 1,131, oom 0; PSI some avg10 41%, full avg10 27%)."""
    evidence = copy.deepcopy(node_evidence())
    counters = evidence["cts"]["101"]["counters"]
    limit = counters["limit_bytes"] or 1024 * MIB
    counters.update(limit_bytes=limit, high_bytes=limit // 1024 * 1016, usage_bytes=limit // 1024 * 1015,
                    high_events=34167, limit_hits=1131, oom_events=0, oom_kills=0,
                    pressure={"some": {"avg10": 41.0, "avg60": 20.0}, "full": {"avg10": 27.0, "avg60": 12.0}})
    return evidence


def test_a_ct_stuck_at_memory_high_ranks_at_risk_after_the_oom_killed_one():
    report = audit.build_report(cluster(), {"pve1": stalled_evidence()})
    ranked = [(entry["vmid"], entry["severity"]) for entry in report["cts"]]
    assert ranked[0] == (2017, "oom") and ranked[1] == (101, "high_stall")
    entry = report["cts"][1]
    assert entry["stall"]["high_events"] == 34167 and entry["stall"]["ongoing"]
    assert audit.SEVERITY_LABEL[entry["severity"]] == "at risk: stuck at memory.high"
    markdown = render.render_markdown(report)
    assert "### CT 101 app (node pve1): at risk: stuck at memory.high" in markdown
    assert "- At risk, stuck at memory.high: CT 101 is stuck at memory.high" in markdown
    assert "34,167 times (memory.events high)" in markdown
    assert "<td" in render.render_html(report)


def test_without_the_stall_the_same_ct_is_not_at_risk():
    report = audit.build_report(cluster(), {"pve1": node_evidence()})
    entry = next(item for item in report["cts"] if item["vmid"] == 101)
    assert entry["severity"] != "high_stall" and entry["stall"] is None
