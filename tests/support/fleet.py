"""A synthetic PVE fleet for the OOM audit, and one timed run of the audit over it.

Built in a temporary directory: the PVE API lab in synthetic mode (``python3 -m enva_lab.api_lab serve
--synthetic-cts N --nodes M``: CT configs and real cgroup v2 directories per node, served over HTTPS on a
random loopback port; each running CT's ``cgroup.procs`` lists real pids, so the census reads /proc); per node
a kernel log in ``journalctl -o short-iso-precise`` form, LINES_PER_CT lines per CT (chatter, memcg OOM reports
of OOM_SHARE of the CTs with their task dumps, and one CT's socat storm with a 1,361-row task dump) and a
lifecycle journal directory with 3 events per CT; an inventory of the nodes (local connections) pointing the
oom_audit role at those.

Used by tests/bench/bench_oom_audit.py, tests/bench/bench_oom_audit_scale.py and
tests/integration/report/test_remediation_command.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from support import oom_corpus
from support.procfs import cpu_seconds
from support.pve_lab import ApiLabProcess

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
NODES = 3
LINES_PER_CT = 100
OOM_SHARE = 0.04
FIRST_VMID = 10000
STORM_INDEX = 7            # CT 10007 on pve2 has the socat storm
AUDIT_TIMEOUT_S = 3600
START = time.time() - 86400.0


def node_of(index, nodes=NODES):
    """The node of the ``index``-th CT, as the API lab's synthetic mode spreads them."""
    return "pve%d" % (index % nodes + 1)


def fill_procs(synthetic, pids):
    """Real pids in each running CT's cgroup.procs (the census reads /proc for them)."""
    text = "".join("%d\n" % pid for pid in pids)
    for procs in Path(synthetic, "nodes").glob("pve*/cgroup/lxc/*/cgroup.procs"):
        procs.write_text(text)


def kernel_messages(vmids, rng, storm_vmid):
    """(offset seconds, message) pairs for one node: LINES_PER_CT per CT, OOM reports of OOM_SHARE of its CTs."""
    reports = []
    if storm_vmid is not None:
        tasks = [(500000 + i, "socat", 180) for i in range(1361)] + [(499000, "haproxy", 5200)]
        reports.append(oom_corpus.oom_report(storm_vmid, "socat", 500007, "socat", tasks, 1 << 20)
                       + [oom_corpus.killed_line(500000 + i, "socat") for i in range(20, 60)])
    candidates = [vmid for vmid in vmids if vmid != storm_vmid]
    for vmid in rng.sample(candidates, max(1, int(len(vmids) * OOM_SHARE))):
        tasks = [(vmid * 100 + i, rng.choice(("java", "node", "php-fpm", "postgres", "systemd")), 3000)
                 for i in range(30)]
        reports.append(oom_corpus.oom_report(vmid, tasks[0][1], tasks[0][0], tasks[0][1], tasks, 1 << 20)
                       + [oom_corpus.reaped_line(tasks[0][0], tasks[0][1])])
    total = LINES_PER_CT * len(vmids)
    chatter = max(total - sum(len(report) for report in reports), 10 * len(reports))   # tiny fleets: more lines
    step = 86000.0 / chatter
    slots = sorted(rng.sample(range(chatter), len(reports)))
    messages, index = [], 0
    for i in range(chatter):
        while index < len(reports) and slots[index] == i:
            messages.extend((i * step + j * 0.0003, line) for j, line in enumerate(reports[index]))
            index += 1
        messages.append((i * step + 0.5, oom_corpus.CHATTER[i % len(oom_corpus.CHATTER)] % (rng.choice(vmids), i)))
    return messages


def write_node_logs(base, node, vmids, rng, storm_vmid):
    directory = base / "logs" / node
    journal = directory / "journal"
    journal.mkdir(parents=True)
    kern_log = directory / "kern.log"
    messages = kernel_messages(vmids, rng, storm_vmid)
    with open(kern_log, "w") as handle:
        for offset, message in messages:
            handle.write(oom_corpus.short_iso_precise(START + offset, message, host=node) + "\n")
    oom_corpus.write_lifecycle_journals(journal, vmids, START)
    return kern_log, journal, len(messages)


def write_inventory(base, synthetic, api, logs):
    hosts = {}
    for node, (kern_log, journal, _lines) in logs.items():
        hosts[node] = {
            "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python"),
            "oom_audit_cgroup_root": str(Path(synthetic, "nodes", node, "cgroup")),
            "oom_audit_pve_config_dir": str(Path(synthetic, "nodes", node, "lxc")),
            "oom_audit_kernel_log": str(kern_log), "oom_audit_lifecycle_log": str(journal),
        }
    inventory = {"all": {"children": {"pve_nodes": {"hosts": hosts}}, "vars": {
        "oom_audit_api_host": "127.0.0.1", "oom_audit_api_port": api.port, "oom_audit_api_user": "enva@pve",
        "oom_audit_api_token_id": "readonly",
        "oom_audit_api_token_secret": api.credentials["tokens"]["enva@pve!readonly"]["secret"],
        "oom_audit_ca_path": str(api.labdir / "pki" / "pve-root-ca.pem"), "oom_audit_become": False,
        "oom_audit_since": "@%d" % int(START - 60), "oom_audit_report_dir": str(base / "report")}}}
    path = base / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path


