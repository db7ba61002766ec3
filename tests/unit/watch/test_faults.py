"""The faults the watch must live through: kmsg overruns, a full disk, kill -9 mid-write, a clock step."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.cgroup_tree import AGENT_HOME, MIB, make_ct, remove_ct
from support.watch_fixtures import make_watch, metrics

from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch import atomic
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.agent import TEXTFILE_NAME
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.kmsg import KmsgFollower
from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.state import State

KERNEL = Path(__file__).resolve().parents[2] / "unit" / "fixtures" / "kernel"
_MONO = re.compile(r"^\[\s*(\d+)\.(\d+)\] ?(.*)$")


def storm_records(first_seq=1):
    """The socat storm capture (two OOM kills in /lxc/2017) as /dev/kmsg records."""
    records = []
    text = (KERNEL / "host-6.18-v1-socat-storm-dmesg.log").read_text(encoding="utf-8")
    for seq, line in enumerate(text.splitlines(), first_seq):
        match = _MONO.match(line)
        if match:
            usec = int(match.group(1)) * 1000000 + int(match.group(2).ljust(6, "0")[:6])
            records.append("6,%d,%d,-;%s\n" % (seq, usec, match.group(3).replace("/enva-oom-evidence/", "/lxc/")))
    return records


def fifo(tmp_path):
    """A FIFO standing in for /dev/kmsg; the test's own read end keeps writes from failing with EPIPE."""
    path = tmp_path / "kmsg"
    os.mkfifo(path)
    keep = os.open(path, os.O_RDONLY | os.O_NONBLOCK)          # so the writer's open does not block
    writer = os.open(path, os.O_WRONLY)
    return str(path), writer, keep


def kmsg_file(tmp_path, records, name="kmsg"):
    """A regular file of records standing in for /dev/kmsg's buffer (a FIFO holds only 64 KiB)."""
    path = tmp_path / name
    path.write_text("".join(records))
    return str(path)


def test_kmsg_kills_counted_per_ct_even_after_the_cgroup_is_gone(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v1", pids=[os.getpid()])
    path = kmsg_file(tmp_path, [])
    watch, _clock = make_watch(tmp_path, root, kmsg=path, extra=["--flight-cooldown", "0"])
    watch.start_time = 0                                        # the capture's kills happen after the start
    watch.scan()
    remove_ct(root, 2017, "v1")                                 # the CT stopped before the log was read
    watch.scan()
    kmsg_file(tmp_path, storm_records())
    assert watch.follow_kmsg() == 2
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_oom_kills_total", 2017)] == 2
    assert m[("enva_ct_up", 2017)] == 0
    assert m[("enva_ct_last_oom_kill_timestamp_seconds", 2017)] > 0
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["cts"]["2017"]["last_kill"]["name"] in ("socat", "rsyslogd", "systemd-network")
    records = sorted((tmp_path / "state" / "flight").glob("flight-*-2017-oom_kill.json"))
    assert records
    record = json.loads(records[0].read_text())
    socat = [item for item in record["detail"]["event"]["tasks_by_command"] if item["name"] == "socat"]
    assert socat[0]["count"] > 100                              # the storm, from the kill's task dump
    assert record["kernel_lines"] and record["census"] is None  # cgroup already gone: no live census


def test_kmsg_sequence_gaps_are_lost_lines_and_epipe_is_an_overrun(tmp_path):
    path, writer, keep = fifo(tmp_path)
    for seq in (1, 2, 3, 10, 11):                              # 4..9 overwritten before they were read
        os.write(writer, ("6,%d,%d,-;hello %d\n" % (seq, seq * 1000, seq)).encode())
    calls = []

    def read(fd, size):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EPIPE, "Broken pipe")
        return os.read(fd, size)

    follower = KmsgFollower(path, read=read)
    assert follower.drain() == 5
    assert (follower.lost, follower.overruns, follower.last_seq) == (6, 1, 11)
    os.write(writer, b"6,11,11000,-;seen before\n6,12,12000,-;new\n")
    assert follower.drain() == 1                                # a record at or below last_seq is skipped
    os.close(writer)
    os.close(keep)
    assert follower.drain() == 0 and follower.fd is None        # the writer went: closed, reopened later


