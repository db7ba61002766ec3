"""pve_client: the shared argument spec and the error translation table (the client against the PVE API lab
server: tests/integration/plugins/module_utils/test_pve_client_lab.py)."""

from __future__ import annotations

import pytest
import requests
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from proxmoxer.core import AuthenticationError, ResourceException

from ansible_collections.enva.pve.plugins.module_utils import pve_client
from support import module_harness as harness

TOKEN = pve_client.Connection("pve1.example.org", 8006, "enva@pve", token_id="ansible", api_timeout=5,
                              ca_path="/etc/ssl/pve-root-ca.pem")
PASSWORD = pve_client.Connection("pve1.example.org", 8006, "root@pam")
URL = "https://pve1.example.org:8006/api2/json"


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def module_fails(monkeypatch):
    def fail_json(self, **kwargs):
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    harness.clear_proxmox_env(monkeypatch)


def resource(status, reason, errors=None):
    return ResourceException(status, "x", reason, errors=errors)


@pytest.mark.parametrize("reason, expected", [
    ("Permission check failed (/vms/2017, VM.Config.Memory)", ("/vms/2017", ["VM.Config.Memory"])),
    ("Permission check failed (/vms/2017, VM.Config.Disk|VM.Config.CPU|VM.Config.Memory)",
     ("/vms/2017", ["VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory"])),
    ("Permission check failed (/nodes/pve1, Sys.Audit)\n", ("/nodes/pve1", ["Sys.Audit"])),
    ("Permission check failed", None),
    ("Permission check failed (user != root@pam)", None),
    ("", None),
])
def test_parse_permission_failure(reason, expected):
    assert pve_client.parse_permission_failure(reason) == expected


@pytest.mark.parametrize("exc, conn, kind, expected", [
    (resource(401, "invalid token value!"), TOKEN, "auth",
     "Cannot set memory of CT 2017: the PVE API at %s refused API token enva@pve!ansible (401 invalid token value!)."
     " Check api_user, api_token_id and api_token_secret (PROXMOX_USER, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET)." % URL),
    (resource(401, "No ticket"), PASSWORD, "auth",
     "Cannot set memory of CT 2017: the PVE API at %s refused user root@pam (401 No ticket). Check api_user and"
     " api_password (PROXMOX_USER, PROXMOX_PASSWORD)." % URL),
    (resource(403, "Permission check failed (/vms/2017, VM.Config.Memory)"), PASSWORD, "permission",
     "Cannot set memory of CT 2017: user root@pam lacks VM.Config.Memory on /vms/2017"
     " (PVE: 403 Permission check failed (/vms/2017, VM.Config.Memory))."),
    (resource(403, "Permission check failed (/vms/2017, VM.Config.Disk|VM.Config.Memory)"), TOKEN, "permission",
     "Cannot set memory of CT 2017: API token enva@pve!ansible lacks VM.Config.Memory on /vms/2017 (PVE: 403"
     " Permission check failed (/vms/2017, VM.Config.Disk|VM.Config.Memory)). A privilege-separated token needs it"
     " granted to the token as well as to its user (pveum acl modify /vms/2017 --tokens 'enva@pve!ansible'"
     " --roles ROLE)."),
    (resource(400, "Parameter verification failed.", {"memory": "value must have a minimum value of 16\n"}),
     TOKEN, "parameter",
     "Cannot set memory of CT 2017: PVE refused the parameters (400 Parameter verification failed. - memory: value"
     " must have a minimum value of 16)."),
    (resource(500, "Configuration file 'nodes/pve1/lxc/9999.conf' does not exist"), TOKEN, "not_found",
     "Cannot set memory of CT 2017: it does not exist there (PVE: 500 Configuration file"
     " 'nodes/pve1/lxc/9999.conf' does not exist)."),
    (resource(500, "detected modified configuration - file changed by other user? Try again."), TOKEN, "conflict",
     "Cannot set memory of CT 2017: the configuration was changed by someone else since it was read, so PVE"
     " refused the write (digest mismatch; PVE: 500 detected modified configuration - file changed by other user?"
     " Try again.). Nothing was changed: run the task again to start from the new configuration."),
    (resource(500, "hostname lookup 'pve9' failed - failed to get address info for: pve9: Name or service not known"),
     TOKEN, "unknown_node",
     "Cannot set memory of CT 2017: that node is not a node of this cluster (PVE: 500 hostname lookup 'pve9' failed"
     " - failed to get address info for: pve9: Name or service not known)."),
    (resource(500, "CT is locked (backup)"), TOKEN, "api",
     "Cannot set memory of CT 2017: PVE answered 500 CT is locked (backup)."),
    (AuthenticationError("Couldn't authenticate user: root@pam to %s/access/ticket code: 401" % URL), PASSWORD, "auth",
     "Cannot log in to the PVE API at %s as root@pam (HTTP 401). Check api_user and api_password"
     " (PROXMOX_USER, PROXMOX_PASSWORD)." % URL),
    (requests.exceptions.SSLError(
        "HTTPSConnectionPool(host='pve1.example.org', port=8006): Max retries exceeded with url: /api2/json/version"
        " (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
        " failed: self-signed certificate in certificate chain (_ssl.c:992)')))"), TOKEN, "tls",
     "Cannot set memory of CT 2017: TLS verification of %s failed (self-signed certificate in certificate chain),"
     " checked against the CA in ca_path=/etc/ssl/pve-root-ca.pem. Set ca_path to the PEM file of the CA that"
     " signed the PVE certificate (on a PVE node: /etc/pve/pve-root-ca.pem), or, only on a network you trust,"
     " validate_certs: false." % URL),
    (requests.exceptions.SSLError(
        "Caused by SSLError(SSLCertVerificationError(1, \"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed:"
        " Hostname mismatch, certificate is not valid for 'pve1.example.org'. (_ssl.c:992)\"))"), PASSWORD, "tls",
     "Cannot set memory of CT 2017: TLS verification of %s failed (certificate is not valid for 'pve1.example.org'),"
     " checked against the system's CA bundle (no ca_path given)." % URL),
    (requests.exceptions.ReadTimeout("HTTPSConnectionPool(host='pve1.example.org', port=8006): Read timed out."),
     TOKEN, "timeout",
     "Cannot set memory of CT 2017: no answer from the PVE API at %s within api_timeout=5 s. Check"
     " api_host=pve1.example.org and api_port=8006, or raise api_timeout (PROXMOX_API_TIMEOUT)." % URL),
    (requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='pve1.example.org', port=8006): Max retries exceeded (Caused by"
        " NameResolutionError(\"Failed to resolve 'pve1.example.org' ([Errno -2] Name or service not known)\"))"),
     TOKEN, "connection",
     "Cannot set memory of CT 2017: cannot connect to the PVE API at %s (the name pve1.example.org does not"
     " resolve). Check api_host and api_port." % URL),
    (requests.exceptions.ConnectionError("Connection aborted: timed out"), TOKEN, "timeout",
     "Cannot set memory of CT 2017: no answer from the PVE API at %s within api_timeout=5 s." % URL),
    (ValueError("something else"), TOKEN, "error", "Cannot set memory of CT 2017: ValueError: something else"),
])
def test_describe_failure(exc, conn, kind, expected):
    got_kind, message = pve_client.describe_failure(exc, "set memory of CT 2017", conn, privilege="VM.Config.Memory")
    assert got_kind == kind
    assert message.startswith(expected)


