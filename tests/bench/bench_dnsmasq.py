"""Why not dnsmasq? dnsmasq (Debian's dnsmasq-base) and enva-dns-relay side by side, both with their defaults,
on loopback, measured on what matters in a CT:

* TTLs and caching: what a client sees of the upstream's TTL (unbound, static local data), twice a few seconds
  apart, and how long after the upstream changes a record the client still gets the old one;
* concurrency under load: dnsperf at bounded rates, unique names (every query is forwarded), upstream answering
  after 100 ms (a SiNS that is far or busy): NOERROR, SERVFAIL, REFUSED and lost queries, dnsmasq at its default
  ``dns-forward-max`` (150), the relay at its default ``--max-inflight`` (4096);
* memory: VmRSS after start, VmHWM after the loads;
* what each needs in the CT: the relay runs as ``python3 -I -S`` (no site-packages: the standard library only,
  the python3 Ansible already needs in a managed CT); dnsmasq needs dnsmasq-base and the libraries it pulls in,
  counted against a Debian bookworm CT rootfs.

    .venv/bin/python tests/bench/bench_dnsmasq.py                          # print the figures
    .venv/bin/python tests/bench/bench_dnsmasq.py --write docs/benchmarks.md

Every load is bounded (rate x seconds, dnsperf -l); the peers are pinned with taskset (peer on one CPU, dnsperf
and the upstreams on the other), three rounds each, fresh processes per round; a load row is the median round
(by share answered) with the range over all rounds. Only 127.0.0.1 is addressed.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support on sys.path
import sections
from support.net import free_port, wait_for
from support.procfs import status_kib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

RELAY = ROOT / "roles" / "dns_relay" / "files" / "enva_dns_relay.py"
PYTHON = "/usr/bin/python3"
ZONE = "bench.enva.test"
ROUNDS = 3
DELAY_MS = 100
LOADS = ((1000, 5), (3000, 5), (10000, 3))   # queries per second, seconds: ~100, ~300, ~1,000 waiting upstream
ROOTFS = Path("/var/cache/enva-lab/base/bookworm-amd64/rootfs")
PEER_CPU, LOAD_CPU = "1", "0"
PEERS = ("dnsmasq", "dnsmasq-tuned", "relay")
LABELS = {"dnsmasq": "dnsmasq, defaults", "dnsmasq-tuned": "dnsmasq --cache-size=0 --dns-forward-max=4096",
          "relay": "enva-dns-relay, defaults"}


# --- a slow upstream: answers every name after DELAY_MS (the load test's SiNS) -------------------------------------

def slow_upstream(port, delay_ms):
    """Answer every query with one A record after ``delay_ms``; one thread, a heap of due answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    due, serial = [], 0
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else 1.0
        readable, _w, _x = select.select([sock], [], [], timeout)
        if readable:
            for _batch in range(256):
                try:
                    data, client = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                if len(data) < 17:
                    continue
                end = data.index(b"\x00", 12) + 5
                answer = (data[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + data[12:end]
                          + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((10, 0, 0, 1)))
                serial += 1
                heapq.heappush(due, (time.monotonic() + delay_ms / 1000.0, serial, answer, client))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _t, _s, answer, client = heapq.heappop(due)
            try:
                sock.sendto(answer, client)
            except OSError:
                pass


# --- the processes --------------------------------------------------------------------------------------------------

class Process:
    def __init__(self, name, command, cpu, port=None, log=None):
        self.name, self.port = name, port
        self.log = open(log, "ab") if log else subprocess.DEVNULL       # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(["taskset", "-c", cpu] + command, stdout=self.log, stderr=self.log)
        if port:
            wait_for(lambda: answers(port), what="%s on port %d" % (name, port))

    def status_kib(self, field):
        return status_kib(self.proc.pid, field)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def query(port, name, timeout=1.0):
    """``(rcode, [(address, ttl)...])`` of an A query through 127.0.0.1:port (dnspython), None on timeout."""
    import dns.exception
    import dns.message
    import dns.query
    try:
        response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout,
                                 ignore_unexpected=True)
    except (dns.exception.Timeout, OSError):
        return None
    found = [(item.address, rrset.ttl) for rrset in response.answer for item in rrset if rrset.rdtype == 1]
    return response.rcode(), found


