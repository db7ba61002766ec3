"""The lab's CTs: their layer over the cached rootfs, their PVE config, and their life as
``pve-container@VMID.service`` lives it on a PVE node.

Each CT runs under a supervisor process of the lab (``python3 -m enva_lab _supervise VMID``),
which does what systemd does for ``pve-container@VMID.service``: it runs ``lxc-start -F``
in the foreground, logs Starting/Started, and when ``lxc-start`` ends (a stop asked for, or
the CT dying by itself after an OOM kill) logs how it ended, in systemd's words, to the
lab's journal. ``start``/``stop`` are what ``labctl start|stop VMID`` and the PVE API lab's
``status/start``/``status/stop`` call.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config

from enva_lab import host, journal, lxcconf, procs, pveconf, settings
from enva_lab.errors import LabError

ATTACH_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOCAT_FORWARDER = "/usr/bin/socat UDP4-LISTEN:53,fork,reuseaddr UDP4:%s:%d" % (settings.DNS_IP, settings.DNS_PORT)


def haproxy_cfg():
    """CT 2017's HAProxy config as found: a front end, backends named in the lab zone, and a
    ``resolvers`` section that asks the local forwarder (127.0.0.1:53)."""
    zone = settings.ZONE
    return """# /etc/haproxy/haproxy.cfg - HAProxy front end for www and api (CT 2017)
global
\tlog /dev/log\tlocal0
\tlog /dev/log\tlocal1 notice
\tchroot /var/lib/haproxy
\tstats socket /run/haproxy/admin.sock mode 660 level admin
\tstats timeout 30s
\tuser haproxy
\tgroup haproxy
\tdaemon

defaults
\tlog\tglobal
\tmode\thttp
\toption\thttplog
\toption\tdontlognull
\ttimeout connect 5s
\ttimeout client  50s
\ttimeout server  50s

# Backends are found by name through the local DNS forwarder (dns-forwarder.service -> SiNS).
resolvers sins
\tnameserver local 127.0.0.1:53
\taccepted_payload_size 8192
\tresolve_retries 3
\ttimeout resolve 1s
\ttimeout retry   1s
\thold valid      10s

frontend www
\tbind :80
\tacl host_api hdr(host) -i api.{zone}
\tuse_backend api if host_api
\tdefault_backend web

backend web
\tbalance roundrobin
\tserver web1 web.{zone}:8080 resolvers sins init-addr last,libc,none

backend api
\tserver api1 web.{zone}:8081 resolvers sins init-addr last,libc,none
""".format(zone=zone)


def dns_forwarder_unit():
    """The forwarder the incident found in CT 2017 (one socat child per client address and port)."""
    return """[Unit]
Description=DNS forwarder to SiNS ({dns})
Wants=network-online.target
After=network-online.target

[Service]
ExecStart={command}
Restart=always

[Install]
WantedBy=multi-user.target
""".format(dns=settings.DNS_IP, command=SOCAT_FORWARDER)


def layer_files(ct, authorized_key):
    """``{path: (text, mode)}`` and ``{link: target}`` a CT's layer adds to the cached rootfs."""
    zone = settings.ZONE
    files = {
        "etc/hostname": (ct.hostname + "\n", 0o644),
        "etc/hosts": ("127.0.0.1\tlocalhost\n%s\t%s.%s %s\n\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n" % (ct.ip, ct.hostname, zone, ct.hostname),
                      0o644),
        "etc/machine-id": (uuid.uuid4().hex + "\n", 0o444),
        "root/.ssh/authorized_keys": (authorized_key, 0o600),
    }
    links = {}
    if ct.is_haproxy:
        files["etc/resolv.conf"] = ("search %s\nnameserver 127.0.0.1\n" % zone, 0o644)
        files["etc/haproxy/haproxy.cfg"] = (haproxy_cfg(), 0o644)
        files["etc/systemd/system/dns-forwarder.service"] = (dns_forwarder_unit(), 0o644)
        links["etc/systemd/system/multi-user.target.wants/dns-forwarder.service"] = \
            "/etc/systemd/system/dns-forwarder.service"
        links["etc/systemd/system/multi-user.target.wants/haproxy.service"] = "/lib/systemd/system/haproxy.service"
    else:
        files["etc/resolv.conf"] = ("search %s\nnameserver %s\n" % (zone, settings.DNS_IP), 0o644)
    return files, links


