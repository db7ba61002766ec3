"""Benchmark: the fleet OOM audit end to end (playbooks/oom_audit.yml) on 250, 500 and 1,000 CTs over 3 nodes.

Built first, in a temporary directory (not timed):

* the PVE API lab in synthetic mode (``python3 -m enva_lab.api_lab serve --synthetic-cts N --nodes 3``): CT configs
  and real cgroup v2 directories per node under ``<labdir>/synthetic/nodes/pveN/{lxc,cgroup}``, served over
  HTTPS on a random loopback port; each running CT's ``cgroup.procs`` lists real pids, so the census reads /proc;
* per node, a kernel log in ``journalctl -o short-iso-precise`` form, 100 lines per CT (chatter, memcg OOM
  reports of 4 % of the CTs with their task dumps, and one CT's socat storm with a 1,361-row task dump), and
  a lifecycle journal directory with 3 events per CT;
* an inventory of three hosts pve1..pve3 (local connections) pointing the role at those.

Timed: ``ansible-playbook playbooks/oom_audit.yml`` - one /cluster/resources call, lxc_oom_evidence once per
node (in parallel, -f 3), the report built and written as JSON, Markdown and HTML on the controller. Each
size runs RUNS times; the report is checked (every CT in it, the storm CT first with socat named, one
/cluster/resources request per run in the API lab's log).

fleet(), run_audit() and check_report() are shared with bench_oom_audit_scale.py (nodes, CTs, Ansible settings).

    .venv/bin/python tests/bench/bench_oom_audit.py                       # print the figures
    .venv/bin/python tests/bench/bench_oom_audit.py --write docs/benchmarks.md
    .venv/bin/python tests/bench/bench_oom_audit.py --sizes 60 --runs 1   # try the harness
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "tests"), str(ROOT / ".cache" / "collections")]

import oom_corpus  # noqa: E402  pylint: disable=wrong-import-position
import sections  # noqa: E402  pylint: disable=wrong-import-position
from support.pve_lab import ApiLabProcess  # noqa: E402  pylint: disable=wrong-import-position

NAME = "oom_audit"
HEADING = "## Fleet OOM audit (playbooks/oom_audit.yml)"
SIZES = (250, 500, 1000)
NODES = 3
RUNS = 3
LINES_PER_CT = 100
OOM_SHARE = 0.04
FIRST_VMID = 10000
STORM_INDEX = 7            # CT 10007 on pve2 has the socat storm
TARGET_S = 60.0
AUDIT_TIMEOUT_S = 3600
START = time.time() - 86400.0
BIN = ROOT / ".venv" / "bin"


def node_of(index, nodes=NODES):
    """The node of the ``index``-th CT, as the API lab's synthetic mode spreads them."""
    return "pve%d" % (index % nodes + 1)


def fill_procs(synthetic, pids):
    """Real pids in each running CT's cgroup.procs (the census reads /proc for them)."""
    text = "".join("%d\n" % pid for pid in pids)
    for procs in Path(synthetic, "nodes").glob("pve*/cgroup/lxc/*/cgroup.procs"):
        procs.write_text(text)


def kernel_messages(vmids, rng, storm_vmid):
    """(offset seconds, message) pairs for one node: LINES_PER_CT per CT, OOM reports of OOM_SHARE of its CTs."""
    reports = []
    if storm_vmid is not None:
        tasks = [(500000 + i, "socat", 180) for i in range(1361)] + [(499000, "haproxy", 5200)]
        reports.append(oom_corpus.oom_report(storm_vmid, "socat", 500007, "socat", tasks, 1 << 20)
                       + [oom_corpus.killed_line(500000 + i, "socat") for i in range(20, 60)])
    candidates = [vmid for vmid in vmids if vmid != storm_vmid]
    for vmid in rng.sample(candidates, max(1, int(len(vmids) * OOM_SHARE))):
        tasks = [(vmid * 100 + i, rng.choice(("java", "node", "php-fpm", "postgres", "systemd")), 3000)
                 for i in range(30)]
        reports.append(oom_corpus.oom_report(vmid, tasks[0][1], tasks[0][0], tasks[0][1], tasks, 1 << 20)
                       + [oom_corpus.reaped_line(tasks[0][0], tasks[0][1])])
    total = LINES_PER_CT * len(vmids)
    chatter = max(total - sum(len(report) for report in reports), 10 * len(reports))   # tiny fleets: more lines
    step = 86000.0 / chatter
    slots = sorted(rng.sample(range(chatter), len(reports)))
    messages, index = [], 0
    for i in range(chatter):
        while index < len(reports) and slots[index] == i:
            messages.extend((i * step + j * 0.0003, line) for j, line in enumerate(reports[index]))
            index += 1
        messages.append((i * step + 0.5, oom_corpus.CHATTER[i % len(oom_corpus.CHATTER)] % (rng.choice(vmids), i)))
    return messages


