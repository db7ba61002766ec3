"""ct_census: a CT's processes now, from its cgroup and the real /proc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.enva.pve.plugins.module_utils.ct_census import (
    FORK_STORM_MIN, cgroup_pids, fork_storm_reason, parse_stat, read_processes, summarize, take_census)

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("text, expected", [
    ("2362337 (socat) S 1974200 2362337 1974200 0 -1 4194624 96 0 0 0 0 0 0 0 20 0 1 0 120 8417280 180 "
     "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0",
     (2362337, "socat", 1974200, 180)),
    ("15925 ((sd-pam) x) S 1 15925 15925 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 100 7 0 0 0",
     (15925, "(sd-pam) x", 1, 7)),
    ("garbage", None), ("1 (x) S 0", None)])
def test_parse_stat(text, expected):
    assert parse_stat(text) == expected


def test_cgroup_pids_walks_nested_cgroups(tmp_path):
    (tmp_path / "ns" / "system.slice" / "dns-forwarder.service").mkdir(parents=True)
    (tmp_path / "cgroup.procs").write_text("")
    (tmp_path / "ns" / "cgroup.procs").write_text("10\n")
    (tmp_path / "ns" / "system.slice" / "dns-forwarder.service" / "cgroup.procs").write_text("11\n12\n\n")
    assert cgroup_pids(str(tmp_path)) == {10, 11, 12}


@pytest.fixture
def forked_tree():
    """A real parent that forks children of its own command, like socat fork does."""
    count = FORK_STORM_MIN + 5
    code = ("import os, sys, time\n"
            "kids = []\n"
            "for _ in range(%d):\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        time.sleep(30); os._exit(0)\n"
            "    kids.append(pid)\n"
            "print(' '.join(map(str, kids)), flush=True)\n"
            "sys.stdin.read()\n"
            "for pid in kids:\n"
            "    os.kill(pid, 9); os.waitpid(pid, 0)\n" % count)
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]
        yield parent.pid, children
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)


def test_census_of_real_processes_flags_the_fork_storm(tmp_path, forked_tree):
    parent, children = forked_tree
    helper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "ns").mkdir()
        (tmp_path / "cgroup.procs").write_text("%d\n%d\n" % (parent, helper.pid))
        (tmp_path / "ns" / "cgroup.procs").write_text("".join("%d\n" % pid for pid in children) + "999999999\n")
        census = take_census(str(tmp_path), page_size=PAGE)
    finally:
        helper.kill()
        helper.wait()
    command = os.path.basename(sys.executable)[:15]
    top = census["by_command"][0]
    assert census["processes"] == len(children) + 2                         # the dead pid is left out
    assert (top["name"], top["count"], top["children_of_same"]) == (command, len(children) + 1, len(children))
    assert top["rss_kb"] > 0
    assert {"name": "sleep", "count": 1} == {k: census["by_command"][1][k] for k in ("name", "count")}
    assert census["fork_storm"]
    reason = census["fork_storms"][0]["reason"]
    assert reason.startswith("%s fork storm: %d %s processes running in the CT now" % (command, len(children) + 1,
                                                                                       command))
    assert reason.endswith("%d of them children of %s" % (len(children), command))


def test_read_processes_skips_exited_pids():
    assert read_processes({999999999}) == []
    (me,) = read_processes({os.getpid()})
    assert me[0] == os.getpid() and me[2] == os.getppid()


@pytest.mark.parametrize("count, total, storm", [
    (1361, 1375, True), (FORK_STORM_MIN, FORK_STORM_MIN * 2, True), (FORK_STORM_MIN - 1, FORK_STORM_MIN, False),
    (150, 400, False), (0, 0, False)])
def test_fork_storm_threshold(count, total, storm):
    assert (fork_storm_reason("socat", count, total, "in the OOM task dump") is not None) == storm


def test_fork_storm_reason_words():
    assert fork_storm_reason("socat", 1361, 1372, "in the OOM task dump") == \
        "socat fork storm: 1,361 socat processes in the OOM task dump (99% of 1,372)"


def test_summarize_folds_per_command():
    processes = [(1, "systemd", 0, 100), (2, "socat", 1, 10), (3, "socat", 2, 10), (4, "socat", 2, 10)]
    summary = summarize(processes, page_size=4096)
    assert summary["by_command"][0] == {"name": "socat", "count": 3, "rss_kb": 120, "children_of_same": 2}
    assert summary["rss_kb"] == 520 and not summary["fork_storm"]
