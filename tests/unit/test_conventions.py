"""The house conventions (issue 13), kept by tests so they stay kept.

- Shipped documentation (module DOCUMENTATION/EXAMPLES/RETURN, doc fragments, playbooks, roles'
  meta and README) speaks of example.org names and documentation addresses (RFC 5737, RFC 3849),
  never of the lab's (node pve1, 10.217.0.0/24 on the lab bridge, lab.enva.test, the API lab on
  127.0.0.1:8006, the lab directory).
- Modules take their attributes' meaning from the enva.pve.attributes doc fragment.
- Every tag in roles/*/tasks carries its role's name (`dns_relay_install`, not `install`), so
  `--tags install` selects no task of any role.
- Molecule scenarios live where molecule expects them in a collection (extensions/molecule), with a
  `default` scenario, so no run starts with a CRITICAL line.
- The test tiers (tests/unit, tests/integration, tests/bench) never import each other: what two of them
  share lives in tests/support and is imported as ``from support.X import ...`` (never through
  ``ansible_collections.enva.pve.tests``); tests/support imports no tier. sys.path is edited in one place,
  tests/bench/bootstrap.py (pytest.ini's ``pythonpath`` does it for the tests).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))
ROLES = sorted(p.parents[1] for p in (ROOT / "roles").glob("*/tasks/main.yml"))

# What the lab is called and where it lives. Documentation addresses (192.0.2.0/24, 198.51.100.0/24,
# 203.0.113.0/24, 2001:db8::/32), example.org names and loopback alone are what docs use instead.
LAB_NAMES = {
    "a lab PVE node name (pve1, pve2)": r"\bpve\d\b",
    "a private IPv4 address (the lab bridge is 10.217.0.0/24)":
        r"(?<![\d.])(10\.\d{1,3}|192\.168|172\.(1[6-9]|2\d|3[01]))\.\d{1,3}\.\d{1,3}(?![\d])",
    "an IPv6 unique local address": r"(?i)\bfd[0-9a-f]{2}:[0-9a-f:]*:",
    "the lab's DNS zone": r"(?i)\benva\.test\b",
    "the PVE API lab's address": r"(127\.0\.0\.1|localhost):8006\b",
    "the lab's files or tools": r"/var/lib/enva-lab|\blabctl\b|\bENVA_LAB_|inventories/lab\b|tests/lab\b",
}


def lab_names_in(text):
    return [
        f"{what}: {m.group(0)!r} in line {text.count(chr(10), 0, m.start()) + 1}"
        for what, pattern in LAB_NAMES.items()
        for m in re.finditer(pattern, text)
    ]


def module_docs(path):
    """The DOCUMENTATION, EXAMPLES and RETURN strings of a module, read without importing it."""
    docs = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")):
            docs[node.targets[0].id] = ast.literal_eval(node.value)
    return docs


def fragment_docs(path):
    """Every string attribute of a doc fragment's ModuleDocFragment class."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and node.name == "ModuleDocFragment":
            return {
                item.targets[0].id: ast.literal_eval(item.value)
                for item in node.body
                if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name)
                and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str)
            }
    return {}


