# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An edit of a text file, checked byte for byte: :func:`check` says whether a new text differs from the old
one only inside given spans and by given inserted items; :func:`carry_over` makes the changes between two
versions of a text to a third one that holds the same characters around them.

declared_yaml uses them to keep every byte of a declared YAML file but the values it edits.
"""

from __future__ import absolute_import, division, print_function

import bisect
import re
from difflib import SequenceMatcher

__metaclass__ = type


def _common(old, new):
    """Lengths of the common prefix and (not overlapping it) common suffix of two strings."""
    head, limit = 0, min(len(old), len(new))
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return head, tail


def _opcodes(old, new, chars=True):
    """Opcodes (tag, i1, i2, j1, j2) turning ``old`` into ``new``: by lines, then (``chars``) by characters."""
    head, tail = _common(old, new)
    yield "equal", 0, head, 0, head
    lines = (old[head:len(old) - tail].splitlines(True), new[head:len(new) - tail].splitlines(True))
    starts = [[head], [head]]
    for side in (0, 1):
        for line in lines[side]:
            starts[side].append(starts[side][-1] + len(line))
    (at, bt), (a, b) = starts, lines
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal" or not chars:
            yield tag, at[i1], at[i2], bt[j1], bt[j2]
            continue
        for op, x1, x2, y1, y2 in SequenceMatcher(None, "".join(a[i1:i2]), "".join(b[j1:j2]),
                                                  autojunk=False).get_opcodes():
            yield op, at[i1] + x1, at[i1] + x2, bt[j1] + y1, bt[j1] + y2
    yield "equal", len(old) - tail, len(old), len(new) - tail, len(new)


def check(old, new, spans, items, column):
    """None when ``new`` is ``old`` with only the characters in ``spans`` changed and ``items`` (``key: value``)
    added, each on a line of its own at ``column`` or after ``, ``; else ``(line, what)`` of another change."""
    inserted = []
    for tag, i1, i2, j1, j2 in _opcodes(old, new):
        if tag == "equal" or any(start <= i1 and i2 <= end for start, end in spans):
            continue
        if tag != "insert":
            line = old.count("\n", 0, i1)
            return line + 1, "%r became %r" % (old.splitlines()[line], new[:j2].rsplit("\n", 1)[-1] +
                                               new[j2:].split("\n", 1)[0])
        inserted.append((i1, new[j1:j2]))
    text = "".join(piece for _at, piece in inserted)
    forms = ("".join("\n%s%s" % (" " * column, item) for item in items), "".join(", " + item for item in items))
    bare = re.sub(r"[\s,]", "", text)
    if text and not any(sorted(text) == sorted(form) and bare in re.sub(r"[\s,]", "", form) * 2 for form in forms):
        return old.count("\n", 0, inserted[0][0]) + 1, "%r was added" % text
    return None


def carry_over(source, before, after):
    """``source`` with the changes that turn ``before`` into ``after`` made to it; None if one cannot be placed.

    ``before`` and ``after`` are ruamel's dumps of the document without and with the edit, so they differ
    exactly by the edit; ``source`` is the file as written, which ``before`` writes differently elsewhere.
    Each change goes where ``source`` holds the same characters as ``before`` around it.
    """
    blocks = [(j1, i1, i2 - i1) for tag, i1, i2, j1, _j2 in _opcodes(source, before) if tag == "equal" and i2 > i1]
    starts = [block[0] for block in blocks]

    def place(index, after_char=0):
        found = bisect.bisect_right(starts, index) - 1
        if found >= 0 and index < starts[found] + blocks[found][2]:
            return blocks[found][1] + index - starts[found] + after_char
        return None if after_char or index == 0 else place(index - 1, 1)

    result, done = [], 0
    for tag, i1, i2, j1, j2 in _opcodes(before, after, chars=False):
        if tag == "equal":
            continue
        head, tail = _common(before[i1:i2], after[j1:j2])
        i1, i2, j1, j2 = i1 + head, i2 - tail, j1 + head, j2 - tail
        start, end = place(i1), place(i2 - 1, 1) if i2 > i1 else place(i1)
        if start is None or end is None or start < done or source[start:end] != before[i1:i2]:
            return None
        result += [source[done:start], after[j1:j2]]
        done = end
    return "".join(result) + source[done:]
