"""The PVE API lab server (tests/lab/enva_lab/api_lab) over real HTTPS: its answers as PVE gives them."""

from __future__ import annotations

import ssl
import stat

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from support.net import poll
from support.pve_lab import FakeLab, LabServer, call

# --- HTTP, as PVE answers -----------------------------------------------------------------------------------


def test_error_answers_have_pves_status_lines_and_bodies(lab):
    lab.lab.add_ct(2017)
    assert call(lab, "GET", "/version", token=None) == (401, "No ticket", {"data": None, "message": "No ticket\n"})
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", params={"memory": "8"}) == (
        400, "Parameter verification failed.",
        {"data": None, "message": "Parameter verification failed.\n",
         "errors": {"memory": "value must have a minimum value of 16"}})
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", token="readonly", params={"memory": "2048"})[:2] == (
        403, "Permission check failed (/vms/2017, VM.Config.Disk|VM.Config.CPU|VM.Config.Memory|VM.Config.Network"
             "|VM.Config.Options)")
    # The token may change memory, not the hostname: PVE checks each key.
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", params={"hostname": "x"})[:2] == (
        403, "Permission check failed (/vms/2017, VM.Config.Network)")
    assert call(lab, "GET", "/nodes/pve1/lxc/9999/status/current")[:2] == (
        500, "Configuration file 'nodes/pve1/lxc/9999.conf' does not exist")
    assert call(lab, "GET", "/nodes/pve1/qemu")[:2] == (501, "Method 'GET /nodes/pve1/qemu' not implemented")
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", params={"digest": "0" * 40, "memory": "2048"})[:2] == (
        500, "detected modified configuration - file changed by other user? Try again.")


def test_ticket_cookie_and_csrf_for_writes(lab):
    lab.lab.add_ct(2017, memory=1024)
    status, _reason, body = call(lab, "POST", "/access/ticket", token=None,
                                 params={"username": "root@pam", "password": lab.root_password})
    assert status == 200 and body["data"]["username"] == "root@pam"
    cookie = {"Cookie": "PVEAuthCookie=%s" % body["data"]["ticket"]}
    assert call(lab, "GET", "/nodes/pve1/lxc/2017/config", token=None, headers=cookie)[2]["data"]["memory"] == 1024
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", token=None, headers=cookie, params={"memory": "2048"})[:2] == (
        401, "Permission denied - invalid csrf token")
    csrf = dict(cookie, CSRFPreventionToken=body["data"]["CSRFPreventionToken"])
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", token=None, headers=csrf, params={"memory": "2048"})[0] == 200
    assert lab.lab.limit_mib(2017) == 2048
    assert call(lab, "POST", "/access/ticket", token=None, params={"username": "root@pam", "password": "x"})[:2] == (
        401, "authentication failure")
    log = lab.log_path.read_text()
    assert lab.root_password not in log and body["data"]["ticket"] not in log


def test_non_hotpluggable_keys_wait_in_pending(lab):
    conf = lab.lab.add_ct(2017)
    ticket = call(lab, "POST", "/access/ticket", token=None,
                  params={"username": "root@pam", "password": lab.root_password})[2]["data"]
    headers = {"Cookie": "PVEAuthCookie=%s" % ticket["ticket"], "CSRFPreventionToken": ticket["CSRFPreventionToken"]}
    assert call(lab, "PUT", "/nodes/pve1/lxc/2017/config", token=None, headers=headers,
                params={"arch": "i386", "onboot": "0"})[0] == 200
    assert "[pending]\narch: i386\n" in conf.read_text() and "onboot: 0\n" in conf.read_text()
    assert call(lab, "GET", "/nodes/pve1/lxc/2017/config")[2]["data"]["arch"] == "i386"
    assert call(lab, "GET", "/nodes/pve1/lxc/2017/config", params={"current": "1"})[2]["data"]["arch"] == "amd64"
    pending = call(lab, "GET", "/nodes/pve1/lxc/2017/pending")[2]["data"]
    assert {"key": "arch", "value": "amd64", "pending": "i386"} in pending


def test_status_current_reads_the_cgroup(lab):
    lab.lab.add_ct(2017, memory=1024, swap=512, used_mib=300)
    data = call(lab, "GET", "/nodes/pve1/lxc/2017/status/current")[2]["data"]
    assert (data["status"], data["maxmem"], data["maxswap"], data["mem"]) == ("running", 1024 * MIB, 512 * MIB, 300 * MIB)
    init_scope = lab.lab.cgroup_dir(2017) / "ns" / "init.scope"
    init_scope.mkdir(parents=True)
    (init_scope / "cgroup.procs").write_text("4242\n")
    (lab.lab.cgroup_dir(2017) / "ns" / "cgroup.procs").write_text("5000\n5001\n")
    assert call(lab, "GET", "/nodes/pve1/lxc/2017/status/current")[2]["data"]["pid"] == 4242
    (lab.lab.cgroup_dir(2017) / "memory.limit_in_bytes").write_text("%d\n" % (777 * MIB))
    assert call(lab, "GET", "/nodes/pve1/lxc/2017/status/current")[2]["data"]["maxmem"] == 777 * MIB
    lab.lab.add_ct(2018, memory=256, running=False)
    data = call(lab, "GET", "/nodes/pve1/lxc/2018/status/current")[2]["data"]
    assert (data["status"], data["maxmem"], data["mem"]) == ("stopped", 256 * MIB, 0)


