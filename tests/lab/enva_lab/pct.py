"""``pct`` on a lab VM node: the subset of PVE's ``pct`` that community.proxmox's ``proxmox_pct_remote``
connection and an admin use, acting on the node's real CTs as PVE's does.

``list``, ``status VMID``, ``config VMID``, ``exec VMID [--] CMD...`` (``lxc-attach -n VMID --keep-env``,
PVE's default), ``push VMID FILE DEST`` and ``pull VMID PATH DEST`` (``--user``, ``--group``, ``--perms``;
the CT's side opened inside its mount namespace, and for an unprivileged CT its user namespace, as
pve-container's pct.pm does). The CTs are the configs under the lab's ``etc/pve/lxc`` (the node's
/etc/pve/lxc); a failure prints PVE's message and ends with PVE's exit status 255 (its CLI handler's
``exit(-1)``). ``labctl up`` on a VM node installs /usr/sbin/pct, a two-line script that runs this module
with Debian's python3 (a ``pct exec`` costs about 1 s on a TCG node, lxc-attach included).
"""

import os
import socket
import subprocess
import sys

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config

from enva_lab import settings

EXIT_ERROR = 255
PCT_PM = "/usr/share/perl5/PVE/CLI/pct.pm"     # where perl's die without a newline says it died
USAGE = {
    "list": "pct list",
    "status": "pct status <vmid> [OPTIONS]",
    "config": "pct config <vmid> [OPTIONS]",
    "exec": "pct exec <vmid> [<extra-args>] [OPTIONS]",
    "push": "pct push <vmid> <file> <destination> [OPTIONS]",
    "pull": "pct pull <vmid> <path> <destination> [OPTIONS]",
}


class PctError(Exception):
    """What PVE's pct prints on stderr before it exits 255."""


def _node():
    return socket.gethostname().split(".")[0]


def _vmid(text, command):
    if not text.isdigit() or not 100 <= int(text) <= 999999999:
        raise PctError("400 Parameter verification failed.\nvmid: invalid format - value does not look like a valid "
                       "VM ID\n\n%s" % USAGE[command])
    return int(text)


def _config(layout, vmid):
    """The CT's config (PVE's ``load_config``: the CT must exist on this node)."""
    path = layout.pve_conf(vmid)
    try:
        return pve_ct_config.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PctError("Configuration file 'nodes/%s/lxc/%d.conf' does not exist" % (_node(), vmid)) from None


def _running_pid(layout, vmid):
    """The CT's init PID when lxc-info says it runs (as PVE's check_running and find_lxc_pid ask lxc-info)."""
    done = subprocess.run(["lxc-info", "-n", str(vmid), "-P", str(layout.lxcpath), "-s", "-p"], capture_output=True,
                          text=True, check=False)
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    pid = fields.get("PID", "").strip()
    return int(pid) if done.returncode == 0 and fields.get("State", "").strip() == "RUNNING" and pid.isdigit() else None


def cmd_list(layout):
    rows = []
    found = [(pve_ct_config.config_vmid(path.name), path) for path in layout.pve_lxc.glob("*.conf")]
    for vmid, path in sorted(item for item in found if item[0] is not None):
        config = pve_ct_config.parse(path.read_text(encoding="utf-8"))
        rows.append((vmid, "running" if _running_pid(layout, vmid) else "stopped", config.settings.get("lock", ""),
                     config.settings.get("hostname", "CT%d" % vmid)))
    if rows:
        line = "%-10s %-10s %-12s %-20s"
        print(line % ("VMID", "Status", "Lock", "Name"))
        for row in rows:
            print(line % row)


def cmd_status(layout, vmid):
    _config(layout, vmid)
    print("status: %s" % ("running" if _running_pid(layout, vmid) else "stopped"))


def cmd_config(layout, vmid):
    config = _config(layout, vmid)
    values = dict(config.settings)
    if config.description:
        values["description"] = pve_ct_config.encode_text(config.description)
    for key in sorted(values):
        if key not in ("digest", "lxc"):
            print("%s: %s" % (key, values[key]))


