"""Benchmark: what PVE 9's pressure fields cost the fleet audit's API step (enva.pve.pve_resources).

/cluster/resources has no pressure fields; the audit gets them with one ``GET /nodes/{node}/lxc`` per node it
asks (option ``pressure``): ``none`` (PVE 8's cost: one call), ``near_full`` (the default: nodes holding a
running CT at 90 % of its memory or more) and ``all`` (every online node with a running CT). The PVE API lab
serves a synthetic cluster (``--synthetic-cts N --nodes M``, PVE 9 mode, every running CT with its
``{cpu,io,memory}.pressure`` files); the module's main() runs in this process against it over HTTPS, RUNS
times per mode, interleaved (none, near_full, all, none, ...). Both run under ``taskset -c 0,1``.

    .venv/bin/python tests/bench/bench_pve_pressure.py --write docs/benchmarks.md
    .venv/bin/python tests/bench/bench_pve_pressure.py --shape 10x100 --runs 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support and the collection on sys.path
import sections
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.enva.pve.plugins.modules import pve_resources
from support.pve_lab import ApiLabProcess

NAME = "pve_pressure"
HEADING = "## PVE 9 pressure fields: the audit's extra API calls"
MODES = ("none", "near_full", "all")
RUNS = 3


class Done(Exception):
    """exit_json or fail_json was called."""


def run_module(args):
    """pve_resources' main() with ``args``: (result, seconds)."""
    def finish(_self, **kwargs):
        raise Done(kwargs)
    result = None
    old_exit, old_fail = basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json
    basic.AnsibleModule.exit_json = basic.AnsibleModule.fail_json = finish
    started = time.perf_counter()
    try:
        with patch_module_args(args):
            pve_resources.main()
    except Done as done:
        result = done.args[0]
    finally:
        basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = old_exit, old_fail
    seconds = time.perf_counter() - started
    if "msg" in result and "cts" not in result:
        raise SystemExit("pve_resources failed: %s" % result["msg"])
    return result, seconds


def measure(nodes, per_node, runs):
    cts = nodes * per_node
    with tempfile.TemporaryDirectory(prefix="bench-pve-pressure-") as tmp:
        api = ApiLabProcess(Path(tmp) / "labdir", "--synthetic-cts", str(cts), "--nodes", str(nodes), "--pve", "9",
                            startup_seconds=600, wrapper=("taskset", "-c", "0,1"))
        try:
            args = dict(api.connection("readonly"), api_timeout=120)
            run_module(dict(args, pressure="none"))                     # warm-up (TLS, caches), not counted
            times = {mode: [] for mode in MODES}
            outcome = {}
            for _round in range(runs):
                for mode in MODES:
                    before = api.log_path.read_text().count("GET /api2/json/")
                    result, seconds = run_module(dict(args, pressure=mode))
                    requests = api.log_path.read_text().count("GET /api2/json/") - before
                    times[mode].append(seconds)
                    source = result["pressure_source"]
                    with_pressure = sum(1 for entry in result["cts"].values() if entry["pressure"])
                    outcome[mode] = (requests, source["calls"], len(source["asked"]), with_pressure,
                                     len(result["cts"]), len(source["failed"]))
        finally:
            api.stop()
    return cts, times, outcome


def render(shapes, runs):
    load = os.getloadavg()
    lines = [
        "Measured %s UTC; load average %.2f / %.2f / %.2f. Python %s. `pve_resources` main() in the benchmark's "
        "process against the PVE API lab (PVE 9 mode, synthetic cluster: nine in ten CTs running, used memory 20-94 %% "
        "of the limit, so about 7 %% of the running CTs are at 90 %% or more and every node of 100 CTs holds some), "
        "both under `taskset -c 0,1`; median of %d interleaved runs per mode after one warm-up." % (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load[0], load[1], load[2], platform.python_version(), runs),
        "",
        "| nodes x CTs | pressure | median | min | max | extra vs none | API requests | nodes asked | CTs with pressure |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (nodes, per_node), (cts, times, outcome) in shapes:
        base = statistics.median(times["none"])
        for mode in MODES:
            series = times[mode]
            requests, _calls, asked, with_pressure, total, failed = outcome[mode]
            lines.append("| %d x %d (%s CTs) | %s | %.2f s | %.2f s | %.2f s | %+.2f s | %d | %d | %s of %s%s |" % (
                nodes, per_node, "{:,}".format(cts), mode, statistics.median(series), min(series), max(series),
                statistics.median(series) - base, requests, asked, "{:,}".format(with_pressure), "{:,}".format(total),
                ", %d failed" % failed if failed else ""))
    lines += ["", "Reproduce: `.venv/bin/python tests/bench/bench_pve_pressure.py --write docs/benchmarks.md`"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--shape", action="append", help="NODESxCTS_PER_NODE (default 100x100 and 10x100)")
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--write", help="put the section into this markdown file (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    shapes = [tuple(int(part) for part in text.split("x")) for text in (args.shape or ["10x100", "100x100"])]
    measured = [((nodes, per_node), measure(nodes, per_node, args.runs)) for nodes, per_node in shapes]
    body = render(measured, args.runs)
    print(body)
    if args.write:
        sections.replace_section(args.write, NAME, HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