def answers(port):
    return query(port, "ns.%s" % ZONE, timeout=0.3) is not None


def unbound_conf(workdir, port):
    path = workdir / "unbound.conf"
    path.write_text(
        "server:\n  interface: 127.0.0.1@%(port)d\n  port: %(port)d\n  do-ip6: no\n  num-threads: 1\n"
        '  username: ""\n  chroot: ""\n  directory: "%(dir)s"\n  pidfile: ""\n  use-syslog: no\n  logfile: ""\n'
        "  verbosity: 0\n  access-control: 127.0.0.0/8 allow\n"
        '  local-zone: "." refuse\n  local-zone: "%(zone)s." static\n'
        '  local-data: "ns.%(zone)s. 3600 IN A 127.0.0.53"\n'
        '  local-data: "ttl300.%(zone)s. 300 IN A 10.0.0.1"\n'
        '  local-data: "ttl10.%(zone)s. 10 IN A 10.0.0.1"\n'
        "remote-control:\n  control-enable: yes\n  control-interface: %(dir)s/unbound.ctl\n"
        "  control-use-cert: no\n" % {"port": port, "dir": workdir, "zone": ZONE})
    return path


def peers(upstream_port, ports, workdir):
    upstream = "127.0.0.1:%d" % upstream_port
    commands = {
        # as a CT would run it: defaults (cache-size 150, dns-forward-max 150), the SiNS as its one server
        "dnsmasq": ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                    "--server=127.0.0.1#%d" % upstream_port, "--listen-address=127.0.0.1", "--bind-interfaces",
                    "--port=%d" % ports["dnsmasq"], "--user=root", "--pid-file="],
        # the same, told to behave like a relay: no cache, as many forwards at once as the relay allows
        "dnsmasq-tuned": ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                          "--server=127.0.0.1#%d" % upstream_port, "--listen-address=127.0.0.1", "--bind-interfaces",
                          "--port=%d" % ports["dnsmasq-tuned"], "--user=root", "--pid-file=", "--cache-size=0",
                          "--dns-forward-max=4096"],
        # python3 -I -S: isolated, no site-packages, so the standard library only
        "relay": [PYTHON, "-I", "-S", str(RELAY), "--listen", "127.0.0.1:%d" % ports["relay"],
                  "--upstream", upstream, "--log-level", "warning"],
    }
    for name in ("dnsmasq", "dnsmasq-tuned"):        # its warnings (such as forward-max reached) to a file
        commands[name].append("--log-facility=%s" % (workdir / ("%s.log" % name)))
    return commands


def dnsmasq_warnings(path):
    """``{message: count}`` of a dnsmasq log file, numbers and timestamps folded."""
    counts = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            message = re.sub(r"^\w+ +\d+ [\d:]+ dnsmasq\[\d+\]: ", "", line)
            if re.match(r"(started|compile time|using nameserver|reading|cleared|exiting|read )", message):
                continue
            counts[message] = counts.get(message, 0) + 1
        path.unlink()
    return counts


# --- measurements ---------------------------------------------------------------------------------------------------

