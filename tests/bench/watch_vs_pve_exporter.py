"""Side by side: prometheus-pve-exporter (PyPI, pinned) against the PVE API lab, and enva-oom-watch, during
the same incident (``labctl reproduce`` on CT 2017 as found, then the CT started again).

Needs root and the lab, so it is not part of ``make bench``; run it holding the lab lock:

    flock /run/enva-lab.lock .venv/bin/python tests/bench/watch_vs_pve_exporter.py --write docs/benchmarks.md

Both are sampled every second while the flood runs and for 20 s after the CT is started again:
the exporter's ``/pve?target=127.0.0.1&cluster=1&node=0`` (token enva@pve!readonly, read-only) and the
watch's textfile (the agent at a 1 s interval, following /dev/kmsg). The table says what each shows of
CT 2017 (``id="lxc/2017"`` / ``vmid="2017"``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support and the collection on sys.path
import sections  # noqa: E402
from support.cgroup_tree import AGENT_HOME  # noqa: E402

from ansible_collections.enva.pve.plugins.module_utils.flight_record import read_records, storm_commands  # noqa: E402

LABCTL = str(ROOT / "tests" / "lab" / "labctl")
LAB_DIR = Path(os.environ.get("ENVA_LAB_DIR", "/var/lib/enva-lab"))
EXPORTER_PORT = 19221
VMID = 2017


def labctl(*args, check=True):
    result = subprocess.run([LABCTL] + list(args), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        sys.exit("labctl %s: %s" % (" ".join(args), result.stderr.strip() or result.stdout.strip()))
    return result


def parse(text, match):
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if all(sample.labels.get(key) == value for key, value in match.items()):
                values[sample.name] = sample.value
    return values


class Sampler(threading.Thread):
    def __init__(self, textfile):
        super().__init__(daemon=True)
        self.textfile = textfile
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            at = time.time()
            pve = watch = None
            try:
                url = "http://127.0.0.1:%d/pve?target=127.0.0.1&cluster=1&node=0" % EXPORTER_PORT
                with urllib.request.urlopen(url, timeout=5) as response:
                    pve = parse(response.read().decode(), {"id": "lxc/%d" % VMID})
            except OSError as error:
                pve = {"error": str(error)}
            try:
                watch = parse(self.textfile.read_text(), {"vmid": str(VMID)})
            except (OSError, ValueError):
                watch = {}
            self.samples.append({"t": at, "pve": pve, "watch": watch})
            self.stop.wait(max(0.0, 1.0 - (time.time() - at)))


def first_rise(samples, side, name):
    """When the value first went above the first one sampled (a counter may start above 0)."""
    values = [(sample["t"], sample[side][name]) for sample in samples if isinstance(sample[side].get(name), (int, float))]
    for at, value in values:
        if value > values[0][1]:
            return at
    return None


def first_time(samples, side, name, test):
    for sample in samples:
        value = sample[side].get(name)
        if value is not None and test(value):
            return sample["t"]
    return None


def peak(samples, side, name):
    values = [sample[side][name] for sample in samples if isinstance(sample[side].get(name), (int, float))]
    return max(values) if values else None


def mib(value):
    return "%.0f MiB" % (value / 1048576.0) if value is not None else "-"


def table(samples, incident, restart_at, flight):
    names_pve = sorted({name for sample in samples for name in sample["pve"] if name != "error"})
    names_watch = sorted({name for sample in samples for name in sample["watch"]})
    oom_at = incident.get("started", 0) + (incident.get("seconds_to_oom") or 0)
    last = samples[-1]
    down_pve = first_time(samples, "pve", "pve_up", lambda v: v == 0)
    down_watch = first_time(samples, "watch", "enva_ct_up", lambda v: v == 0)
    kill_watch = first_rise(samples, "watch", "enva_ct_oom_kills_total")
    socat = max([item["count"] for record in flight for item in storm_commands(record) if item["name"] == "socat"]
                or [0])
    rows = [
        ("series of CT 2017", "%d: %s" % (len(names_pve), ", ".join("`%s`" % n for n in names_pve)),
         "%d (`enva_ct_*`)" % len(names_watch)),
        ("memory at its peak during the flood", "%s of %s (`pve_memory_usage_bytes`)" % (
            mib(peak(samples, "pve", "pve_memory_usage_bytes")), mib(peak(samples, "pve", "pve_memory_size_bytes"))),
         "%s of %s; page cache at most %s" % (mib(peak(samples, "watch", "enva_ct_memory_usage_bytes")),
                                              mib(peak(samples, "watch", "enva_ct_memory_limit_bytes")),
                                              mib(peak(samples, "watch", "enva_ct_memory_page_cache_bytes")))),
        ("OOM kills in the CT", "nothing (no such series)",
         "`enva_ct_oom_kills_total` +%d, cgroup `oom_kill` %d (v1 counts a nested cgroup's kill there only); "
         "in the textfile %s s after the OOM" % (
             last["watch"].get("enva_ct_oom_kills_total", 0) - samples[0]["watch"].get("enva_ct_oom_kills_total", 0),
             last["watch"].get("enva_ct_memory_oom_kill_events_total", 0),
             "%.1f" % (kill_watch - oom_at) if kill_watch else "-")),
        ("limit hits (v1 failcnt / v2 max events)", "nothing",
         "`enva_ct_memory_max_events_total` %d" % last["watch"].get("enva_ct_memory_max_events_total", 0)),
        ("tasks (the fork storm)", "nothing", "`enva_ct_tasks` up to %d" % (peak(samples, "watch", "enva_ct_tasks") or 0)),
        ("what filled it, after the CT stopped", "nothing",
         "flight record: %d socat processes (%d records)" % (socat, len(flight))),
        ("the CT down", ("`pve_up` 0 %.1f s after the OOM" % (down_pve - oom_at)) if down_pve
         else "`pve_up` never 0 in the 1 s samples",
         ("`enva_ct_up` 0 %.1f s after the OOM" % (down_watch - oom_at)) if down_watch
         else "`enva_ct_up` never 0 in the 1 s samples"),
        ("20 s after the CT started again", "usage %s, nothing of the incident" % mib(last["pve"].get(
            "pve_memory_usage_bytes")), "`enva_ct_oom_kills_total` still %d (monotonic across the restart)" %
         last["watch"].get("enva_ct_oom_kills_total", 0)),
    ]
    lines = ["| | prometheus-pve-exporter 3.10.2 (PVE API) | enva-oom-watch (node) |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % row for row in rows]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="MARKDOWN")
    args = parser.parse_args()
    status = labctl("status", "--json", check=False)
    if status.returncode != 0 or not json.loads(status.stdout or "{}").get("api", {}).get("pid"):
        labctl("up")
    labctl("reset", str(VMID))
    credentials = json.loads((LAB_DIR / "api" / "credentials.json").read_text())
    token = credentials["tokens"]["enva@pve!readonly"]["secret"]
    with tempfile.TemporaryDirectory(prefix="watch-vs-pve-") as tmp:
        tmp = Path(tmp)
        (tmp / "tf").mkdir()
        (tmp / "pve.yml").write_text(json.dumps({"default": {
            "user": "enva@pve", "token_name": "readonly", "token_value": token,
            "verify_ssl": str(LAB_DIR / "pki" / "pve-root-ca.pem")}}))
        exporter = subprocess.Popen(
            [str(Path(sys.executable).with_name("pve_exporter")), "--config.file", str(tmp / "pve.yml"),
             "--web.listen-address", "127.0.0.1:%d" % EXPORTER_PORT, "--no-collector.backup-info",
             "--no-collector.qdevice", "--no-collector.config", "--no-collector.replication",
             "--no-collector.subscription"], stdout=subprocess.DEVNULL, stderr=open(tmp / "exporter.log", "w"))
        agent = subprocess.Popen(
            [sys.executable, "-m", "enva_oom_watch", "--textfile-dir", str(tmp / "tf"), "--state-dir",
             str(tmp / "state"), "--interval", "1", "--node", "pve1"],
            env=dict(os.environ, PYTHONPATH="%s:%s" % (AGENT_HOME, ROOT / ".cache" / "collections")),
            stderr=subprocess.DEVNULL)
        sampler = Sampler(tmp / "tf" / "enva_oom_watch.prom")
        try:
            time.sleep(4)
            sampler.start()
            time.sleep(3)
            lines = labctl("reproduce", "--json").stdout.splitlines()
            incident = json.loads("\n".join(lines[lines.index("{"):]))     # progress lines, then the JSON
            labctl("start", str(VMID))
            restart_at = time.time()
            time.sleep(20)
            sampler.stop.set()
            sampler.join(timeout=10)
            flight = read_records(str(tmp / "state" / "flight"), vmid=VMID)
        finally:
            for process in (agent, exporter):
                process.terminate()
                process.wait(timeout=20)
            labctl("reset", str(VMID), check=False)
        errors = [sample["pve"]["error"] for sample in sampler.samples if "error" in sample["pve"]]
        if errors:
            print("bench: the exporter failed %d of %d scrapes: %s; %s" % (
                len(errors), len(sampler.samples), errors[0], (tmp / "exporter.log").read_text()[-500:]))
    Path(ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "watch_vs_pve_exporter.json").write_text(json.dumps(
        {"incident": incident, "samples": sampler.samples}, indent=1, default=str))
    lines = table(sampler.samples, incident, restart_at, flight)
    body = "\n".join([
        "Measured with `tests/bench/watch_vs_pve_exporter.py` on the host lab (cgroup v1) during one "
        "`labctl reproduce` of CT 2017 as found (%d q/s, OOM after %.1f s, CT %s), both sampled every second, "
        "%d samples. prometheus-pve-exporter reads the PVE API (here the PVE API lab, token with VM.Audit); "
        "the watch reads the node's cgroups and kernel log." % (
            incident.get("qps", 0), incident.get("seconds_to_oom") or 0, incident.get("ct_state"),
            len(sampler.samples)),
        ""] + lines)
    print(body)
    if args.write:
        sections.replace_section(Path(args.write), "watch_vs_pve_exporter",
                                 "## The OOM watch next to prometheus-pve-exporter", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
