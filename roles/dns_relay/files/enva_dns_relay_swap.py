# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dns_relay role's helper inside the CT: find forking DNS forwarders, swap them for the relay.

Standard library only, Python 3.9+, run by the role with the CT's python3 (no shebang, as the
relay). Two commands, each printing one JSON object:

    find --port 53 [--command socat ...] [--unit NAME ...]
        Every systemd service whose ExecStart runs one of the commands with a socat-style listening
        address on the port (UDP4-LISTEN:53, TCP-LISTEN:53, UDP-RECVFROM:53, ...), plus the units
        named with --unit. For each: its unit file, KillMode, state, enablement, main PID and the
        processes left over from it (same command line, which socat's fork children share).
        Read-only.

    procs --port 53 [--command socat ...]
        Every process (in a unit or not) whose command line is such a forwarder. Read-only.

    swap --stop UNIT [--stop ...] [--argv ARGV ...] --start UNIT [--start ...]
        Stops the units, kills by PID what they left behind (processes whose command line is one of
        the ARGV strings: socat's fork children survive `systemctl stop` when KillMode is process or
        none), then starts the others, and reports how long DNS was down: from the moment before
        the stop to the moment `systemctl start` returned (a Type=notify unit returns when it has
        bound its sockets). The stop, the kills and the start happen in this one process, with no
        round trip to the controller in between. When a start fails, the stopped units are started
        again (`rolled_back`) and the exit status is 1.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState", "FragmentPath", "KillMode", "MainPID",
              "ExecStart", "ControlGroup")


