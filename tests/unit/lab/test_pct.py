"""The lab's pct (enva_lab.pct): PVE's messages and exit status for an unknown or stopped CT, its list,
status and config output, its reading of --perms. exec, push and pull on a real CT: tests/integration/v2."""

import socket
import types

import pytest

from enva_lab import pct, settings

CONFIG = """arch: amd64
cores: 2
description: HAProxy front end%0A
hostname: haproxy
memory: 128
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:20:17,ip=10.217.0.17/24,type=veth
swap: 128
unprivileged: 1
"""


@pytest.fixture(name="layout")
def fixture_layout(tmp_path, monkeypatch):
    layout = settings.Layout(root=tmp_path / "lab", cache=tmp_path / "cache")
    layout.pve_lxc.mkdir(parents=True)
    (layout.pve_lxc / "2017.conf").write_text(CONFIG)
    (layout.pve_lxc / "2101.conf").write_text("hostname: web\nmemory: 512\n")
    (layout.pve_lxc / "notes.txt").write_text("not a CT\n")
    monkeypatch.setattr(settings, "Layout", lambda: layout)
    running = {2017: 4242}
    monkeypatch.setattr(pct, "_running_pid", lambda _layout, vmid: running.get(vmid))
    monkeypatch.setattr(pct.os, "execvp", lambda *call: pytest.fail("exec %s" % (call,)))
    return layout


def run(capsys, *argv):
    status = pct.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_is_pves_table(layout, capsys):
    status, out, _err = run(capsys, "list")
    assert status == 0
    assert out.splitlines() == ["VMID       Status     Lock         Name                ",
                                "2017       running                 haproxy             ",
                                "2101       stopped                 web                 "]


def test_status_and_config(layout, capsys):
    assert run(capsys, "status", "2017") == (0, "status: running\n", "")
    assert run(capsys, "status", "2101") == (0, "status: stopped\n", "")
    status, out, _err = run(capsys, "config", "2017")
    assert status == 0
    assert out.splitlines()[:4] == ["arch: amd64", "cores: 2", "description: HAProxy front end%0A", "hostname: haproxy"]
    assert "unprivileged: 1" in out.splitlines()


@pytest.mark.parametrize("argv", [("status", "999"), ("config", "999"), ("exec", "999", "--", "true"),
                                  ("push", "999", "/etc/hostname", "/tmp/x"), ("pull", "999", "/etc/hostname", "/tmp/x")])
def test_an_unknown_ct_is_pves_message_and_255(layout, capsys, argv):
    status, out, err = run(capsys, *argv)
    assert (status, out) == (255, "")
    assert err == "Configuration file 'nodes/%s/lxc/999.conf' does not exist\n" % socket.gethostname().split(".")[0]


@pytest.mark.parametrize("argv, message", [
    (("exec", "2101", "--", "true"), "container '2101' not running!"),
    (("push", "2101", "/etc/hostname", "/tmp/x"), "can only push files to a running CT"),
    (("pull", "2101", "/etc/hostname", "/tmp/x"), "can only pull files from a running VM at %s line 664." % pct.PCT_PM),
])
def test_a_stopped_ct_is_pves_message_and_255(layout, capsys, argv, message):
    assert run(capsys, *argv) == (255, "", message + "\n")


def test_exec_without_a_command_and_a_bad_vmid(layout, capsys):
    assert run(capsys, "exec", "2017", "--")[0:2] == (255, "")
    status, _out, err = run(capsys, "status", "abc")
    assert status == 255 and err.startswith("400 Parameter verification failed.\nvmid: invalid format")


def test_exec_runs_lxc_attach_with_pves_keep_env(layout, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(pct.os, "execvp", lambda *call: calls.append(call))
    run(capsys, "exec", "2017", "--", "/bin/sh", "-c", "echo hi")
    assert calls == [("lxc-attach", ["lxc-attach", "-n", "2017", "-P", str(layout.lxcpath), "--keep-env", "--",
                                     "/bin/sh", "-c", "echo hi"])]


@pytest.mark.parametrize("perms, mode", [("644", 0o644), ("0755", 0o755), ("0x1ed", 0o755), ("0", 0)])
def test_perms_read_as_pve_does(perms, mode):
    assert pct._mode(perms) == mode      # pylint: disable=protected-access


def test_bad_perms_are_pves_message():
    with pytest.raises(pct.PctError, match="invalid mode: '9z'"):
        pct._mode("9z")                  # pylint: disable=protected-access


def test_push_enters_the_cts_mount_and_user_namespaces(layout, capsys, monkeypatch, tmp_path):
    source = tmp_path / "file"
    source.write_text("data\n")
    seen = []

    def fake_run(argv, **kwargs):
        seen.append((argv, kwargs["stdin"].read()))
        return types.SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(pct.subprocess, "run", fake_run)
    assert run(capsys, "push", "2017", str(source), "/etc/x.conf", "--perms", "640", "--user", "root")[0] == 0
    argv, data = seen[0]
    assert argv[:6] == ["nsenter", "--target", "4242", "--mount", "--user", "/bin/sh"]
    assert argv[-1] == "/etc/x.conf" and data == b"data\n"
    assert "chmod 640" in argv[7] and "chown root" in argv[7]
