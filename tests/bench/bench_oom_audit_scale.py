"""Benchmark: the fleet OOM audit against the number of nodes and CTs, and the Ansible settings that carry it.

The fleets are built as bench_oom_audit.py builds them (not timed): the PVE API lab in synthetic mode
(``--synthetic-cts N --nodes M``), per node a kernel log of 100 lines per CT with OOM reports and a lifecycle
journal, one local-connection inventory host per node (pve1..pveM). Two measurements:

* nodes: 10, 30 and 100 nodes x 100 CTs (1,000 / 3,000 / 10,000 CTs), and 100 nodes x 10 CTs, which tells
  what a node costs apart from what a CT costs; forks 10; RUNS runs per shape (median, min, max);
* settings: one fleet of 30 nodes x 100 CTs and four peers - forks 5 (Ansible's default), 10 and 30;
  pipelining - one untimed warm-up run, then RUNS interleaved rounds (A B C D, A B C D, ...), so drift on
  the machine hits every peer alike. The strategy is not a setting here: playbooks/oom_audit.yml pins
  ``strategy: linear`` (under free, which this benchmark first measured, the run_once tasks ran on every
  host - N /cluster/resources requests - and the report task sometimes ran before every node's evidence).

ansible-playbook and the API lab run under ``taskset -c 0,1``, every run started the same way (in this
process's session: sched_autogroup puts every run in the same group). The Ansible settings come from
ANSIBLE_FORKS, ANSIBLE_STRATEGY and ANSIBLE_PIPELINING, all three set for every run. Every run is
checked: exactly one /cluster/resources request, every CT and every node in the report, the storm CT
first, the OOM-killed CTs. A peer whose run fails is reported with its error and its /cluster/resources
requests and left out of later rounds; a failure in the node series ends the benchmark.

    .venv/bin/python tests/bench/bench_oom_audit_scale.py --write docs/benchmarks.md
    .venv/bin/python tests/bench/bench_oom_audit_scale.py --shapes 3x20 6x20 6x5 --settings-shape 3x20 --runs 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support and the collection on sys.path
import sections
from support import fleet

NAME = "oom_audit_scale"
HEADING = "## Fleet OOM audit at scale: nodes, CTs and Ansible settings"
SHAPES = ((10, 100), (30, 100), (100, 100), (100, 10))
SETTINGS_SHAPE = (30, 100)
FORKS = (5, 10, 30)
SERIES_FORKS = 10
RUNS = 3
CPUS = "0,1"
PLANNED = ((1000, 10), (1000, 100))      # what the fit is extrapolated to: nodes x CTs per node


@dataclasses.dataclass(frozen=True)
class Peer:
    """One way to run the audit: the Ansible settings of the comparison."""

    forks: int
    strategy: str = "linear"
    pipelining: bool = False

    @property
    def label(self):
        parts = ["forks %d%s" % (self.forks, " (default)" if self.forks == 5 else "")]
        if self.strategy != "linear":
            parts.append("strategy %s" % self.strategy)
        if self.pipelining:
            parts.append("pipelining")
        return ", ".join(parts)

    @property
    def settings(self):
        return {"ANSIBLE_STRATEGY": self.strategy, "ANSIBLE_PIPELINING": str(self.pipelining)}


def peers_for(forks):
    """forks F1, F2, ... (no pipelining), then the largest forks with pipelining."""
    return [Peer(count) for count in forks] + [Peer(max(forks), pipelining=True)]


def wrapper():
    return ("taskset", "-c", CPUS)


def cores():
    return len(CPUS.split(","))


def parse_shape(text):
    nodes, sep, per_node = text.partition("x")
    if not sep or not nodes.isdigit() or not per_node.isdigit() or int(nodes) < 1 or int(per_node) < 1:
        raise argparse.ArgumentTypeError("a shape is NODESxCTS_PER_NODE (10x100), got %r" % text)
    return int(nodes), int(per_node)


def checked_run(the_fleet, peer):
    """One run of ``peer`` on ``the_fleet``, its report and API requests checked: ``ok``, or ``error`` says
    what went wrong (the run's first error line, or the checks that failed)."""
    result = fleet.run_audit(the_fleet, forks=peer.forks, settings=peer.settings, wrapper=wrapper())
    if result["returncode"] == 0:
        checks = fleet.check_report(the_fleet, the_fleet.report(), [result["resources_calls"]])
        failed = [name for name, passed in checks.items() if not passed]
        if failed:
            result["error"] = "wrong result: %s" % ", ".join(failed)
    result["ok"] = not result["error"]
    return result


def required(result, peer, what):
    if not result["ok"]:
        raise SystemExit("benchmark run failed at %s, %s: %s\n%s" % (what, peer.label, result["error"], result["output"]))
    return result


def short_error(result):
    error = result["error"].replace("|", "\\|")
    return error if len(error) <= 110 else "..." + error[-110:]


def summarize(results, cts):
    walls = [result["wall_s"] for result in results]
    cpu = [result["cpu_s"] + result["api_cpu_s"] for result in results]
    median = statistics.median(walls)
    return {"runs": len(results), "median_s": median, "best_s": min(walls), "worst_s": max(walls),
            "cts_per_s_core": cts / median / cores(), "cpu_s": statistics.median(cpu),
            "busy": statistics.median(c / w / cores() for c, w in zip(cpu, walls)),
            "resources_calls": [result["resources_calls"] for result in results]}


def measure_shape(nodes, per_node, runs, forks):
    cts = nodes * per_node
    started = time.perf_counter()
    with fleet.fleet(cts, nodes, wrapper=wrapper()) as the_fleet:
        built = time.perf_counter() - started
        peer = Peer(forks)
        results = [required(checked_run(the_fleet, peer), peer, "%dx%d" % (nodes, per_node)) for _run in range(runs)]
        row = summarize(results, cts)
    row.update(nodes=nodes, per_node=per_node, cts=cts, forks=forks, lines=the_fleet.lines,
               log_bytes=the_fleet.log_bytes, build_s=built)
    print("oom_audit_scale: %3d nodes x %3d CTs: median %.1f s (%.1f..%.1f), %.0f ms/node, %.1f ms/CT, built in %.0f s"
          % (nodes, per_node, row["median_s"], row["best_s"], row["worst_s"], 1000 * row["median_s"] / nodes,
             1000 * row["median_s"] / cts, built), flush=True)
    return row


def measure_settings(shape, runs, forks):
    """The peers in interleaved rounds on one fleet, after one untimed warm-up run of the first peer."""
    nodes, per_node = shape
    peers = peers_for(forks)
    results = {peer: [] for peer in peers}
    failures = {}
    what = "%dx%d" % shape
    with fleet.fleet(nodes * per_node, nodes, wrapper=wrapper()) as the_fleet:
        required(checked_run(the_fleet, peers[0]), peers[0], what + " (warm-up)")
        for round_index in range(runs):
            for peer in peers:
                if peer in failures:
                    continue
                result = checked_run(the_fleet, peer)
                if result["ok"]:
                    results[peer].append(result)
                elif peer.strategy == "linear":
                    required(result, peer, what)
                else:
                    failures[peer] = result
                print("oom_audit_scale: round %d, %-32s %s" % (
                    round_index + 1, peer.label + ":",
                    "%.1f s" % result["wall_s"] if result["ok"] else "FAILED: " + short_error(result)), flush=True)
    rows = []
    for peer in peers:
        row = {"peer": peer, "failure": failures.get(peer)}
        if results[peer]:
            row.update(summarize(results[peer], nodes * per_node))
        rows.append(row)
    return {"nodes": nodes, "per_node": per_node, "cts": nodes * per_node, "rows": rows}


def least_squares(points):
    """``seconds = fixed + per_node * nodes + per_ct * CTs`` over (nodes, cts, seconds) points and R^2; when
    the points cannot tell a node from a CT (all with the same CTs per node), ``per_ct`` is None and
    ``per_node`` carries both; None when they cannot even give ``fixed + per_node * nodes`` (one shape, or
    every shape with the same number of nodes: fewer distinct points than unknowns)."""
    columns = [[1.0, float(nodes), float(cts)] for nodes, cts, _s in points]
    ys = [seconds for _n, _c, seconds in points]
    coefficients = _solve(columns, ys) if len(points) >= 3 else None
    if coefficients is None:
        two = _solve([row[:2] for row in columns], ys)
        if two is None:
            return None
        coefficients = two + [None]
    fixed, per_node, per_ct = coefficients
    mean_y = statistics.mean(ys)
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - fixed - per_node * nodes - (per_ct or 0.0) * cts) ** 2 for nodes, cts, y in points)
    return fixed, per_node, per_ct, (1.0 - residual / total) if total else 1.0


