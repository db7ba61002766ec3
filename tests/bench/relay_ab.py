"""A/B: two versions of the relay (and dnsdist) in one run of the fair harness, rounds alternating.

    git show 7ce8c03:roles/dns_relay/files/enva_dns_relay.py > /tmp/relay-before.py
    .venv/bin/python tests/bench/relay_ab.py --old /tmp/relay-before.py --rounds 7

The old version must be runnable as one file (the relay before issue 17 was);
the new one is this checkout's. Each runs pinned alone to CPU 1 like in
relay_bench, dnsperf and unbound on CPU 0; printed: qps and answers per
CPU-second per round, their medians, the ratios and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import relay_bench as rb

NAMES = ("new", "old", "dnsdist")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the other relay version, one .py file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="enva-bench-relay-ab-"))
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
        "new": rb.Peer("new", ports["relay"], relay(rb.RELAY, ports["relay"]), workdir),
        "old": rb.Peer("old", ports["old"], relay(args.old, ports["old"]), workdir),
        "dnsdist": rb.Peer("dnsdist", ports["dnsdist"], rb.pinned(["dnsdist", "--supervised", "--disable-syslog", "-C",
                                                                   str(workdir / "dnsdist.conf")], rb.PIN_FORWARDER), workdir),
    }
    runs = {name: [] for name in NAMES}
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
        shutil.rmtree(workdir, ignore_errors=True)
    per_cpu = {name: statistics.median(rb.per_cpu(run) for run in runs[name]) for name in NAMES}
    for name in NAMES:
        print("%-8s median %8.0f answers per CPU-s (%s), %8.0f qps, peak RSS %.1f MiB" % (
            name, per_cpu[name], ", ".join("%.0f" % rb.per_cpu(run) for run in runs[name]),
            statistics.median(run["qps"] for run in runs[name]), hwm[name]))
    print("per CPU-s: new/old %.2f, new/dnsdist %.2f, old/dnsdist %.2f; load average before %s, after %s" % (
        per_cpu["new"] / per_cpu["old"], per_cpu["new"] / per_cpu["dnsdist"], per_cpu["old"] / per_cpu["dnsdist"],
        " / ".join("%.2f" % x for x in load_before), " / ".join("%.2f" % x for x in os.getloadavg())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
