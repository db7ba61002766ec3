"""labctl's faults: one line on stderr that says what is wrong and what to do, exit status 1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from enva_lab import cgroup2, cli, host, journal
from enva_lab.settings import Layout

LABCTL = Path(__file__).resolve().parents[2] / "lab" / "labctl"


def run_labctl(*args, env=None, user=None):
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user == "nobody" else []
    return subprocess.run(prefix + [str(LABCTL)] + list(args), capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})), check=False)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
@pytest.mark.parametrize("command", [["up"], ["status"], ["start", "2017"], ["down"]])
def test_not_root_is_one_line_that_says_to_run_as_root(command, tmp_path):
    done = run_labctl(*command, env={"ENVA_LAB_DIR": str(tmp_path / "lab")}, user="nobody")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("labctl: ")
    assert "root" in done.stderr
    assert not (tmp_path / "lab").exists()


def test_no_memory_cgroup_is_named(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(host, "memory_cgroup_v1", lambda: False)
    monkeypatch.setattr(cgroup2, "available", lambda base=None: False)
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("labctl: no memory controller: neither cgroup v1 at /sys/fs/cgroup/memory nor cgroup v2")
    assert err.count("\n") == 1


def test_missing_lxc_is_named_with_the_package_to_install(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "lxc-start" else real_which(name))
    assert cli.main(["up"]) == 1
    assert capsys.readouterr().err == ("labctl: lxc-start is not installed (Debian package lxc); run make setup, "
                                       "which installs tools/debian-packages.txt\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab's commands need root")
def test_commands_on_a_lab_that_is_not_up_say_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENVA_LAB_DIR", str(tmp_path / "lab"))
    assert cli.main(["reset", "2017"]) == 1
    assert "the lab is not up" in capsys.readouterr().err
    assert cli.main(["stop", "4242"]) == 1
    assert capsys.readouterr().err.startswith("labctl: CT 4242 is not in the lab")


def test_unbounded_flood_arguments_are_refused_before_anything_is_sent(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ENVA_LAB_DIR", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    Layout(root=tmp_path).pve_lxc.mkdir(parents=True)
    Layout(root=tmp_path).pve_conf(2017).write_text(
        "hostname: haproxy\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.217.0.17/24,type=veth\n")
    assert cli.main(["flood", "--vmid", "2017", "--qps", "100000", "--seconds", "5"]) == 1
    assert capsys.readouterr().err.startswith("labctl: --qps must be between 1 and 20000")


def test_journal_prints_like_journalctl_u(tmp_path):
    book = journal.Journal(Layout(root=tmp_path))
    book.write(2017, "start", "0" * 32)
    done = run_labctl("journal", "2017", env={"ENVA_LAB_DIR": str(tmp_path)})
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2
    assert lines[1].endswith(" pve1 systemd[1]: Started pve-container@2017.service - PVE LXC Container: 2017.")
    assert run_labctl("journal", "2017", "--json", env={"ENVA_LAB_DIR": str(tmp_path)}).stdout == \
        Layout(root=tmp_path).journal_file(2017).read_text()
    assert run_labctl("journal", "2101", env={"ENVA_LAB_DIR": str(tmp_path)}).stdout == "-- No entries --\n"