def _solve(rows, ys):
    """Least squares by the normal equations and Gauss-Jordan elimination; None when they are singular."""
    size = len(rows[0])
    matrix = [[sum(row[i] * row[j] for row in rows) for j in range(size)]
              + [sum(row[i] * y for row, y in zip(rows, ys))] for i in range(size)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r, c=col: abs(matrix[r][c]))
        scale = max(abs(value) for value in matrix[col][:size]) or 1.0
        if abs(matrix[pivot][col]) < 1e-9 * scale:
            return None
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        for other in range(size):
            if other != col:
                factor = matrix[other][col] / matrix[col][col]
                matrix[other] = [a - factor * b for a, b in zip(matrix[other], matrix[col])]
    return [matrix[i][size] / matrix[i][i] for i in range(size)]


def _seconds(value):
    return "%.0f s" % value if value >= 100 else "%.1f s" % value


def render_nodes(rows):
    lines = [
        "| nodes x CTs | CTs | kernel logs | median | min | max | per node | per CT | CTs/s per core "
        "| CPU (controller + API) | CPUs busy | /cluster/resources per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append("| {} x {} | {:,} | {:,} lines, {:.0f} MB | {} | {} | {} | {:.0f} ms | {:.1f} ms | {:.1f} "
                     "| {} | {:.0f} % | {} |".format(
                         row["nodes"], row["per_node"], row["cts"], row["lines"], row["log_bytes"] / 1e6,
                         _seconds(row["median_s"]), _seconds(row["best_s"]), _seconds(row["worst_s"]),
                         1000 * row["median_s"] / row["nodes"], 1000 * row["median_s"] / row["cts"],
                         row["cts_per_s_core"], _seconds(row["cpu_s"]), 100 * row["busy"],
                         ", ".join(str(calls) for calls in row["resources_calls"])))
    return lines


