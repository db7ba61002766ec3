"""declared_ct's core (decode, Document, plan_edit; reading every CT) timed on the lab's enva.yaml and on a 1,000-CT file,
this checkout's declared_yaml against the one of a git revision, in the same run (median of N rounds).

    taskset -c 1 .venv/bin/python tests/bench/bench_declared_yaml.py --ref 7ce8c03 --rounds 5

Not part of `make bench` (a development measurement for issue 13); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import bootstrap  # noqa: F401  pylint: disable=unused-import  # the collection on sys.path
from ansible_collections.enva.pve.plugins.module_utils import declared_yaml as current
from support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def at_revision(ref):
    """declared_yaml.py as it is at git revision ``ref``, imported under another name."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", "%s:plugins/module_utils/declared_yaml.py" % ref],
                          capture_output=True, text=True, check=True).stdout
    handle, path = tempfile.mkstemp(suffix=".py")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    return load_script(path, "declared_yaml_at_%s" % ref)


def fleet(count):
    """A declared file of ``count`` CTs shaped like the lab's enva.yaml (comments, flow lists)."""
    lines = ["---\n", "# enva.yaml of a large site: %d CTs\n" % count, "site: big\n", "node: pve1\n", "containers:\n"]
    for index in range(count):
        vmid = 3000 + index
        lines += ["  # CT %d\n" % vmid, "  - vmid: %d\n" % vmid, "    hostname: ct%d\n" % vmid,
                  "    memory: %d   # MiB\n" % (512 + 256 * (index % 4)), "    swap: 512\n", "    cores: 2\n",
                  "    onboot: 1\n", "    ip: 10.%d.%d.%d\n" % (index // 65536, index // 256 % 256, index % 256),
                  "    description: CT number %d of the fleet\n" % index, "    tags: [fleet, web]\n", "\n"]
    return "".join(lines).encode()


def edit(module, data, vmid, memory):
    text, _bom = module.decode(data, "enva.yaml")
    plan = module.plan_edit(module.Document(text, "enva.yaml"), vmid, module.changes_from(memory))
    assert plan.changed
    return plan.new_text


def read_all(module, data):
    text, _bom = module.decode(data, "enva.yaml")
    doc = module.Document(text, "enva.yaml")
    return [module.entry_summary(doc, entry) for entry in doc.unique_entries()]


def timed(function, rounds):
    samples = []
    for _round in range(rounds):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="git revision to compare with (the version before)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    before = at_revision(args.ref)
    cases = [("tests/lab/enva.yaml, CT 2017 memory 2048", (ROOT / "tests/lab/enva.yaml").read_bytes(), 2017),
             ("1,000 CTs, CT 3500 memory 4096", fleet(1000), 3500)]
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    print("| case | %s (s) | this checkout (s) |\n|---|---:|---:|" % args.ref)
    for name, data, vmid in cases:
        memory = 2048 if vmid == 2017 else 4096
        assert edit(before, data, vmid, memory) == edit(current, data, vmid, memory), "the two versions differ"
        old = timed(lambda: edit(before, data, vmid, memory), args.rounds)
        new = timed(lambda: edit(current, data, vmid, memory), args.rounds)
        print("| %s | %.3f | %.3f |" % (name, old, new))
    data = cases[1][1]
    assert read_all(before, data) == read_all(current, data), "the two versions read differently"
    old = timed(lambda: read_all(before, data), args.rounds)
    new = timed(lambda: read_all(current, data), args.rounds)
    print("| 1,000 CTs, read every CT | %.3f | %.3f |" % (old, new))


if __name__ == "__main__":
    main()
