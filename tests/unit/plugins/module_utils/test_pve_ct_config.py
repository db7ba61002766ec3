"""pve_ct_config: /etc/pve/lxc/VMID.conf read and written as PVE does, and PVE's facts that go with it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import DEFAULT_MIB, read_ct_configs

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "pve-lxc"

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


def test_snapshot_sections_are_not_current_settings():
    settings = pve_ct_config.parse((CONFIGS / "2017.conf").read_text()).settings
    assert settings["memory"] == "1024" and settings["swap"] == "1024" and settings["hostname"] == "haproxy"
    assert settings["net0"].startswith("name=eth0,bridge=vmbr0")
    assert "snaptime" not in settings


def test_read_every_config_with_pve_defaults():
    configs = read_ct_configs(str(CONFIGS))
    assert sorted(configs) == [101, 2017, 9000]
    assert configs[2017]["memory_mb"] == 1024 and configs[2017]["onboot"] is True
    assert (configs[101]["memory_mb"], configs[101]["swap_mb"]) == (2048, 512)
    assert (configs[9000]["memory_mb"], configs[9000]["swap_mb"]) == (512, 512)     # PVE's defaults
    assert read_ct_configs("/nonexistent") == {}


def test_a_line_that_is_not_key_value_is_skipped_when_not_strict():
    assert pve_ct_config.parse("arch: amd64\nmemory 1024\nswap: 0\n").settings == {"arch": "amd64", "swap": "0"}


@pytest.mark.parametrize("memory, expected", [
    (1024, 1024 * 1016 * 1024),              # memory x 1016 KiB below 16 GiB
    (16 * 1024, (16 * 1024 - 128) * MIB),    # memory - 128 MiB from 16 GiB on
    (32768, (32768 - 128) * MIB),
])
def test_memory_high_as_pve_container_writes_it(memory, expected):
    assert pve_ct_config.memory_high_bytes(memory) == expected


def test_config_vmid():
    assert [pve_ct_config.config_vmid(name) for name in ("2017.conf", "2017.conf.tmp", "x.conf")] == [2017, None, None]


@pytest.mark.parametrize("text, expected", [
    ("plain text", "plain text"),
    ("HAProxy: front end", "HAProxy%3A front end"),
    ("café", "caf%C3%A9"),
    ("tab\there", "tab%09here"),
    ("100% sure", "100% sure"),
])
def test_description_is_encoded_like_encode_text(text, expected):
    assert pve_ct_config.encode_text(text) == expected
    assert pve_ct_config.decode_text(expected) == text


def test_parse_keeps_description_sections_and_raw_lxc_keys():
    config = pve_ct_config.parse(WITH_SECTIONS, strict=True)
    assert config.description == "first line: with a colon\nsecond line café"
    assert config.settings["memory"] == "2048" and config.int("memory") == 2048
    assert config.settings["lxc.cgroup2.devices.allow"] == "c 10:200 rwm"
    assert config.sections == {"pending": {"memory": "4096"},
                               "before-upgrade": {"memory": "512", "snaptime": "1700000000"}}


def test_render_sorts_keys_and_puts_raw_lxc_keys_last_in_their_order():
    lines = pve_ct_config.render(pve_ct_config.parse(WITH_SECTIONS, strict=True)).splitlines()
    assert lines[:8] == ["#first line%3A with a colon", "#second line caf%C3%A9", "arch: amd64", "hostname: app",
                         "memory: 2048", "swap: 512", "lxc.cgroup2.devices.allow: c 10:200 rwm",
                         "lxc.apparmor.profile: unconfined"]
    assert lines[8:] == ["", "[pending]", "memory: 4096", "", "[before-upgrade]", "memory: 512", "snaptime: 1700000000"]


def test_render_then_parse_round_trips():
    config = pve_ct_config.parse(WITH_SECTIONS, strict=True)
    again = pve_ct_config.parse(pve_ct_config.render(config))
    assert (again.settings, again.description, again.sections) == (config.settings, config.description,
                                                                   config.sections)


def test_a_line_that_is_not_key_value_is_refused_with_its_number():
    with pytest.raises(pve_ct_config.ConfigError, match="line 2 is not 'key: value'"):
        pve_ct_config.parse("arch: amd64\nmemory 1024\n", strict=True)


@pytest.mark.parametrize("value, expected", [
    ("name=eth0,bridge=vmbr0,ip=dhcp,type=veth", {"name": "eth0", "bridge": "vmbr0", "ip": "dhcp", "type": "veth"}),
    ("local-lvm:vm-101-disk-0,size=16G", {"volume": "local-lvm:vm-101-disk-0", "size": "16G"}),
    ("", {}),
])
def test_property_strings(value, expected):
    assert pve_ct_config.parse_property_string(value) == expected


def test_property_string_prints_the_volume_then_name_then_the_rest_sorted():
    props = {"type": "veth", "ip": "10.217.0.5/24", "bridge": "vmbr0", "name": "eth0", "firewall": "1"}
    assert pve_ct_config.print_property_string(props) == "name=eth0,bridge=vmbr0,firewall=1,ip=10.217.0.5/24,type=veth"
    assert pve_ct_config.print_property_string({"size": "8G", "volume": "local:subvol-1-disk-0"}) == \
        "local:subvol-1-disk-0,size=8G"


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
    config = pve_ct_config.parse(CONF)
    assert config.digest == hashlib.sha1(CONF.encode()).hexdigest()
    assert config.settings == {"arch": "amd64", "hostname": "haproxy", "memory": "1024", "swap": "1024",
                               "lxc.cgroup.dir.container": "lxc/2017"}
    assert config.description == "the haproxy CT\nsecond line"
    assert (config.pending, config.pending_delete) == ({"cores": "2"}, ["tags"])
    assert config.size_mib("memory") == 1024
    assert pve_ct_config.parse("arch: amd64\n").size_mib("swap") == DEFAULT_MIB["swap"] == 512
    assert config.merged()["cores"] == "2" and "cores" not in config.merged(with_pending=False)


@pytest.mark.parametrize("updates, deletions, pending, pending_delete, expected", [
    ({"memory": "2048"}, (), {"cores": "2"}, ["tags"],
     CONF.replace("memory: 1024", "memory: 2048")),
    ({"memory": "2048", "onboot": "1"}, ("swap",), None, (),
     # PVE's write_pct_config: keys sorted, raw lxc.* keys last
     "#the haproxy CT\n#second line\narch: amd64\nhostname: haproxy\nmemory: 2048\nonboot: 1\n"
     "lxc.cgroup.dir.container: lxc/2017\n\n[before-upgrade]\nmemory: 512\n"),
    ({}, (), {"arch": "i386", "cores": "2"}, (),
     CONF.replace("cores: 2\ndelete: tags", "arch: i386\ncores: 2")),
])
def test_edit_then_render(updates, deletions, pending, pending_delete, expected):
    edited = pve_ct_config.edit(pve_ct_config.parse(CONF), updates, deletions, pending, pending_delete)
    assert pve_ct_config.render(edited) == expected
