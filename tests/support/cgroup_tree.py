"""Synthetic PVE cgroup trees in a directory, for the watch's unit tests and its benchmark.

``make_ct(root, vmid, "v2")`` writes ``<root>/lxc/VMID/`` with the files a PVE 7+ node has there
(``<root>/memory/lxc/VMID/`` for "v1"), values given as keyword arguments; ``remove_ct`` takes it
away as PVE does when the CT stops. A tree is marked v2 by ``cgroup.controllers`` naming memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT_HOME = ROOT / "roles" / "oom_watch" / "files"     # PYTHONPATH of the agent run as a process
MIB = 1 << 20


def make_root(root, version):
    root = Path(root)
    if version == "v2":
        root.mkdir(parents=True, exist_ok=True)
        (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (root / "lxc").mkdir(exist_ok=True)
    else:
        (root / "memory" / "lxc").mkdir(parents=True, exist_ok=True)
        (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    return root


def ct_dir(root, vmid, version):
    return Path(root) / ("lxc" if version == "v2" else "memory/lxc") / str(vmid)


def make_ct(root, vmid, version="v2", *, current=100 * MIB, limit=512 * MIB, high=None, file=20 * MIB,
            events=None, some_us=0, full_us=0, tasks=12, swap=0, swap_max=512 * MIB, failcnt=0, oom_kill=0,
            under_oom=0, pids=()):
    """Write (or rewrite) CT vmid's memory cgroup files; returns its directory."""
    make_root(root, version)
    path = ct_dir(root, vmid, version)
    path.mkdir(parents=True, exist_ok=True)
    files = {}
    if version == "v2":
        counts = {"low": 0, "high": 0, "max": 0, "oom": 0, "oom_kill": 0, "oom_group_kill": 0}
        counts.update(events or {})
        files.update({
            "memory.current": current, "memory.max": limit if limit is not None else "max",
            "memory.high": high if high is not None else "max", "memory.swap.current": swap,
            "memory.swap.max": swap_max,
            "memory.events": "".join("%s %d\n" % item for item in counts.items()).rstrip("\n"),
            "memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=%d\n"
                               "full avg10=0.00 avg60=0.00 avg300=0.00 total=%d" % (some_us, full_us),
            "memory.stat": "anon %d\nfile %d\nkernel 4096" % (max(current - file, 0), file),
            "pids.current": tasks})
    else:
        files.update({
            "memory.usage_in_bytes": current, "memory.limit_in_bytes": limit, "memory.failcnt": failcnt,
            "memory.memsw.usage_in_bytes": current + swap, "memory.memsw.limit_in_bytes": limit + swap_max,
            "memory.oom_control": "oom_kill_disable 0\nunder_oom %d\noom_kill %d" % (under_oom, oom_kill),
            "memory.stat": "cache %d\nrss %d\ntotal_cache %d\ntotal_rss %d" % (
                file, current - file, file, current - file)})
        (path / "tasks").write_text("".join("%d\n" % n for n in range(tasks)))
    files["cgroup.procs"] = "".join("%d\n" % pid for pid in pids)
    for name, value in files.items():
        (path / name).write_text("%s\n" % value)
    return path


def remove_ct(root, vmid, version="v2"):
    shutil.rmtree(ct_dir(root, vmid, version), ignore_errors=True)
