"""Flight records (stall, fork storm, bounded and rotated), PSI triggers' fallback, and the loop as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from support.cgroup_tree import AGENT_HOME, ROOT, make_ct
from support.watch_fixtures import make_watch, metrics

from ansible_collections.enva.pve.plugins.module_utils.flight_record import read_records, storm_commands
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.flight import Recorder
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.psi import Triggers


def test_fork_storm_writes_a_census_while_the_ct_runs(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", tasks=20, pids=[os.getpid()])
    watch, clock = make_watch(tmp_path, root, extra=["--storm-tasks", "100", "--storm-window", "30"])
    watch.scan()
    clock.tick(10)
    make_ct(root, 2017, "v2", tasks=90, pids=[os.getpid()])
    watch.scan()
    assert read_records(str(tmp_path / "state" / "flight")) == []           # +70: not yet
    clock.tick(10)
    make_ct(root, 2017, "v2", tasks=400, pids=[os.getpid()])
    watch.scan()
    records = read_records(str(tmp_path / "state" / "flight"), vmid=2017)
    assert [record["reason"] for record in records] == ["fork_storm"]
    record = records[0]
    assert record["detail"]["tasks"] == 400 and record["node"] == "node-a"
    assert record["census"]["processes"] == 1                                # this test's own process
    assert record["memory"]["memory.events"]["oom_kill"] == 0 and record["pressure"]["some"]["total"] == 0
    assert storm_commands(record)[0]["count"] == 1


def test_stall_by_sampling_when_no_trigger(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", some_us=0)
    watch, clock = make_watch(tmp_path, root)
    watch.scan()
    clock.tick(1)
    make_ct(root, 2017, "v2", some_us=100000, events={"high": 5})           # 10 %: under the threshold
    watch.scan()
    watch.write()
    assert metrics(tmp_path)[("enva_ct_memory_stalled", 2017)] == 0
    clock.tick(1)
    make_ct(root, 2017, "v2", some_us=900000, events={"high": 50})          # 80 % of the last second
    watch.scan()
    watch.write()
    assert metrics(tmp_path)[("enva_ct_memory_stalled", 2017)] == 1
    records = read_records(str(tmp_path / "state" / "flight"), vmid=2017)
    assert [record["reason"] for record in records] == ["stall"]
    assert records[0]["detail"]["high_events"] == 50


def test_records_are_bounded_in_count_and_bytes(tmp_path):
    now = [1.8e9]
    recorder = Recorder(str(tmp_path / "flight"), "node-a", max_records=3, max_bytes=1 << 20, cooldown=0,
                        wall=lambda: now[0])
    for vmid in range(10):
        now[0] += 1
        assert recorder.snapshot(vmid, "stall", None, None, ["line %d" % n for n in range(50)])
    kept = read_records(str(tmp_path / "flight"))
    assert [record["vmid"] for record in kept] == [7, 8, 9]                  # the oldest went first
    small = Recorder(str(tmp_path / "small"), "node-a", max_records=100, max_bytes=6000, cooldown=0,
                     wall=lambda: now[0])
    for vmid in range(10):
        now[0] += 1
        small.snapshot(vmid, "stall", None, None, ["x" * 100] * 30)
    sizes = [path.stat().st_size for path in (tmp_path / "small").iterdir()]
    assert sum(sizes) <= 6000 and len(sizes) >= 1


def test_cooldown_one_record_per_ct_and_reason(tmp_path):
    mono = [0.0]
    recorder = Recorder(str(tmp_path / "flight"), "n", cooldown=60, monotonic=lambda: mono[0])
    assert recorder.snapshot(1, "stall", None, None, [])
    assert recorder.snapshot(1, "stall", None, None, []) is None
    assert recorder.snapshot(1, "oom_kill", None, None, [])
    mono[0] = 61.0
    assert recorder.snapshot(1, "stall", None, None, [])


def test_trigger_refused_falls_back_to_sampling(tmp_path):
    triggers = Triggers()
    assert triggers.arm(2017, str(tmp_path / "gone"), 1) is False            # no memory.pressure there
    assert len(triggers) == 0 and "gone" in triggers.last_error
    assert triggers.arm(2017, str(tmp_path / "gone"), 1) is False            # not retried for this cgroup
    assert Triggers(enabled=False).arm(1, str(tmp_path), 1) is False


def test_the_agent_as_a_process_stops_on_sigterm(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2")
    textfile = tmp_path / "tf"
    textfile.mkdir()
    env = dict(os.environ, PYTHONPATH="%s:%s" % (AGENT_HOME, ROOT / ".cache" / "collections"))
    child = subprocess.Popen(
        [sys.executable, "-m", "enva_oom_watch", "--cgroup-root", str(root), "--textfile-dir", str(textfile),
         "--state-dir", str(tmp_path / "state"), "--kmsg", "", "--interval", "60", "--max-seconds", "120"],
        env=env, stderr=subprocess.PIPE, text=True)
    prom = textfile / "enva_oom_watch.prom"
    for _attempt in range(200):
        if prom.exists():
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=10)       # poll() wakes on the signal, not after --interval
    assert child.returncode == 0, err
    assert 'enva_ct_up{node="' in prom.read_text()
    assert json.loads((tmp_path / "state" / "state.json").read_text())["cts"]["2017"]["running"] is True


def test_the_stall_record_says_what_flagged_it(tmp_path):
    """A PSI trigger's wake-up flags the CT at the rescan, before sampling could (no pressure rise sampled yet);
    the flight record's "by" names it, so the VM scenario can tell a trigger from the fallback."""
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", some_us=0)
    watch, clock = make_watch(tmp_path, root)
    watch.scan()
    clock.tick(0.3)
    watch.trigger_at[2017] = clock.mono                                      # what run() does on POLLPRI
    watch.rescan({2017})
    watch.write()
    assert metrics(tmp_path)[("enva_ct_memory_stalled", 2017)] == 1
    records = read_records(str(tmp_path / "state" / "flight"), vmid=2017)
    assert [(record["reason"], record["detail"]["by"]) for record in records] == [("stall", ["psi_trigger"])]


def test_a_sampled_stall_says_so(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", some_us=0)
    watch, clock = make_watch(tmp_path, root)
    watch.scan()
    clock.tick(1)
    make_ct(root, 2017, "v2", some_us=900000, events={"high": 50})
    watch.scan()
    records = read_records(str(tmp_path / "state" / "flight"), vmid=2017)
    assert records[0]["detail"]["by"] == ["pressure_sample"]
