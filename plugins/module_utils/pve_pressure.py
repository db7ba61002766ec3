# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one home of what the collection knows about a CT's pressure stall information (PSI) in the PVE API,
and of when a CT counts as stalled at ``memory.high``.

PVE 9 (pve-container 6.0.7, "metrics: add pressure stall information to status") adds six fields to
``GET /nodes/{node}/lxc/{vmid}/status/current`` and to every item of ``GET /nodes/{node}/lxc`` (both are
pve-container's ``vmstatus``): ``pressure{cpu,io,memory}{some,full}``, the ``avg10`` of the CT's cgroup v2
files ``/sys/fs/cgroup/lxc/VMID/{cpu,io,memory}.pressure``, in percent (0-100) of the last 10 s. What the
API gives, by case (pve-container's ``PVE::LXC::vmstatus`` and pve-common's ``read_cgroup_pressure``):

* PVE 9, CT running, file readable: the kernel's text (``"53.00"``, a JSON string: pve-common takes it
  with a regular expression and nothing turns it into a number);
* PVE 9, CT running, file missing (no cgroup v2 ``lxc/VMID``): the keys are there with ``null``;
* PVE 9, CT stopped: no pressure keys (vmstatus skips stopped CTs before reading them);
* PVE 8: no pressure keys at all.

``rrddata`` (pve-manager 9, ``pve-vm-9.0`` RRD, 60 s step) carries them as numbers (RRD averages). They are
not in ``/cluster/resources``: one ``GET /nodes/{node}/lxc`` per node gives them for all its CTs.

Pure functions, no I/O: the modules and the audit's filters call the API and hand the answers here.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import memory_high_bytes

__metaclass__ = type

RESOURCES = ("cpu", "io", "memory")
LINES = ("some", "full")
FIELDS = tuple("pressure%s%s" % (resource, line) for resource in RESOURCES for line in LINES)
"""The six status/current fields, ``pressurecpusome`` ... ``pressurememoryfull``."""
MEMORY_SOME = "pressurememorysome"
MEMORY_FULL = "pressurememoryfull"

STALL_PSI_FULL_AVG10 = 10.0
"""PSI memory ``full avg10`` (percent of the last 10 s all the CT's tasks stalled on memory) from which a CT at
memory.high counts as stalled now ..."""
STALL_PSI_SOME_AVG10 = 20.0
"""... or ``some avg10`` at least this."""
STALL_NEAR_HIGH = 0.95
"""A CT counts as at memory.high from this share of it on."""
STALL_HIGH_EVENTS = 1000
"""cgroup v2 ``memory.events`` high at least this many times (since the CT started) is a stall at memory.high
that happened, even when it is over (the API has no such counter: only the node's cgroup has)."""
NEAR_FULL = 0.90
"""The audit asks a node for its CTs' pressure (one ``GET /nodes/{node}/lxc``) when one of its running CTs uses
at least this share of its memory in ``/cluster/resources``: a CT stalled at memory.high (99.6 % of memory.max)
is always among them."""


def node_cts_path(node):
    """The API path that lists a node's CTs with their status (the pressure fields included on PVE 9)."""
    return "nodes/%s/lxc" % node


def status_path(node, vmid):
    """The API path of one CT's status/current."""
    return "nodes/%s/lxc/%d/status/current" % (node, int(vmid))


