"""The fleet audit report (the data): built from real module output over the fixtures, ranked, remediation planned.

Its rendering is tested in test_oom_audit_render.py."""

from __future__ import annotations

import json

import re

import pytest

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_findings as findings
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from support.audit_inputs import (
    cluster, declared, node_evidence, resource_item)


@pytest.fixture(scope="module")
def evidence():
    return node_evidence()


@pytest.fixture
def report(evidence, tmp_path):
    return audit.build_report(cluster(), {"pve1": evidence}, declared=declared(tmp_path), declared_path="enva.yaml")


def by_vmid(report):
    return {entry["vmid"]: entry for entry in report["cts"]}


def test_the_oom_killed_ct_ranks_first_with_cause_victims_and_recommendation(report):
    first = report["cts"][0]
    assert (first["rank"], first["vmid"], first["name"], first["node"], first["severity"]) == (
        1, 2017, "haproxy", "pve1", "oom")
    assert (first["memory_mb"], first["swap_mb"], first["usage_mb"], first["peak_mb"]) == (1024, 1024, 1023, 1024)
    assert first["headroom_pct"] == 0.0 and first["headroom_mb"] == 0
    assert first["oom"]["killed"] and first["oom"]["incidents"] == 1 and first["oom"]["kills_in_log"] == 7
    assert first["oom"]["victims_by_name"] == {"socat": 5, "in:imuxsock": 1, "systemd-network": 1}
    assert first["oom"]["likely_cause"].startswith("socat fork storm: 1,361 socat processes in the OOM task dump")
    assert first["fork_storm"]["present"] and first["fork_storm"]["process"] == "socat"
    assert first["fork_storm"]["in_dump"] and first["fork_storm"]["now"] == []
    (incident,) = first["incidents"]
    assert incident["node"] == "pve1" and incident["stop"]["event"] == "deactivated"
    assert incident["next_start"]["event"] == "started"
    recommendation = first["recommendation"]
    assert recommendation["action"] == "fix_forking" and recommendation["raise_to_mb"] == 2048
    assert recommendation["summary"] == "fix the forking process (socat); raise to 2,048 MiB meanwhile"
    assert "replace the forking process" in recommendation["text"]
    assert first["pressure"]["full_avg60"] == 7.95 and first["pressure"]["stalling"] is True
    assert first["tags"] == ["lab", "haproxy"]


def test_the_others_are_clean_and_kept(report):
    cts = by_vmid(report)
    assert [entry["vmid"] for entry in report["cts"]][1:] == [101, 102, 703, 9000]
    app = cts[101]
    assert app["severity"] == "drift" and app["recommendation"]["action"] == "keep"   # declared 1024, live 2048
    assert (app["usage_mb"], app["peak_mb"], app["headroom_pct"]) == (768, 1228, 40.0)
    assert app["pressure"]["stalling"] is False
    # 102 has no config on the node: memory from /cluster/resources, no swap known
    assert (cts[102]["memory_mb"], cts[102]["swap_mb"], cts[102]["name"]) == (512, None, "db")
    assert cts[9000]["status"] == "stopped" and cts[9000]["headroom_pct"] is None
    assert all(not entry["oom"]["killed"] for entry in report["cts"][1:])


def test_drift_against_the_declared_file(report):
    cts = by_vmid(report)
    assert cts[2017]["drift"]["state"] == "in_sync" and cts[2017]["drift"]["text"] == "in sync"
    assert cts[101]["drift"] == {
        "state": "differs", "declared_memory_mb": 1024, "declared_swap_mb": 512, "live_memory_mb": 2048,
        "live_swap_mb": 512, "keys": ["memory"], "text": "memory declared 1,024, live 2,048 MiB"}
    assert cts[102]["drift"]["state"] == "not_declared"
    assert report["summary"]["drift"] == [101]
    assert report["declared"] == {"path": "enva.yaml", "cts": 3, "missing_from_cluster": [4242]}


def test_summary_timeline_and_remediation(report):
    summary = report["summary"]
    assert summary["cts"] == 5 and summary["running"] == 3 and summary["nodes"] == 1
    assert summary["oom_killed"] == [2017] and summary["fork_storm"] == [2017] and summary["raise"] == [2017]
    assert summary["pressure"] == [2017] and summary["no_evidence"] == []
    assert [(item["vmid"], item["victims_total"]) for item in report["timeline"]] == [(2017, 7)]
    assert report["remediation"] == [{"vmid": 2017, "node": "pve1", "from_mb": 1024, "to_mb": 2048,
                                      "action": "fix_forking"}]
    assert report["window"]["since"] == "2024-11-23T00:00:00Z" and report["window"]["now"] == "2024-11-24T00:00:00Z"
    assert report["nodes"][0]["audited"] and report["nodes"][0]["kernel_log"]["kind"] == "file"
    json.dumps(report)


