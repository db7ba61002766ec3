"""Inputs of the fleet audit report as the audit's modules produce them, from the project's fixtures.

* the evidence of a node: ``lxc_oom_evidence.gather()`` on the fixture node (PVE configs, a cgroup v2 tree, the
  CT 2017 incident journal, the lifecycle journal);
* ``/cluster/resources``: ``pve_resources.summarize()`` over items shaped as PVE answers them;
* the declared file: ``declared_ct.read_all()`` over a YAML file shaped like the lab's enva.yaml.
"""

from __future__ import annotations

from pathlib import Path

from ansible_collections.enva.pve.plugins.module_utils import declared_yaml
from ansible_collections.enva.pve.plugins.modules import declared_ct, lxc_oom_evidence, pve_resources

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
NOW = 1732406400.0            # 2024-11-24T00:00:00Z, a day after the fixture incident
MIB = 1024 * 1024

DECLARED = """\
# declared CTs of the site
site: lab
containers:
  - vmid: 2017
    hostname: haproxy
    memory: 1024   # the incident's size
    swap: 1024
  - vmid: 101
    hostname: app
    memory: 1024
    swap: 512
  - vmid: 4242
    hostname: gone
    memory: 512
    swap: 512
"""


def node_evidence(since="@1732320000", census=True):
    """The fixture node's evidence, as the module returns it (JSON-ready)."""
    old = lxc_oom_evidence.JOURNALD_SOCKET
    lxc_oom_evidence.JOURNALD_SOCKET = "/nonexistent/journal/socket"
    try:
        result = lxc_oom_evidence.gather({
            "vmid": None, "since": since, "kernel_log": str(FIXTURES / "kernel" / "incident-2017-v2.journal.jsonl"),
            "lifecycle_log": str(FIXTURES / "lifecycle"), "census": census,
            "cgroup_root": str(FIXTURES / "cgroup" / "v2-node"), "pve_config_dir": str(FIXTURES / "pve-lxc")},
            run=None, now=NOW)
    finally:
        lxc_oom_evidence.JOURNALD_SOCKET = old
    result.pop("warnings", None)
    return result


def resource_item(vmid, node, name, status, maxmem_mb, mem_mb, tags=None):
    item = {"id": "lxc/%d" % vmid, "type": "lxc", "vmid": vmid, "node": node, "name": name, "status": status,
            "maxmem": maxmem_mb * MIB, "mem": mem_mb * MIB, "maxcpu": 1, "cpu": 0.01, "uptime": 3600,
            "disk": 0, "maxdisk": 8 << 30, "template": 0}
    if tags:
        item["tags"] = tags
    return item


def cluster(extra=()):
    """``pve_resources``' result for the fixture node pve1 (and ``extra`` items)."""
    items = [
        {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online", "cgroup-mode": 2,
         "mem": 8 << 30, "maxmem": 64 << 30, "maxcpu": 16, "uptime": 86400},
        resource_item(2017, "pve1", "haproxy", "running", 1024, 1023, "lab;haproxy"),
        resource_item(101, "pve1", "app", "running", 2048, 768),
        resource_item(102, "pve1", "db", "running", 512, 50),
        resource_item(9000, "pve1", "stopped-template", "stopped", 512, 0),
    ] + list(extra)
    cts, nodes, counts = pve_resources.summarize(items)
    return {"cts": cts, "nodes": nodes, "counts": counts}


def declared(tmp_path, text=DECLARED):
    path = Path(tmp_path) / "enva.yaml"
    path.write_text(text)
    cts, _warnings = declared_ct.read_all(declared_yaml.Document(text, str(path)), None)
    return {"cts": cts, "file": str(path)}


def varied_fleet(tmp_path, far_cts=1):
    """A report with every severity but fork storm: 2017 OOM-killed (as found), 101 low headroom (peak 1,900 of
    2,048 MiB), 102 memory stalls (PSI some avg60 20%), 9000 drift (declared 256 MiB), ``far_cts`` CTs 3001...
    on pve2, which was not audited (no evidence), 703 ok. Raises recommended: 2017 and 101."""
    from ansible_collections.enva.pve.plugins.plugin_utils import oom_audit_report

    evidence = node_evidence()
    evidence["cts"]["101"]["counters"]["peak_bytes"] = 1900 * MIB
    evidence["cts"]["102"]["counters"]["pressure"] = {
        "some": {"avg10": 25.0, "avg60": 20.0, "avg300": 9.0, "total": 9000000},
        "full": {"avg10": 0.5, "avg60": 0.4, "avg300": 0.1, "total": 100000}}
    text = DECLARED + "  - vmid: 9000\n    hostname: stopped-template\n    memory: 256\n    swap: 512\n"
    extra = [resource_item(3001 + index, "pve2", "far%d" % index, "running", 1024, 300 + 40 * index)
             for index in range(far_cts)]
    return oom_audit_report.build_report(cluster(extra), {"pve1": evidence}, declared=declared(tmp_path, text),
                                         declared_path="/srv/site/enva.yaml")