def values_of(node, keys):
    """Every value under one of keys anywhere in a YAML tree, a list's items one by one."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys:
                yield from ([value] if isinstance(value, str) else value)
            else:
                yield from values_of(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from values_of(item, keys)


def shipped_docs():
    for path in MODULES:
        for name, text in module_docs(path).items():
            yield f"{path.relative_to(ROOT)} {name}", text
    for path in sorted((ROOT / "plugins" / "doc_fragments").glob("*.py")):
        for name, text in fragment_docs(path).items():
            yield f"{path.relative_to(ROOT)} {name}", text
    for path in sorted((ROOT / "playbooks").glob("*.yml")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for role in ROLES:
        for path in sorted((role / "meta").glob("*.yml")):
            # Descriptions only: defaults are the role's behaviour, kept in step with defaults/main.yml
            # by the roles' own tests.
            meta = yaml.safe_load(path.read_text(encoding="utf-8"))
            yield str(path.relative_to(ROOT)), "\n".join(values_of(meta, ("description", "short_description")))
        if (role / "README.md").is_file():
            yield str((role / "README.md").relative_to(ROOT)), (role / "README.md").read_text(encoding="utf-8")


SHIPPED = dict(shipped_docs())


def test_lab_name_patterns_catch_the_lab():
    found = lab_names_in(
        "node: pve1\nserver: 10.217.0.53\nname: www.lab.enva.test\napi: 127.0.0.1:8006\n"
        "labctl up\nfd00::17\n192.168.1.2\n172.20.0.1\n"
    )
    assert len(found) == 8, found
    assert lab_names_in(
        "node: node1\nserver: 192.0.2.53\nname: www.example.org\napi_port: 8006\nlisten: 127.0.0.1\n"
        "2001:db8::17\nvmid: 2017\nversion 10.0\n"
    ) == []


def test_shipped_docs_are_found():
    assert len([k for k in SHIPPED if k.startswith("plugins/modules/")]) == 3 * len(MODULES) >= 15
    assert any(k.startswith("playbooks/") for k in SHIPPED)
    assert any(k.endswith("argument_specs.yml") for k in SHIPPED)


@pytest.mark.parametrize("where", sorted(SHIPPED))
def test_shipped_docs_use_example_names_not_the_labs(where):
    found = lab_names_in(SHIPPED[where])
    assert not found, f"{where} names the lab; use example.org names and 192.0.2.x/2001:db8:: addresses: {found}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_module_attributes_come_from_the_fragment(path):
    doc = yaml.safe_load(module_docs(path)["DOCUMENTATION"])
    assert "enva.pve.attributes" in doc.get("extends_documentation_fragment", []), path.name
    for name, attribute in (doc.get("attributes") or {}).items():
        assert "description" not in attribute, (
            f"{path.name}: attributes.{name}.description repeats the fragment's; say how this module "
            "supports it in details"
        )


def test_roles_are_found():
    assert {r.name for r in ROLES} >= {"dns_relay", "haproxy_dns", "oom_audit"}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_tags_carry_the_role_name(role):
    tags = {
        tag: path.name
        for path in sorted((role / "tasks").glob("*.yml"))
        for tag in values_of(yaml.safe_load(path.read_text(encoding="utf-8")), ("tags",))
    }
    assert tags, f"{role.name} has no tags"
    stray = {tag: where for tag, where in tags.items() if tag != role.name and not tag.startswith(role.name + "_")}
    assert not stray, f"tags of {role.name} must be {role.name} or {role.name}_<step>: {stray}"


def test_molecule_scenarios_are_where_molecule_looks_in_a_collection():
    # molecule 26 in a collection reads extensions/molecule/**/molecule.yml; a molecule/ directory
    # at the top switches it back to the old layout (a warning) and loses the scenarios moved away.
    assert not (ROOT / "molecule").exists(), "scenarios belong in extensions/molecule/<name>/"
    base = ROOT / "extensions" / "molecule"
    scenarios = sorted(p.parent.name for p in base.glob("*/molecule.yml"))
    # Before every run molecule loads the default scenario; without one it logs
    # CRITICAL 'molecule/default/molecule.yml' glob failed.
    assert "default" in scenarios
    assert {"dns_relay", "haproxy_dns", "lxc_memory", "oom_audit"} <= set(scenarios)
    assert (base / "config.yml").is_file()


PLAYBOOK_STEPS = {"create", "prepare", "converge", "side_effect", "verify", "cleanup", "destroy"}


@pytest.mark.parametrize("scenario", sorted((ROOT / "extensions" / "molecule").glob("*/molecule.yml")),
                         ids=lambda p: p.parent.name)
def test_molecule_sequence_steps_have_their_playbooks(scenario):
    # A step without its playbook makes molecule warn "Missing playbook" and count the run as one
    # with missing files: the sequence (the scenario's own, else the base's) names only steps it has.
    base = yaml.safe_load((ROOT / "extensions" / "molecule" / "config.yml").read_text(encoding="utf-8"))
    own = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    sequence = (own.get("scenario") or {}).get("test_sequence", base["scenario"]["test_sequence"])
    missing = [step for step in sequence if step in PLAYBOOK_STEPS and not (scenario.parent / f"{step}.yml").is_file()]
    assert not missing, f"{scenario.parent.name}: no playbook for {missing}"


# --- the test tiers -------------------------------------------------------------------------------------------

TESTS = ROOT / "tests"
TIERS = ("unit", "integration", "bench")
BOOTSTRAP = TESTS / "bench" / "bootstrap.py"


def python_under_tests():
    return sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)


def tier_of(path):
    """unit, integration, bench, support or lab: the top folder under tests/ of ``path``."""
    return Path(path).resolve().relative_to(TESTS).parts[0]


def imported_tiers(path):
    """(line, module, tier) of each import in ``path`` that resolves to a file under tests/."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent.parents[node.level - 2] if node.level > 1 else path.parent
            found.append((node.lineno, "." * node.level + (node.module or ""), tier_of(base)))
            continue
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] + ["%s.%s" % (node.module, alias.name) for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:4] == ["ansible_collections", "enva", "pve", "tests"]:
                found.append((node.lineno, name, "ansible_collections.enva.pve.tests"))
            elif parts[0] in TIERS + ("support",):
                found.append((node.lineno, name, parts[0]))
            elif (TESTS / "bench" / (parts[0] + ".py")).exists():     # a benchmark module, by its own name
                found.append((node.lineno, name, "bench"))
    return found


