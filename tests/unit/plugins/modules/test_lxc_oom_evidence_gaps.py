"""lxc_oom_evidence on a node whose kernel log has gaps: the evidence says what it could not read.

I/O is faked only at ``run(argv)`` (journalctl, dmesg answer as on a Debian 13 / PVE 9 node, systemd 257) and at
the file level (/proc/stat, the journald socket).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence
from support import journald_notices as notices
from support.oom_corpus import dmesg_raw, journal_json, killed_line, oom_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
V2 = str(FIXTURES / "cgroup" / "v2-node")
CONFIGS = str(FIXTURES / "pve-lxc")
BOOT = 1796450000.0
NOW = 1796456000.0
SINCE = NOW - 3600
PARAMS = {"vmid": [101, 2017], "since": "@%d" % SINCE, "kernel_log": "auto", "lifecycle_log": "auto",
          "census": False, "cgroup_root": V2, "pve_config_dir": CONFIGS, "flight_dir": None}
EPERM = "dmesg: read kernel buffer failed: Operation not permitted\n"


@pytest.fixture(autouse=True)
def node_files(tmp_path, monkeypatch):
    socket = tmp_path / "journal-socket"
    socket.write_text("")
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4\nbtime %d\nprocesses 4242\n" % BOOT)
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", str(socket))
    monkeypatch.setattr(lxc_oom_evidence, "PROC_STAT", str(stat))


class Node(object):
    """Answers journalctl and dmesg as the node would; records every call."""

    def __init__(self, kernel=(), notices_out=(), boot_probe=(), dmesg=(0, "", ""), notices_rc=0, lifecycle=()):
        self.answers = {"kernel": "\n".join(kernel), "driver": "\n".join(notices_out), "probe": "\n".join(boot_probe),
                        "lifecycle": "\n".join(lifecycle)}
        self.dmesg = dmesg
        self.notices_rc = notices_rc
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[0] == "dmesg":
            return self.dmesg
        if "_TRANSPORT=driver" in argv:
            if self.notices_rc:
                return self.notices_rc, "", "Failed to open journal: Permission denied\n"
            return 0, self.answers["driver"], ""
        if "-b" in argv:
            return 0, self.answers["probe"], ""
        if "_TRANSPORT=kernel" in argv:
            return 0, self.answers["kernel"], ""
        if "-u" in argv:
            return 0, self.answers["lifecycle"], ""
        raise AssertionError("unexpected command %r" % (argv,))


def gather(node, **params):
    return lxc_oom_evidence.gather(dict(PARAMS, **params), node, now=NOW)


def kinds(result):
    return [(gap["kind"], gap["affects"]) for gap in result["sources"]["kernel_log"]["gaps"]]


def quiet_kernel():
    return [notices.kernel(SINCE + 60, "vmbr0: port 2(veth2017i0) entered forwarding state", BOOT)]


def test_journald_missed_kernel_lines_and_rate_limited_the_ct_unit():
    node = Node(kernel=quiet_kernel() + [notices.overrun(NOW - 1500, BOOT)],
                notices_out=[notices.missed(NOW - 1800, 1021, BOOT), notices.missed(NOW - 1795, 721, BOOT),
                             notices.dropped(NOW - 1700, 4117, "pve-container@2017.service", BOOT)])
    result = gather(node)
    gaps = result["sources"]["kernel_log"]["gaps"]
    assert kinds(result) == [("journal_missed", "kernel_log"), ("journal_dropped", "lifecycle_log"),
                             ("journal_overrun", "kernel_log")]
    missed = gaps[0]
    assert (missed["count"], missed["lines"], missed["source"]) == (1742, 2, "systemd-journald")
    assert missed["first_time"] == "2026-12-05T07:03:20+00:00" and missed["last_time"] == "2026-12-05T07:03:25+00:00"
    assert gaps[1]["count"] == 4117 and gaps[1]["vmid"] == 2017
    for vmid in ("101", "2017"):
        verdict = result["cts"][vmid]["verdict"]
        assert verdict["oom_killed"] is False or vmid == "2017"
        assert verdict["kernel_log_complete"] is False
    assert result["cts"]["2017"]["verdict"]["lifecycle_log_complete"] is False
    assert result["cts"]["101"]["verdict"]["lifecycle_log_complete"] is True
    assert result["cts"]["101"]["verdict"]["log_gaps"] == ["journal_missed", "journal_overrun"]
    assert sum("kernel_log gap (journal_missed)" in warning for warning in result["warnings"]) == 1
    assert sum("kernel_log gap (journal_dropped), from pve-container@2017.service, 4117" in warning
               for warning in result["warnings"]) == 1
    assert not any(call[0] == "dmesg" or "-b" in call for call in node.calls)   # kernel lines were there


def test_a_kernel_rate_limit_on_oom_reports_marks_the_kernel_log_incomplete():
    report = oom_report(2017, "socat", 2609, "socat", [(2609, "socat", 254)], 262144)
    lines = [journal_json(NOW - 900 + index * 0.001, text, BOOT) for index, text in enumerate(report)]
    lines += [notices.kernel(NOW - 890, "oom_kill_process: 57 callbacks suppressed", BOOT),
              notices.kernel(NOW - 889, "printk: systemd: 18 output lines suppressed due to ratelimiting", BOOT),
              journal_json(NOW - 888, killed_line(2700, "socat"), BOOT)]
    result = gather(Node(kernel=lines))
    assert kinds(result) == [("kernel_ratelimit", "kernel_log"), ("devkmsg_ratelimit", "none")]
    assert result["sources"]["kernel_log"]["gaps"][0]["count"] == 57
    assert result["cts"]["2017"]["verdict"]["oom_killed"] is True
    assert result["cts"]["2017"]["oom_events"] == 2            # the kills still count
    assert result["cts"]["2017"]["verdict"]["kernel_log_complete"] is False
    assert not any("devkmsg_ratelimit" in warning for warning in result["warnings"])


def test_no_kernel_line_this_boot_and_dmesg_restricted_says_both():
    node = Node(kernel=[], boot_probe=[], dmesg=(1, "", EPERM))
    result = gather(node)
    assert kinds(result) == [("no_kernel_log", "kernel_log"), ("dmesg_unreadable", "kernel_log")]
    assert result["sources"]["kernel_log"]["kind"] == "journal"
    assert result["sources"]["kernel_log"]["gaps"][1]["message"] == EPERM.strip()
    probe = node.calls.index(["journalctl", "--no-pager", "-o", "json", "_TRANSPORT=kernel", "-b", "-n", "1"])
    assert node.calls[probe + 1] == ["dmesg"]
    for vmid in ("101", "2017"):
        assert result["cts"][vmid]["verdict"]["kernel_log_complete"] is False
    assert result["cts"]["101"]["verdict"]["oom_killed"] is False
    assert any("no_kernel_log" in warning for warning in result["warnings"])
    assert any("dmesg_unreadable" in warning and "Operation not permitted" in warning
               for warning in result["warnings"])


def test_no_kernel_line_this_boot_reads_dmesg_instead_in_auto():
    report = oom_report(2017, "socat", 2609, "socat", [(2609, "socat", 254)], 262144)
    ring = [dmesg_raw(BOOT + 0.5, "Linux version 6.14.8-2-pve (build@proxmox) #1 SMP PREEMPT_DYNAMIC", BOOT)]
    ring += [dmesg_raw(NOW - 600, text, BOOT) for text in report]
    node = Node(kernel=[], boot_probe=[], dmesg=(0, "\n".join(ring) + "\n", ""))
    result = gather(node)
    source = result["sources"]["kernel_log"]
    assert source["kind"] == "dmesg" and source["instead_of"] == "journalctl _TRANSPORT=kernel -o json"
    assert kinds(result) == [("no_kernel_log", "none")]
    assert "read from dmesg instead" in source["gaps"][0]["meaning"]
    assert result["cts"]["2017"]["verdict"]["oom_killed"] is True
    assert result["cts"]["2017"]["incidents"][0]["start"] == "2026-12-05T07:23:20+00:00"
    assert result["cts"]["2017"]["verdict"]["kernel_log_complete"] is True


def test_a_quiet_kernel_in_the_window_is_no_gap():
    node = Node(kernel=[], boot_probe=[notices.kernel(BOOT + 1, "Linux version 6.14.8-2-pve", BOOT)])
    result = gather(node)
    assert kinds(result) == []
    assert result["cts"]["101"]["verdict"]["kernel_log_complete"] is True
    assert not any(call[0] == "dmesg" for call in node.calls)


def test_kernel_log_journal_does_not_fall_back():
    node = Node(kernel=[], boot_probe=[])
    result = gather(node, kernel_log="journal")
    assert kinds(result) == [("no_kernel_log", "kernel_log")]
    assert not any(call[0] == "dmesg" for call in node.calls)


def test_a_ring_buffer_that_starts_after_since():
    ring = [dmesg_raw(NOW - 1200 + index, "vmbr0: port 2(veth2017i0) entered forwarding state", BOOT)
            for index in range(3)]
    result = gather(Node(dmesg=(0, "\n".join(ring), "")), kernel_log="dmesg")
    (gap,) = result["sources"]["kernel_log"]["gaps"]
    assert (gap["kind"], gap["affects"]) == ("dmesg_starts_late", "kernel_log")
    assert gap["first_time"] == "2026-12-05T06:33:20+00:00"          # since
    assert gap["last_time"] == "2026-12-05T07:13:20+00:00"           # the buffer's first line
    assert result["cts"]["2017"]["verdict"]["kernel_log_complete"] is False


def test_journald_notices_unreadable_is_said_not_fatal():
    result = gather(Node(kernel=quiet_kernel(), notices_rc=1))
    assert kinds(result) == [("journald_notices_unreadable", "none")]
    assert result["cts"]["101"]["verdict"]["kernel_log_complete"] is True
    assert any("journald_notices_unreadable" in warning for warning in result["warnings"])


def test_auto_without_journald_reads_kern_log_and_says_dmesg_failed(monkeypatch, tmp_path):
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", str(tmp_path / "no-socket"))
    monkeypatch.setattr(lxc_oom_evidence, "KERN_LOG_FILES", (str(FIXTURES / "kernel" / "kernel-4.15-v1-703.kern.log"),))
    result = gather(Node(dmesg=(1, "", EPERM)), vmid=None, since=None)
    assert result["sources"]["kernel_log"]["kind"] == "files" and "dmesg_error" not in result["sources"]["kernel_log"]
    (gap,) = result["sources"]["kernel_log"]["gaps"]
    assert (gap["kind"], gap["affects"], gap["message"]) == ("dmesg_unreadable", "none", EPERM.strip())
    assert "kernel-4.15-v1-703.kern.log" in gap["meaning"]
