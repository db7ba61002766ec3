"""docs/benchmarks.md is sectioned: each benchmark owns one heading and a marked block under it.

    ## DNS relay
    <!-- bench:relay:begin -->
    ...generated...
    <!-- bench:relay:end -->

replace_section() rewrites one benchmark's heading and block and leaves the
rest of the file (other benchmarks' sections, hand-written text) as it is.
"""

from __future__ import annotations

from pathlib import Path


def markers(name):
    return "<!-- bench:%s:begin -->" % name, "<!-- bench:%s:end -->" % name


def replace_section(path, name, heading, body):
    """Put ``heading`` and ``body`` (between ``name``'s markers) into ``path``: in place if present, else at the end."""
    path = Path(path)
    begin, end = markers(name)
    block = "%s\n\n%s\n%s\n%s\n" % (heading, begin, body.strip("\n"), end)
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, stop = old.find(begin), old.find(end)
    if 0 <= start < stop:
        heading_at = old.rfind(heading, 0, start)
        if heading_at >= 0 and not old[heading_at + len(heading):start].strip():
            start = heading_at
        tail = old[stop + len(end):].lstrip("\n")
        new = old[:start] + block + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new, encoding="utf-8")
