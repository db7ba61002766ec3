"""The PVE API lab server's parts as functions (tests/lab/enva_lab/api_lab): PVE's parameter checks and
routing, its access model, the cgroup writes of a live memory change, the synthetic cluster."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from enva_lab.api_lab import cgroups, nodes, pki, synthetic
from enva_lab.api_lab.access import Access
from enva_lab.api_lab.errors import ApiError
from enva_lab.api_lab.schema import Schema, check_value
from support.pve_lab import FakeLab

SCHEMA = Schema()
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
    assert check_value(prop, raw) == expected


def test_validate_put_config():
    values = SCHEMA.validate(PUT_CONFIG, {"node": "pve1", "vmid": "2017", "memory": "2048", "net0": "name=eth0"})
    assert values == {"node": "pve1", "vmid": 2017, "memory": 2048, "net0": "name=eth0"}
    with pytest.raises(ApiError) as caught:
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


def test_write_atomically_keeps_mode(tmp_path):
    path = tmp_path / "2017.conf"
    path.write_text("memory: 1\n")
    path.chmod(0o640)
    nodes.write_atomically(path, "memory: 2\n")
    assert path.read_text() == "memory: 2\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["2017.conf"]


# --- access ------------------------------------------------------------------------------------------------

CREDENTIALS = pki.default_credentials("/ca.pem", "pve1")


@pytest.fixture
def access():
    return Access(CREDENTIALS, "0" * 64)


def test_privilege_separation(access):
    assert access.privileges("enva@pve!ansible", "/vms/2017") == {"VM.Audit", "VM.Config.Memory", "Sys.Audit"}
    assert access.privileges("enva@pve!readonly", "/vms/2017") == {"VM.Audit", "Sys.Audit"}
    assert "VM.PowerMgmt" in access.privileges("root@pam", "/vms/2017")
    # A token has only what its user also has: take the role away from the user, the token loses it too.
    credentials = json.loads(json.dumps(CREDENTIALS))
    credentials["acl"][0]["users"] = []
    assert Access(credentials, "0" * 64).privileges("enva@pve!ansible", "/vms/2017") == set()
    credentials["tokens"]["enva@pve!ansible"]["privsep"] = False
    assert Access(credentials, "0" * 64).privileges("enva@pve!ansible", "/vms/2017") == set()


def test_permission_messages(access):
    with pytest.raises(ApiError) as caught:
        access.check("enva@pve!readonly", "/vms/2017", ["VM.Config.Memory"])
    assert (caught.value.status, caught.value.message) == (403, "Permission check failed (/vms/2017, VM.Config.Memory)")
    with pytest.raises(ApiError) as caught:
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
        with pytest.raises(ApiError, match="permission denied - invalid PVE ticket"):
            access.verify_ticket(bad)
    with pytest.raises(ApiError, match="Permission denied - invalid csrf token"):
        access.verify_csrf("enva@pve", csrf)
    for user, secret in (("root@pam", "wrong"), ("enva@pve", ""), ("nobody@pam", "x")):
        with pytest.raises(ApiError, match="^authentication failure$"):
            access.create_ticket(user, secret)


@pytest.mark.parametrize("value, message", [
    ("enva@pve!ansible", "no tokenid specified"),
    ("enva!ansible=x", "'enva!ansible' is not a valid token ID - not able to split into user and token parts"),
    ("ghost@pve!ansible=x", "no such user ('ghost@pve')"),
    ("enva@pve!nosuch=x", "no such token 'nosuch' for user 'enva@pve'"),
    ("enva@pve!ansible=wrong", "invalid token value!"),
])
def test_token_refusals(access, value, message):
    with pytest.raises(ApiError) as caught:
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
    cgroup = cgroups.CtCgroup(v1.cgroup, 2017)
    assert (cgroup.version, cgroup.running) == ("v1", True)
    cgroup.set_limits(2048, 1024, mounts=[])           # memsw first, else the memory limit would exceed it
    assert (v1.limit_mib(2017), v1.limit_mib(2017, "memory.memsw.limit_in_bytes")) == (2048, 3072)
    cgroup.set_limits(700, 0, mounts=[])               # memory first, else memsw would drop below it
    assert (v1.limit_mib(2017), v1.limit_mib(2017, "memory.memsw.limit_in_bytes")) == (700, 700)


def test_v1_below_usage_is_ebusy_and_nothing_half_done(v1):
    cgroup = cgroups.CtCgroup(v1.cgroup, 2017)
    with pytest.raises(cgroups.CgroupWriteError) as caught:
        cgroup.set_limits(512, 2048, mounts=[])        # memsw grows first, then the memory limit is refused
    assert str(caught.value) == "unable to write '%s/memory.limit_in_bytes' - Device or resource busy" % (
        v1.cgroup_dir(2017))
    assert (v1.limit_mib(2017), v1.limit_mib(2017, "memory.memsw.limit_in_bytes")) == (1024, 1024)


@pytest.fixture
def v2(tmp_path):
    """A CT's cgroup v2 directory of plain files (``max`` everywhere) and its CtCgroup."""
    root = tmp_path / "cgroup"
    directory = root / "lxc" / "2017"
    directory.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    for name in ("memory.max", "memory.high", "memory.swap.max", "memory.current"):
        (directory / name).write_text("max\n")
    return directory, cgroups.CtCgroup(root, 2017)


