"""What ends a fork storm when memory does not: the kernel's "fork rejected by pids controller" line, the
unit's pids.max and whether it is systemd's DefaultTasksMax of the host's threads-max (enva_lab.tasklimit)."""

from __future__ import annotations

from enva_lab import tasklimit

LINES = [
    "2026-12-06T10:00:01.000000+0000 enva-stock kernel: cgroup: fork rejected by pids controller in "
    "/lxc/2017/ns/system.slice/dns-forwarder.service",
    "2026-12-06T10:00:02.000000+0000 enva-stock kernel: cgroup: fork rejected by pids controller in "
    "/lxc/20170/ns/system.slice/x.service",                       # another CT whose VMID starts alike
    "2026-12-06T10:01:40.000000+0000 enva-stock kernel: cgroup: fork rejected by pids controller in "
    "/lxc/2017/ns/system.slice/dns-forwarder.service",           # the restarted unit's new cgroup: one name
    "2026-12-06T10:01:41.000000+0000 enva-stock kernel: vmbr0: port 1(veth2017i0) entered blocking state",
]


def test_only_the_cts_own_cgroups_once_each():
    assert tasklimit.rejected_cgroups(LINES, 2017) == ["/lxc/2017/ns/system.slice/dns-forwarder.service"]
    assert tasklimit.rejected_cgroups(LINES[3:], 2017) == []


def _tree(tmp_path, pids_max, events, threads_max=31175, pid_max=4194304):
    unit = tmp_path / "cgroup" / "lxc" / "2017" / "ns" / "system.slice" / "dns-forwarder.service"
    unit.mkdir(parents=True)
    (unit / "pids.max").write_text("%s\n" % pids_max)
    (unit / "pids.events").write_text("max %d\n" % events)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "threads-max").write_text("%d\n" % threads_max)
    (proc / "pid_max").write_text("%d\n" % pid_max)
    return tmp_path / "cgroup", proc


def test_systemds_default_share_of_the_hosts_threads_is_named(tmp_path):
    root, proc = _tree(tmp_path, 4676, 212)              # a 4 GiB trixie VM: 15 % of 31,175
    limit = tasklimit.describe(["/lxc/2017/ns/system.slice/dns-forwarder.service"], cgroup_root=root, proc_sys=proc)
    assert limit["unit"] == "dns-forwarder.service" and limit["pids_max"] == 4676 and limit["pids_events_max"] == 212
    assert limit["systemd_default"] and limit["threads_max"] == 31175
    text = tasklimit.message(2017, limit, 4650, "700.0 MiB", "1024.0 MiB")
    assert "a task limit ended the storm, not memory" in text and "pids.max 4,676" in text
    assert "DefaultTasksMax 15%" in text and "dns-forwarder.service" in text and "raise --qps" not in text


def test_a_limit_set_by_hand_is_not_called_systemds(tmp_path):
    root, proc = _tree(tmp_path, 512, 3)
    limit = tasklimit.describe(["/lxc/2017/ns/system.slice/dns-forwarder.service"], cgroup_root=root, proc_sys=proc)
    assert limit["pids_max"] == 512 and not limit["systemd_default"]
    assert "DefaultTasksMax" not in tasklimit.message(2017, limit, 500, "1 MiB", "2 MiB")


def test_a_gone_cgroup_still_names_the_unit(tmp_path):
    limit = tasklimit.describe(["/lxc/2017/ns/system.slice/dns-forwarder.service"], cgroup_root=tmp_path / "none",
                               proc_sys=tmp_path / "none")
    assert limit["pids_max"] is None and limit["unit"] == "dns-forwarder.service" and not limit["systemd_default"]
    assert "pids.max (not readable)" in tasklimit.message(2017, limit, 10, "1 MiB", "2 MiB")


def test_cgroup_v1_has_a_pids_hierarchy(tmp_path):
    assert tasklimit.pids_dir("/lxc/2017/ns", tmp_path, v2=False) == tmp_path / "pids" / "lxc" / "2017" / "ns"
    assert tasklimit.pids_dir("/lxc/2017/ns", tmp_path, v2=True) == tmp_path / "lxc" / "2017" / "ns"


def test_the_stock_trixie_vms_storm_is_a_task_limit_not_a_stall():
    """The capture of a stock Debian 13 VM (tests/unit/fixtures/vm-node/task-limit-1024m): the kernel named the
    forwarder's unit, socat's journal says fork failed, and the stall rule sees no stall (memory.events all 0)."""
    import re                                     # pylint: disable=import-outside-toplevel
    from enva_lab import cgroup2, settings        # pylint: disable=import-outside-toplevel
    capture = settings.CHECKOUT / "tests" / "unit" / "fixtures" / "vm-node" / "task-limit-1024m"
    kernel = (capture / "kern.log").read_text().splitlines()
    assert tasklimit.rejected_cgroups(kernel, 2017) == ["/lxc/2017/ns/system.slice/dns-forwarder.service"]
    assert "E fork(): Resource temporarily unavailable" in (capture / "dns-forwarder.journal.log").read_text()
    rows = []
    for line in (capture / "flood-ticks.txt").read_text().splitlines():
        match = re.match(r"\s*([\d.]+)s\s+sent\s+(\d+)\s+answered\s+(\d+).* (\d+) socat.*events high (\d+) max (\d+), "
                         r"PSI full ([\d.]+)%", line)
        if match:
            rows.append({"t": float(match.group(1)), "sent": int(match.group(2)), "answered": int(match.group(3)),
                         "socat": int(match.group(4)), "high": int(match.group(5)), "psi_full10": float(match.group(7)),
                         "state": "running"})
    assert len(rows) > 50 and max(row["socat"] for row in rows) == 4616 and rows[-1]["socat"] < 3100
    assert all(cgroup2.stall_window(rows[:index + 1]) is None for index in range(len(rows)))


def test_a_flood_cut_short_while_the_ct_was_still_filling_says_give_it_more_time():
    from enva_lab import incident
    result = {"vmid": 2017, "sent": 34538, "elapsed": 601.6, "max_socat": 4485,
              "memory_max_seen_bytes": 955 * 1048576, "limit_bytes": 1024 * 1048576}
    text = incident.no_oom_message(result)
    assert "still filling" in text and "955.0 MiB of 1024.0 MiB" in text and "4485 socat" in text
    assert "--max-seconds, at most 900" in text and "raise --qps" not in text


def test_a_flood_that_never_filled_the_ct_says_raise_the_rate():
    from enva_lab import incident
    result = {"vmid": 2017, "sent": 1200, "elapsed": 120.0, "max_socat": 40,
              "memory_max_seen_bytes": 100 * 1048576, "limit_bytes": 1024 * 1048576}
    text = incident.no_oom_message(result)
    assert "raise --qps or --max-seconds" in text and "still filling" not in text
