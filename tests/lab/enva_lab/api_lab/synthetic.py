"""A generated cluster for scale tests of the fleet audit: CT configs and cgroup v2 trees on disk."""

import json
import shutil
from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils import pve_ct_config
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import DEFAULT_MIB

SYNTHETIC_SIZES = (512, 1024, 1024, 2048, 4096)
QUIET_PSI = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0"


def make_synthetic(directory, cts, node_count):
    """``<directory>/nodes/pveN/{lxc,cgroup}``: ``cts`` CT configs spread over ``node_count`` nodes, nine in
    ten running with a cgroup v2 tree; made once per (cts, nodes), deterministic."""
    directory = Path(directory)
    stamp = directory / "synthetic.json"
    wanted = {"cts": cts, "nodes": node_count, "pressure": 1}
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == wanted:
        return directory
    shutil.rmtree(directory / "nodes", ignore_errors=True)
    for index in range(cts):
        vmid = 10000 + index
        name = "pve%d" % (index % node_count + 1)
        base = directory / "nodes" / name
        memory = SYNTHETIC_SIZES[index % len(SYNTHETIC_SIZES)]
        (base / "lxc").mkdir(parents=True, exist_ok=True)
        (base / "lxc" / ("%d.conf" % vmid)).write_text(
            "arch: amd64\ncores: 1\nhostname: ct%d\nmemory: %d\nnet0: name=eth0,bridge=vmbr0,ip=dhcp,type=veth\n"
            "onboot: 1\nostype: debian\nrootfs: local:%d/vm-%d-disk-0.raw,size=8G\nswap: %d\n"
            % (vmid, memory, vmid, vmid, DEFAULT_MIB["swap"]), encoding="utf-8")
        cgroup = base / "cgroup"
        cgroup.mkdir(parents=True, exist_ok=True)
        (cgroup / "cgroup.controllers").write_text("cpuset cpu io memory pids\n", encoding="ascii")
        ct = cgroup / "lxc" / str(vmid)
        if index % 10 == 9:
            continue
        ct.mkdir(parents=True, exist_ok=True)
        used = memory * MIB * (20 + (index * 37) % 75) // 100
        files = {"memory.max": memory * MIB, "memory.high": pve_ct_config.memory_high_bytes(memory), "memory.current": used,
                 "memory.peak": min(used + used // 5, memory * MIB), "memory.swap.max": DEFAULT_MIB["swap"] * MIB,
                 "memory.swap.current": 0, "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0",
                 "memory.stat": "anon %d\nfile 0\ninactive_file 0" % used, "cgroup.procs": "",
                 # PSI as a quiet PVE 9 node shows it (status/current's pressure fields read these).
                 "memory.pressure": QUIET_PSI, "cpu.pressure": QUIET_PSI, "io.pressure": QUIET_PSI}
        for file_name, value in files.items():
            (ct / file_name).write_text("%s\n" % value, encoding="ascii")
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return directory
