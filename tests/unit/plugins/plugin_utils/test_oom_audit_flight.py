"""The audit report names an incident from the watch's flight record when nothing else names it."""

from __future__ import annotations

import copy

from ansible_collections.enva.pve.plugins.module_utils.flight_record import summarize
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from support.audit_inputs import cluster, node_evidence

RECORD = {"vmid": 101, "reason": "stall", "time": "2026-12-06T14:00:00Z", "census": None,
          "detail": {"event": {"tasks_by_command": [{"name": "socat", "count": 800, "rss_kb": 1},
                                                    {"name": "haproxy", "count": 3, "rss_kb": 1}]}}}


def test_flight_record_names_a_ct_the_logs_say_nothing_about():
    evidence = copy.deepcopy(node_evidence())
    assert evidence["cts"]["101"]["verdict"]["likely_cause"] is None
    evidence["cts"]["101"]["flight"] = summarize([RECORD])
    entry = {item["vmid"]: item for item in audit.build_report(cluster(), {"pve1": evidence})["cts"]}[101]
    assert entry["oom"]["likely_cause"] == ("socat fork storm: 800 socat processes in the watch's flight record "
                                            "of 2026-12-06T14:00:00Z (stall) (100% of 803)")


def test_the_logs_cause_wins_over_a_flight_record():
    evidence = copy.deepcopy(node_evidence())
    evidence["cts"]["2017"]["flight"] = summarize([dict(RECORD, vmid=2017)])
    entry = {item["vmid"]: item for item in audit.build_report(cluster(), {"pve1": evidence})["cts"]}[2017]
    assert "in the OOM task dump" in entry["oom"]["likely_cause"]
