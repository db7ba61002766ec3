"""The PVE API lab server (tests/lab/pve_api.py): its parts as functions, and its HTTP answers as PVE gives them."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import stat
from urllib.parse import urlencode

import pytest

from ansible_collections.enva.pve.tests.lab import pve_api as lab_api
from ansible_collections.enva.pve.tests.unit.lab.pve_lab_support import (  # noqa: F401  pylint: disable=unused-import
    MIB, FakeLab, LabServer, lab, pve_lab, wait_for)

SCHEMA = lab_api.Schema()
PUT_CONFIG = SCHEMA.paths["/nodes/{node}/lxc/{vmid}/config"]["PUT"]


# --- parameters, as PVE::JSONSchema words them ----------------------------------------------------------

@pytest.mark.parametrize("prop, raw, expected", [
    ({"type": "integer", "minimum": 16}, "8", ("value must have a minimum value of 16", None)),
    ({"type": "integer", "minimum": 16}, "16", (None, 16)),
    ({"type": "integer", "minimum": 100, "maximum": 999999999}, "1000000000",
     ("value must have a maximum value of 999999999", None)),
    ({"type": "integer"}, "2G", ("type check ('integer') failed - got '2G'", None)),
    ({"type": "number"}, "x", ("type check ('number') failed - got 'x'", None)),
    ({"type": "number", "minimum": 0}, "0.5", (None, 0.5)),
    ({"type": "boolean"}, "true", (None, 1)),
    ({"type": "boolean"}, "0", (None, 0)),
    ({"type": "boolean"}, "maybe", ("type check ('boolean') failed - got 'maybe'", None)),
    ({"type": "string", "maxLength": 40}, "a" * 41, ("value may only be 40 characters long", None)),
    ({"type": "string", "pattern": "(?^:[a-zA-Z0-9_; ]+)"}, "nfs;cifs", (None, "nfs;cifs")),
    ({"type": "string", "pattern": "(?^:[a-zA-Z0-9_; ]+)"}, "nfs,cifs", ("value does not match the regex pattern", None)),
    ({"type": "string", "enum": ["hour", "day"]}, "minute",
     ("value 'minute' does not have a value in the enumeration 'hour, day'", None)),
    ({"type": "string", "format": "pve-node"}, "pve 1", ("invalid format - value does not look like a valid node name", None)),
    ({"type": "string", "format": "pve-configid-list"}, "swap,Memory!",
     ("invalid format - invalid configuration ID 'Memory!'", None)),
    ({"type": "string", "format": "pve-configid-list"}, "swap,net0", (None, "swap,net0")),
])
def test_check_value(prop, raw, expected):
    assert lab_api.check_value(prop, raw) == expected


def test_validate_put_config():
    values = SCHEMA.validate(PUT_CONFIG, {"node": "pve1", "vmid": "2017", "memory": "2048", "net0": "name=eth0"})
    assert values == {"node": "pve1", "vmid": 2017, "memory": 2048, "net0": "name=eth0"}
    with pytest.raises(lab_api.ApiError) as caught:
        SCHEMA.validate(PUT_CONFIG, {"vmid": "99", "memory": "8", "bogus": "1", "digest": "d" * 41})
    error = caught.value
    assert (error.status, error.message) == (400, "Parameter verification failed.")
    assert error.errors == {
        "node": "property is missing and it is not optional",
        "vmid": "value must have a minimum value of 100",
        "memory": "value must have a minimum value of 16",
        "bogus": "property is not defined in schema and the schema does not allow additional properties",
        "digest": "value may only be 40 characters long",
    }


@pytest.mark.parametrize("path, expected", [
    ("/version", ("/version", {})),
    ("/nodes/pve1/lxc/2017/config", ("/nodes/{node}/lxc/{vmid}/config", {"node": "pve1", "vmid": "2017"})),
    ("/nodes/pve1/tasks/UPID%3Apve1%3A/status", ("/nodes/{node}/tasks/{upid}/status", {"node": "pve1", "upid": "UPID:pve1:"})),
    ("/nodes/pve1/qemu/100/config", None),
])
def test_route(path, expected):
    assert SCHEMA.route(path) == expected


# --- config files -----------------------------------------------------------------------------------------

CONF = """#the haproxy CT
#second line
arch: amd64
hostname: haproxy
memory: 1024
swap: 1024
lxc.cgroup.dir.container: lxc/2017

[pending]
cores: 2
delete: tags

