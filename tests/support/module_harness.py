"""What the module tests share: exit_json/fail_json that raise with the result, main() run up to that raise,
and an environment without PROXMOX_* variables. Each test file keeps its own autouse fixture for what only
it patches (the journald socket, warnings, ...)."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

PROXMOX_ENV = ("PROXMOX_HOST", "PROXMOX_PORT", "PROXMOX_USER", "PROXMOX_PASSWORD", "PROXMOX_TOKEN_ID",
               "PROXMOX_TOKEN_SECRET", "PROXMOX_CA_PATH", "PROXMOX_VALIDATE_CERTS", "PROXMOX_API_TIMEOUT")


class ExitJson(Exception):
    """exit_json was called; args[0] is the result."""


class FailJson(Exception):
    """fail_json was called; args[0] is the result."""


def raise_on_exit(monkeypatch, hide_no_log=False, cleanup_files=False, warnings=None):
    """Make AnsibleModule.exit_json/fail_json raise ExitJson/FailJson with the result.

    hide_no_log: mask no_log values as Ansible does before it prints a result.
    cleanup_files: remove the module's temporary files first, as exit_json/fail_json do.
    warnings: a list that collects module.warn() messages; exit_json results carry it as ``warnings``.
    """
    def finish(module, result):
        if cleanup_files:
            module.do_cleanup_files()
        if hide_no_log:
            result = basic.remove_values(result, module.no_log_values)
        return result

    def exit_json(self, **kwargs):
        result = finish(self, kwargs)
        raise ExitJson(result if warnings is None else dict(result, warnings=warnings))

    def fail_json(self, **kwargs):
        raise FailJson(finish(self, kwargs))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    if warnings is not None:
        monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, warning: warnings.append(warning))


def clear_proxmox_env(monkeypatch):
    """No PROXMOX_* fallback from the environment running the tests."""
    for name in PROXMOX_ENV:
        monkeypatch.delenv(name, raising=False)


def run_main(module, args):
    """module.main() with these arguments: (ExitJson or FailJson, the result)."""
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as caught:
            module.main()
    return caught.type, caught.value.args[0]


def api_ok(module, server, connection=None, **args):
    """The result of a run against the PVE API lab server that must succeed."""
    kind, result = run_main(module, dict(connection or server.connection(), **args))
    assert kind is ExitJson, result
    return result


def api_failed(module, server, connection=None, **args):
    """The message of a run against the PVE API lab server that must fail."""
    kind, result = run_main(module, dict(connection or server.connection(), **args))
    assert kind is FailJson, result
    return result["msg"]


class ApiModule:
    """A PVE API module's main() against the PVE API lab server: ``run(args)``, ``ok(server, **args)`` (must
    succeed: the result) and ``failed(server, **args)`` (must fail: the message)."""

    def __init__(self, module):
        self.module = module

    def run(self, args):
        return run_main(self.module, args)

    def ok(self, server, connection=None, **args):
        return api_ok(self.module, server, connection, **args)

    def failed(self, server, connection=None, **args):
        return api_failed(self.module, server, connection, **args)
