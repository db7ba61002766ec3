"""cgroup_memory: v1 and v2 counters of a CT read under a root, in one shape."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import (
    ct_cgroup, discover_vmids, layout, parse_flat_keyed, parse_pressure, parse_value, read_counters)

CGROUP = Path(__file__).resolve().parents[2] / "fixtures" / "cgroup"
V2 = str(CGROUP / "v2-node")
V1 = str(CGROUP / "v1-node")
GIB = 1 << 30


def test_layouts():
    assert layout(V2) == ("v2", V2)
    assert layout(V1) == ("v1", V1 + "/memory")
    assert layout(str(CGROUP)) == (None, None)


def test_discover_running_cts_not_monitors():
    assert discover_vmids(V2) == {101, 102, 2017}
    assert discover_vmids(V1) == {703}
    assert discover_vmids("/nonexistent") == set()


def test_v2_ct_2017_after_the_oom():
    counters = read_counters(V2, 2017)
    assert counters["cgroup_version"] == 2 and counters["path"] == V2 + "/lxc/2017"
    assert (counters["limit_bytes"], counters["peak_bytes"], counters["usage_bytes"]) == (GIB, GIB, 1073213440)
    assert counters["high_bytes"] is None                                  # "max"
    assert (counters["swap_limit_bytes"], counters["swap_usage_bytes"], counters["swap_peak_bytes"]) == (GIB, GIB, GIB)
    assert (counters["limit_hits"], counters["oom_events"], counters["oom_kills"]) == (48213, 9, 7)
    assert counters["swap_fail_events"] == 297
    assert counters["pressure"]["some"] == {"avg10": 12.5, "avg60": 8.31, "avg300": 2.1, "total": 48211033}
    assert counters["raw"]["memory.events"]["oom_group_kill"] == 0
    assert counters["raw"]["memory.high"] == "max"


def test_v2_unlimited_ct():
    counters = read_counters(V2, 102)
    assert counters["limit_bytes"] is None and counters["swap_limit_bytes"] is None
    assert counters["peak_bytes"] is None and "memory.peak" not in counters["raw"]     # kernels before 5.19


def test_v1_ct_703():
    counters = read_counters(V1, 703)
    assert counters["cgroup_version"] == 1
    assert counters["limit_bytes"] == 512 << 20 and counters["peak_bytes"] == 512 << 20
    assert counters["swap_limit_bytes"] == 512 << 20                       # memsw (1 GiB) minus memory
    assert counters["swap_usage_bytes"] == 1070000128 - 536698880
    assert (counters["limit_hits"], counters["oom_kills"], counters["under_oom"]) == (90412, 3, False)
    assert counters["pressure"] is None and counters["oom_events"] is None


def test_same_keys_for_both_versions():
    assert set(read_counters(V1, 703)) == set(read_counters(V2, 2017))


def test_stopped_ct_has_no_counters():
    assert read_counters(V2, 9000) is None
    assert ct_cgroup(V2, 9000) == ("v2", None)
    assert read_counters("/nonexistent", 2017) is None


def test_unreadable_file_is_left_out(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(V2, root)
    (root / "lxc" / "101" / "memory.peak").unlink()
    (root / "lxc" / "101" / "memory.events").unlink()
    (root / "lxc" / "101" / "memory.events").mkdir()                        # a directory cannot be read as a file
    counters = read_counters(str(root), 101)
    assert counters["peak_bytes"] is None and counters["oom_kills"] is None
    assert counters["limit_bytes"] == 2 * GIB


@pytest.mark.parametrize("text, value", [
    ("1073741824\n", 1073741824), ("max\n", "max"), ("", None), (None, None), ("  7 ", 7)])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_parse_flat_keyed_and_pressure():
    assert parse_flat_keyed("oom_kill_disable 0\nunder_oom 1\noom_kill 3\nbroken\n") == {
        "oom_kill_disable": 0, "under_oom": 1, "oom_kill": 3}
    assert parse_pressure("") is None
    assert parse_pressure("full avg10=1.00 avg60=0.50 avg300=0.10 total=99\n") == {
        "full": {"avg10": 1.0, "avg60": 0.5, "avg300": 0.1, "total": 99}}


@pytest.mark.skipif(not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
                    reason="this host has no cgroup v1 memory controller")
def test_this_hosts_real_v1_hierarchy_is_detected():
    assert layout("/sys/fs/cgroup")[0] == "v1"


def test_read_raw_selected_files_and_page_cache(tmp_path):
    from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import (
        page_cache_bytes, pressure_seconds, read_raw)
    (tmp_path / "memory.stat").write_text("anon 1000\nfile 4096\nkernel 12\n")
    (tmp_path / "memory.current").write_text("8192\n")
    (tmp_path / "memory.pressure").write_text(
        "some avg10=1.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=250\n")
    raw = read_raw("v2", str(tmp_path), ("memory.stat", "memory.current", "memory.pressure", "memory.max"))
    assert set(raw) == {"memory.stat", "memory.current", "memory.pressure"}          # memory.max absent
    assert page_cache_bytes("v2", raw["memory.stat"]) == 4096
    assert page_cache_bytes("v1", {"cache": 10, "total_cache": 30}) == 30
    assert page_cache_bytes("v1", {}) is None and page_cache_bytes("v2", None) is None
    assert pressure_seconds(raw["memory.pressure"]) == {"some": 1.5, "full": 0.00025}
    assert pressure_seconds(None) == {}
