"""PVE CT configs as the lab writes and reads them (PVE::LXC::Config's format)."""

from __future__ import annotations

import pytest

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

WITH_SECTIONS = """#first line%3A with a colon
#second line caf%C3%A9
arch: amd64
memory: 2048
hostname: app
swap: 512
lxc.cgroup2.devices.allow: c 10:200 rwm
lxc.apparmor.profile: unconfined

[pending]
memory: 4096

[before-upgrade]
memory: 512
snaptime: 1700000000
"""


def sample_ct(vmid):
    return next(ct for ct in declared.read_text(settings.SAMPLE.read_text(), "enva.yaml") if ct.vmid == vmid)


def test_ct_2017_from_the_sample_is_what_pve_would_write():
    text = pveconf.render(pveconf.from_declared(sample_ct(2017)))
    assert text == CT_2017.format(hwaddr=pveconf.hwaddr_for(2017))


@pytest.mark.parametrize("text, expected", [
    ("plain text", "plain text"),
    ("HAProxy: front end", "HAProxy%3A front end"),
    ("café", "caf%C3%A9"),
    ("tab\there", "tab%09here"),
    ("100% sure", "100% sure"),
])
def test_description_is_encoded_like_encode_text(text, expected):
    assert pveconf.encode_text(text) == expected
    assert pveconf.decode_text(expected) == text


def test_parse_keeps_description_sections_and_raw_lxc_keys():
    config = pveconf.parse(WITH_SECTIONS)
    assert config.description == "first line: with a colon\nsecond line café"
    assert config.settings["memory"] == "2048" and config.int("memory") == 2048
    assert config.settings["lxc.cgroup2.devices.allow"] == "c 10:200 rwm"
    assert config.sections == {"pending": {"memory": "4096"},
                               "before-upgrade": {"memory": "512", "snaptime": "1700000000"}}


def test_render_sorts_keys_and_puts_raw_lxc_keys_last_in_their_order():
    lines = pveconf.render(pveconf.parse(WITH_SECTIONS)).splitlines()
    assert lines[:8] == ["#first line%3A with a colon", "#second line caf%C3%A9", "arch: amd64", "hostname: app",
                         "memory: 2048", "swap: 512", "lxc.cgroup2.devices.allow: c 10:200 rwm",
                         "lxc.apparmor.profile: unconfined"]
    assert lines[8:] == ["", "[pending]", "memory: 4096", "", "[before-upgrade]", "memory: 512", "snaptime: 1700000000"]


def test_render_then_parse_round_trips():
    config = pveconf.parse(WITH_SECTIONS)
    again = pveconf.parse(pveconf.render(config))
    assert (again.settings, again.description, again.sections) == (config.settings, config.description,
                                                                   config.sections)


def test_a_line_that_is_not_key_value_is_refused_with_its_number():
    with pytest.raises(pveconf.ConfigError, match="line 2 is not 'key: value'"):
        pveconf.parse("arch: amd64\nmemory 1024\n")


@pytest.mark.parametrize("value, expected", [
    ("name=eth0,bridge=vmbr0,ip=dhcp,type=veth", {"name": "eth0", "bridge": "vmbr0", "ip": "dhcp", "type": "veth"}),
    ("local-lvm:vm-101-disk-0,size=16G", {"volume": "local-lvm:vm-101-disk-0", "size": "16G"}),
    ("", {}),
])
def test_property_strings(value, expected):
    assert pveconf.parse_property_string(value) == expected


def test_property_string_prints_the_volume_then_name_then_the_rest_sorted():
    props = {"type": "veth", "ip": "10.217.0.5/24", "bridge": "vmbr0", "name": "eth0", "firewall": "1"}
    assert pveconf.print_property_string(props) == "name=eth0,bridge=vmbr0,firewall=1,ip=10.217.0.5/24,type=veth"
    assert pveconf.print_property_string({"size": "8G", "volume": "local:subvol-1-disk-0"}) == \
        "local:subvol-1-disk-0,size=8G"


def test_net0_of_a_parsed_config():
    config = pveconf.parse(CT_2017.format(hwaddr="BC:24:11:00:00:01"))
    assert config.net(0)["ip"] == "10.217.0.17/24" and config.net(0)["hwaddr"] == "BC:24:11:00:00:01"
    assert config.net(1) == {}


def test_hwaddr_is_stable_per_ct_in_proxmox_oui():
    assert pveconf.hwaddr_for(2017) == pveconf.hwaddr_for(2017)
    assert pveconf.hwaddr_for(2017) != pveconf.hwaddr_for(2101)
    assert pveconf.hwaddr_for(2017).startswith("BC:24:11:") and len(pveconf.hwaddr_for(2017)) == 17
