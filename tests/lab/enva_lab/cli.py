"""``labctl``: the lab's one command line. Run ``tests/lab/labctl --help``."""

import argparse
import json
import sys

from enva_lab import lab, settings
from enva_lab.errors import LabError
from enva_lab.incident import mib_text

REPRODUCE_QPS = 2000
REPRODUCE_MAX_SECONDS = 120
REPRODUCE_QPS_NODE = 100           # a VM node under TCG: socat forks about 4 children a second there
REPRODUCE_MAX_SECONDS_NODE = 600
REPRODUCE_STALL_SECONDS = 60


def _parser():
    parser = argparse.ArgumentParser(
        prog="labctl", description="The enva.pve lab: a Proxmox-like host from real parts (LXC CTs named by VMID "
        "with PVE's cgroup layout, bridge vmbr0, unbound as SiNS, the PVE API lab). State in $ENVA_LAB_DIR "
        "(default /var/lib/enva-lab).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="build or repair the lab: bridge, DNS, kernel log copy, CT 2017, the API lab")
    up.add_argument("--cts", type=int, default=0, metavar="N", help="also N ordinary CTs (the declared ones first)")
    up.add_argument("--only", type=_vmid_list, metavar="VMID[,VMID]",
                    help="exactly these declared CTs, CT 2017 or not (a cluster node's share)")
    down = sub.add_parser("down", help="remove every CT, link, cgroup, process and file of the lab")
    down.add_argument("--purge", action="store_true", help="remove the rootfs cache too")
    status = sub.add_parser("status", help="the CTs: state, memory limit/usage/peak, OOM kills, processes")
    status.add_argument("--json", action="store_true")
    for name, text in (("start", "start a CT (as pve-container@VMID), logged in the lab's journal"),
                       ("stop", "stop a CT (a hard stop, as PVE's status/stop), logged in the lab's journal"),
                       ("reset", "rebuild a CT from the cache in its declared as-found state")):
        command = sub.add_parser(name, help=text)
        command.add_argument("vmid", type=int)
        if name == "reset":
            command.add_argument("--release", help="on this Debian release's rootfs instead of the declared one "
                                 "(trixie or bookworm; a scenario's variant: the next reset or up goes back)")
    exe = sub.add_parser("exec", help="run a command in a CT (lxc-attach): labctl exec 2017 -- ps aux")
    exe.add_argument("vmid", type=int)
    exe.add_argument("argv", nargs=argparse.REMAINDER, help="the command (after --); a login shell without one")
    fl = sub.add_parser("flood", help="DNS queries to a CT, each from a fresh socket (a random source port)")
    fl.add_argument("--vmid", type=int, default=settings.HAPROXY_VMID)
    fl.add_argument("--qps", type=int, required=True, help="queries per second")
    fl.add_argument("--seconds", type=float, required=True, help="how long (at most 900)")
    fl.add_argument("--max-open", type=int, default=4096, help="unanswered queries kept open at most (default 4096)")
    fl.add_argument("--json", action="store_true", help="a JSON summary at the end")
    rep = sub.add_parser("reproduce", help="flood CT 2017 as found until the kernel OOM-kills inside /lxc/2017 "
                         "(on cgroup v2: or it stalls at memory.high)")
    rep.add_argument("--qps", type=int, default=None, help="queries per second (default %d; %d on a cgroup v2 "
                     "VM node, where TCG forks socat about 4 times a second)" % (REPRODUCE_QPS, REPRODUCE_QPS_NODE))
    rep.add_argument("--max-seconds", type=float, default=None,
                     help="give up after this long (default %d; %d on a VM node)" % (
                         REPRODUCE_MAX_SECONDS, REPRODUCE_MAX_SECONDS_NODE))
    rep.add_argument("--stall-seconds", type=float, default=REPRODUCE_STALL_SECONDS,
                     help="on cgroup v2, stop once the CT has been stuck at memory.high this long: high events "
                     "rising and nothing answered, or memory PSI full avg10 over the collection's threshold with "
                     "fewer than half answered (default %d; 0: wait for the OOM)" % REPRODUCE_STALL_SECONDS)
    rep.add_argument("--json", action="store_true", help="a JSON summary at the end")
    jo = sub.add_parser("journal", help="the CT's lifecycle journal, as journalctl -u pve-container@VMID prints it")
    jo.add_argument("vmid", type=int)
    jo.add_argument("-o", "--output", default="short",
                    choices=("short", "short-precise", "short-iso", "short-iso-precise", "json"))
    jo.add_argument("--json", action="store_true", help="the same as -o json")
    _vm_parser(sub)
    cluster = sub.add_parser("cluster", help="three VM nodes as one PVE cluster (pve1, pve2, pve3; CTs spread)")
    clsub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")
    clup = clsub.add_parser("up", help="boot the nodes, the lab on each, the cluster's API on every node")
    clup.add_argument("--release", help=RELEASE_HELP)
    reset = clsub.add_parser("reset", help="a CT as found again on its node, and the controller's copies again")
    reset.add_argument("vmid", nargs="?", type=int, default=2017)
    clsub.add_parser("down", help="stop every node and remove their state")
    clstatus = clsub.add_parser("status", help="the nodes, their ports and CTs")
    clstatus.add_argument("--json", action="store_true")
    supervise = sub.add_parser("_supervise")       # internal: the CT's pve-container@VMID "service"
    supervise.add_argument("--labdir", required=True)
    supervise.add_argument("vmid", type=int)
    follow = sub.add_parser("_kmsg")               # internal: the kernel log follower
    follow.add_argument("--labdir", required=True)
    return parser


RELEASE_HELP = ("the nodes' Debian release: trixie (13, PVE 9-shaped; the default) or bookworm (12, PVE 8); "
                "default $ENVA_LAB_PVE (9 or 8)")


def _vm_parser(sub):
    vm = sub.add_parser("vm", help="PVE-shaped nodes as qemu VMs (cgroup v2, systemd, pve-container@VMID)")
    vmsub = vm.add_subparsers(dest="vm_command", required=True, metavar="VM_COMMAND")
    build = vmsub.add_parser("build", help="build the node image (once; cached in /var/cache/enva-lab/node-RELEASE)")
    build.add_argument("--release", help=RELEASE_HELP)
    for name, text in (("up", "boot a node (building the image when needed) and wait for SSH"),
                       ("down", "stop a node (all with no name) by PID and remove its state"),
                       ("push", "copy this checkout's tests/lab to the node's /opt/enva"),
                       ("lab", "labctl up on a node, and copy what a controller here needs to reach its CTs "
                               "and API (inventories/vm-node) to <vm dir>/NAME/lab")):
        command = vmsub.add_parser(name, help=text)
        command.add_argument("name", nargs="?", default=None if name == "down" else "pve1")
        if name == "up":
            command.add_argument("--release", help=RELEASE_HELP)
    st = vmsub.add_parser("status", help="the image and the nodes")
    st.add_argument("--json", action="store_true")
    st.add_argument("--release", help=RELEASE_HELP)
    ssh = vmsub.add_parser("ssh", help="a command on a node as root: labctl vm ssh pve1 -- labctl status")
    ssh.add_argument("name")
    ssh.add_argument("argv", nargs=argparse.REMAINDER)


def _vm_main(args):
    from enva_lab import vmimage, vmnode    # pylint: disable=import-outside-toplevel
    nodes = vmnode.Nodes(paths=vmimage.Paths(release=getattr(args, "release", None)),
                         out=lambda line: print(line, flush=True))
    if args.vm_command == "build":
        seconds = vmimage.build(nodes.paths, nodes.out)
        print("node image: %s (%s)" % ("built in %.0f s" % seconds if seconds else "cached", nodes.paths.node))
    elif args.vm_command == "up":
        nodes.up(args.name)
    elif args.vm_command == "down":
        nodes.down(args.name)
    elif args.vm_command == "push":
        nodes.push(args.name)
    elif args.vm_command == "lab":
        from enva_lab import vmcluster      # pylint: disable=import-outside-toplevel
        nodes.lab_up(args.name, only=vmcluster.Cluster(nodes, out=nodes.out).share(args.name))
    elif args.vm_command == "status":
        status = nodes.status()
        if args.json:
            print(json.dumps(status, indent=1))
        else:
            print("image %s (%s, PVE %s-shaped): %s%s" % (
                status["image"], status["release"], status["pve"], "built" if status["image_current"] else "not built",
                " (kernel %s)" % status["kernel"] if status["kernel"] else ""))
            if status["note"]:
                print(status["note"])
            for node in status["nodes"]:
                print("node %s: %s, %s, %s, ssh %s, api %s, booted in %s s" % (
                    node["name"], "running pid %d" % node["pid"] if node["running"] else "not running",
                    node.get("release") or "?", (node["accel"] or "?").upper(), node["ssh"], node["api"],
                    node["boot_seconds"]))
    elif args.vm_command == "ssh":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        nodes.exec(args.name, command)


def _cluster_main(args):
    from enva_lab import vmcluster, vmimage, vmnode    # pylint: disable=import-outside-toplevel
    nodes = vmnode.Nodes(paths=vmimage.Paths(release=getattr(args, "release", None)),
                         out=lambda line: print(line, flush=True))
    cluster = vmcluster.Cluster(nodes, out=nodes.out)
    if args.cluster_command == "up":
        cluster.up()
    elif args.cluster_command == "down":
        cluster.down()
    elif args.cluster_command == "reset":
        cluster.reset(args.vmid)
    else:
        status = cluster.status()
        if args.json:
            print(json.dumps(status, indent=1))
            return
        for node in status["nodes"]:
            print("%s %s: %s; ssh %s, api %s; CTs %s" % (
                node["name"], node["cluster_ip"], "running pid %d" % node["pid"] if node.get("running") else
                "not running", node.get("ssh", "-"), node.get("api", "-"), status["shares"][node["name"]]))


def _vmid_list(text):
    try:
        vmids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("wants VMIDs separated by commas (2101,2102), got %r" % text) from None
    if not vmids or any(vmid < 100 for vmid in vmids):
        raise argparse.ArgumentTypeError("wants VMIDs of 100 and more, got %r" % text)
    return vmids


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
    backend = status.get("backend") or {}
    print("backend: %s, CTs run by %s%s" % (backend.get("cgroup"), backend.get("supervisor"),
                                            " (a VM node)" if backend.get("vm_node") else ""))
    print("%-5s %-9s %-8s %-13s %9s %10s %10s %8s %4s %6s %6s" % (
        "VMID", "HOSTNAME", "STATE", "IP", "LIMIT", "USAGE", "PEAK", "FAILCNT", "OOM", "PROCS", "SOCAT"))
    for item in status["cts"]:
        memory = item["memory"] or {}
        print("%-5d %-9s %-8s %-13s %9s %10s %10s %8s %4s %6d %6d" % (
            item["vmid"], item["hostname"] or "?", item["state"], item["ip"] or "?",
            mib_text(memory.get("limit_bytes")) if memory else "-", mib_text(memory.get("usage_bytes")) if memory else "-",
            mib_text(memory.get("peak_bytes")) if memory else "-", memory.get("failcnt", "-"),
            memory.get("oom_kill", "-"), item["processes"], item["socat"]))
        if memory.get("version") == "v2":
            events, pressure = memory.get("events") or {}, memory.get("pressure") or {}
            print("      v2 /lxc/%d: memory.current %s, high %s, max %s; memory.events high %s max %s oom %s "
                  "oom_kill %s; PSI some avg10 %s%% full avg10 %s%%" % (
                      item["vmid"], mib_text(memory.get("usage_bytes")), mib_text(memory.get("high_bytes")),
                      mib_text(memory.get("limit_bytes")), events.get("high", 0), events.get("max", 0),
                      events.get("oom", 0), events.get("oom_kill", 0), pressure.get("some", {}).get("avg10"),
                      pressure.get("full", {}).get("avg10")))


def main(argv=None):
    args = _parser().parse_args(argv)
    the_lab = lab.Lab(out=lambda line: print(line, flush=True))
    try:
        if args.command == "vm":
            _vm_main(args)
        elif args.command == "cluster":
            _cluster_main(args)
        elif args.command == "up":
            the_lab.up(args.cts, args.only)
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
            the_lab.reset(args.vmid, release=args.release)
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
            node = settings.on_vm_node()
            qps = args.qps or (REPRODUCE_QPS_NODE if node else REPRODUCE_QPS)
            seconds = args.max_seconds or (REPRODUCE_MAX_SECONDS_NODE if node else REPRODUCE_MAX_SECONDS)
            result = the_lab.reproduce(qps, seconds, stall_hold=args.stall_seconds or None)
            if args.json:
                print(json.dumps(result, indent=1))
            return 0 if result["oom"] or result["stall"] else 1
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
