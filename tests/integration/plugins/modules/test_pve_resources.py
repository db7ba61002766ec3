"""pve_resources: main() end to end against the PVE API lab server over real HTTPS (fake lab tree, random port)."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.modules import pve_resources
from support.pve_lab import FakeLab, LabServer
from support import module_harness as harness


pytestmark = pytest.mark.usefixtures("api_exits")
MODULE = harness.ApiModule(pve_resources)
run_main = MODULE.run
ok = MODULE.ok
failed = MODULE.failed


def test_every_ct_with_usage_config_and_tags_in_one_call(lab):
    conf = lab.lab.add_ct(2017, hostname="haproxy", memory=1024, swap=1024, used_mib=300)
    conf.write_text(conf.read_text() + "tags: lab;haproxy\n")
    lab.lab.add_ct(2101, hostname="web", memory=512, used_mib=100)
    lab.lab.add_ct(2103, hostname="mail", memory=384, running=False)
    before = lab.log_path.read_text().count("/cluster/resources")
    result = ok(lab, _ansible_check_mode=True)
    assert result["changed"] is False
    assert sorted(result["cts"]) == ["2017", "2101", "2103"]
    haproxy = result["cts"]["2017"]
    assert (haproxy["vmid"], haproxy["node"], haproxy["name"], haproxy["status"]) == (2017, "pve1", "haproxy", "running")
    assert (haproxy["mem_mb"], haproxy["maxmem_mb"]) == (300, 1024)
    assert haproxy["mem_bytes"] == 300 * 1024 * 1024
    assert haproxy["tags"] == ["lab", "haproxy"]
    assert result["cts"]["2103"]["status"] == "stopped" and result["cts"]["2103"]["maxmem_mb"] == 384
    assert result["cts"]["2103"]["mem_mb"] == 0
    assert result["nodes"]["pve1"]["status"] == "online" and result["nodes"]["pve1"]["cgroup_mode"] == 1
    assert result["counts"]["lxc"] == 3 and result["counts"]["node"] == 1
    assert "resources" not in result
    # One API call for the lot, whatever the number of CTs.
    assert lab.log_path.read_text().count("/cluster/resources") == before + 1


def test_raw_answer_and_type_filter(lab):
    lab.lab.add_ct(2017)
    result = ok(lab, type="vm", raw=True)
    assert [item["type"] for item in result["resources"]] == ["lxc"]
    assert result["nodes"] == {} and list(result["cts"]) == ["2017"]


def test_read_only_token_and_password_login_see_the_same(lab):
    lab.lab.add_ct(2017)
    lab.lab.add_ct(2101)
    readonly = ok(lab, lab.connection("readonly"))
    root = ok(lab, lab.connection(None))
    assert sorted(readonly["cts"]) == sorted(root["cts"]) == ["2017", "2101"]


def test_unknown_node_is_refused_with_the_known_ones(lab):
    lab.lab.add_ct(2017)
    msg = failed(lab, node=["pve9"])
    assert msg == "No node named pve9 in /cluster/resources (nodes listed: pve1)"


def test_wrong_secret_says_which_options_to_check(lab):
    msg = failed(lab, lab.connection(api_token_secret="not-the-secret"))
    assert msg.startswith("Cannot read /cluster/resources: the PVE API at https://127.0.0.1:%d/api2/json refused"
                          " API token enva@pve!ansible (401" % lab.port)
    assert msg.endswith("Check api_user, api_token_id and api_token_secret (PROXMOX_USER, PROXMOX_TOKEN_ID,"
                        " PROXMOX_TOKEN_SECRET).")


def test_nothing_listening_is_a_connection_error(lab, closed_port):  # noqa: F811
    msg = failed(lab, lab.connection(api_port=closed_port))
    assert "cannot connect to the PVE API at https://127.0.0.1:%d/api2/json (connection refused" % closed_port in msg


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    fake = FakeLab(tmp_path_factory.mktemp("pve-synthetic")).make()
    server = LabServer(fake, "--synthetic-cts", "30", "--nodes", "3")
    yield server
    server.stop()


def test_synthetic_cluster_of_three_nodes(synthetic):
    result = ok(synthetic)
    assert len(result["cts"]) == 30
    assert sorted(result["nodes"]) == ["pve1", "pve2", "pve3"]
    assert all(node["cgroup_mode"] == 2 for node in result["nodes"].values())
    by_node = {}
    for ct in result["cts"].values():
        by_node.setdefault(ct["node"], []).append(ct["vmid"])
    assert sorted(len(vmids) for vmids in by_node.values()) == [10, 10, 10]
    # Nine in ten run (the synthetic tree leaves every tenth CT without a cgroup).
    assert sum(1 for ct in result["cts"].values() if ct["status"] == "running") == 27
    only = ok(synthetic, node=["pve2"])
    assert {ct["node"] for ct in only["cts"].values()} == {"pve2"} and list(only["nodes"]) == ["pve2"]


@pytest.mark.parametrize("value, expected", [
    (None, []), ("", []), ("lab;haproxy", ["lab", "haproxy"]), ("a,b c", ["a", "b", "c"]), (["x"], ["x"]),
])
def test_split_tags(value, expected):
    assert pve_resources.split_tags(value) == expected
