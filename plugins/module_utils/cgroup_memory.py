# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CT's memory cgroup counters, cgroup v1 or v2, read under a root path.

PVE puts CT VMID's cgroup at ``lxc/VMID``: ``<root>/lxc/VMID`` on cgroup v2
(PVE 7+), ``<root>/memory/lxc/VMID`` on cgroup v1. Both are read into one
normalized shape (bytes; None for "unlimited" or "not available") with the
raw values kept beside it.
"""

from __future__ import absolute_import, division, print_function

import os
import re

__metaclass__ = type

# cgroup v1 prints "no limit" as PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 on x86_64).
V1_UNLIMITED = 1 << 62

V2_FILES = ("memory.max", "memory.high", "memory.current", "memory.peak", "memory.min", "memory.low",
            "memory.swap.max", "memory.swap.current", "memory.swap.peak", "memory.events",
            "memory.swap.events", "memory.pressure", "memory.oom.group")
V1_FILES = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt",
            "memory.oom_control", "memory.memsw.limit_in_bytes", "memory.memsw.usage_in_bytes",
            "memory.memsw.max_usage_in_bytes", "memory.memsw.failcnt", "memory.soft_limit_in_bytes")
_FLAT_KEYED = ("memory.events", "memory.swap.events", "memory.oom_control", "memory.stat")
_PRESSURE = re.compile(r"^(some|full) (.*)$")


def layout(root):
    """``("v2", dir)``, ``("v1", dir)`` or ``(None, None)`` for the memory controller under ``root``."""
    controllers = os.path.join(root, "cgroup.controllers")
    try:
        with open(controllers) as handle:
            if "memory" in handle.read().split():
                return "v2", root
    except (IOError, OSError):
        pass
    v1 = os.path.join(root, "memory")
    if os.path.isfile(os.path.join(v1, "memory.limit_in_bytes")) or os.path.isdir(os.path.join(v1, "lxc")):
        return "v1", v1
    return None, None


def ct_cgroup(root, vmid):
    """``(version, path)`` of CT ``vmid``'s memory cgroup, or ``(version, None)`` when it has none (stopped)."""
    version, base = layout(root)
    if version is None:
        return None, None
    path = os.path.join(base, "lxc", str(vmid))
    return version, (path if os.path.isdir(path) else None)


def discover_vmids(root):
    """VMIDs that have a memory cgroup under ``lxc/`` (running CTs)."""
    version, base = layout(root)
    if version is None:
        return set()
    try:
        names = os.listdir(os.path.join(base, "lxc"))
    except (IOError, OSError):
        return set()
    return {int(name) for name in names if name.isdigit()}


