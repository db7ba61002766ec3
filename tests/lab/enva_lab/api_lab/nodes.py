"""The PVE API lab's nodes, their CTs (configs and status), its worker tasks and the rrd samples."""

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils import memory_size, pve_ct_config
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB

from enva_lab.api_lab.cgroups import CtCgroup, read_int, read_pressure, cgroup_mounts
from enva_lab.api_lab.errors import ApiError


def write_atomically(path, text):
    """Replace ``path`` by ``text`` in one rename (readers see the old or the new file, never a mix)."""
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o640
    fd, tmp = tempfile.mkstemp(prefix=".%s." % path.name, dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Node:
    """One PVE node of the lab: where its CT configs and its cgroup tree are."""

    def __init__(self, name, config_dir, cgroup_root, labctl=None):
        self.name = name
        self.config_dir = Path(config_dir)
        self.cgroup_root = Path(cgroup_root)
        self.labctl = labctl

    def vmids(self):
        try:
            names = os.listdir(self.config_dir)
        except OSError:
            return []
        return sorted(vmid for vmid in map(pve_ct_config.config_vmid, names) if vmid is not None)

    def config_path(self, vmid):
        return self.config_dir / ("%d.conf" % vmid)

    def load(self, vmid):
        try:
            return pve_ct_config.parse(self.config_path(vmid).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ApiError(500, "Configuration file 'nodes/%s/lxc/%d.conf' does not exist" % (self.name, vmid)) from None

    def cgroup(self, vmid):
        return CtCgroup(self.cgroup_root, vmid)


def _uptime(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            boot_seconds = float(handle.read().split()[0])
        return max(int(boot_seconds - start_ticks / os.sysconf("SC_CLK_TCK")), 0)
    except (OSError, ValueError, IndexError):
        return 0


def _net_counters(vmid):
    base = Path("/sys/class/net/veth%di0/statistics" % vmid)
    # The host side of the veth receives what the CT sends.
    return {"netout": read_int(base / "rx_bytes") or 0, "netin": read_int(base / "tx_bytes") or 0}


def _size_bytes(volume):
    """The ``size=`` of a volume property string (``local:subvol-1-disk-0,size=8G``) in bytes, 0 if none."""
    size = pve_ct_config.parse_property_string(volume or "").get("size")
    try:
        return memory_size.parse_mib(size) * MIB if size else 0
    except ValueError:
        return 0


def ct_status(node, vmid, config=None, pve=9):
    """status/current of a CT: from its config, and from its live cgroup when it runs. ``pve`` 9 adds the six
    pressure fields of a running CT (pve-container 6.0.7), read where PVE reads them: ``<cgroup
    root>/lxc/VMID/*.pressure``, whatever the CT's cgroup version (null when missing); 8 has none."""
    config = config or node.load(vmid)
    cgroup = node.cgroup(vmid)
    memory, swap = config.size_mib("memory"), config.size_mib("swap")
    status = {
        "vmid": vmid, "name": config.settings.get("hostname", "CT%d" % vmid), "type": "lxc",
        "status": "running" if cgroup.running else "stopped", "uptime": 0, "cpu": 0,
        "cpus": int(config.settings.get("cores", os.cpu_count() or 1)),
        "mem": 0, "maxmem": memory * MIB, "swap": 0, "maxswap": swap * MIB,
        "disk": 0, "maxdisk": _size_bytes(config.settings.get("rootfs")), "diskread": 0, "diskwrite": 0,
        "netin": 0, "netout": 0, "ha": {"managed": 0}, "template": int(config.settings.get("template", 0)),
    }
    for key in ("tags", "lock"):
        if key in config.settings:
            status[key] = config.settings[key]
    if cgroup.running:
        usage = cgroup.usage()
        status["mem"], status["swap"] = usage["mem"], usage["swap"]
        if usage["maxmem"] is not None:
            status["maxmem"] = usage["maxmem"]
        if usage["maxswap"] is not None:
            status["maxswap"] = usage["maxswap"]
        pid = cgroup.pid()
        if pid:
            status["pid"] = pid
            status["uptime"] = _uptime(pid)
        status.update(_net_counters(vmid))
        if pve >= 9:
            status.update(read_pressure(node.cgroup_root / "lxc" / str(vmid)))
    return status


def host_memory():
    values = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _sep, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", 0)
    return {"total": total, "used": total - available, "free": values.get("MemFree", 0), "available": available}


def host_uptime():
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            return int(float(handle.read().split()[0]))
    except (OSError, ValueError):
        return 0


RRD_KEYS = ("cpu", "mem", "maxmem", "swap", "maxswap", "netin", "netout", "diskread", "diskwrite", "disk", "maxdisk")
PRESSURE_FIELDS = tuple("pressure%s%s" % (resource, line) for resource in ("cpu", "io", "memory")
                        for line in ("some", "full"))


class Task:
    """A PVE worker task (UPID) that runs labctl."""

    def __init__(self, node, kind, vmid, user, command, log_dir):
        start = int(time.time())
        self.upid = "UPID:%s:%08X:%08X:%08X:%s:%d:%s:" % (node, os.getpid(), 0, start, kind, vmid, user)
        self.info = {"upid": self.upid, "node": node, "pid": os.getpid(), "pstart": 0, "starttime": start,
                     "type": kind, "id": str(vmid), "user": user, "status": "running"}
        self.command = command
        self.log_path = Path(log_dir) / (self.upid.replace(":", "_") + ".log")
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=600, check=False)
            output = (done.stdout or "") + (done.stderr or "")
            exitstatus = "OK" if done.returncode == 0 else (
                (output.strip().splitlines() or ["command '%s' failed: exit code %d" % (" ".join(self.command), done.returncode)])[-1])
        except (OSError, subprocess.TimeoutExpired) as error:
            output, exitstatus = str(error), "command '%s' failed: %s" % (" ".join(self.command), error)
        self.log_path.write_text(output, encoding="utf-8")
        self.info.update(status="stopped", exitstatus=exitstatus)


class ApiLab:
    """What the API serves: nodes, their CTs, the tasks, the rrd samples."""

    def __init__(self, nodes, labdir, synthetic=False, pve=9):
        self.nodes = {node.name: node for node in nodes}
        self.pve = pve
        self.labdir = Path(labdir)
        self.synthetic = synthetic
        self.lock = threading.RLock()
        self.tasks = {}
        self.samples = {}
        self.mounts = cgroup_mounts()

    def node(self, name):
        node = self.nodes.get(name)
        if node is None:
            raise ApiError(500, "hostname lookup '%s' failed - failed to get address info for: %s: "
                                "Name or service not known" % (name, name))
        return node

    def sample(self):
        """One rrd sample of every running CT (the history rrddata answers from)."""
        now = int(time.time())
        for node in self.nodes.values():
            for vmid in node.vmids():
                try:
                    status = ct_status(node, vmid, pve=self.pve)
                except (ApiError, OSError):
                    continue
                if status["status"] != "running":
                    continue
                history = self.samples.setdefault((node.name, vmid), [])
                # As pvestatd feeds the RRD: numbers, "U" (left out here) for what is undefined.
                values = {key: status[key] for key in RRD_KEYS if status.get(key) is not None}
                for key in PRESSURE_FIELDS:
                    if status.get(key) is not None:
                        values[key] = float(status[key])
                history.append((now, values))
                del history[:-2000]


# --- synthetic cluster ----------------------------------------------------------------------------------------
