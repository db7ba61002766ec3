"""A CT's layer over the cached rootfs: CT 2017 as the incident found it, ordinary CTs plain."""

from __future__ import annotations

import configparser

import pytest

from enva_lab import ct, declared, settings

CTS = {item.vmid: item for item in declared.read_text(settings.SAMPLE.read_text(), "enva.yaml")}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample enva-lab\n"


def test_ct_2017_has_the_socat_forwarder_of_the_incident_enabled():
    files, links = ct.layer_files(CTS[2017], KEY)
    unit = configparser.ConfigParser(interpolation=None)
    unit.read_string(files["etc/systemd/system/dns-forwarder.service"][0])
    assert unit["Service"]["ExecStart"] == "/usr/bin/socat UDP4-LISTEN:53,fork,reuseaddr UDP4:10.217.0.53:53"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert links["etc/systemd/system/multi-user.target.wants/dns-forwarder.service"] == \
        "/etc/systemd/system/dns-forwarder.service"
    assert links["etc/systemd/system/multi-user.target.wants/haproxy.service"] == "/lib/systemd/system/haproxy.service"


def test_ct_2017_resolves_through_the_local_forwarder():
    files, _links = ct.layer_files(CTS[2017], KEY)
    assert "nameserver 127.0.0.1\n" in files["etc/resolv.conf"][0]
    cfg = files["etc/haproxy/haproxy.cfg"][0]
    assert "resolvers sins\n\tnameserver local 127.0.0.1:53\n" in cfg
    assert "\tserver web1 web.lab.enva.test:8080 resolvers sins" in cfg
    for section in ("global", "defaults", "frontend www", "backend web", "backend api"):
        assert "\n%s\n" % section in "\n" + cfg


def test_an_ordinary_ct_asks_sins_directly_and_has_no_forwarder():
    files, links = ct.layer_files(CTS[2101], KEY)
    assert files["etc/resolv.conf"][0] == "search lab.enva.test\nnameserver 10.217.0.53\n"
    assert not links and "etc/systemd/system/dns-forwarder.service" not in files


def test_every_ct_gets_its_name_the_labs_key_and_its_own_machine_id():
    first, _links = ct.layer_files(CTS[2102], KEY)
    second, _links = ct.layer_files(CTS[2102], KEY)
    assert first["etc/hostname"][0] == "db\n"
    assert "10.217.0.102\tdb.lab.enva.test db\n" in first["etc/hosts"][0]
    assert first["root/.ssh/authorized_keys"] == (KEY, 0o600)
    assert first["etc/machine-id"][0] != second["etc/machine-id"][0]
    assert len(first["etc/machine-id"][0].strip()) == 32


def test_a_stopped_cts_leftover_cgroups_are_removed_before_it_starts(tmp_path, monkeypatch):
    hierarchies = [tmp_path / "memory", tmp_path / "pids"]
    for hierarchy in hierarchies:
        (hierarchy / "lxc" / "2017" / "ns").mkdir(parents=True)
        (hierarchy / "lxc.monitor" / "2017").mkdir(parents=True)
        (hierarchy / "lxc" / "2101").mkdir(parents=True)
    monkeypatch.setattr(ct.host, "v1_hierarchies", lambda: hierarchies)
    ct.clear_stale_cgroups(2017)
    for hierarchy in hierarchies:
        assert sorted(path.name for path in (hierarchy / "lxc").iterdir()) == ["2101"]   # another CT's is kept
        assert not (hierarchy / "lxc.monitor" / "2017").exists()


def test_a_leftover_cgroup_that_holds_processes_is_named(tmp_path, monkeypatch):
    busy = tmp_path / "memory" / "lxc" / "2017"
    busy.mkdir(parents=True)
    (busy / "cgroup.procs").write_text("4242\n")         # a plain directory with a file: rmdir fails as on a busy cgroup
    monkeypatch.setattr(ct.host, "v1_hierarchies", lambda: [tmp_path / "memory"])
    with pytest.raises(ct.LabError, match=r"CT 2017 is stopped but its cgroup .*memory/lxc/2017 is still there "
                                          r"\(.*; cgroup.procs: 4242\)"):
        ct.clear_stale_cgroups(2017)