def build_layer(layout, ct, authorized_key):
    """(Re)build the CT's overlay layer: its own files over the cached rootfs, in the as-found state."""
    ct_dir = layout.ct_dir(ct.vmid)
    if ct_dir.exists():
        shutil.rmtree(ct_dir)
    delta = layout.ct_delta(ct.vmid)
    delta.mkdir(parents=True)
    files, links = layer_files(ct, authorized_key)
    for relative, (text, mode) in files.items():
        path = delta / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    (delta / "root" / ".ssh").chmod(0o700)
    (delta / "root").chmod(0o700)
    for relative, target in links.items():
        path = delta / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    (delta / "etc" / "ssh").mkdir(parents=True, exist_ok=True)
    host.run(["ssh-keygen", "-q", "-A", "-f", delta], what="ssh-keygen -A (CT %d host keys)" % ct.vmid)
    for key in (delta / "etc" / "ssh").glob("ssh_host_*.pub"):
        text = key.read_text().split()
        key.write_text("%s %s root@%s\n" % (text[0], text[1], ct.hostname))
    layout.ct_release_file(ct.vmid).write_text(ct.release + "\n")
    layout.ct_built(ct.vmid).write_text("%d\n" % ct.vmid)


def write_pve_conf(layout, ct):
    layout.pve_lxc.mkdir(parents=True, exist_ok=True)
    path = layout.pve_conf(ct.vmid)
    path.write_text(pve_ct_config.render(pveconf.from_declared(ct)))
    return path


def read_pve_conf(layout, vmid):
    path = layout.pve_conf(vmid)
    try:
        return pve_ct_config.parse(path.read_text(), strict=True)
    except FileNotFoundError:
        raise LabError("CT %d has no config %s; labctl up builds it" % (vmid, path)) from None
    except pve_ct_config.ConfigError as error:
        raise LabError("%s: %s; fix the file or run labctl reset %d" % (path, error, vmid)) from None


def lxc_info(layout, vmid):
    """``(state, init pid)`` from lxc-info: state is running, stopped, starting, stopping or frozen."""
    done = host.run(["lxc-info", "-n", vmid, "-P", layout.lxcpath, "-s", "-p"], check=False)
    if done.returncode != 0:
        return "stopped", None
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    pid = fields.get("PID", "").strip()
    return fields.get("State", "STOPPED").strip().lower(), int(pid) if pid.isdigit() else None


def supervisor_pidfile(layout, vmid):
    return layout.pidfile("ct-%d" % vmid)


# -- on a systemd host (a VM node, PVE): CTs run as pve-container@VMID.service, logged by journald ----------

RUNTIME_UNIT = Path("/run/systemd/system/pve-container@.service")
SHIPPED_UNITS = (Path("/lib/systemd/system/pve-container@.service"), Path("/etc/systemd/system/pve-container@.service"))


def uses_systemd():
    """CTs are started by systemd (``pve-container@VMID.service``) on a cgroup v2 host with systemd as PID 1;
    elsewhere (this kind of v1 host without systemd) by the lab's supervisor."""
    return Path("/run/systemd/system").is_dir() and host.cgroup_backend() == "cgroup-v2"


def unit_name(vmid):
    return "pve-container@%d.service" % vmid


