"""A working directory for a test's own unbound where Debian's AppArmor profile lets unbound use it.

On a host with AppArmor (Debian installs it), ``/usr/sbin/unbound`` runs confined by its distribution profile,
wherever it is started from: a config under pytest's ``/tmp`` is DENIED and unbound exits. The profile lets
unbound read ``/var/lib/unbound/**`` and write what it owns there (the fact lives in
``enva_lab.dns.UNBOUND_STATE``), so a test's config, pidfile, log and control socket go in a fresh directory
under it, removed afterwards. Without that directory (unbound not installed) a plain temporary one is used.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from enva_lab.dns import UNBOUND_STATE


def make_unbound_workdir(prefix="enva-test-"):
    """A new directory unbound may read and write under its AppArmor profile; the caller removes it."""
    base = UNBOUND_STATE if UNBOUND_STATE.is_dir() else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o755)
    return path


@contextmanager
def unbound_workdir(prefix="enva-test-"):
    """:func:`make_unbound_workdir` for a ``with`` block, removed at its end."""
    path = make_unbound_workdir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
