"""PVE-shaped nodes as qemu VMs: boot the cached node image, reach root over SSH, stop by PID.

A node boots with ``qemu-system-x86_64`` (KVM when it works here, TCG otherwise, said once),
its root a throw-away snapshot of the cached image (``snapshot=on``: the image is never
written, each boot starts clean), and qemu's user networking with ``restrict=on``: the VM
reaches nothing, and the host reaches it only through the ports forwarded on 127.0.0.1
(SSH, and the PVE API lab's 8006). There is no tap, no bridge on the host.

State per node under ``$ENVA_LAB_VM_DIR`` (``/var/lib/enva-lab-vm``) ``/NAME``: ``node.json``
(PID and start time, ports, accelerator), ``console.log``. ``down`` stops qemu by PID and
removes the directory; it checks afterwards that no process of the node is left.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from enva_lab import procs, settings, vmimage
from enva_lab.errors import LabError

QEMU = "qemu-system-x86_64"
MEMORY_MIB = 2560
SMP = 2
SSH_TIMEOUT = 300               # TCG on a loaded 2-core host: about 20 s quiet, minutes when busy
KVM_PROBE_SECONDS = 15
CONSOLE_TAIL = 25
NAMES = ("pve1", "pve2", "pve3")


def vm_dir():
    return Path(os.environ.get("ENVA_LAB_VM_DIR") or "/var/lib/enva-lab-vm")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def console_tail(path, lines=CONSOLE_TAIL):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no console output)"
    rows = [row.rstrip("\r") for row in text.splitlines() if row.strip()]
    return "\n".join(rows[-lines:]) or "(no console output)"


CLUSTER_MCAST = "239.255.218.1"         # the cluster network: qemu's socket netdev, multicast on loopback


def cluster_ip(name):
    """The node's address on the cluster network (eth1): pve1 10.218.0.11, pve2 .12, pve3 .13."""
    return "10.218.0.%d" % (10 + NAMES.index(name) + 1)


def qemu_argv(paths, accel, ssh_port, api_port, console, pidfile, name, memory_mib=MEMORY_MIB, smp=SMP,
              cluster_port=None):
    """The qemu command line of a node (pure; tested). ``cluster_port``: a second NIC on the cluster network
    (every node's frames multicast on 127.0.0.1, reaching the other nodes and nothing else)."""
    forwards = "hostfwd=tcp:127.0.0.1:%d-:22" % ssh_port
    if api_port:
        forwards += ",hostfwd=tcp:127.0.0.1:%d-:8006" % api_port
    argv = [QEMU, "-name", "enva-%s" % name, "-machine", "q35", "-accel", accel]
    argv += ["-cpu", "host" if accel == "kvm" else "max", "-smp", str(smp), "-m", str(memory_mib),
             "-kernel", str(paths.kernel), "-initrd", str(paths.initrd), "-append", vmimage.CMDLINE,
             "-drive", "file=%s,if=virtio,format=raw,snapshot=on" % paths.image,
             "-netdev", "user,id=net0,restrict=on,%s" % forwards, "-device", "virtio-net-pci,netdev=net0",
             "-display", "none", "-monitor", "none", "-serial", "file:%s" % console, "-no-reboot",
             "-pidfile", str(pidfile)]
    if cluster_port:
        argv += ["-netdev", "socket,id=net1,mcast=%s:%d,localaddr=127.0.0.1" % (CLUSTER_MCAST, cluster_port),
                 "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:21:80:%02x" % (NAMES.index(name) + 1)]
    return argv


def ssh_argv(paths, port, command=None, tty=False):
    """``ssh`` to root on a node with the lab's key and the image's pinned host key."""
    argv = ["ssh", "-i", str(paths.ssh_key), "-p", str(port), "-o", "BatchMode=yes", "-o", "HostKeyAlias=enva-node",
            "-o", "UserKnownHostsFile=%s" % paths.known_hosts, "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=15"]
    if tty:
        argv.append("-t")
    argv.append("root@127.0.0.1")
    if command:
        argv += list(command)
    return argv