def test_v2_writes_max_high_and_swap(v2):
    directory, cgroup = v2
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
    assert cgroups.cgroup_mounts(str(mountinfo)) == ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"]


def test_synthetic_tree_is_made_once_per_size(tmp_path):
    synthetic.make_synthetic(tmp_path, 20, 2)
    stamp = (tmp_path / "nodes" / "pve1" / "lxc" / "10000.conf").stat().st_mtime_ns
    synthetic.make_synthetic(tmp_path, 20, 2)
    assert (tmp_path / "nodes" / "pve1" / "lxc" / "10000.conf").stat().st_mtime_ns == stamp
    synthetic.make_synthetic(tmp_path, 5, 1)
    assert sorted(path.name for path in (tmp_path / "nodes").iterdir()) == ["pve1"]
    assert len(list((tmp_path / "nodes" / "pve1" / "lxc").iterdir())) == 5


def test_v2_writes_in_pve_commons_order_and_puts_back_what_a_refusal_interrupts(v2, monkeypatch):
    directory, cgroup = v2
    order = []
    real_write = cgroups.CtCgroup._write

    def refuse_max(self, name, value, mounts):
        order.append(name)
        if name == "memory.max" and value != "max":
            raise cgroups.CgroupWriteError(self.path / name, OSError(16, "Device or resource busy"))
        real_write(self, name, value, mounts)

    monkeypatch.setattr(cgroups.CtCgroup, "_write", refuse_max)
    with pytest.raises(cgroups.CgroupWriteError):
        cgroup.set_limits(1024, 512, mounts=[])
    assert order == ["memory.swap.max", "memory.high", "memory.max", "memory.high", "memory.swap.max"]
    assert all((directory / name).read_text() == "max\n" for name in ("memory.max", "memory.high", "memory.swap.max"))


# --- PVE 9's pressure fields (pve-container 6.0.7's vmstatus, pve-common's read_cgroup_pressure) -------------

@pytest.mark.parametrize("text, expected", [
    ("some avg10=61.84 avg60=60.12 avg300=55.03 total=571032118\nfull avg10=53.00 avg60=51.37 avg300=46.92 total=4982",
     ("61.84", "53.00")),                                   # the kernel's text, kept as text
    ("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", ("0.00", None)),       # a file without a full line
    ("some avg10=7 avg60=0.00 avg300=0.00 total=0\n", (None, None)),            # PVE's pattern wants N.NN
    (None, (None, None)),                                   # no file (cgroup v1, no such cgroup): null
])
def test_read_pressure_as_pve_reads_it(tmp_path, text, expected):
    if text is not None:
        (tmp_path / "memory.pressure").write_text(text)
    fields = cgroups.read_pressure(tmp_path)
    assert sorted(fields) == sorted("pressure%s%s" % (resource, line) for resource in ("cpu", "io", "memory")
                                    for line in ("some", "full"))
    assert (fields["pressurememorysome"], fields["pressurememoryfull"]) == expected
    assert fields["pressurecpusome"] is None                # no cpu.pressure written


@pytest.mark.parametrize("pve, keys", [(9, True), (8, False)])
def test_status_has_the_fields_on_pve9_only(tmp_path, pve, keys):
    lab = FakeLab(tmp_path, cgroup2=True).make()
    lab.add_ct(2017, memory=128, used_mib=127)
    lab.set_pressure(2017, "memory", 61.84, 53.0)
    node = nodes.Node("pve1", lab.config_dir, lab.cgroup)
    status = nodes.ct_status(node, 2017, pve=pve)
    assert ("pressurememoryfull" in status) is keys
    if keys:
        assert status["pressurememoryfull"] == "53.00" and status["pressureiosome"] == "0.00"
    lab.add_ct(2018, running=False)
    assert not any(key.startswith("pressure") for key in nodes.ct_status(node, 2018, pve=pve))


@pytest.mark.parametrize("value, expected", [("", 9), ("8", 8), ("9", 9), ("7", SystemExit), ("nine", SystemExit)])
def test_the_release_from_the_environment(monkeypatch, value, expected):
    from enva_lab.api_lab import cli
    monkeypatch.setenv(cli.PVE_ENV, value)
    if expected is SystemExit:
        with pytest.raises(SystemExit, match="ENVA_LAB_PVE"):
            cli.default_pve()
    else:
        assert cli.default_pve() == expected
