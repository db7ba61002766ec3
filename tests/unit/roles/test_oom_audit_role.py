"""roles/oom_audit: meta/argument_specs.yml in step with defaults/main.yml, every public variable the role reads
is documented, and the playbook's syntax is valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.enva.pve.tests.unit.roles import role_specs
from ansible_collections.enva.pve.tests.unit.roles.role_specs import (  # noqa: F401  pylint: disable=unused-import
    ROOT, defaults, options)

ROLE = ROOT / "roles" / "oom_audit"
# Facts the role sets for the play (documented in the argument spec's description), not inputs.
RETURNED = {"oom_audit_summary", "oom_audit_report_files"}


def used_variables():
    return role_specs.used_variables(ROLE, "oom_audit_")


def test_same_variables(defaults, options):
    role_specs.assert_same_variables(defaults, options)


def test_public_names_carry_the_role_prefix(defaults):
    assert [name for name in defaults if not name.startswith("oom_audit_")] == []
    internal = role_specs.load(ROLE / "vars" / "main.yml")
    assert [name for name in internal if not name.startswith("__oom_audit_")] == []


@pytest.mark.parametrize("name", sorted(role_specs.role_defaults(ROLE)))
def test_default_and_type_agree(defaults, options, name):
    role_specs.assert_default_agrees(name, options[name], defaults[name])


def test_every_variable_the_role_reads_is_documented(options):
    assert sorted(used_variables() - set(options) - RETURNED) == []


def test_every_documented_variable_is_used(options):
    assert sorted(set(options) - used_variables()) == []


def test_playbook_syntax():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "--syntax-check", "-i",
                           "pve1,", str(ROOT / "playbooks" / "oom_audit.yml")],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