def test_without_declared_file_there_is_no_drift(evidence):
    report = audit.build_report(cluster(), {"pve1": evidence})
    assert report["declared"] is None and all(entry["drift"] is None for entry in report["cts"])


def test_a_ct_on_a_node_that_was_not_audited(evidence):
    resources = cluster([resource_item(3001, "pve2", "far", "running", 1024, 900)])
    report = audit.build_report(resources, [{"node": "pve1", "result": evidence}, {"node": "pve3", "result": None}],
                                failed_nodes={"pve3": "unreachable: ssh timed out"})
    far = by_vmid(report)[3001]
    assert far["evidence_node"] is None and far["severity"] == "no_evidence"
    assert far["recommendation"]["action"] == "no_evidence" and far["headroom_pct"] == 12.1
    assert report["summary"]["no_evidence"] == [3001]
    nodes = {node["node"]: node for node in report["nodes"]}
    assert nodes["pve2"]["audited"] is False and nodes["pve3"]["error"] == "unreachable: ssh timed out"


def test_incidents_of_a_migrated_ct_come_from_every_node(evidence):
    # CT 2017 now lives on pve2, whose logs are clean; its OOM stayed in pve1's log.
    moved = json.loads(json.dumps(evidence))
    pve2 = {"cts": {"2017": dict(moved["cts"]["2017"], incidents=[], oom_events=0)}, "window": moved["window"],
            "sources": moved["sources"], "unattributed_events": []}
    pve1 = dict(moved, cts=dict(moved["cts"]))
    resources = cluster()
    resources["cts"]["2017"]["node"] = "pve2"
    report = audit.build_report(resources, {"pve1": pve1, "pve2": pve2})
    first = report["cts"][0]
    assert first["vmid"] == 2017 and first["evidence_node"] == "pve2"
    assert first["oom"]["killed"] and first["incidents"][0]["node"] == "pve1"


def test_low_headroom_without_oom_is_a_raise():
    evidence = node_evidence(since="@1732406000")         # a window after the incident
    report = audit.build_report(cluster(), {"pve1": evidence})
    haproxy = by_vmid(report)[2017]
    # the cgroup still counts its kills, so it stays OOM-killed; ask the same of a CT with only a high peak
    assert haproxy["oom"]["incidents"] == 0 and haproxy["oom"]["kills_counted"] == 7
    ct = json.loads(json.dumps(evidence["cts"]["101"]))
    ct["counters"]["peak_bytes"] = 1900 * 1024 * 1024
    entry = audit.ct_entry(101, cluster()["cts"]["101"], {"pve1": {"cts": {"101": ct}}}, None)
    assert entry["severity"] == "low_headroom" and entry["headroom_pct"] == 7.2
    assert entry["recommendation"]["action"] == "raise" and entry["recommendation"]["raise_to_mb"] == 2560
    assert entry["recommendation"]["summary"] == "raise to 2,560 MiB"
    assert "7.2% headroom" in entry["recommendation"]["text"]


