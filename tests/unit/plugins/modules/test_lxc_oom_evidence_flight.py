"""lxc_oom_evidence reads the watch's flight records: a v2 incident with no kernel line (a stall at
memory.high, or a kernel log rotated away) is named, with its socat count, after the CT restarted."""

from __future__ import annotations

import os

from support.cgroup_tree import make_ct

from ansible_collections.enva.pve.plugins.module_utils.flight_record import summarize
from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.flight import Recorder

STORM = {"event": {"tasks_by_command": [{"name": "socat", "count": 1361, "rss_kb": 3_100_000},
                                        {"name": "haproxy", "count": 2, "rss_kb": 9000}]}}


def params(tmp_path, **extra):
    log = tmp_path / "kern.log"
    log.write_text("")
    base = {"vmid": None, "since": None, "kernel_log": str(log), "lifecycle_log": str(log), "census": False,
            "cgroup_root": str(tmp_path / "cg"), "pve_config_dir": str(tmp_path / "conf"),
            "flight_dir": str(tmp_path / "flight")}
    base.update(extra)
    return base


def test_a_stopped_ct_is_named_by_its_flight_record(tmp_path):
    # the record as the agent writes it: the cgroup already gone, the OOM report's task dump kept
    Recorder(str(tmp_path / "flight"), "node-a", cooldown=0).snapshot(2017, "oom_kill", None, None,
                                                                      ["[1.0] socat invoked oom-killer"], STORM)
    result = lxc_oom_evidence.gather(params(tmp_path), lambda argv: (1, "", "unused"))
    report = result["cts"]["2017"]
    assert report["counters"] is None                                    # not running now
    top = report["flight"]["records"][0]["top_commands"][0]
    assert top == {"name": "socat", "count": 1361, "rss_kb": 3_100_000}
    cause = report["verdict"]["likely_cause"]
    assert cause.startswith("socat fork storm: 1,361 socat processes in the watch's flight record of ")
    assert "(oom_kill)" in cause


def test_a_live_census_in_the_record_after_the_ct_restarted(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", pids=[os.getpid()])
    recorder = Recorder(str(tmp_path / "flight"), "node-a", cooldown=0)
    recorder.snapshot(2017, "stall", "v2", str(root / "lxc" / "2017"), [])
    result = lxc_oom_evidence.gather(params(tmp_path), lambda argv: (1, "", "unused"))
    flight = result["cts"]["2017"]["flight"]
    assert flight["records"][0]["reason"] == "stall" and flight["records"][0]["processes"] == 1
    assert flight["cause"].startswith("stall recorded by the watch at ")      # one process: no storm


def test_no_flight_dir_adds_nothing(tmp_path):
    make_ct(tmp_path / "cg", 101, "v2")
    result = lxc_oom_evidence.gather(params(tmp_path, flight_dir=str(tmp_path / "none")),
                                     lambda argv: (1, "", "unused"))
    assert result["cts"]["101"]["flight"] is None
    assert summarize([]) is None
