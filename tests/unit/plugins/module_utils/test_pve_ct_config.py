"""pve_ct_config: the current settings of /etc/pve/lxc/VMID.conf."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import parse_ct_config, read_ct_configs

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "pve-lxc"


def test_snapshot_sections_are_not_current_settings():
    settings = parse_ct_config((CONFIGS / "2017.conf").read_text())
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
