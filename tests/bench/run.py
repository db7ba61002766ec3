"""enva.pve's benchmarks: each subcommand measures one thing and replaces its own section of the report.

    .venv/bin/python tests/bench/run.py relay --write docs/benchmarks.md      # DNS relay vs peers (~10 min)
    .venv/bin/python tests/bench/run.py relay --quick                         # try the harness (~1 min), print only
    .venv/bin/python tests/bench/run.py oom-evidence --write docs/benchmarks.md
    .venv/bin/python tests/bench/run.py oom-audit --write docs/benchmarks.md  # fleet audit, 250/500/1,000 CTs (~3 min)
    .venv/bin/python tests/bench/run.py oom-audit-scale --write docs/benchmarks.md  # 10-100 nodes, forks (~25 min)
    .venv/bin/python tests/bench/run.py dnsmasq --write docs/benchmarks.md   # why not dnsmasq (~4 min)
    .venv/bin/python tests/bench/run.py oom-watch --write docs/benchmarks.md # the watch's overhead, stall -> alert (~5 min)
    .venv/bin/python tests/bench/run.py all --write docs/benchmarks.md        # what `make bench` runs

The report is sectioned (tests/bench/sections.py): each benchmark owns one
heading and a marked block; the rest of the file is left alone. Exit status 1
when a benchmark misses a target (the report still says so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import relay_bench
import relay_report
import sections

HERE = Path(__file__).resolve().parent


def bench_relay(args):
    load = os.getloadavg()[0]
    if load > 0.5:
        print("bench: load average %.2f: other work shares the CPUs, the figures will show it" % load)
    figures = relay_bench.measure(relay_bench.Options(quick=args.quick))
    for target, measured, met in figures["targets"]:
        print("bench: %-62s %-18s %s" % (target, measured, "met" if met else "MISSED"))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    if args.write:
        report = Path(args.write)
        chart = report.parent / "benchmarks-relay.png"
        relay_report.render_chart(figures, chart)
        sections.replace_section(report, "relay", "## DNS relay", relay_report.render_markdown(figures, chart.name))
        print("bench: wrote the DNS relay section of %s and %s" % (report, chart))
    return 0 if all(met for _t, _m, met in figures["targets"]) else 1


def bench_oom_evidence(args):
    command = [sys.executable, str(HERE / "bench_oom_evidence.py")] + (["--write", args.write] if args.write else [])
    return subprocess.run(command, check=False).returncode


def bench_dnsmasq(args):
    command = [sys.executable, str(HERE / "bench_dnsmasq.py")] + (["--write", args.write] if args.write else [])
    return subprocess.run(command, check=False).returncode


def bench_oom_audit(args):
    command = [sys.executable, str(HERE / "bench_oom_audit.py")] + (["--write", args.write] if args.write else [])
    return subprocess.run(command, check=False).returncode


def bench_oom_audit_scale(args):
    command = [sys.executable, str(HERE / "bench_oom_audit_scale.py")] + (["--write", args.write] if args.write else [])
    return subprocess.run(command, check=False).returncode


def bench_oom_watch(args):
    command = [sys.executable, str(HERE / "bench_oom_watch.py")] + (["--write", args.write] if args.write else [])
    return subprocess.run(command, check=False).returncode


BENCHMARKS = {"relay": bench_relay, "oom-watch": bench_oom_watch, "oom-evidence": bench_oom_evidence, "oom-audit": bench_oom_audit,
              "oom-audit-scale": bench_oom_audit_scale, "dnsmasq": bench_dnsmasq}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS) + ["all"])
    parser.add_argument("--write", metavar="MARKDOWN", help="replace the benchmark's section of this file (and its chart)")
    parser.add_argument("--quick", action="store_true", help="relay: 1 short round and a 10 s flood, to try the harness")
    parser.add_argument("--json", metavar="FILE", help="relay: also dump the raw figures")
    args = parser.parse_args(argv)
    if args.quick and args.write:
        parser.error("--quick figures are not for the record: use it without --write")
    names = sorted(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    status = 0
    for name in names:
        status |= BENCHMARKS[name](args)
    return status


if __name__ == "__main__":
    sys.exit(main())
