"""The relay's source: Python 3.9 syntax, the standard library only, no shebang; modules a reader can hold."""

from __future__ import annotations

import ast
import os
import stat
import sys
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[3] / "roles" / "dns_relay" / "files"
LAUNCHER = FILES / "enva_dns_relay.py"
PACKAGE = FILES / "enva_relay"
SOURCES = [LAUNCHER] + sorted(PACKAGE.glob("*.py"))
OWN = {"enva_relay"}


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:  # relative imports stay inside the package
            yield node.module.partition(".")[0]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_parses_as_python_3_9(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def test_imports_only_the_standard_library():
    modules = set()
    for path in SOURCES:
        modules |= set(imported_modules(ast.parse(path.read_text(encoding="utf-8"))))
    assert len(modules) > 10, "found few imports: the walk is broken"
    assert modules - OWN <= set(sys.stdlib_module_names), modules - OWN - set(sys.stdlib_module_names)
    assert "secrets" not in modules and "hashlib" not in modules, "would load OpenSSL (4 MiB RSS) for os.urandom"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_shebang_not_executable_and_short_enough_to_hold(path):
    assert not path.read_bytes().startswith(b"#!")
    assert not os.stat(path).st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 600
