"""tools/demo.py (make demo): its lab-lock handling with real flock(1) holders, the OOM count from
kernel lines as the lab's kern.log has them, and the before/after table."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

from support.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def demo():
    return load_script(ROOT / "tools" / "demo.py", "enva_demo")


KERNEL = [
    "2026-12-01T23:16:22.699663+0000 pve1 kernel: Tasks state (memory values in pages):",
    "2026-12-01T23:16:22.748768+0000 pve1 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,"
    "mems_allowed=0,oom_memcg=/lxc/2017,task_memcg=/lxc/2017/ns/system.slice/haproxy.service,task=haproxy,pid=129855,uid=0",
    "2026-12-01T23:16:22.748789+0000 pve1 kernel: Memory cgroup out of memory: Killed process 129855 (haproxy)",
    "2026-12-01T23:16:27.935193+0000 pve1 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,"
    "mems_allowed=0,oom_memcg=/lxc/2017,task_memcg=/lxc/2017/ns/init.scope,task=systemd,pid=129787,uid=0",
    "2026-12-01T23:16:28.000000+0000 pve1 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,"
    "mems_allowed=0,oom_memcg=/lxc/20170,task_memcg=/lxc/20170/ns,task=socat,pid=1,uid=0",
    "2026-12-01T23:16:29.280606+0000 pve1 kernel: vmbr0: port 1(veth2017i0) entered disabled state",
]


def test_oom_kills_count_only_the_cts_own_cgroup(demo):
    assert demo.oom_kills(KERNEL, 2017) == 2
    assert demo.oom_kills(KERNEL, 20170) == 1
    assert demo.oom_kills(KERNEL[:1], 2017) == 0


def test_table_lines_up_the_columns(demo):
    text = demo.table([("", "before", "after"), ("memory limit", "1024.0 MiB", "2048.0 MiB"),
                       ("OOM kills", "3", "0")])
    lines = text.splitlines()
    assert len(lines) == 4 and set(lines[1].strip()) <= {"-", " "}
    assert lines[2].index("1024.0") == lines[3].index("3") == lines[0].index("before")


def test_answered_is_a_count_and_a_share(demo):
    assert demo.answered({"sent": 10005, "answered": 6793}) == "6,793 of 10,005 (67.9%)"
    assert demo.answered({"sent": 0, "answered": 0}) == "0 of 0 (0.0%)"


def test_lock_holders_names_the_flock_process(demo, tmp_path):
    lock = tmp_path / "lab.lock"
    lock.touch()
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not demo.lock_holders(lock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert demo.lock_holders(lock) == [holder.pid]
    finally:
        os.killpg(holder.pid, 9)                  # flock and the sleep that inherited its descriptor
        holder.wait()
        deadline = time.monotonic() + 10
        while demo.lock_holders(lock) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert demo.lock_holders(lock) == []


def test_take_lab_lock_takes_a_free_lock_and_goes_on_under_an_ancestors(demo, tmp_path, monkeypatch):
    lock = tmp_path / "lab.lock"
    monkeypatch.setattr(demo, "LOCK", lock)
    handle = demo.take_lab_lock()
    assert handle is not None
    other = open(lock, "a+")
    with pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)      # held by take_lab_lock
    handle.close()
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)          # free again
    other.close()
    # flock(1) holding the lock and running a child that asks for it: the child goes on without waiting
    script = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('d', %r); "
              "d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d); d.LOCK = d.Path(%r); "
              "print('held-by-ancestor' if d.take_lab_lock() is None else 'took-it')"
              % (str(ROOT / "tools" / "demo.py"), str(lock)))
    done = subprocess.run(["flock", str(lock), os.environ.get("PYTHON", "python3"), "-c", script],
                          capture_output=True, text=True, timeout=60, check=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(__import__("sys").path)))
    assert done.stdout.strip().splitlines()[-1] == "held-by-ancestor"


def test_started_at_is_not_in_the_future(demo):
    began, what = demo.started_at()
    assert began <= time.time() and what in ("make demo", "tools/demo.py")
