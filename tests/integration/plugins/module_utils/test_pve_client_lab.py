"""pve_client against the PVE API lab server over real HTTPS: tokens, tickets, errors, missing libraries."""

from __future__ import annotations

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.enva.pve.plugins.module_utils import pve_client
from support import module_harness as harness
from support.module_harness import FailJson


@pytest.fixture(autouse=True)
def module_fails(monkeypatch):
    harness.raise_on_exit(monkeypatch)
    harness.clear_proxmox_env(monkeypatch)


def make_module(args):
    with patch_module_args(args):
        return pve_client.pve_module({})


def test_client_token_and_ticket_against_the_lab(lab):
    lab.lab.add_ct(2017, memory=1024)
    for args in (lab.connection(), lab.connection(token=None)):
        module = make_module(args)
        api = pve_client.connect(module)
        assert api.get("version", "read the version")["release"] == "9.1"          # the lab answers as PVE 9 by default
        config = api.get("nodes/pve1/lxc/2017/config", "read the config", current=1)
        api.put("nodes/pve1/lxc/2017/config", "set swap", digest=config["digest"], swap=512)
        assert "swap: 512\n" in lab.lab.config_path(2017).read_text()
        lab.lab.add_ct(2017, memory=1024)
    # A password login's ticket and CSRF token are secrets of the module from then on.
    assert any(value.startswith("PVE:root@pam:") for value in module.no_log_values)


def test_client_error_carries_status_reason_errors(lab):
    lab.lab.add_ct(2017)
    api = pve_client.connect(make_module(lab.connection()))
    with pytest.raises(pve_client.PveApiError) as caught:
        api.put("nodes/pve1/lxc/2017/config", "set memory of CT 2017", privilege="VM.Config.Memory", memory=8)
    error = caught.value
    assert (error.kind, error.status, error.reason) == ("parameter", 400, "Parameter verification failed.")
    assert error.errors == {"memory": "value must have a minimum value of 16"}
    assert str(error) == ("Cannot set memory of CT 2017: PVE refused the parameters (400 Parameter verification"
                          " failed. - memory: value must have a minimum value of 16).")


def test_login_failure_is_fail_json(lab):
    with pytest.raises(FailJson) as caught:
        pve_client.connect(make_module(lab.connection(token=None, api_password="wrong")))
    assert caught.value.args[0]["msg"].startswith("Cannot log in to the PVE API at https://127.0.0.1:%d" % lab.port)


def test_missing_requests_library(monkeypatch, lab):
    monkeypatch.setattr(pve_client, "REQUESTS_IMPORT_ERROR", "Traceback: No module named 'requests'")
    with pytest.raises(FailJson) as caught:
        pve_client.connect(make_module(lab.connection()))
    assert "Failed to import the required Python library (requests)" in caught.value.args[0]["msg"]
