"""The lab's CT configs: what PVE would write for a declared CT (the format itself: test_pve_ct_config.py)."""

from __future__ import annotations

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config
from enva_lab import declared, pveconf, settings

CT_2017 = """#HAProxy front end (www, api); DNS via local forwarder to SiNS
arch: amd64
cores: 2
hostname: haproxy
memory: 1024
net0: name=eth0,bridge=vmbr0,gw=10.217.0.1,hwaddr={hwaddr},ip=10.217.0.17/24,type=veth
onboot: 1
ostype: debian
rootfs: local:subvol-2017-disk-0,size=8G
swap: 1024
tags: lab;haproxy
"""


def sample_ct(vmid):
    return next(ct for ct in declared.read_text(settings.SAMPLE.read_text(), "enva.yaml") if ct.vmid == vmid)


def test_ct_2017_from_the_sample_is_what_pve_would_write():
    text = pve_ct_config.render(pveconf.from_declared(sample_ct(2017)))
    assert text == CT_2017.format(hwaddr=pveconf.hwaddr_for(2017))


def test_net0_of_a_parsed_config():
    config = pve_ct_config.parse(CT_2017.format(hwaddr="BC:24:11:00:00:01"))
    assert config.net(0)["ip"] == "10.217.0.17/24" and config.net(0)["hwaddr"] == "BC:24:11:00:00:01"
    assert config.net(1) == {}


def test_hwaddr_is_stable_per_ct_in_proxmox_oui():
    assert pveconf.hwaddr_for(2017) == pveconf.hwaddr_for(2017)
    assert pveconf.hwaddr_for(2017) != pveconf.hwaddr_for(2101)
    assert pveconf.hwaddr_for(2017).startswith("BC:24:11:") and len(pveconf.hwaddr_for(2017)) == 17
