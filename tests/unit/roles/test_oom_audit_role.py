"""roles/oom_audit: meta/argument_specs.yml in step with defaults/main.yml, every public variable the role reads
is documented, and the playbook's syntax is valid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "oom_audit"
# Facts the role sets for the play (documented in the argument spec's description), not inputs.
RETURNED = {"oom_audit_summary", "oom_audit_report_files"}
TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict}


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def defaults():
    return load(ROLE / "defaults" / "main.yml")


@pytest.fixture(scope="module")
def options():
    return load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def used_variables():
    names = set()
    for folder, pattern in (("tasks", "*.yml"), ("templates", "*.j2"), ("vars", "*.yml")):
        for path in (ROLE / folder).glob(pattern):
            names |= set(re.findall(r"(?<![\w.])(oom_audit_\w+)", path.read_text(encoding="utf-8")))
    return names


def test_same_variables(defaults, options):
    assert sorted(set(defaults) - set(options)) == [], "in defaults/main.yml, not in meta/argument_specs.yml"
    assert sorted(set(options) - set(defaults)) == [], "in meta/argument_specs.yml, not in defaults/main.yml"


def test_public_names_carry_the_role_prefix(defaults):
    assert [name for name in defaults if not name.startswith("oom_audit_")] == []
    internal = load(ROLE / "vars" / "main.yml")
    assert [name for name in internal if not name.startswith("__oom_audit_")] == []


@pytest.mark.parametrize("name", sorted(load(ROLE / "defaults" / "main.yml")))
def test_default_and_type_agree(defaults, options, name):
    spec = options[name]
    assert spec.get("description"), "%s has no description" % name
    assert spec.get("default") == defaults[name], "%s: default %r in argument_specs, %r in defaults" % (
        name, spec.get("default"), defaults[name])
    assert isinstance(defaults[name], TYPES[spec["type"]]), "%s: %r is not a %s" % (name, defaults[name], spec["type"])
    if spec["type"] == "list":
        assert "elements" in spec, "%s: a list without elements" % name
    if "choices" in spec:
        values = defaults[name] if spec["type"] == "list" else [defaults[name]]
        assert set(values) <= set(spec["choices"]), "%s: default outside its choices" % name


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