def render_settings(settings):
    rows = settings["rows"]
    baseline = next((row for row in rows if row["peer"].forks == 5 and "median_s" in row), None)
    lines = [
        "| settings | median | min | max | vs forks 5 | CTs/s per core | CPU (controller + API) | CPUs busy | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        peer, failure = row["peer"], row["failure"]
        if "median_s" not in row:
            lines.append("| %s | - | - | - | - | - | - | - | failed: %s (%d /cluster/resources requests) |" % (
                peer.label, short_error(failure), failure["resources_calls"]))
            continue
        ratio = "%.2fx" % (row["median_s"] / baseline["median_s"]) if baseline else "-"
        lines.append("| {} | {} | {} | {} | {} | {:.1f} | {} | {:.0f} % | correct, {} run(s){} |".format(
            peer.label, _seconds(row["median_s"]), _seconds(row["best_s"]), _seconds(row["worst_s"]), ratio,
            row["cts_per_s_core"], _seconds(row["cpu_s"]), 100 * row["busy"], row["runs"],
            "; then failed: " + short_error(failure) if failure else ""))
    return lines


def render_fit(rows, settings):
    fit = least_squares([(row["nodes"], row["cts"], row["median_s"]) for row in rows])
    forks = rows[0]["forks"]
    largest = max(rows, key=lambda row: (row["cts"], row["nodes"]))
    if fit is None:
        text = ["**No fit.** %d shape(s) measured, all at %s node(s): a fit of seconds against nodes and CTs needs "
                "shapes with at least two different numbers of nodes (fewer shapes than unknowns leave it "
                "singular), so the table stands alone." % (len(rows), "/".join(sorted({str(row["nodes"]) for row in rows})))]
    else:
        text = _fit_text(fit, rows, forks)
    text.append("Measured at %d x %d (%s CTs): %s, %.1f ms per CT, %.1f CTs/s per core, the %d CPUs %.0f %% busy; "
                "here each node's lxc_oom_evidence runs on the controller too (local connections), on a cluster it "
                "runs on the node over SSH, which this benchmark does not measure." % (
                    largest["nodes"], largest["per_node"], "{:,}".format(largest["cts"]), _seconds(largest["median_s"]),
                    1000 * largest["median_s"] / largest["cts"], largest["cts_per_s_core"], cores(),
                    100 * largest["busy"]))
    text += _settings_facts(settings)
    text.append("To run it on a schedule a team puts it in AWX / Ansible Automation Platform: an execution "
                "environment (a container image with ansible-core, this collection and proxmoxer), a job "
                "template on playbooks/oom_audit.yml with the PVE nodes' inventory and a schedule, forks set on "
                "the job template and bounded by the instance group's max_forks.")
    return " ".join(text)


def _fit_text(fit, rows, forks):
    fixed, per_node, per_ct, r2 = fit
    text = ["**The fit.** On %d cores at forks %d the audit took %.1f s fixed plus %.0f ms per node" % (
        cores(), forks, fixed, 1000 * per_node)]
    if per_ct is None:
        text[0] += " (%d CTs per node in every shape, so a node and its CTs are one cost here; least squares " \
                   "over %d shapes, R\u00b2 = %.3f)." % (rows[0]["per_node"], len(rows), r2)
    else:
        text[0] += " plus %.1f ms per CT (least squares over the %d shapes, R\u00b2 = %.3f)." % (1000 * per_ct, len(rows), r2)
        text.append("Extrapolated, taking the fit beyond the %d nodes measured, on the same %d cores at forks %d: %s." % (
            max(row["nodes"] for row in rows), cores(), forks, "; ".join(
                "%s nodes x %d CTs (%s CTs) %s" % ("{:,}".format(nodes), count, "{:,}".format(nodes * count),
                                                   _minutes(fixed + per_node * nodes + per_ct * nodes * count))
                for nodes, count in PLANNED)))
    return text


def _settings_facts(settings):
    """The default forks against the fastest other peer, then the peers that failed."""
    measured = [row for row in settings["rows"] if "median_s" in row]
    default = next((row for row in measured if row["peer"] == Peer(5)), None)
    others = [row for row in measured if row is not default]
    if not default or not others:
        return _failed_peers(settings)
    best = min(others, key=lambda row: row["median_s"])
    overlap = best["worst_s"] >= default["best_s"] and default["worst_s"] >= best["best_s"]
    return ["At %d x %d, Ansible's default forks 5 took %s (%s..%s); the fastest other peer, %s, %s (%s..%s)%s." % (
        settings["nodes"], settings["per_node"], _seconds(default["median_s"]), _seconds(default["best_s"]),
        _seconds(default["worst_s"]), best["peer"].label, _seconds(best["median_s"]), _seconds(best["best_s"]),
        _seconds(best["worst_s"]), "; the min..max ranges overlap" if overlap else "")] + _failed_peers(settings)


def _failed_peers(settings):
    text = []
    for row in settings["rows"]:
        if row["failure"] and "median_s" not in row:
            calls = row["failure"]["resources_calls"]
            text.append("%s failed%s: the play depends on the linear strategy." % (
                row["peer"].label, " (its run_once tasks ran on every host: %d /cluster/resources requests)" % calls
                if calls > 1 else ""))
    return text


def _minutes(seconds):
    return "%.1f min" % (seconds / 60.0) if seconds >= 120 else _seconds(seconds)


def render(rows, settings, load):
    series_forks = rows[0]["forks"]
    lines = [
        "Measured %s; load average before the run %s, after %s (other work on the machine shows in the figures)."
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), " / ".join("%.2f" % value for value in load[0]),
           " / ".join("%.2f" % value for value in load[1])),
        "",
        "`ansible-playbook playbooks/oom_audit.yml` against the PVE API lab in synthetic mode, fleets built as in "
        "the section above (per node a kernel log of %d lines per CT with OOM reports of %d%% of its CTs, a "
        "lifecycle journal, one local-connection inventory host per node). ansible-playbook and the API lab run "
        "under `taskset -c %s` (%d cores); forks, strategy and pipelining set by ANSIBLE_FORKS, ANSIBLE_STRATEGY "
        "and ANSIBLE_PIPELINING for every run. Every run checked: one `/cluster/resources` request, every CT "
        "and every node in the report. CPU = user + system seconds of ansible-playbook with its workers and "
        "modules, plus the API lab's; CPUs busy = CPU / wall time / %d. Python %s, ansible-core %s."
        % (fleet.LINES_PER_CT, round(fleet.OOM_SHARE * 100), CPUS, cores(), cores(), platform.python_version(),
           _ansible_version()),
        "",
        "Against the number of nodes (forks %d, median of %d runs):" % (series_forks, rows[0]["runs"]),
        "",
    ]
    lines += render_nodes(rows)
    lines += [
        "",
        "The Ansible settings at %d nodes x %d CTs (%s CTs): one warm-up run, then %d interleaved rounds of "
        "every peer." % (settings["nodes"], settings["per_node"], "{:,}".format(settings["cts"]),
                         max((row.get("runs", 0) for row in settings["rows"]), default=0)),
        "",
    ]
    lines += render_settings(settings)
    lines += ["", render_fit(rows, settings), "",
              "Reproduce: `.venv/bin/python tests/bench/bench_oom_audit_scale.py --write docs/benchmarks.md`"]
    return "\n".join(lines)


