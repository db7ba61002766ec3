"""enva.pve.oom_watch ships the agent whole and the parsers it imports, no more, no fewer (one home:
plugins/module_utils), and its unit is as hardened as its docs say."""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "oom_watch"
AGENT = ROLE / "files" / "enva_oom_watch"
PREFIX = "ansible_collections.enva.pve.plugins.module_utils"


def role_vars():
    return yaml.safe_load((ROLE / "vars" / "main.yml").read_text())


def imported_parsers(path, seen=None):
    """module_utils files that path imports, followed through the parsers' own imports."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            names = ([node.module[len(PREFIX) + 1:]] if node.module != PREFIX else [a.name for a in node.names])
        for name in names:
            if name and name + ".py" not in seen:
                seen.add(name + ".py")
                imported_parsers(ROOT / "plugins" / "module_utils" / (name + ".py"), seen)
    return seen


def test_the_role_ships_every_agent_file():
    shipped = set(role_vars()["__oom_watch_agent_files"])
    assert shipped == {path.name for path in AGENT.glob("*.py")}


def test_the_role_ships_exactly_the_parsers_the_agent_imports():
    needed = set()
    for path in AGENT.glob("*.py"):
        imported_parsers(path, needed)
    assert needed == set(role_vars()["__oom_watch_parsers"])
    assert not (AGENT / "cgroup_memory.py").exists()          # never a second copy


def test_agent_files_stay_small():
    for path in AGENT.glob("*.py"):
        assert len(path.read_text().splitlines()) < 600, path.name


def render_unit(**overrides):
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = dict(defaults, **role_vars())
    values.update({"__oom_watch_textfile_dir": "/var/lib/prometheus/node-exporter",
                   "__oom_watch_flight_dir": "/var/lib/enva-oom-watch/flight", "ansible_managed": "managed"})
    values.update(overrides)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: "# " + text
    env.filters["quote"] = lambda text: "'%s'" % text
    text = (ROLE / "templates" / "enva-oom-watch.service.j2").read_text()
    return env.from_string(text).render(**values)


def directives(unit):
    pairs = [line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    result = {}
    for key, value in pairs:
        result.setdefault(key, []).append(value)
    return result


def test_unit_writes_only_its_directories_and_the_psi_trigger():
    unit = directives(render_unit())
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ReadWritePaths"] == ["/var/lib/enva-oom-watch /var/lib/prometheus/node-exporter", "/sys/fs/cgroup"]
    assert unit["CapabilityBoundingSet"] == ["CAP_SYSLOG CAP_SYS_RESOURCE"]
    assert unit["MemoryMax"] == ["48M"] and unit["Nice"] == ["10"]
    assert "ProtectKernelLogs" not in unit                      # it would hide /dev/kmsg
    read_only = directives(render_unit(oom_watch_psi_trigger=""))
    assert read_only["ReadWritePaths"] == ["/var/lib/enva-oom-watch /var/lib/prometheus/node-exporter"]
    assert read_only["ProtectControlGroups"] == ["yes"]
