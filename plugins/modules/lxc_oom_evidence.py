#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lxc_oom_evidence
short_description: Gather and correlate the OOM evidence of Proxmox VE LXC containers on a node
version_added: "0.1.0"
description:
  - Runs on a Proxmox VE node, as root, and reads what tells whether a CT was OOM-killed and why,
    for one CT, a list, or every CT on the node.
  - "Kernel OOM reports: from the journal (C(journalctl _TRANSPORT=kernel -o json), every boot it keeps),
    else C(dmesg), else C(/var/log/kern.log), or a saved log given as a path. Kernel formats from 4.x to 6.x
    are read; each report's time, C(oom_memcg) and C(task_memcg) (nested paths such as
    C(/lxc/703/ns/system.slice/x.service) belong to CT 703), killed processes, C(oom_reaper) lines and the
    task dump folded into counts per command."
  - A report whose header was rate-limited by the kernel or lost when the dmesg ring buffer wrapped is kept
    and marked C(partial); it is attributed to a CT through the pids of an earlier task dump.
  - "CT lifecycle: C(pve-container@VMID) Started, Stopping, Stopped, Deactivated successfully, Main process
    exited and Failed, from C(journalctl -u pve-container@* -o json) or a saved journal (file or directory,
    JSON lines or C(journalctl) text). Each incident gets the stop that followed it and the next start."
  - cgroup v2 (C(/sys/fs/cgroup/lxc/VMID/memory.*)) and v1 (C(/sys/fs/cgroup/memory/lxc/VMID/memory.*))
    counters in one normalized shape, and a census of the CT's processes now, with fork storms flagged.
  - What the kernel log could not show is returned as RV(sources.kernel_log.gaps) and as warnings, and a CT's
    verdict says C(kernel_log_complete=false) - lines journald missed or lost to a /dev/kmsg overrun, its rate
    limit, the kernel's own rate limit, a journal without kernel lines (then dmesg, with V(auto)), a dmesg that
    cannot be read or starts after O(since).
  - All logs are read once for all CTs. The module only reads; it changes nothing.
author:
  - enva.pve developers (@enva)
