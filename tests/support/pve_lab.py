"""The PVE API lab server (tests/lab/enva_lab/api_lab) on a random loopback port, over a fake lab tree.

The fake tree is what the server reads on a real lab node, made of plain files: PVE configs in
``<labdir>/etc/pve/lxc`` and a cgroup v1 tree ``<cgroup>/memory/lxc/<VMID>`` (the server applies the kernel's
v1 rules to trees that are not a mounted cgroup file system). The server is the real program, started as a
process; tests talk to it over real HTTPS with its own CA.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB

ROOT = Path(__file__).resolve().parents[2]
LAB_PATH = ROOT / "tests" / "lab"
STARTUP_SECONDS = 30

CONFIG = """#CT {vmid} of the unit tests
arch: amd64
cores: 1
hostname: {hostname}
memory: {memory}
net0: name=eth0,bridge=vmbr0,ip=10.217.0.{last}/24,type=veth
onboot: 1
ostype: debian
rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=8G
swap: {swap}
lxc.cgroup.dir.container: lxc/{vmid}
"""

# A fake labctl for status/start and status/stop: it makes or removes the CT's cgroup directory.
FAKE_LABCTL = """#!/bin/sh
set -e
dir="{cgroup}/memory/lxc/$2"
case "$1" in
  start) mkdir -p "$dir"; echo 1073741824 > "$dir/memory.limit_in_bytes";
         echo 2147483648 > "$dir/memory.memsw.limit_in_bytes"; echo 104857600 > "$dir/memory.usage_in_bytes";
         echo 104857600 > "$dir/memory.memsw.usage_in_bytes"; echo "CT $2 started" ;;
  stop) rm -rf "$dir"; echo "CT $2 stopped" ;;
  *) echo "labctl: unknown command $1" >&2; exit 2 ;;
