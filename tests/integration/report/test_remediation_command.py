"""The report's remediation command, run word for word, raises exactly the CTs the report names.

A synthetic fleet of 12 CTs on 3 nodes behind the PVE API lab (HTTPS on loopback, tests/lab/pve_api.py
--synthetic-cts), with the kernel logs and journals of tests/support/fleet.py: the audit
(playbooks/oom_audit.yml) writes its Markdown report; the ```sh block under "Remediate" is split with shlex and
run as it stands; a second audit then finds those CTs at the memory the first one recommended, and nothing left
to raise.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest

from support import fleet

CTS = 12


@pytest.fixture(scope="module")
def audited():
    with fleet.fleet(CTS) as the_fleet:
        # the site's token may change memory (the benchmark's is read-only: remediation would get its 403)
        site = json.loads(the_fleet.inventory.read_text())
        site["all"]["vars"].update(oom_audit_api_token_id="ansible",
                                   oom_audit_api_token_secret=the_fleet.api.credentials["tokens"]["enva@pve!ansible"]["secret"])
        the_fleet.inventory.write_text(json.dumps(site))
        first = fleet.run_audit(the_fleet)
        assert first["returncode"] == 0, first["output"]
        yield the_fleet


def report(base):
    return json.loads((base / "report" / "oom-audit.json").read_text())


def test_the_command_in_the_report_raises_exactly_those_cts(audited):
    base, inventory = audited.base, audited.inventory
    before = report(base)
    to_raise = {item["vmid"]: item["to_mb"] for item in before["remediation"]}
    assert fleet.FIRST_VMID + fleet.STORM_INDEX in to_raise
    markdown = (base / "report" / "oom-audit.md").read_text()
    (command,) = re.findall(r"## Remediate: .*\n\n```sh\n(.+)\n```", markdown)
    words = shlex.split(command)
    assert words[:3] == ["ansible-playbook", "-i", str(inventory)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(fleet.ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(fleet.ROOT / ".cache" / "collections"),
               PATH="%s:%s" % (fleet.BIN, os.environ.get("PATH", "")))
    done = subprocess.run(words, env=env, cwd=str(fleet.ROOT), capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # the play's own summary (printed, YAML-wrapped, before it remediates) names the same CTs and command
    printed = " ".join(done.stdout.split())
    assert "Remediate (raise the memory of CT %s): ansible-playbook -i %s enva.pve.oom_audit" % (
        ", ".join(str(vmid) for vmid in to_raise), inventory) in printed
    assert command.split(" -e ")[-1] in printed
    again = fleet.run_audit(audited)
    assert again["returncode"] == 0, again["output"]
    after = {entry["vmid"]: entry for entry in report(base)["cts"]}
    assert {vmid: after[vmid]["memory_mb"] for vmid in to_raise} == to_raise
    untouched = [entry for entry in before["cts"] if entry["vmid"] not in to_raise]
    assert untouched and all(after[entry["vmid"]]["memory_mb"] == entry["memory_mb"] for entry in untouched)
    assert not set(item["vmid"] for item in report(base)["remediation"]) & set(to_raise)
