"""log_stack: how much of a CT's memory its logging stack holds (census + memory.stat, v1 and v2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils.log_stack import (
    file_pages, logging_processes, parse_memory_stat, read_memory_stat, stat_version, summarize)
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence
from support import module_harness as harness

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# A CT's memory.stat on this host's cgroup v1 (lxc/2017: its own pages, and total_* with ns below it).
V1_STAT = """cache 0
rss 0
rss_huge 0
shmem 0
mapped_file 0
total_cache 52428800
total_rss 94371840
total_shmem 8388608
total_mapped_file 20971520
total_inactive_file 31457280
hierarchical_memory_limit 1073741824
"""
# cgroup v2 (PVE 7+): no total_*, the counters are hierarchical already.
V2_STAT = """anon 94371840
file 52428800
kernel 4194304
shmem 8388608
file_mapped 20971520
file_dirty 0
"""
CENSUS = {"by_command": [
    {"name": "haproxy", "count": 2, "rss_kb": 40960, "children_of_same": 1},
    {"name": "systemd-journal", "count": 1, "rss_kb": 30720, "children_of_same": 0},
    {"name": "rsyslogd", "count": 1, "rss_kb": 10240, "children_of_same": 0},
    {"name": "socat", "count": 3, "rss_kb": 3000, "children_of_same": 2},
]}


@pytest.mark.parametrize("text, expected", [
    ("cache 10\nrss 20\n", {"cache": 10, "rss": 20}),
    ("file 5\nnot a line\nanon x\n\n", {"file": 5}),
    ("", {}), (None, {}),
])
def test_parse_memory_stat(text, expected):
    assert parse_memory_stat(text) == expected


@pytest.mark.parametrize("text, version, expected", [
    (V1_STAT, "v1", (52428800, 20971520, 8388608)),             # total_* preferred on v1
    ("cache 4096\nmapped_file 0\nshmem 8192\n", "v1", (4096, 0, 8192)),   # no total_*: the cgroup's own
    (V2_STAT, "v2", (52428800, 20971520, 8388608)),
    ("anon 5\n", None, (None, None, None)),
])
def test_file_pages_v1_and_v2_in_one_shape(text, version, expected):
    stat = parse_memory_stat(text)
    assert stat_version(stat) == version
    pages = file_pages(stat)
    assert pages["cgroup_version"] == version
    assert (pages["file_bytes"], pages["file_mapped_bytes"], pages["shmem_bytes"]) == expected


def test_file_pages_without_a_stat():
    assert file_pages(None)["cgroup_version"] is None


def test_read_memory_stat(tmp_path):
    (tmp_path / "memory.stat").write_text(V2_STAT)
    assert read_memory_stat(str(tmp_path))["file"] == 52428800
    assert read_memory_stat(str(tmp_path / "missing")) is None


def test_logging_processes_are_journald_and_syslog_daemons_largest_first():
    assert logging_processes(CENSUS["by_command"]) == [
        {"name": "systemd-journal", "service": "journald", "count": 1, "rss_kb": 30720},
        {"name": "rsyslogd", "service": "rsyslog", "count": 1, "rss_kb": 10240},
    ]
    assert logging_processes(None) == []


def test_summary_recommends_the_role_when_logging_holds_a_share_of_the_limit():
    result = summarize(CENSUS, parse_memory_stat(V1_STAT), limit_bytes=512 * MIB)
    assert result["rss_bytes"] == 40 * MIB
    assert result["share_pct"] == 7.8 and result["of"] == "limit"
    assert result["recommend_ct_logging"] is True
    assert result["file_bytes"] == 50 * MIB and result["cgroup_version"] == "v1"
    assert "systemd-journal 30.0 MiB, rsyslogd 10.0 MiB" in result["reason"]
    assert "enva.pve.ct_logging can lower it" in result["reason"]
    assert "page cache 50.0 MiB (mapped 20.0 MiB), shmem 8.0 MiB" in result["reason"]


def test_summary_under_the_threshold_says_it_is_not_worth_it():
    result = summarize(CENSUS, parse_memory_stat(V2_STAT), limit_bytes=2048 * MIB)
    assert result["share_pct"] == 2.0
    assert result["recommend_ct_logging"] is False
    assert "not worth changing" in result["reason"]


def test_summary_falls_back_to_usage_and_says_when_nothing_is_known():
    assert summarize(CENSUS, None, usage_bytes=400 * MIB)["of"] == "usage"
    unknown = summarize(CENSUS, None)
    assert unknown["share_pct"] is None and not unknown["recommend_ct_logging"]
    assert "unknown" in unknown["reason"]
    none = summarize({"by_command": [{"name": "haproxy", "count": 1, "rss_kb": 1}]}, None, limit_bytes=MIB)
    assert none["processes"] == [] and "no journald or syslog daemon" in none["reason"]


def test_threshold_is_a_parameter():
    assert summarize(CENSUS, None, limit_bytes=2048 * MIB, threshold_pct=1.0)["recommend_ct_logging"] is True


@pytest.fixture
def fake_rsyslogd():
    """A real process named rsyslogd (prctl PR_SET_NAME), as the census reads names from /proc/PID/stat."""
    code = ("import ctypes, sys\n"
            "ctypes.CDLL(None).prctl(15, b'rsyslogd', 0, 0, 0)\n"
            "buf = bytearray(4 * 1024 * 1024)\n"          # some RSS of its own
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        yield child.pid
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_lxc_oom_evidence_census_says_what_the_logging_stack_holds(tmp_path, monkeypatch, fake_rsyslogd):
    """lxc_oom_evidence end to end on a v2 node tree whose CT 2017 holds a real rsyslogd-named process."""
    tree = tmp_path / "cgroup"
    shutil.copytree(FIXTURES / "cgroup" / "v2-node", tree)
    (tree / "lxc" / "2017" / "ns" / "cgroup.procs").write_text("%d\n" % fake_rsyslogd)
    (tree / "lxc" / "2017" / "memory.stat").write_text(V2_STAT)
    harness.raise_on_exit(monkeypatch)
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", "/nonexistent/journal/socket")
    kind, result = harness.run_main(lxc_oom_evidence, {
        "vmid": 2017, "cgroup_root": str(tree), "pve_config_dir": str(FIXTURES / "pve-lxc"),
        "lifecycle_log": str(FIXTURES / "lifecycle"),
        "kernel_log": str(FIXTURES / "kernel" / "incident-2017-v2.journal.jsonl")})
    assert kind is harness.ExitJson
    stack = result["cts"]["2017"]["census"]["logging_stack"]
    assert [item["name"] for item in stack["processes"]] == ["rsyslogd"]
    assert stack["rss_bytes"] >= 4 * MIB
    assert stack["cgroup_version"] == "v2" and stack["file_bytes"] == 52428800
    assert stack["of"] == "limit" and stack["share_pct"] is not None
    assert stack["reason"].startswith("the logging stack holds")