options:
  vmid:
    description:
      - One VMID or a list. Omitted means every CT on the node, from O(pve_config_dir), the cgroup tree,
        and the kernel and lifecycle lines that name a CT in the window.
      - A VMID that none of these know fails the task.
    type: list
    elements: int
  since:
    description:
      - Only evidence from this time on. A duration back from now (V(7d), V(12h), V(30m), V(2w), V(90s))
        or a time (V(2024-11-24), V(2024-11-24 00:30), ISO 8601 with an offset, V(@EPOCH)).
      - Omitted means everything the kernel log and the lifecycle journal hold.
    type: str
  kernel_log:
    description:
      - Where the kernel OOM reports come from.
      - V(auto) is the journal when journald runs, else V(dmesg), else C(/var/log/kern.log.1) and
        C(/var/log/kern.log).
      - V(journal) runs C(journalctl _TRANSPORT=kernel -o json); V(dmesg) runs C(dmesg) (its ring buffer is
        small and wraps, so prefer the journal or a log file).
      - Any other value is the path of a saved kernel log (gzip allowed) in any form C(journalctl) (json,
        short, short-iso, short-iso-precise), C(dmesg) (raw, C(-T), C(--time-format iso)) or syslog writes.
    type: str
    default: auto
  lifecycle_log:
    description:
      - Where the C(pve-container@VMID) start/stop events come from.
      - V(auto) runs C(journalctl -u pve-container@* -o json) when journald runs; without journald there are
        none (a warning says so).
      - Any other value is a saved journal, as JSON lines or C(journalctl) text; a directory is read file by
        file, and a file named after a VMID (C(2017.jsonl), C(pve-container@2017.log)) holds that CT's events.
    type: str
    default: auto
  census:
    description:
      - Count the CT's processes now, per command, with their RSS, and flag fork storms.
    type: bool
    default: true
  cgroup_root:
    description:
      - Where the cgroup file system is mounted. Tests point it at fixture trees.
    type: path
    default: /sys/fs/cgroup
  pve_config_dir:
    description:
      - Directory of the node's CT configurations (C(VMID.conf)), for the CT list and configured memory.
    type: path
    default: /etc/pve/lxc
  api_pressure:
    description:
      - The CTs' pressure as the PVE API gave it, keyed by VMID - an item of C(GET /nodes/{node}/lxc) or
        C(status/current), an entry of RV(enva.pve.pve_resources#module:cts), or
        RV(enva.pve.lxc_memory#module:pressure).
      - On PVE 9 it carries C(pressurememoryfull) and C(pressurememorysome) (PSI avg10 of the CT's cgroup, in
        percent); where present they decide whether the CT is stalled at C(memory.high) now. Where absent
        (PVE 8, or a CT the map does not name) the CT's C(memory.pressure) on the node decides, as without
        this option. Values may be the API's own (JSON strings such as C("53.00"), numbers, null).
    type: dict
  flight_dir:
    description:
      - The flight records of enva-oom-watch (role C(enva.pve.oom_watch)), snapshots of a CT's processes and
        cgroup files taken when it stalled, was OOM-killed or forked fast, before its cgroup vanished.
      - A directory that does not exist (the watch not installed) adds nothing. Records of a CT become
        RV(cts.flight), and name the incident in C(verdict.likely_cause) when nothing else does.
    type: path
    default: /var/lib/enva-oom-watch/flight
extends_documentation_fragment:
  - enva.pve.attributes
  - enva.pve.attributes.read_only
notes:
  - Needs root (or membership of C(systemd-journal)/C(adm) for the journal and C(kernel.dmesg_restrict=0) for dmesg).
  - Times in the result are ISO 8601 in UTC. Text logs without a UTC offset are read in the node's time zone.
  - C(dmesg) seconds since boot are turned into wall time with the boot time of this node; a saved raw dmesg
    file has no boot time, so its events keep only C(uptime).
seealso:
  - module: enva.pve.lxc_memory
"""

EXAMPLES = r"""
- name: Evidence for CT 2017 over the last week
  enva.pve.lxc_oom_evidence:
    vmid: 2017
    since: 7d
  register: evidence

- name: Say what happened
  ansible.builtin.debug:
    msg: "{{ evidence.cts['2017'].verdict.likely_cause }} -> {{ evidence.cts['2017'].recommendation }}"

- name: Every CT on the node, from a kernel log and a lifecycle journal attached to a ticket
  enva.pve.lxc_oom_evidence:
    kernel_log: /root/ticket-4711/kern.log
    lifecycle_log: /root/ticket-4711/pve-container@2017.log
    census: false
"""

RETURN = r"""
cts:
  description: One report per CT, keyed by VMID (a string).
  returned: always
  type: dict
  contains:
    vmid:
      description: The CT.
      type: int
    config:
      description: C(path), C(hostname), C(memory_mb), C(swap_mb), C(onboot) from its configuration; null without one.
      type: dict
    incidents:
      description:
        - OOM events of the CT at most 120 s apart, oldest first.
        - Each has C(start), C(end), C(events), C(partial) (a header was lost or rate-limited),
          C(oom_memcg), C(task_memcgs), C(constraint), C(invoked_by) (commands whose allocation hit the
          limit), C(memory_at_oom) and C(swap_at_oom)
          (C(usage_kb), C(limit_kb), C(failcnt)), C(victims) (C(pid), C(name), C(anon_rss_kb),
          C(file_rss_kb), C(shmem_rss_kb), C(total_vm_kb), C(uid), C(time), C(reaped); at most 100),
          C(victims_total), C(victims_by_name), C(reaped), C(tasks_in_dump), C(top_processes)
          (C(name), C(count), C(rss_kb) from the largest task dump, most processes first),
          C(stop) (the first stop-kind lifecycle event after it, with C(seconds_after_oom)),
          C(stop_events), C(next_start) and C(network_down) (the veth port's disabled line).
      type: list
      elements: dict
    oom_events:
      description: Kernel OOM reports attributed to the CT in the window.
      type: int
    partial_events:
      description: Of those, how many lacked their header.
      type: int
    lifecycle:
      description: C(pve-container@VMID) events in the window (C(event), C(time), C(detail), C(message)).
      type: list
      elements: dict
    network:
      description: Bridge port state lines of the CT's veth devices in the window.
      type: list
      elements: dict
    counters:
      description:
        - The memory cgroup now, null when the CT has none (not running). v1 and v2 in one shape, C(raw)
          keeps every file read.
        - C(cgroup_version), C(path), C(limit_bytes), C(high_bytes), C(usage_bytes), C(peak_bytes),
          C(swap_limit_bytes), C(swap_usage_bytes), C(swap_peak_bytes), C(limit_hits) (v2 C(max) events,
          v1 C(failcnt)), C(high_events), C(oom_events), C(oom_kills), C(swap_fail_events), C(pressure) (PSI),
          C(under_oom) (v1), C(raw). Null values mean unlimited or not available.
      type: dict
    census:
      description:
        - The CT's processes now (null when not running or O(census=false)). C(processes), C(rss_kb),
          C(by_command) (C(name), C(count), C(rss_kb), C(children_of_same)), C(fork_storm), C(fork_storms)
          (C(name), C(count), C(reason)). A fork storm is 100 or more processes of one command that are at
          least half of the CT's.
        - C(logging_stack) says how much of the CT's memory journald and the syslog daemon hold, with
          C(processes), C(rss_bytes), C(share_pct) of the limit, the cgroup's C(file_bytes), C(file_mapped_bytes)
          and C(shmem_bytes) (memory.stat, v1 or v2), C(recommend_ct_logging) (true at 5 percent or more, for
          the enva.pve.ct_logging role) and C(reason).
      type: dict
    verdict:
      description:
        - "C(oom_killed) (an incident in the window, or OOM kills counted by the cgroup), C(incidents),
          C(oom_kills_in_log), C(oom_kills_counted), C(likely_cause) (for example
          C(socat fork storm: 1,361 socat processes in the OOM task dump (99% of 1,372))), C(fork_storm),
          C(headroom_pct) (room above the peak, in percent of the limit), C(memory_high_stall), C(stall)."
        - "C(kernel_log_complete): false when a gap of RV(sources.kernel_log.gaps) affects the kernel log in the
          window, so C(oom_killed=false) means none seen, not none happened; C(lifecycle_log_complete): false when
          journald dropped lines of the CT's C(pve-container@VMID) unit; C(log_gaps): the kinds of those gaps."
      type: dict
    stall:
      description:
        - cgroup v2 only, null otherwise or when the CT is not stalled. A CT stalled at C(memory.high) is an
          incident of its own kind; the kernel throttles it instead of killing, so it answers little or nothing
          (on PVE 9 kernels often a trickle, one answer every few seconds) and no kernel line records it. It is
          stalled now when its usage is at memory.high with PSI C(full avg10) >= 10% or C(some avg10) >= 20%
          (from the PVE API where O(api_pressure) has them, else from C(memory.pressure)), and was stalled
          since it started when C(memory.events) high is 1,000 or more.
        - C(kind) (C(memory_high_stall)), C(source) (C(node)), C(pressure_source) (C(api), C(cgroup) or null),
          C(ongoing), C(high_events), C(max_events), C(oom_events), C(oom_kills),
          C(usage_bytes), C(high_bytes), C(limit_bytes), C(usage_pct_of_high), C(pressure), C(filled_by) (the
          census's top command, C(name), C(count), C(rss_kb)), C(reason).
      type: dict
    api_pressure:
      description:
        - The CT's pressure from O(api_pressure) (C(cpu_some), C(cpu_full), C(io_some), C(io_full),
          C(memory_some), C(memory_full), percent, null where PVE gave null); null without (PVE 8).
      type: dict
    flight:
      description:
        - The watch's flight records of the CT in the window, null without any. C(records) (C(file), C(time),
          C(reason), C(processes), C(top_commands) with C(name), C(count), C(rss_kb)) and C(cause) (the record
          with most processes of one command, as a fork storm when it is one).
      type: dict
    recommended_memory_mb:
      description: The memory the CT should get, in MiB; null when no limit is known.
      type: int
    recommendation:
      description: The reasoning behind RV(cts.recommended_memory_mb), in words.
      type: str
  sample:
    "2017":
      vmid: 2017
      verdict:
        oom_killed: true
        likely_cause: "socat fork storm: 1,361 socat processes in the OOM task dump (99% of 1,372)"
        headroom_pct: 0.0
      recommended_memory_mb: 2048
unattributed_events:
  description: OOM reports that name no CT (host services, or kills whose CT cannot be told).
  returned: always
  type: list
  elements: dict
sources:
  description:
    - What was read. C(kernel_log) and C(lifecycle_log) each with C(kind), C(path) or C(command).
    - C(kernel_log) also has C(lines) and C(first_time)/C(last_time), the span the log covers (a short span
      from dmesg means its ring buffer holds little history), and C(instead_of) when dmesg replaced the journal.
  returned: always
  type: dict
  contains:
    kernel_log:
      description: The kernel log read.
      type: dict
      contains:
        gaps:
          description:
            - What the kernel log could not show in the window, one item per kind and source, oldest first.
            - "C(kind): C(journal_missed) (journald: Missed N kernel messages), C(journal_overrun) (/dev/kmsg buffer
              overrun), C(journal_dropped) (journald: Suppressed N messages from UNIT), C(kernel_ratelimit)
              (FUNC: N callbacks suppressed), C(printk_suppressed), C(devkmsg_ratelimit), C(no_kernel_log)
              (the journal has no kernel line of this boot), C(dmesg_unreadable), C(dmesg_starts_late),
              C(journald_notices_unreadable)."
            - C(count) (lines or messages lost, null where unknown), C(lines) (log lines that reported it),
              C(first_time), C(last_time), C(source) (kernel function, unit or null), C(vmid) (of a
              C(pve-container@VMID) unit), C(message), C(affects) (C(kernel_log), C(lifecycle_log) or C(none)) and
              C(meaning) for the verdict.
          type: list
          elements: dict
window:
  description: C(since) (ISO 8601 or null) and C(now).
  returned: always
  type: dict
summary:
  description: C(cts) (how many), C(oom_killed), C(fork_storm) and C(memory_high_stall) (lists of VMIDs).
  returned: always
  type: dict
"""

import gzip
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.enva.pve.plugins.module_utils.cgroup_memory import ct_cgroup, discover_vmids, read_counters
from ansible_collections.enva.pve.plugins.module_utils.ct_census import take_census
from ansible_collections.enva.pve.plugins.module_utils.log_stack import read_memory_stat, summarize as logging_stack
from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import parse_lifecycle, vmid_from_filename
from ansible_collections.enva.pve.plugins.module_utils.flight_record import read_records, summarize as flight_summary
from ansible_collections.enva.pve.plugins.module_utils import kernel_log_gaps
from ansible_collections.enva.pve.plugins.module_utils.log_lines import iso_utc, parse_since
from ansible_collections.enva.pve.plugins.module_utils.oom_kernel import parse_kernel_log
from ansible_collections.enva.pve.plugins.module_utils.oom_report import build_report
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import read_ct_configs
from ansible_collections.enva.pve.plugins.module_utils.pve_pressure import from_status

JOURNALD_SOCKET = "/run/systemd/journal/socket"
PROC_STAT = "/proc/stat"
KERN_LOG_FILES = ("/var/log/kern.log.1", "/var/log/kern.log")


class EvidenceError(Exception):
    """A problem the person running the task must fix; the message says how."""


def journald_running():
    return os.path.exists(JOURNALD_SOCKET)


def boot_epoch(proc_stat=None):
    """This node's boot time (``btime`` of /proc/stat), for dmesg's seconds since boot."""
    try:
        with open(proc_stat or PROC_STAT) as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (IOError, OSError):
        pass
    return None


def open_log(path):
    """Lines of a log file (gzip or plain), decoded leniently."""
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return open(path, "r", encoding="utf-8", errors="replace")
    except (IOError, OSError) as error:
        raise EvidenceError("cannot read %s: %s; check the path and that the task runs as root (become: true)"
                            % (path, error.strerror or error))


def _since_argument(since_epoch):
    return ["--since", "@%d" % int(since_epoch)] if since_epoch is not None else []


def _journalctl(run, args, what):
    rc, out, err = run(["journalctl", "--no-pager", "-o", "json"] + args)
    if rc == 127:
        raise EvidenceError("journalctl is not installed on this host, so %s cannot be read from the journal; "
                            "use kernel_log=dmesg or give a saved log path" % what)
    if rc != 0:
        raise EvidenceError(
            "journalctl failed reading %s (rc=%s): %s. Run the task as root (become: true) or as a member of "
            "systemd-journal, or give a saved log path." % (what, rc, (err or out).strip()))
    if "insufficient permissions" in (err or ""):
        raise EvidenceError(
            "journalctl cannot read %s: %s. Run the task as root (become: true) or as a member of "
            "systemd-journal." % (what, err.strip()))
    return out.splitlines()


def kernel_lines(kernel_log, run, since_epoch, now):
    """``(lines, source, boot time, reference time)`` for the kernel log option."""
    if kernel_log == "auto":
        if journald_running():
            kernel_log = "journal"
        else:
            rc, out, err = run(["dmesg"])
            if rc == 0:
                return out.splitlines(), {"kind": "dmesg", "command": "dmesg"}, boot_epoch(), now
            files = [path for path in KERN_LOG_FILES if os.path.exists(path)]
            if not files:
                raise EvidenceError(
                    "no kernel log to read: journald does not run, dmesg is not permitted (%s), and none of %s "
                    "exists. Run the task as root (become: true) or set kernel_log to a saved kernel log."
                    % ((err or out).strip() or "rc=%s" % rc, ", ".join(KERN_LOG_FILES)))
            return _chain_files(files), {"kind": "files", "path": files,
                                         "dmesg_error": (err or out).strip() or "rc=%s" % rc}, None, now
    if kernel_log == "journal":
        if not journald_running():
            raise EvidenceError("kernel_log=journal, but journald does not run on this host (no %s); use "
                                "kernel_log=dmesg or a log file path" % JOURNALD_SOCKET)
        lines = _journalctl(run, ["_TRANSPORT=kernel"] + _since_argument(since_epoch), "the kernel log")
        return lines, {"kind": "journal", "command": "journalctl _TRANSPORT=kernel -o json"}, None, now
    if kernel_log == "dmesg":
        rc, out, err = run(["dmesg"])
        if rc != 0:
            raise EvidenceError(
                "cannot read the kernel ring buffer (dmesg: %s): /dev/kmsg and syslog(2) are closed to this user "
                "(kernel.dmesg_restrict=1) or absent. Run the task as root (become: true), or set kernel_log to a "
                "saved kernel log such as /var/log/kern.log" % ((err or out).strip() or rc))
        return out.splitlines(), {"kind": "dmesg", "command": "dmesg"}, boot_epoch(), now
    if not os.path.exists(kernel_log):
        raise EvidenceError("kernel_log %s does not exist; give auto, journal, dmesg, or the path of a saved "
                            "kernel log" % kernel_log)
    if os.path.isdir(kernel_log):
        raise EvidenceError("kernel_log %s is a directory; give the path of one saved kernel log file" % kernel_log)
    return open_log(kernel_log), {"kind": "file", "path": kernel_log}, None, os.path.getmtime(kernel_log)


def _chain_files(paths):
    for path in paths:
        with open_log(path) as handle:
            yield from handle


def lifecycle_events(lifecycle_log, run, since_epoch, now, warnings):
    """``(events, source)`` for the lifecycle option."""
    if lifecycle_log == "auto":
        if not journald_running():
            warnings.append("lifecycle: journald does not run on this host, so pve-container@VMID start/stop "
                            "events are not known; set lifecycle_log to a saved journal (file or directory)")
            return [], {"kind": None}
        lines = _journalctl(run, ["-u", "pve-container@*"] + _since_argument(since_epoch),
                            "the pve-container@* journal")
        return parse_lifecycle(lines, now), {"kind": "journal", "command": "journalctl -u pve-container@* -o json",
                                             "lines": len(lines)}
    if not os.path.exists(lifecycle_log):
        raise EvidenceError("lifecycle_log %s does not exist; give auto, a saved journal file, or a directory of "
                            "them" % lifecycle_log)
    if os.path.isdir(lifecycle_log):
        files = sorted(os.path.join(lifecycle_log, name) for name in os.listdir(lifecycle_log)
                       if os.path.isfile(os.path.join(lifecycle_log, name)))
    else:
        files = [lifecycle_log]
    events = []
    for path in files:
        with open_log(path) as handle:
            events.extend(parse_lifecycle(handle, os.path.getmtime(path),
                                          vmid=vmid_from_filename(os.path.basename(path))))
    return events, {"kind": "directory" if os.path.isdir(lifecycle_log) else "file", "path": lifecycle_log,
                    "files": len(files)}


def kernel_gaps(kernel_log, run, since_epoch, now, kernel, source, page_size):
    """``(kernel, source, gaps)``: what the kernel log could not show (module_utils.kernel_log_gaps).

    From the journal also journald's own notices; a journal without a kernel line of this boot is a gap, and with
    kernel_log=auto dmesg is read instead (its failure is a gap too). A dmesg that starts after ``since`` is one.
    """
    found = list(kernel["gaps"])
    dmesg_error = source.pop("dmesg_error", None)
    if dmesg_error:
        found.append(kernel_log_gaps.source_gap("dmesg_unreadable", dmesg_error, affects="none", meaning=(
            "dmesg could not read the kernel ring buffer; the kernel lines come from %s instead" % source["path"])))
    if source["kind"] == "journal":
        found.extend(kernel_log_gaps.journald_notices(run, _since_argument(since_epoch), now))
        if not kernel["kernel_lines"] and not any(
                line.strip() for line in _journalctl(run, kernel_log_gaps.KERNEL_BOOT_PROBE, "the kernel log")):
            message = "journalctl _TRANSPORT=kernel -b: no entries"
            rc, out, err = run(["dmesg"]) if kernel_log == "auto" else (None, "", "")
            if rc != 0:
                found.append(kernel_log_gaps.source_gap("no_kernel_log", message))
                if rc is not None:
                    found.append(kernel_log_gaps.source_gap("dmesg_unreadable", (err or out).strip() or "rc=%s" % rc))
            else:
                found.append(kernel_log_gaps.source_gap("no_kernel_log", message, affects="none", meaning="%s; %s" % (
                    kernel_log_gaps.MEANING["no_kernel_log"], kernel_log_gaps.MEANING["dmesg_instead"])))
                kernel = parse_kernel_log(out.splitlines(), now, boot_epoch=boot_epoch(), page_size=page_size)
                found.extend(kernel["gaps"])
                source = {"kind": "dmesg", "command": "dmesg", "instead_of": source["command"]}
    if source["kind"] == "dmesg":
        late = kernel_log_gaps.dmesg_starts_late(kernel["first_epoch"], since_epoch)
        found.extend([late] if late else [])
    return kernel, source, kernel_log_gaps.merge(found, since_epoch)


def select_vmids(requested, configs, running, logged, config_dir, cgroup_root):
    """The CTs to report: the requested ones (each must be known), or all known."""
    known = set(configs) | set(running) | set(logged)
    if not requested:
        return sorted(known)
    unknown = sorted(set(requested) - known)
    if unknown:
        raise EvidenceError(
            "CT %s is not on this node: no VMID.conf in %s, no memory cgroup under %s/lxc, and no kernel or "
            "lifecycle line names it in the window. CTs known here: %s" % (
                ", ".join(str(vmid) for vmid in unknown), config_dir, cgroup_root,
                ", ".join(str(vmid) for vmid in sorted(known)) or "none"))
    return sorted(set(requested))


def api_pressure_by_vmid(given):
    """``{VMID: pve_pressure.from_status(...)}`` of the api_pressure option; CTs without the fields are left out.

    Each value may be an API status (``pressurememoryfull`` ...), pve_pressure's shape (``memory_full`` ...) or
    an entry of pve_resources' ``cts`` (its ``pressure``).
    """
    result = {}
    for key, status in (given or {}).items():
        try:
            vmid = int(key)
        except (TypeError, ValueError):
            raise EvidenceError("api_pressure must be keyed by VMID; got %r" % (key,))
        if isinstance(status, dict) and isinstance(status.get("pressure"), dict):
            status = status["pressure"]             # an entry of pve_resources' cts
        if isinstance(status, dict) and "memory_full" in status and "pressurememoryfull" not in status:
            status = dict(("pressure%s" % name.replace("_", ""), raw) for name, raw in status.items())
        pressure = from_status(status)
        if pressure is not None:
            result[vmid] = pressure
    return result


def gather(params, run, now=None, page_size=4096):
    """The module's result (without ``changed``) for ``params``; ``run(argv) -> (rc, out, err)``."""
    now = time.time() if now is None else now
    warnings = []
    try:
        since_epoch = parse_since(params.get("since"), now)
    except ValueError as error:
        raise EvidenceError(str(error))

    lines, kernel_source, boot, reference = kernel_lines(params["kernel_log"], run, since_epoch, now)
    try:
        kernel = parse_kernel_log(lines, reference, boot_epoch=boot, page_size=page_size)
    except (IOError, OSError, EOFError) as error:
        raise EvidenceError("cannot read %s: %s; give a readable kernel log (plain text or gzip)" % (
            kernel_source.get("path") or kernel_source.get("command"), error))
    finally:
        if hasattr(lines, "close"):
            lines.close()
    kernel, kernel_source, gaps = kernel_gaps(params["kernel_log"], run, since_epoch, now, kernel, kernel_source,
                                              page_size)
    kernel_source.update(lines=kernel["lines"], first_time=iso_utc(kernel["first_epoch"]),
                         last_time=iso_utc(kernel["last_epoch"]), gaps=gaps)
    warnings.extend(kernel_log_gaps.warning(gap) for gap in gaps if gap["affects"] != "none"
                    or gap["kind"] not in ("kernel_ratelimit", "devkmsg_ratelimit"))
    lifecycle, lifecycle_source = lifecycle_events(params["lifecycle_log"], run, since_epoch, now, warnings)

    configs = read_ct_configs(params["pve_config_dir"])
    running = discover_vmids(params["cgroup_root"])
    logged = {item["vmid"] for item in kernel["events"] + lifecycle if item["vmid"] is not None
              and (since_epoch is None or item["epoch"] is None or item["epoch"] >= since_epoch)}
    flight = read_records(params["flight_dir"], since=since_epoch) if params.get("flight_dir") else []
    logged |= {record["vmid"] for record in flight if isinstance(record.get("vmid"), int)}
    vmids = select_vmids(params.get("vmid"), configs, running, logged, params["pve_config_dir"],
                         params["cgroup_root"])

    counters = {}
    census = {}
    for vmid in vmids:
        counters[vmid] = read_counters(params["cgroup_root"], vmid)
        if params["census"] and counters[vmid] is not None:
            _version, path = ct_cgroup(params["cgroup_root"], vmid)
            census[vmid] = take_census(path, page_size=page_size)
            census[vmid]["logging_stack"] = logging_stack(census[vmid], read_memory_stat(path),
                                                          counters[vmid]["limit_bytes"], counters[vmid]["usage_bytes"])
    api_pressure = api_pressure_by_vmid(params.get("api_pressure"))
    reports, unattributed = build_report(kernel, lifecycle, vmids, counters, census, configs, since_epoch,
                                         api_pressure)
    kernel_log_gaps.apply(reports, gaps)
    for vmid, report in reports.items():
        report["flight"] = flight_summary([record for record in flight if record.get("vmid") == vmid])
        if report["flight"] and not report["verdict"]["likely_cause"]:
            report["verdict"]["likely_cause"] = report["flight"]["cause"]
    if kernel_source["kind"] == "dmesg" and any(report["partial_events"] for report in reports.values()):
        warnings.append("dmesg lost the start of some OOM reports (its ring buffer wrapped or the kernel "
                        "rate-limited them); kernel_log=journal or /var/log/kern.log keeps them whole")
    return {
        "cts": {str(vmid): report for vmid, report in reports.items()},
        "unattributed_events": unattributed,
        "sources": {"kernel_log": kernel_source, "lifecycle_log": lifecycle_source},
        "window": {"since": iso_utc(since_epoch), "now": iso_utc(now)},
        "summary": {
            "cts": len(reports),
            "oom_killed": [vmid for vmid, report in reports.items() if report["verdict"]["oom_killed"]],
            "fork_storm": [vmid for vmid, report in reports.items() if report["verdict"]["fork_storm"]],
            "memory_high_stall": [vmid for vmid, report in reports.items() if report["stall"]],
        },
        "warnings": warnings,
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vmid=dict(type="list", elements="int"),
            since=dict(type="str"),
            kernel_log=dict(type="str", default="auto"),
            lifecycle_log=dict(type="str", default="auto"),
            census=dict(type="bool", default=True),
            cgroup_root=dict(type="path", default="/sys/fs/cgroup"),
            pve_config_dir=dict(type="path", default="/etc/pve/lxc"),
            api_pressure=dict(type="dict"),
            flight_dir=dict(type="path", default="/var/lib/enva-oom-watch/flight"),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        executable = module.get_bin_path(argv[0])
        if executable is None:
            return 127, "", "%s: command not found" % argv[0]
        return module.run_command([executable] + argv[1:])

    try:
        result = gather(module.params, run, page_size=os.sysconf("SC_PAGE_SIZE"))
    except EvidenceError as error:
        module.fail_json(msg=str(error), changed=False)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