def ttl_and_change(workdir, log):
    """What a client sees of the upstream's TTLs, and how long the old record outlives a change upstream."""
    port = free_port()
    conf = unbound_conf(workdir, port)
    ports = {}
    for name in PEERS:
        ports[name] = free_port({port} | set(ports.values()))
    started, result = {}, {}
    try:
        started["unbound"] = Process("unbound", ["unbound", "-d", "-c", str(conf)], LOAD_CPU, port)
        for name, command in peers(port, ports, workdir).items():
            started[name] = Process(name, command, PEER_CPU, ports[name])
        for name in PEERS:
            first = query(ports[name], "ttl300.%s" % ZONE)[1][0][1]
            result[name] = {"first_ttl": first}
        time.sleep(3.0)
        for name in PEERS:
            result[name]["after_3s_ttl"] = query(ports[name], "ttl300.%s" % ZONE)[1][0][1]
            query(ports[name], "ttl10.%s" % ZONE)                      # the record is now known (cached) downstream
        for change in (["local_data_remove", "ttl10.%s." % ZONE], ["local_data", "ttl10.%s. 10 IN A 10.0.0.2" % ZONE]):
            subprocess.run(["unbound-control", "-c", str(conf)] + change, check=True, capture_output=True, timeout=10)
        changed = time.monotonic()
        pending = set(PEERS)
        for name in PEERS:
            result[name].update(old_answers=0, stale_s=0.0, new_seen=False)
        while pending and time.monotonic() - changed < 15.0:
            for name in sorted(pending):
                asked = time.monotonic() - changed
                found = query(ports[name], "ttl10.%s" % ZONE)
                addresses = set(address for address, _ttl in (found[1] if found else []))
                if addresses == {"10.0.0.2"}:
                    result[name]["new_seen"] = True
                    pending.discard(name)
                elif addresses == {"10.0.0.1"}:
                    result[name]["old_answers"] += 1
                    result[name]["stale_s"] = round(asked, 1)       # when the last old answer was asked for
            time.sleep(0.25)
    finally:
        for process in started.values():
            process.stop()
        for name in PEERS:
            path = workdir / ("%s.log" % name)
            if path.exists():
                path.unlink()
    log("ttl: %s" % json.dumps(result))
    return result


def dnsperf(port, names_file, rate, seconds):
    command = ["taskset", "-c", LOAD_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names_file),
               "-c", "8", "-q", "20000", "-t", "2", "-Q", str(rate), "-l", str(seconds)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    codes = dict((code, int(count)) for code, count in re.findall(r"([A-Z]+) (\d+) \(", (
        re.search(r"Response codes:\s+(.*)", out) or re.search("(x)", "x")).group(1)))
    return {"sent": sent, "lost": lost, "NOERROR": codes.get("NOERROR", 0), "SERVFAIL": codes.get("SERVFAIL", 0),
            "REFUSED": codes.get("REFUSED", 0)}


