"""The watch's scans on synthetic cgroup trees: what it exports, kept monotonic, for v2 and v1."""

from __future__ import annotations

import os
import re

from prometheus_client.parser import text_string_to_metric_families
from support.cgroup_tree import MIB, make_ct, make_root, remove_ct
from support.watch_fixtures import make_watch, metrics

from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.agent import TEXTFILE_NAME
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.sample import discover, read_ct


def test_v2_ct_metrics(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", current=300 * MIB, limit=512 * MIB, high=500 * MIB, file=40 * MIB,
            events={"high": 7, "max": 3, "oom": 2, "oom_kill": 2}, some_us=2500000, full_us=500000, tasks=31,
            swap=MIB)
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_up", 2017)] == 1
    assert m[("enva_ct_memory_high_events_total", 2017)] == 7
    assert m[("enva_ct_memory_max_events_total", 2017)] == 3
    assert m[("enva_ct_memory_oom_kill_events_total", 2017)] == 2
    assert m[("enva_ct_memory_oom_group_kill_events_total", 2017)] == 0
    assert m[("enva_ct_memory_pressure_some_seconds_total", 2017)] == 2.5
    assert m[("enva_ct_memory_pressure_full_seconds_total", 2017)] == 0.5
    assert m[("enva_ct_memory_usage_bytes", 2017)] == 300 * MIB
    assert m[("enva_ct_memory_page_cache_bytes", 2017)] == 40 * MIB
    assert m[("enva_ct_memory_limit_bytes", 2017)] == 512 * MIB
    assert m[("enva_ct_memory_high_bytes", 2017)] == 500 * MIB
    assert m[("enva_ct_swap_usage_bytes", 2017)] == MIB
    assert m[("enva_ct_tasks", 2017)] == 31
    assert m[("enva_ct_oom_kills_total", 2017)] == 0
    assert m[("enva_oom_watch_cts", None)] == 1
    assert m[("enva_oom_watch_last_scan_timestamp_seconds", None)] == 1.8e9


def test_v1_ct_metrics(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v1", current=200 * MIB, limit=256 * MIB, file=10 * MIB, failcnt=99, oom_kill=4,
            under_oom=1, tasks=5)
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_memory_max_events_total", 2017)] == 99
    assert m[("enva_ct_memory_oom_kill_events_total", 2017)] == 4
    assert m[("enva_ct_memory_under_oom", 2017)] == 1
    assert m[("enva_ct_memory_stalled", 2017)] == 1                       # v1: waiting in OOM is the stall
    assert m[("enva_ct_memory_page_cache_bytes", 2017)] == 10 * MIB
    assert m[("enva_ct_tasks", 2017)] == 5
    assert ("enva_ct_memory_high_events_total", 2017) not in m           # v1 has no memory.high


def test_every_metric_once_with_help_type_and_conventions(tmp_path):
    root = tmp_path / "cg"
    for vmid in (101, 102):
        make_ct(root, vmid, "v2")
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    text = (tmp_path / "textfile" / TEXTFILE_NAME).read_text()
    helps = re.findall(r"(?m)^# HELP (\S+) ", text)
    types = dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text))
    assert len(helps) == len(set(helps)) == len(types)
    for name, kind in types.items():
        assert name.startswith("enva_")
        assert name.endswith("_total") == (kind == "counter"), name
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families["enva_ct_oom_kills"] == "counter"                  # the parser strips _total
    assert not re.search(r"(?m)^enva_\S+ \S+ \d+$", text)              # no timestamps


def test_counters_stay_monotonic_across_a_ct_restart_and_an_agent_restart(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", events={"high": 10, "oom_kill": 3}, some_us=4000000)
    watch, clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    remove_ct(root, 2017)                                               # PVE stops the CT: the cgroup goes
    clock.tick(1)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_up", 2017)] == 0
    assert m[("enva_ct_memory_oom_kill_events_total", 2017)] == 3         # kept after the cgroup is gone
    assert ("enva_ct_memory_usage_bytes", 2017) not in m
    make_ct(root, 2017, "v2", events={"high": 1, "oom_kill": 0}, some_us=1000000)     # started again: from 0
    clock.tick(1)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_memory_high_events_total", 2017)] == 11
    assert m[("enva_ct_memory_oom_kill_events_total", 2017)] == 3
    assert m[("enva_ct_memory_pressure_some_seconds_total", 2017)] == 5.0
    # the agent restarts: the state file carries the offsets
    again, _clock = make_watch(tmp_path, root, clock)
    make_ct(root, 2017, "v2", events={"high": 2, "oom_kill": 1}, some_us=1500000)
    again.scan()
    again.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_memory_high_events_total", 2017)] == 12
    assert m[("enva_ct_memory_oom_kill_events_total", 2017)] == 4
    assert m[("enva_ct_memory_pressure_some_seconds_total", 2017)] == 5.5


def test_a_counter_that_goes_down_in_the_same_cgroup_is_a_reset(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 300, "v1", failcnt=50)
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    make_ct(root, 300, "v1", failcnt=5)      # same directory (inode), counter reset (echo 0 > failcnt)
    watch.scan()
    watch.write()
    assert metrics(tmp_path)[("enva_ct_memory_max_events_total", 300)] == 55


def test_a_ct_destroyed_between_discovery_and_read(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 101, "v2")
    make_ct(root, 102, "v2")
    version, _base, paths = discover(str(root))
    remove_ct(root, 102)
    assert read_ct(str(root), version, 102, paths[102]) is None
    assert read_ct(str(root), version, 101, paths[101]).vmid == 101


def test_unreadable_file_is_counted_not_fatal(tmp_path):
    root = tmp_path / "cg"
    path = make_ct(root, 101, "v2")
    (path / "memory.events").unlink()
    (path / "memory.events").mkdir()          # open() fails (EISDIR) even for root
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_oom_watch_scan_errors_total", None)] == 1
    assert m[("enva_ct_memory_usage_bytes", 101)] == 100 * MIB


def test_missing_cgroup_root_and_no_memory_controller(tmp_path):
    watch, _clock = make_watch(tmp_path, tmp_path / "nothing")
    watch.scan()
    watch.write()
    assert metrics(tmp_path)[("enva_oom_watch_cts", None)] == 0


def test_a_thousand_cts(tmp_path):
    root = tmp_path / "cg"
    make_root(root, "v2")
    for vmid in range(10000, 11000):
        make_ct(root, vmid, "v2", events={"high": vmid % 7})
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_oom_watch_cts", None)] == 1000
    assert len([key for key in m if key[0] == "enva_ct_up"]) == 1000
    assert m[("enva_ct_memory_high_events_total", 10006)] == 10006 % 7
    assert os.path.getsize(tmp_path / "state" / "state.json") > 0


def test_promtool_check_metrics_accepts_the_textfile(tmp_path):
    import subprocess
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", events={"high": 3})
    make_ct(root, 101, "v2")
    watch, _clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    text = (tmp_path / "textfile" / TEXTFILE_NAME).read_text()
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
