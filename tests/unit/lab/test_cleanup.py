"""What ``labctl down`` removes, planned from what it finds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from enva_lab import procs
from enva_lab.cleanup import is_lab_process, plan_down

LABDIR = "/var/lib/enva-lab"


def full_facts(**changes):
    """A lab that is up: API, two CTs (one running), daemons, LXC's cgroups, a stray lxc-start."""
    facts = {
        "labdir": LABDIR, "labdir_exists": True, "cache": "/var/cache/enva-lab", "cache_exists": True,
        "processes": [("kmsg", 30, 300), ("ct-2017", 20, 200), ("api", 10, 100), ("unbound", 40, 400)],
        "running_cts": [2017],
        "stray_processes": [(20, ["python3", "-m", "enva_lab", "_supervise"]),
                            (21, ["lxc-start", "-F", "-n", "2017", "-P", LABDIR + "/lxc"])],
        "mounts": [LABDIR + "/lxc/2017/rootfs", LABDIR + "/lxc/2017/rootfs/proc"],
        "links": {"eth0": {"alias": None, "kind": None}, "vmbr0": {"alias": "enva-lab", "kind": "bridge"},
                  "veth2017i0": {"alias": None, "kind": "veth"}, "veth999i0": {"alias": None, "kind": "veth"}},
        "lab_vmids": [2017, 2101],
        "cgroups": ["memory/lxc", "memory/lxc/2017", "memory/lxc/2017/ns", "memory/lxc.monitor",
                    "memory/lxc.monitor/2017", "memory/lxc.pivot", "pids/lxc", "pids/lxc/300", "cpu/lxc"],
        "state": {"cgroup_parents_before": ["cpu/lxc"], "sysctl_before": {"kernel.pid_max": 32768},
                  "bridge_created": True},
        "dns_dir": "/var/lib/unbound/enva-lab", "dns_dir_exists": True,
    }
    facts.update(changes)
    return facts


def kinds(actions):
    return [(action.kind, action.target) for action in actions]


def test_a_clean_host_needs_nothing():
    assert plan_down({"labdir": LABDIR, "labdir_exists": False, "cache": "/c", "cache_exists": True}) == []


def test_the_whole_lab_comes_down_in_order():
    assert kinds(plan_down(full_facts())) == [
        ("stop_process", (10, 100)),            # the API first: it would start CTs again
        ("stop_ct", 2017),
        ("stop_process", (20, 200)),            # the CT's supervisor logs the stop
        ("stop_process", (30, 300)),
        ("stop_process", (40, 400)),
        ("kill_process", 21),                   # a stray lxc-start
        ("umount", LABDIR + "/lxc/2017/rootfs/proc"),
        ("umount", LABDIR + "/lxc/2017/rootfs"),
        ("delete_link", "veth2017i0"),
        ("delete_link", "vmbr0"),
        ("rmdir_cgroup", "memory/lxc/2017/ns"),
        ("rmdir_cgroup", "memory/lxc/2017"),
        ("rmdir_cgroup", "memory/lxc.monitor/2017"),
        ("rmdir_cgroup", "memory/lxc"),
        ("rmdir_cgroup", "memory/lxc.monitor"),
        ("rmdir_cgroup", "memory/lxc.pivot"),
        ("rmdir_cgroup", "pids/lxc"),
        ("restore_sysctl", "kernel.pid_max"),
        ("remove_tree", "/var/lib/unbound/enva-lab"),   # unbound's files, where its AppArmor profile allows them
        ("remove_tree", LABDIR),
    ]


def test_what_is_not_the_labs_stays():
    targets = [action.target for action in plan_down(full_facts())]
    assert "eth0" not in targets and "veth999i0" not in targets
    assert "pids/lxc/300" not in targets                 # another LXC user's container
    assert "cpu/lxc" not in targets                      # was there before the lab


@pytest.mark.parametrize("bridge, created, removed", [
    ({"alias": "enva-lab", "kind": "bridge"}, False, True),
    ({"alias": None, "kind": "bridge"}, True, True),
    ({"alias": "someone-else", "kind": "bridge"}, False, False),
])
def test_the_bridge_goes_only_when_it_is_the_labs(bridge, created, removed):
    facts = full_facts(links={"vmbr0": bridge}, state={"bridge_created": created})
    assert (("delete_link", "vmbr0") in kinds(plan_down(facts))) is removed