def load(workdir, log):
    """Each load against each peer, ROUNDS rounds, fresh processes per round (so caches and peaks are per run)."""
    names = {}
    offset = 0
    for rate, seconds in LOADS:            # names no earlier load asked for: nothing is in a cache
        names[rate] = workdir / ("names-%d.txt" % rate)
        names[rate].write_text("".join("q%d.rnd.%s A\n" % (index, ZONE)
                                       for index in range(offset, offset + rate * seconds)))
        offset += rate * seconds
    runs, warnings = {}, {}
    for round_index in range(ROUNDS):
        for name in PEERS:
            upstream_port = free_port()
            upstream = Process("slow upstream", [sys.executable, __file__, "slow-upstream", "--port",
                                                 str(upstream_port), "--delay-ms", str(DELAY_MS)], LOAD_CPU)
            time.sleep(0.3)
            ports = {}
            for other in PEERS:
                ports[other] = free_port({upstream_port} | set(ports.values()))
            peer = Process(name, peers(upstream_port, ports, workdir)[name], PEER_CPU, ports[name])
            try:
                rss = peer.status_kib("VmRSS")
                for rate, seconds in LOADS:
                    figures = dnsperf(ports[name], names[rate], rate, seconds)
                    runs.setdefault((name, rate, seconds), []).append(figures)
                    log("round %d %s %d q/s x %d s: %s" % (round_index + 1, name, rate, seconds, figures))
                    time.sleep(2.5)            # let the peer's forwards time out before the next load
                runs.setdefault((name, "memory"), []).append({"rss": rss, "hwm": peer.status_kib("VmHWM"),
                                                              "rss_after": peer.status_kib("VmRSS")})
            finally:
                peer.stop()
                upstream.stop()
            for message, count in dnsmasq_warnings(workdir / ("%s.log" % name)).items():
                warnings.setdefault(name, {}).setdefault(message, []).append(count)
    result = {}
    for key, values in runs.items():
        name = "%s %s" % (key[0], " ".join(str(part) for part in key[1:]))
        if key[1] == "memory":
            result[name] = dict((field, statistics.median(item[field] for item in values)) for field in values[0])
            continue
        # the median round by share answered (one round's row, so its counts add up), and the range of the share
        shares = sorted((100.0 * item["NOERROR"] / max(item["sent"], 1), index) for index, item in enumerate(values))
        result[name] = dict(values[shares[(len(shares) - 1) // 2][1]],
                            noerror_range=[round(shares[0][0]), round(shares[-1][0])])
    result["dnsmasq warnings"] = {
        name: {message: statistics.median(counts + [0] * (ROUNDS - len(counts))) for message, counts in found.items()}
        for name, found in warnings.items()}
    return result


def packages(rootfs=ROOTFS):
    """What ``apt-get install --no-install-recommends dnsmasq-base`` adds to a Debian bookworm CT rootfs (simulated
    against the rootfs's dpkg status with this host's package lists), and their installed size in KiB."""
    status = rootfs / "var" / "lib" / "dpkg" / "status"
    out = subprocess.run(["apt-get", "-s", "-o", "Dir::State::status=%s" % status, "--no-install-recommends",
                          "install", "dnsmasq-base"], capture_output=True, text=True, check=False, timeout=120).stdout
    added = re.findall(r"^Inst (\S+) ", out, flags=re.M)
    sizes = {}
    for name in added:
        show = subprocess.run(["apt-cache", "show", "--no-all-versions", name], capture_output=True, text=True,
                              check=False, timeout=60).stdout
        found = re.search(r"^Installed-Size: (\d+)", show, flags=re.M)
        sizes[name] = int(found.group(1)) if found else 0
    has_python3 = bool(re.search(r"^Package: python3\n(?:[^\n]+\n)*?Status: install ok installed",
                                 status.read_text(), flags=re.M)) if status.exists() else None
    return {"rootfs": str(rootfs), "rootfs_has_python3": has_python3, "added": added,
            "installed_kib": sum(sizes.values()),
            "version": subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True,
                                      check=False).stdout.split("\n")[0]}


def measure(log=print):
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-dnsmasq-") as tmp:
        workdir = Path(tmp)
        ttl = ttl_and_change(workdir, log)
        loads = load(workdir, log)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": ROUNDS, "load_before": load_before,
            "load_after": os.getloadavg(), "ttl": ttl, "loads": loads, "packages": packages(),
            "python": subprocess.run([PYTHON, "--version"], capture_output=True, text=True,
                                     check=False).stdout.strip()}


# --- the report -----------------------------------------------------------------------------------------------------

def _mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def _count(value, sent):
    value = int(value)
    return "%s (%d%%)" % ("{:,}".format(value), round(100.0 * value / sent)) if value and sent else "0"


