"""lxc_memory_info: main() end to end against the PVE API lab server over real HTTPS (fake lab tree, random port):
what it reads, that it changes nothing, and that its digest is the one lxc_memory checks."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.modules import lxc_memory, lxc_memory_info

from support import module_harness as harness

pytestmark = pytest.mark.usefixtures("api_exits")
MODULE = harness.ApiModule(lxc_memory_info)
ok = MODULE.ok
failed = MODULE.failed


def test_reads_a_running_ct_and_changes_nothing(lab):
    conf = lab.lab.add_ct(2017, hostname="haproxy", memory=1024, swap=512, used_mib=300)
    text, logged = conf.read_text(), len(lab.log_path.read_text())
    result = ok(lab, vmid=2017, node="pve1")
    assert result["changed"] is False
    assert (result["vmid"], result["node"], result["status"]) == (2017, "pve1", "running")
    assert (result["memory"], result["swap"]) == (1024, 512)
    assert result["live"] == {"maxmem": 1024, "maxswap": 512, "mem": 300}
    assert result["pending"] == {}
    assert result["ct"]["hostname"] == "haproxy"
    assert [(item["key"], item["address"]) for item in result["ct"]["interfaces"]] == [("net0", "10.217.0.27")]
    assert conf.read_text() == text and lab.lab.limit_mib(2017) == 1024
    requests = lab.log_path.read_text()[logged:]
    assert '"GET /api2/json/nodes/pve1/lxc/2017/config' in requests and '"PUT ' not in requests


def test_found_by_name_stopped_ct_has_no_live_limits(lab):
    lab.lab.add_ct(101, hostname="web")
    lab.lab.add_ct(2017, hostname="haproxy", memory=2048, swap=0, running=False)
    result = ok(lab, hostname="haproxy")
    assert (result["vmid"], result["node"], result["status"]) == (2017, "pve1", "stopped")
    assert (result["memory"], result["swap"], result["live"]) == (2048, 0, None)


def test_the_read_only_token_may_read_and_its_digest_guards_lxc_memory(lab):
    conf = lab.lab.add_ct(2017, memory=1024)
    read = ok(lab, lab.connection("readonly"), vmid=2017)
    assert read["memory"] == 1024 and read["digest"]
    conf.write_text(conf.read_text() + "tags: edited-by-hand\n")
    msg = harness.api_failed(lxc_memory, lab, vmid=2017, node="pve1", memory=2048, digest=read["digest"])
    assert "digest mismatch" in msg and "memory: 1024\n" in conf.read_text()


def test_unknown_ct_and_node(lab):
    lab.lab.add_ct(2017)
    assert failed(lab, vmid=9999).startswith("CT 9999 does not exist in this cluster: /cluster/resources does not"
                                             " list it")
    assert failed(lab, hostname="ct2017", node="pve2") == "CT 2017 (ct2017) is on node pve1, not on node pve2"
