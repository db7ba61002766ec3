"""The relay's configuration where it meets the system: the default allow list (rtnetlink vs `ip addr`), sd_notify."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess

import pytest

from ansible_collections.enva.pve.roles.dns_relay.files.enva_relay import config, systemd


def test_local_is_loopback_and_the_interface_subnets_ip_addr_shows():
    networks = config.resolve_allow(["local"])
    assert networks[:2] == list(config.LOOPBACK)
    if shutil.which("ip") is None:
        pytest.skip("no ip command to compare with")
    shown = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    expected = {ipaddress.ip_network("%s/%s" % (a["local"], a["prefixlen"]), strict=False)
                for link in shown for a in link.get("addr_info", [])}
    assert set(networks) == expected | set(config.LOOPBACK)


def test_notifier_sends_to_the_socket_and_reads_the_watchdog(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = systemd.Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        assert notifier.watchdog == 1.5
        assert notifier.send("READY=1")
        assert server.recv(100) == b"READY=1"
        notifier.close()
    assert not notifier.send("WATCHDOG=1"), "a vanished socket is logged, never raised"
    assert systemd.Notifier({"NOTIFY_SOCKET": "@abstract/name"}).path == "\0abstract/name"
    assert systemd.Notifier({"WATCHDOG_USEC": "100", "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog is None
    assert systemd.Notifier({"WATCHDOG_USEC": "100", "WATCHDOG_PID": str(os.getpid())}).watchdog == 0.00005
    assert not systemd.Notifier({}).send("READY=1")