def render_markdown(figures):
    """The figures as the benchmark's section of docs/benchmarks.md (the body under its heading)."""
    loads, ttl, pkg = figures["loads"], figures["ttl"], figures["packages"]
    lines = [
        "Measured %s with `tests/bench/bench_dnsmasq.py` (%d rounds): %s (Debian dnsmasq-base) and "
        "enva-dns-relay under %s run as `python3 -I -S` (no site-packages). Everything on 127.0.0.1; each peer "
        "pinned to CPU %s, dnsperf and the upstreams to CPU %s. Load average %.1f before, %.1f after (other work "
        "shared the machine)." % (figures["date"], figures["rounds"], pkg["version"].split("  ")[0],
                                  figures["python"], PEER_CPU, LOAD_CPU, figures["load_before"][0],
                                  figures["load_after"][0]),
        "",
        "**TTLs and a changed record.** Upstream: unbound with static records (TTL 300 s and 10 s). The 10 s "
        "record is queried once through each peer, then replaced in unbound (`unbound-control local_data_remove`, "
        "`local_data`: 10.0.0.1 becomes 10.0.0.2); the "
        "last column is what each peer answered with the old address, polled every 0.25 s.",
        "",
        "| peer | TTL, first answer | TTL, same query 3 s later | old address after the change |",
        "|---|---:|---:|---:|",
    ]
    for name in PEERS:
        seen = ttl[name]
        if not seen["old_answers"]:
            stale = "none: the first answer after the change was the new address"
        else:
            stale = "%d answers, the last %.1f s after the change%s" % (
                seen["old_answers"], seen["stale_s"], "" if seen["new_seen"] else " (still old after 15 s)")
        lines.append("| %s | %s | %s | %s |" % (LABELS[name], seen["first_ttl"], seen["after_3s_ttl"], stale))
    lines += [
        "",
        "**Concurrency under load.** dnsperf with unique names (every query must be forwarded) at a bounded rate; "
        "the upstream answers every query after %d ms (a SiNS that is far or busy), so rate x 0.1 s queries wait "
        "upstream at once. dnsmasq's `dns-forward-max` defaults to 150; the relay's `--max-inflight` to 4096. "
        "Lost: no answer within dnsperf's 2 s. Each row is the median round by share answered; the last column "
        "gives the range over all rounds." % DELAY_MS,
        "",
        "| peer | load | waiting upstream | sent | NOERROR | REFUSED | SERVFAIL | lost | NOERROR, all rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, seconds in LOADS:
        for name in PEERS:
            row = loads["%s %d %d" % (name, rate, seconds)]
            sent = int(row["sent"])
            low, high = row["noerror_range"]
            lines.append("| %s | %s q/s x %d s | ~%s | %s | %s | %s | %s | %s | %s |" % (
                LABELS[name], "{:,}".format(rate), seconds, "{:,}".format(rate * DELAY_MS // 1000),
                "{:,}".format(sent), _count(row["NOERROR"], sent), _count(row["REFUSED"], sent),
                _count(row["SERVFAIL"], sent), _count(row["lost"], sent),
                "%d%%" % low if low == high else "%d-%d%%" % (low, high)))
    for name, found in sorted(loads.get("dnsmasq warnings", {}).items()):
        for message, count in sorted(found.items(), key=lambda item: -item[1])[:3]:
            lines.append("")
            lines.append("%s logged, per round (median): `%s` x %s." % (LABELS[name], message, "{:,}".format(int(count))))
    lines += ["", "**Memory** (VmRSS after start; VmHWM, the peak, after the three loads):", ""]
    lines += ["| peer | RSS after start | peak after the loads |", "|---|---:|---:|"]
    for name in PEERS:
        memory = loads["%s memory" % name]
        lines.append("| %s | %s | %s |" % (LABELS[name], _mib(memory["rss"]), _mib(memory["hwm"])))
    lines += [
        "",
        "**What each needs in the CT.** The relay is one file run by the CT's python3 with the standard library "
        "only (`-I -S` above); Ansible needs that python3 in any CT it manages, so the relay adds no package. "
        "dnsmasq needs a package: in the lab's Debian bookworm CT rootfs (%s python3), `apt-get install "
        "--no-install-recommends dnsmasq-base` adds %d packages (%s), %s installed, from a mirror the CT must "
        "reach (Debian's `dnsmasq` package on top also starts its own service on port 53)." % (
            "with" if pkg["rootfs_has_python3"] else "without", len(pkg["added"]), ", ".join(pkg["added"]),
            _mib(pkg["installed_kib"])),
        "",
        "Reproduce: `.venv/bin/python tests/bench/bench_dnsmasq.py --write docs/benchmarks.md` (about 5 minutes).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    global ROUNDS  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="measure", choices=["measure", "slow-upstream"])
    parser.add_argument("--write", metavar="MARKDOWN", help="replace the dnsmasq section of this file")
    parser.add_argument("--json", metavar="FILE", help="also dump the raw figures")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--from-json", metavar="FILE", help="render figures saved by --json instead of measuring")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=int, default=DELAY_MS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "slow-upstream":
        slow_upstream(args.port, args.delay_ms)
        return 0
    ROUNDS = args.rounds
    figures = json.loads(Path(args.from_json).read_text()) if args.from_json else measure()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    body = render_markdown(figures)
    print(body)
    if args.write:
        sections.replace_section(args.write, "dnsmasq", "## Why not dnsmasq?", body)
        print("bench: wrote the dnsmasq section of %s" % args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
