"""``labctl cluster up|down|status``: three VM nodes (pve1, pve2, pve3) as one PVE cluster.

* The nodes boot together (each as ``labctl vm up`` boots one: TCG, 2 vCPUs, ``vmnode.MEMORY_MIB``
  MiB, its SSH and API forwarded on 127.0.0.1) with a second NIC on one cluster network (qemu's
  socket netdev, multicast on 127.0.0.1: the nodes reach each other at 10.218.0.11-13, nothing else
  does), and each takes its name as hostname.
* CTs are spread as on a real cluster (:data:`SHARES`): CT 2017 as found on pve1, ordinary CTs on
  pve2, and on pve3 CT 2102 with a real OOM history (a process in it allocates past its limit until the
  kernel kills it, once, at ``up``) and CT 2103 stopped.
* pve1's lab comes up first; its CA, authkey and credentials.json go to pve2 and pve3 before their
  labs come up (PVE's nodes share /etc/pve), then every node's ``api/cluster.json`` names the other
  two: any node's API answers ``/cluster/resources`` for all and proxies ``/nodes/{node}/...`` to the
  node that holds the CT (enva_lab.api_lab.cluster).
"""

import json
import subprocess
import threading
import time

from enva_lab import vmimage, vmnode
from enva_lab.errors import LabError

SHARES = {"pve1": [2017], "pve2": [2101], "pve3": [2102, 2103]}
OOM_VMID = 2102                 # the CT with a real OOM history, on pve3
LABDIR = "/var/lib/enva-lab"
SHARED = ("pki", "api/credentials.json", "api/authkey")
# One process that allocates past the CT's memory.max and touches every page: the kernel OOM-kills it
OOM_COMMAND = "python3 -c 'b = bytearray(2048 * 1024 * 1024)'"


