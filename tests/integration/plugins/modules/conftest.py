"""Fixtures of the module tests against servers."""

import pytest

from support import module_harness as harness


@pytest.fixture
def api_exits(monkeypatch):
    """exit_json/fail_json raise with the result (no_log values masked, as Ansible prints them), and no
    PROXMOX_* variables from the environment running the tests: for the modules that talk to the PVE API."""
    harness.raise_on_exit(monkeypatch, hide_no_log=True)
    harness.clear_proxmox_env(monkeypatch)