[before-upgrade]
memory: 512
"""


def test_ct_config_parts_and_digest():
    config = lab_api.CtConfig(CONF)
    assert config.digest == hashlib.sha1(CONF.encode()).hexdigest()
    assert config.current == {"arch": "amd64", "hostname": "haproxy", "memory": "1024", "swap": "1024",
                              "lxc.cgroup.dir.container": "lxc/2017"}
    assert config.description == "the haproxy CT\nsecond line"
    assert (config.pending, config.pending_delete) == ({"cores": "2"}, ["tags"])
    assert config.value("memory") == 1024
    assert lab_api.CtConfig("arch: amd64\n").value("swap") == 512
    assert config.merged()["cores"] == "2" and "cores" not in config.merged(with_pending=False)


@pytest.mark.parametrize("updates, deletions, pending, pending_delete, expected", [
    ({"memory": "2048"}, (), {"cores": "2"}, ["tags"],
     CONF.replace("memory: 1024", "memory: 2048")),
    ({"memory": "2048", "onboot": "1"}, ("swap",), None, (),
     "#the haproxy CT\n#second line\narch: amd64\nhostname: haproxy\nmemory: 2048\n"
     "lxc.cgroup.dir.container: lxc/2017\nonboot: 1\n\n[before-upgrade]\nmemory: 512\n"),
    ({}, (), {"arch": "i386", "cores": "2"}, (),
     CONF.replace("cores: 2\ndelete: tags", "arch: i386\ncores: 2")),
])
def test_edit_config_text(updates, deletions, pending, pending_delete, expected):
    assert lab_api.edit_config_text(CONF, updates, deletions, pending, pending_delete) == expected


def test_write_atomically_keeps_mode(tmp_path):
    path = tmp_path / "2017.conf"
    path.write_text("memory: 1\n")
    path.chmod(0o640)
    lab_api.write_atomically(path, "memory: 2\n")
    assert path.read_text() == "memory: 2\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["2017.conf"]


# --- access ------------------------------------------------------------------------------------------------

CREDENTIALS = lab_api.default_credentials("/ca.pem", "pve1")


@pytest.fixture
def access():
    return lab_api.Access(CREDENTIALS, "0" * 64)


def test_privilege_separation(access):
    assert access.privileges("enva@pve!ansible", "/vms/2017") == {"VM.Audit", "VM.Config.Memory", "Sys.Audit"}
    assert access.privileges("enva@pve!readonly", "/vms/2017") == {"VM.Audit", "Sys.Audit"}
    assert "VM.PowerMgmt" in access.privileges("root@pam", "/vms/2017")
    # A token has only what its user also has: take the role away from the user, the token loses it too.
    credentials = json.loads(json.dumps(CREDENTIALS))
    credentials["acl"][0]["users"] = []
    assert lab_api.Access(credentials, "0" * 64).privileges("enva@pve!ansible", "/vms/2017") == set()
    credentials["tokens"]["enva@pve!ansible"]["privsep"] = False
    assert lab_api.Access(credentials, "0" * 64).privileges("enva@pve!ansible", "/vms/2017") == set()


def test_permission_messages(access):
    with pytest.raises(lab_api.ApiError) as caught:
        access.check("enva@pve!readonly", "/vms/2017", ["VM.Config.Memory"])
    assert (caught.value.status, caught.value.message) == (403, "Permission check failed (/vms/2017, VM.Config.Memory)")
    with pytest.raises(lab_api.ApiError) as caught:
        access.check("enva@pve!readonly", "/vms/2017", ["VM.Config.Disk", "VM.Config.Memory"], any_of=True)
    assert caught.value.message == "Permission check failed (/vms/2017, VM.Config.Disk|VM.Config.Memory)"
    assert access.check("enva@pve!ansible", "/vms/2017", ["VM.Config.Disk", "VM.Config.Memory"], any_of=True)


def test_tickets_and_csrf(access):
    password = CREDENTIALS["users"]["root@pam"]["password"]
    ticket, csrf = access.create_ticket("root@pam", password)
    assert access.verify_ticket(ticket) == "root@pam"
    access.verify_csrf("root@pam", csrf)
    assert access.create_ticket("root@pam", ticket)[0].startswith("PVE:root@pam:")      # renewal
    for bad in (ticket[:-2] + "xx", "PVE:root@pam:00000001::sig", ""):
        with pytest.raises(lab_api.ApiError, match="permission denied - invalid PVE ticket"):
            access.verify_ticket(bad)
    with pytest.raises(lab_api.ApiError, match="Permission denied - invalid csrf token"):
        access.verify_csrf("enva@pve", csrf)
    for user, secret in (("root@pam", "wrong"), ("enva@pve", ""), ("nobody@pam", "x")):
        with pytest.raises(lab_api.ApiError, match="^authentication failure$"):
            access.create_ticket(user, secret)


@pytest.mark.parametrize("value, message", [
    ("enva@pve!ansible", "no tokenid specified"),
    ("enva!ansible=x", "'enva!ansible' is not a valid token ID - not able to split into user and token parts"),
    ("ghost@pve!ansible=x", "no such user ('ghost@pve')"),
    ("enva@pve!nosuch=x", "no such token 'nosuch' for user 'enva@pve'"),
    ("enva@pve!ansible=wrong", "invalid token value!"),
])
def test_token_refusals(access, value, message):
    with pytest.raises(lab_api.ApiError) as caught:
        access.verify_token(value)
    assert (caught.value.status, caught.value.message) == (401, message)


def test_token_accepted(access):
    secret = CREDENTIALS["tokens"]["enva@pve!ansible"]["secret"]
    assert access.verify_token("enva@pve!ansible=%s" % secret) == "enva@pve!ansible"


# --- cgroups -------------------------------------------------------------------------------------------------

@pytest.fixture
def v1(tmp_path):
    fake = FakeLab(tmp_path).make()
    fake.add_ct(2017, memory=1024, swap=0, used_mib=600)
    return fake


def test_v1_raise_and_lower_in_the_kernels_order(v1):
    cgroup = lab_api.CtCgroup(v1.cgroup, 2017)
    assert (cgroup.version, cgroup.running) == ("v1", True)
    cgroup.set_limits(2048, 1024, mounts=[])           # memsw first, else the memory limit would exceed it
    assert (v1.limit_mib(2017), v1.limit_mib(2017, "memory.memsw.limit_in_bytes")) == (2048, 3072)
    cgroup.set_limits(700, 0, mounts=[])               # memory first, else memsw would drop below it
    assert (v1.limit_mib(2017), v1.limit_mib(2017, "memory.memsw.limit_in_bytes")) == (700, 700)


def test_v1_below_usage_is_ebusy_and_nothing_half_done(v1):
    cgroup = lab_api.CtCgroup(v1.cgroup, 2017)
    with pytest.raises(lab_api.CgroupWriteError) as caught:
        cgroup.set_limits(512, 2048, mounts=[])        # memsw grows first, then the memory limit is refused
    assert str(caught.value) == "unable to write '%s/memory.limit_in_bytes' - Device or resource busy" % (
        v1.cgroup_dir(2017))
    assert (v1.limit_mib(2017), v1.limit_mib(2017, "memory.memsw.limit_in_bytes")) == (1024, 1024)


def test_v2_writes_max_high_and_swap(tmp_path):
    root = tmp_path / "cgroup"
    directory = root / "lxc" / "2017"
    directory.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    for name in ("memory.max", "memory.high", "memory.swap.max", "memory.current"):
        (directory / name).write_text("max\n")
    cgroup = lab_api.CtCgroup(root, 2017)
    cgroup.set_limits(2048, 512, mounts=[])
    assert (directory / "memory.max").read_text() == "%d\n" % (2048 * MIB)
    assert (directory / "memory.high").read_text() == "%d\n" % (2048 * 1024 * 1016)
    assert (directory / "memory.swap.max").read_text() == "%d\n" % (512 * MIB)
    cgroup.set_limits(32768, 0, mounts=[])
    assert (directory / "memory.high").read_text() == "%d\n" % ((32768 - 128) * MIB)


def test_cgroup_mounts(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n")
    assert lab_api.cgroup_mounts(str(mountinfo)) == ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"]


# --- HTTP, as PVE answers -----------------------------------------------------------------------------------

def call(server, method, path, token="ansible", headers=None, params=None):
    context = ssl.create_default_context(cafile=server.ca_path)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = "PVEAPIToken=enva@pve!%s=%s" % (token, server.token(token))
    body = None
    if params and method in ("POST", "PUT"):
        body = urlencode(params)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif params:
        path += "?" + urlencode(params)
    try:
        conn.request(method, "/api2/json" + path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.reason, json.loads(response.read() or b"null")
    finally:
        conn.close()


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
    assert wait_for(lambda: any("mem" in point for point in call(
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

    task = wait_for(finished)
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


def test_synthetic_tree_is_made_once_per_size(tmp_path):
    lab_api.make_synthetic(tmp_path, 20, 2)
    stamp = (tmp_path / "nodes" / "pve1" / "lxc" / "10000.conf").stat().st_mtime_ns
    lab_api.make_synthetic(tmp_path, 20, 2)
    assert (tmp_path / "nodes" / "pve1" / "lxc" / "10000.conf").stat().st_mtime_ns == stamp
    lab_api.make_synthetic(tmp_path, 5, 1)
    assert sorted(path.name for path in (tmp_path / "nodes").iterdir()) == ["pve1"]
    assert len(list((tmp_path / "nodes" / "pve1" / "lxc").iterdir())) == 5
