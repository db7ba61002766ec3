"""``labctl up``, ``down``, ``reset``, ``status``, ``flood`` and ``reproduce``: the lab as a whole.

``up`` is idempotent and repairs: every step looks at what is there (the bridge and its
addresses, the daemons' PID files, each CT's layer, config and state) and does only what is
missing, so an ``up`` after a failed ``up`` finishes the job. ``down`` plans from what it finds
(:mod:`enva_lab.cleanup`) and checks afterwards that nothing of the lab is left.
"""

import datetime
import fcntl
import json
import os
import re
import resource
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

from enva_lab import cgroup2, cleanup, ct, declared, dns, flood, host, journal, kmsg, procs, rootfs, settings
from enva_lab.errors import LabError
from enva_lab.settings import Layout

MIB = 1024 * 1024
STATE_VERSION = 1
_TASK_ROW = re.compile(r"kernel: \[\s*\d+\]\s")      # a row of the OOM report's task dump


def _mib(value):
    return "?" if value is None else "%.1f MiB" % (value / MIB)


class Lab:
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

    def up(self, ordinary=0):
        """Build the lab (or repair it); returns the timings."""
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
        cts, generated = self._declared(ordinary)
        self._dns()
        self._ssh_key()
        build_seconds = rootfs.build(self.layout, self.out)
        if build_seconds:
            self.out("rootfs: built in %.0f s (%s)" % (build_seconds, self.layout.base_rootfs))
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
        else:
            try:
                self.check_as_found(settings.HAPROXY_VMID)
            except LabError as error:       # changed since it was built (a playbook's work): up leaves it so
                self.out("note: %s" % error)
        self._api()
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
        try:
            probe.bind((address, port))
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

    def _kernel_log(self):
        pidfile = self.layout.pidfile("kmsg")
        if procs.running(pidfile):
            return
        self.layout.log.mkdir(parents=True, exist_ok=True)
        self.layout.kern_log.touch()
        procs.spawn(procs.lab_command("_kmsg", "--labdir", self.layout.root), pidfile,
                    self.layout.log / "kmsg-follower.log")
        self.out("kernel log: following /dev/kmsg into %s" % self.layout.kern_log)

    def _declared(self, ordinary):
        """The CTs to run, from the lab's copy of the declared file (made from the sample when absent)."""
        if not 0 <= ordinary <= len(settings.ORDINARY_VMIDS):
            raise LabError("--cts must be between 0 and %d" % len(settings.ORDINARY_VMIDS))
        copy = self.layout.declared
        if not copy.exists():
            shutil.copyfile(settings.SAMPLE, copy)
            self.out("declared: %s copied from %s" % (copy, settings.SAMPLE))
        text = copy.read_text()
        try:
            cts, generated = declared.plan_lab_cts(declared.read_text(text, str(copy)), ordinary)
            if generated:
                copy.write_text(declared.append_entries(text, generated, str(copy)))
        except declared.DeclaredError as error:
            raise LabError("%s (fix it, or delete it and labctl up copies the sample again)" % error) from None
        return cts, generated

    def all_declared(self):
        try:
            return declared.read_text(self.layout.declared.read_text(), str(self.layout.declared))
        except (OSError, declared.DeclaredError):
            return []

    def _dns(self):
        directory = self.layout.dns
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "unbound.conf"
        text = dns.unbound_conf(self.all_declared(), directory, self.layout.log / "unbound.log",
                                directory / "unbound.ctl")
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
                raise LabError("unbound did not start on %s:%d; see %s" % (server + (self.layout.log / "unbound.log",)))
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
        if not self.layout.ct_built(item.vmid).exists():
            if ct.lxc_info(self.layout, item.vmid)[0] != "stopped":
                ct.stop(self.layout, item.vmid)
            ct.build_layer(self.layout, item, self.layout.ssh_key.with_suffix(".pub").read_text())
            self.out("CT %d %s: built over the cached rootfs" % (item.vmid, item.hostname))
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

    def _api(self):
        script = settings.PVE_API_SCRIPT
        pidfile = self.layout.pidfile("api")
        if not script.exists():
            self.out("api: %s is not there yet; no PVE API lab" % script)
            return
        address, port = settings.API_LISTEN.rsplit(":", 1)
        if not procs.running(pidfile):
            self._port_free(socket.SOCK_STREAM, address, int(port), "the PVE API lab")
            procs.spawn([sys.executable, script, "serve", "--labdir", self.layout.root, "--listen",
                         settings.API_LISTEN], pidfile, self.layout.log / "pve_api.log")
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

    def reset(self, vmid):
        """Rebuild one CT from the cache in its declared as-found state, its config back to the sample's values."""
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
        ct.write_pve_conf(self.layout, entry)
        ct.build_layer(self.layout, entry, self.layout.ssh_key.with_suffix(".pub").read_text())
        self._known_hosts([item for item in self.all_declared() if self.layout.ct_built(item.vmid).exists()])
        self._ensure_running(vmid)
        if entry.is_haproxy:
            self.check_as_found(vmid)
        self.out("CT %d: reset to its declared as-found state" % vmid)

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

    def flood(self, vmid, qps, seconds, max_open=4096, stop_on_oom=False, stop_on_stall=None):
        """Flood a CT's port 53 from fresh sockets; prints progress each second; returns the summary.

        With ``stop_on_oom`` it stops at the first OOM kill (or the CT going down); with ``stop_on_stall``
        (seconds, cgroup v2) also once the CT has been stuck at memory.high that long."""
        self.preflight()
        self.require_ct(vmid)
        max_open = _room_for_sockets(max_open)
        ip = ct.status(self.layout, vmid)["ip"]
        baseline = host.ct_memory(vmid) or {}
        samples = []

        def tick(elapsed, stats, open_sockets):
            memory = host.ct_memory(vmid)
            commands = host.ct_processes(vmid) if memory else {}
            sample = {"t": round(elapsed, 1), "sent": stats.sent, "answered": stats.answered, "lost": stats.lost,
                      "open": open_sockets, "usage_bytes": memory and memory["usage_bytes"],
                      "oom_kill": memory and memory["oom_kill"], "socat": commands.get("socat", 0),
                      "state": "running" if memory else "down"}
            v2 = ""
            if memory and "events" in memory:       # cgroup v2: the stall at memory.high shows here first
                sample.update(high=memory["events"].get("high", 0), max=memory["events"].get("max", 0),
                              psi_some10=memory["pressure"].get("some", {}).get("avg10"),
                              psi_full10=memory["pressure"].get("full", {}).get("avg10"))
                v2 = ", events high %d max %d, PSI full %s%%" % (sample["high"], sample["max"], sample["psi_full10"])
            samples.append(sample)
            self.out("%5.1fs  sent %6d  answered %6d  lost %6d  open %5d  CT %d: %s of %s, %d socat, "
                     "%s OOM kills%s" % (elapsed, stats.sent, stats.answered, stats.lost, open_sockets, vmid,
                                         _mib(sample["usage_bytes"]), _mib(memory and memory["limit_bytes"]),
                                         sample["socat"], "?" if not memory else memory["oom_kill"], v2))

        def oom_seen():
            last = samples[-1] if samples else {}
            return last.get("state") == "down" or (last.get("oom_kill") or 0) > (baseline.get("oom_kill") or 0)

        def stop():
            if oom_seen():
                return True
            return bool(stop_on_stall) and cgroup2.stall_seconds(samples) >= stop_on_stall

        try:
            stats, elapsed = flood.run(ip, qps, seconds, max_open=max_open, on_tick=tick,
                                       stop_when=stop if stop_on_oom else None)
        except ValueError as error:
            raise LabError(str(error)) from None
        usages = [sample["usage_bytes"] for sample in samples if sample["usage_bytes"]]
        summary = {"vmid": vmid, "target": "%s:%d" % (ip, settings.DNS_PORT), "qps": qps, "seconds": seconds,
                   "elapsed": round(elapsed, 2), "achieved_qps": round(stats.sent / elapsed, 1) if elapsed else 0,
                   "memory_before_bytes": baseline.get("usage_bytes"), "memory_max_seen_bytes": max(usages or [0]),
                   "samples": samples}
        summary.update(stats.as_dict())
        return summary

    def reproduce(self, qps, max_seconds, down_wait=60, stall_hold=None):
        """Flood CT 2017 as found until the kernel OOM-kills inside /lxc/2017 (or, on cgroup v2, until it has
        been stuck at memory.high for ``stall_hold`` seconds with no answer); report what happened."""
        vmid = settings.HAPROXY_VMID
        self.preflight()
        self.require_up()
        self.check_as_found(vmid)
        if not procs.running(self.layout.pidfile("kmsg")):
            raise LabError("the kernel log follower is not running, so the OOM would go unseen; run labctl up")
        kern_offset = self.layout.kern_log.stat().st_size if self.layout.kern_log.exists() else 0
        journal_before = len(ct.journal_records(self.layout, vmid))
        before = host.ct_memory(vmid)
        self.out("reproduce: CT %d as found (socat forwarder), limit %s, %s used; flooding at %d q/s from fresh "
                 "source ports, for at most %d s" % (vmid, _mib(before["limit_bytes"]), _mib(before["usage_bytes"]),
                                                     qps, max_seconds))
        started = time.time()
        summary = self.flood(vmid, qps, max_seconds, stop_on_oom=True, stop_on_stall=stall_hold)
        oom_lines = self._wait_kernel_lines(kern_offset, r"oom_memcg=/lxc/%d(?![\w])" % vmid, 10)   # the first report's kill
        seconds_to_oom = round(kernel_epoch(oom_lines[0]) - started, 1) if oom_lines else None
        after = host.ct_memory(vmid) or {}
        stall = cgroup2.stall_seconds(summary["samples"])
        deadline = time.monotonic() + (down_wait if oom_lines else 0)
        while ct.lxc_info(self.layout, vmid)[0] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.5)
        state = ct.lxc_info(self.layout, vmid)[0]
        if state == "stopped":
            self._wait_journal(vmid, journal_before, 10)
        kernel = self._kernel_lines(kern_offset)
        lifecycle = ct.journal_records(self.layout, vmid)[journal_before:]
        result = {
            "vmid": vmid, "qps": qps, "limit_bytes": before["limit_bytes"], "started": started,
            "oom": bool(oom_lines), "seconds_to_oom": seconds_to_oom, "ct_state": state,
            "sent": summary["sent"], "answered": summary["answered"], "lost": summary["lost"],
            "max_socat": max([sample["socat"] for sample in summary["samples"]] or [0]),
            "memory_max_seen_bytes": summary["memory_max_seen_bytes"],
            "kernel_lines": kernel, "lifecycle": [item.get("MESSAGE", "") for item in lifecycle],
            "cgroup": host.cgroup_backend(), "stall": bool(stall_hold) and stall >= stall_hold, "stall_seconds": stall,
            "events_before": before.get("events"), "events_after": after.get("events"),
            "pressure_after": after.get("pressure"),
        }
        self._print_reproduction(result, lifecycle)
        return result

    def _kernel_lines(self, offset):
        if not self.layout.kern_log.exists():
            return []
        with open(self.layout.kern_log, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            return handle.read().splitlines()

    def _wait_kernel_lines(self, offset, pattern, seconds):
        deadline = time.monotonic() + seconds
        while True:
            found = [line for line in self._kernel_lines(offset) if re.search(pattern, line)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def _wait_journal(self, vmid, before, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            messages = [item.get("MESSAGE", "") for item in ct.journal_records(self.layout, vmid)[before:]]
            if any("Deactivated successfully" in message or "Failed with result" in message for message in messages):
                return
            time.sleep(0.2)

    def _print_reproduction(self, result, lifecycle):
        key_words = ("invoked oom-killer", "oom-kill:", "Memory cgroup out of memory", "oom_reaper", "memory: usage",
                     "Tasks state", "entered disabled state", "entered blocking state", "left promiscuous",
                     "Memory cgroup stats for")
        dump_rows = sum(1 for line in result["kernel_lines"] if _TASK_ROW.search(line))
        shown = [line for line in result["kernel_lines"] if any(word in line for word in key_words)]
        self.out("")
        self.out("kernel (%s, %d lines since the flood began; %d task-dump rows not shown):"
                 % (self.layout.kern_log, len(result["kernel_lines"]), dump_rows))
        for line in shown[:60]:
            self.out("  " + line)
        if len(shown) > 60:
            self.out("  ... %d more" % (len(shown) - 60))
        self.out("")
        self.out("journalctl -u %s (the lab's journal):" % journal.unit_name(result["vmid"]))
        for line in journal.render(lifecycle).splitlines():
            self.out("  " + line)
        self.out("")
        if result["oom"]:
            self.out("reproduce: OOM in /lxc/%d after %s s at %d q/s (%d sent, %d answered, up to %d socat, %s seen); "
                     "CT %d is %s" % (result["vmid"], result["seconds_to_oom"], result["qps"], result["sent"],
                                      result["answered"], result["max_socat"],
                                      _mib(result["memory_max_seen_bytes"]), result["vmid"], result["ct_state"]))
        if result.get("events_after"):
            events, pressure = result["events_after"], result["pressure_after"] or {}
            self.out("memory.events of /lxc/%d: high %s, max %s, oom %s, oom_kill %s; memory.pressure some avg10 "
                     "%s%%, full avg10 %s%%" % (result["vmid"], events.get("high"), events.get("max"), events.get("oom"),
                                                events.get("oom_kill"), pressure.get("some", {}).get("avg10"),
                                                pressure.get("full", {}).get("avg10")))
        if result["stall"] and not result["oom"]:
            self.out("reproduce: CT %d STALLED at memory.high for %.0f s: no query answered, no OOM line (%d sent, "
                     "%d answered, up to %d socat, %s seen)" % (result["vmid"], result["stall_seconds"], result["sent"],
                                                                result["answered"], result["max_socat"],
                                                                _mib(result["memory_max_seen_bytes"])))
        elif not result["oom"]:
            self.out("reproduce: no OOM in /lxc/%d within the flood (%d sent); raise --qps or --max-seconds"
                     % (result["vmid"], result["sent"]))

    # -- down --------------------------------------------------------------------------------------

    def down_facts(self):
        """What is there now, for :func:`enva_lab.cleanup.plan_down`."""
        layout = self.layout
        processes = []
        if layout.run.is_dir():
            for pidfile in sorted(layout.run.glob("*.pid")):
                entry = procs.read_pidfile(pidfile)
                if procs.alive(entry):
                    processes.append((pidfile.stem, entry[0], entry[1]))
        running = []
        if layout.lxcpath.is_dir():
            done = host.run(["lxc-ls", "-P", layout.lxcpath, "--running", "-1"], check=False)
            running = [int(name) for name in done.stdout.split() if name.isdigit()]
        labdir = str(layout.root)
        strays = [(pid, argv) for pid, argv in procs.processes_mentioning(labdir) if cleanup.is_lab_process(argv)]
        mounts = []
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                point = line.split()[4].replace("\\040", " ")
                if point == labdir or point.startswith(labdir + "/"):
                    mounts.append(point)
        links = {name: {"alias": link.get("ifalias"), "kind": host.link_kind(link)}
                 for name, link in host.links().items()}
        state = self.load_state()
        vmids = set(self.known_vmids()) | set(state.get("cts", []))
        try:
            vmids |= {item.vmid for item in declared.read_text(settings.SAMPLE.read_text(), str(settings.SAMPLE))}
        except (OSError, declared.DeclaredError):
            pass
        cgroups = [str(path.relative_to(settings.CGROUP_ROOT)) for hierarchy in host.v1_hierarchies()
                   for parent in settings.LXC_CGROUP_PARENTS for path in host.cgroup_dirs(hierarchy, parent)]
        return {"labdir": labdir, "labdir_exists": layout.root.exists(), "cache": str(layout.cache),
                "cache_exists": layout.cache.exists(), "processes": processes, "running_cts": running,
                "stray_processes": strays, "mounts": mounts, "links": links, "lab_vmids": sorted(vmids),
                "cgroups": cgroups, "state": state}

    def down(self, purge=False):
        """Remove every CT, link, cgroup, process and file of the lab; the cache too with ``purge``.

        Plans from what is there, does it, and looks again (a stopped CT's cgroups go away by
        themselves, a killed supervisor leaves its lxc-start): up to three rounds, then anything of
        the lab still there is an error.
        """
        if os.geteuid() != 0:
            raise LabError("labctl down needs root; run it as root")
        if self.layout.root.exists():
            self.lock()
        carried = None
        done = {}
        for _round in range(3):
            facts = self.down_facts()
            if carried is None:
                carried = {"state": {"cgroup_parents_before": facts["state"].get("cgroup_parents_before", [])},
                           "lab_vmids": facts["lab_vmids"]}
            else:
                facts.update(state=carried["state"], lab_vmids=sorted(set(facts["lab_vmids"]) | set(carried["lab_vmids"])))
            actions = [action for action in cleanup.plan_down(facts, purge=purge) if not self._foreign_cgroup(action)]
            if not actions:
                break
            for action in actions:
                if self._do(action):
                    done[action.kind] = done.get(action.kind, 0) + 1
        else:
            raise LabError("down left %s behind; run labctl down again, or remove them by hand"
                           % ", ".join("%s %s" % (action.kind, action.target) for action in actions))
        if done.get("rmdir_cgroup"):
            self.out("down: removed %d cgroups (the CTs' leftovers and LXC's empty lxc, lxc.monitor, lxc.pivot)"
                     % done["rmdir_cgroup"])
        self.out("down: the lab is gone%s" % ("; the rootfs cache too" if purge else
                                              "; the rootfs cache stays in %s" % self.layout.cache))

    @staticmethod
    def _foreign_cgroup(action):
        """A parent cgroup that still holds other cgroups (someone else's containers) is not ours to remove."""
        if action.kind != "rmdir_cgroup":
            return False
        path = settings.CGROUP_ROOT / action.target
        return path.is_dir() and any(child.is_dir() for child in path.iterdir())

    def _do(self, action):
        """Carry out one step of the plan; True when it changed something (and says so, cgroups aside)."""
        kind, target = action.kind, action.target
        if kind == "stop_process":
            acted = procs.stop(target, timeout=30)
            target = target[0]
        elif kind == "stop_ct":
            acted = host.run(["lxc-stop", "-n", target, "-P", self.layout.lxcpath, "--kill"], check=False,
                             timeout=60).returncode == 0
        elif kind == "kill_process":
            acted = procs.stop((target, procs.start_time(target)), timeout=10)
        elif kind == "umount":
            acted = host.run(["umount", target], check=False).returncode == 0 or \
                host.run(["umount", "-l", target], check=False).returncode == 0
        elif kind == "delete_link":
            acted = host.run(["ip", "link", "del", target], check=False).returncode == 0
        elif kind == "rmdir_cgroup":
            try:
                os.rmdir(settings.CGROUP_ROOT / target)
            except OSError:
                return False
            return True
        elif kind == "restore_sysctl":
            host.sysctl_write(target, int(action.detail))
            acted = True
        else:
            acted = host.run(["rm", "-rf", "--one-file-system", target], timeout=600).returncode == 0
        if acted:
            self.out("down: %s %s (%s)" % (kind.replace("_", " "), target, action.detail))
        return acted

    # -- journal and exec -----------------------------------------------------------------------

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


def _room_for_sockets(max_open, spare=128):
    """Raise this process's open-file limit to what ``max_open`` sockets need (an SSH session on a node
    starts with 1,024); returns the sockets it may keep open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_open + spare if hard == resource.RLIM_INFINITY else min(hard, max_open + spare)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return max_open if soft == resource.RLIM_INFINITY else max(1, min(max_open, soft - spare))


def kernel_epoch(line):
    """The time of a kern.log line (``2026-11-24T09:15:20.905415+0000 pve1 kernel: ...``) as an epoch."""
    return datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def supervise_main(labdir, vmid):
    ct.supervise(Layout(root=labdir), vmid)


def kmsg_main(labdir):
    layout = Layout(root=labdir)
    kmsg.follow(str(layout.kern_log), str(layout.run / "kmsg.seq"))
