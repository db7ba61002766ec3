"""The lab's background processes, known by PID file and stopped by PID, never by name.

A PID file holds ``PID STARTTIME`` (field 22 of ``/proc/PID/stat``), so a PID the kernel has
given to another process since is never signalled.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

LAB_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def start_time(pid):
    """The process's start time in clock ticks since boot; None when it is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline(pid):
    """The process's argv (empty when it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def write_pidfile(path, pid):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("%d %d\n" % (pid, start_time(pid) or 0))


def read_pidfile(path):
    """``(pid, starttime)`` from a PID file, or None."""
    try:
        pid, started = path.read_text().split()
        return int(pid), int(started)
    except (OSError, ValueError):
        return None


def alive(entry):
    """Whether the process of a ``(pid, starttime)`` entry still runs (the same process, not a reused PID)."""
    return entry is not None and start_time(entry[0]) == entry[1]


def running(path):
    """The PID recorded in ``path`` when that process still runs, else None."""
    entry = read_pidfile(path)
    return entry[0] if alive(entry) else None


def lab_command(*args):
    """The argv that runs ``python3 -m enva_lab ARGS`` with this interpreter."""
    return [sys.executable, "-m", "enva_lab"] + [str(arg) for arg in args]


def import_path():
    """What the lab's own processes put on PYTHONPATH: this package's directory and the directory that
    holds the collection as ``ansible_collections/enva/pve`` (the lab imports its module_utils)."""
    collections = [entry for entry in sys.path
                   if entry and os.path.isdir(os.path.join(entry, "ansible_collections", "enva", "pve"))]
    return [str(LAB_PACKAGE_DIR)] + collections[:1]


def environ_path(pid):
    """The PYTHONPATH entries a running process was started with (empty when unreadable)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return []
    for entry in entries:
        if entry.startswith(b"PYTHONPATH="):
            return entry[len(b"PYTHONPATH="):].decode(errors="replace").split(":")
    return []


def spawn(argv, pidfile, log, env=None):
    """Start a detached background process (own session, stdin closed, output to ``log``);
    record it in ``pidfile`` and return its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = ":".join(import_path())
    with open(log, "ab") as output:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env=environment, start_new_session=True, close_fds=True)
    write_pidfile(pidfile, process.pid)
    return process.pid


def stop(entry, timeout=10.0, sig=signal.SIGTERM):
    """Signal the process of a ``(pid, starttime)`` entry, wait for it to end, SIGKILL it after ``timeout``.

    Returns True when it was running.
    """
    if not alive(entry):
        return False
    pid = entry[0]
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while alive(entry):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
        _reap(pid)
        time.sleep(0.05)
    return True


def _reap(pid):
    """Collect our own child's exit status, so that it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pidfile(path, timeout=10.0):
    """Stop the process recorded in ``path`` (if it still runs) and remove the file."""
    stopped = stop(read_pidfile(path), timeout)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return stopped


def processes_mentioning(text):
    """``[(pid, argv)]`` of every process whose command line names the path ``text`` or a path below it
    (``/var/lib/enva-lab`` or ``/var/lib/enva-lab/run/x``, not ``/var/lib/enva-lab-vm``)."""
    path = re.compile(re.escape(text.rstrip("/")) + r"(?![^/\s:,=])")
    found = []
    own = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == own:
            continue
        argv = cmdline(int(name))
        if argv and any(path.search(part) for part in argv) and start_time(int(name)) is not None:
            found.append((int(name), argv))
    return found
