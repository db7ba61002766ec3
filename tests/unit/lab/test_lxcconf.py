"""A PVE CT config translated into the LXC config the CT starts from."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config
from enva_lab import lxcconf

MIB = 1024 * 1024
CONF = """#HAProxy front end
arch: amd64
cores: {cores}
hostname: haproxy
memory: {memory}
net0: name=eth0,bridge=vmbr0,gw=10.217.0.1,hwaddr=BC:24:11:20:17:00,ip={ip},type=veth
onboot: 1
ostype: debian
rootfs: local:subvol-2017-disk-0,size=8G
swap: {swap}
"""


def render(memory=1024, swap=1024, cores=2, ip="10.217.0.17/24", cpus=2, memsw=True, extra=""):
    config = pve_ct_config.parse(CONF.format(memory=memory, swap=swap, cores=cores, ip=ip) + extra)
    return lxcconf.render(2017, config, lxcconf.HostFacts(cpus=cpus, memsw=memsw), "/cache/rootfs", "/lab/ct/2017/delta")


def keys(text):
    return [tuple(part.strip() for part in line.split("=", 1)) for line in text.splitlines()
            if line and not line.startswith("#")]


def test_pve_cgroup_layout_so_the_kernel_names_oom_memcg_lxc_vmid():
    lines = keys(render())
    assert ("lxc.cgroup.dir.container", "lxc/2017") in lines
    assert ("lxc.cgroup.dir.monitor", "lxc.monitor/2017") in lines
    assert ("lxc.cgroup.dir.container.inner", "ns") in lines


@pytest.mark.parametrize("memory, swap, memsw, expected", [
    (1024, 1024, True, [("lxc.cgroup.memory.limit_in_bytes", str(1024 * MIB)),
                        ("lxc.cgroup.memory.memsw.limit_in_bytes", str(2048 * MIB))]),
    (2048, 512, True, [("lxc.cgroup.memory.limit_in_bytes", str(2048 * MIB)),
                       ("lxc.cgroup.memory.memsw.limit_in_bytes", str(2560 * MIB))]),
    (1024, 1024, False, [("lxc.cgroup.memory.limit_in_bytes", str(1024 * MIB))]),
])
def test_memory_and_swap_become_the_cgroup_limits(memory, swap, memsw, expected):
    found = [pair for pair in keys(render(memory=memory, swap=swap, memsw=memsw)) if ".memory." in pair[0]]
    assert found == expected        # the limit first: the kernel refuses memsw below it


def test_memory_and_swap_default_as_in_pve_when_absent():
    config = pve_ct_config.parse("hostname: x\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.217.0.9/24\n")
    assert lxcconf.memory_limits(config, lxcconf.HostFacts(2, True)) == [
        ("memory.limit_in_bytes", 512 * MIB), ("memory.memsw.limit_in_bytes", 1024 * MIB)]


def test_network_is_pve_named_veth_on_the_bridge_with_a_static_address():
    lines = keys(render())
    for pair in [("lxc.net.0.type", "veth"), ("lxc.net.0.veth.pair", "veth2017i0"), ("lxc.net.0.link", "vmbr0"),
                 ("lxc.net.0.name", "eth0"), ("lxc.net.0.hwaddr", "BC:24:11:20:17:00"),
                 ("lxc.net.0.ipv4.address", "10.217.0.17/24"), ("lxc.net.0.ipv4.gateway", "10.217.0.1")]:
        assert pair in lines


def test_rootfs_is_an_overlay_of_the_cache_and_the_cts_layer():
    assert ("lxc.rootfs.path", "overlay:/cache/rootfs:/lab/ct/2017/delta") in keys(render())


@pytest.mark.parametrize("cores, cpus, expected", [(2, 2, "0-1"), (1, 2, "0"), (4, 2, "0-1"), (3, 8, "0-2")])
def test_cores_become_a_cpuset_no_larger_than_the_host(cores, cpus, expected):
    assert ("lxc.cgroup.cpuset.cpus", expected) in keys(render(cores=cores, cpus=cpus))


def test_raw_lxc_keys_of_the_pve_config_are_passed_on():
    assert ("lxc.apparmor.profile", "unconfined") in keys(render(extra="lxc.apparmor.profile: unconfined\n"))


def test_dhcp_is_refused_because_the_lab_has_no_dhcp_server():
    with pytest.raises(ValueError, match="static ip="):
        render(ip="dhcp")


def test_veth_names():
    assert lxcconf.veth_name(2017) == "veth2017i0" and lxcconf.veth_name(101, 1) == "veth101i1"