def write_node_logs(base, node, vmids, rng, storm_vmid):
    directory = base / "logs" / node
    journal = directory / "journal"
    journal.mkdir(parents=True)
    kern_log = directory / "kern.log"
    messages = kernel_messages(vmids, rng, storm_vmid)
    with open(kern_log, "w") as handle:
        for offset, message in messages:
            handle.write(oom_corpus.short_iso_precise(START + offset, message, host=node) + "\n")
    oom_corpus.write_lifecycle_journals(journal, vmids, START)
    return kern_log, journal, len(messages)


def write_inventory(base, synthetic, api, logs):
    hosts = {}
    for node, (kern_log, journal, _lines) in logs.items():
        hosts[node] = {
            "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python"),
            "oom_audit_cgroup_root": str(Path(synthetic, "nodes", node, "cgroup")),
            "oom_audit_pve_config_dir": str(Path(synthetic, "nodes", node, "lxc")),
            "oom_audit_kernel_log": str(kern_log), "oom_audit_lifecycle_log": str(journal),
        }
    inventory = {"all": {"children": {"pve_nodes": {"hosts": hosts}}, "vars": {
        "oom_audit_api_host": "127.0.0.1", "oom_audit_api_port": api.port, "oom_audit_api_user": "enva@pve",
        "oom_audit_api_token_id": "readonly",
        "oom_audit_api_token_secret": api.credentials["tokens"]["enva@pve!readonly"]["secret"],
        "oom_audit_ca_path": str(api.labdir / "pki" / "pve-root-ca.pem"), "oom_audit_become": False,
        "oom_audit_since": "@%d" % int(START - 60), "oom_audit_report_dir": str(base / "report")}}}
    path = base / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path


@dataclasses.dataclass
class Fleet:
    """One synthetic fleet, built and not timed: the API lab serving it, per-node logs, the inventory."""

    base: Path
    api: ApiLabProcess
    cts: int
    nodes: int
    inventory: Path
    storm_vmid: int
    expected_oom: int
    lines: int
    log_bytes: int

    def resources_calls(self):
        return self.api.log_path.read_text().count("GET /api2/json/cluster/resources")

    def report(self):
        return json.loads((self.base / "report" / "oom-audit.json").read_text())


@contextlib.contextmanager
def fleet(cts, nodes=NODES, wrapper=()):
    """A temporary directory with the API lab (started with ``wrapper`` before its command, e.g. taskset)
    serving ``cts`` synthetic CTs on ``nodes`` nodes, each node's logs and the inventory; the server is
    stopped and the directory removed on the way out."""
    rng = random.Random(cts)
    with tempfile.TemporaryDirectory(prefix="bench-oom-audit-") as tmp:
        base = Path(tmp)
        api = ApiLabProcess(base / "labdir", "--synthetic-cts", str(cts), "--nodes", str(nodes),
                            startup_seconds=300, wrapper=wrapper)
        try:
            synthetic = base / "labdir" / "synthetic"
            fill_procs(synthetic, [os.getpid(), os.getppid()])
            all_vmids = [FIRST_VMID + index for index in range(cts)]
            storm_vmid = FIRST_VMID + STORM_INDEX
            logs, lines, expected_oom = {}, 0, 1
            for index in range(1, nodes + 1):
                node = "pve%d" % index
                vmids = [vmid for i, vmid in enumerate(all_vmids) if node_of(i, nodes) == node]
                expected_oom += max(1, int(len(vmids) * OOM_SHARE))
                logs[node] = write_node_logs(base, node, vmids, rng, storm_vmid if storm_vmid in vmids else None)
                lines += logs[node][2]
            yield Fleet(base=base, api=api, cts=cts, nodes=nodes, inventory=write_inventory(base, synthetic, api, logs),
                        storm_vmid=storm_vmid, expected_oom=expected_oom, lines=lines,
                        log_bytes=sum(Path(logs[node][0]).stat().st_size for node in logs))
        finally:
            api.stop()


