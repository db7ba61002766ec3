"""Kernel OOM report text in the kernel's own wording, for fixtures and the benchmark.

The messages follow mm/oom_kill.c and mm/memcontrol.c of Linux 6.x on a
cgroup v2 host (PVE 8): dump_header, mem_cgroup_print_oom_meminfo,
dump_tasks (with the rss_anon/rss_file/rss_shmem columns of 6.x),
dump_oom_summary, __oom_kill_process and the oom_reaper. The line layout
was checked against a real OOM captured on this machine's 6.18 kernel
(tests/unit/fixtures/kernel/host-6.18-v1-dmesg.log).
"""

from __future__ import annotations

import datetime
import json

TASK_HEADER = ("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
               "oom_score_adj name")


def task_row(pid, uid, total_vm, rss_anon, rss_file, name, oom_score_adj=0):
    """One dump_task() row (values in pages), in the kernel's column widths."""
    rss = rss_anon + rss_file
    return "[%7d] %5d %5d %8d %8d %8d %8d %9d %8d %8d         %5d %s" % (
        pid, uid, pid, total_vm, rss, rss_anon, rss_file, 0, 65536, 0, oom_score_adj, name)


def oom_report(vmid, invoker, victim_pid, victim_name, tasks, limit_kb, uid=100000, task_memcg=None):
    """The messages of one memcg OOM report of CT ``vmid``, header to kill line.

    ``tasks`` is a list of ``(pid, name, rss_pages)``.
    """
    memcg = "/lxc/%d" % vmid
    task_memcg = task_memcg or memcg + "/ns"
    lines = [
        "%s invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0" % invoker,
        "CPU: 1 PID: %d Comm: %s Tainted: P           O       6.8.12-4-pve #1" % (victim_pid + 7, invoker),
        "Hardware name: Supermicro SYS-5019C-M/X11SCM-F, BIOS 1.9 09/16/2022",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x76/0xa0",
        " dump_header+0x47/0x1f0",
        " oom_kill_process+0x118/0x280",
        " out_of_memory+0x246/0x590",
        " mem_cgroup_out_of_memory+0x145/0x170",
        " try_charge_memcg+0x6d6/0x7d0",
        " </TASK>",
        "memory: usage %dkB, limit %dkB, failcnt 0" % (limit_kb, limit_kb),
        "swap: usage %dkB, limit %dkB, failcnt 0" % (limit_kb, limit_kb),
        "Memory cgroup stats for %s:" % memcg,
        "anon %d" % (limit_kb * 1024 * 9 // 10),
        "file %d" % (limit_kb * 1024 // 20),
        "kernel %d" % (limit_kb * 1024 // 20),
        "Tasks state (memory values in pages):",
        TASK_HEADER,
    ]
    for pid, name, rss_pages in tasks:
        lines.append(task_row(pid, uid, rss_pages * 3, rss_pages - 200 if rss_pages > 400 else rss_pages // 2,
                              200 if rss_pages > 400 else rss_pages - rss_pages // 2, name))
    lines.append(
        "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=ns,mems_allowed=0,oom_memcg=%s,"
        "task_memcg=%s,task=%s,pid=%d,uid=%d" % (memcg, task_memcg, victim_name, victim_pid, uid))
    lines.append(killed_line(victim_pid, victim_name, uid))
    return lines


def killed_line(pid, name, uid=100000, anon_kb=2816, file_kb=1024):
    return ("Memory cgroup out of memory: Killed process %d (%s) total-vm:%dkB, anon-rss:%dkB, file-rss:%dkB, "
            "shmem-rss:0kB, UID:%d pgtables:64kB oom_score_adj:0" % (pid, name, 3 * (anon_kb + file_kb), anon_kb,
                                                                     file_kb, uid))


def reaped_line(pid, name):
    return "oom_reaper: reaped process %d (%s), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB" % (pid, name)


# Ordinary kernel lines of a PVE node, between the OOM reports (each takes two integers).
CHATTER = [
    "audit: type=1400 audit(1732404934.100:812): apparmor=\"DENIED\" operation=\"mount\" class=\"mount\" "
    "info=\"failed flags match\" error=-13 profile=\"lxc-%d_</var/lib/lxc>\" name=\"/run/systemd/\" pid=%d",
    "vmbr0: port %d(veth%di0) entered forwarding state",
    "EXT4-fs (dm-%d): mounted filesystem 6b3a2f1c-%04d r/w with ordered data mode. Quota mode: none.",
    "fwbr%di0: port 2(veth%di0) entered blocking state",
    "nf_conntrack: nf_conntrack: table full, dropping packet (%d, %d)",
    "perf: interrupt took too long (%d > %d), lowering kernel.perf_event_max_sample_rate to 50000",
]


def short_iso_precise(epoch, message, host="pve1", tz=datetime.timezone.utc):
    """``journalctl -o short-iso-precise`` framing of a kernel message."""
    stamp = datetime.datetime.fromtimestamp(epoch, tz).isoformat(timespec="microseconds")
    return "%s %s kernel: %s" % (stamp, host, message)


def journal_json(epoch, message, boot_epoch, host="pve1"):
    """``journalctl -k -o json`` framing of a kernel message."""
    return json.dumps({
        "__REALTIME_TIMESTAMP": str(round(epoch * 1e6)),
        "__MONOTONIC_TIMESTAMP": str(round((epoch - boot_epoch) * 1e6)),
        "_SOURCE_MONOTONIC_TIMESTAMP": str(round((epoch - boot_epoch) * 1e6)),
        "_TRANSPORT": "kernel", "SYSLOG_IDENTIFIER": "kernel", "PRIORITY": "6", "SYSLOG_FACILITY": "0",
        "_HOSTNAME": host, "MESSAGE": message,
    }, sort_keys=True)


def dmesg_raw(epoch, message, boot_epoch):
    """Raw ``dmesg`` framing: seconds since boot."""
    return "[%12.6f] %s" % (epoch - boot_epoch, message)


def write_lifecycle_journals(directory, vmids, start):
    """One ``pve-container@VMID.jsonl`` per CT in ``directory`` (journalctl -o json lines): started at
    ``start``, deactivated 40,000 s later, started again 300 s after that."""
    for vmid in vmids:
        lines = []
        for offset, text in ((0, "Started pve-container@%d.service - PVE LXC Container: %d."),
                             (40000, "pve-container@%d.service: Deactivated successfully."),
                             (40300, "Started pve-container@%d.service - PVE LXC Container: %d.")):
            message = text % ((vmid, vmid) if text.count("%d") == 2 else (vmid,))
            lines.append(json.dumps({"__REALTIME_TIMESTAMP": str(int((start + offset) * 1e6)),
                                     "SYSLOG_IDENTIFIER": "systemd", "MESSAGE": message}))
        (directory / ("pve-container@%d.jsonl" % vmid)).write_text("\n".join(lines) + "\n")
