"""Fixtures of the integration tests: the PVE API lab server over a fake lab tree, and ports that misbehave;
and the lab lock, so that a test marked ``lab`` never runs while another run (make labtest, make molecule,
make demo, another checkout's tests) uses the lab: it takes /run/enva-lab.lock itself unless the make target
that started it holds the lock already (ENVA_LAB_LOCK_HELD=1)."""

import fcntl
import os

from support.pve_lab import closed_port, lab, pve_lab, silent_port  # noqa: F401  pylint: disable=unused-import

_HELD = []


def pytest_runtest_setup(item):
    if item.get_closest_marker("lab") is None or _HELD or os.environ.get("ENVA_LAB_LOCK_HELD") == "1":
        return
    handle = open(os.environ.get("ENVA_LAB_LOCK", "/run/enva-lab.lock"), "a", encoding="utf-8")  # pylint: disable=consider-using-with
    fcntl.flock(handle, fcntl.LOCK_EX)      # waits for the run that has the lab; released when pytest exits
    _HELD.append(handle)
