"""What the role tests share: a role's defaults and argument spec options, the public variables its files
read, and the checks that keep meta/argument_specs.yml in step with defaults/main.yml (as prometheus-community/ansible's lint_arguments_spec.sh)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict, "path": str}
# Where a role reads its variables; tag names are not variables.
SOURCES = (("tasks", "*.yml"), ("templates", "*.j2"), ("handlers", "*.yml"), ("vars", "*.yml"))
TAG_LINE = re.compile(r"(?m)^\s*tags:.*$")


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def role_defaults(role):
    return load(role / "defaults" / "main.yml")


def role_options(role):
    return load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def used_variables(role, prefix):
    """Every name starting with prefix that the role's tasks, templates, handlers and vars mention."""
    names = set()
    for folder, pattern in SOURCES:
        for path in (role / folder).glob(pattern):
            text = TAG_LINE.sub("", path.read_text(encoding="utf-8"))
            names |= set(re.findall(r"(?<![\w.])(%s\w+)" % re.escape(prefix), text))
    return names


def assert_same_variables(defaults, options):
    """Every default is documented, and every option has a default unless it is required (a site value, such
    as the CT's VMID, that the inventory must give)."""
    assert sorted(set(defaults) - set(options)) == [], "in defaults/main.yml, not in meta/argument_specs.yml"
    optional = {name for name, spec in options.items() if not spec.get("required")}
    assert sorted(optional - set(defaults)) == [], "in meta/argument_specs.yml, not in defaults/main.yml"
    required = {name for name, spec in options.items() if spec.get("required")}
    assert sorted(required & set(defaults)) == [], "required in meta/argument_specs.yml, yet given a default"


def assert_default_agrees(name, spec, value):
    """The option is described, its spec default is the defaults/main.yml value, of the declared type
    (unless null or a template computed when the role runs), and within its choices."""
    assert spec.get("description"), "%s has no description" % name
    assert "default" in spec, "%s: argument_specs has no default" % name
    assert spec["default"] == value, "%s: default %r in argument_specs, %r in defaults" % (name, spec["default"], value)
    if value is None or (isinstance(value, str) and "{{" in value):
        return
    assert isinstance(value, TYPES[spec["type"]]), "%s: %r is not a %s" % (name, value, spec["type"])
    if spec["type"] == "list":
        assert "elements" in spec, "%s: a list without elements" % name
    if "choices" in spec:
        values = value if spec["type"] == "list" else [value]
        assert set(values) <= set(spec["choices"]), "%s: default outside its choices" % name
