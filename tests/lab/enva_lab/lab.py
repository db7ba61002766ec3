"""``labctl up``, ``down``, ``reset``, ``status``, ``flood`` and ``reproduce``: the lab as a whole.

``up`` is idempotent and repairs: every step looks at what is there (the bridge and its
addresses, the daemons' PID files, each CT's layer, config and state) and does only what is
missing, so an ``up`` after a failed ``up`` finishes the job. ``down`` plans from what it finds
(:mod:`enva_lab.cleanup`) and checks afterwards that nothing of the lab is left.
"""

import fcntl
import json
import os
import re
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB

from enva_lab import ct, declared, dns, host, kmsg, procs, rootfs, settings
from enva_lab.errors import LabError
from enva_lab.incident import IncidentMixin
from enva_lab.teardown import TeardownMixin
from enva_lab.settings import Layout

STATE_VERSION = 1
_TASK_ROW = re.compile(r"kernel: \[\s*\d+\]\s")      # a row of the OOM report's task dump


def _mib(value):
    return "?" if value is None else "%.1f MiB" % (value / MIB)


class Lab(IncidentMixin, TeardownMixin):
    """The lab on this host; ``out`` prints progress (one line at a time)."""

    def __init__(self, layout=None, out=print):
        self.layout = layout or Layout()
        self.out = out
        self._lock = None

    # -- shared checks -------------------------------------------------------------------------

    def preflight(self):
        """The faults ``labctl`` names before it touches anything."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it makes a bridge, containers and cgroups); run it as root, "
                           "e.g. sudo tests/lab/labctl %s" % " ".join(sys.argv[1:2]))
        for tool, package in (("lxc-start", "lxc"), ("unbound", "unbound"), ("ip", "iproute2"),
                              ("ssh-keygen", "openssh-client"), ("debootstrap", "debootstrap")):
            if not shutil.which(tool):
                raise LabError("%s is not installed (Debian package %s); run make setup, which installs "
                               "tools/debian-packages.txt" % (tool, package))
        if host.cgroup_backend() is None:
            raise LabError("no memory controller: neither cgroup v1 at %s nor cgroup v2 with memory in %s/"
                           "cgroup.controllers; the lab needs one to limit and OOM-kill CTs"
                           % (host.MEMORY_V1, settings.CGROUP_ROOT))
        if not os.path.exists("/dev/kmsg"):
            raise LabError("/dev/kmsg is missing, so the kernel log cannot be followed")

    def lock(self):
        """Serialise the commands that change the lab (one ``labctl`` at a time)."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.layout.root / "lock", "a+")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError("another labctl has held the lab's lock for 10 minutes (%s)"
                                   % (self.layout.root / "lock")) from None
                time.sleep(0.5)
        self._lock = handle

    def load_state(self):
        try:
            return json.loads(self.layout.state.read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, state):
        tmp = self.layout.state.with_suffix(".new")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.layout.state)

    def require_up(self):
        if not self.layout.state.exists():
            raise LabError("the lab is not up (no %s); run tests/lab/labctl up" % self.layout.state)

    def known_vmids(self):
        """Every VMID the lab has a config or a layer for."""
        vmids = set()
        for directory, pattern in ((self.layout.pve_lxc, "*.conf"), (self.layout.root / "ct", "*")):
            if directory.is_dir():
                vmids.update(int(path.name.split(".")[0]) for path in directory.glob(pattern)
                             if path.name.split(".")[0].isdigit())
        return sorted(vmids)

    def require_ct(self, vmid):
        if not self.layout.pve_conf(vmid).exists():
            known = ", ".join(map(str, self.known_vmids())) or "none"
            raise LabError("CT %d is not in the lab (its CTs: %s); labctl up --cts N adds ordinary CTs"
                           % (vmid, known))

    # -- up ------------------------------------------------------------------------------------

    def up(self, ordinary=0, only=None, pve=None):
        """Build the lab (or repair it); returns the timings. ``only``: exactly these declared VMIDs; ``pve``: the
        release the API lab answers as (8 or 9; None: $ENVA_LAB_PVE or 9)."""
        started = time.monotonic()
        self.preflight()
        self.lock()
        state = self.load_state()
        if not state:
            state = self._first_state()
        self.save_state(state)
        self._check_conflicts(state)
        self._pid_max(state)
        self._bridge(state)
        self.save_state(state)
        self._kernel_log()
        self._pct()
        cts, generated = self._declared(ordinary, only)
        self._dns()
        self._ssh_key()
        build_seconds = 0.0
        for release in sorted({item.release for item in cts}, key=lambda name: settings.RELEASES[name]):
            seconds = rootfs.build(self.layout, self.out, release)
            if seconds:
                self.out("rootfs: Debian %s built in %.0f s (%s)" % (
                    release, seconds, self.layout.base_rootfs_of(release)))
            build_seconds += seconds
        built = [item.vmid for item in cts if self._ct(item)]
        self._known_hosts(cts)
        for item in cts:
            if item.onboot or item.is_haproxy:
                self._ensure_running(item.vmid)
            else:
                self.out("CT %d %s: built, not started (onboot: 0; labctl start %d)"
                         % (item.vmid, item.hostname, item.vmid))
        if settings.HAPROXY_VMID in built:
            self.check_as_found(settings.HAPROXY_VMID)
        elif any(item.is_haproxy for item in cts):
            try:
                self.check_as_found(settings.HAPROXY_VMID)
            except LabError as error:       # changed since it was built (a playbook's work): up leaves it so
                self.out("note: %s" % error)
        self._api(pve)
        state["cts"] = sorted(set(state.get("cts", [])) | {item.vmid for item in cts})
        seconds = time.monotonic() - started
        state.setdefault("up_seconds", []).append(round(seconds, 1))
        self.save_state(state)
        if generated:
            self.out("declared: added %s to %s" % (", ".join(str(item.vmid) for item in generated),
                                                   self.layout.declared))
        self.out("up: the lab is up in %.1f s (CTs %s; labctl status)" % (seconds, ", ".join(
            str(item.vmid) for item in cts)))
        return {"seconds": seconds, "rootfs_build_seconds": build_seconds}

    def _first_state(self):
        """What the host had before the lab, for ``down`` to leave it so."""
        parents = []
        for hierarchy in host.v1_hierarchies():
            for parent in settings.LXC_CGROUP_PARENTS:
                if (hierarchy / parent).is_dir():
                    parents.append(str((hierarchy / parent).relative_to(settings.CGROUP_ROOT)))
        return {"version": STATE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "cgroup_parents_before": parents, "sysctl_before": {}, "bridge_created": False, "cts": []}

    def _check_conflicts(self, state):
        links = host.links()
        bridge = links.get(settings.BRIDGE)
        if bridge is not None and bridge.get("ifalias") != settings.BRIDGE_ALIAS and not state.get("bridge_created"):
            raise LabError("%s exists and is not the lab's (no alias %s); remove it (ip link del %s) or run the "
                           "lab on a host without it" % (settings.BRIDGE, settings.BRIDGE_ALIAS, settings.BRIDGE))
        for name, address in host.addresses():
            ip = address.split("/")[0]
            if name != settings.BRIDGE and ip.startswith(settings.SUBNET.rsplit(".", 1)[0] + "."):
                raise LabError("%s is already on %s, inside the lab's subnet %s; remove it (ip addr del %s dev %s)"
                               % (address, name, settings.SUBNET, address, name))

    @staticmethod
    def _port_free(kind, address, port, what):
        probe = socket.socket(socket.AF_INET, kind)
        # As the servers themselves bind (SO_REUSEADDR): connections of a server that just stopped, left
        # in TIME_WAIT, do not make the port "in use"; only a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
            if kind == socket.SOCK_STREAM:
                probe.listen(1)
        except OSError as error:
            if error.errno == 98:
                raise LabError("%s:%d is in use by another process, so %s cannot listen there; find it with "
                               "ss -lnp 'sport = :%d' and stop it" % (address, port, what, port)) from None
        finally:
            probe.close()

    def _pid_max(self, state):
        """PVE nodes run with kernel.pid_max=4194304 (systemd's 50-pid-max.conf); with the kernel's 32768
        a CT's systemd caps the forwarder's unit at 4,915 tasks, before 1 GiB of socat is reached."""
        current = host.sysctl_read("kernel.pid_max")
        if current is not None and current < settings.PVE_PID_MAX:
            state["sysctl_before"].setdefault("kernel.pid_max", current)
            host.sysctl_write("kernel.pid_max", settings.PVE_PID_MAX)
            self.out("host: kernel.pid_max %d -> %d, as on a PVE node (down restores it)"
                     % (current, settings.PVE_PID_MAX))

    def _bridge(self, state):
        links = host.links()
        if settings.BRIDGE not in links:
            host.run(["ip", "link", "add", settings.BRIDGE, "type", "bridge"])
            state["bridge_created"] = True
            self.out("bridge: %s created" % settings.BRIDGE)
        host.run(["ip", "link", "set", "dev", settings.BRIDGE, "alias", settings.BRIDGE_ALIAS])
        disable_ipv6 = Path("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % settings.BRIDGE)
        if disable_ipv6.exists():
            disable_ipv6.write_text("1\n")
        have = {address for name, address in host.addresses() if name == settings.BRIDGE}
        for address in ("%s/%d" % (settings.HOST_IP, settings.PREFIX), "%s/32" % settings.DNS_IP):
            if address not in have:
                host.run(["ip", "addr", "add", address, "dev", settings.BRIDGE])
        host.run(["ip", "link", "set", "dev", settings.BRIDGE, "up"])
        if host.sysctl_read("net.ipv4.ip_forward") == 1:
            self.out("warning: net.ipv4.ip_forward is 1, so the host would route CT traffic off the lab bridge")

    def _pct(self):
        """On a VM node, /usr/sbin/pct (where PVE has it) runs the lab's subset of PVE's pct (enva_lab.pct)
        straight with python3 and the lab's path (not through labctl: a pct exec per Ansible task)."""
        if not settings.on_vm_node():
            return
        script = ("#!/bin/sh\n# pct: the enva lab's subset of PVE's pct (%s), written by labctl up\n"
                  "PYTHONPATH=%s exec /usr/bin/python3 -m enva_lab.pct \"$@\"\n"
                  % (settings.CHECKOUT / "tests" / "lab" / "enva_lab" / "pct.py", os.environ.get("PYTHONPATH", "")))
        target = Path("/usr/sbin/pct")
        if target.is_symlink() or not target.exists() or target.read_text() != script:
            target.unlink(missing_ok=True)
            target.write_text(script)
            target.chmod(0o755)

    def _kernel_log(self):
        pidfile = self.layout.pidfile("kmsg")
        if procs.running(pidfile):
            return
        self.layout.log.mkdir(parents=True, exist_ok=True)
        self.layout.kern_log.touch()
        procs.spawn(procs.lab_command("_kmsg", "--labdir", self.layout.root), pidfile,
                    self.layout.log / "kmsg-follower.log")
        self.out("kernel log: following /dev/kmsg into %s" % self.layout.kern_log)

    def _declared(self, ordinary, only=None):
        """The CTs to run, from the lab's copy of the declared file (made from the sample when absent)."""
        if not 0 <= ordinary <= len(settings.ORDINARY_VMIDS):
            raise LabError("--cts must be between 0 and %d" % len(settings.ORDINARY_VMIDS))
        copy = self.layout.declared
        if not copy.exists():
            shutil.copyfile(settings.SAMPLE, copy)
            self.out("declared: %s copied from %s" % (copy, settings.SAMPLE))
        text = copy.read_text()
        try:
            cts, generated = declared.plan_lab_cts(declared.read_text(text, str(copy)), ordinary, only)
            if generated:
                copy.write_text(declared.append_entries(text, generated, str(copy)))
        except declared.DeclaredFileError as error:
            raise LabError("%s (fix it, or delete it and labctl up copies the sample again)" % error) from None
        for item in cts:
            if item.release_note:
                self.out("declared: %s" % item.release_note)
        return cts, generated

    def all_declared(self):
        try:
            return declared.read_text(self.layout.declared.read_text(), str(self.layout.declared))
        except (OSError, declared.DeclaredFileError):
            return []

    def _dns(self):
        # unbound's files sit where its AppArmor profile allows them, <labdir>/dns links there (enva_lab.dns)
        directory = self.layout.dns
        dns.link_unbound_dir(directory, self.layout.root)
        conf = directory / "unbound.conf"
        text = dns.unbound_conf(self.all_declared(), directory, directory / "unbound.log", directory / "unbound.ctl")
        pidfile = self.layout.pidfile("unbound")
        if procs.running(pidfile) and conf.exists() and conf.read_text() == text:
            return
        procs.stop_pidfile(pidfile)
        self._port_free(socket.SOCK_DGRAM, settings.DNS_IP, settings.DNS_PORT, "the SiNS stand-in (unbound)")
        conf.write_text(text)
        host.run(["unbound-checkconf", conf], what="unbound-checkconf %s" % conf)
        procs.spawn(["unbound", "-d", "-p", "-c", conf], pidfile, self.layout.log / "unbound.out")
        server = (settings.DNS_IP, settings.DNS_PORT)
        deadline = time.monotonic() + 15
        answer = None
        while answer is None:
            if not procs.running(pidfile) or time.monotonic() > deadline:
                raise LabError("unbound did not start on %s:%d; see %s, %s%s" % (
                    server + (directory / "unbound.log", self.layout.log / "unbound.out", dns.denials_hint())))
            answer = dns.query(server, "sins." + settings.ZONE, timeout=0.5)
        self.check_dns()
        self.out("dns: unbound answers for %s on %s:%d (and refuses everything else)"
                 % (settings.ZONE, settings.DNS_IP, settings.DNS_PORT))

    def check_dns(self):
        """What the SiNS stand-in must do: answer the zone, refuse the rest, truncate the big RRset over
        UDP and serve it over TCP, and never recurse. LabError otherwise."""
        server = (settings.DNS_IP, settings.DNS_PORT)
        checks = [
            (("sins." + settings.ZONE, "A", False), lambda a: a.rcode_name == "NOERROR" and a.answers == 1),
            (("www.example.com", "A", False), lambda a: a.rcode_name == "REFUSED"),
            ((dns.BIG_TXT_NAME, "TXT", False), lambda a: a.truncated),
            ((dns.BIG_TXT_NAME, "TXT", True), lambda a: a.answers == dns.BIG_TXT_PARTS and not a.truncated),
        ]
        for (name, qtype, tcp), good in checks:
            answer = dns.query(server, name, qtype, timeout=2, tcp=tcp)
            if answer is None or not good(answer):
                raise LabError("unbound answered %s %s over %s wrongly (%s); see %s"
                               % (name, qtype, "TCP" if tcp else "UDP",
                                  "no answer" if answer is None else "%s, %d answers, TC=%s"
                                  % (answer.rcode_name, answer.answers, answer.truncated),
                                  self.layout.dns / "unbound.conf"))
        counters = self.dns_counters()
        if counters.get("total.num.recursivereplies") or counters.get("total.requestlist.max"):
            raise LabError("unbound recursed (%s): it must only answer the lab zone; see %s"
                           % (counters, self.layout.dns / "unbound.conf"))
        return counters

    def dns_counters(self):
        done = host.run(["unbound-control", "-c", self.layout.dns / "unbound.conf", "stats_noreset"], check=False)
        return dns.recursion_counters(done.stdout) if done.returncode == 0 else {}

    def _ssh_key(self):
        key = self.layout.ssh_key
        if key.exists() and key.with_suffix(".pub").exists():
            return
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        for path in (key, key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "enva-lab", "-f", key])

    def _ct(self, item):
        """Make sure a CT has its PVE config and its layer (the config is kept: the API lab may have changed it).
        True when the layer was (re)built now."""
        if not self.layout.pve_conf(item.vmid).exists():
            ct.write_pve_conf(self.layout, item)
            self.out("CT %d %s: config %s" % (item.vmid, item.hostname, self.layout.pve_conf(item.vmid)))
        built = self.layout.ct_built(item.vmid).exists()
        if built and ct.ct_release(self.layout, item.vmid) != item.release:
            self.out("CT %d %s: declared on Debian %s, built on %s: building it again" % (
                item.vmid, item.hostname, item.release, ct.ct_release(self.layout, item.vmid)))
            built = False
        if not built:
            if ct.lxc_info(self.layout, item.vmid)[0] != "stopped":
                ct.stop(self.layout, item.vmid)
            ct.build_layer(self.layout, item, self.layout.ssh_key.with_suffix(".pub").read_text())
            self.out("CT %d %s: built over the cached Debian %s (%s) rootfs" % (
                item.vmid, item.hostname, settings.RELEASES[item.release], item.release))
            return True
        return False

    def _known_hosts(self, cts):
        """``<labdir>/ssh/known_hosts`` and ``ssh_config`` so that ssh and Ansible reach the CTs as root."""
        lines = []
        for item in sorted(cts, key=lambda entry: entry.vmid):
            for key in sorted((self.layout.ct_delta(item.vmid) / "etc" / "ssh").glob("ssh_host_*_key.pub")):
                kind, blob = key.read_text().split()[:2]
                lines.append("%s,%s.%s %s %s\n" % (item.ip, item.hostname, settings.ZONE, kind, blob))
        (self.layout.ssh / "known_hosts").write_text("".join(lines))
        (self.layout.ssh / "ssh_config").write_text(
            "# ssh -F %s root@10.217.0.17\nHost 10.217.0.* *.%s\n    User root\n    IdentityFile %s\n"
            "    IdentitiesOnly yes\n    UserKnownHostsFile %s\n    StrictHostKeyChecking yes\n"
            % (self.layout.ssh / "ssh_config", settings.ZONE, self.layout.ssh_key, self.layout.ssh / "known_hosts"))

    def _ensure_running(self, vmid):
        state, _pid = ct.lxc_info(self.layout, vmid)
        supervised = ct.supervised(self.layout, vmid)
        if state == "running" and supervised:
            return
        if state != "stopped" and not supervised:
            self.out("CT %d: %s without its supervisor; stopping it to start it properly" % (vmid, state))
            ct.stop(self.layout, vmid)
        started = time.monotonic()
        system = ct.start(self.layout, vmid, log=self.out)
        self.out("CT %d: started in %.1f s (systemd: %s)" % (vmid, time.monotonic() - started, system))

    def check_as_found(self, vmid):
        """CT 2017 as the incident found it: the socat forwarder enabled and running, haproxy's config valid."""
        if ct.lxc_info(self.layout, vmid)[0] != "running":
            raise LabError("CT %d is not running; labctl start %d (or labctl reset %d)" % (vmid, vmid, vmid))
        for unit in ("dns-forwarder.service", "haproxy.service", "rsyslog.service"):
            active = ct.attach(self.layout, vmid, ["systemctl", "is-active", unit], check=False).stdout.strip()
            if active != "active":
                raise LabError("CT %d: %s is %s, not active; labctl reset %d puts it back as found"
                               % (vmid, unit, active or "missing", vmid))
        ct.attach(self.layout, vmid, ["haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg"])

    def _api(self, pve=None):
        pidfile = self.layout.pidfile("api")
        address, port = settings.API_LISTEN.rsplit(":", 1)
        running = procs.running(pidfile)
        argv = procs.cmdline(running) if running else []
        release = ["--pve", str(pve)] if pve else []
        if running and (argv[1:3] != ["-m", settings.PVE_API_MODULE]
                        or procs.import_path()[0] not in procs.environ_path(running)):
            # Started by another checkout's labctl (or an older layout): this checkout's server replaces it.
            self.out("api: replacing pid %d (%s), started from another checkout" % (running, " ".join(argv[:3])))
            procs.stop_pidfile(pidfile)
        elif running and release and argv[-2:] != release:
            self.out("api: replacing pid %d to answer as PVE %d" % (running, pve))
            procs.stop_pidfile(pidfile)
        if not procs.running(pidfile):
            self._port_free(socket.SOCK_STREAM, address, int(port), "the PVE API lab")
            procs.spawn([sys.executable, "-m", settings.PVE_API_MODULE, "serve", "--labdir", self.layout.root,
                         "--listen", settings.API_LISTEN, "--node", settings.NODE] + release, pidfile,
                        self.layout.log / "pve_api.log")
        deadline = time.monotonic() + 60
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        while True:
            try:
                with socket.create_connection((address, int(port)), timeout=2) as raw:
                    with context.wrap_socket(raw):
                        break
            except (OSError, ssl.SSLError):
                if not procs.running(pidfile) or time.monotonic() > deadline:
                    raise LabError("the PVE API lab did not accept TLS on %s: %s (see %s)" % (
                        settings.API_LISTEN, ct._last_line(self.layout.log / "pve_api.log"),
                        self.layout.log / "pve_api.log")) from None
                time.sleep(0.2)
        self.out("api: https://%s/api2/json (pid %d)" % (settings.API_LISTEN, procs.running(pidfile)))

    # -- one CT ----------------------------------------------------------------------------------

    def start(self, vmid):
        self.preflight()
        self.require_ct(vmid)
        self.lock()
        self._ensure_running(vmid)

    def stop(self, vmid):
        self.preflight()
        self.require_ct(vmid)
        self.lock()
        if ct.stop(self.layout, vmid):
            self.out("CT %d: stopped" % vmid)
        else:
            self.out("CT %d: already stopped" % vmid)

    def reset(self, vmid, release=None):
        """Rebuild one CT from the cache in its declared as-found state, its config back to the sample's values;
        ``release``: on that Debian release's rootfs instead of the declared one (``labctl up`` and the next reset
        put the declared one back)."""
        if release:
            try:
                release = settings.release_name(release, "--release")
            except ValueError as error:
                raise LabError(str(error)) from None
        self.preflight()
        self.require_up()
        self.lock()
        sample = declared.read_text(settings.SAMPLE.read_text(), str(settings.SAMPLE))
        entry = next((item for item in sample if item.vmid == vmid), None)
        copy_text = self.layout.declared.read_text()
        if entry is None:
            entry = next((item for item in declared.read_text(copy_text, str(self.layout.declared))
                          if item.vmid == vmid), None)
        if entry is None:
            raise LabError("CT %d is declared neither in %s nor in %s" % (vmid, settings.SAMPLE, self.layout.declared))
        restored = declared.restore_entry(copy_text, settings.SAMPLE.read_text(), vmid)
        if restored != copy_text:
            self.layout.declared.write_text(restored)
            self.out("declared: CT %d's entry in %s restored from the sample" % (vmid, self.layout.declared))
        if ct.stop(self.layout, vmid):
            self.out("CT %d: stopped" % vmid)
        if release and release != entry.release:
            self.out("CT %d: on Debian %s (%s) this time; declared %s" % (
                vmid, settings.RELEASES[release], release, entry.release))
            entry.release = release
        seconds = rootfs.build(self.layout, self.out, entry.release)
        if seconds:
            self.out("rootfs: Debian %s built in %.0f s" % (entry.release, seconds))
        ct.write_pve_conf(self.layout, entry)
        ct.build_layer(self.layout, entry, self.layout.ssh_key.with_suffix(".pub").read_text())
        self._known_hosts([item for item in self.all_declared() if self.layout.ct_built(item.vmid).exists()])
        self._ensure_running(vmid)
        if entry.is_haproxy:
            self.check_as_found(vmid)
        self.out("CT %d: reset to its declared as-found state (Debian %s)" % (vmid, entry.release))

    # -- status --------------------------------------------------------------------------------

    def status(self):
        """The lab's state as a dict (``labctl status --json``)."""
        self.preflight()
        links = host.links()
        bridge = links.get(settings.BRIDGE)
        return {
            "labdir": str(self.layout.root),
            "up": self.layout.state.exists(),
            "node": settings.NODE,
            "backend": {"cgroup": host.cgroup_backend(), "supervisor": "systemd (pve-container@VMID)"
                        if ct.uses_systemd() else "labctl _supervise", "vm_node": settings.on_vm_node()},
            "bridge": {"name": settings.BRIDGE, "exists": bridge is not None,
                       "state": bridge.get("operstate") if bridge else None,
                       "addresses": [address for name, address in host.addresses() if name == settings.BRIDGE]},
            "dns": {"address": "%s:%d" % (settings.DNS_IP, settings.DNS_PORT), "zone": settings.ZONE,
                    "pid": procs.running(self.layout.pidfile("unbound")),
                    "counters": self.dns_counters() if procs.running(self.layout.pidfile("unbound")) else {}},
            "api": {"url": "https://%s/api2/json" % settings.API_LISTEN, "pid": procs.running(self.layout.pidfile("api"))},
            "kernel_log": {"path": str(self.layout.kern_log), "pid": procs.running(self.layout.pidfile("kmsg"))},
            "journal": str(self.layout.journal),
            "declared": str(self.layout.declared),
            "ssh_key": str(self.layout.ssh_key),
            "cts": [ct.status(self.layout, vmid) for vmid in self.known_vmids()],
        }

    # -- flood and reproduce ---------------------------------------------------------------------

    def journal_text(self, vmid, style):
        return ct.journal_text(self.layout, vmid, style)

    def exec(self, vmid, argv):
        """Replace this process by ``lxc-attach`` into the CT (stdin, stdout and exit status pass through)."""
        self.preflight()
        self.require_ct(vmid)
        if ct.lxc_info(self.layout, vmid)[0] != "running":
            raise LabError("CT %d is not running; labctl start %d" % (vmid, vmid))
        command = ["lxc-attach", "-n", str(vmid), "-P", str(self.layout.lxcpath), "--clear-env", "--set-var",
                   ct.ATTACH_PATH, "--"] + list(argv or ["/bin/bash", "-l"])
        sys.stdout.flush()
        os.execvp(command[0], command)


def supervise_main(labdir, vmid):
    ct.supervise(Layout(root=labdir), vmid)


def kmsg_main(labdir):
    layout = Layout(root=labdir)
    kmsg.follow(str(layout.kern_log), str(layout.run / "kmsg.seq"))
