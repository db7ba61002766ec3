"""The declared files declared_ct's tests edit: tests/unit/fixtures/declared/, plus the two that no repository
check lets in as they are (CRLF with a BOM; YAML that does not parse), made byte for byte at test time."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.declared_yaml import BOM

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "declared"
BROKEN_YAML = b"containers:\n  - vmid: 2017\n    memory: 1024\n    tags: [edge, haproxy\n  - vmid: 2018\n"
MADE = {
    "crlf-bom.yaml": lambda: BOM + (FIXTURES / "windows.yaml").read_bytes().replace(b"\n", b"\r\n"),
    "not-yaml.yaml": lambda: BROKEN_YAML,
}


def fixture_bytes(name):
    """The bytes of the declared fixture ``name``."""
    return MADE[name]() if name in MADE else (FIXTURES / name).read_bytes()