@pytest.mark.parametrize("kwargs, message", [
    ({"resources": {"nope": 1}, "evidence": {}}, "resources must be the result of enva.pve.pve_resources"),
    ({"resources": {"cts": {}}, "evidence": "x"}, "evidence must be a mapping of node name"),
    ({"resources": {"cts": {}}, "evidence": {"pve1": {"no": "cts"}}}, "evidence of node pve1 is not an"),
    ({"resources": {"cts": {}}, "evidence": [1]}, "each list item must be a mapping with node and result"),
    ({"resources": {"cts": {}}, "evidence": {}, "declared": {"vmid": 1}}, "declared must be the result of"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(audit.ReportError, match=message):
        audit.build_report(**kwargs)


def test_nodes_that_failed_or_dropped_out_are_named(evidence):
    report = audit.build_report(cluster(), [
        {"node": "pve1", "result": evidence},
        {"node": "pve2", "result": None, "error": "kernel_log /x does not exist"}], unreachable=["pve3.example.org"])
    nodes = {node["node"]: node for node in report["nodes"]}
    assert nodes["pve2"] == {"node": "pve2", "cts": 0, "audited": False, "error": "kernel_log /x does not exist"}
    assert re.match(r"^unreachable over SSH at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*, or failed before its evidence was read$",
                    nodes["pve3.example.org"]["error"]), nodes["pve3.example.org"]["error"]
    assert nodes["pve1"]["audited"] is True


def test_a_node_offline_in_cluster_resources_is_named_with_the_audits_time(evidence):
    resources = cluster()
    resources["nodes"] = {"pve1": {"node": "pve1", "status": "online"}, "pve4": {"node": "pve4", "status": "offline"}}
    report = audit.build_report(resources, [{"node": "pve1", "result": evidence}], generated="2026-12-05T16:40:00Z")
    nodes = {node["node"]: node for node in report["nodes"]}
    assert nodes["pve4"]["error"] == "offline in /cluster/resources at 2026-12-05T16:40:00Z (its CTs' status unknown)"
    assert "error" not in nodes["pve1"] and nodes["pve1"]["audited"] is True


def remediation_cluster(memory_2017, with_2017=True):
    resources = cluster()
    if with_2017:
        resources["cts"]["2017"]["maxmem_mb"] = memory_2017
    else:
        del resources["cts"]["2017"]
    return resources


@pytest.mark.parametrize("now, vmids, max_mb, why", [
    (1024, None, None, None),
    (2048, None, None, "it has 2,048 MiB by now (memory is never lowered)"),
    (4096, None, None, "it has 4,096 MiB by now (memory is never lowered)"),
    (1024, [101], None, "not in oom_audit_remediate_vmids"),
    (1024, None, 1536, "above oom_audit_remediate_max_mb (1,536 MiB): raise it by hand if that is right"),
    (None, None, None, "no longer in /cluster/resources"),
])
def test_remediation_only_raises(report, now, vmids, max_mb, why):
    plan = audit.plan_remediation(report, remediation_cluster(now, now is not None), vmids=vmids, max_mb=max_mb)
    if why is None:
        assert plan == {"raise": [{"vmid": 2017, "node": "pve1", "now_mb": 1024, "to_mb": 2048, "declared_mb": 1024}],
                        "skipped": []}
    else:
        assert plan == {"raise": [], "skipped": [{"vmid": 2017, "to_mb": 2048, "why": why}]}


def fixed_evidence(evidence, memory_mb=2048, now=(("haproxy", 2), ("enva-dns-relay", 1))):
    """CT 2017's evidence after the fix: the same OOM incident in the window, its memory and processes now."""
    fixed = json.loads(json.dumps(evidence))
    ct = fixed["cts"]["2017"]
    ct["config"]["memory_mb"] = memory_mb
    ct["counters"].update(limit_bytes=memory_mb * 1048576, usage_bytes=96 * 1048576, peak_bytes=120 * 1048576,
                          pressure=None)
    ct["census"].update(processes=sum(count for _name, count in now), by_command=[
        {"name": name, "count": count, "rss_kb": 4096 * count} for name, count in now])
    return fixed


def test_a_ct_whose_incidents_causes_are_gone_now_is_resolved_and_ranked_after_those_at_risk(evidence):
    report = audit.build_report(cluster(), {"pve1": fixed_evidence(evidence)})
    ct = by_vmid(report)[2017]
    assert ct["severity"] == "resolved" and ct["oom"]["killed"] and ct["oom"]["incidents"] == 1
    assert ct["recommendation"]["action"] == "keep" and ct["recommendation"]["raise_to_mb"] is None
    assert ct["recommendation"]["summary"] == "keep 2,048 MiB: resolved"
    assert "0 process(es) of socat now (the fork storm is gone)" in ct["resolved"]
    assert report["cts"][0]["vmid"] != 2017 and report["summary"]["resolved"] == [2017]
    assert [item["vmid"] for item in report["timeline"]] == [2017]       # the incident stays on record
    assert 2017 not in report["summary"]["raise"]


@pytest.mark.parametrize("memory_mb, now, why", [
    (1024, (("haproxy", 2),), "memory still below what the incident calls for"),
    (2048, (("haproxy", 2), ("socat", 300)), "socat still forks"),
])
def test_a_ct_with_a_cause_still_there_is_not_resolved(evidence, memory_mb, now, why):
    fixed = fixed_evidence(evidence, memory_mb, now)
    if dict(now).get("socat"):
        fixed["cts"]["2017"]["census"]["fork_storms"] = [{"name": "socat", "count": 300, "reason": "300 socat"}]
    ct = by_vmid(audit.build_report(cluster(), {"pve1": fixed}))[2017]
    assert ct["resolved"] is None and ct["severity"] == "oom", why


def test_a_resolved_ct_says_why_in_the_rendered_findings(evidence):
    report = audit.build_report(cluster(), {"pve1": fixed_evidence(evidence)})
    ct = by_vmid(report)[2017]
    assert findings._cause(ct).startswith("resolved: 2,048 MiB now covers")  # pylint: disable=protected-access
