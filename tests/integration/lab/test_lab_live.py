"""The lab for real (root, LXC, the cgroup v1 memory controller): ``labctl up``, a crash that ``up``
repairs, ``labctl reproduce`` (the kernel OOM-kills inside /lxc/2017 and the CT goes down, in the
kernel log copy and the pve-container@2017 journal), and ``labctl down``, after which ``ip link``,
``lxc-ls``, the cgroup trees and the lab's processes are as before. Also: ``down`` after an ``up``
that failed half-way.

A lab that is up when the tests begin is taken down first (to see the host without it) and brought
up again at the end, as other developers' tests expect it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from proxmoxer import ProxmoxAPI

from ansible_collections.enva.pve.plugins.module_utils import pve_pressure
from ansible_collections.enva.pve.plugins.module_utils.ct_lifecycle import parse_lifecycle
from enva_lab import dns, host, journal, procs, settings
from enva_lab.settings import Layout

pytestmark = pytest.mark.lab

LABCTL = Path(__file__).resolve().parents[2] / "lab" / "labctl"
LAYOUT = Layout()
MIB = 1024 * 1024


def labctl(*args, ok=True, timeout=1800):
    done = subprocess.run([str(LABCTL)] + list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if ok:
        assert done.returncode == 0, "labctl %s: %s%s" % (" ".join(args), done.stdout[-3000:], done.stderr)
    return done


def snapshot():
    return dict(host.snapshot(LAYOUT.root, LAYOUT.lxcpath), pid_max=host.sysctl_read("kernel.pid_max"),
                labdir=LAYOUT.root.exists())


@pytest.fixture(scope="module")
def host_before():
    if os.geteuid() != 0 or not shutil.which("lxc-start") or not host.memory_cgroup_v1():
        pytest.skip("needs root, lxc and the cgroup v1 memory controller")
    was_up = LAYOUT.state.exists()
    if was_up:
        labctl("down")
    before = snapshot()
    assert not before["labdir"] and not before["lab_processes"] and not before["lab_lxc_ls"]
    yield before
    if was_up:
        labctl("up")


def lab_api():
    """proxmoxer on the lab's API (its CA, the read-only token of credentials.json)."""
    port = settings.API_LISTEN.rsplit(":", 1)[1]
    credentials = json.loads((LAYOUT.root / "api" / "credentials.json").read_text())
    return ProxmoxAPI("127.0.0.1", port=int(port), user="enva@pve", token_name="readonly",
                      token_value=credentials["tokens"]["enva@pve!readonly"]["secret"],
                      verify_ssl=str(LAYOUT.root / "pki" / "pve-root-ca.pem"), timeout=10)


def ct_status(vmid):
    status = json.loads(labctl("status", "--json").stdout)
    return status, next(item for item in status["cts"] if item["vmid"] == vmid)


