"""A/B: two versions of the relay (and dnsdist) in one run of the fair harness, rounds alternating.

    .venv/bin/python tests/bench/relay_ab.py --old-rev main --rounds 7 --write docs/benchmarks.md
    git show 7ce8c03:roles/dns_relay/files/enva_dns_relay.py > /tmp/relay-before.py
    .venv/bin/python tests/bench/relay_ab.py --old /tmp/relay-before.py --rounds 7

The old version is a git revision of this repository (its roles/dns_relay/files
unpacked into a temporary directory), a launcher file (one-file relays, as
before issue 17, or a package's enva_dns_relay.py, which finds enva_relay/
next to it) or a directory holding one; the new one is this checkout's unless
--new names another. Each runs pinned alone to CPU 1 like in relay_bench,
dnsperf and unbound on CPU 0; printed: qps and answers per CPU-second per
round, their medians, the ratios (new/old also per round: the two ran
next to each other) and the load average. --write puts them into their own
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import relay_bench as rb
import sections

NAMES = ("new", "old", "dnsdist")
LAUNCHER = Path("roles") / "dns_relay" / "files" / "enva_dns_relay.py"


def launcher(path):
    """The relay's launcher file: ``path`` itself, or enva_dns_relay.py in the directory (a files/ dir or a checkout)."""
    path = Path(path)
    for candidate in (path, path / "enva_dns_relay.py", path / LAUNCHER):
        if candidate.is_file():
            return candidate.resolve()
    raise SystemExit("relay_ab: no enva_dns_relay.py at %s" % path)