def ensure_unit(layout):
    """A node ships pve-container@.service (ExecStart=/usr/bin/lxc-start -F -n %i); another systemd host
    gets the same unit at runtime, with the lab's lxcpath."""
    if any(path.exists() for path in SHIPPED_UNITS):
        return
    from enva_lab import vmimage         # pylint: disable=import-outside-toplevel
    text = vmimage.PVE_CONTAINER_UNIT.replace("-n %i", "-n %%i -P %s" % layout.lxcpath)
    if not RUNTIME_UNIT.exists() or RUNTIME_UNIT.read_text() != text:
        RUNTIME_UNIT.write_text(text)
        host.run(["systemctl", "daemon-reload"])


def unit_main_pid(vmid):
    done = host.run(["systemctl", "show", "-p", "MainPID", "--value", unit_name(vmid)], check=False)
    value = done.stdout.strip()
    return int(value) if value.isdigit() and int(value) else None


def supervised(layout, vmid):
    """The PID that runs the CT as pve-container@VMID (systemd's main PID, or the lab's supervisor), or None."""
    if uses_systemd():
        return unit_main_pid(vmid)
    return procs.running(supervisor_pidfile(layout, vmid))


def journal_records(layout, vmid):
    """The CT's lifecycle records (dicts with MESSAGE, ...): journald's on a systemd host, the lab's file else."""
    if not uses_systemd():
        return journal.read(layout.journal_file(vmid))
    done = host.run(["journalctl", "-u", unit_name(vmid), "-o", "json", "--no-pager"], check=False)
    records = []
    for line in done.stdout.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def journal_text(layout, vmid, style):
    if not uses_systemd():
        return journal.render(journal.read(layout.journal_file(vmid)), style)
    return host.run(["journalctl", "-u", unit_name(vmid), "-o", style, "--no-pager"], check=False).stdout


def ct_release(layout, vmid):
    """The Debian release the CT's layer sits on (as built; bookworm for a layer built before releases were
    declared)."""
    try:
        return settings.release_name(layout.ct_release_file(vmid).read_text().strip())
    except (OSError, ValueError):
        return settings.RELEASE


def write_lxc_config(layout, vmid):
    """Translate the CT's PVE config (read afresh: the PVE API lab may have changed it) to its LXC config."""
    config = read_pve_conf(layout, vmid)
    facts = lxcconf.HostFacts(cpus=host.cpu_count(), memsw=host.has_memsw(),
                              cgroup=2 if host.cgroup_backend() == "cgroup-v2" else 1)
    try:
        release = ct_release(layout, vmid)
        text = lxcconf.render(vmid, config, facts, layout.base_rootfs_of(release), layout.ct_delta(vmid))
    except (KeyError, ValueError) as error:
        raise LabError("%s: %s" % (layout.pve_conf(vmid), error)) from None
    path = layout.lxc_config(vmid)
    # on a VM node the lxcpath is /var/lib/lxc, a link into the lab's directory: make what it points to
    (layout.lxcpath.resolve() / str(vmid)).mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def attach(layout, vmid, argv, timeout=60, check=True):
    """Run a command inside the CT (lxc-attach, a clean environment)."""
    return host.run(["lxc-attach", "-n", vmid, "-P", layout.lxcpath, "--clear-env", "--set-var", ATTACH_PATH,
                     "--"] + list(argv), timeout=timeout, check=check, what="in CT %d: %s" % (vmid, " ".join(argv)))


def _port_open(address, port, timeout=1.0):
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def clear_stale_cgroups(vmid):
    """Remove the empty cgroups a stopped CT left behind (``lxc/VMID``, ``lxc.monitor/VMID`` in every hierarchy).

    LXC will not start a CT whose fixed cgroup (PVE's ``lxc.cgroup.dir.container = lxc/VMID``) is still
    there: lxc-start fails with "Numerical result out of range - Failed to create container cgroup". A
    run that ended badly leaves them (seen after a CI run here); a cgroup that still holds a process is an
    error that names it."""
    for hierarchy in host.v1_hierarchies():
        for parent in ("lxc", "lxc.monitor"):
            for path in host.cgroup_dirs(hierarchy, "%s/%d" % (parent, vmid)):
                try:
                    os.rmdir(path)
                except OSError as error:
                    raise LabError("CT %d is stopped but its cgroup %s is still there (%s; cgroup.procs: %s); "
                                   "end those processes, then start it again" % (
                                       vmid, path, error.strerror,
                                       " ".join(str(pid) for pid in host.cgroup_pids(path)) or "none")) from None


