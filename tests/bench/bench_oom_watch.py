"""Benchmark: enva-oom-watch's overhead with 10, 100 and 1,000 CTs, and how fast a stall becomes an alert.

1. Overhead (goals: under 1 % of one core at 1,000 CTs, peak RSS under 24 MiB). A synthetic cgroup v2
   tree of N CTs (tests/support/cgroup_tree.py) in a temporary directory; the agent runs as the role
   runs it (``python3 -m enva_oom_watch``, default 10 s interval, state and textfile written every scan,
   kernel log off, no PSI triggers: synthetic files take no trigger) for MEASURE seconds after a warm-up;
   CPU is utime+stime from /proc/PID/stat over that time, peak RSS is VmHWM.
2. Stall to metric to alert. The stack of the molecule scenario (tests/support/prom_stack.py: node_exporter,
   prometheus with 1 s scrape and evaluation and the shipped rules, alertmanager, a webhook receiver) on
   its own loopback ports, the agent with a 1 s interval (sampling: this host has cgroup v1, no per-CT PSI),
   one CT whose memory.pressure some-total climbs at 60 % of wall time and memory.events high climbs from
   t0: t0 -> the textfile says enva_ct_memory_stalled 1 -> Prometheus has scraped it -> EnvaCtMemoryStalled
   (for: 10s) arrives at the receiver.

    .venv/bin/python tests/bench/bench_oom_watch.py [--write docs/benchmarks.md] [--measure 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support and the collection on sys.path
import sections  # noqa: E402
from support.cgroup_tree import AGENT_HOME, make_ct, make_root  # noqa: E402

SIZES = (10, 100, 1000)
CPU_GOAL_PCT = 1.0
RSS_GOAL_MIB = 24
PORT_BASE = 19190
TICK = os.sysconf("SC_CLK_TCK")


def agent_env():
    return dict(os.environ, PYTHONPATH="%s:%s" % (AGENT_HOME, ROOT / ".cache" / "collections"))


def cpu_seconds(pid):
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def vm_hwm_kib(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def overhead(size, measure, warmup=12):
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
        tmp = Path(tmp)
        make_root(tmp / "cg", "v2")
        for vmid in range(10000, 10000 + size):
            make_ct(tmp / "cg", vmid, "v2", events={"high": vmid % 5}, some_us=vmid)
        (tmp / "tf").mkdir()
        agent = subprocess.Popen(
            [sys.executable, "-m", "enva_oom_watch", "--cgroup-root", str(tmp / "cg"), "--textfile-dir",
             str(tmp / "tf"), "--state-dir", str(tmp / "state"), "--kmsg", "", "--psi-trigger", "",
             "--interval", "10", "--node", "bench", "--max-seconds", str(warmup + measure + 30)],
            env=agent_env(), stderr=subprocess.DEVNULL)
        try:
            time.sleep(warmup)
            start_cpu, start = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(measure)
            used, elapsed = cpu_seconds(agent.pid) - start_cpu, time.monotonic() - start
            hwm = vm_hwm_kib(agent.pid)
            text = (tmp / "tf" / "enva_oom_watch.prom").read_text()
        finally:
            agent.terminate()
            agent.wait(timeout=30)
        scan = float([line.split()[-1] for line in text.splitlines()
                      if line.startswith("enva_oom_watch_scan_duration_seconds")][0])
        return {"cts": size, "cpu_pct": round(100.0 * used / elapsed, 3), "rss_mib": round(hwm / 1024.0, 1),
                "scan_ms": round(scan * 1000, 1), "prom_bytes": len(text), "seconds": round(elapsed, 1)}


def prom_query(expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (PORT_BASE, urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def stall_latency(timeout=90):
    env = dict(os.environ, ENVA_PROM_STACK_PORT_BASE=str(PORT_BASE))
    stack = [sys.executable, str(ROOT / "tests" / "support" / "prom_stack.py")]
    with tempfile.TemporaryDirectory(prefix="watch-bench-stall-") as tmp:
        tmp = Path(tmp)
        make_ct(tmp / "cg", 2017, "v2", high=500 << 20)
        (tmp / "tf").mkdir()
        launcher = tmp / "agent.sh"
        launcher.write_text("#!/bin/sh\nPYTHONPATH=%s:%s exec %s -m enva_oom_watch --cgroup-root %s --textfile-dir %s "
                            "--state-dir %s --kmsg '' --psi-trigger '' --interval 1 --node bench\n" % (
                                AGENT_HOME, ROOT / ".cache" / "collections", sys.executable, tmp / "cg", tmp / "tf",
                                tmp / "state"))
        launcher.chmod(0o755)
        common = ["--dir", str(tmp / "stack")]
        subprocess.run(stack + ["start"] + common + ["--rules", str(ROOT / "roles/oom_watch/files/enva-oom-watch.rules.yml"),
                                                     "--textfile", str(tmp / "tf")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        try:
            subprocess.run(stack + ["agent-start"] + common + ["--agent", str(launcher)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not prom_query('enva_ct_up{vmid="2017"}'):
                time.sleep(0.5)
            time.sleep(3)
            t0 = time.time()
            textfile_at = scraped_at = alert_at = None
            some, high = 0, 0
            deadline = time.monotonic() + timeout
            last = time.time()
            while time.monotonic() < deadline and alert_at is None:
                now = time.time()
                some += int((now - last) * 0.6 * 1e6)
                high += 25
                last = now
                make_ct(tmp / "cg", 2017, "v2", high=500 << 20, some_us=some, events={"high": high})
                if textfile_at is None and 'enva_ct_memory_stalled{node="bench",vmid="2017"} 1' in \
                        (tmp / "tf" / "enva_oom_watch.prom").read_text():
                    textfile_at = time.time()
                if textfile_at is not None and scraped_at is None:
                    result = prom_query('enva_ct_memory_stalled{vmid="2017"} == 1')
                    if result:
                        scraped_at = time.time()
                posts = tmp / "stack" / "posts.jsonl"
                if posts.exists():
                    for line in posts.read_text().splitlines():
                        entry = json.loads(line)
                        if any(alert["labels"].get("alertname") == "EnvaCtMemoryStalled"
                               for alert in entry["payload"].get("alerts", [])):
                            alert_at = entry["received"]
                time.sleep(0.1)
        finally:
            subprocess.run(stack + ["stop"] + common, env=env, check=False, stdout=subprocess.DEVNULL)
    return {"stall_to_textfile_s": textfile_at and round(textfile_at - t0, 2),
            "textfile_to_scraped_s": scraped_at and textfile_at and round(scraped_at - textfile_at, 2),
            "scraped_to_alert_s": alert_at and scraped_at and round(alert_at - scraped_at, 2),
            "stall_to_alert_s": alert_at and round(alert_at - t0, 2)}


def markdown(rows, latency, measure):
    lines = [
        "Measured by `make bench` (`tests/bench/bench_oom_watch.py`) on %s, Python %s, %d CPUs, load %.2f at the "
        "start. The agent as the role runs it (10 s interval, textfile and state written every scan), %d s "
        "measured after a 12 s warm-up, on synthetic cgroup v2 trees (tests/support/cgroup_tree.py)." % (
            platform.platform(terse=True), platform.python_version(), os.cpu_count(), os.getloadavg()[0], measure),
        "",
        "| CTs | CPU (% of one core) | peak RSS (MiB) | one scan (ms) | textfile (bytes) | goal |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        goal = ""
        if row["cts"] == 1000:
            goal = "CPU < %g %%: %s; RSS < %d MiB: %s" % (
                CPU_GOAL_PCT, "met" if row["cpu_pct"] < CPU_GOAL_PCT else "MISSED", RSS_GOAL_MIB,
                "met" if row["rss_mib"] < RSS_GOAL_MIB else "MISSED")
        lines.append("| {:,} | {} | {} | {} | {:,} | {} |".format(
            row["cts"], row["cpu_pct"], row["rss_mib"], row["scan_ms"], row["prom_bytes"], goal))
    lines += [
        "",
        "Stall to alert, with the scenario's stack (node_exporter, prometheus scraping and evaluating every 1 s "
        "with the shipped rules, alertmanager, a webhook receiver) and the agent at a 1 s interval, sampling "
        "(this host is cgroup v1: no per-CT PSI trigger; on v2 the trigger fires within its 1 s window):",
        "",
        "| stall start -> textfile | textfile -> in Prometheus | Prometheus -> alert received (rule `for: 10s`) "
        "| stall start -> alert |",
        "|---:|---:|---:|---:|",
        "| {} s | {} s | {} s | {} s |".format(
            latency.get("stall_to_textfile_s"), latency.get("textfile_to_scraped_s"),
            latency.get("scraped_to_alert_s"), latency.get("stall_to_alert_s")),
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="MARKDOWN")
    parser.add_argument("--measure", type=float, default=60)
    args = parser.parse_args()
    rows = []
    for size in SIZES:
        rows.append(overhead(size, args.measure))
        print("bench: watch, %(cts)5d CTs: CPU %(cpu_pct)s %% of one core, peak RSS %(rss_mib)s MiB, "
              "scan %(scan_ms)s ms" % rows[-1])
    latency = stall_latency()
    print("bench: watch, stall -> alert: %s" % latency)
    if args.write:
        sections.replace_section(Path(args.write), "oom_watch", "## The OOM watch (enva-oom-watch)",
                                 markdown(rows, latency, args.measure))
        print("bench: wrote the OOM watch section of %s" % args.write)
    big = rows[-1]
    return 0 if big["cpu_pct"] < CPU_GOAL_PCT and big["rss_mib"] < RSS_GOAL_MIB and latency["stall_to_alert_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
