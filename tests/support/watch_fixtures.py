"""Builders shared by the watch's tests (unit and bench): a Watch on a synthetic tree, its textfile parsed."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.enva.pve.roles.oom_watch.files.enva_oom_watch.agent import TEXTFILE_NAME, Watch, parse_args


class Clock:
    """A monotonic and a wall clock the test moves (a wall clock may step; the monotonic never goes back)."""

    def __init__(self, mono=1000.0, wall=1.8e9):
        self.mono, self.wall = mono, wall

    def tick(self, seconds):
        self.mono += seconds
        self.wall += seconds


def make_watch(tmp_path, root, clock=None, extra=(), kmsg=""):
    textfile = tmp_path / "textfile"
    textfile.mkdir(exist_ok=True)
    args = parse_args(["--cgroup-root", str(root), "--textfile-dir", str(textfile), "--state-dir",
                       str(tmp_path / "state"), "--kmsg", kmsg, "--node", "node-a", "--interval", "1",
                       "--psi-trigger", ""] + list(extra))
    (tmp_path / "state").mkdir(exist_ok=True)
    clock = clock or Clock()
    return Watch(args, monotonic=lambda: clock.mono, wall=lambda: clock.wall), clock


def metrics(tmp_path):
    """The textfile as {(name, vmid or None): value}, read by prometheus_client's parser."""
    text = (tmp_path / "textfile" / TEXTFILE_NAME).read_text()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= {"vmid", "node"}, sample
            assert sample.labels["node"] == "node-a"
            vmid = int(sample.labels["vmid"]) if "vmid" in sample.labels else None
            values[(sample.name, vmid)] = sample.value
    return values