def read_file(path):
    """The text of a cgroup (or /proc) file, None when it cannot be read (gone with its CT, no such file).

    Plain ``os.open``/``os.read``: about six times cheaper than ``open()`` per file, which counts for a
    reader that scans every CT's files every few seconds (enva-oom-watch).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IOError, OSError):
        return None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (IOError, OSError):
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_value(text):
    """A single-value file: int, or ``"max"`` kept as the string, or None."""
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return "max"
    try:
        return int(text)
    except ValueError:
        return text or None


def parse_flat_keyed(text):
    """``key value`` lines (memory.events, memory.oom_control, memory.stat) as a dict of ints."""
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = int(parts[1])
            except ValueError:
                values[parts[0]] = parts[1]
    return values


def parse_pressure(text):
    """PSI (``some avg10=0.00 avg60=0.00 avg300=0.00 total=0``) as nested dicts; None when absent."""
    if not text:
        return None
    result = {}
    for line in text.splitlines():
        match = _PRESSURE.match(line.strip())
        if not match:
            continue
        fields = {}
        for pair in match.group(2).split():
            key, _sep, value = pair.partition("=")
            try:
                fields[key] = float(value) if "." in value else int(value)
            except ValueError:
                continue
        result[match.group(1)] = fields
    return result or None


def read_raw(version, path, names=None):
    """Every counter file of the cgroup that exists (or only ``names``), parsed; absent files are left out."""
    raw = {}
    for name in (names or (V2_FILES if version == "v2" else V1_FILES)):
        text = read_file(os.path.join(path, name))
        if text is None:
            continue
        if name in _FLAT_KEYED:
            raw[name] = parse_flat_keyed(text)
        elif name == "memory.pressure":
            raw[name] = parse_pressure(text)
        else:
            raw[name] = parse_value(text)
    return raw


def _bytes(value):
    """A limit or counter as bytes; None for max/unlimited/absent."""
    if not isinstance(value, int) or value >= V1_UNLIMITED:
        return None
    return value


def _difference(total, part):
    if total is None or part is None:
        return None
    return max(total - part, 0)


def normalize(version, path, raw):
    """One shape for v1 and v2 (see the module's RETURN for each key)."""
    if version == "v2":
        events = raw.get("memory.events") or {}
        swap_events = raw.get("memory.swap.events") or {}
        return {
            "cgroup_version": 2,
            "path": path,
            "limit_bytes": _bytes(raw.get("memory.max")),
            "high_bytes": _bytes(raw.get("memory.high")),
            "usage_bytes": _bytes(raw.get("memory.current")),
            "peak_bytes": _bytes(raw.get("memory.peak")),
            "swap_limit_bytes": _bytes(raw.get("memory.swap.max")),
            "swap_usage_bytes": _bytes(raw.get("memory.swap.current")),
            "swap_peak_bytes": _bytes(raw.get("memory.swap.peak")),
            "limit_hits": events.get("max"),
            "high_events": events.get("high"),
            "oom_events": events.get("oom"),
            "oom_kills": events.get("oom_kill"),
            "swap_fail_events": swap_events.get("fail"),
            "pressure": raw.get("memory.pressure"),
            "under_oom": None,
            "raw": raw,
        }
    oom_control = raw.get("memory.oom_control") or {}
    limit = _bytes(raw.get("memory.limit_in_bytes"))
    usage = _bytes(raw.get("memory.usage_in_bytes"))
    return {
        "cgroup_version": 1,
        "path": path,
        "limit_bytes": limit,
        "high_bytes": None,
        "usage_bytes": usage,
        "peak_bytes": _bytes(raw.get("memory.max_usage_in_bytes")),
        # v1 limits memory+swap together (PVE writes memory + swap there).
        "swap_limit_bytes": _difference(_bytes(raw.get("memory.memsw.limit_in_bytes")), limit),
        "swap_usage_bytes": _difference(_bytes(raw.get("memory.memsw.usage_in_bytes")), usage),
        "swap_peak_bytes": None,
        "limit_hits": raw.get("memory.failcnt"),
        "high_events": None,
        "oom_events": None,
        "oom_kills": oom_control.get("oom_kill"),
        "swap_fail_events": raw.get("memory.memsw.failcnt"),
        "pressure": None,
        "under_oom": bool(oom_control.get("under_oom")) if oom_control else None,
        "raw": raw,
    }


def read_counters(root, vmid):
    """CT ``vmid``'s normalized counters, or None when it has no memory cgroup (not running)."""
    version, path = ct_cgroup(root, vmid)
    if path is None:
        return None
    return normalize(version, path, read_raw(version, path))


def page_cache_bytes(version, stat):
    """The page cache in a parsed ``memory.stat``: v2 ``file``, v1 ``total_cache`` (``cache``); None when absent.

    PVE counts a CT's memory as usage less this (pve-container's ``mem``), so
    headroom is ``limit - (usage - page cache)``.
    """
    stat = stat or {}
    keys = ("file",) if version == "v2" else ("total_cache", "cache")
    for key in keys:
        value = stat.get(key)
        if isinstance(value, int):
            return value
    return None


def pressure_seconds(pressure):
    """``{"some": s, "full": s}``: PSI's cumulative ``total=`` (microseconds) as seconds; a kind absent is left out."""
    seconds = {}
    for kind in ("some", "full"):
        total = ((pressure or {}).get(kind) or {}).get("total")
        if isinstance(total, int):
            seconds[kind] = total / 1e6
    return seconds
