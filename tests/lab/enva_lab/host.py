"""The host as the lab sees it: commands, links, the memory cgroup tree, and a snapshot of it all."""

import json
import os
import shutil
import subprocess
from pathlib import Path

from enva_lab import cgroup2, procs, settings
from enva_lab.errors import LabError

MEMORY_V1 = settings.CGROUP_ROOT / "memory"


def run(argv, check=True, timeout=120, what=None, **kwargs):
    """Run a command; LabError with its last stderr line when it fails and ``check`` is set."""
    try:
        done = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, timeout=timeout,
                              check=False, **kwargs)
    except FileNotFoundError:
        raise LabError("%s is not installed; run make setup (it installs tools/debian-packages.txt)"
                       % argv[0]) from None
    except subprocess.TimeoutExpired:
        raise LabError("%s did not finish within %d s" % (what or " ".join(map(str, argv)), timeout)) from None
    if check and done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise LabError("%s failed (exit %d): %s" % (what or " ".join(map(str, argv)), done.returncode,
                                                    detail[-1] if detail else "no output"))
    return done


def links():
    """``{name: link}`` from ``ip -j -d link show`` (each with ``ifalias``, ``master``, ``linkinfo``)."""
    return {link["ifname"]: link for link in json.loads(run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")}


def addresses():
    """``[(interface, "10.217.0.1/24")]`` of every IPv4 address on the host."""
    found = []
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in link.get("addr_info", []):
            found.append((link["ifname"], "%s/%s" % (info["local"], info["prefixlen"])))
    return found


def link_kind(link):
    return (link.get("linkinfo") or {}).get("info_kind")


def cpu_count():
    return len(os.sched_getaffinity(0))


def memory_cgroup_v1():
    """Whether the cgroup v1 memory controller is mounted where the lab reads it."""
    return (MEMORY_V1 / "memory.limit_in_bytes").exists()


def cgroup_backend():
    """``cgroup-v1`` (the memory controller mounted at /sys/fs/cgroup/memory), ``cgroup-v2`` (the unified
    hierarchy with the memory controller: PVE 7/8, stock Debian 12), or None."""
    if memory_cgroup_v1():
        return "cgroup-v1"
    if cgroup2.available():
        return "cgroup-v2"
    return None


def has_memsw():
    """Swap accounting (cgroup v1 ``memory.memsw.*``)."""
    return (MEMORY_V1 / "memory.memsw.limit_in_bytes").exists()


def v1_hierarchies():
    """Every mounted cgroup v1 hierarchy directory (memory, cpu,cpuacct, pids, systemd, ...) and the unified one."""
    found = []
    if cgroup2.available():             # a pure v2 host: one hierarchy, the root itself
        return [settings.CGROUP_ROOT]
    try:
        entries = sorted(os.listdir(settings.CGROUP_ROOT))
    except OSError:
        return found
    for name in entries:
        path = settings.CGROUP_ROOT / name
        if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists():
            found.append(path)
    return found


def cgroup_dirs(root, relative):
    """Every cgroup directory at and under ``root/relative``, deepest first (the order rmdir needs)."""
    top = root / relative
    if not top.is_dir():
        return []
    found = [Path(dirpath) for dirpath, _dirs, _files in os.walk(top)]
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def cgroup_pids(path):
    """The PIDs in one cgroup directory's ``cgroup.procs`` (empty when it is gone or unreadable)."""
    try:
        return [int(word) for word in (Path(path) / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def read_int(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_keyed(path):
    """``{key: int}`` from a ``key value`` file such as ``memory.oom_control``."""
    values = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return values
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def ct_memory(vmid):
    """The CT's memory counters from its cgroup v1 memcg ``lxc/VMID`` (None when it has none: the CT is down).

    ``oom_kill`` is summed over the CT's whole memcg subtree: on cgroup v1 the kernel counts a kill
    only in the victim's own memcg (``lxc/VMID/ns/...``).
    """
    if not memory_cgroup_v1():
        return cgroup2.ct_memory(vmid)
    base = MEMORY_V1 / "lxc" / str(vmid)
    if not base.is_dir():
        return None
    oom = read_keyed(base / "memory.oom_control")
    kills = sum(read_keyed(path / "memory.oom_control").get("oom_kill", 0)
                for path in cgroup_dirs(MEMORY_V1, "lxc/%d" % vmid))
    return {
        "cgroup": "/lxc/%d" % vmid,
        "limit_bytes": read_int(base / "memory.limit_in_bytes"),
        "usage_bytes": read_int(base / "memory.usage_in_bytes"),
        "peak_bytes": read_int(base / "memory.max_usage_in_bytes"),
        "failcnt": read_int(base / "memory.failcnt"),
        "memsw_limit_bytes": read_int(base / "memory.memsw.limit_in_bytes"),
        "memsw_usage_bytes": read_int(base / "memory.memsw.usage_in_bytes"),
        "memsw_peak_bytes": read_int(base / "memory.memsw.max_usage_in_bytes"),
        "under_oom": bool(oom.get("under_oom", 0)),
        "oom_kill": kills,
    }


def ct_processes(vmid):
    """``{command: count}`` of the processes in the CT's memcg subtree."""
    if memory_cgroup_v1():
        pids = []
        for path in cgroup_dirs(MEMORY_V1, "lxc/%d" % vmid):
            try:
                pids += (path / "cgroup.procs").read_text().split()
            except OSError:
                continue
    else:
        pids = cgroup2.ct_pids(vmid)
    counts = {}
    for pid in pids:
        try:
            comm = Path("/proc/%s/comm" % pid).read_text().strip()
        except OSError:
            continue
        counts[comm] = counts.get(comm, 0) + 1
    return counts


def ct_cpu_usec(vmid):
    """CPU time the CT has used, in microseconds (cpuacct; cpu.stat on v2), or None."""
    if not memory_cgroup_v1() and cgroup2.available():
        return cgroup2.ct_cpu_usec(vmid)
    for hierarchy in ("cpuacct", "cpu,cpuacct"):
        value = read_int(settings.CGROUP_ROOT / hierarchy / "lxc" / str(vmid) / "cpuacct.usage")
        if value is not None:
            return value // 1000
    return None


def sysctl_read(name):
    return read_int("/proc/sys/" + name.replace(".", "/"))


def sysctl_write(name, value):
    Path("/proc/sys/" + name.replace(".", "/")).write_text("%d\n" % value)


def snapshot(labdir, lxcpath):
    """What ``labctl down`` must leave as it found it: links, LXC containers (default path and the
    lab's), the cgroup trees' LXC part, and processes that mention the lab's paths."""
    lxc_ls = shutil.which("lxc-ls")
    containers = run([lxc_ls, "-1"], check=False).stdout.split() if lxc_ls else []
    lab_containers = run([lxc_ls, "-1", "-P", lxcpath], check=False).stdout.split() if lxc_ls else []
    cgroups = sorted(str(path.relative_to(settings.CGROUP_ROOT)) for hierarchy in v1_hierarchies()
                     for parent in settings.LXC_CGROUP_PARENTS for path in cgroup_dirs(hierarchy, parent))
    return {
        "links": sorted(links()),
        "lxc_ls": containers,
        "lab_lxc_ls": lab_containers,
        "lxc_cgroups": cgroups,
        "lab_processes": sorted(" ".join(argv) for _pid, argv in procs.processes_mentioning(str(labdir))),
    }