class Cluster:
    """The cluster of this host's VM nodes; ``out`` prints progress."""

    def __init__(self, nodes=None, out=print):
        self.nodes = nodes or vmnode.Nodes(out=out)
        self.out = out
        self.path = self.nodes.root / "cluster.json"

    def state(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _parallel(self, what, names, work):
        """Run ``work(name)`` for every node at once; the first error (naming its node) after all are done."""
        errors = {}

        def run(name):
            try:
                work(name)
            except LabError as error:
                errors[name] = error
        threads = [threading.Thread(target=run, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise LabError("cluster: %s failed on %s" % (what, "; ".join(
                "%s: %s" % (name, errors[name]) for name in sorted(errors))))

    def up(self):
        started = time.monotonic()
        state = self.state()
        port = state.get("cluster_port") or vmnode.free_port()
        self.nodes.root.mkdir(parents=True, exist_ok=True)
        state.update(cluster_port=port, nodes=list(vmnode.NAMES), shares=SHARES)
        self.path.write_text(json.dumps(state, indent=1) + "\n")
        vmimage.build(self.nodes.paths, self.out)          # once, before three boots want it
        self._parallel("boot", vmnode.NAMES, lambda name: self.nodes.up(name, cluster_port=port))
        booted = time.monotonic()
        self.nodes.lab_up("pve1", only=SHARES["pve1"])
        self._share_secrets()
        self._parallel("labctl up", vmnode.NAMES[1:], lambda name: self.nodes.lab_up(name, only=SHARES[name]))
        self._peers()
        self._oom_history()
        timings = {"boot_seconds": round(booted - started, 1), "up_seconds": round(time.monotonic() - started, 1)}
        state.update(timings)
        self.path.write_text(json.dumps(state, indent=1) + "\n")
        api = self.nodes.state("pve1").get("api_port")
        self.out("cluster: up in %.0f s (nodes booted in %.0f s); pve1 %s, pve2 %s, pve3 %s; the cluster's API "
                 "https://127.0.0.1:%s/api2/json (pve1); each node %d MiB, %d vCPUs" % (
                     timings["up_seconds"], timings["boot_seconds"], SHARES["pve1"], SHARES["pve2"], SHARES["pve3"],
                     api, vmnode.MEMORY_MIB, vmnode.SMP))
        return state

    def _share_secrets(self):
        """pve1's CA, authkey and credentials to the other nodes (as /etc/pve is one file system for all)."""
        source = self.nodes.require_running("pve1")
        for name in vmnode.NAMES[1:]:
            target = self.nodes.require_running(name)
            pack = subprocess.Popen(vmnode.ssh_argv(self.nodes.paths, source["ssh_port"], [
                "tar -C %s -cf - %s" % (LABDIR, " ".join(SHARED))]), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            done = subprocess.run(vmnode.ssh_argv(self.nodes.paths, target["ssh_port"], [
                "mkdir -p %s && tar -C %s -xf -" % (LABDIR, LABDIR)]), stdin=pack.stdout, capture_output=True,
                timeout=120, check=False)
            pack.stdout.close()
            pack.wait(timeout=60)
            if pack.returncode or done.returncode:
                raise LabError("cluster: copying pve1's CA and credentials to %s failed: %s" % (
                    name, (pack.stderr.read() + done.stderr).decode(errors="replace").strip() or "tar failed"))

    def _peers(self):
        for name in vmnode.NAMES:
            peers = {other: "%s:8006" % vmnode.cluster_ip(other) for other in vmnode.NAMES if other != name}
            self.nodes.ssh(name, "cat > %s/api/cluster.json.new && mv %s/api/cluster.json.new %s/api/cluster.json"
                           % (LABDIR, LABDIR, LABDIR), timeout=60, check=True, stdin=json.dumps({"peers": peers}))

    def _oom_history(self):
        """CT 2102 on pve3 gets a real OOM kill once (the kernel's line in pve3's journal)."""
        labctl = "%s/tests/lab/labctl" % vmimage.GUEST_CHECKOUT
        status = json.loads(self.nodes.ssh("pve3", "%s status --json" % labctl, timeout=120).stdout)
        item = next((ct for ct in status["cts"] if ct["vmid"] == OOM_VMID), None)
        if item is None or item["state"] != "running":
            raise LabError("cluster: CT %d on pve3 is not running; labctl vm ssh pve3 -- %s start %d"
                           % (OOM_VMID, labctl, OOM_VMID))
        if (item.get("memory") or {}).get("oom_kill"):
            return
        self.nodes.ssh("pve3", "%s exec %d -- %s" % (labctl, OOM_VMID, OOM_COMMAND), timeout=300, check=False)
        status = json.loads(self.nodes.ssh("pve3", "%s status --json" % labctl, timeout=120).stdout)
        item = next(ct for ct in status["cts"] if ct["vmid"] == OOM_VMID)
        kills = (item.get("memory") or {}).get("oom_kill")
        if not kills:
            raise LabError("cluster: CT %d on pve3 was not OOM-killed by a process allocating 2 GiB (memory %s)"
                           % (OOM_VMID, item.get("memory")))
        self.out("cluster: CT %d on pve3 has a real OOM history (oom_kill %d)" % (OOM_VMID, kills))

    def share(self, name):
        """The VMIDs node ``name`` holds while this host's cluster is up; None without a cluster."""
        return self.state().get("shares", {}).get(name)

    def reset(self, vmid=2017):
        """CT ``vmid`` as found again on its node (``labctl reset`` there), and the controller's copies of
        that node's lab files again (the reset restored the node's declared enva.yaml)."""
        name = next((node for node, vmids in SHARES.items() if vmid in vmids), None)
        if name is None or not self.state():
            raise LabError("cluster: no node of this host's cluster holds CT %d (labctl cluster up first)" % vmid)
        labctl = "%s/tests/lab/labctl" % vmimage.GUEST_CHECKOUT
        done = self.nodes.ssh(name, "%s reset %d" % (labctl, vmid), timeout=900, check=False)
        if done.returncode:
            raise LabError("cluster: labctl reset %d on %s failed (exit %d): %s" % (
                vmid, name, done.returncode, (done.stdout + done.stderr).strip()[-1500:]))
        self.nodes.lab_up(name, only=SHARES[name])
        self.out("cluster: CT %d on %s as found" % (vmid, name))

    def status(self):
        state = self.state()
        nodes = {node["name"]: node for node in self.nodes.status()["nodes"]}
        return {"cluster_port": state.get("cluster_port"), "shares": SHARES, "up_seconds": state.get("up_seconds"),
                "boot_seconds": state.get("boot_seconds"),
                "nodes": [dict(nodes.get(name, {"name": name, "running": False}), cluster_ip=vmnode.cluster_ip(name))
                          for name in vmnode.NAMES]}

    def down(self):
        self.nodes.down()
        if self.path.exists():
            self.path.unlink()
        if self.nodes.root.is_dir() and not any(self.nodes.root.iterdir()):
            self.nodes.root.rmdir()
        self.out("cluster: down")
