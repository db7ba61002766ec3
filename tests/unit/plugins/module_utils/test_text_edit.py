"""text_edit: the byte-level check of an edit, and carrying an edit over onto a text laid out differently."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.module_utils import text_edit

OLD = "a: 1   # one\nb: 2   # two\n"


@pytest.mark.parametrize("new, message", [
    ("a: 1   # one\nb: 22  # two\n", "line 2: 'b: 2   # two' became 'b: 22  # two'"),   # the comment's spaces
    ("a: 1   # one\nb: 2   # two\nc: 3\n", "line 3: 'c: 3\\n' was added"),               # not what was asked
    ("a: 1   # one\n\nb: 2   # two\n", "line 2: '\\n' was added"),
    ("a: 1   # one\nb: 3   # two\n", None),                                             # only the value
])
def test_byte_level_check(new, message):
    problem = text_edit.check(OLD, new, [(16, 17)], [], 0)
    assert (problem and "line %d: %s" % problem) == message


@pytest.mark.parametrize("new, items, column, message", [
    ("a: 1   # one\nb: 2   # two\nc: 3\n", ["c: 3"], 0, None),
    ("a: 1   # one\nb: 2   # two\n  c: 3\n", ["c: 3"], 0, "line 3: '  c: 3\\n' was added"),   # not at the column
    ("a: 1   # one, c: 3\nb: 2   # two\n", ["c: 3"], 0, None),                              # as in a flow mapping
])
def test_check_insertions(new, items, column, message):
    problem = text_edit.check(OLD, new, [], items, column)
    assert (problem and "line %d: %s" % problem) == message


@pytest.mark.parametrize("source, before, after, expected", [
    # ruamel's dumps (before, after) join a flow list; the change lands in the list as written
    ("l: [\n  {a: 1,   # c\n   b: 2},\n]\n", "l: [{a: 1, b: 2}]\n", "l: [{a: 1, b: 2, c: 3}]\n",
     "l: [\n  {a: 1,   # c\n   b: 2, c: 3},\n]\n"),
    # the value's characters inside a tag and quotes that ruamel drops
    ('m: !!int "1024"\n', "m: 1024\n", "m: 2048\n", 'm: !!int "2048"\n'),
    # a line ruamel rewrites, away from the change
    ("x: 1   # c\ny: 2\n", "x: 1 # c\ny: 2\n", "x: 1 # c\ny: 3\n", "x: 1   # c\ny: 3\n"),
    # the change is in characters ruamel writes differently: nowhere to put it
    ("x: 0x10\n", "x: 16\n", "x: 17\n", None),
])
def test_carry_over(source, before, after, expected):
    assert text_edit.carry_over(source, before, after) == expected
