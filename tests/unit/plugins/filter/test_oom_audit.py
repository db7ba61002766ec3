"""The oom_audit filters: wired to the report library, bad input as AnsibleFilterError, docs that ansible-doc renders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.enva.pve.plugins.filter import oom_audit
from support.audit_inputs import cluster, node_evidence

ROOT = Path(__file__).resolve().parents[4]


def test_filters_are_registered():
    assert sorted(oom_audit.FilterModule().filters()) == [
        "oom_audit_command", "oom_audit_html", "oom_audit_markdown", "oom_audit_remediation", "oom_audit_report"]


def test_report_then_markdown_and_html():
    report = oom_audit.oom_audit_report(cluster(), [{"node": "pve1", "result": node_evidence()}])
    assert report["cts"][0]["vmid"] == 2017
    assert oom_audit.oom_audit_markdown(report, max_rows=1).count("\n| 1 | 2017 |") == 1
    assert oom_audit.oom_audit_html(report).startswith("<!DOCTYPE html>")
    command = oom_audit.oom_audit_command(report, inventory=["hosts.yml"], check=True)
    assert command.startswith("ansible-playbook -i hosts.yml enva.pve.oom_audit -e oom_audit_remediate=true")
    assert command.endswith(" --check --diff") and command[:-len(" --check --diff")] in \
        oom_audit.oom_audit_markdown(report, inventory=["hosts.yml"])


@pytest.mark.parametrize("call, message", [
    (lambda: oom_audit.oom_audit_report({"cts": {}}, "nope"), "oom_audit_report: evidence must be a mapping"),
    (lambda: oom_audit.oom_audit_markdown({"x": 1}), "oom_audit_markdown: the input must be the output of"),
    (lambda: oom_audit.oom_audit_html([]), "oom_audit_html: the input must be the output of"),
    (lambda: oom_audit.oom_audit_command({}), "oom_audit_command: the input must be the output of"),
    (lambda: oom_audit.oom_audit_remediation({"cts": [], "summary": {}, "remediation": []}, {"x": 1}),
     "oom_audit_remediation: resources must be the result of enva.pve.pve_resources"),
])
def test_bad_input(call, message):
    with pytest.raises(AnsibleFilterError, match=message):
        call()


@pytest.mark.parametrize("name", ["oom_audit_report", "oom_audit_markdown", "oom_audit_html", "oom_audit_remediation",
                                  "oom_audit_command"])
def test_ansible_doc_renders(name):
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), "-t", "filter", "--json",
                           "enva.pve.%s" % name], capture_output=True, text=True, check=False, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)["enva.pve.%s" % name]["doc"]
    assert doc["name"] == name and doc["short_description"]
