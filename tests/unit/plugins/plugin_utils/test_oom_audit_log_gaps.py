"""The fleet audit shows, per node, what its kernel log could not show, and a CT's "no OOM" there as none seen."""

from __future__ import annotations

from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_render as render
from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report as audit
from support import journald_notices as notices
from support.audit_inputs import FIXTURES, NOW, cluster, node_evidence

BOOT = 1732390000.0


def evidence_with_gaps(tmp_path, monkeypatch):
    """The fixture node's evidence from a saved journal that also holds journald's notice of lost kernel lines
    and a kernel rate-limit line, as ``journalctl -o json`` (without a _TRANSPORT match) writes them."""
    saved = tmp_path / "pve1.journal.jsonl"
    lines = (FIXTURES / "kernel" / "incident-2017-v2.journal.jsonl").read_text().splitlines()
    lines += [notices.missed(1732405000.0, 1021, BOOT),
              notices.kernel(1732405001.0, "oom_kill_process: 9 callbacks suppressed", BOOT)]
    saved.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", "/nonexistent/journal/socket")
    result = lxc_oom_evidence.gather({
        "vmid": None, "since": "@1732320000", "kernel_log": str(saved), "lifecycle_log": str(FIXTURES / "lifecycle"),
        "census": True, "cgroup_root": str(FIXTURES / "cgroup" / "v2-node"),
        "pve_config_dir": str(FIXTURES / "pve-lxc")}, run=None, now=NOW)
    assert sum("kernel_log gap" in warning for warning in result.pop("warnings")) == 2
    return result


def test_the_report_says_what_the_node_could_not_read(tmp_path, monkeypatch):
    report = audit.build_report(cluster(), {"pve1": evidence_with_gaps(tmp_path, monkeypatch)})
    (node,) = report["nodes"]
    assert [(gap["kind"], gap["count"]) for gap in node["kernel_log"]["gaps"]] == [
        ("journal_missed", 1021), ("kernel_ratelimit", 9)]
    app = next(entry for entry in report["cts"] if entry["vmid"] == 101)
    assert app["oom"]["killed"] is False and app["oom"]["kernel_log_complete"] is False
    assert app["oom"]["log_gaps"] == ["journal_missed", "kernel_ratelimit"]
    assert 101 in report["summary"]["kernel_log_incomplete"] and 2017 in report["summary"]["kernel_log_incomplete"]
    markdown = render.render_markdown(report)
    assert "## What the logs could not show" in markdown
    # 2017 was OOM-killed all the same; the others' "no OOM" is what the gap leaves open
    assert "### Node pve1: no OOM seen in CT 101, 102, 703, 9000 does not mean none happened" in markdown
    assert ("- journal_missed from systemd-journald: 1,021 (2024-11-23T23:36:40+00:00) - journald lost these "
            "kernel lines before it stored them;" in markdown)
    assert "Logged: oom_kill_process: 9 callbacks suppressed" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| ") and " | 101 | app |" in line)
    assert "none seen (kernel log incomplete)" in row
    html = render.render_html(report)
    assert '<div class="log-gaps" data-node="pve1">' in html and "oom_kill_process: 9 callbacks suppressed" in html


def test_a_node_without_gaps_reads_as_before():
    report = audit.build_report(cluster(), {"pve1": node_evidence()})
    app = next(entry for entry in report["cts"] if entry["vmid"] == 101)
    assert app["oom"]["kernel_log_complete"] is True and report["summary"]["kernel_log_incomplete"] == []
    markdown = render.render_markdown(report)
    assert "What the logs could not show" not in markdown and "none seen" not in markdown


def test_evidence_of_an_older_collection_has_no_gap_fields():
    evidence = node_evidence()
    for report in evidence["cts"].values():
        for key in ("kernel_log_complete", "lifecycle_log_complete", "log_gaps"):
            report["verdict"].pop(key)
    evidence["sources"]["kernel_log"].pop("gaps")
    report = audit.build_report(cluster(), {"pve1": evidence})
    assert report["summary"]["kernel_log_incomplete"] == []
    assert "What the logs could not show" not in render.render_markdown(report)