class Nodes:
    """The VM nodes of this host; ``out`` prints progress."""

    def __init__(self, paths=None, root=None, out=print):
        self.paths = paths or vmimage.Paths()
        self.root = Path(root) if root else vm_dir()
        self.out = out

    # -- state -----------------------------------------------------------------------------------

    def node_dir(self, name):
        if name not in NAMES:
            raise LabError("unknown node %s; the lab's nodes are %s" % (name, ", ".join(NAMES)))
        return self.root / name

    def state(self, name):
        try:
            return json.loads((self.node_dir(name) / "node.json").read_text())
        except (OSError, ValueError):
            return {}

    def running(self, name):
        state = self.state(name)
        entry = (state["pid"], state["starttime"]) if state.get("pid") else None
        return state if procs.alive(entry) else None

    def require_running(self, name):
        state = self.running(name)
        if not state:
            raise LabError("node %s is not running; labctl vm up %s" % (name, name))
        return state

    # -- accelerator ---------------------------------------------------------------------------------

    def accelerator(self):
        """``kvm`` when a KVM guest gets as far as printing its kernel banner, else ``tcg`` (said once).

        ``ENVA_LAB_ACCEL=tcg|kvm`` overrides; the verdict is cached per host kernel."""
        forced = os.environ.get("ENVA_LAB_ACCEL")
        if forced in ("kvm", "tcg"):
            return forced
        verdict_file = self.paths.cache / "kvm.json"
        release = os.uname().release
        try:
            verdict = json.loads(verdict_file.read_text())
            if verdict.get("host_kernel") == release:
                return "kvm" if verdict["usable"] else "tcg"
        except (OSError, ValueError, KeyError):
            pass
        usable, why = self._probe_kvm()
        verdict_file.parent.mkdir(parents=True, exist_ok=True)
        verdict_file.write_text(json.dumps({"host_kernel": release, "usable": usable, "why": why}) + "\n")
        if not usable:
            self.out("note: KVM is not usable here (%s); nodes run under TCG (-accel tcg -smp %d), slower but "
                     "the same kernel (this is said once; ENVA_LAB_ACCEL=kvm tries again)" % (why, SMP))
        return "kvm" if usable else "tcg"

    def _probe_kvm(self):
        try:
            handle = os.open("/dev/kvm", os.O_RDWR)
            os.close(handle)
        except OSError as error:
            return False, "/dev/kvm: %s" % error.strerror
        probe = self.root / "kvm-probe.log"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.unlink(missing_ok=True)
        argv = [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "512", "-kernel", str(self.paths.kernel), "-append",
                "console=ttyS0 panic=-1", "-display", "none", "-monitor", "none", "-serial", "file:%s" % probe,
                "-no-reboot", "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0"]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + KVM_PROBE_SECONDS
        seen = False
        while time.monotonic() < deadline and process.poll() is None:
            if "Linux version" in console_tail(probe, 200):
                seen = True
                break
            time.sleep(0.5)
        if process.poll() is None:
            process.kill()
        _out, err = process.communicate(timeout=30)
        probe.unlink(missing_ok=True)
        if seen:
            return True, "a KVM guest booted"
        detail = err.decode(errors="replace").strip().splitlines()
        return False, detail[-1] if detail else "/dev/kvm exists but a KVM guest printed nothing in %d s" \
            % KVM_PROBE_SECONDS

    # -- up ------------------------------------------------------------------------------------------

    def up(self, name="pve1", timeout=SSH_TIMEOUT, push=True, cluster_port=None):
        """Boot the node (build the image first when needed) and wait for SSH; returns its state. With
        ``cluster_port`` the node is one of a cluster: on the cluster network, named ``name``."""
        if os.geteuid() != 0:
            raise LabError("VM nodes need root (the image build uses debootstrap and mkfs); run labctl as root")
        if not shutil.which(QEMU):
            raise LabError("%s is not installed (Debian package qemu-system-x86); run make setup" % QEMU)
        state = self.running(name)
        if state and state.get("release", "bookworm") != self.paths.release:
            raise LabError("node %s runs Debian %s, not %s; labctl vm down %s first" % (
                name, state.get("release", "bookworm"), self.paths.release, name))
        if state:
            self._wait_ssh(name, state, timeout)
            if push:
                self.push(name)
            return state
        build_seconds = vmimage.build(self.paths, self.out)
        if build_seconds:
            self.out("node image: built in %.0f s (%s)" % (build_seconds, self.paths.node))
        accel = self.accelerator()
        directory = self.node_dir(name)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        console = directory / "console.log"
        pidfile = directory / "qemu.pid"
        ssh_port, api_port = free_port(), free_port()
        argv = qemu_argv(self.paths, accel, ssh_port, api_port, console, pidfile, name, cluster_port=cluster_port)
        started = time.monotonic()
        with open(directory / "qemu.log", "ab") as output:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True, close_fds=True)
        time.sleep(0.3)
        state = {"name": name, "pid": process.pid, "starttime": procs.start_time(process.pid), "accel": accel,
                 "ssh_port": ssh_port, "api_port": api_port, "console": str(console), "argv": argv,
                 "started": time.time(), "cluster_port": cluster_port, "release": self.paths.release,
                 "kernel": vmimage.stamp(self.paths).get("kernel")}
        (directory / "node.json").write_text(json.dumps(state, indent=1) + "\n")
        self.out("node %s: booting Debian %s %s, PVE %s-shaped (%s, %d vCPUs, %d MiB; ssh 127.0.0.1:%d, "
                 "API 127.0.0.1:%d; console %s)" % (name, settings.RELEASES[self.paths.release], self.paths.release,
                                                    self.paths.pve, accel.upper(), SMP, MEMORY_MIB, ssh_port, api_port,
                                                    console))
        self._wait_ssh(name, state, timeout, process)
        state["boot_seconds"] = round(time.monotonic() - started, 1)
        (directory / "node.json").write_text(json.dumps(state, indent=1) + "\n")
        self.out("node %s: SSH answers after %.1f s" % (name, state["boot_seconds"]))
        self._name_node(name, state)
        if push:
            self.push(name)
        return state

    def _name_node(self, name, state):
        """The node's hostname (PVE's node name: labctl and the API lab on it read it), and its address on
        the cluster network when it has one."""
        script = ("hostname {name} && echo {name} > /etc/hostname && "
                  "sed -i 's/^127.0.1.1.*/127.0.1.1\\t{name}/' /etc/hosts").format(name=name)
        if state.get("cluster_port"):
            script += " && ip link set eth1 up && ip addr replace %s/24 dev eth1" % cluster_ip(name)
            for other in NAMES:
                script += " && (grep -q ' %s$' /etc/hosts || echo '%s %s' >> /etc/hosts)" % (
                    other, cluster_ip(other), other)
        self.ssh(name, script, timeout=60)

    def _wait_ssh(self, name, state, timeout, process=None):
        deadline = time.monotonic() + timeout
        while True:
            if process is not None and process.poll() is not None:
                raise LabError("node %s: qemu exited (status %s) before SSH answered; console %s ends:\n%s\n"
                               "qemu said: %s" % (name, process.returncode, state["console"],
                                                  console_tail(state["console"]),
                                                  console_tail(Path(state["console"]).with_name("qemu.log"), 5)))
            done = subprocess.run(ssh_argv(self.paths, state["ssh_port"], ["true"]), capture_output=True,
                                  timeout=60, check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.down(name, quiet=True)
                raise LabError("node %s: SSH on 127.0.0.1:%d did not answer within %d s (%s); console %s ends:\n%s"
                               % (name, state["ssh_port"], timeout, done.stderr.decode(errors="replace").strip()
                                  or "no answer", state["console"], console_tail(state["console"])))
            time.sleep(2)

    def push(self, name):
        """Copy this checkout's tests/lab and plugins/module_utils to the node's /opt/enva (labctl runs there)."""
        state = self.require_running(name)
        checkout = settings.CHECKOUT
        tar = subprocess.Popen(["tar", "-C", str(checkout), "--exclude=__pycache__", "-cf", "-", "tests/lab",
                                "plugins/module_utils"], stdout=subprocess.PIPE)
        done = subprocess.run(ssh_argv(self.paths, state["ssh_port"], [
            "rm -rf %s.new && mkdir -p %s.new && tar -C %s.new -xf - && rm -rf %s && mv %s.new %s"
            % ((vmimage.GUEST_CHECKOUT,) * 6)]), stdin=tar.stdout, capture_output=True, timeout=120, check=False)
        tar.stdout.close()
        tar.wait()
        if done.returncode != 0 or tar.returncode != 0:
            raise LabError("node %s: copying tests/lab to %s failed: %s" % (
                name, vmimage.GUEST_CHECKOUT, done.stderr.decode(errors="replace").strip() or "tar failed"))

    # -- the lab on a node, for a controller on this host ------------------------------------------------

    CONTROLLER_FILES = ("ssh/id_ed25519", "ssh/known_hosts", "pki/pve-root-ca.pem", "api/credentials.json",
                        "enva.yaml")

    def lab_up(self, name="pve1", only=None):
        """``labctl up`` on the node, then copy what a controller on this host needs to reach it to
        ``<vm dir>/NAME/lab`` (the CTs' SSH key and host keys, the API's CA and credentials, the node's
        declared enva.yaml); inventories/vm-node reads them there. Returns that directory."""
        self.require_running(name)
        command = "%s/tests/lab/labctl up" % vmimage.GUEST_CHECKOUT
        if only:
            command += " --only %s" % ",".join(str(vmid) for vmid in only)
        done = self.ssh(name, command, timeout=1200, check=False)
        if done.returncode != 0:
            raise LabError("node %s: labctl up failed (exit %d):\n%s" % (
                name, done.returncode, (done.stdout + done.stderr).strip()[-2000:]))
        target = self.node_dir(name) / "lab"
        staging = target.with_name("lab.new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        state = self.require_running(name)
        remote = subprocess.Popen(ssh_argv(self.paths, state["ssh_port"], [
            "tar -C /var/lib/enva-lab -cf - %s" % " ".join(self.CONTROLLER_FILES)]), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        unpack = subprocess.run(["tar", "-C", str(staging), "-xf", "-"], stdin=remote.stdout, capture_output=True,
                                timeout=120, check=False)
        remote.stdout.close()
        error = remote.stderr.read().decode(errors="replace").strip()
        remote.wait(timeout=60)
        if remote.returncode != 0 or unpack.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise LabError("node %s: copying the lab's controller files failed: %s" % (
                name, error or unpack.stderr.decode(errors="replace").strip() or "tar failed"))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        self.out("node %s: lab up; the controller's copies of its key, CA, credentials and enva.yaml in %s"
                 % (name, target))
        return target

    # -- use -----------------------------------------------------------------------------------------

    def ssh(self, name, command, timeout=900, check=True, stdin=None):
        """Run a shell command on the node as root (``stdin``: text for its input); the CompletedProcess (text)."""
        state = self.require_running(name)
        try:
            done = subprocess.run(ssh_argv(self.paths, state["ssh_port"], [command]), capture_output=True,
                                  text=True, timeout=timeout, check=False, input=stdin,
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LabError("node %s: %s did not finish within %d s" % (name, command, timeout)) from None
        if check and done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise LabError("node %s: %s failed (exit %d): %s" % (name, command, done.returncode,
                                                                 detail[-1] if detail else "no output"))
        return done

    def exec(self, name, argv):
        """Replace this process by ``ssh`` to the node (a login shell without a command)."""
        state = self.require_running(name)
        command = ssh_argv(self.paths, state["ssh_port"], [" ".join(argv)] if argv else None, tty=not argv)
        sys.stdout.flush()
        os.execvp(command[0], command)

    def status(self):
        nodes = []
        for name in NAMES:
            state = self.state(name)
            if not state:
                continue
            alive = self.running(name)
            nodes.append({"name": name, "running": bool(alive), "pid": state.get("pid"), "accel": state.get("accel"),
                          "ssh": "127.0.0.1:%s" % state.get("ssh_port"), "api": "127.0.0.1:%s" % state.get("api_port"),
                          "boot_seconds": state.get("boot_seconds"), "console": state.get("console"),
                          "release": state.get("release"), "kernel": state.get("kernel")})
        image = vmimage.stamp(self.paths)
        return {"image": str(self.paths.image), "release": self.paths.release, "pve": self.paths.pve,
                "note": vmimage.legacy_note(self.paths),
                "image_current": vmimage.is_current(self.paths),
                "image_build_seconds": image.get("seconds"), "kernel": image.get("kernel"), "nodes": nodes}

    # -- down ------------------------------------------------------------------------------------------

    def down(self, name=None, quiet=False):
        """Stop the node(s) by PID and remove their state; checks that no qemu of theirs is left."""
        names = [name] if name else [n for n in NAMES if self.node_dir(n).exists()]
        for each in names:
            directory = self.node_dir(each)
            state = self.state(each)
            entry = (state["pid"], state["starttime"]) if state.get("pid") else None
            if procs.stop(entry, timeout=20) and not quiet:
                self.out("node %s: qemu pid %d stopped" % (each, entry[0]))
            left = [pid for pid, _argv in procs.processes_mentioning(str(directory) + "/")]
            if left:
                raise LabError("node %s: processes %s still use %s; stop them (kill PID) and run labctl vm down again"
                               % (each, " ".join(map(str, left)), directory))
            shutil.rmtree(directory, ignore_errors=True)
        (self.root / "kvm-probe.log").unlink(missing_ok=True)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()