def test_down_after_an_up_that_failed_half_way_leaves_the_host_as_it_was(host_before):
    LAYOUT.root.mkdir(parents=True)
    LAYOUT.declared.write_text("containers: [\n")          # up stops here, after the bridge and the log follower
    failed = labctl("up", ok=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("labctl: ") and failed.stderr.count("\n") == 1
    assert "is not valid YAML" in failed.stderr
    assert settings.BRIDGE in host.links() and procs.running(LAYOUT.pidfile("kmsg"))
    labctl("down")
    assert snapshot() == host_before


def test_up_repairs_reproduce_shows_the_oom_and_down_cleans_up(host_before):
    sample = hashlib.sha256(settings.SAMPLE.read_bytes()).hexdigest()
    labctl("up")
    status, haproxy = ct_status(2017)
    assert haproxy["state"] == "running" and haproxy["ip"] == "10.217.0.17" and haproxy["socat"] >= 1
    assert haproxy["memory"]["limit_bytes"] == 1024 * MIB and haproxy["memory"]["memsw_limit_bytes"] == 2048 * MIB
    assert haproxy["memory"]["cgroup"] == "/lxc/2017" and haproxy["memory"]["oom_kill"] == 0
    conf = LAYOUT.pve_conf(2017).read_text()
    assert "\nmemory: 1024\n" in conf and "\nswap: 1024\n" in conf and "\nonboot: 1\n" in conf
    assert "net0: name=eth0,bridge=vmbr0,gw=10.217.0.1,hwaddr=BC:24:11:" in conf
    assert "veth2017i0" in host.links()
    assert status["dns"]["counters"]["total.num.recursivereplies"] == 0
    assert dns.query((settings.DNS_IP, 53), "haproxy.lab.enva.test").rcode_name == "NOERROR"
    assert dns.query((settings.DNS_IP, 53), "www.example.com").rcode_name == "REFUSED"
    ssh = subprocess.run(["ssh", "-F", str(LAYOUT.ssh / "ssh_config"), "-o", "BatchMode=yes", "root@10.217.0.17",
                          "systemctl is-active dns-forwarder haproxy; cat /etc/resolv.conf"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert ssh.returncode == 0 and ssh.stdout.startswith("active\nactive\n") and "nameserver 127.0.0.1" in ssh.stdout

    # The lab's API answers as PVE 9; this host is cgroup v1, so CT 2017 has no /sys/fs/cgroup/lxc/2017/*.pressure
    # and PVE 9 would give its six pressure fields as null: so does the lab.
    api = lab_api()
    assert api.version.get()["release"].startswith("9.")
    current = api.nodes(settings.NODE).lxc(2017).status.current.get()
    assert {key: current.get(key, "absent") for key in pve_pressure.FIELDS} == dict.fromkeys(pve_pressure.FIELDS)

    # A crash: the CT's supervisor and unbound killed, the SiNS address gone. up repairs it.
    for name in ("ct-2017", "unbound"):
        os.kill(procs.running(LAYOUT.pidfile(name)), signal.SIGKILL)
    host.run(["ip", "addr", "del", "%s/32" % settings.DNS_IP, "dev", settings.BRIDGE])
    labctl("up")
    _status, haproxy = ct_status(2017)
    assert haproxy["state"] == "running" and haproxy["supervisor_pid"]
    assert dns.query((settings.DNS_IP, 53), "sins.lab.enva.test").rcode_name == "NOERROR"

    before_reproduce = len(journal.read(LAYOUT.journal_file(2017)))
    done = labctl("reproduce", "--json", timeout=600)
    result = json.loads(done.stdout[done.stdout.index("\n{\n") + 1:])
    assert result["oom"] and result["ct_state"] == "stopped", done.stdout[-3000:]
    assert result["seconds_to_oom"] is not None and result["max_socat"] > 1000
    kernel = result["kernel_lines"]
    assert any("oom-kill:constraint=CONSTRAINT_MEMCG" in line and "oom_memcg=/lxc/2017," in line
               and "task_memcg=/lxc/2017/ns" in line for line in kernel)
    assert any(" pve1 kernel: Memory cgroup out of memory: Killed process " in line for line in kernel)
    assert any("vmbr0: port" in line and "(veth2017i0) entered disabled state" in line for line in kernel)
    assert all(line in LAYOUT.kern_log.read_text() for line in kernel[:50])
    records = journal.read(LAYOUT.journal_file(2017))
    messages = [record["MESSAGE"] for record in records[before_reproduce:]]
    assert messages[0] in ("pve-container@2017.service: Deactivated successfully.",
                           "pve-container@2017.service: Main process exited, code=exited, status=1/FAILURE")
    events = parse_lifecycle([journal.dumps(record) for record in records], 0)
    assert [event["event"] for event in events][:2] == ["starting", "started"]
    assert events[-1]["event"] in ("deactivated", "failed") and events[-1]["vmid"] == 2017
    assert hashlib.sha256(settings.SAMPLE.read_bytes()).hexdigest() == sample

    labctl("down")
    assert snapshot() == host_before