def unpack_revision(rev, into):
    """roles/dns_relay/files of git revision ``rev`` of this repository, unpacked below ``into``; its launcher."""
    archive = subprocess.run(["git", "-C", str(rb.ROOT), "archive", "--format=tar", rev, "roles/dns_relay/files"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if archive.returncode:
        raise SystemExit("relay_ab: git archive %s: %s" % (rev, archive.stderr.decode(errors="replace").strip()))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(str(into))  # our own repository's files
    return launcher(Path(into) / LAUNCHER)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    old = parser.add_mutually_exclusive_group(required=True)
    old.add_argument("--old", help="the other relay version: a launcher .py file or a directory holding one")
    old.add_argument("--old-rev", help="the other relay version: a git revision of this repository (e.g. main)")
    parser.add_argument("--new", default=str(rb.RELAY), help="the relay version under test (default: this checkout's)")
    parser.add_argument("--old-label", help="its name in the report (default: --old-rev or the path)")
    parser.add_argument("--new-label", help="its name in the report (default: this checkout and its commit, or the path)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--write", metavar="FILE", help="put the figures into FILE's relay_ab section (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="enva-bench-relay-ab-"))
    try:
        old_path = unpack_revision(args.old_rev, workdir / "old") if args.old_rev else launcher(args.old)
        new_path = launcher(args.new)
        return compare(args, workdir, new_path, old_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compare(args, workdir, new_path, old_path):
    """The A/B run itself; prints every round and the medians, writes the section with --write."""
    ports = {}
    for name in rb.PEERS + ("old",):
        ports[name] = rb.free_port(ports.values())
    rb.write_configs(workdir, ports)
    upstream = "127.0.0.1:%d" % ports["direct"]

    def relay(path, port):
        return rb.pinned([rb.PYTHON, str(path), "--listen", "127.0.0.1:%d" % port, "--upstream", upstream, "--log-level", "warning"],
                         rb.PIN_FORWARDER)
    peers = {
        "direct": rb.Peer("direct", ports["direct"], rb.pinned(["unbound", "-d", "-c", str(workdir / "unbound.conf")], rb.PIN_LOAD),
                          workdir),
        "new": rb.Peer("new", ports["relay"], relay(new_path, ports["relay"]), workdir),
        "old": rb.Peer("old", ports["old"], relay(old_path, ports["old"]), workdir),
        "dnsdist": rb.Peer("dnsdist", ports["dnsdist"], rb.pinned(["dnsdist", "--supervised", "--disable-syslog", "-C",
                                                                   str(workdir / "dnsdist.conf")], rb.PIN_FORWARDER), workdir),
    }
    runs = {name: [] for name in NAMES}
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    try:
        for peer in peers.values():
            peer.start()
        for round_ in range(args.rounds):
            for name in NAMES if round_ % 2 == 0 else tuple(reversed(NAMES)):
                before = peers[name].cpu_seconds()
                run = rb.dnsperf(peers[name].port, workdir, args.seconds)
                run["cpu"] = peers[name].cpu_seconds() - before
                runs[name].append(run)
                print("round %d %-8s %8.0f qps %8.0f answers per CPU-s" % (round_ + 1, name, run["qps"], rb.per_cpu(run)), flush=True)
        hwm = {name: peers[name].hwm_kib() / rb.MIB for name in NAMES}
    finally:
        for peer in peers.values():
            peer.stop()
    load_after = os.getloadavg()
    per_cpu = {name: statistics.median(rb.per_cpu(run) for run in runs[name]) for name in NAMES}
    for name in NAMES:
        print("%-8s median %8.0f answers per CPU-s (%s), %8.0f qps, peak RSS %.1f MiB" % (
            name, per_cpu[name], ", ".join("%.0f" % rb.per_cpu(run) for run in runs[name]),
            statistics.median(run["qps"] for run in runs[name]), hwm[name]))
    paired = [rb.per_cpu(n) / rb.per_cpu(o) for n, o in zip(runs["new"], runs["old"]) if rb.per_cpu(o)]
    print("per CPU-s: new/old %.3f (per round: median %.3f, %s), new/dnsdist %.2f, old/dnsdist %.2f; load average before %s, after %s" % (
        per_cpu["new"] / per_cpu["old"], statistics.median(paired), ", ".join("%.3f" % r for r in paired),
        per_cpu["new"] / per_cpu["dnsdist"], per_cpu["old"] / per_cpu["dnsdist"],
        " / ".join("%.2f" % x for x in load_before), " / ".join("%.2f" % x for x in load_after)))
    if args.write:
        old_label = args.old_label or ("%s (%s)" % (args.old_rev, short_commit(args.old_rev)) if args.old_rev else str(args.old))
        new_label = args.new_label or ("this checkout (%s)" % short_commit("HEAD") if args.new == str(rb.RELAY) else args.new)
        labels = {"new": new_label, "old": old_label, "dnsdist": "dnsdist"}
        body = render(args, labels, runs, per_cpu, paired, hwm, started, load_before, load_after)
        sections.replace_section(args.write, "relay_ab", "## DNS relay A/B", body)
    return 0


def short_commit(rev):
    """``rev``'s abbreviated commit in this repository ("?" if git cannot say)."""
    out = subprocess.run(["git", "-C", str(rb.ROOT), "rev-parse", "--short", rev], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, check=False)
    return out.stdout.strip() or "?"


def python_version():
    """The version of the Python the relays run under (Debian's, as in a CT)."""
    out = subprocess.run([rb.PYTHON, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    return out.stdout.split()[-1] if out.stdout.split() else "?"


def render(args, labels, runs, per_cpu, paired, hwm, started, load_before, load_after):
    """The section's Markdown: how it ran, per round and median figures, the ratio new/old with its spread."""
    command = ".venv/bin/python tests/bench/relay_ab.py %s --rounds %d --seconds %d --write docs/benchmarks.md" % (
        "--old-rev %s" % args.old_rev if args.old_rev else "--old %s" % args.old, args.rounds, args.seconds)
    host = rb.machine()
    load = (" / ".join("%.2f" % x for x in load_before), " / ".join("%.2f" % x for x in load_after))
    lines = [
        "Measured %s UTC on %s (%d CPUs), Python %s. Load average before %s, after %s (other engineers' work shares this "
        "machine)." % ((started.strftime("%Y-%m-%d %H:%M"), host["cpu"], host["cpus"], python_version()) + load),
        "",
        "Two versions of the relay and dnsdist in one run: %d rounds of `dnsperf -c 4 -q 200 -l %d`, the order reversed every other "
        "round (new, old, dnsdist; then dnsdist, old, new). Each forwarder pinned alone to CPU %s (`taskset`), dnsperf and "
        "unbound to CPU %s; \"answers per CPU-s\" divides the answers by the CPU time of the forwarder itself (one core)." % (
            args.rounds, args.seconds, rb.PIN_FORWARDER, rb.PIN_LOAD),
        "",
        "| relay | answers per CPU-s (median) | per round | × dnsdist | qps (median) | peak RSS |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name in NAMES:
        lines.append("| %s | %s | %s | %.2f | %s | %.1f MiB |" % (
            labels[name], "{:,.0f}".format(per_cpu[name]), ", ".join("{:,.0f}".format(rb.per_cpu(run)) for run in runs[name]),
            per_cpu[name] / per_cpu["dnsdist"], "{:,.0f}".format(statistics.median(run["qps"] for run in runs[name])), hwm[name]))
    lines += [
        "",
        "**new/old, answers per CPU-s: %.3f** (ratio of the medians); per round, the two measured next to each other: "
        "median %.3f, range %.3f–%.3f (%s)." % (per_cpu["new"] / per_cpu["old"], statistics.median(paired), min(paired), max(paired),
                                                ", ".join("%.3f" % r for r in paired)),
        "",
        "Reproduce: `%s`" % command,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
