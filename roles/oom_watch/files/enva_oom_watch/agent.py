# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watch's loop: scan the CTs, follow the kernel log, wait on PSI triggers, write the textfile.

Intervals are measured on CLOCK_MONOTONIC (a step of the wall clock moves no scan); wall time is used
only for the timestamps it exports. Every fault of one CT, file or write is counted and the loop goes on.
"""

import argparse
import collections
import errno
import os
import select
import signal
import socket
import sys
import time

from . import VERSION
from .atomic import clean_temp, write_atomic
from .flight import Recorder
from .kmsg import KmsgFollower, boot_id
from .metrics import render
from .psi import Triggers
from .sample import discover, read_ct
from .state import State

TEXTFILE_DIRS = ("/var/lib/prometheus/node-exporter", "/var/lib/node_exporter")
TEXTFILE_NAME = "enva_oom_watch.prom"
REPLAY_SLACK = 5.0
AGENT_TOTALS = ("scan_errors", "write_errors", "kmsg_lost", "kmsg_overruns", "host_kills", "flight_records")


def default_textfile_dir():
    """Debian's prometheus-node-exporter directory, else the prometheus.prometheus.node_exporter role's."""
    for directory in TEXTFILE_DIRS:
        if os.path.isdir(directory):
            return directory
    return TEXTFILE_DIRS[0]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="enva-oom-watch", description=__doc__.splitlines()[0])
    parser.add_argument("--cgroup-root", default="/sys/fs/cgroup")
    parser.add_argument("--textfile-dir", default=None, help="default: %s if it exists, else %s" % TEXTFILE_DIRS)
    parser.add_argument("--state-dir", default="/var/lib/enva-oom-watch")
    parser.add_argument("--flight-dir", default=None, help="default: STATE_DIR/flight")
    parser.add_argument("--kmsg", default="/dev/kmsg", help="'' to not follow the kernel log")
    parser.add_argument("--node", default=socket.gethostname().split(".")[0])
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between full scans")
    parser.add_argument("--stall-threshold", type=float, default=0.15,
                        help="share of time some tasks stalled on memory that flags a stall (sampling)")
    parser.add_argument("--psi-trigger", default="some 150000 1000000", help="'' for sampling only")
    parser.add_argument("--storm-tasks", type=int, default=100, help="tasks gained within --storm-window")
    parser.add_argument("--storm-window", type=float, default=60.0)
    parser.add_argument("--keep-gone", type=float, default=7 * 86400,
                        help="seconds a CT without a cgroup keeps its series")
    parser.add_argument("--flight-max-records", type=int, default=100)
    parser.add_argument("--flight-max-bytes", type=int, default=16 << 20)
    parser.add_argument("--flight-cooldown", type=float, default=60.0)
    parser.add_argument("--proc-root", default="/proc")
    parser.add_argument("--once", action="store_true", help="one scan, then exit")
    parser.add_argument("--max-seconds", type=float, default=None, help="exit after this long (tests, bench)")
    parser.add_argument("--version", action="version", version="enva-oom-watch " + VERSION)
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.storm_window <= 0 or args.flight_max_records < 1:
        parser.error("--interval, --storm-window and --flight-max-records must be positive")
    args.textfile_dir = args.textfile_dir or default_textfile_dir()
    args.flight_dir = args.flight_dir or os.path.join(args.state_dir, "flight")
    return args


def log(message):
    sys.stderr.write("enva-oom-watch: %s\n" % message)
    sys.stderr.flush()


class Watch(object):
    """One node's watch; ``scan()`` and ``handle_kills()`` are the steps, ``run()`` the loop."""

    def __init__(self, args, monotonic=time.monotonic, wall=time.time):
        self.args = args
        self._monotonic, self._wall = monotonic, wall
        self.state = State(os.path.join(args.state_dir, "state.json"))
        self.state.load()
        if self.state.load_error:
            log("state not readable, counters start again: %s" % self.state.load_error)
        for key in AGENT_TOTALS:
            self.state.agent.setdefault(key, 0)
        self.start_time = wall()
        self.version = None
        self.paths = {}                   # vmid -> cgroup dir, from the last discovery
        self.samples = {}                 # vmid -> last Sample
        self.prev_pressure = {}           # vmid -> (monotonic, some seconds)
        self.trigger_at = {}              # vmid -> monotonic time a PSI trigger last fired
        self.stalled = {}                 # vmid -> bool
        self.storm = {}                   # vmid -> bool
        self.task_history = {}            # vmid -> deque of (monotonic, tasks)
        self.scans = 0
        self.scan_duration = None
        self.last_scan = None
        self.last_write = None
        self.triggers = Triggers(args.psi_trigger or "some 150000 1000000", enabled=bool(args.psi_trigger))
        self.recorder = Recorder(args.flight_dir, args.node, args.flight_max_records, args.flight_max_bytes,
                                 args.flight_cooldown, args.proc_root, monotonic=monotonic, wall=wall)
        self.kmsg = None
        if args.kmsg:
            current_boot = boot_id()
            last_seq = self.state.kmsg_last_seq if current_boot and current_boot == self.state.kmsg_boot_id else None
            self.state.kmsg_boot_id = current_boot
            self.kmsg = KmsgFollower(args.kmsg, last_seq=last_seq, wall=wall, monotonic=monotonic)
        for directory in (args.state_dir, args.textfile_dir):
            clean_temp(directory)

    # -- counting ------------------------------------------------------------
    def count(self, key, amount=1):
        self.state.agent[key] = self.state.agent.get(key, 0) + amount

    def _sync_kmsg_counts(self):
        if self.kmsg is None:
            return
        for key, value in (("kmsg_lost", self.kmsg.lost), ("kmsg_overruns", self.kmsg.overruns)):
            seen = self.state.agent.get("_%s_seen" % key, 0)
            if value > seen:
                self.count(key, value - seen)
            self.state.agent["_%s_seen" % key] = value
        self.state.kmsg_last_seq = self.kmsg.last_seq

    # -- the kernel log ---------------------------------------------------------
    def follow_kmsg(self):
        """Read the kernel log; count and record each OOM kill. Returns how many kills were seen."""
        if self.kmsg is None:
            return 0
        self.kmsg.drain()
        kills = self.kmsg.kills()
        self._sync_kmsg_counts()
        for kill in kills:
            vmid = kill["vmid"]
            if vmid is None:
                self.count("host_kills")
                continue
            counters = self.state.ct(vmid)
            counters.oom_kills += 1
            counters.last_kill = {"name": kill["name"], "pid": kill["pid"], "epoch": kill["epoch"]}
            if counters.last_seen is None:
                counters.last_seen = self._wall()
            if kill["epoch"] is None or kill["epoch"] >= self.start_time - REPLAY_SLACK:
                # a kill replayed from the ring buffer at start says nothing of the CT now: counted, not recorded
                self.flight(vmid, "oom_kill", {"victim": counters.last_kill, "event": kill["event"],
                                               "attributed_by": kill["attributed_by"]})
        return len(kills)

    def flight(self, vmid, reason, detail=None):
        if not self.recorder.due(vmid, reason):
            return None
        lines = self.kmsg.recent if self.kmsg is not None else ()
        name = self.recorder.snapshot(vmid, reason, self.version, self.paths.get(vmid), lines, detail)
        if name is None:
            self.count("write_errors")
        else:
            self.count("flight_records")
        return name

    # -- the cgroups --------------------------------------------------------------
    def _observe(self, vmid, sample, now_mono):
        """Fold one CT's sample in: counters, stall and storm flags, flight records on a rising edge."""
        counters = self.state.ct(vmid)
        raw = dict(sample.counters)
        for kind in ("some", "full"):
            if kind in sample.pressure:
                raw["pressure_" + kind] = sample.pressure[kind]
        increases = counters.update(sample.inode, raw)
        counters.running = True
        counters.last_seen = self._wall()
        self.samples[vmid] = sample
        # stall: a trigger fired since the last scan, the sampled share of stalled time, or v1's under_oom
        # (which of them, in the flight record's "by": a PSI trigger flags it within its window, sampling
        # only at the next scan)
        by = ["under_oom"] if sample.under_oom else []
        if self.trigger_at.get(vmid) is not None and now_mono - self.trigger_at[vmid] <= self.args.interval + 1:
            by.append("psi_trigger")
        some = sample.pressure.get("some")
        previous = self.prev_pressure.get(vmid)
        if some is not None:
            if previous is not None and now_mono > previous[0] and some >= previous[1]:
                if (some - previous[1]) / (now_mono - previous[0]) >= self.args.stall_threshold:
                    by.append("pressure_sample")
            self.prev_pressure[vmid] = (now_mono, some)
        stalled = bool(by)
        if stalled and not self.stalled.get(vmid):
            self.flight(vmid, "stall", {"high_events": counters.total("high"), "pressure": sample.pressure, "by": by})
        self.stalled[vmid] = stalled
        # fork storm: tasks climbing by storm_tasks within storm_window
        history = self.task_history.setdefault(vmid, collections.deque())
        if sample.tasks is not None:
            history.append((now_mono, sample.tasks))
            while history and now_mono - history[0][0] > self.args.storm_window:
                history.popleft()
            storm = sample.tasks - min(tasks for _at, tasks in history) >= self.args.storm_tasks
            if storm and not self.storm.get(vmid):
                self.flight(vmid, "fork_storm", {"tasks": sample.tasks, "window_seconds": self.args.storm_window})
            self.storm[vmid] = storm
        if (increases.get("oom_kill") or increases.get("oom_group_kill")) and (self.kmsg is None or self.kmsg.errors):
            # without the kernel log the cgroup's counter is the only sign; with it, the kill's own record
            # (victim, task dump) is written as it is printed, and this one would take its cooldown
            self.flight(vmid, "oom_kill", {"cgroup_oom_kills": increases})

    def scan(self):
        """Every CT's cgroup once; CTs gone since the last scan keep their counters (running = False)."""
        started = self._monotonic()
        version, _base, paths = discover(self.args.cgroup_root)
        self.version = version
        self.paths = paths
        for vmid in [vmid for vmid in self.samples if vmid not in paths]:
            self._gone(vmid)
        for vmid, path in sorted(paths.items()):
            sample = read_ct(self.args.cgroup_root, version, vmid, path)
            if sample is None:
                self._gone(vmid)
                continue
            if sample.errors:
                self.count("scan_errors", sample.errors)
            if version == "v2" and not self.triggers.arm(vmid, path, sample.inode) and self.triggers.last_error:
                # said once per refusal (a sandbox or kernel that refuses triggers leaves the CTs to sampling)
                log("no PSI trigger, CT %s is sampled every %gs: %s" % (vmid, self.args.interval,
                                                                        self.triggers.last_error))
                self.triggers.last_error = None
            self._observe(vmid, sample, self._monotonic())
        self.triggers.keep_only(set(self.samples))
        self.state.forget_gone(self._wall(), self.args.keep_gone)
        self.scans += 1
        self.last_scan = self._wall()
        self.scan_duration = self._monotonic() - started

    def _gone(self, vmid):
        self.samples.pop(vmid, None)
        self.prev_pressure.pop(vmid, None)
        self.task_history.pop(vmid, None)
        self.stalled.pop(vmid, None)
        self.storm.pop(vmid, None)
        self.trigger_at.pop(vmid, None)
        self.triggers.disarm(vmid)
        if vmid in self.state.cts:
            self.state.cts[vmid].running = False

    def rescan(self, vmids):
        """Only these CTs again (a trigger fired): the stall reaches the textfile before the next full scan."""
        for vmid in vmids:
            path = self.paths.get(vmid)
            sample = read_ct(self.args.cgroup_root, self.version, vmid, path) if path else None
            if sample is not None:
                self._observe(vmid, sample, self._monotonic())

    # -- output -----------------------------------------------------------------
    def rows(self):
        rows = []
        for vmid, counters in sorted(self.state.cts.items()):
            sample = self.samples.get(vmid) if counters.running else None
            row = {"up": 1 if sample is not None else 0, "oom_kills": counters.oom_kills,
                   "last_kill": (counters.last_kill or {}).get("epoch")}
            for name in ("high", "max", "oom", "oom_kill", "oom_group_kill", "pressure_some", "pressure_full"):
                row[name] = counters.total(name)
            if sample is not None:
                row.update({"usage": sample.usage, "page_cache": sample.page_cache, "limit": sample.limit,
                            "high_limit": sample.high, "swap_usage": sample.swap_usage,
                            "swap_limit": sample.swap_limit, "tasks": sample.tasks,
                            "stalled": 1 if self.stalled.get(vmid) else 0,
                            "under_oom": None if sample.under_oom is None else int(sample.under_oom)})
            rows.append((vmid, row))
        return rows

    def write(self):
        """The textfile, then the state; a failed write keeps the old file and is counted."""
        self._sync_kmsg_counts()
        agent = dict((key, self.state.agent.get(key, 0)) for key in AGENT_TOTALS)
        agent.update({"last_scan": self.last_scan, "scan_duration": self.scan_duration, "scans": self.scans,
                      "kmsg_up": None if self.kmsg is None else int(self.kmsg.fd is not None),
                      "psi_triggers": len(self.triggers), "cts": len(self.samples),
                      "start_time": self.start_time})
        text = render(self.args.node, self.rows(), agent)
        try:
            write_atomic(os.path.join(self.args.textfile_dir, TEXTFILE_NAME), text)
        except OSError as error:
            self.count("write_errors")
            self._say_once("textfile", error)
        try:
            self.state.save()
        except OSError as error:
            self.count("write_errors")
            self._say_once("state", error)
        self.last_write = self._monotonic()

    _said = None

    def _say_once(self, what, error):
        said = self._said = self._said or {}
        key = (what, getattr(error, "errno", None))
        if key not in said:
            said[key] = True
            log("cannot write the %s (kept the old one; counted in enva_oom_watch_write_errors_total): %s"
                % (what, error))

    # -- the loop -----------------------------------------------------------------
    def run(self, stop=None, wake_fd=None):
        """Scan every ``interval``; between scans wait in poll() on the kernel log, the PSI triggers and
        ``wake_fd`` (signal.set_wakeup_fd's pipe: a SIGTERM ends the wait at once)."""
        stop = stop or {"now": False}
        if wake_fd is not None:
            self.triggers.poller.register(wake_fd, select.POLLIN)
        deadline = None if self.args.max_seconds is None else self._monotonic() + self.args.max_seconds
        self.follow_kmsg()
        self.scan()
        self.write()
        next_scan = self._monotonic() + self.args.interval
        while not stop["now"] and not self.args.once:
            now = self._monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = max(0.0, min(next_scan, deadline if deadline is not None else next_scan) - now)
            poller = self.triggers.poller
            kmsg_fd = self.kmsg.fd if self.kmsg is not None else None
            if kmsg_fd is not None:
                poller.register(kmsg_fd, select.POLLIN | select.POLLPRI | select.POLLERR)
            try:
                events = poller.poll(wait * 1000.0)
            except (OSError, select.error) as error:
                if getattr(error, "errno", None) != errno.EINTR:
                    raise
                events = []
            finally:
                if kmsg_fd is not None:
                    try:
                        poller.unregister(kmsg_fd)
                    except (KeyError, ValueError):
                        pass
            fired, kills = set(), 0
            for fd, revents in events:
                if fd == wake_fd:
                    try:
                        os.read(wake_fd, 512)
                    except OSError:
                        pass
                    continue
                if fd == kmsg_fd:
                    kills += self.follow_kmsg()
                    continue
                vmid = self.triggers.handle(fd, revents)
                if vmid is not None:
                    self.trigger_at[vmid] = self._monotonic()
                    fired.add(vmid)
            if self._monotonic() >= next_scan:
                self.follow_kmsg()
                self.scan()
                self.write()
                next_scan = max(next_scan + self.args.interval, self._monotonic())
            elif fired or kills:
                self.rescan(fired)
                if kills or self.last_write is None or self._monotonic() - self.last_write >= 1.0:
                    self.write()
        self.triggers.close()
        self.write()


def raise_open_files(wanted=8192):
    """One PSI trigger stays open per CT: lift the soft limit of open files toward the hard one."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    raise_open_files()
    try:
        os.makedirs(args.state_dir, mode=0o750, exist_ok=True)
    except OSError as error:
        log("cannot make the state directory %s: %s" % (args.state_dir, error))
        return 2
    stop = {"now": False}

    def _stop(_signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    wake_read, wake_write = os.pipe()
    for fd in (wake_read, wake_write):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_write)
    watch = Watch(args)
    watch.version = discover(args.cgroup_root)[0]
    log("watching %s (%s) every %gs; textfile %s; state %s; flight records %s; kernel log %s" % (
        args.cgroup_root, watch.version or "no memory cgroup yet", args.interval,
        os.path.join(args.textfile_dir, TEXTFILE_NAME), args.state_dir, args.flight_dir, args.kmsg or "off"))
    watch.run(stop, wake_read)
    return 0
