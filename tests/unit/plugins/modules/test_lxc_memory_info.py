"""lxc_memory_info: main() up to its exit or failure without a server (the option rules, a missing library,
nothing listening); its reads against the PVE API lab: tests/integration/plugins/modules/test_lxc_memory_info.py."""

from __future__ import annotations

import socket

import pytest

from ansible_collections.enva.pve.plugins.module_utils import pve_client
from ansible_collections.enva.pve.plugins.modules import lxc_memory_info
from support import module_harness as harness
from support.module_harness import ExitJson, FailJson

TOKEN = {"api_host": "127.0.0.1", "api_user": "enva@pve", "api_token_id": "audit", "api_token_secret": "s3cret",
         "validate_certs": False, "api_timeout": 2}


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    harness.raise_on_exit(monkeypatch, hide_no_log=True)
    harness.clear_proxmox_env(monkeypatch)


@pytest.mark.parametrize("args, expected", [
    ({}, "one of the following is required: vmid, hostname"),
    ({"vmid": 2017, "hostname": "haproxy"}, "parameters are mutually exclusive: vmid|hostname"),
    ({"vmid": 2017, "memory": 2048}, "Unsupported parameters for (basic.py) module: memory"),
    ({"vmid": "x"}, "argument 'vmid' is of type"),
])
def test_option_rules(args, expected):
    kind, result = harness.run_main(lxc_memory_info, dict(TOKEN, **args))
    assert kind is FailJson and expected in result["msg"]


def test_credentials_are_required():
    kind, result = harness.run_main(lxc_memory_info, {"api_host": "127.0.0.1", "api_user": "enva@pve", "vmid": 2017})
    assert kind is FailJson and "one of the following is required: api_password, api_token_id" in result["msg"]


def test_missing_proxmoxer_says_so(monkeypatch):
    monkeypatch.setattr(pve_client, "PROXMOXER_IMPORT_ERROR", "Traceback: No module named 'proxmoxer'")
    kind, result = harness.run_main(lxc_memory_info, dict(TOKEN, vmid=2017))
    assert kind is FailJson and "Failed to import the required Python library (proxmoxer)" in result["msg"]


def test_nothing_listening_names_host_and_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kind, result = harness.run_main(lxc_memory_info, dict(TOKEN, api_port=port, vmid=2017, node="pve1"))
    assert kind is FailJson
    assert result["msg"] == ("Cannot read the config of CT 2017 on node pve1: cannot connect to the PVE API at"
                             " https://127.0.0.1:%d/api2/json (connection refused: nothing listens on port %d there)."
                             " Check api_host and api_port." % (port, port))
    assert "s3cret" not in str(result)
    assert ExitJson is not kind
