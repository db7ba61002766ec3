"""Benchmark: the DNS relay against its peers, all on 127.0.0.1, in one interleaved run.

Peers, each in front of the same unbound upstream (a static local zone, no
recursion: `local-zone: "." refuse` and `outgoing-interface: 127.0.0.1`, so
nothing ever leaves the machine):

- direct: unbound itself (the ceiling),
- relay: roles/dns_relay/files/enva_dns_relay.py under Debian's /usr/bin/python3,
- dnsdist (setSecurityPollSuffix(""), checkName= a name the upstream answers),
- dnsmasq (--cache-size=0, no resolv.conf),
- socat-fork (`socat UDP4-LISTEN:P,fork,reuseaddr UDP4:upstream`).

Fair to every peer: each is started the same way, in the harness's own session
(with kernel.sched_autogroup_enabled=1 a new session is a scheduling group of
its own, which favours a multi-threaded peer or starves it, depending on who
else runs), the forwarder under test pinned alone to CPU 1 (`taskset`),
dnsperf, unbound and the flood generator pinned to CPU 0. The forwarder's CPU
time over each run gives its throughput per CPU-second of its own (per core).

Measured: dnsperf throughput (-c 4 -q 200, median of the rounds, loss),
latency at a fixed rate (dnsperf -Q, every query's latency from -v), peak
RSS of each peer (VmHWM; socat: the sampled sum over its process tree), and a
random-source-port flood (tests/bench/dnsflood.py) against the relay and
socat with RSS over time. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support on sys.path
import relay_attack
from support.dns_wire import query_wire
from support.net import free_port
from support.procfs import status_kib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

RELAY = ROOT / "roles" / "dns_relay" / "files" / "enva_dns_relay.py"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # what a Debian CT runs
ZONE = "bench.enva.test"
NAMES = 100
PEERS = ("direct", "relay", "dnsdist", "dnsmasq", "socat")
FORWARDERS = ("relay", "dnsdist", "dnsmasq", "socat")
MIB = 1024.0
# CPU pinning: the forwarder under test alone on one CPU, the load (dnsperf, unbound, the flood) on the other.
PIN_LOAD, PIN_FORWARDER = ("0", "1") if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else (None, None)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pinned(command, cpu):
    """``command`` run under ``taskset -c cpu`` (as is without pinning)."""
    return ["taskset", "-c", cpu] + list(command) if cpu is not None else list(command)


class Options:
    """What one run measures (``quick`` is for trying the harness, not for the record)."""

    def __init__(self, quick=False):
        self.rounds = 1 if quick else 3
        self.seconds = 3 if quick else 10  # per throughput run
        self.latency_seconds = 3 if quick else 6  # per latency run
        self.rate = 5000  # latency runs, queries per second
        self.flood_rate = 2000
        self.flood_seconds = 10 if quick else 60
        self.socat_flood_count = 500 if quick else 2000  # socat keeps one process per query: bounded hard
        self.settle_seconds = 5


# Processes -----------------------------------------------------------------------------

def descendants(pid):
    """``pid`` and every process below it (from /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir("/proc/%d/task" % current):
                with open("/proc/%d/task/%s/children" % (current, task)) as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def pss_kib(pid):
    """Proportional set size: shared pages divided among the processes that map them."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peer:
    """One DNS server process (or socat's process tree) on 127.0.0.1:port."""

    def __init__(self, name, port, command, workdir, tree=False):
        self.name = name
        self.port = port
        self.command = command
        self.workdir = workdir
        self.tree = tree
        self.proc = None
        self.log = workdir / ("%s.log" % name)

    def start(self):
        with open(self.log, "ab") as log:
            # The caller's session and process group for every peer alike: one scheduling autogroup.
            self.proc = subprocess.Popen(self.command, cwd=str(self.workdir), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: %s did not answer on 127.0.0.1:%d:\n%s" % (self.name, self.port, self.log.read_text()))
            time.sleep(0.1)

    def pids(self):
        return descendants(self.proc.pid) if self.tree else [self.proc.pid]

    def rss_kib(self):
        return sum(status_kib(pid, "VmRSS", default=0) for pid in self.pids())

    def pss_kib(self):
        return sum(pss_kib(pid) for pid in self.pids())

    def hwm_kib(self):
        return status_kib(self.proc.pid, "VmHWM", default=0)

    def cpu_seconds(self):
        """User + system CPU time of the peer's processes (every thread) so far."""
        ticks = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/stat" % pid) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
        return ticks / CLK_TCK

    def autogroup(self):
        return autogroup(self.proc.pid)

    def stop(self):
        """SIGTERM to every PID of the peer (children first), SIGKILL to what is left after 10 s."""
        if self.proc is None:
            return
        pids = list(reversed(self.pids())) if self.proc.poll() is None else []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(alive(pid) for pid in pids):
                time.sleep(0.05)
                self.proc.poll()  # reaps the main process (its children are socat's to reap)
            if not any(alive(pid) for pid in pids):
                break
        self.proc.wait(10)
        self.proc = None


def autogroup(pid):
    """The scheduling autogroup of ``pid`` ("/autogroup-N nice M"), or "" where the kernel has none."""
    try:
        with open("/proc/%d/autogroup" % pid) as handle:
            return handle.read().split()[0]
    except (OSError, IndexError):
        return ""


def alive(pid):
    """True while ``pid`` runs (a zombie, already dead but not reaped, does not count)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def answers(port):
    """True once 127.0.0.1:port answers a query for the zone."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(query_wire(ZONE), ("127.0.0.1", port))
            return sock.recv(512)[3] & 15 == 0
        except OSError:
            return False


class Sampler:
    """RSS (and with ``pss``, PSS) of a peer every ``interval`` s in a thread: the peak and the time series."""

    def __init__(self, peer, interval=0.2, pss=False):
        self.peer = peer
        self.interval = interval
        self.pss = pss
        self.series = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _sample(self):
        sample = (round(time.monotonic() - self.started, 2), self.peer.rss_kib())
        self.series.append(sample + (self.peer.pss_kib(),) if self.pss else sample)

    def _run(self):
        while not self.done.is_set():
            self._sample()
            self.done.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self._sample()

    @property
    def peak(self):
        return max(sample[1] for sample in self.series)


# Configuration of the peers ----------------------------------------------------------------

def write_configs(workdir, ports):
    (workdir / "queries.txt").write_text("".join("host%d.%s A\n" % (i, ZONE) for i in range(NAMES)))
    local_data = "".join('  local-data: "host%d.%s. 3600 IN A 127.0.1.%d"\n' % (i, ZONE, i) for i in range(NAMES))
    (workdir / "unbound.conf").write_text(
        "server:\n"
        "  interface: 127.0.0.1@%(upstream)d\n  port: %(upstream)d\n  do-ip6: no\n  num-threads: 1\n"
        '  username: ""\n  chroot: ""\n  directory: "%(dir)s"\n  pidfile: ""\n  use-syslog: no\n  logfile: ""\n'
        "  verbosity: 0\n  access-control: 127.0.0.0/8 allow\n"
        "  outgoing-interface: 127.0.0.1\n  do-not-query-localhost: yes\n"
        '  local-zone: "." refuse\n  local-zone: "%(zone)s." static\n'
        '  local-data: "%(zone)s. 3600 IN A 127.0.0.53"\n%(data)s%(big)s'
        "remote-control:\n  control-enable: no\n" % {
            "upstream": ports["direct"], "dir": workdir, "zone": ZONE, "data": local_data, "big": relay_attack.unbound_big_data(ZONE)})
    (workdir / "dnsdist.conf").write_text(
        'setSecurityPollSuffix("")\nsetLocal("127.0.0.1:%d")\n'
        'newServer{address="127.0.0.1:%d", checkName="%s."}\n' % (ports["dnsdist"], ports["direct"], ZONE))


def make_peers(workdir, ports):
    upstream = "127.0.0.1:%d" % ports["direct"]
    commands = {
        "direct": ["unbound", "-d", "-c", str(workdir / "unbound.conf")],
        "relay": [PYTHON, str(RELAY), "--listen", "127.0.0.1:%d" % ports["relay"], "--upstream", upstream,
                  "--log-level", "warning"],
        "dnsdist": ["dnsdist", "--supervised", "--disable-syslog", "-C", str(workdir / "dnsdist.conf")],
        "dnsmasq": ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                    "--cache-size=0", "--server=127.0.0.1#%d" % ports["direct"], "--listen-address=127.0.0.1",
                    "--bind-interfaces", "--port=%d" % ports["dnsmasq"], "--user=root", "--pid-file="],
        "socat": ["socat", "UDP4-LISTEN:%d,fork,reuseaddr,bind=127.0.0.1" % ports["socat"], "UDP4:" + upstream],
    }
    return {name: Peer(name, ports[name], pinned(commands[name], PIN_FORWARDER if name in FORWARDERS else PIN_LOAD), workdir,
                       tree=name == "socat") for name in PEERS}


def versions():
    def first_line(command, pattern=r"(\d+\.\d+(\.\d+)?)"):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        match = re.search(pattern, out.stdout + out.stderr)
        return match.group(1) if match else "?"
    relay_version = first_line([PYTHON, str(RELAY), "--version"])
    return {
        "relay": "enva-dns-relay %s on Python %s" % (relay_version, first_line([PYTHON, "--version"])),
        "direct": "unbound " + first_line(["unbound", "-V"]),
        "dnsdist": "dnsdist " + first_line(["dnsdist", "--version"]),
        "dnsmasq": "dnsmasq " + first_line(["dnsmasq", "--version"]),
        "socat": "socat " + first_line(["socat", "-V"], r"socat version (\S+)"),
        "dnsperf": "dnsperf " + first_line(["dnsperf", "-h"], r"Version (\S+)"),
    }


def machine():
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(), "debian": debian,
            "memory_gib": round(mem_kib / 1024 / 1024)}


# Measurements ---------------------------------------------------------------------------------

def dnsperf(port, workdir, seconds, rate=None):
    """One dnsperf run; with ``rate``, -Q and -v: every answered query's latency (s) too."""
    command = pinned(["dnsperf"], PIN_LOAD) + ["-s", "127.0.0.1", "-p", str(port), "-d", str(workdir / "queries.txt"), "-c", "4", "-l", str(seconds)]
    command += ["-Q", str(rate), "-v"] if rate else ["-q", "200"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout

    def number(label):
        match = re.search(r"%s:\s+([\d.]+)" % re.escape(label), out)
        if not match:
            raise SystemExit("bench: no %r in dnsperf's output:\n%s" % (label, out[-2000:]))
        return float(match.group(1))
    result = {"qps": number("Queries per second"), "sent": int(number("Queries sent")),
              "lost": int(number("Queries lost")), "avg_latency": number("Average Latency (s)")}
    codes = re.search(r"Response codes:\s+(.*)", out)
    result["rcodes"] = codes.group(1).strip() if codes else ""
    if rate:
        result["latencies"] = [float(line.rsplit(None, 1)[1]) for line in out.splitlines() if line.startswith("> NOERROR ")]
    return result


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_flood(peer, options, count, duration, rate):
    """dnsflood.py against ``peer`` while its RSS and PSS are sampled every 0.5 s; then ``settle_seconds`` more."""
    command = pinned([sys.executable, str(HERE / "dnsflood.py")], PIN_LOAD) + [
        "--port", str(peer.port), "--rate", str(rate), "--duration", str(duration), "--count", str(count), "--name", "host1." + ZONE]
    with Sampler(peer, interval=0.5, pss=True) as sampler:
        out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120, check=True).stdout
        time.sleep(options.settle_seconds)
    result = json.loads(out)
    result["series"] = sampler.series
    result["processes"] = len(peer.pids())
    return result


def measure(options, log=print):
    """Start everything, run the interleaved rounds and the floods, stop everything; the figures."""
    for tool in ("unbound", "dnsdist", "dnsmasq", "socat", "dnsperf"):
        if shutil.which(tool) is None:
            raise SystemExit("bench: %s is missing (make setup installs it)" % tool)
    workdir = Path(tempfile.mkdtemp(prefix="enva-bench-relay-"))
    ports = {}
    for name in PEERS:
        ports[name] = free_port(ports.values())
    write_configs(workdir, ports)
    peers = make_peers(workdir, ports)
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": os.getloadavg(), "machine": machine(), "versions": versions(),
               "options": vars(options), "throughput": {p: [] for p in PEERS}, "latency": {p: [] for p in PEERS},
               "rcodes": {p: [] for p in PEERS}, "peak_rss_kib": {}, "flood": {},
               "pinning": {"forwarder": PIN_FORWARDER, "load": PIN_LOAD}}
    try:
        for name in PEERS:
            peers[name].start()
        log("bench: peers up on 127.0.0.1: %s" % ", ".join("%s:%d" % (n, ports[n]) for n in PEERS))
        groups = {name: peers[name].autogroup() for name in PEERS}
        figures["same_autogroup"] = len(set(groups.values()) | {autogroup(os.getpid())}) == 1
        socat_peak = 0
        for round_ in range(options.rounds):
            order = PEERS[round_ % len(PEERS):] + PEERS[:round_ % len(PEERS)]
            for name in order:
                cpu_before = peers[name].cpu_seconds()
                with Sampler(peers[name]) as sampler:
                    run = dnsperf(ports[name], workdir, options.seconds)
                run["cpu"] = peers[name].cpu_seconds() - cpu_before
                if name == "socat":
                    socat_peak = max(socat_peak, sampler.peak)
                latency = dnsperf(ports[name], workdir, options.latency_seconds, rate=options.rate)
                figures["throughput"][name].append({k: run[k] for k in ("qps", "sent", "lost", "cpu")})
                figures["rcodes"][name].append(run["rcodes"])
                figures["latency"][name].extend(latency["latencies"])
                log("bench: round %d %-8s %8.0f qps, %8.0f q/CPU-s, lost %d; at %d qps median %.3f ms" % (
                    round_ + 1, name, run["qps"], per_cpu(run), run["lost"], options.rate, 1000 * statistics.median(latency["latencies"])))
        for name in PEERS:
            figures["peak_rss_kib"][name] = socat_peak if name == "socat" else peers[name].hwm_kib()

        log("bench: flood against the relay: %d q/s for %d s, each query from a new socket" % (options.flood_rate, options.flood_seconds))
        figures["flood"]["relay"] = run_flood(peers["relay"], options, options.flood_rate * options.flood_seconds, options.flood_seconds,
                                              options.flood_rate)
        figures["flood"]["relay"]["hwm_kib"] = peers["relay"].hwm_kib()
        peers["socat"].stop()  # a fresh socat: its tree holds the children of the dnsperf runs
        peers["socat"].start()
        socat_rate = options.socat_flood_count / options.flood_seconds
        log("bench: flood against socat: %d queries over %d s" % (options.socat_flood_count, options.flood_seconds))
        figures["flood"]["socat"] = run_flood(peers["socat"], options, options.socat_flood_count, options.flood_seconds, socat_rate)
        peers["socat"].stop()  # its fork children would only add noise to the attack runs

        def make_relay(extra):
            port = free_port(ports.values())
            command = [PYTHON, str(RELAY), "--listen", "127.0.0.1:%d" % port, "--upstream", "127.0.0.1:%d" % ports["direct"],
                       "--log-level", "warning"] + extra
            peer = Peer("relay-attack", port, pinned(command, PIN_FORWARDER), workdir)
            peer.start()
            return peer
        figures["attack"] = relay_attack.run(make_relay, ZONE, free_port(ports.values()), log=log)
    finally:
        for name in reversed(PEERS):
            peers[name].stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures["load_after"] = os.getloadavg()
    return summarize(figures)