def test_agent_restart_counts_no_kill_twice(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v1")
    path = kmsg_file(tmp_path, storm_records())
    watch, clock = make_watch(tmp_path, root, kmsg=path)
    watch.follow_kmsg()
    watch.scan()
    watch.write()
    again, _clock = make_watch(tmp_path, root, clock, kmsg=path)   # /dev/kmsg replays its buffer
    again.follow_kmsg()
    again.scan()
    again.write()
    assert metrics(tmp_path)[("enva_ct_oom_kills_total", 2017)] == 2


def test_full_disk_keeps_the_old_file_and_counts(tmp_path, monkeypatch):
    root = tmp_path / "cg"
    make_ct(root, 101, "v2", current=10 * MIB)
    watch, clock = make_watch(tmp_path, root)
    watch.scan()
    watch.write()
    before = (tmp_path / "textfile" / TEXTFILE_NAME).read_text()
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    make_ct(root, 101, "v2", current=20 * MIB)
    monkeypatch.setattr(os, "write", full)
    clock.tick(1)
    watch.scan()
    watch.write()                                               # must not raise
    monkeypatch.setattr(os, "write", real_write)
    assert (tmp_path / "textfile" / TEXTFILE_NAME).read_text() == before
    assert not [p for p in (tmp_path / "textfile").iterdir() if p.name != TEXTFILE_NAME]   # no temp left
    clock.tick(1)
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_oom_watch_write_errors_total", None)] == 2  # the textfile and the state
    assert m[("enva_ct_memory_usage_bytes", 101)] == 20 * MIB


def test_missing_textfile_directory(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 101, "v2")
    watch, clock = make_watch(tmp_path, root)
    (tmp_path / "textfile").rmdir()
    watch.scan()
    watch.write()
    (tmp_path / "textfile").mkdir()                             # node_exporter's package installed later
    clock.tick(1)
    watch.scan()
    watch.write()
    assert metrics(tmp_path)[("enva_oom_watch_write_errors_total", None)] == 1


KILLER = """
import sys
from enva_oom_watch.atomic import write_atomic
body = "".join("enva_x{vmid=\\"%d\\"} %d\\n" % (i, i) for i in range(20000))
n = 0
while True:
    n += 1
    write_atomic(sys.argv[2], "# HELP enva_x x\\n# TYPE enva_x gauge\\n" + body + "# END %d\\n" % n)
"""


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.29])
def test_kill_9_mid_write_never_leaves_a_half_file_for_node_exporter(tmp_path, delay):
    target = tmp_path / "textfile" / "x.prom"
    target.parent.mkdir()
    child = subprocess.Popen([sys.executable, "-c", KILLER, str(AGENT_HOME), str(target)],
                             env=dict(os.environ, PYTHONPATH=str(AGENT_HOME)))
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    proms = list(target.parent.glob("*.prom"))                 # what node_exporter reads
    for prom in proms:
        text = prom.read_text()
        assert text.startswith("# HELP enva_x x\n") and re.search(r"# END \d+\n$", text)
        assert text.count("\n") == 20003
    atomic.clean_temp(str(target.parent))
    assert not list(target.parent.glob(".*.tmp.*"))             # stale temps cleaned


def test_stale_temp_files_are_cleaned_at_start(tmp_path):
    root = tmp_path / "cg"
    (tmp_path / "textfile").mkdir()
    stale = tmp_path / "textfile" / (".%s.tmp.999999" % TEXTFILE_NAME)
    stale.write_text("enva_ct_up{vmid=\"1\"")                  # half a line, as a kill -9 leaves it
    make_watch(tmp_path, root)
    assert not stale.exists()


def test_clock_step_moves_no_interval(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v2", some_us=0)
    watch, clock = make_watch(tmp_path, root)
    watch.scan()
    clock.mono += 2.0
    clock.wall -= 3600.0                                        # NTP steps the wall clock back an hour
    make_ct(root, 2017, "v2", some_us=1000000)                  # 1 s stalled in 2 s: 50 %
    watch.scan()
    watch.write()
    m = metrics(tmp_path)
    assert m[("enva_ct_memory_stalled", 2017)] == 1
    assert m[("enva_oom_watch_scan_duration_seconds", None)] >= 0
    assert m[("enva_oom_watch_last_scan_timestamp_seconds", None)] == clock.wall


def test_a_corrupt_state_file_starts_from_zero(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"format": 1, "cts": {"2017": {"last": {"high"')
    state = State(str(path))
    state.load()
    assert state.cts == {} and "state.json" in state.load_error


def test_kills_replayed_from_the_ring_buffer_at_start_are_counted_not_recorded(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v1")
    watch, _clock = make_watch(tmp_path, root, kmsg=kmsg_file(tmp_path, storm_records()))
    watch.start_time = 1e12                                     # every kill in the buffer is older than the agent
    assert watch.follow_kmsg() == 2
    watch.scan()
    watch.write()
    assert metrics(tmp_path)[("enva_ct_oom_kills_total", 2017)] == 2
    assert not list((tmp_path / "state" / "flight").glob("*oom_kill*"))


def test_a_cgroup_oom_kill_counted_before_the_kernel_lines_leaves_the_record_to_them(tmp_path):
    root = tmp_path / "cg"
    make_ct(root, 2017, "v1", oom_kill=0)
    path = kmsg_file(tmp_path, [])
    watch, clock = make_watch(tmp_path, root, kmsg=path)
    watch.start_time = 0
    watch.follow_kmsg()
    watch.scan()
    make_ct(root, 2017, "v1", oom_kill=2)                      # the scan sees the counter first
    clock.tick(1)
    watch.scan()
    assert not list((tmp_path / "state" / "flight").glob("*oom_kill*"))
    kmsg_file(tmp_path, storm_records())
    watch.follow_kmsg()
    (record,) = list((tmp_path / "state" / "flight").glob("*oom_kill*"))
    assert json.loads(record.read_text())["detail"]["victim"]["name"]
