"""lxc_memory: main() end to end against the PVE API lab server over real HTTPS (fake lab tree, random port).

Only what the server cannot produce (an API that never answers, a closed port, a missing library) is made
otherwise: a silent loopback listener, a released port, a patched import flag.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.enva.pve.plugins.module_utils import pve_client
from ansible_collections.enva.pve.plugins.modules import lxc_memory

from support import module_harness as harness
from support.module_harness import ExitJson


pytestmark = pytest.mark.usefixtures("api_exits")
MODULE = harness.ApiModule(lxc_memory)
run_main = MODULE.run
ok = MODULE.ok
failed = MODULE.failed


def test_raise_1024_to_2048_live_then_unchanged(lab):
    conf = lab.lab.add_ct(2017, hostname="haproxy", memory=1024, swap=1024)
    result = ok(lab, vmid=2017, node="pve1", memory=2048, _ansible_diff=True)
    assert result["changed"] is True
    assert (result["before"], result["after"], result["changes"]) == (
        {"memory": 1024, "swap": 1024}, {"memory": 2048, "swap": 1024}, {"memory": 2048})
    # The running CT's cgroup has the new limits (memory+swap raised first, as cgroup v1 needs).
    assert lab.lab.limit_mib(2017) == 2048
    assert lab.lab.limit_mib(2017, "memory.memsw.limit_in_bytes") == 3072
    assert "memory: 2048\n" in conf.read_text() and "swap: 1024\n" in conf.read_text()
    assert result["live"] == {"maxmem": 2048, "maxswap": 1024, "mem": 300}
    assert result["status"] == "running" and result["pending"] == {}
    assert result["diff"]["before"] == "memory: 1024\nswap: 1024\n"
    assert result["diff"]["after"] == "memory: 2048\nswap: 1024\n"
    assert "nodes/pve1/lxc/2017.conf" in result["diff"]["before_header"]
    again = ok(lab, vmid=2017, node="pve1", memory="2G")
    assert again["changed"] is False and again["changes"] == {}
    assert again["digest"] == result["digest"]


def test_check_mode_reports_and_writes_nothing(lab):
    conf = lab.lab.add_ct(2017, memory=1024, swap=1024)
    text = conf.read_text()
    result = ok(lab, vmid=2017, memory="1.5G", swap="512M", _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert result["changes"] == {"memory": 1536, "swap": 512}
    assert result["diff"]["after"] == "memory: 1536\nswap: 512\n"
    assert conf.read_text() == text
    assert lab.lab.limit_mib(2017) == 1024 and lab.lab.limit_mib(2017, "memory.memsw.limit_in_bytes") == 2048


def test_found_by_hostname_and_stopped_ct_changes_config_only(lab):
    lab.lab.add_ct(101, hostname="web")
    conf = lab.lab.add_ct(2017, hostname="haproxy", memory=1024, running=False)
    result = ok(lab, hostname="haproxy", memory=4096, swap=0)
    assert (result["vmid"], result["node"], result["status"]) == (2017, "pve1", "stopped")
    assert result["live"] is None and result["changes"] == {"memory": 4096, "swap": 0}
    assert "memory: 4096\n" in conf.read_text() and "swap: 0\n" in conf.read_text()
    assert not lab.lab.cgroup_dir(2017).exists()


def test_lowering_below_usage_is_refused_unless_forced(lab):
    lab.lab.add_ct(2017, memory=1024, swap=0, used_mib=600)
    msg = failed(lab, vmid=2017, node="pve1", memory=512)
    assert msg.startswith("Refusing to lower the memory of CT 2017 on node pve1 to 512 MiB: it uses 600 MiB now")
    assert "force: true" in msg
    assert lab.lab.limit_mib(2017) == 1024
    # Forced: PVE asks the kernel, which cannot reclaim that much and refuses (EBUSY); nothing changes.
    msg = failed(lab, vmid=2017, node="pve1", memory=512, force=True)
    assert "Cannot set memory of CT 2017 on node pve1: PVE refused the parameters (400 Parameter verification" in msg
    assert "memory: unable to hotplug memory: unable to write '%s/memory.limit_in_bytes' - Device or resource busy" % (
        lab.lab.cgroup_dir(2017)) in msg
    assert msg.endswith("the kernel could not reclaim enough (EBUSY); nothing was changed. Free memory in the CT or"
                        " choose a larger size.")
    assert "memory: 1024\n" in lab.lab.config_path(2017).read_text()
    # Lowering to what still fits works without force.
    assert ok(lab, vmid=2017, node="pve1", memory=700)["after"]["memory"] == 700
    assert lab.lab.limit_mib(2017) == 700


def test_read_only_token_names_the_missing_privilege(lab):
    lab.lab.add_ct(2017, memory=1024)
    msg = failed(lab, lab.connection("readonly"), vmid=2017, memory=2048)
    assert msg.startswith("Cannot set memory of CT 2017 on node pve1: API token enva@pve!readonly lacks"
                          " VM.Config.Memory on /vms/2017 (PVE: 403 Permission check failed (/vms/2017,")
    assert "--tokens 'enva@pve!readonly'" in msg
    # Nothing to change is nothing to refuse: the read-only token may read.
    assert ok(lab, lab.connection("readonly"), vmid=2017, memory=1024)["changed"] is False


@pytest.mark.parametrize("connection, expected", [
    ({"api_token_secret": "not-the-secret"},
     "Cannot find CT 2017 in /cluster/resources: the PVE API at https://127.0.0.1:{port}/api2/json refused API token"
     " enva@pve!ansible (401 invalid token value!). Check api_user, api_token_id and api_token_secret"),
    ({"api_token_id": "nosuch"},
     "refused API token enva@pve!nosuch (401 no such token 'nosuch' for user 'enva@pve')"),
])
def test_bad_token_is_a_401_message(lab, connection, expected):
    lab.lab.add_ct(2017)
    msg = failed(lab, dict(lab.connection(), **connection), vmid=2017, memory=2048)
    assert expected.format(port=lab.port) in msg
    assert "not-the-secret" not in msg


def test_password_login_ticket_and_csrf_write(lab):
    lab.lab.add_ct(2017, memory=1024)
    result = ok(lab, lab.connection(token=None), vmid=2017, memory=1536)
    assert result["changed"] is True and lab.lab.limit_mib(2017) == 1536
    msg = failed(lab, lab.connection(token=None, api_password="wrong"), vmid=2017, memory=2048)
    assert msg == ("Cannot log in to the PVE API at https://127.0.0.1:%d/api2/json as root@pam (HTTP 401)."
                   " Check api_user and api_password (PROXMOX_USER, PROXMOX_PASSWORD)." % lab.port)


def test_secrets_never_in_the_result(lab):
    lab.lab.add_ct(2017)
    kind, result = run_main(dict(lab.connection(token=None), vmid=2017, memory=2048, _ansible_diff=True))
    assert kind is ExitJson
    text = json.dumps(result)
    assert lab.root_password not in text and "PVE:root@pam" not in text
    log = lab.log_path.read_text()
    assert lab.root_password not in log and lab.token("ansible") not in log and "PVE:root@pam" not in log
    assert '"PUT /api2/json/nodes/pve1/lxc/2017/config" 200' in log


def test_unknown_vmid_and_node(lab):
    lab.lab.add_ct(2017)
    assert failed(lab, vmid=9999, node="pve1", memory=2048) == (
        "Cannot read the config of CT 9999 on node pve1: it does not exist there"
        " (PVE: 500 Configuration file 'nodes/pve1/lxc/9999.conf' does not exist).")
    assert failed(lab, vmid=9999, memory=2048).startswith(
        "CT 9999 does not exist in this cluster: /cluster/resources does not list it")
    assert failed(lab, vmid=2017, node="pve9", memory=2048) == (
        "Cannot read the config of CT 2017 on node pve9: that node is not a node of this cluster (PVE: 500"
        " hostname lookup 'pve9' failed - failed to get address info for: pve9: Name or service not known).")
    assert failed(lab, hostname="nosuch", memory=2048) == (
        "No CT is named nosuch in /cluster/resources (CTs visible to this API user: ct2017)")
    assert failed(lab, hostname="ct2017", node="pve2", memory=2048) == "CT 2017 (ct2017) is on node pve1, not on node pve2"


def test_two_cts_with_one_name(lab):
    lab.lab.add_ct(101, hostname="web")
    lab.lab.add_ct(102, hostname="web")
    assert failed(lab, hostname="web", memory=2048) == "2 CTs are named web (VMIDs 101, 102): give vmid instead"


@pytest.mark.parametrize("args, expected", [
    ({"memory": 8}, "memory=8 is 8 MiB, below PVE's minimum of 16 MiB for memory"),
    ({"memory": "8M"}, "memory=8M is 8 MiB, below PVE's minimum of 16 MiB for memory"),
    ({"swap": -1}, "swap: -1 is negative"),
    ({"memory": "2 apples"}, "memory: '2 apples' is not a size: give an integer number of MiB"),
    ({"memory": "1536K"}, "memory: '1536K' is not a whole number of MiB (1.5 MiB)"),
])
def test_sizes_refused_before_any_api_call(lab, args, expected):
    lab.lab.add_ct(2017)
    before = lab.log_path.read_text()
    assert expected in failed(lab, vmid=2017, **args)
    assert lab.log_path.read_text() == before


def test_stale_digest_is_refused_by_pve(lab):
    conf = lab.lab.add_ct(2017, memory=1024)
    first = ok(lab, vmid=2017, node="pve1", memory=1024)
    conf.write_text(conf.read_text() + "tags: edited-by-hand\n")
    msg = failed(lab, vmid=2017, node="pve1", memory=2048, digest=first["digest"])
    assert msg.startswith("Cannot set memory of CT 2017 on node pve1: the configuration was changed by someone else"
                          " since it was read, so PVE refused the write (digest mismatch; PVE: 500 detected"
                          " modified configuration - file changed by other user? Try again.).")
    assert "memory: 1024\n" in conf.read_text() and lab.lab.limit_mib(2017) == 1024
    check = failed(lab, vmid=2017, memory=2048, digest=first["digest"], _ansible_check_mode=True)
    assert check.startswith("The config of CT 2017 on node pve1 has digest ")


def test_edit_between_read_and_write_is_a_conflict(lab, monkeypatch):
    """Someone edits the config after the module read it: PVE refuses the PUT, nothing is overwritten."""
    conf = lab.lab.add_ct(2017, memory=1024)
    real_get = pve_client.PveApi.get

    def get_then_edit(self, path, action, privilege=None, **params):
        answer = real_get(self, path, action, privilege, **params)
        if path.endswith("/config") and "description" in answer:
            conf.write_text(conf.read_text().replace("cores: 1", "cores: 2"))
        return answer

    monkeypatch.setattr(pve_client.PveApi, "get", get_then_edit)
    msg = failed(lab, vmid=2017, node="pve1", memory=2048)
    assert "digest mismatch" in msg and "Nothing was changed" in msg
    assert "cores: 2\n" in conf.read_text() and "memory: 1024\n" in conf.read_text()


def test_tls_verification_failure_names_ca_path(lab):
    lab.lab.add_ct(2017)
    msg = failed(lab, lab.connection(ca_path=None), vmid=2017, memory=2048)
    assert msg.startswith("Cannot find CT 2017 in /cluster/resources: TLS verification of https://127.0.0.1:%d/api2/json"
                          " failed (" % lab.port)
    assert "checked against the system's CA bundle (no ca_path given). Set ca_path" in msg
    assert "validate_certs: false" in msg
    # Verification off: the same call goes through (the lab is on loopback).
    assert ok(lab, lab.connection(ca_path=None, validate_certs=False), vmid=2017, memory=1024)["changed"] is False


def test_missing_ca_path_file(lab):
    msg = failed(lab, lab.connection(ca_path="/nonexistent/ca.pem"), vmid=2017, memory=2048)
    assert msg.startswith("ca_path /nonexistent/ca.pem does not exist or is not a file")


def test_timeout_names_api_timeout_and_host(lab, silent_port):
    conn = lab.connection(api_port=silent_port, api_timeout=1)
    msg = failed(lab, conn, vmid=2017, node="pve1", memory=2048)
    assert msg == ("Cannot read the config of CT 2017 on node pve1: no answer from the PVE API at"
                   " https://127.0.0.1:%d/api2/json within api_timeout=1 s. Check api_host=127.0.0.1 and"
                   " api_port=%d, or raise api_timeout (PROXMOX_API_TIMEOUT)." % (silent_port, silent_port))


def test_connection_refused(lab, closed_port):
    msg = failed(lab, lab.connection(api_port=closed_port), vmid=2017, node="pve1", memory=2048)
    assert msg == ("Cannot read the config of CT 2017 on node pve1: cannot connect to the PVE API at"
                   " https://127.0.0.1:%d/api2/json (connection refused: nothing listens on port %d there)."
                   " Check api_host and api_port." % (closed_port, closed_port))


def test_environment_fallbacks(lab, monkeypatch):
    lab.lab.add_ct(2017, memory=1024)
    for key, value in {"PROXMOX_HOST": "127.0.0.1", "PROXMOX_PORT": str(lab.port), "PROXMOX_USER": "enva@pve",
                       "PROXMOX_TOKEN_ID": "ansible", "PROXMOX_TOKEN_SECRET": lab.token("ansible"),
                       "PROXMOX_CA_PATH": lab.ca_path}.items():
        monkeypatch.setenv(key, value)
    kind, result = run_main({"vmid": 2017, "memory": 1024})
    assert kind is ExitJson and result["changed"] is False and result["node"] == "pve1"


def test_missing_proxmoxer_says_so(lab, monkeypatch):
    monkeypatch.setattr(pve_client, "PROXMOXER_IMPORT_ERROR", "Traceback: No module named 'proxmoxer'")
    msg = failed(lab, vmid=2017, memory=2048)
    assert "Failed to import the required Python library (proxmoxer)" in msg


@pytest.mark.parametrize("args, expected", [
    ({"memory": 2048}, "one of the following is required: vmid, hostname"),
    ({"vmid": 2017}, "one of the following is required: memory, swap"),
    ({"vmid": 2017, "hostname": "x", "memory": 2048}, "parameters are mutually exclusive: vmid|hostname"),
])
def test_option_rules(lab, args, expected):
    assert expected in failed(lab, **args)


def test_the_cts_identity_from_its_config(lab):
    lab.lab.add_ct(2017, hostname="haproxy", memory=1024)
    ct = ok(lab, vmid=2017, memory=1024)["ct"]
    assert ct["hostname"] == "haproxy"
    assert [(item["key"], item["name"], item["address"]) for item in ct["interfaces"]] == [("net0", "eth0", "10.217.0.27")]