def value(raw):
    """A pressure field as a float (percent), from a JSON string (``"53.00"``) or number; None for null or junk."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    try:
        return float(str(raw).strip())
    except ValueError:
        return None


def has_fields(status):
    """Whether an API answer (status/current, an item of /nodes/{node}/lxc, an rrddata point) carries the
    pressure fields at all: False on PVE 8 and for a stopped CT."""
    return isinstance(status, dict) and any(field in status for field in FIELDS)


def from_status(status):
    """``{"cpu_some", "cpu_full", "io_some", "io_full", "memory_some", "memory_full"}`` (floats, percent, None
    where PVE gave null) from an API answer, or None when the answer has no pressure fields (PVE 8)."""
    if not has_fields(status):
        return None
    return dict(("%s_%s" % (resource, line), value(status.get("pressure%s%s" % (resource, line))))
                for resource in RESOURCES for line in LINES)


def is_stalling(some_avg10, full_avg10):
    """Whether memory PSI avg10 values (percent) say the CT's tasks are stalled now."""
    return (full_avg10 or 0) >= STALL_PSI_FULL_AVG10 or (some_avg10 or 0) >= STALL_PSI_SOME_AVG10


def memory_avg10(pressure):
    """``(some, full)`` memory avg10 of :func:`from_status`'s shape (or None)."""
    pressure = pressure or {}
    return pressure.get("memory_some"), pressure.get("memory_full")


def _thousands(number):
    return "{0:,}".format(int(number))


def api_stall(vmid, status):
    """A CT stalled at memory.high now, named from its API status alone (PVE 9), or None.

    Stalled: its memory PSI ``full avg10`` is at least :data:`STALL_PSI_FULL_AVG10` (all its tasks waited on
    memory: under PVE's limits that is the throttling at memory.high or the reclaim at memory.max), or its
    ``some avg10`` is at least :data:`STALL_PSI_SOME_AVG10` while it uses :data:`STALL_NEAR_HIGH` of the
    memory.high PVE sets for its ``maxmem`` or more. (The API's ``mem`` leaves out the page cache, shmem
    included, so a CT full of tmpfs may show less than it holds: the full line does not depend on it.)
    The shape is ``oom_report.memory_high_stall``'s, with ``source: "api"`` and null for what only the node's
    cgroup knows (memory.events).
    """
    pressure = from_status(status)
    if pressure is None or status.get("status", "running") != "running":
        return None
    some10, full10 = memory_avg10(pressure)
    try:
        mem, maxmem = int(status.get("mem")), int(status.get("maxmem"))
    except (TypeError, ValueError):
        return None
    if maxmem <= 0:
        return None
    high = memory_high_bytes(maxmem // MIB)
    near = mem >= STALL_NEAR_HIGH * high
    if not ((full10 or 0) >= STALL_PSI_FULL_AVG10 or (near and (some10 or 0) >= STALL_PSI_SOME_AVG10)):
        return None
    pct = round(100.0 * mem / high, 1)
    reason = ("CT %d is stalled at memory.high (%s MiB), from the PVE API (status of PVE 9): PSI memory full "
              "avg10 %s%%, some avg10 %s%%; it uses %s MiB (%s%% of memory.high). The node's memory.events "
              "were not read" % (int(vmid), _thousands(high // MIB), full10, some10, _thousands(mem // MIB), pct))
    return {
        "kind": "memory_high_stall", "source": "api", "ongoing": True, "high_events": None, "max_events": None,
        "oom_events": None, "oom_kills": None, "usage_bytes": mem, "high_bytes": high, "limit_bytes": maxmem,
        "usage_pct_of_high": pct,
        "pressure": {"some_avg10": some10, "full_avg10": full10, "some_avg60": None, "full_avg60": None},
        "filled_by": None, "reason": reason + ".",
    }


def nodes_to_ask(cts, near_full=NEAR_FULL):
    """The nodes whose CT list the audit reads for pressure: those holding a running CT at ``near_full`` of its
    memory or more, from pve_resources' ``cts`` (``mem_bytes``, ``maxmem_bytes``). Sorted names."""
    nodes = set()
    for entry in (cts or {}).values():
        mem, maxmem = entry.get("mem_bytes"), entry.get("maxmem_bytes")
        if entry.get("status") == "running" and entry.get("node") and mem is not None and maxmem:
            if mem >= near_full * maxmem:
                nodes.add(entry["node"])
    return sorted(nodes)