def per_cpu(run):
    """Answered queries per CPU-second the peer itself used during a throughput run."""
    return (run["sent"] - run["lost"]) / run["cpu"] if run.get("cpu") else 0.0


def other_rcodes(summaries):
    """dnsperf's "Response codes:" lines of several runs -> "SERVFAIL 11" (every rcode but NOERROR, summed) or "none"."""
    counts = {}
    for line in summaries:
        for rcode, count in re.findall(r"([A-Z0-9]+) (\d+) \(", line):
            if rcode != "NOERROR":
                counts[rcode] = counts.get(rcode, 0) + int(count)
    return ", ".join("%s %s" % (rcode, "{:,}".format(counts[rcode])) for rcode in sorted(counts)) or "none"


def summarize(figures):
    """Medians, percentiles and ratios from the raw figures."""
    rows = {}
    for name in PEERS:
        runs = figures["throughput"][name]
        latencies = figures["latency"][name]
        rows[name] = {
            "qps": statistics.median(r["qps"] for r in runs), "qps_min": min(r["qps"] for r in runs),
            "per_cpu": statistics.median(per_cpu(r) for r in runs),
            "qps_max": max(r["qps"] for r in runs), "rounds": len(runs),
            "loss": sum(r["lost"] for r in runs) / max(1, sum(r["sent"] for r in runs)),
            "lat_avg": statistics.fmean(latencies), "lat_p50": statistics.median(latencies),
            "lat_p99": percentile(latencies, 0.99), "lat_n": len(latencies),
            "rss_kib": figures["peak_rss_kib"][name], "other_rcodes": other_rcodes(figures["rcodes"][name]),
        }
    figures["rows"] = rows
    relay_flood = figures["flood"]["relay"]["series"]
    duration = relay_flood[-1][0]
    early = [rss for t, rss, _pss in relay_flood if 5 <= t < 5 + duration / 4]
    late = [rss for t, rss, _pss in relay_flood if t >= duration - duration / 4]
    figures["flood"]["relay"]["growth_kib"] = (statistics.fmean(late) - statistics.fmean(early)) if early and late else 0.0
    direct, relay, dnsdist = rows["direct"], rows["relay"], rows["dnsdist"]
    figures["targets"] = [
        ("answers per CPU-second >= 0.64 x dnsdist", "%.2f x dnsdist" % (relay["per_cpu"] / dnsdist["per_cpu"]),
         relay["per_cpu"] >= 0.64 * dnsdist["per_cpu"]),
        ("peak RSS <= 24 MiB at full load", "%.1f MiB" % (relay["rss_kib"] / MIB), relay["rss_kib"] <= 24 * MIB),
        ("peak RSS <= 24 MiB during the flood", "%.1f MiB" % (figures["flood"]["relay"]["hwm_kib"] / MIB),
         figures["flood"]["relay"]["hwm_kib"] <= 24 * MIB),
        ("RSS flat during the flood (last quarter vs first, < 1 MiB)", "%+.0f KiB" % figures["flood"]["relay"]["growth_kib"],
         abs(figures["flood"]["relay"]["growth_kib"]) < 1024),
        ("added median latency at %d qps < 0.3 ms" % figures["options"]["rate"],
         "%.3f ms" % (1000 * (relay["lat_p50"] - direct["lat_p50"])), relay["lat_p50"] - direct["lat_p50"] < 0.0003),
    ]
    attack = figures.get("attack")
    if attack:
        peak = max(a["hwm_mib"] + a.get("queued_mib", 0) for a in (attack["refused_non_readers"], attack["allowed_non_readers"]))
        figures["targets"] += [
            ("250 non-reading TCP clients: peak RSS + kernel send queues < 64 MiB (MemoryMax)", "%.1f MiB" % peak, peak < 64),
            ("legitimate TCP answered during a trickle attack", "%(answered)d of %(asked)d" % attack["trickle"],
             attack["trickle"]["asked"] > 0 and attack["trickle"]["answered"] == attack["trickle"]["asked"]),
            ("upstream TCP connections <= 8 (--max-upstream-tcp) for 20 x 64 pipelined queries",
             "%(upstream_connections)d" % attack["pipelined"], attack["pipelined"]["upstream_connections"] <= 8),
        ]
    return figures
