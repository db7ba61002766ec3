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

The fleet, run_audit() and check_report() are tests/support/fleet.py's (bench_oom_audit_scale.py and
tests/integration/report/test_remediation_command.py use them too).

    .venv/bin/python tests/bench/bench_oom_audit.py                       # print the figures
    .venv/bin/python tests/bench/bench_oom_audit.py --write docs/benchmarks.md
    .venv/bin/python tests/bench/bench_oom_audit.py --sizes 60 --runs 1   # try the harness
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support and the collection on sys.path
import sections
from support.fleet import LINES_PER_CT, OOM_SHARE, check_report, fleet, run_audit

NAME = "oom_audit"
HEADING = "## Fleet OOM audit (playbooks/oom_audit.yml)"
SIZES = (250, 500, 1000)
RUNS = 3
TARGET_S = 60.0


def succeeded(result):
    """``result`` of run_audit(), or the end of the failed run's output as the benchmark's exit."""
    if result["returncode"] != 0:
        raise SystemExit("the audit failed (exit %d):\n%s" % (result["returncode"], result["output"]))
    return result


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
