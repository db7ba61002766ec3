"""What ends a fork storm when memory does not: a task limit (the pids controller).

On a stock Debian 13 VM of 3-4 GiB, CT 2017 at 1,024 MiB never fills: its socat forwarder runs as a
systemd service inside the CT, and systemd gives every service ``TasksMax=`` of its ``DefaultTasksMax``
(15 %) of the tasks it counts on the machine (the least of ``kernel.pid_max``, ``kernel.threads-max``,
which the kernel sizes from RAM, and the root's ``pids.max``). Neither sysctl is namespaced, so a CT's
systemd sizes its units from the host's: 15 % of 31,175 threads is 4,676 tasks on a 4 GiB VM, reached
long before 1 GiB is (a socat child holds about 200 KiB). The kernel then rejects the fork ("cgroup: fork
rejected by pids controller in /lxc/2017/ns/system.slice/...", once per cgroup), socat's listener exits on
the failed fork, systemd in the CT restarts it (``Restart=always``) and its children go with the old
cgroup: the socat count falls to a few dozen and climbs again, with no OOM and ``memory.events`` all 0.
More load changes nothing of that.
"""

import re
from pathlib import Path

from enva_lab import cgroup2, settings

FORK_REJECTED = re.compile(r"fork rejected by pids controller in (/\S+)")
SYSTEMD_DEFAULT_TASKS_MAX = 0.15
"""systemd's ``DefaultTasksMax=15%`` (systemd 252 and 257 alike)."""


def rejected_cgroups(kernel_lines, vmid):
    """The cgroups (``/lxc/VMID/...``) whose task limit refused a fork, in the order the kernel named them."""
    found = []
    prefix = "/lxc/%d" % vmid
    for line in kernel_lines:
        match = FORK_REJECTED.search(line)
        if match and (match.group(1) == prefix or match.group(1).startswith(prefix + "/")) \
                and match.group(1) not in found:
            found.append(match.group(1))
    return found


def pids_dir(cgroup, cgroup_root=None, v2=True):
    """The directory of ``cgroup`` (``/lxc/2017/ns/...``) in the pids controller (v2: the unified tree)."""
    root = Path(cgroup_root or settings.CGROUP_ROOT)
    return (root if v2 else root / "pids") / cgroup.lstrip("/")


def describe(cgroups, v2=True, cgroup_root=None, proc_sys="/proc/sys/kernel"):
    """What the limit was: ``{"cgroups": [...], "unit": name, "pids_max", "pids_events_max", "threads_max",
    "pid_max", "share_of_system", "systemd_default"}`` (None for what could not be read: a restarted unit's
    old cgroup is gone, its successor has the same limit)."""
    threads_max = cgroup2.int_value(cgroup2.read_file(Path(proc_sys) / "threads-max"))
    pid_max = cgroup2.int_value(cgroup2.read_file(Path(proc_sys) / "pid_max"))
    limit = events = None
    for cgroup in reversed(cgroups):
        directory = pids_dir(cgroup, cgroup_root, v2)
        limit = cgroup2.int_value(cgroup2.read_file(directory / "pids.max"))
        events = cgroup2.keyed(cgroup2.read_file(directory / "pids.events")).get("max")
        if limit is not None:
            break
    system = min(value for value in (threads_max, pid_max, 2 ** 62) if value)
    share = round(limit / system, 4) if limit and system else None
    unit = cgroups[-1].rsplit("/", 1)[-1] if cgroups else None
    return {"cgroups": list(cgroups), "unit": unit if unit and "." in unit else None, "pids_max": limit,
            "pids_events_max": events, "threads_max": threads_max, "pid_max": pid_max, "share_of_system": share,
            "systemd_default": share is not None and abs(share - SYSTEMD_DEFAULT_TASKS_MAX) < 0.002}


def message(vmid, limit, max_socat, memory_seen, memory_limit):
    """reproduce's closing line when a task limit, not memory, ended the storm."""
    what = limit["unit"] or limit["cgroups"][-1]
    bound = "pids.max %s" % ("{:,}".format(limit["pids_max"]) if limit["pids_max"] else "(not readable)")
    if limit["systemd_default"]:
        bound += (" = systemd's DefaultTasksMax 15%% of the %s tasks the kernel allows (kernel.threads-max, sized "
                  "from RAM; the CT's systemd reads the host's)" % "{:,}".format(
                      min(value for value in (limit["threads_max"], limit["pid_max"]) if value)))
    return ("reproduce: no OOM in /lxc/%d: a task limit ended the storm, not memory. The kernel refused forks in %s "
            "(%s): socat's listener exits when fork fails, systemd in the CT restarts it and its children go. Up to %s "
            "socat, memory at most %s of %s. More load only repeats it; to see the OOM give the CT less memory than "
            "the limit's socat children need (about 200 KiB each) or the unit TasksMax=infinity"
            % (vmid, what, bound, "{:,}".format(max_socat), memory_seen, memory_limit))