def start(layout, vmid, log=print, timeout=120):
    """Start the CT as ``pve-container@VMID`` would and wait until systemd inside is up and SSH answers.

    Returns the state systemd inside reports (``running``, or ``degraded`` with a warning).
    """
    if not layout.ct_built(vmid).exists():
        raise LabError("CT %d is not built (no %s); run labctl up or labctl reset %d"
                       % (vmid, layout.ct_built(vmid), vmid))
    state, _pid = lxc_info(layout, vmid)
    supervisor = supervised(layout, vmid)
    if state == "running" and supervisor:
        return "running"
    if state != "stopped" and not supervisor:
        raise LabError("CT %d is %s without its supervisor; run labctl stop %d, then labctl start %d"
                       % (vmid, state, vmid, vmid))
    if not supervisor:
        clear_stale_cgroups(vmid)
        write_lxc_config(layout, vmid)
        if uses_systemd():
            ensure_unit(layout)
            Path("/run/pve").mkdir(mode=0o750, exist_ok=True)     # the unit's stderr file lives there
            host.run(["systemctl", "reset-failed", unit_name(vmid)], check=False)
            host.run(["systemctl", "start", unit_name(vmid)], what="systemctl start %s" % unit_name(vmid))
        else:
            procs.spawn(procs.lab_command("_supervise", "--labdir", layout.root, vmid),
                        supervisor_pidfile(layout, vmid), layout.log / ("supervisor-%d.log" % vmid))
    if settings.on_vm_node():
        timeout *= 5                      # TCG: a CT's boot takes minutes there when the host is busy
    deadline = time.monotonic() + timeout
    while lxc_info(layout, vmid)[0] != "running":
        if not supervised(layout, vmid) or time.monotonic() > deadline:
            stderr = Path("/run/pve/ct-%d.stderr" % vmid) if uses_systemd() else layout.ct_stderr(vmid)
            raise LabError("CT %d did not start: %s (see %s)" % (vmid, _last_line(stderr), stderr))
        time.sleep(0.2)
    system_state = "unknown"
    while system_state not in ("running", "degraded") and time.monotonic() < deadline:
        # right after the start systemd may not take requests yet ("Failed to connect to bus"): ask again
        booted = attach(layout, vmid, ["systemctl", "is-system-running", "--wait"],
                        timeout=max(1, deadline - time.monotonic()), check=False)
        system_state = booted.stdout.strip() or "unknown"
        if system_state not in ("running", "degraded"):
            time.sleep(0.2)
    if system_state not in ("running", "degraded"):
        raise LabError("CT %d started but systemd inside is %s; see labctl exec %d -- systemctl --failed"
                       % (vmid, system_state, vmid))
    if system_state == "degraded":
        failed = attach(layout, vmid, ["systemctl", "--failed", "--plain", "--no-legend"], check=False)
        log("warning: CT %d is degraded: %s" % (vmid, " ".join(line.split()[0] for line in
                                                               failed.stdout.splitlines() if line.strip())))
    ip = read_pve_conf(layout, vmid).net(0).get("ip", "").split("/")[0]
    if ip and not _sshd_enabled(layout, vmid):
        ip = ""                           # reached with pct exec only (its sshd disabled): nothing to wait for
    while ip and not _port_open(ip, 22):
        if time.monotonic() > deadline:
            raise LabError("CT %d runs but its SSH (%s:22) does not answer" % (vmid, ip))
        time.sleep(0.2)
    return system_state


def _sshd_enabled(layout, vmid):
    """Whether the CT starts an SSH server (ssh.service or ssh.socket enabled in it)."""
    done = attach(layout, vmid, ["systemctl", "is-enabled", "ssh.service", "ssh.socket"], timeout=60, check=False)
    return "enabled" in done.stdout.split()