def sys_path_edits(path):
    """Lines of ``path`` that change sys.path (assign to it or its items, or call a list method on it)."""
    def is_sys_path(node):
        return isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
            and node.value.id == "sys"
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if is_sys_path(target) or isinstance(target, ast.Subscript) and is_sys_path(target.value):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value) \
                and node.func.attr in ("insert", "append", "extend", "remove", "pop", "clear"):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_tier_checks_catch_a_crossing(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import sys\nimport relay_bench\nfrom support.net import poll\nfrom unit import x\n"
                      "from ansible_collections.enva.pve.tests.integration.relay import y\n"
                      "sys.path.insert(0, 'a')\nsys.path[:0] = ['b']\nsys.path += ['c']\nprint(sys.path[0])\n")
    assert [tier for _line, _name, tier in imported_tiers(sample)] == [
        "bench", "support", "support", "unit", "unit"] + ["ansible_collections.enva.pve.tests"] * 2
    assert sys_path_edits(sample) == [6, 7, 8]


def test_the_tiers_are_found():
    assert {tier_of(path) for path in python_under_tests()} >= set(TIERS) | {"support", "lab"}


@pytest.mark.parametrize("path", [p for p in python_under_tests() if tier_of(p) in TIERS + ("support",)],
                         ids=lambda p: str(p.relative_to(TESTS)))
def test_a_tier_imports_only_itself_and_tests_support(path):
    own = tier_of(path)
    allowed = {"support"} if own == "support" else {own, "support"}
    crossing = ["line %d: %s (%s)" % (line, name, tier) for line, name, tier in imported_tiers(path)
                if tier not in allowed]
    assert crossing == [], "%s imports outside its tier and tests/support: %s" % (path.relative_to(ROOT), crossing)


def test_sys_path_is_edited_only_by_the_bench_bootstrap():
    edits = {str(path.relative_to(ROOT)): sys_path_edits(path) for path in python_under_tests() if path != BOOTSTRAP}
    assert {where: lines for where, lines in edits.items() if lines} == {}
    assert sys_path_edits(BOOTSTRAP)
