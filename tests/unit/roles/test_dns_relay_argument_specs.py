"""roles/dns_relay: meta/argument_specs.yml in step with defaults/main.yml, and every public
variable the role reads is documented (as prometheus-community/ansible's lint_arguments_spec.sh)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "dns_relay"
# Facts the role sets for its callers (documented in the README), not inputs.
RETURNED = {"dns_relay_swap_result", "dns_relay_rss_bytes"}
TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict, "path": str}


@pytest.fixture(scope="module")
def defaults():
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def options():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return specs["argument_specs"]["main"]["options"]


def used_variables():
    names = set()
    for path in list((ROLE / "tasks").glob("*.yml")) + list((ROLE / "templates").glob("*.j2")) + \
            list((ROLE / "handlers").glob("*.yml")) + list((ROLE / "vars").glob("*.yml")):
        names |= set(re.findall(r"(?<![\w.])(dns_relay_\w+)", path.read_text(encoding="utf-8")))
    return names


def test_same_variables(defaults, options):
    assert sorted(set(defaults) - set(options)) == [], "in defaults/main.yml, not in meta/argument_specs.yml"
    assert sorted(set(options) - set(defaults)) == [], "in meta/argument_specs.yml, not in defaults/main.yml"


def test_public_names_carry_the_role_prefix(defaults):
    assert [name for name in defaults if not name.startswith("dns_relay_")] == []


@pytest.mark.parametrize("name", sorted(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))))
def test_default_and_type_agree(defaults, options, name):
    spec = options[name]
    assert spec.get("description"), "%s has no description" % name
    assert "default" in spec, "%s: argument_specs has no default" % name
    assert spec["default"] == defaults[name], "%s: default %r in argument_specs, %r in defaults" % (
        name, spec["default"], defaults[name])
    assert isinstance(defaults[name], TYPES[spec["type"]]), "%s: %r is not a %s" % (name, defaults[name], spec["type"])
    if spec["type"] == "list":
        assert "elements" in spec, "%s: a list without elements" % name
    if "choices" in spec:
        values = defaults[name] if spec["type"] == "list" else [defaults[name]]
        assert set(values) <= set(spec["choices"]), "%s: default outside its choices" % name


def test_every_variable_the_role_reads_is_documented(options):
    undocumented = used_variables() - set(options) - RETURNED
    assert sorted(undocumented) == []


def test_every_documented_variable_is_used(options):
    assert sorted(set(options) - used_variables()) == []
