"""roles/dns_relay/files/enva_dns_relay_swap.py: the pure parts (systemctl show, ExecStart, the
forwarder pattern) and the commands against a fake systemctl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "dns_relay" / "files" / "enva_dns_relay_swap.py"
swap = load_script(SCRIPT, "enva_dns_relay_swap")

SOCAT = "/usr/bin/socat UDP4-LISTEN:53,fork,reuseaddr UDP4:10.217.0.53:53"
SHOW = """Id=dns-forwarder.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled
FragmentPath=/etc/systemd/system/dns-forwarder.service
KillMode=control-group
MainPID=42
ExecStart={ path=/usr/bin/socat ; argv[]=%s ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
ControlGroup=/system.slice/dns-forwarder.service

Id=ssh.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled
FragmentPath=/lib/systemd/system/ssh.service
KillMode=process
MainPID=7
ExecStart={ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -D $SSHD_OPTS ; ignore_errors=no ; start_time=[n/a] ; pid=0 }
ControlGroup=/system.slice/ssh.service

Id=old.service
LoadState=masked
ActiveState=inactive
UnitFileState=masked
FragmentPath=/dev/null
KillMode=control-group
MainPID=0
ExecStart=
ControlGroup=
""" % SOCAT


def test_parse_show_blocks():
    units = swap.parse_show(SHOW)
    assert [unit["Id"] for unit in units] == ["dns-forwarder.service", "ssh.service", "old.service"]
    assert units[0]["KillMode"] == "control-group"
    assert units[2]["ExecStart"] == ""


def test_exec_argvs():
    units = swap.parse_show(SHOW)
    assert swap.exec_argvs(units[0]["ExecStart"]) == [SOCAT]
    assert swap.exec_argvs(units[2]["ExecStart"]) == []
    two = "{ path=/bin/a ; argv[]=/bin/a x ; ignore_errors=no } ; { path=/bin/b ; argv[]=b -y ; ignore_errors=no }"
    assert swap.exec_argvs(two) == ["/bin/a x", "b -y"]


@pytest.mark.parametrize("argv, port, hit", [
    (SOCAT, 53, True),
    ("socat -d -d UDP-LISTEN:53,fork UDP:10.0.0.1:53", 53, True),
    ("/usr/bin/socat tcp4-listen:53,fork,reuseaddr TCP4:10.0.0.1:53", 53, True),
    ("/usr/bin/socat UDP4-RECVFROM:53,fork UDP4-SENDTO:10.0.0.1:53", 53, True),
    ("/usr/bin/socat UDP4-LISTEN:5353,fork UDP4:10.0.0.1:53", 53, False),
    ("/usr/bin/socat UDP4-LISTEN:5353,fork UDP4:10.0.0.1:53", 5353, True),
    ("/usr/bin/socat UDP4-LISTEN:8053 UDP4:10.0.0.1:53", 53, False),
    ("/usr/sbin/unbound -d", 53, False),
    ("/usr/bin/notsocat UDP4-LISTEN:53,fork UDP4:10.0.0.1:53", 53, False),
])
def test_forwarder_regex(argv, port, hit):
    assert bool(swap.forwarder_regex(["socat"], port).search(argv)) is hit


@pytest.fixture()
def fake_systemctl(tmp_path, monkeypatch):
    """A systemctl on PATH that logs its arguments and prints SHOW for `show`."""
    log = tmp_path / "calls"
    (tmp_path / "show").write_text(SHOW)
    script = tmp_path / "systemctl"
    script.write_text("""#!/bin/sh
echo "$*" >> %s
case "$1" in
  list-unit-files) printf 'dns-forwarder.service enabled enabled\\nssh.service enabled enabled\\n'
    printf 'old.service masked enabled\\ngetty@.service enabled enabled\\n' ;;
  list-units) printf 'dns-forwarder.service loaded active running DNS\\n' ;;
  show) cat %s ;;
  start) case "$*" in *broken*) echo "Job failed" >&2; exit 1 ;; esac ;;
esac
""" % (log, tmp_path / "show"))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, os.environ["PATH"]))
    return log


def run(*args):
    proc = subprocess.run([sys.executable, str(SCRIPT)] + list(args), capture_output=True, text=True, check=False,
                          env=os.environ)
    return proc.returncode, json.loads(proc.stdout)


def test_find(fake_systemctl):
    rc, out = run("find", "--port", "53", "--unit", "ssh.service", "--unit", "nope.service")
    assert rc == 0
    assert [unit["unit"] for unit in out["forwarders"]] == ["dns-forwarder.service", "ssh.service"]
    forwarder = out["forwarders"][0]
    assert forwarder["matched"] == [SOCAT]
    assert forwarder["record"] == {"unit": "dns-forwarder.service", "argv": [SOCAT], "kill_mode": "control-group",
                                   "fragment_path": "/etc/systemd/system/dns-forwarder.service",
                                   "unit_file_state": "enabled", "active_state": "active"}
    assert out["missing_units"] == ["nope.service"]
    calls = fake_systemctl.read_text()
    assert "getty@.service" not in calls


def test_swap_kills_leftovers_by_command_line(fake_systemctl, tmp_path):
    argv = "sleep 30.25"
    child = subprocess.Popen(argv.split())
    try:
        rc, out = run("swap", "--stop", "dns-forwarder.service", "--argv", argv, "--start", "enva-dns-relay.service")
        assert rc == 0
        assert out["killed"] == [child.pid]
        assert child.wait(timeout=5) != 0
        assert out["left_over"] == [] and out["errors"] == []
        assert out["gap_ms"] >= out["start_ms"]
        assert fake_systemctl.read_text().splitlines() == [
            "stop -- dns-forwarder.service", "start -- enva-dns-relay.service",
            "reset-failed -- dns-forwarder.service"]
    finally:
        child.kill()
        child.wait()


def test_swap_that_cannot_start_restarts_the_old_units(fake_systemctl):
    rc, out = run("swap", "--stop", "dns-forwarder.service", "--start", "broken.service")
    assert rc == 1
    assert "Job failed" in out["errors"][0]
    assert out["rolled_back"] == ["dns-forwarder.service"]
    assert fake_systemctl.read_text().splitlines()[-1] == "start -- dns-forwarder.service"