def systemctl(*args, check=True):
    proc = subprocess.run(("systemctl",) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("systemctl %s: exit %d: %s" % (" ".join(args), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def service_names():
    names = set()
    for args in (("list-unit-files", "--type=service"), ("list-units", "--type=service", "--all")):
        for line in systemctl(*(args + ("--no-legend", "--plain", "--no-pager"))).splitlines():
            fields = line.split()
            if fields and fields[0].endswith(".service") and not fields[0].endswith("@.service"):
                names.add(fields[0])
    return sorted(names)


def parse_show(text):
    """`systemctl show` of several units: blocks of Key=Value lines separated by blank lines."""
    units = []
    for block in re.split(r"\n\s*\n", text.strip()):
        props = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key] = value
        if props.get("Id"):
            units.append(props)
    return units


def exec_argvs(exec_start):
    """The argv[] strings of an ExecStart property (`{ path=... ; argv[]=... ; ... }`, one per command)."""
    return [match.strip() for match in re.findall(r"argv\[\]=(.*?) ;", exec_start)]


def forwarder_regex(commands, port):
    names = "|".join(re.escape(command) for command in commands)
    return re.compile(r"^(?:\S*/)?(?:%s)\s(?:.*\s)?[A-Za-z0-9]+-(?:LISTEN|RECVFROM|RECV):%d(?:[,\s]|$)"
                      % (names, port), re.IGNORECASE)


def processes():
    """(pid, command line with NULs as blanks) of every process, best effort."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        if raw:
            found.append((int(entry), raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")))
    return found


def leftovers(argvs, exclude=()):
    wanted = set(argvs)
    return sorted(pid for pid, cmdline in processes() if cmdline in wanted and pid not in exclude and pid != os.getpid())


def find(args):
    regex = forwarder_regex(args.command, args.port)
    names = service_names()
    shown = parse_show(systemctl("show", "--property=" + ",".join(PROPERTIES), "--", *names)) if names else []
    found = []
    for unit in shown:
        argvs = exec_argvs(unit.get("ExecStart", ""))
        matched = [argv for argv in argvs if regex.search(argv)]
        if not matched and unit["Id"] not in args.unit:
            continue
        main_pid = int(unit.get("MainPID") or 0)
        record = {"unit": unit["Id"], "fragment_path": unit.get("FragmentPath", ""),
                  "unit_file_state": unit.get("UnitFileState", ""), "active_state": unit.get("ActiveState", ""),
                  "kill_mode": unit.get("KillMode", ""), "argv": argvs}
        found.append({
            "record": record,
            "unit": unit["Id"],
            "fragment_path": unit.get("FragmentPath", ""),
            "load_state": unit.get("LoadState", ""),
            "active_state": unit.get("ActiveState", ""),
            "unit_file_state": unit.get("UnitFileState", ""),
            "kill_mode": unit.get("KillMode", ""),
            "main_pid": main_pid,
            "argv": argvs,
            "matched": matched,
            "processes": leftovers(argvs),
        })
    missing = sorted(set(args.unit) - set(unit["unit"] for unit in found))
    print(json.dumps({"forwarders": found, "missing_units": missing, "regex": regex.pattern}))
    return 0


def procs(args):
    regex = forwarder_regex(args.command, args.port)
    found = [{"pid": pid, "cmdline": cmdline} for pid, cmdline in processes()
             if regex.search(cmdline) and pid != os.getpid()]
    print(json.dumps({"processes": found, "regex": regex.pattern}))
    return 0


def kill_all(pids, grace):
    """SIGTERM, up to `grace` seconds, then SIGKILL; the PIDs that were signalled."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(signalled)
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [pid for pid in alive if os.path.exists("/proc/%d" % pid) and not zombie(pid)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return signalled


def zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def swap(args):
    result = {"stopped": args.stop, "started": args.start, "killed": [], "errors": []}
    before = time.monotonic()
    wall = time.time()
    if args.stop:
        systemctl("stop", "--", *args.stop)
    stopped = time.monotonic()
    result["killed"] = kill_all(leftovers(args.argv), args.grace)
    killed = time.monotonic()
    try:
        if args.start:
            systemctl("start", "--", *args.start)
    except RuntimeError as exc:
        result["errors"].append(str(exc))
    after = time.monotonic()
    if args.stop:
        # socat exits 143 on SIGTERM, which leaves its unit "failed": a retired unit is not a failure.
        systemctl("reset-failed", "--", *args.stop, check=False)
    if result["errors"] and args.stop:
        # The new service did not come up: give the CT its old DNS back rather than none.
        try:
            systemctl("stop", "--", *args.start, check=False)
            systemctl("start", "--", *args.stop)
            result["rolled_back"] = args.stop
        except RuntimeError as exc:
            result["errors"].append("rollback failed: %s" % exc)
    result.update({
        "started_at": wall,
        "stop_ms": round((stopped - before) * 1000, 1),
        "kill_ms": round((killed - stopped) * 1000, 1),
        "start_ms": round((after - killed) * 1000, 1),
        "gap_ms": round((after - before) * 1000, 1),
        "left_over": leftovers(args.argv),
    })
    print(json.dumps(result))
    return 1 if result["errors"] else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="enva_dns_relay_swap.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="action", required=True)
    finder = sub.add_parser("find", help="list the forking forwarders on a port (read-only)")
    finder.add_argument("--port", type=int, required=True)
    finder.add_argument("--command", action="append", default=[])
    finder.add_argument("--unit", action="append", default=[])
    lister = sub.add_parser("procs", help="list the processes of forking forwarders on a port (read-only)")
    lister.add_argument("--port", type=int, required=True)
    lister.add_argument("--command", action="append", default=[])
    swapper = sub.add_parser("swap", help="stop units, kill their leftovers, start others; time it")
    swapper.add_argument("--stop", action="append", default=[])
    swapper.add_argument("--argv", action="append", default=[])
    swapper.add_argument("--start", action="append", default=[])
    swapper.add_argument("--grace", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.action in ("find", "procs") and not args.command:
        args.command = ["socat"]
    try:
        return {"find": find, "procs": procs, "swap": swap}[args.action](args)
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2


if __name__ == "__main__":
    sys.exit(main())