def cpu_seconds(pid):
    """User + system CPU seconds of a running process so far (from /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_audit(the_fleet, forks=NODES, settings=None, wrapper=()):
    """One timed ``ansible-playbook playbooks/oom_audit.yml`` (``wrapper`` before it, e.g. taskset) with
    ANSIBLE_FORKS and ``settings`` (more ANSIBLE_* variables), the previous report removed first: its exit
    status, wall time, the CPU time of ansible-playbook with all its workers and modules, the API lab's
    CPU time, its /cluster/resources requests, and the first error line of a failed run."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
               ANSIBLE_FORKS=str(forks), PATH="%s:%s" % (BIN, os.environ.get("PATH", "")), **(settings or {}))
    shutil.rmtree(the_fleet.base / "report", ignore_errors=True)
    calls_before, api_cpu_before = the_fleet.resources_calls(), cpu_seconds(the_fleet.api.proc.pid)
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Its own process group (not its own session: sched_autogroup would then give it a CPU share of its
    # own), so a run past the timeout is killed with all its workers and modules.
    with subprocess.Popen([*wrapper, str(BIN / "ansible-playbook"), "-i", str(the_fleet.inventory),
                           str(ROOT / "playbooks" / "oom_audit.yml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=str(ROOT), process_group=0) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=AUDIT_TIMEOUT_S)
            errors = []
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            errors = ["timed out after %d s" % AUDIT_TIMEOUT_S]
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    errors += [line for line in (stdout + stderr).splitlines() if line.startswith(("[ERROR]", "ERROR!"))]
    return {"returncode": proc.returncode, "wall_s": elapsed,
            "cpu_s": usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime,
            "api_cpu_s": cpu_seconds(the_fleet.api.proc.pid) - api_cpu_before,
            "resources_calls": the_fleet.resources_calls() - calls_before,
            "error": (errors or ["exit status %d" % proc.returncode])[0] if proc.returncode else "",
            "output": "%s\n%s" % (stdout[-4000:], stderr[-2000:]) if proc.returncode else ""}


def succeeded(result):
    """``result`` of run_audit(), or the end of the failed run's output as the benchmark's exit."""
    if result["returncode"] != 0:
        raise SystemExit("the audit failed (exit %d):\n%s" % (result["returncode"], result["output"]))
    return result


def check_report(the_fleet, report, calls):
    """The report's correctness after ``calls`` (/cluster/resources requests of each run): every CT, every
    node, the storm CT first, the OOM-killed CTs, one /cluster/resources request per run."""
    first = report["cts"][0]
    expected = {FIRST_VMID + index for index in range(the_fleet.cts)}
    return {
        "every CT": report["summary"]["cts"] == the_fleet.cts and {ct["vmid"] for ct in report["cts"]} == expected,
        "every node audited": sorted(node["node"] for node in report["nodes"] if node["audited"])
        == sorted("pve%d" % index for index in range(1, the_fleet.nodes + 1)),
        "storm CT first": first["vmid"] == the_fleet.storm_vmid and first["fork_storm"]["process"] == "socat",
        "OOM-killed CTs": len(report["summary"]["oom_killed"]) == the_fleet.expected_oom,
        "one /cluster/resources call per run": list(calls) == [1] * len(calls),
    }


def require(checks, what):
    failed = [name for name, passed in checks.items() if not passed]
    if failed:
        raise SystemExit("benchmark result is wrong at %s: %s" % (what, ", ".join(failed)))


def measure_size(cts, runs):
    with fleet(cts) as the_fleet:
        results = [succeeded(run_audit(the_fleet)) for _run in range(runs)]
        report = the_fleet.report()
        html_bytes = (the_fleet.base / "report" / "oom-audit.html").stat().st_size
        require(check_report(the_fleet, report, [result["resources_calls"] for result in results]), "%d CTs" % cts)
    timings = [result["wall_s"] for result in results]
    return {"cts": cts, "runs": runs, "median_s": statistics.median(timings), "best_s": min(timings),
            "worst_s": max(timings), "lines": the_fleet.lines, "log_bytes": the_fleet.log_bytes, "html_bytes": html_bytes,
            "oom_killed": len(report["summary"]["oom_killed"]), "incidents": report["summary"]["incidents"]}


def fit(rows):
    """Least squares ``seconds = fixed + per_ct * CTs`` and R^2."""
    xs = [row["cts"] for row in rows]
    ys = [row["median_s"] for row in rows]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    fixed = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - fixed - slope * x) ** 2 for x, y in zip(xs, ys))
    return fixed, slope, (1.0 - residual / total) if total else 1.0


def render(rows):
    fixed, slope, r2 = fit(rows)
    largest = rows[-1]
    lines = [
        "`ansible-playbook playbooks/oom_audit.yml` end to end against the PVE API lab in synthetic mode "
        "(`--synthetic-cts N --nodes 3`: real cgroup v2 directories and CT configs per node, nine in ten CTs "
        "running, each running CT's `cgroup.procs` listing real pids), three inventory hosts (local "
        "connections, `-f 3`), per node a kernel log of %d lines per CT (`journalctl -o short-iso-precise`, OOM "
        "reports of %d%% of the CTs with their task dumps, one socat storm with a 1,361-row dump) and a lifecycle "
        "journal of 3 events per CT. One `/cluster/resources` call and one `lxc_oom_evidence` run per node per "
        "audit; the report written as JSON, Markdown and HTML. Median of %d runs; Python %s, %d CPUs. Target: "
        "1,000 CTs under %d s, time linear in the number of CTs."
        % (LINES_PER_CT, round(OOM_SHARE * 100), largest["runs"], platform.python_version(), os.cpu_count(),
           TARGET_S),
        "",
        "| CTs | kernel log | median | best | worst | per CT | OOM-killed CTs | HTML report |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append("| {:,} | {:,} lines, {:.1f} MB | {:.1f} s | {:.1f} s | {:.1f} s | {:.1f} ms | {:,} | {:.0f} kB |".format(
            row["cts"], row["lines"], row["log_bytes"] / 1e6, row["median_s"], row["best_s"], row["worst_s"],
            1000.0 * row["median_s"] / row["cts"], row["oom_killed"], row["html_bytes"] / 1e3))
    lines += [
        "",
        "Linear fit: %.1f s fixed (ansible-playbook start, connections) + %.1f ms per CT, R\u00b2 = %.3f. "
        "1,000 CTs: %.1f s (target under %d s: %s)." % (
            fixed, slope * 1000.0, r2, largest["median_s"], TARGET_S,
            ("met" if largest["median_s"] < TARGET_S else "MISSED") if largest["cts"] >= 1000 else "not measured"),
        "",
        "Reproduce: `.venv/bin/python tests/bench/bench_oom_audit.py --write docs/benchmarks.md`",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="MARKDOWN", help="replace this benchmark's section of this file")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="CT counts (default 250 500 1000)")
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per size (default %d)" % RUNS)
    args = parser.parse_args()
    rows = []
    for cts in sorted(args.sizes):
        row = measure_size(cts, args.runs)
        rows.append(row)
        print("oom_audit: %5d CTs: median %.1f s, best %.1f s, worst %.1f s (%d runs, %d log lines)" % (
            cts, row["median_s"], row["best_s"], row["worst_s"], row["runs"], row["lines"]), flush=True)
    text = render(rows)
    print(text)
    if args.write:
        sections.replace_section(args.write, NAME, HEADING, text)
        print("wrote the %s section of %s" % (NAME, args.write))
    largest = rows[-1]
    return 0 if largest["cts"] < 1000 or largest["median_s"] < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
