"""No escape sequence in a Jinja string literal that YAML hands over unprocessed (issue 22).

YAML turns `\\n` into a newline only inside a double-quoted scalar. In a plain, single-quoted, folded
(`>-`) or literal (`|`) scalar the backslash reaches Jinja, and ansible-core 2.19's templating keeps it:
`'\\n{'` is a backslash and an `n`, so `.index('\\n{')` raised "substring not found" in the cluster
scenario, and `'the CT\\'s'` printed its backslash. A regex (`\\d`, `\\s`, `\\.`) is unaffected: the
regex engine reads its own escapes. So after YAML has parsed a file, no templated string may hold a
backslash followed by n, t, r or a quote.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TREES = ("roles", "playbooks", "extensions")
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
ESCAPE = re.compile(r"\\[ntr'\"]")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags (!vault, !unsafe) as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _strings(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}/{index}")
    elif isinstance(value, str):
        yield where, value


def escapes_in(text):
    """(where, expression) for each templated expression of a YAML text that holds an escape."""
    found = []
    for where, value in _strings(yaml.load(text, Loader=_Loader), ""):
        for expression in JINJA.findall(value):
            if ESCAPE.search(expression):
                found.append((where or "/", expression))
    return found


YAML_FILES = sorted(p for tree in TREES for p in (ROOT / tree).rglob("*.y*ml") if p.suffix in (".yml", ".yaml"))


def test_the_check_catches_the_cluster_bug_and_passes_its_fixes():
    broken = "msg: >-\n  {{ out[out.index('\\n{') + 1:] | from_json }}\n"
    quote = "msg: >-\n  {{ 'the CT\\'s limit' }}\n"
    assert escapes_in(broken) and escapes_in(quote)
    assert not escapes_in('msg: "{{ out.split(\'\\n\') }}"\n')  # double quotes: YAML made it a newline
    assert not escapes_in("msg: >-\n  {{ out | regex_search('(?ms)^[{].*') | from_json }}\n")
    assert not escapes_in("msg: >-\n  {{ out | regex_search('VmRSS:\\s+(\\d+)', '\\1') }}\n")


def test_yaml_files_are_found():
    assert len(YAML_FILES) > 50


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_escape_sequence_reaches_jinja(path):
    assert escapes_in(path.read_text(encoding="utf-8")) == []
