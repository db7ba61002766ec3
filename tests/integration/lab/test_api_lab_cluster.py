"""The PVE API lab as a cluster of two nodes over real HTTPS: one node answers for both, as PVE's do.

pve1 and pve2 are two servers over their own fake lab trees that share one CA, authkey and
credentials.json (as PVE's nodes share /etc/pve); pve1's ``api/cluster.json`` names pve2.
"""

from __future__ import annotations

import json
import shutil

import pytest

from support.pve_lab import FakeLab, LabServer, call


@pytest.fixture
def cluster(tmp_path):
    first = FakeLab(tmp_path / "pve1").make()
    second = FakeLab(tmp_path / "pve2").make()
    servers = []
    try:
        servers.append(LabServer(first))
        second.labdir.mkdir(parents=True, exist_ok=True)
        for part in ("pki", "api"):
            shutil.copytree(first.labdir / part, second.labdir / part, dirs_exist_ok=True)
        servers.append(LabServer(second, "--node", "pve2"))
        (first.labdir / "api" / "cluster.json").write_text(json.dumps(
            {"peers": {"pve2": "127.0.0.1:%d" % servers[1].port}}))
        first.add_ct(2017, hostname="haproxy", memory=1024)
        second.add_ct(2101, hostname="web", memory=512, used_mib=100)
        second.add_ct(2102, hostname="db", memory=768, running=False)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _by_id(entries):
    return {entry["id"]: entry for entry in entries}


def test_one_node_lists_the_whole_cluster(cluster):
    front, _peer = cluster
    status, _reason, body = call(front, "GET", "/cluster/resources")
    entries = _by_id(body["data"])
    assert status == 200
    assert entries["node/pve1"]["status"] == entries["node/pve2"]["status"] == "online"
    assert (entries["lxc/2017"]["node"], entries["lxc/2101"]["node"], entries["lxc/2102"]["node"]) == (
        "pve1", "pve2", "pve2")
    assert entries["lxc/2101"]["status"] == "running" and entries["lxc/2102"]["status"] == "stopped"
    assert entries["lxc/2101"]["maxmem"] == 512 * 1024 * 1024
    assert {entry["id"] for entry in call(front, "GET", "/cluster/resources", params={"type": "vm"})[2]["data"]} == {
        "lxc/2017", "lxc/2101", "lxc/2102"}
    nodes = {entry["name"]: entry for entry in call(front, "GET", "/cluster/status")[2]["data"] if entry["type"] == "node"}
    assert (nodes["pve1"]["local"], nodes["pve2"]["local"], nodes["pve2"]["online"]) == (1, 0, 1)


def test_per_node_calls_reach_the_node_that_holds_the_ct(cluster):
    front, peer = cluster
    assert call(front, "GET", "/nodes/pve2/lxc/2101/config")[2]["data"]["hostname"] == "web"
    answer = call(front, "PUT", "/nodes/pve2/lxc/2101/config", params={"memory": "640"})
    assert answer[0] == 200, answer
    assert peer.lab.limit_mib(2101) == 640 and "memory: 640" in peer.lab.config_path(2101).read_text()
    # the peer checks the caller's privileges itself: the read-only token may not write there either
    assert call(front, "PUT", "/nodes/pve2/lxc/2101/config", token="readonly", params={"memory": "700"})[:2] == (
        403, "Permission check failed (/vms/2101, VM.Config.Disk|VM.Config.CPU|VM.Config.Memory|VM.Config.Network"
             "|VM.Config.Options)")
    assert call(front, "GET", "/nodes/pve1/lxc/2101/config")[:2] == (
        500, "Configuration file 'nodes/pve1/lxc/2101.conf' does not exist")
    assert call(front, "GET", "/nodes/pve9/lxc/2101/config")[0] == 500
    assert "proxied PUT /api2/json/nodes/pve2/lxc/2101/config to pve2: 200" in front.log_path.read_text()


def test_a_node_that_stops_answering_is_offline_and_its_cts_unknown(cluster):
    front, peer = cluster
    assert call(front, "GET", "/cluster/resources")[0] == 200          # pve2 answered once: its CTs are known
    peer.stop()
    status, _reason, body = call(front, "GET", "/cluster/resources")
    entries = _by_id(body["data"])
    assert status == 200 and entries["lxc/2017"]["status"] == "running"
    assert entries["node/pve2"]["status"] == "offline" and "enva-lost-since" in entries["node/pve2"]
    assert entries["lxc/2101"]["status"] == entries["lxc/2102"]["status"] == "unknown"
    status, reason, _body = call(front, "GET", "/nodes/pve2/lxc/2101/status/current")
    assert status == 595 and reason.startswith("Connection refused or node offline: pve2")
