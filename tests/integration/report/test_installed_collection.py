"""The report's templates ship in the collection artifact and load from an installed collection.

``ansible-galaxy collection build`` of this checkout, ``ansible-galaxy collection install`` of the tarball into a
fresh collections path, then ansible (not this checkout) renders a report with enva.pve.oom_audit_markdown and
enva.pve.oom_audit_html from there: the renderer finds its Jinja2 templates next to itself in the installed tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_findings
from support.audit_inputs import varied_fleet
from support.release import BIN, install_release

TEMPLATES = ["plugins/plugin_utils/templates/oom_audit.html.j2", "plugins/plugin_utils/templates/oom_audit.md.j2"]


def run(command, cwd, env):
    done = subprocess.run(command, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, "%s: %s%s" % (" ".join(map(str, command)), done.stdout[-3000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("installed")
    tarball, _path, _env = install_release(tmp)
    return tmp, tarball


def test_the_tarball_holds_the_templates(installed):
    _tmp, tarball = installed
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert set(TEMPLATES) <= names
    assert {"plugins/plugin_utils/oom_audit_render.py", "plugins/plugin_utils/oom_audit_findings.py",
            "plugins/plugin_utils/oom_audit_charts.py"} <= names


def test_ansible_renders_both_formats_from_the_installed_collection(installed, tmp_path):
    tmp, _tarball = installed
    report = varied_fleet(tmp_path)
    (tmp_path / "vars.json").write_text(json.dumps({"fleet": report}))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "render.yml").write_text("""\
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        content: "{{ fleet | enva.pve.oom_audit_markdown(inventory=['/srv/site/hosts.yml']) }}"
        dest: "%(out)s/report.md"
        mode: "0644"
    - ansible.builtin.copy:
        content: "{{ fleet | enva.pve.oom_audit_html(inventory=['/srv/site/hosts.yml']) }}"
        dest: "%(out)s/report.html"
        mode: "0644"
""" % {"out": tmp_path})
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "PYTHONPATH"))}
    env.update(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(tmp / "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_LOCALHOST_WARNING="false")
    run([BIN / "ansible-playbook", "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "@%s" % (tmp_path / "vars.json"),
         "render.yml"], tmp_path, env)
    command = oom_audit_findings.remediation_command(report, ["/srv/site/hosts.yml"])
    markdown = (tmp_path / "report.md").read_text()
    assert "```sh\n%s\n```" % command in markdown
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="remediate"' in page and 'id="chart-headroom"' in page