esac
"""


class FakeLab:
    """The files the server reads: CT configs and a cgroup v1 memory tree."""

    def __init__(self, root):
        self.root = Path(root)
        self.labdir = self.root / "labdir"
        self.cgroup = self.root / "cgroup"
        self.config_dir = self.labdir / "etc" / "pve" / "lxc"
        self.labctl = self.root / "labctl"

    def make(self):
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.cgroup / "memory" / "lxc").mkdir(parents=True, exist_ok=True)
        (self.cgroup / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
        self.labctl.write_text(FAKE_LABCTL.format(cgroup=self.cgroup))
        self.labctl.chmod(0o755)
        return self

    def reset(self):
        for directory in (self.config_dir, self.cgroup / "memory" / "lxc"):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)

    def add_ct(self, vmid, hostname=None, memory=1024, swap=1024, running=True, used_mib=300):
        text = CONFIG.format(vmid=vmid, hostname=hostname or "ct%d" % vmid, memory=memory, swap=swap,
                             last=vmid % 200 + 10)
        self.config_path(vmid).write_text(text)
        if running:
            files = {"memory.limit_in_bytes": memory * MIB, "memory.memsw.limit_in_bytes": (memory + swap) * MIB,
                     "memory.usage_in_bytes": used_mib * MIB, "memory.memsw.usage_in_bytes": used_mib * MIB,
                     "memory.max_usage_in_bytes": used_mib * MIB, "memory.stat": "total_inactive_file 0",
                     "cgroup.procs": ""}
            directory = self.cgroup_dir(vmid)
            directory.mkdir(parents=True, exist_ok=True)
            for name, value in files.items():
                (directory / name).write_text("%s\n" % value)
        return self.config_path(vmid)

    def config_path(self, vmid):
        return self.config_dir / ("%d.conf" % vmid)

    def cgroup_dir(self, vmid):
        return self.cgroup / "memory" / "lxc" / str(vmid)

    def limit_mib(self, vmid, name="memory.limit_in_bytes"):
        return int((self.cgroup_dir(vmid) / name).read_text()) // MIB

    def set_usage(self, vmid, used_mib):
        for name in ("memory.usage_in_bytes", "memory.memsw.usage_in_bytes"):
            (self.cgroup_dir(vmid) / name).write_text("%d\n" % (used_mib * MIB))


def server_env():
    """The environment the lab server runs in: ``enva_lab`` and the collection importable, as labctl sets it."""
    collections = ROOT.parents[2] if ROOT.parent.name == "enva" else ROOT / ".cache" / "collections"
    path = [str(LAB_PATH), str(collections)] + [part for part in os.environ.get("PYTHONPATH", "").split(":") if part]
    return dict(os.environ, PYTHONPATH=":".join(path))


class ApiLabProcess:
    """``python3 -m enva_lab.api_lab serve ARGS`` as a process on 127.0.0.1 and a port the kernel picks
    (``ARGS`` name the labdir and what it serves); stopped with SIGTERM. ``wrapper`` goes before the command
    and must exec it (``taskset -c 0,1``), so the process is still the server's."""

    def __init__(self, labdir, *args, startup_seconds=STARTUP_SECONDS, wrapper=()):
        self.labdir = Path(labdir)
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [*wrapper, sys.executable, "-m", "enva_lab.api_lab", "serve", "--labdir", str(labdir),
             "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=server_env())
        ready, _w, _x = select.select([self.proc.stdout], [], [], startup_seconds)
        line = self.proc.stdout.readline() if ready else ""
        if "listening on https://" not in line:
            self.stop()
            raise RuntimeError("the PVE API lab did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(line.split("https://127.0.0.1:", 1)[1].split("/", 1)[0])
        self.credentials = json.loads((self.labdir / "api" / "credentials.json").read_text())
        self.ca_path = str(self.labdir / "pki" / "pve-root-ca.pem")
        self.log_path = self.labdir / "log" / "pve_api.log"

    def token(self, name):
        return self.credentials["tokens"]["enva@pve!%s" % name]["secret"]

    @property
    def root_password(self):
        return self.credentials["users"]["root@pam"]["password"]

    def connection(self, token="ansible", **extra):
        """Module options for this server: a token of enva@pve (or root@pam's password with token=None)."""
        args = {"api_host": "127.0.0.1", "api_port": self.port, "ca_path": self.ca_path, "api_timeout": 10}
        if token:
            args.update(api_user="enva@pve", api_token_id=token, api_token_secret=self.token(token))
        else:
            args.update(api_user="root@pam", api_password=self.root_password)
        args.update(extra)
        return args

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


class LabServer(ApiLabProcess):
    """The server over a FakeLab tree (its configs, its cgroup v1 tree and a fake labctl)."""

    def __init__(self, lab, *extra):
        super().__init__(lab.labdir, "--cgroup-root", str(lab.cgroup), "--labctl", str(lab.labctl),
                         "--rrd-step", "0.2", *extra)
        self.lab = lab


@pytest.fixture(scope="session")
def pve_lab(tmp_path_factory):
    """The server over a fake lab, for the whole test session (PKI and credentials made once)."""
    lab = FakeLab(tmp_path_factory.mktemp("pve-lab")).make()
    server = LabServer(lab)
    yield server
    server.stop()


@pytest.fixture
def lab(pve_lab):
    """The session's server with an empty fake lab: tests add the CTs they need."""
    pve_lab.lab.reset()
    return pve_lab


class SilentListener:
    """A TCP listener on loopback that accepts and never answers (what a hung API looks like)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + 60
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self):
        self.done.set()
        self.thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_port():
    listener = SilentListener()
    yield listener.port
    listener.close()


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def call(server, method, path, token="ansible", headers=None, params=None):
    """One HTTPS request to the API lab ``server`` as a token of enva@pve: (status, reason, decoded JSON body)."""
    context = ssl.create_default_context(cafile=server.ca_path)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = "PVEAPIToken=enva@pve!%s=%s" % (token, server.token(token))
    body = None
    if params and method in ("POST", "PUT"):
        body = urlencode(params)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif params:
        path += "?" + urlencode(params)
    try:
        conn.request(method, "/api2/json" + path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.reason, json.loads(response.read() or b"null")
    finally:
        conn.close()
