"""lxc_oom_evidence: main() end to end on fixture trees and saved logs; gather() on its error paths."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence
from support import module_harness as harness
from support.module_harness import ExitJson, FailJson

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
KERNEL = FIXTURES / "kernel"
V2 = str(FIXTURES / "cgroup" / "v2-node")
CONFIGS = str(FIXTURES / "pve-lxc")
ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    harness.raise_on_exit(monkeypatch)
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", "/nonexistent/journal/socket")


def run_main(**args):
    base = {"cgroup_root": V2, "pve_config_dir": CONFIGS, "lifecycle_log": str(FIXTURES / "lifecycle")}
    base.update(args)
    return harness.run_main(lxc_oom_evidence, base)


@pytest.mark.parametrize("check_mode", [False, True])
def test_incident_2017_from_a_saved_journal(check_mode):
    kind, result = run_main(vmid=2017, kernel_log=str(KERNEL / "incident-2017-v2.journal.jsonl"),
                            _ansible_check_mode=check_mode)
    assert kind is ExitJson and result["changed"] is False
    assert list(result["cts"]) == ["2017"]
    report = result["cts"]["2017"]
    (incident,) = report["incidents"]
    assert incident["oom_memcg"] == "/lxc/2017"
    assert incident["victims"][0]["name"] == "in:imuxsock"
    assert incident["stop"]["event"] == "deactivated" and incident["next_start"]["event"] == "started"
    assert report["verdict"]["likely_cause"].startswith("socat fork storm: 1,361 socat processes in the OOM task dump")
    assert report["counters"]["cgroup_version"] == 2 and report["counters"]["oom_kills"] == 7
    assert report["census"]["processes"] == 0          # the fixture tree's cgroup.procs are empty
    assert report["config"]["hostname"] == "haproxy"
    assert report["recommended_memory_mb"] == 2048
    assert result["summary"] == {"cts": 1, "oom_killed": [2017], "fork_storm": [2017], "memory_high_stall": []}
    assert result["sources"]["kernel_log"] == {
        "kind": "file", "path": str(KERNEL / "incident-2017-v2.journal.jsonl"), "lines": 2642,
        "first_time": "2024-11-23T23:35:34.212345+00:00", "last_time": "2024-11-23T23:41:12.412345+00:00",
        "gaps": []}
    assert report["verdict"]["kernel_log_complete"] is True and report["verdict"]["log_gaps"] == []
    assert result["sources"]["lifecycle_log"]["files"] == 3
    json.dumps(result)                                  # what Ansible sends back must serialize


def test_all_cts_from_configs_cgroups_and_log():
    kind, result = run_main(kernel_log=str(KERNEL / "incident-2017-v2.short-iso-precise.log"), census=False)
    assert kind is ExitJson
    # 703 only appears in the lifecycle journal: still a CT this node has evidence of
    assert sorted(result["cts"], key=int) == ["101", "102", "703", "2017", "9000"]
    assert result["cts"]["703"]["config"] is None and len(result["cts"]["703"]["lifecycle"]) == 9
    assert result["cts"]["9000"]["counters"] is None and result["cts"]["9000"]["config"]["memory_mb"] == 512
    assert result["cts"]["101"]["verdict"]["oom_killed"] is False
    assert result["cts"]["101"]["recommended_memory_mb"] == 2048
    assert result["cts"]["2017"]["census"] is None


def test_since_window_and_vmid_list():
    kind, result = run_main(vmid=[2017, 101], since="2024-11-24T00:40:00+01:00",
                            kernel_log=str(KERNEL / "incident-2017-v2.journal.jsonl"))
    assert kind is ExitJson and sorted(result["cts"]) == ["101", "2017"]
    assert result["cts"]["2017"]["incidents"] == []
    assert [e["event"] for e in result["cts"]["2017"]["lifecycle"]] == ["starting", "started"]
    assert result["window"]["since"] == "2024-11-23T23:40:00+00:00"
    assert result["cts"]["2017"]["verdict"]["oom_killed"] is True       # the cgroup still counts 7 kills


def test_unknown_vmid_names_what_was_looked_at():
    kind, result = run_main(vmid=[2017, 4242], kernel_log=str(KERNEL / "incident-2017-v2.journal.jsonl"))
    assert kind is FailJson
    assert result["msg"].startswith("CT 4242 is not on this node: no VMID.conf in %s" % CONFIGS)
    assert result["msg"].endswith("CTs known here: 101, 102, 703, 2017, 9000")


@pytest.mark.parametrize("args, message", [
    ({"kernel_log": "/nonexistent/kern.log"}, "kernel_log /nonexistent/kern.log does not exist"),
    ({"kernel_log": str(KERNEL)}, "is a directory; give the path of one saved kernel log file"),
    ({"kernel_log": str(KERNEL / "wrapped-2017-v1-dmesg.log"), "lifecycle_log": "/nonexistent/j"},
     "lifecycle_log /nonexistent/j does not exist"),
    ({"kernel_log": str(KERNEL / "wrapped-2017-v1-dmesg.log"), "since": "last tuesday"},
     "since='last tuesday' is neither a duration"),
    ({"kernel_log": "journal"}, "journald does not run on this host"),
])
def test_messages_a_person_can_act_on(args, message):
    kind, result = run_main(**args)
    assert kind is FailJson and message in result["msg"]


def test_corrupt_gzip_log_is_reported_not_a_traceback(tmp_path):
    broken = tmp_path / "kern.log.1.gz"
    broken.write_bytes(b"this is not gzip")
    kind, result = run_main(kernel_log=str(broken))
    assert kind is FailJson
    assert result["msg"].startswith("cannot read %s" % broken)


def test_bytes_that_are_not_utf8_do_not_stop_the_parse(tmp_path):
    saved = tmp_path / "kern.log"
    saved.write_bytes(b"Aug  2 03:10:02 pve2 kernel: \xff\xfe\xfd torn\n" + (KERNEL / "wrapped-2017-v1-dmesg.log").read_bytes())
    kind, result = run_main(kernel_log=str(saved), vmid=2017)
    assert kind is ExitJson and result["sources"]["kernel_log"]["lines"] == 15
    assert result["cts"]["2017"]["oom_events"] == 3


def test_gzip_log_is_read(tmp_path):
    packed = tmp_path / "kern.log.2.gz"
    with gzip.open(packed, "wb") as handle:
        handle.write((KERNEL / "wrapped-2017-v1-dmesg.log").read_bytes())
    kind, result = run_main(kernel_log=str(packed), vmid=2017)
    assert kind is ExitJson
    assert result["cts"]["2017"]["partial_events"] == 3


PARAMS = {"vmid": None, "since": None, "kernel_log": "auto", "lifecycle_log": "auto", "census": False,
          "cgroup_root": V2, "pve_config_dir": CONFIGS}


def test_lifecycle_warning_without_journald():
    result = lxc_oom_evidence.gather(dict(PARAMS, kernel_log=str(KERNEL / "wrapped-2017-v1-dmesg.log")),
                                     lambda argv: (1, "", "not used"))
    assert any("journald does not run" in warning for warning in result["warnings"])
    assert result["sources"]["lifecycle_log"] == {"kind": None}


def test_dmesg_without_permission_says_what_to_do():
    def run(argv):
        return 1, "", "dmesg: read kernel buffer failed: Operation not permitted\n"

    with pytest.raises(lxc_oom_evidence.EvidenceError, match="Operation not permitted.*become: true"):
        lxc_oom_evidence.gather(dict(PARAMS, kernel_log="dmesg"), run)


def test_auto_without_journal_dmesg_or_files(monkeypatch):
    monkeypatch.setattr(lxc_oom_evidence, "KERN_LOG_FILES", ("/nonexistent/kern.log",))
    with pytest.raises(lxc_oom_evidence.EvidenceError, match="no kernel log to read.*Operation not permitted"):
        lxc_oom_evidence.gather(PARAMS, lambda argv: (1, "", "dmesg: Operation not permitted"))


def test_auto_falls_back_to_kern_log_files(monkeypatch):
    monkeypatch.setattr(lxc_oom_evidence, "KERN_LOG_FILES", (str(KERNEL / "kernel-4.15-v1-703.kern.log"),))
    result = lxc_oom_evidence.gather(PARAMS, lambda argv: (1, "", "denied"))
    assert result["sources"]["kernel_log"]["kind"] == "files"
    assert result["cts"]["703"]["incidents"][0]["victims"][0]["name"] == "apache2"


def test_journal_source_runs_journalctl_for_the_kernel_and_the_units(tmp_path, monkeypatch):
    socket = tmp_path / "socket"
    socket.write_text("")
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", str(socket))
    calls = []
    outputs = {"_TRANSPORT=driver": "",
               "_TRANSPORT=kernel": (KERNEL / "incident-2017-v2.journal.jsonl").read_text(),
               "pve-container@*": (FIXTURES / "lifecycle" / "pve-container@2017.jsonl").read_text()}

    def run(argv):
        calls.append(argv)
        return 0, next(text for key, text in outputs.items() if key in argv), ""

    result = lxc_oom_evidence.gather(dict(PARAMS, vmid=[2017], since="@1732400000"), run)
    assert calls[0] == ["journalctl", "--no-pager", "-o", "json", "_TRANSPORT=kernel", "--since", "@1732400000"]
    assert calls[1] == ["journalctl", "--no-pager", "-o", "json", "_TRANSPORT=driver",
                        "SYSLOG_IDENTIFIER=systemd-journald", "--since", "@1732400000"]
    assert calls[2] == ["journalctl", "--no-pager", "-o", "json", "-u", "pve-container@*", "--since", "@1732400000"]
    assert len(calls) == 3        # kernel lines in the window: no probe of the boot
    incident = result["cts"]["2017"]["incidents"][0]
    assert incident["stop"]["event"] == "deactivated" and incident["top_processes"][0]["count"] == 1361


@pytest.mark.parametrize("answer, message", [
    ((127, "", "journalctl: command not found"), "journalctl is not installed on this host"),
    ((1, "", "Failed to open journal: Permission denied"), "rc=1\\): Failed to open journal: Permission denied"),
])
def test_journalctl_failures(tmp_path, monkeypatch, answer, message):
    socket = tmp_path / "socket"
    socket.write_text("")
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", str(socket))
    with pytest.raises(lxc_oom_evidence.EvidenceError, match=message):
        lxc_oom_evidence.gather(PARAMS, lambda argv: answer)


def test_journal_permission_problem(tmp_path, monkeypatch):
    socket = tmp_path / "socket"
    socket.write_text("")
    monkeypatch.setattr(lxc_oom_evidence, "JOURNALD_SOCKET", str(socket))
    message = "No journal files were opened due to insufficient permissions."

    with pytest.raises(lxc_oom_evidence.EvidenceError, match="insufficient permissions.*systemd-journal"):
        lxc_oom_evidence.gather(PARAMS, lambda argv: (0, "", message))


@pytest.mark.skipif(shutil.which("dmesg") is None or os.geteuid() != 0, reason="needs dmesg and root")
def test_real_dmesg_of_this_host():
    kind, result = run_main(kernel_log="dmesg", census=False)
    assert kind is ExitJson
    assert result["sources"]["kernel_log"]["kind"] == "dmesg" and result["sources"]["kernel_log"]["lines"] > 0


def test_ansible_doc_renders():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    doc = subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), "enva.pve.lxc_oom_evidence"],
                         capture_output=True, text=True, env=env, check=True).stdout
    for word in ("vmid", "since", "kernel_log", "lifecycle_log", "census", "recommended_memory_mb", "check_mode"):
        assert word in doc