def test_after_a_failed_up_without_state_the_leftovers_still_go():
    facts = full_facts(processes=[], running_cts=[], state=None, labdir_exists=True,
                       stray_processes=[(77, ["unbound", "-d", "-p", "-c", LABDIR + "/dns/unbound.conf"])],
                       links={"vmbr0": {"alias": "enva-lab", "kind": "bridge"}}, mounts=[],
                       cgroups=["memory/lxc", "memory/lxc.monitor"])
    assert kinds(plan_down(facts)) == [("kill_process", 77), ("delete_link", "vmbr0"),
                                       ("rmdir_cgroup", "memory/lxc"), ("rmdir_cgroup", "memory/lxc.monitor"),
                                       ("remove_tree", "/var/lib/unbound/enva-lab"), ("remove_tree", LABDIR)]


def test_processes_left_in_a_stopped_labs_ct_cgroup_are_killed_before_its_cgroups_go():
    """A CT whose LXC monitor is gone still holds processes: nothing else ends them and rmdir fails."""
    facts = full_facts(ct_leftovers=[(2102, 501), (2102, 502), (2017, 90), (4000, 7)], lab_vmids=[2017, 2101, 2102],
                       cgroups=["memory/lxc/2102/ns/init.scope", "memory/lxc/2102/ns", "memory/lxc/2102"])
    actions = kinds(plan_down(facts))
    # 2017 is running (lxc-stop ends it), 4000 is not the lab's: only 2102's processes are killed
    assert [item for item in actions if item[0] == "kill_ct_process"] == [("kill_ct_process", 501),
                                                                          ("kill_ct_process", 502)]
    assert actions.index(("kill_ct_process", 502)) < actions.index(("rmdir_cgroup", "memory/lxc/2102/ns/init.scope"))


def test_purge_removes_the_cache_last():
    actions = plan_down(full_facts(), purge=True)
    assert kinds(actions)[-2:] == [("remove_tree", LABDIR), ("remove_tree", "/var/cache/enva-lab")]
    assert ("remove_tree", "/var/cache/enva-lab") not in kinds(plan_down(full_facts()))


@pytest.mark.parametrize("argv, ours", [
    (["lxc-start", "-F", "-n", "2017", "-P", LABDIR + "/lxc"], True),
    (["/usr/bin/lxc-attach", "-n", "2017", "-P", LABDIR + "/lxc", "--", "ps"], True),
    (["[lxc monitor] /var/lib/enva-lab/lxc 2017"], True),
    (["unbound", "-d", "-p", "-c", LABDIR + "/dns/unbound.conf"], True),
    (["/usr/bin/python3", "-m", "enva_lab", "_supervise", "--labdir", LABDIR, "2017"], True),
    (["/usr/bin/python3", "-m", "enva_lab.api_lab", "serve", "--labdir", LABDIR], True),
    (["tail", "-f", LABDIR + "/log/kern.log"], False),
    (["bash"], False),
    (["/usr/bin/python3", "-m", "http.server", "--directory", LABDIR], False),
    ([], False),
])
def test_only_the_labs_own_programs_are_ended(argv, ours):
    assert is_lab_process(argv) is ours


def test_processes_mentioning_match_the_path_not_a_longer_name(tmp_path):
    """A VM node's qemu under ``<labdir>-vm`` is not the lab's process: ``down`` must not end it."""
    labdir = tmp_path / "enva-lab"
    script = "import time; time.sleep(30)"
    inside = subprocess.Popen([sys.executable, "-c", script, str(labdir / "run" / "x")])
    beside = subprocess.Popen([sys.executable, "-c", script, "file:%s-vm/pve1/console.log" % labdir])
    try:
        found = {pid for pid, _argv in procs.processes_mentioning(str(labdir))}
        assert inside.pid in found and beside.pid not in found
    finally:
        for child in (inside, beside):
            child.kill()
            child.wait()