@dataclasses.dataclass
class Fleet:
    """One synthetic fleet, built and not timed: the API lab serving it, per-node logs, the inventory."""

    base: Path
    api: ApiLabProcess
    cts: int
    nodes: int
    inventory: Path
    storm_vmid: int
    expected_oom: int
    lines: int
    log_bytes: int

    def resources_calls(self):
        return self.api.log_path.read_text().count("GET /api2/json/cluster/resources")

    def report(self):
        return json.loads((self.base / "report" / "oom-audit.json").read_text())


@contextlib.contextmanager
def fleet(cts, nodes=NODES, wrapper=()):
    """A temporary directory with the API lab (started with ``wrapper`` before its command, e.g. taskset)
    serving ``cts`` synthetic CTs on ``nodes`` nodes, each node's logs and the inventory; the server is
    stopped and the directory removed on the way out."""
    rng = random.Random(cts)
    with tempfile.TemporaryDirectory(prefix="bench-oom-audit-") as tmp:
        base = Path(tmp)
        api = ApiLabProcess(base / "labdir", "--synthetic-cts", str(cts), "--nodes", str(nodes),
                            startup_seconds=300, wrapper=wrapper)
        try:
            synthetic = base / "labdir" / "synthetic"
            fill_procs(synthetic, [os.getpid(), os.getppid()])
            all_vmids = [FIRST_VMID + index for index in range(cts)]
            storm_vmid = FIRST_VMID + STORM_INDEX
            logs, lines, expected_oom = {}, 0, 1
            for index in range(1, nodes + 1):
                node = "pve%d" % index
                vmids = [vmid for i, vmid in enumerate(all_vmids) if node_of(i, nodes) == node]
                expected_oom += max(1, int(len(vmids) * OOM_SHARE))
                logs[node] = write_node_logs(base, node, vmids, rng, storm_vmid if storm_vmid in vmids else None)
                lines += logs[node][2]
            yield Fleet(base=base, api=api, cts=cts, nodes=nodes, inventory=write_inventory(base, synthetic, api, logs),
                        storm_vmid=storm_vmid, expected_oom=expected_oom, lines=lines,
                        log_bytes=sum(Path(logs[node][0]).stat().st_size for node in logs))
        finally:
            api.stop()


def run_audit(the_fleet, forks=NODES, settings=None, wrapper=()):
    """One timed ``ansible-playbook playbooks/oom_audit.yml`` (``wrapper`` before it, e.g. taskset) with
    ANSIBLE_FORKS and ``settings`` (more ANSIBLE_* variables), the previous report removed first: its exit
    status, wall time, the CPU time of ansible-playbook with all its workers and modules, the API lab's
    CPU time, its /cluster/resources requests, and the first error line of a failed run."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
               ANSIBLE_FORKS=str(forks), PATH="%s:%s" % (BIN, os.environ.get("PATH", "")), **(settings or {}))
    shutil.rmtree(the_fleet.base / "report", ignore_errors=True)
    calls_before, api_cpu_before = the_fleet.resources_calls(), cpu_seconds(the_fleet.api.proc.pid)
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Its own process group (not its own session: sched_autogroup would then give it a CPU share of its
    # own), so a run past the timeout is killed with all its workers and modules.
    with subprocess.Popen([*wrapper, str(BIN / "ansible-playbook"), "-i", str(the_fleet.inventory),
                           str(ROOT / "playbooks" / "oom_audit.yml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=str(ROOT), process_group=0) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=AUDIT_TIMEOUT_S)
            errors = []
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            errors = ["timed out after %d s" % AUDIT_TIMEOUT_S]
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    errors += [line for line in (stdout + stderr).splitlines() if line.startswith(("[ERROR]", "ERROR!"))]
    return {"returncode": proc.returncode, "wall_s": elapsed,
            "cpu_s": usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime,
            "api_cpu_s": cpu_seconds(the_fleet.api.proc.pid) - api_cpu_before,
            "resources_calls": the_fleet.resources_calls() - calls_before,
            "error": (errors or ["exit status %d" % proc.returncode])[0] if proc.returncode else "",
            "output": "%s\n%s" % (stdout[-4000:], stderr[-2000:]) if proc.returncode else ""}


def check_report(the_fleet, report, calls):
    """The report's correctness after ``calls`` (/cluster/resources requests of each run): every CT, every
    node, the storm CT first, the OOM-killed CTs, one /cluster/resources request per run."""
    first = report["cts"][0]
    expected = {FIRST_VMID + index for index in range(the_fleet.cts)}
    return {
        "every CT": report["summary"]["cts"] == the_fleet.cts and {ct["vmid"] for ct in report["cts"]} == expected,
        "every node audited": sorted(node["node"] for node in report["nodes"] if node["audited"])
        == sorted("pve%d" % index for index in range(1, the_fleet.nodes + 1)),
        "storm CT first": first["vmid"] == the_fleet.storm_vmid and first["fork_storm"]["process"] == "socat",
        "OOM-killed CTs": len(report["summary"]["oom_killed"]) == the_fleet.expected_oom,
        "one /cluster/resources call per run": list(calls) == [1] * len(calls),
    }
