"""A CT's memory cgroup (v1 or v2) as the PVE API lab reads and writes it: live limits in PVE's order."""

import errno
import os
import re
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils import cgroup_memory
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB

from enva_lab import cgroup2


class CgroupWriteError(Exception):
    """A cgroup file the kernel (or the fixture's rules) refused, in PVE's words."""

    def __init__(self, path, error):
        super().__init__("unable to write '%s' - %s" % (path, error.strerror))
        self.errno = error.errno


def cgroup_mounts(mountinfo="/proc/self/mountinfo"):
    mounts = []
    try:
        with open(mountinfo, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                fstype = fields[fields.index("-") + 1]
                if fstype in ("cgroup", "cgroup2"):
                    mounts.append(fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return mounts


# pve-common's PVE::ProcFSTools::parse_pressure: a line's avg10 is kept as the kernel printed it.
_PSI_LINE = re.compile(r"^(some|full)\s+avg10=(\d+\.\d+)\s+avg60=(\d+\.\d+)\s+avg300=(\d+\.\d+)\s+total=(\d+)")
PRESSURE_RESOURCES = ("cpu", "io", "memory")


def read_pressure(directory):
    """``{"pressure<resource><line>": avg10 text or None}`` of a cgroup v2 directory, as pve-container 6.0.7's
    vmstatus fills status/current: ``/sys/fs/cgroup/lxc/VMID/{cpu,memory,io}.pressure`` read with
    pve-common's read_cgroup_pressure. A missing file (cgroup v1, no such cgroup) gives None (JSON null) for
    its two fields; the avg10 is the kernel's text (``"53.00"``), which PVE's JSON writer sends as a string."""
    fields = {}
    for resource in PRESSURE_RESOURCES:
        text = cgroup_memory.read_file(str(Path(directory) / ("%s.pressure" % resource)))
        found = {}
        for line in (text or "").splitlines():
            match = _PSI_LINE.match(line)
            if match:
                found[match.group(1)] = match.group(2)
        for line in ("some", "full"):
            fields["pressure%s%s" % (resource, line)] = found.get(line)
    return fields


def read_int(path):
    value = cgroup_memory.parse_value(cgroup_memory.read_file(str(path)))
    return value if isinstance(value, int) else None


class CtCgroup:
    """A CT's memory cgroup (v1 or v2), read and written as PVE does."""

    def __init__(self, root, vmid):
        self.version, path = cgroup_memory.ct_cgroup(str(root), vmid)
        self.path = Path(path) if path else None
        self.vmid = vmid

    @property
    def running(self):
        return self.path is not None

    def usage(self):
        """``{mem, maxmem, swap, maxswap}`` in bytes (None for unlimited), mem without inactive file cache."""
        counters = cgroup_memory.normalize(self.version, str(self.path),
                                           cgroup_memory.read_raw(self.version, str(self.path)))
        stat = cgroup_memory.parse_flat_keyed(cgroup_memory.read_file(str(self.path / "memory.stat")))
        inactive = stat.get("total_inactive_file" if self.version == "v1" else "inactive_file", 0)
        usage = counters["usage_bytes"] or 0
        return {"mem": max(usage - (inactive if isinstance(inactive, int) else 0), 0),
                "maxmem": counters["limit_bytes"], "swap": counters["swap_usage_bytes"] or 0,
                "maxswap": counters["swap_limit_bytes"]}

    def pid(self):
        """The lowest PID in the CT's cgroup tree (its init, which systemd in the CT may have moved into a
        child such as ``ns/init.scope``), or None."""
        pids = []
        for directory, subdirs, _files in os.walk(self.path):
            if len(Path(directory).relative_to(self.path).parts) >= 3:
                subdirs.clear()
            text = cgroup_memory.read_file(os.path.join(directory, "cgroup.procs")) or ""
            pids.extend(int(item) for item in text.split() if item.isdigit())
        return min(pids) if pids else None

    def _write(self, name, value, mounts):
        path = self.path / name
        on_kernel = any(str(path).startswith(mount.rstrip("/") + "/") for mount in mounts)
        try:
            if not on_kernel:
                self._fixture_rules(name, value)
            with open(path, "w", encoding="ascii") as handle:
                handle.write("%s\n" % value)
        except OSError as error:
            raise CgroupWriteError(path, error) from error

    def _fixture_rules(self, name, value):
        """The kernel's cgroup v1 refusals, for fixture trees that are plain files."""
        if self.version != "v1":
            return
        limit = read_int(self.path / "memory.limit_in_bytes")
        if name == "memory.limit_in_bytes":
            usage = read_int(self.path / "memory.usage_in_bytes")
            memsw = read_int(self.path / "memory.memsw.limit_in_bytes")
            if usage is not None and 0 <= value < usage:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            if memsw is not None and value > memsw:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        elif name == "memory.memsw.limit_in_bytes" and limit is not None and value < limit:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    def set_limits(self, memory_mib, swap_mib, mounts):
        """Apply memory/swap to the running CT as PVE does, or raise CgroupWriteError (nothing half-done)."""
        mem = memory_mib * MIB
        swap = swap_mib * MIB
        if self.version == "v2":
            # pve-common's PVE::CGroup::change_memory_limit (enva_lab.cgroup2): swap.max, then high, then max;
            # what was written is put back when a later write is refused.
            written = []

            def write(path, text):
                name = os.path.basename(path)
                if name == "memory.swap.max" and not (self.path / name).exists():
                    return
                before = (self.path / name).read_text(encoding="ascii").strip()
                self._write(name, int(text), mounts)
                written.append((name, before))

            try:
                cgroup2.change_memory_limit(self.path, memory_mib, swap_mib, write=write)
            except CgroupWriteError:
                for name, before in reversed(written):
                    try:
                        self._write(name, before, mounts)
                    except CgroupWriteError:
                        pass
                raise
            return
        has_memsw = (self.path / "memory.memsw.limit_in_bytes").exists()
        if not has_memsw:
            self._write("memory.limit_in_bytes", mem, mounts)
            return
        old_memsw = read_int(self.path / "memory.memsw.limit_in_bytes")
        if old_memsw is not None and mem + swap > old_memsw:
            # Growing memory+swap: the memsw limit first, as the memory limit may never exceed it.
            self._write("memory.memsw.limit_in_bytes", mem + swap, mounts)
            try:
                self._write("memory.limit_in_bytes", mem, mounts)
            except CgroupWriteError:
                self._write("memory.memsw.limit_in_bytes", old_memsw, mounts)
                raise
        else:
            self._write("memory.limit_in_bytes", mem, mounts)
            self._write("memory.memsw.limit_in_bytes", mem + swap, mounts)
