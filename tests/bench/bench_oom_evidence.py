"""Benchmark: lxc_oom_evidence over 1,000 CTs and a 100,000-line kernel log (target: under 5 s).

Builds, in a temporary directory (not timed): 1,000 PVE CT configs, a cgroup v2
tree with every CT's memory counters (each CT's cgroup.procs lists real pids,
so the census reads the real /proc), a 100,000-line kernel log in
``journalctl -o short-iso-precise`` form (kernel chatter, 60 memcg OOM
reports of 40 CTs with their task dumps, the CT 2017 socat storm with 1,361
task rows and rate-limited kills) and a lifecycle journal directory. Then it
times the module's own ``gather()`` (everything the module does but
AnsibleModule's argument handling): read the log once for all CTs, read the
lifecycle journal, counters, census, correlation.

    .venv/bin/python tests/bench/bench_oom_evidence.py                 # print the figures
    .venv/bin/python tests/bench/bench_oom_evidence.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support and the collection on sys.path
from ansible_collections.enva.pve.plugins.modules import lxc_oom_evidence
from support import oom_corpus

CTS = 1000
LINES = 100_000
FIRST_VMID = 1000
STORM_VMID = 2017
OOM_CTS = 40
REPORTS = 60
RUNS = 5
START = 1732400000.0
SECTION = "## lxc_oom_evidence"
BEGIN = "<!-- bench:lxc_oom_evidence:begin -->"
END = "<!-- bench:lxc_oom_evidence:end -->"


def vmids():
    return [STORM_VMID] + [FIRST_VMID + i for i in range(CTS) if FIRST_VMID + i != STORM_VMID][:CTS - 1]


def write_tree(base, all_vmids, pids):
    config_dir = base / "etc" / "pve" / "lxc"
    cgroup = base / "cgroup"
    config_dir.mkdir(parents=True)
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    procs = "".join("%d\n" % pid for pid in pids)
    for vmid in all_vmids:
        (config_dir / ("%d.conf" % vmid)).write_text(
            "hostname: ct%d\nmemory: 1024\nswap: 512\nonboot: 1\nnet0: name=eth0,bridge=vmbr0,type=veth\n" % vmid)
        ct = cgroup / "lxc" / str(vmid)
        (ct / "ns").mkdir(parents=True)
        values = {"memory.max": 1 << 30, "memory.current": 300 << 20, "memory.peak": 700 << 20,
                  "memory.swap.max": 512 << 20, "memory.swap.current": 0, "memory.swap.peak": 0}
        for name, value in values.items():
            (ct / name).write_text("%d\n" % value)
        (ct / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
        (ct / "memory.pressure").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                                            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        (ct / "cgroup.procs").write_text("")
        (ct / "ns" / "cgroup.procs").write_text(procs)
    return config_dir, cgroup


def kernel_messages(all_vmids, rng):
    """(offset seconds, message) pairs: chatter with the OOM reports at random places, LINES in all."""
    reports = []
    storm_tasks = [(500000 + i, "socat", 180) for i in range(1361)] + [(499000, "haproxy", 5200)]
    # the storm's report, then 40 rate-limited kills without a header
    reports.append(oom_corpus.oom_report(STORM_VMID, "socat", 500007, "socat", storm_tasks, 1 << 20)
                   + [oom_corpus.killed_line(500000 + i, "socat") for i in range(20, 60)])
    oom_vmids = rng.sample(all_vmids[1:], OOM_CTS)
    for n in range(REPORTS - 1):
        vmid = oom_vmids[n % OOM_CTS]
        tasks = [(vmid * 100 + i, rng.choice(("java", "node", "php-fpm", "postgres", "systemd")), 3000)
                 for i in range(30)]
        reports.append(oom_corpus.oom_report(vmid, tasks[0][1], tasks[0][0], tasks[0][1], tasks, 1 << 20))
        reports.append([oom_corpus.reaped_line(tasks[0][0], tasks[0][1])])
    oom_lines = sum(len(report) for report in reports)
    chatter = LINES - oom_lines
    step = 86400.0 / chatter              # chatter spreads over a day; a report takes milliseconds
    slots = sorted(rng.sample(range(chatter), len(reports)))
    messages = []
    report_index = 0
    for i in range(chatter):
        while report_index < len(reports) and slots[report_index] == i:
            messages.extend((i * step + j * 0.0003, line) for j, line in enumerate(reports[report_index]))
            report_index += 1
        template = oom_corpus.CHATTER[i % len(oom_corpus.CHATTER)]
        messages.append((i * step + 0.5, template % (rng.choice(all_vmids), i)))
    return messages


def write_logs(base, all_vmids, rng):
    kern_log = base / "kern.log"
    messages = kernel_messages(all_vmids, rng)
    with open(kern_log, "w") as handle:
        for offset, message in messages:
            handle.write(oom_corpus.short_iso_precise(START + offset, message) + "\n")
    journal = base / "journal"
    journal.mkdir()
    oom_corpus.write_lifecycle_journals(journal, all_vmids, START)
    return kern_log, journal, len(messages)


def measure():
    rng = random.Random(2017)
    all_vmids = vmids()
    with tempfile.TemporaryDirectory(prefix="bench-oom-evidence-") as tmp:
        base = Path(tmp)
        config_dir, cgroup = write_tree(base, all_vmids, [os.getpid(), os.getppid()])
        kern_log, journal, lines = write_logs(base, all_vmids, rng)
        params = {"vmid": None, "since": None, "kernel_log": str(kern_log), "lifecycle_log": str(journal),
                  "census": True, "cgroup_root": str(cgroup), "pve_config_dir": str(config_dir)}
        timings = []
        result = None
        for _run in range(RUNS):
            started = time.perf_counter()
            result = lxc_oom_evidence.gather(params, run=None, now=START + 86400)
            timings.append(time.perf_counter() - started)
        storm = result["cts"][str(STORM_VMID)]
        checks = {
            "cts": result["summary"]["cts"] == CTS,
            "lines": result["sources"]["kernel_log"]["lines"] == LINES == lines,
            "storm": storm["verdict"]["likely_cause"].startswith("socat fork storm: 1,361 socat processes"),
            "oom_cts": len(result["summary"]["oom_killed"]) == OOM_CTS + 1,
            "storm_kills": storm["verdict"]["oom_kills_in_log"] == 41,
            "unattributed": result["unattributed_events"] == [],
            "census": storm["census"]["processes"] == 2,
        }
        if not all(checks.values()):
            raise SystemExit("benchmark result is wrong: %s" % {k: v for k, v in checks.items() if not v})
        return {
            "cts": CTS, "lines": LINES, "log_bytes": kern_log.stat().st_size, "runs": RUNS,
            "median_s": statistics.median(timings), "best_s": min(timings), "worst_s": max(timings),
            "oom_events": sum(report["oom_events"] for report in result["cts"].values()),
            "python": platform.python_version(), "cpus": os.cpu_count(),
        }


def section(figures):
    return "\n".join([
        SECTION,
        "",
        BEGIN,
        "`lxc_oom_evidence` on %s CTs (configs, cgroup v2 counters, census from the real /proc) with a "
        "%s-line kernel log (%.1f MB, `journalctl -o short-iso-precise`, %s OOM events including the "
        "1,361-socat storm) and a lifecycle journal of 3 events per CT; the module's `gather()`, %d runs, "
        "Python %s, %d CPUs. Target: under 5 s, one pass over the logs for all CTs." % (
            "{:,}".format(figures["cts"]), "{:,}".format(figures["lines"]), figures["log_bytes"] / 1e6,
            figures["oom_events"], figures["runs"], figures["python"], figures["cpus"]),
        "",
        "| median | best | worst |",
        "|---:|---:|---:|",
        "| %.2f s | %.2f s | %.2f s |" % (figures["median_s"], figures["best_s"], figures["worst_s"]),
        "",
        "Reproduce: `.venv/bin/python tests/bench/bench_oom_evidence.py --write docs/benchmarks.md`",
        END,
        "",
    ])


def write(path, text):
    """Replace this benchmark's block (heading to end marker) in ``path``, or append it; the rest stays."""
    path = Path(path)
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    begin, end = old.find(BEGIN), old.find(END)
    if 0 <= begin < end:
        heading = old.rfind(SECTION, 0, begin)
        start = heading if heading >= 0 else begin
        tail = old[end + len(END):].lstrip("\n")
        new = old[:start] + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="MARKDOWN", help="update this file's lxc_oom_evidence section")
    args = parser.parse_args()
    figures = measure()
    print("lxc_oom_evidence: %d CTs, %d kernel log lines: median %.2f s, best %.2f s, worst %.2f s (%d runs)" % (
        figures["cts"], figures["lines"], figures["median_s"], figures["best_s"], figures["worst_s"], figures["runs"]))
    if args.write:
        write(args.write, section(figures))
        print("wrote the lxc_oom_evidence section of %s" % args.write)
    return 0 if figures["median_s"] < 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
