"""CTs on a cgroup v2 host (every PVE 7/8 node, a stock Debian 12): their limits, read and written as PVE does.

pve-container writes a CT's memory into its LXC config as ``lxc.cgroup2.memory.max`` (memory MiB),
``lxc.cgroup2.memory.high`` (memory less 1/128 of it, at most 128 MiB less: memory x 1016 KiB below
16 GiB) and ``lxc.cgroup2.memory.swap.max`` (swap MiB). A live change (pve-common
``PVE::CGroup::change_memory_limit``) writes ``memory.swap.max``, then ``memory.high``, then
``memory.max``: :func:`change_memory_limit` is that order, the one the PVE API lab must call on v2.

The readers give ``labctl status`` what v2 has and v1 had not: ``memory.current``, ``memory.high``,
``memory.events`` (high, max, oom, oom_kill; hierarchical), ``memory.pressure`` (PSI).
"""

import os
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import parse_flat_keyed, parse_pressure
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import memory_high_bytes

from enva_lab import settings


def root():
    return settings.CGROUP_ROOT


def available(base=None):
    """Whether the host runs the unified hierarchy with the memory controller on."""
    try:
        return "memory" in (Path(base or root()) / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def lxc_limits(memory_mb, swap_mb):
    """``[(LXC key, bytes)]`` pve-container writes for ``memory``/``swap`` on a v2 host."""
    return [("lxc.cgroup2.memory.max", memory_mb * MIB),
            ("lxc.cgroup2.memory.high", memory_high_bytes(memory_mb)),
            ("lxc.cgroup2.memory.swap.max", swap_mb * MIB)]


def change_memory_limit(cgroup_dir, memory_mb, swap_mb, write=None):
    """Change a running CT's limits live in pve-common's order: swap.max, high, max.

    ``cgroup_dir`` is the CT's cgroup (``/sys/fs/cgroup/lxc/VMID``); ``write(path, text)`` defaults
    to writing the file. Returns ``[(file, value)]`` in the order written."""
    write = write or (lambda path, text: Path(path).write_text(text))
    order = [("memory.swap.max", swap_mb * MIB), ("memory.high", memory_high_bytes(memory_mb)),
             ("memory.max", memory_mb * MIB)]
    for name, value in order:
        write(os.path.join(str(cgroup_dir), name), "%d\n" % value)
    return order


def ct_dir(vmid, base=None):
    return Path(base or root()) / "lxc" / str(vmid)


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _value(text):
    """A cgroup v2 value: an int, or None for ``max`` / unreadable."""
    if text is None:
        return None
    word = text.split()[0] if text.split() else ""
    return int(word) if word.lstrip("-").isdigit() else None


def keyed(text):
    """``{key: int}`` from a flat keyed file (``memory.events``, ``memory.stat``, ``cpu.stat``)."""
    return {key: value for key, value in parse_flat_keyed(text).items() if isinstance(value, int)}


def pressure(text):
    """``{"some": {"avg10": 41.0, ..., "total": us}, "full": {...}}`` from ``memory.pressure``."""
    return parse_pressure(text) or {}


def ct_memory(vmid, base=None):
    """The CT's counters from ``lxc/VMID`` (None when it has no cgroup: the CT is down).

    The keys v1 gives (limit, usage, peak, failcnt, oom_kill) are filled from their v2 kin, so
    ``labctl status`` and ``flood`` read both alike; ``failcnt`` is ``memory.events`` max."""
    directory = ct_dir(vmid, base)
    if not directory.is_dir():
        return None
    events = keyed(_read(directory / "memory.events"))
    return {
        "cgroup": "/lxc/%d" % vmid,
        "version": "v2",
        "limit_bytes": _value(_read(directory / "memory.max")),
        "high_bytes": _value(_read(directory / "memory.high")),
        "usage_bytes": _value(_read(directory / "memory.current")),
        "peak_bytes": _value(_read(directory / "memory.peak")),
        "swap_max_bytes": _value(_read(directory / "memory.swap.max")),
        "swap_bytes": _value(_read(directory / "memory.swap.current")),
        "failcnt": events.get("max"),
        "events": events,
        "pressure": pressure(_read(directory / "memory.pressure")),
        "under_oom": False,
        "oom_kill": events.get("oom_kill", 0),
    }


def cgroup_dirs(vmid, base=None):
    top = ct_dir(vmid, base)
    return [Path(dirpath) for dirpath, _dirs, _files in os.walk(top)] if top.is_dir() else []


def ct_pids(vmid, base=None):
    pids = []
    for path in cgroup_dirs(vmid, base):
        pids += (_read(path / "cgroup.procs") or "").split()
    return pids


def ct_cpu_usec(vmid, base=None):
    return keyed(_read(ct_dir(vmid, base) / "cpu.stat")).get("usage_usec")


def stall_seconds(samples, min_high=100, answered_share=0.01):
    """How long the flood's last samples show the CT stuck at memory.high: queries sent, (almost) none
    answered (a late answer trickles in now and then: at most ``answered_share`` of those sent, plus one),
    and ``memory.events`` high still rising (at least ``min_high`` over the stretch). 0 when not stuck.

    ``samples`` are the flood's once-a-second ticks (``t``, ``sent``, ``answered``, ``high``)."""
    rows = [row for row in samples if row.get("high") is not None]
    if len(rows) < 2:
        return 0.0
    last = rows[-1]
    start = None
    for row in reversed(rows[:-1]):
        if row.get("state") == "down" or \
                last["answered"] - row["answered"] > answered_share * (last["sent"] - row["sent"]) + 1:
            break
        start = row
    if start is None or last["sent"] <= start["sent"] or last["high"] - start["high"] < min_high:
        return 0.0
    return round(last["t"] - start["t"], 1)
