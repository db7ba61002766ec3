"""PVE 9's pressure fields end to end: the API lab answers as PVE 9 (or PVE 8) over real HTTPS on loopback,
proxmoxer reads status/current, /nodes/{node}/lxc and rrddata, and the modules name a CT stalled at memory.high
from them (PVE 9) or fall back to the node's cgroup (PVE 8: no fields, not an error).

The fake lab tree is a cgroup v2 node (``FakeLab(cgroup2=True)``): CT 2017 at memory.high with the trickle's
figures (memory.events high 241,166, max 6,181; memory.pressure full avg10=53.00)."""

from __future__ import annotations

import time

import pytest
from proxmoxer import ProxmoxAPI

from ansible_collections.enva.pve.plugins.module_utils import pve_pressure
from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import read_counters
from ansible_collections.enva.pve.plugins.module_utils.oom_report import memory_high_stall
from ansible_collections.enva.pve.plugins.modules import lxc_memory, pve_resources
from support import module_harness as harness
from support.pve_lab import FakeLab, LabServer

pytestmark = pytest.mark.usefixtures("api_exits")
RESOURCES = harness.ApiModule(pve_resources)
MEMORY = harness.ApiModule(lxc_memory)
TRICKLE_EVENTS = "low 0\nhigh 241166\nmax 6181\noom 0\noom_kill 0\noom_group_kill 0"


def stalled_lab(root):
    lab = FakeLab(root, cgroup2=True).make()
    lab.add_ct(2017, hostname="haproxy", memory=128, swap=128, used_mib=127)
    lab.set_pressure(2017, "memory", 61.84, 53.00)
    lab.set_pressure(2017, "io", 38.2, 33.95)
    lab.set_file(2017, "memory.events", TRICKLE_EVENTS)
    lab.add_ct(2101, hostname="web", memory=1024, used_mib=200)
    lab.add_ct(2103, hostname="off", running=False)
    return lab


@pytest.fixture(scope="module", params=[9, 8], ids=["pve9", "pve8"])
def server(request, tmp_path_factory):
    lab = stalled_lab(tmp_path_factory.mktemp("pve%d" % request.param))
    served = LabServer(lab, "--pve", str(request.param))
    served.pve = request.param
    yield served
    served.stop()


def proxmox(server):
    return ProxmoxAPI("127.0.0.1", port=server.port, user="enva@pve", token_name="readonly",
                      token_value=server.token("readonly"), verify_ssl=server.ca_path, timeout=10)


def test_version_and_status_current_through_proxmoxer(server):
    api = proxmox(server)
    version = api.version.get()
    assert version["release"] == ("9.1" if server.pve == 9 else "8.2")
    assert version["version"].startswith("%d." % server.pve) and len(version["repoid"]) == 16
    status = api.nodes("pve1").lxc(2017).status.current.get()
    assert (status["mem"], status["maxmem"]) == (127 * 1024 * 1024, 128 * 1024 * 1024)   # as before
    pressure = {key: value for key, value in status.items() if key.startswith("pressure")}
    if server.pve == 8:
        assert pressure == {}
        return
    assert pressure == {"pressurecpusome": "0.00", "pressurecpufull": "0.00", "pressureiosome": "38.20",
                        "pressureiofull": "33.95", "pressurememorysome": "61.84", "pressurememoryfull": "53.00"}
    stall = pve_pressure.api_stall(2017, status)
    assert stall["reason"].startswith("CT 2017 is stalled at memory.high (127 MiB), from the PVE API")


def test_the_node_list_carries_them_for_running_cts_only(server):
    items = {item["vmid"]: item for item in proxmox(server).nodes("pve1").lxc.get()}
    assert not pve_pressure.has_fields(items[2103])                  # stopped
    assert pve_pressure.has_fields(items[2017]) is (server.pve == 9)
    assert "pressurememoryfull" not in proxmox(server).cluster.resources.get(type="vm")[0]


def test_rrddata_keeps_them(server):
    api = proxmox(server)
    deadline = time.monotonic() + 10
    while True:        # the server samples every 0.2 s here; wait (bounded) for a point with data
        points = api.nodes("pve1").lxc(2017).rrddata.get(timeframe="hour", cf="AVERAGE")
        if "mem" in points[-1] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(points) == 70 and all(point["time"] % 60 == 0 for point in points)
    last = points[-1]
    assert last["mem"] == 127 * 1024 * 1024
    if server.pve == 9:
        assert last["pressurememoryfull"] == 53.0 and last["pressurememorysome"] == 61.84
    else:
        assert "pressurememoryfull" not in last


def test_pve_resources_names_the_stalled_ct_from_the_api_or_leaves_it_to_the_node(server):
    before = server.log_path.read_text().count('/api2/json/nodes/pve1/lxc"')
    result = RESOURCES.ok(server, server.connection("readonly"))
    source = result["pressure_source"]
    assert source["asked"] == ["pve1"] and source["calls"] == 1 and source["failed"] == {}
    assert server.log_path.read_text().count('/api2/json/nodes/pve1/lxc"') == before + 1   # one call per node
    haproxy, web = result["cts"]["2017"], result["cts"]["2101"]
    if server.pve == 9:
        assert source["with_fields"] == ["pve1"]
        assert haproxy["pressure"]["memory_full"] == 53.0 and web["pressure"]["memory_full"] == 0.0
        assert haproxy["stall"]["source"] == "api" and haproxy["stall"]["ongoing"]
        assert "stalled at memory.high" in haproxy["stall"]["reason"]
        assert web["stall"] is None
    else:
        assert source["without_fields"] == ["pve1"]
        assert haproxy["pressure"] is None and haproxy["stall"] is None
        # PVE 8: the node's cgroup names it (what lxc_oom_evidence reads there), as before PVE 9.
        stall = memory_high_stall(2017, read_counters(str(server.lab.cgroup), 2017))
        assert stall["pressure_source"] == "cgroup" and stall["high_events"] == 241166
        assert stall["reason"].startswith("CT 2017 is stalled at memory.high (127 MiB): the kernel throttled it "
                                          "241,166 times")


def test_lxc_memory_reads_the_stall_with_the_ct(server):
    result = MEMORY.ok(server, vmid=2017, memory=256, _ansible_check_mode=True)
    if server.pve == 9:
        assert result["pressure"]["memory_full"] == 53.0
        assert result["stall"]["reason"].startswith("CT 2017 is stalled at memory.high")
    else:
        assert result["pressure"] is None and result["stall"] is None


def test_a_cgroup_v1_node_answers_null_on_pve9(lab):
    """This lab host is cgroup v1: PVE 9 reads /sys/fs/cgroup/lxc/VMID/*.pressure, which v1 has not: null."""
    lab.lab.add_ct(2017)
    status = proxmox(lab).nodes("pve1").lxc(2017).status.current.get()
    assert {key: status[key] for key in pve_pressure.FIELDS} == dict.fromkeys(pve_pressure.FIELDS)
    result = RESOURCES.ok(lab, pressure="all")
    assert result["cts"]["2017"]["pressure"]["memory_full"] is None and result["cts"]["2017"]["stall"] is None
