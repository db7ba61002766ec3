"""The relay file itself: Python 3.9 syntax, standard library only, no shebang (it runs as `python3 FILE`)."""

from __future__ import annotations

import ast
import os
import stat
import sys

from ansible_collections.enva.pve.tests.integration.relay.relay_support import RELAY


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in a single-file program"
            yield node.module.partition(".")[0]


def test_parses_as_python_3_9():
    ast.parse(RELAY.read_text(encoding="utf-8"), filename=str(RELAY), feature_version=(3, 9))


def test_imports_only_the_standard_library():
    modules = set(imported_modules(ast.parse(RELAY.read_text(encoding="utf-8"))))
    assert modules, "found no imports at all: the walk is broken"
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)
    assert "secrets" not in modules and "hashlib" not in modules, "would load OpenSSL (4 MiB RSS) for os.urandom"


def test_no_shebang_and_not_executable():
    assert not RELAY.read_bytes().startswith(b"#!")
    assert not os.stat(RELAY).st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
