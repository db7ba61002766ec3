# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-file writes that a reader never sees half done.

A temp file in the same directory (``.NAME.tmp.PID``: a leading dot and no ``.prom`` ending, so
node_exporter's textfile collector never reads it), written, fsync'ed, renamed over the target,
and the directory fsync'ed. On any error (ENOSPC, EROFS, EACCES, a missing directory) the old
file stays as it was, the temp file is removed and the error is raised to the caller, who counts it.
A temp file left by a process killed mid-write is removed by ``clean_temp``.
"""

import os

TEMP_MARK = ".tmp."


def temp_name(path):
    directory, name = os.path.split(path)
    return os.path.join(directory, ".%s%s%d" % (name, TEMP_MARK, os.getpid()))


def write_atomic(path, data, mode=0o644):
    """Replace ``path`` with ``data`` (bytes or str) atomically; raises OSError and leaves ``path`` as it was."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    temp = temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def clean_temp(directory):
    """Remove temp files other processes left in ``directory`` (killed mid-write); how many were removed."""
    mine = "%s%d" % (TEMP_MARK, os.getpid())
    removed = 0
    try:
        entries = os.listdir(directory)
    except OSError:
        return 0
    for entry in entries:
        head, mark, pid = entry.rpartition(TEMP_MARK)
        if entry.startswith(".") and mark and pid.isdigit() and not entry.endswith(mine):
            try:
                os.unlink(os.path.join(directory, entry))
                removed += 1
            except OSError:
                continue
    return removed