def _last_line(path):
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def stop(layout, vmid, timeout=60):
    """Stop the CT (a hard stop, as PVE's status/stop); the supervisor logs it. True when it was running."""
    if uses_systemd():
        was = lxc_info(layout, vmid)[0] != "stopped" or unit_main_pid(vmid) is not None
        host.run(["systemctl", "stop", unit_name(vmid)], check=False, timeout=timeout + 120)
        if lxc_info(layout, vmid)[0] != "stopped":
            host.run(["lxc-stop", "-n", vmid, "-P", layout.lxcpath, "--kill"], check=False, timeout=timeout)
        return was
    pidfile = supervisor_pidfile(layout, vmid)
    entry = procs.read_pidfile(pidfile)
    if procs.alive(entry):
        procs.stop(entry, timeout=timeout)
        pidfile.unlink(missing_ok=True)
        return True
    state, _pid = lxc_info(layout, vmid)
    if state == "stopped":
        return False
    # No supervisor (it was killed): stop the CT and log it as systemd would.
    book = journal.Journal(layout)
    invocation = uuid.uuid4().hex
    book.write(vmid, "stopping", invocation)
    cpu = host.ct_cpu_usec(vmid)
    host.run(["lxc-stop", "-n", vmid, "-P", layout.lxcpath, "--kill"], check=False, timeout=timeout)
    book.write(vmid, "exit", invocation, code="exited", status=0, cpu_usec=cpu, requested=True)
    return True


def supervise(layout, vmid):
    """The supervisor's main loop (``python3 -m enva_lab _supervise VMID``): pve-container@VMID.service."""
    book = journal.Journal(layout)
    invocation = uuid.uuid4().hex
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))
    layout.run.mkdir(parents=True, exist_ok=True)
    book.write(vmid, "start", invocation)
    with open(layout.ct_stderr(vmid), "ab") as stderr:
        child = subprocess.Popen(["lxc-start", "-F", "-n", str(vmid), "-P", str(layout.lxcpath)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    cpu = 0
    stopping_since = None
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == child.pid:
            break
        cpu = host.ct_cpu_usec(vmid) or cpu
        if stop_requested and stopping_since is None:
            stopping_since = time.monotonic()
            book.write(vmid, "stopping", invocation)
            subprocess.run(["lxc-stop", "-n", str(vmid), "-P", str(layout.lxcpath), "--kill"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
        elif stopping_since is not None and time.monotonic() - stopping_since > 120:
            child.kill()                  # systemd's TimeoutStopSec=120s, then SIGKILL
        time.sleep(0.2)
    child.returncode = 0                  # reaped by wait4 above
    code, status = journal.wait_status(status)
    cpu_usec = cpu + int((usage.ru_utime + usage.ru_stime) * 1e6)
    book.write(vmid, "exit", invocation, code=code, status=status, cpu_usec=cpu_usec, requested=bool(stop_requested))
    supervisor_pidfile(layout, vmid).unlink(missing_ok=True)


def status(layout, vmid):
    """One CT's state for ``labctl status``: config, state, memory counters, processes."""
    try:
        config = read_pve_conf(layout, vmid)
    except LabError:
        config = None
    state, init_pid = lxc_info(layout, vmid)
    commands = host.ct_processes(vmid) if state == "running" else {}
    return {
        "vmid": vmid,
        "hostname": config.settings.get("hostname") if config else None,
        "ip": (config.net(0).get("ip", "").split("/")[0] or None) if config else None,
        "state": state,
        "init_pid": init_pid,
        "supervisor_pid": supervised(layout, vmid),
        "config": {"memory_mb": config.size_mib("memory"), "swap_mb": config.size_mib("swap"),
                   "cores": config.int("cores", 1), "onboot": config.settings.get("onboot") == "1"}
        if config else None,
        "memory": host.ct_memory(vmid),
        "processes": sum(commands.values()),
        "socat": commands.get("socat", 0),
    }