def test_ipv6_host_in_url():
    assert pve_client.Connection("fd00::2", 8006, "root@pam").url == "https://[fd00::2]:8006/api2/json"


def make_module(args, spec=None, **kwargs):
    with patch_module_args(args):
        return pve_client.pve_module(spec or {}, **kwargs)


def test_spec_defaults_and_check_mode():
    module = make_module({"api_host": "pve1", "api_user": "enva@pve", "api_token_id": "ansible",
                          "api_token_secret": "s3cret"}, {"extra": {"type": "int", "default": 3}})
    assert module.check_mode is False and module.supports_check_mode is True
    assert (module.params["api_port"], module.params["validate_certs"], module.params["api_timeout"]) == (8006, True, 5)
    assert module.params["extra"] == 3
    assert "s3cret" in module.no_log_values


def test_env_fallbacks_as_community_proxmox_names_them(monkeypatch):
    env = {"PROXMOX_HOST": "pve2", "PROXMOX_PORT": "8443", "PROXMOX_USER": "root@pam", "PROXMOX_PASSWORD": "pw",
           "PROXMOX_CA_PATH": "/etc/ca.pem", "PROXMOX_VALIDATE_CERTS": "false", "PROXMOX_API_TIMEOUT": "30"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    params = make_module({}).params
    assert (params["api_host"], params["api_port"], params["api_user"], params["api_password"]) == (
        "pve2", 8443, "root@pam", "pw")
    assert (params["ca_path"], params["validate_certs"], params["api_timeout"]) == ("/etc/ca.pem", False, 30)


@pytest.mark.parametrize("args, expected", [
    ({"api_host": "pve1", "api_user": "u@pve"}, "one of the following is required: api_password, api_token_id"),
    ({"api_host": "pve1", "api_user": "u@pve", "api_token_id": "t"},
     "parameters are required together: api_token_id, api_token_secret"),
    ({"api_user": "u@pve", "api_password": "p"}, "missing required arguments: api_host"),
])
def test_spec_rules(args, expected):
    with pytest.raises(FailJson) as caught:
        make_module(args)
    assert expected in caught.value.args[0]["msg"]