def _ansible_version():
    try:
        from ansible.release import __version__  # pylint: disable=import-outside-toplevel
    except ImportError:
        return "unknown"
    return __version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="MARKDOWN", help="replace this benchmark's section of this file")
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=list(SHAPES),
                        help="NODESxCTS_PER_NODE of the nodes series (default 10x100 30x100 100x100 100x10)")
    parser.add_argument("--settings-shape", type=parse_shape, default=SETTINGS_SHAPE,
                        help="NODESxCTS_PER_NODE of the settings comparison (default 30x100)")
    parser.add_argument("--forks", type=int, nargs="+", default=list(FORKS), help="forks peers (default 5 10 30)")
    parser.add_argument("--series-forks", type=int, default=SERIES_FORKS, help="forks of the nodes series (10)")
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per shape and rounds of peers (%d)" % RUNS)
    args = parser.parse_args()
    if args.runs < 1 or min(args.forks) < 1 or args.series_forks < 1:
        parser.error("--runs, --forks and --series-forks want positive numbers")
    started, load_before = time.perf_counter(), os.getloadavg()
    settings = measure_settings(args.settings_shape, args.runs, sorted(set(args.forks)))
    rows = [measure_shape(nodes, per_node, args.runs, args.series_forks)
            for nodes, per_node in sorted(args.shapes, key=lambda shape: (shape[0] * shape[1], shape[0]))]
    text = render(rows, settings, (load_before, os.getloadavg()))
    print(text)
    print("oom_audit_scale: %.0f s in all" % (time.perf_counter() - started))
    if args.write:
        sections.replace_section(args.write, NAME, HEADING, text)
        print("wrote the %s section of %s" % (NAME, args.write))
    return 0


if __name__ == "__main__":
    sys.exit(main())
