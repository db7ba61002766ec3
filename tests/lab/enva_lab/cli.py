"""``labctl``: the lab's one command line. Run ``tests/lab/labctl --help``."""

import argparse
import json
import sys

from enva_lab import lab, settings
from enva_lab.errors import LabError

REPRODUCE_QPS = 2000
REPRODUCE_MAX_SECONDS = 120


def _parser():
    parser = argparse.ArgumentParser(
        prog="labctl", description="The enva.pve lab: a Proxmox-like host from real parts (LXC CTs named by VMID "
        "with PVE's cgroup layout, bridge vmbr0, unbound as SiNS, the PVE API lab). State in $ENVA_LAB_DIR "
        "(default /var/lib/enva-lab).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="build or repair the lab: bridge, DNS, kernel log copy, CT 2017, the API lab")
    up.add_argument("--cts", type=int, default=0, metavar="N", help="also N ordinary CTs (the declared ones first)")
    down = sub.add_parser("down", help="remove every CT, link, cgroup, process and file of the lab")
    down.add_argument("--purge", action="store_true", help="remove the rootfs cache too")
    status = sub.add_parser("status", help="the CTs: state, memory limit/usage/peak, OOM kills, processes")
    status.add_argument("--json", action="store_true")
    for name, text in (("start", "start a CT (as pve-container@VMID), logged in the lab's journal"),
                       ("stop", "stop a CT (a hard stop, as PVE's status/stop), logged in the lab's journal"),
                       ("reset", "rebuild a CT from the cache in its declared as-found state")):
        command = sub.add_parser(name, help=text)
        command.add_argument("vmid", type=int)
    exe = sub.add_parser("exec", help="run a command in a CT (lxc-attach): labctl exec 2017 -- ps aux")
    exe.add_argument("vmid", type=int)
    exe.add_argument("argv", nargs=argparse.REMAINDER, help="the command (after --); a login shell without one")
    fl = sub.add_parser("flood", help="DNS queries to a CT, each from a fresh socket (a random source port)")
    fl.add_argument("--vmid", type=int, default=settings.HAPROXY_VMID)
    fl.add_argument("--qps", type=int, required=True, help="queries per second")
    fl.add_argument("--seconds", type=float, required=True, help="how long (at most 900)")
    fl.add_argument("--max-open", type=int, default=4096, help="unanswered queries kept open at most (default 4096)")
    fl.add_argument("--json", action="store_true", help="a JSON summary at the end")
    rep = sub.add_parser("reproduce", help="flood CT 2017 as found until the kernel OOM-kills inside /lxc/2017")
    rep.add_argument("--qps", type=int, default=REPRODUCE_QPS, help="queries per second (default %d)" % REPRODUCE_QPS)
    rep.add_argument("--max-seconds", type=float, default=REPRODUCE_MAX_SECONDS,
                     help="give up after this long (default %d)" % REPRODUCE_MAX_SECONDS)
    rep.add_argument("--json", action="store_true", help="a JSON summary at the end")
    jo = sub.add_parser("journal", help="the CT's lifecycle journal, as journalctl -u pve-container@VMID prints it")
    jo.add_argument("vmid", type=int)
    jo.add_argument("-o", "--output", default="short",
                    choices=("short", "short-precise", "short-iso", "short-iso-precise", "json"))
    jo.add_argument("--json", action="store_true", help="the same as -o json")
    supervise = sub.add_parser("_supervise")       # internal: the CT's pve-container@VMID "service"
    supervise.add_argument("--labdir", required=True)
    supervise.add_argument("vmid", type=int)
    follow = sub.add_parser("_kmsg")               # internal: the kernel log follower
    follow.add_argument("--labdir", required=True)
    return parser


def _print_status(status):
    bridge = status["bridge"]
    print("lab %s: %s; bridge %s %s %s" % (status["labdir"], "up" if status["up"] else "not up", bridge["name"],
                                           bridge["state"] or "missing", " ".join(bridge["addresses"])))
    dns = status["dns"]
    counters = dns["counters"]
    print("dns %s (zone %s): %s; %s queries, %s refused, %s recursive" % (
        dns["address"], dns["zone"], "unbound pid %d" % dns["pid"] if dns["pid"] else "not running",
        counters.get("total.num.queries", "?"), counters.get("num.answer.rcode.REFUSED", 0),
        counters.get("total.num.recursivereplies", "?")))
    api = status["api"]
    print("api %s: %s" % (api["url"], "pid %d" % api["pid"] if api["pid"] else "not running"))
    print("kernel log %s: %s" % (status["kernel_log"]["path"], "follower pid %d" % status["kernel_log"]["pid"]
                                 if status["kernel_log"]["pid"] else "no follower"))
    print("%-5s %-9s %-8s %-13s %9s %10s %10s %8s %4s %6s %6s" % (
        "VMID", "HOSTNAME", "STATE", "IP", "LIMIT", "USAGE", "PEAK", "FAILCNT", "OOM", "PROCS", "SOCAT"))
    for item in status["cts"]:
        memory = item["memory"] or {}
        print("%-5d %-9s %-8s %-13s %9s %10s %10s %8s %4s %6d %6d" % (
            item["vmid"], item["hostname"] or "?", item["state"], item["ip"] or "?",
            lab._mib(memory.get("limit_bytes")) if memory else "-", lab._mib(memory.get("usage_bytes")) if memory else "-",
            lab._mib(memory.get("peak_bytes")) if memory else "-", memory.get("failcnt", "-"),
            memory.get("oom_kill", "-"), item["processes"], item["socat"]))


def main(argv=None):
    args = _parser().parse_args(argv)
    the_lab = lab.Lab(out=lambda line: print(line, flush=True))
    try:
        if args.command == "up":
            the_lab.up(args.cts)
        elif args.command == "down":
            the_lab.down(purge=args.purge)
        elif args.command == "status":
            status = the_lab.status()
            if args.json:
                print(json.dumps(status, indent=1))
            else:
                _print_status(status)
        elif args.command == "start":
            the_lab.start(args.vmid)
        elif args.command == "stop":
            the_lab.stop(args.vmid)
        elif args.command == "reset":
            the_lab.reset(args.vmid)
        elif args.command == "exec":
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            the_lab.exec(args.vmid, command)
        elif args.command == "flood":
            summary = the_lab.flood(args.vmid, args.qps, args.seconds, max_open=args.max_open)
            print("flood: %d sent, %d answered, %d lost, %d send errors in %.1f s (%.0f q/s); %s" % (
                summary["sent"], summary["answered"], summary["lost"], summary["send_errors"], summary["elapsed"],
                summary["achieved_qps"], summary["rcodes"]))
            if args.json:
                print(json.dumps(summary, indent=1))
        elif args.command == "reproduce":
            result = the_lab.reproduce(args.qps, args.max_seconds)
            if args.json:
                print(json.dumps(result, indent=1))
            return 0 if result["oom"] else 1
        elif args.command == "journal":
            sys.stdout.write(the_lab.journal_text(args.vmid, "json" if args.json else args.output))
        elif args.command == "_supervise":
            lab.supervise_main(args.labdir, args.vmid)
        elif args.command == "_kmsg":
            lab.kmsg_main(args.labdir)
    except LabError as error:
        print("labctl: %s" % error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("labctl: interrupted", file=sys.stderr)
        return 130
    return 0