def test_resources_lists_and_filters(lab):
    lab.lab.add_ct(2017, hostname="haproxy")
    lab.lab.add_ct(101, running=False)
    data = call(lab, "GET", "/cluster/resources")[2]["data"]
    assert [item["id"] for item in data] == ["node/pve1", "lxc/101", "lxc/2017"]
    assert data[2]["name"] == "haproxy" and data[2]["status"] == "running" and data[1]["status"] == "stopped"
    assert [item["id"] for item in call(lab, "GET", "/cluster/resources", params={"type": "vm"})[2]["data"]] == [
        "lxc/101", "lxc/2017"]
    assert [item["vmid"] for item in call(lab, "GET", "/nodes/pve1/lxc")[2]["data"]] == [101, 2017]


def test_rrddata_has_samples(lab):
    lab.lab.add_ct(2017, used_mib=300)
    assert poll(lambda: any("mem" in point for point in call(
        lab, "GET", "/nodes/pve1/lxc/2017/rrddata", params={"timeframe": "hour"})[2]["data"]))
    points = call(lab, "GET", "/nodes/pve1/lxc/2017/rrddata", params={"timeframe": "hour", "cf": "MAX"})[2]["data"]
    assert len(points) == 70
    assert max(point.get("mem", 0) for point in points) == 300 * MIB


def test_start_and_stop_are_tasks_running_labctl(lab):
    lab.lab.add_ct(2017, running=False)
    ticket = call(lab, "POST", "/access/ticket", token=None,
                  params={"username": "root@pam", "password": lab.root_password})[2]["data"]
    headers = {"Cookie": "PVEAuthCookie=%s" % ticket["ticket"], "CSRFPreventionToken": ticket["CSRFPreventionToken"]}
    status, _reason, body = call(lab, "POST", "/nodes/pve1/lxc/2017/status/start", token=None, headers=headers)
    upid = body["data"]
    assert status == 200 and upid.startswith("UPID:pve1:") and ":vzstart:2017:root@pam:" in upid

    def finished():
        task = call(lab, "GET", "/nodes/pve1/tasks/%s/status" % upid.replace(":", "%3A"))[2]["data"]
        return task if task["status"] == "stopped" else None

    task = poll(finished)
    assert task["exitstatus"] == "OK" and lab.lab.cgroup_dir(2017).is_dir()
    assert call(lab, "POST", "/nodes/pve1/lxc/2017/status/start", token=None, headers=headers)[:2] == (
        500, "CT 2017 already running")
    # The ansible token has no VM.PowerMgmt.
    assert call(lab, "POST", "/nodes/pve1/lxc/2017/status/stop")[:2] == (
        403, "Permission check failed (/vms/2017, VM.PowerMgmt)")


def test_files_it_makes_are_private(lab):
    labdir = lab.lab.labdir
    for path in ("api/credentials.json", "api/authkey", "pki/pve-ssl.key", "pki/pve-root-ca.key"):
        assert stat.S_IMODE((labdir / path).stat().st_mode) == 0o600, path
    cert = ssl._ssl._test_decode_cert(str(labdir / "pki" / "pve-ssl.pem"))  # pylint: disable=protected-access
    assert ("IP Address", "127.0.0.1") in cert["subjectAltName"] and ("DNS", "localhost") in cert["subjectAltName"]


def test_synthetic_cluster_of_1000_cts_in_one_call(tmp_path):
    server = LabServer(FakeLab(tmp_path).make(), "--synthetic-cts", "1000", "--nodes", "3")
    try:
        data = call(server, "GET", "/cluster/resources")[2]["data"]
    finally:
        server.stop()
    cts = [item for item in data if item["type"] == "lxc"]
    nodes = sorted(item["node"] for item in data if item["type"] == "node")
    assert len(cts) == 1000 and nodes == ["pve1", "pve2", "pve3"]
    assert {item["node"] for item in cts} == {"pve1", "pve2", "pve3"}
    assert sum(item["status"] == "running" for item in cts) == 900
    running = next(item for item in cts if item["status"] == "running")
    assert 0 < running["mem"] < running["maxmem"]
    assert (tmp_path / "labdir" / "synthetic" / "nodes" / "pve2" / "cgroup" / "lxc").is_dir()