def cmd_exec(layout, vmid, argv):
    _config(layout, vmid)
    if not _running_pid(layout, vmid):
        raise PctError("container '%d' not running!" % vmid)
    if not argv:
        raise PctError("missing command at %s line 246." % PCT_PM)
    sys.stdout.flush()
    os.execvp("lxc-attach", ["lxc-attach", "-n", str(vmid), "-P", str(layout.lxcpath), "--keep-env", "--", *argv])


def _namespaces(config, pid):
    """nsenter's options for the CT's mount namespace (and user namespace when it is unprivileged)."""
    options = ["nsenter", "--target", str(pid), "--mount"]
    if config.settings.get("unprivileged") == "1":
        options.append("--user")
    return options


def _mode(perms):
    """PVE's reading of --perms: octal unless it starts with 0x (``"0$perms"`` then strtoul base 0)."""
    text = perms if perms.startswith("0") else "0" + perms
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 8)
    except ValueError:
        raise PctError("invalid mode: '%s'" % perms) from None


def _owner_and_mode(options):
    """Shell commands that give the file ($1) the owner, group and permissions asked for (PVE's create_file:
    names are looked up where the file is, in the CT for push)."""
    steps = []
    if options.perms is not None:
        steps.append("chmod %o \"$1\"" % _mode(options.perms))
    for value, prefix, what in ((options.user, "", "uid"), (options.group, ":", "gid")):
        if value is not None:
            steps.append("chown %s%s \"$1\" 2>/dev/null || { echo 'failed to get %s for: %s' >&2; exit 1; }"
                         % (prefix, value, what, value))
    return "".join(step + "; " for step in steps)


def cmd_push(layout, vmid, options):
    config = _config(layout, vmid)
    pid = _running_pid(layout, vmid)
    if not pid:
        raise PctError("can only push files to a running CT")
    try:
        source = open(options.file, "rb")     # opened on the node, before entering the CT (as PVE does)
    except OSError:
        raise PctError("failed to open %s for reading" % options.file) from None
    with source:
        script = "cat > \"$1\" || exit 1; %s" % _owner_and_mode(options)
        done = subprocess.run(_namespaces(config, pid) + ["/bin/sh", "-c", script, "sh", options.destination],
                              stdin=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PctError(done.stderr.strip() or "failed to create file: %s" % options.destination)


def cmd_pull(layout, vmid, options):
    config = _config(layout, vmid)
    pid = _running_pid(layout, vmid)
    if not pid:
        raise PctError("can only pull files from a running VM at %s line 664." % PCT_PM)
    with open(options.destination, "wb") as target:
        done = subprocess.run(_namespaces(config, pid) + ["cat", "--", options.path], stdout=target,
                              stderr=subprocess.PIPE, text=False, check=False)
    if done.returncode != 0:
        os.unlink(options.destination)
        reason = done.stderr.decode(errors="replace").strip().rsplit(": ", 1)[-1] or "No such file or directory"
        raise PctError("failed to open %s: %s" % (options.path, reason))
    fixup = _owner_and_mode(options)
    if fixup:
        subprocess.run(["/bin/sh", "-c", fixup, "sh", options.destination], check=True)


def _parser():
    import argparse     # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="pct", description="the lab's subset of PVE's pct")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    for name in ("status", "config"):
        sub.add_parser(name).add_argument("vmid")
    exe = sub.add_parser("exec")
    exe.add_argument("vmid")
    exe.add_argument("--keep-env", type=int, default=1)
    exe.add_argument("argv", nargs=argparse.REMAINDER)
    for name, what in (("push", "file"), ("pull", "path")):
        command = sub.add_parser(name)
        command.add_argument("vmid")
        command.add_argument(what)
        command.add_argument("destination")
        for option in ("--user", "--group", "--perms"):
            command.add_argument(option)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    layout = settings.Layout()
    try:
        if args.command == "list":
            cmd_list(layout)
            return 0
        vmid = _vmid(args.vmid, args.command)
        if args.command == "status":
            cmd_status(layout, vmid)
        elif args.command == "config":
            cmd_config(layout, vmid)
        elif args.command == "exec":
            cmd_exec(layout, vmid, args.argv[1:] if args.argv[:1] == ["--"] else args.argv)
        elif args.command == "push":
            cmd_push(layout, vmid, args)
        elif args.command == "pull":
            cmd_pull(layout, vmid, args)
    except PctError as error:
        sys.stdout.flush()
        print(error, file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
