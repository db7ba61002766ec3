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
from ansible_collections.enva.pve.plugins.module_utils.oom_report import STALL_PSI_FULL_AVG10, STALL_PSI_SOME_AVG10
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


def read_file(path):
    try:
        return Path(path).read_text()
    except OSError:
        return None


def int_value(text):
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
    events = keyed(read_file(directory / "memory.events"))
    return {
        "cgroup": "/lxc/%d" % vmid,
        "version": "v2",
        "limit_bytes": int_value(read_file(directory / "memory.max")),
        "high_bytes": int_value(read_file(directory / "memory.high")),
        "usage_bytes": int_value(read_file(directory / "memory.current")),
        "peak_bytes": int_value(read_file(directory / "memory.peak")),
        "swap_max_bytes": int_value(read_file(directory / "memory.swap.max")),
        "swap_bytes": int_value(read_file(directory / "memory.swap.current")),
        "failcnt": events.get("max"),
        "events": events,
        "pressure": pressure(read_file(directory / "memory.pressure")),
        "under_oom": False,
        "oom_kill": events.get("oom_kill", 0),
    }


def cgroup_dirs(vmid, base=None):
    top = ct_dir(vmid, base)
    return [Path(dirpath) for dirpath, _dirs, _files in os.walk(top)] if top.is_dir() else []


def ct_pids(vmid, base=None):
    pids = []
    for path in cgroup_dirs(vmid, base):
        pids += (read_file(path / "cgroup.procs") or "").split()
    return pids


def ct_cpu_usec(vmid, base=None):
    return keyed(read_file(ct_dir(vmid, base) / "cpu.stat")).get("usage_usec")


def _pressed(row, psi_full, psi_some):
    full, some = row.get("psi_full10"), row.get("psi_some10")
    return (full is not None and full >= psi_full) or (some is not None and some >= psi_some)


def stall_window(samples, min_high=100, answered_share=0.01, degraded_share=0.5,
                 psi_full=STALL_PSI_FULL_AVG10, psi_some=STALL_PSI_SOME_AVG10):
    """The stretch at the end of the flood's samples in which the CT is stuck at memory.high, or None.

    ``samples`` are the flood's once-a-second ticks (``t``, ``sent``, ``answered``, ``high``, and on v2
    ``psi_full10``/``psi_some10``: ``memory.pressure`` avg10). ``memory.events`` high must climb by at least
    ``min_high`` over the stretch, and either

    * ``silence`` (the bookworm VM's shape): (almost) nothing answered, at most ``answered_share`` of the
      queries sent plus one; or
    * ``trickle`` (the trixie VM's shape, "thrashing with 0 OOM kills"): the CT still answers now and then,
      but ``memory.pressure`` full avg10 is at least ``psi_full`` (or some avg10 at least ``psi_some``) at
      every tick of the stretch and fewer than ``degraded_share`` of the queries are answered.

    The PSI thresholds are the collection's (``oom_report.STALL_PSI_*``, what the evidence and the audit call a
    stall). Returns ``{"seconds", "shape", "sent", "answered", "high", "psi_full10_min", "psi_full10_max"}``."""
    rows = [row for row in samples if row.get("high") is not None]
    if len(rows) < 2:
        return None
    last = rows[-1]
    start, shape = None, None
    pressed = last.get("state") != "down" and _pressed(last, psi_full, psi_some)
    for row in reversed(rows[:-1]):
        if row.get("state") == "down":
            break
        sent, answered = last["sent"] - row["sent"], last["answered"] - row["answered"]
        pressed = pressed and _pressed(row, psi_full, psi_some)
        if answered <= answered_share * sent + 1:
            kind = "silence"
        elif pressed and answered < degraded_share * sent:
            kind = "trickle"
        else:
            break
        start, shape = row, kind
    if start is None or last["sent"] <= start["sent"] or last["high"] - start["high"] < min_high:
        return None
    window = [row for row in rows if row["t"] >= start["t"]]
    fulls = [row["psi_full10"] for row in window if row.get("psi_full10") is not None]
    return {"seconds": round(last["t"] - start["t"], 1), "shape": shape, "sent": last["sent"] - start["sent"],
            "answered": last["answered"] - start["answered"], "high": last["high"] - start["high"],
            "psi_full10_min": min(fulls) if fulls else None, "psi_full10_max": max(fulls) if fulls else None}


def stall_seconds(samples, **rule):
    """How long the flood's last samples show the CT stuck at memory.high (:func:`stall_window`); 0 when not."""
    window = stall_window(samples, **rule)
    return window["seconds"] if window else 0.0
