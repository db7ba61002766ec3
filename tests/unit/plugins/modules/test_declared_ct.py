"""declared_ct: main() end to end on copies of the declared fixtures (normal, check and diff mode, backup,
idempotence, file modes and owners, error paths), and through ansible itself for what --diff prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.plugins.callback import CallbackBase

from ansible_collections.enva.pve.plugins.module_utils import declared_yaml
from ansible_collections.enva.pve.plugins.modules import declared_ct
from support import module_harness as harness
from support.module_harness import ExitJson, FailJson
from support.declared_fixtures import fixture_bytes

ROOT = Path(__file__).resolve().parents[4]
LAB_FILE = ROOT / "tests" / "lab" / "enva.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    harness.raise_on_exit(monkeypatch, cleanup_files=True)


@pytest.fixture
def site(tmp_path):
    """A copy of a declared fixture in a directory of its own."""
    def copy(name):
        target = tmp_path / name
        target.write_bytes(fixture_bytes(name))
        return target
    return copy


def run_main(**args):
    return harness.run_main(declared_ct, args)


def changed_lines(before, after):
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [(number, a, b) for number, (a, b) in enumerate(zip(old, new), 1) if a != b]


def test_raise_memory_of_2017(site):
    path = site("list-containers.yaml")
    before = path.read_bytes()
    kind, result = run_main(file=str(path), vmid=2017, memory=2048)
    assert kind is ExitJson and result["changed"] is True
    assert changed_lines(before, path.read_bytes()) == [
        (12, b"    memory: 1024           # set in 2023-03 (ticket 4711)\n",
         b"    memory: 2048           # set in 2023-03 (ticket 4711)\n")]
    assert (result["path_found"], result["line"], result["vmid"]) == ("containers[0]", 10, 2017)
    assert result["entry"]["before"]["memory"] == 1024 and result["entry"]["after"]["memory"] == 2048
    assert result["entry"]["after"]["net"] == [{"name": "eth0", "ip": "10.217.0.17/24"}]
    assert (result["memory_mb"], result["swap_mb"], result["changed_keys"]) == (2048, 1024, ["memory"])
    assert result["diff"]["before"] == before.decode() and result["diff"]["after"] == path.read_text()
    assert "backup_file" not in result
    assert not [name for name in os.listdir(path.parent) if name != path.name]   # no temporary file left


def test_check_mode_reports_and_writes_nothing(site):
    path = site("map-int-keys.yaml")
    before, stat = path.read_bytes(), path.stat()
    kind, result = run_main(file=str(path), vmid=2018, memory="1G", swap=0, _ansible_check_mode=True)
    assert kind is ExitJson and result["changed"] is True
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert result["entry"]["after"] == {"hostname": "web1", "memory": 1024, "swap": 0}
    assert changed_lines(before, result["diff"]["after"].encode()) == [
        (12, b"  2018: {hostname: web1, memory: 512, swap: 512}\n", b"  2018: {hostname: web1, memory: 1024, swap: 0}\n")]


def test_diff_is_what_ansible_prints_as_a_unified_diff(site):
    path = site("anchors-merge.yaml")
    kind, result = run_main(file=str(path), vmid=2018, memory=1024, _ansible_check_mode=True, _ansible_diff=True)
    assert kind is ExitJson
    printed = CallbackBase()._get_diff(result["diff"])
    assert printed.splitlines()[:3] == ["--- before: %s" % path, "+++ after: %s" % path, "@@ -14,6 +14,7 @@"]
    assert [line for line in printed.splitlines() if line.startswith(("+", "-")) and line[:3] not in ("---", "+++")] == [
        "+    memory: 1024"]


def test_second_run_changes_nothing_and_does_not_rewrite(site):
    path = site("nested-pve-cts.yaml")
    kind, first = run_main(file=str(path), vmid=2017, memory=2048, set={"onboot": 1})
    assert kind is ExitJson and first["changed"] is True and first["changed_keys"] == ["memory", "onboot"]
    after_first, inode = path.read_bytes(), path.stat().st_ino
    kind, second = run_main(file=str(path), vmid=2017, memory="2G", set={"onboot": 1})
    assert kind is ExitJson and second["changed"] is False and second["changed_keys"] == []
    assert path.read_bytes() == after_first and path.stat().st_ino == inode
    assert second["entry"]["before"] == second["entry"]["after"] == first["entry"]["after"]


def test_backup_mode_and_owner(site):
    path = site("crlf-bom.yaml")
    before = path.read_bytes()
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 4321, 4321)
    kind, result = run_main(file=str(path), vmid=2017, memory=4096, backup=True)
    assert kind is ExitJson and result["changed"] is True
    backup = Path(result["backup_file"])
    assert backup.parent == path.parent and backup.name.startswith("crlf-bom.yaml.") and backup.name.endswith("~")
    assert backup.read_bytes() == before
    after = path.read_bytes()
    assert after.startswith(declared_yaml.BOM) and after.count(b"\r\n") == before.count(b"\r\n")
    assert changed_lines(before, after) == [(4, b"    memory: 1024\r\n", b"    memory: 4096\r\n")]
    stat = path.stat()
    assert stat.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert (stat.st_uid, stat.st_gid) == (4321, 4321)


def test_a_file_ruamel_writes_differently_is_still_edited_byte_for_byte(tmp_path):
    path = tmp_path / "enva.yaml"
    path.write_bytes(b"# the site's CTs\n---\ncontainers: [\n  {vmid: 2017, memory: 1024},   # haproxy\n]\n")
    kind, result = run_main(file=str(path), vmid=2017, memory="2G", set={"onboot": True})
    assert kind is ExitJson and result["changed"] is True and result["changed_keys"] == ["memory", "onboot"]
    assert path.read_bytes() == (b"# the site's CTs\n---\ncontainers: [\n  {vmid: 2017, memory: 2048, onboot: true},"
                                 b"   # haproxy\n]\n")


def test_no_backup_when_nothing_changes(site):
    path = site("crlf-bom.yaml")
    kind, result = run_main(file=str(path), vmid=2017, memory=1024, backup=True)
    assert kind is ExitJson and result["changed"] is False and "backup_file" not in result
    assert os.listdir(path.parent) == [path.name]


def test_a_symlink_is_followed(site, tmp_path):
    path = site("ids-quoted.yaml")
    link = tmp_path / "enva.yaml"
    link.symlink_to(path.name)
    kind, result = run_main(file=str(link), vmid=2018, memory=768)
    assert kind is ExitJson and result["changed"] is True and result["file"] == str(link)
    assert link.is_symlink() and b"  memory: 768\n" in path.read_bytes()


def test_read_one_entry(site):
    path = site("anchors-merge.yaml")
    before = path.read_bytes()
    kind, result = run_main(file=str(path), vmid=2020)
    assert kind is ExitJson and result["changed"] is False
    assert result["entry"]["before"] == result["entry"]["after"] == {
        "vmid": 2020, "hostname": "db2", "memory": 4096, "swap": 0, "onboot": 1}
    assert (result["memory_mb"], result["swap_mb"], result["path_found"]) == (4096, 0, "containers[3]")
    assert path.read_bytes() == before


def test_read_every_entry_for_a_drift_check(site):
    path = site("list-containers.yaml")
    kind, result = run_main(file=str(path))
    assert kind is ExitJson and result["changed"] is False
    assert sorted(result["cts"]) == ["2017", "2018", "2019", "2020"]
    assert result["cts"]["2019"]["entry"]["description"] == "PostgreSQL 15.\nBackups at 02:00.\n"
    assert {vmid: (ct["memory_mb"], ct["swap_mb"]) for vmid, ct in result["cts"].items()} == {
        "2017": (1024, 1024), "2018": (512, 512), "2019": (4096, 0), "2020": (256, None)}


def test_reading_values_that_are_not_sizes_warns(site, monkeypatch):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, warning: warnings.append(warning))
    path = site("wrong-types.yaml")
    kind, result = run_main(file=str(path))
    assert kind is ExitJson and result["cts"]["2018"]["memory_mb"] is None
    assert "%s: CT 2018 (containers[1]) has memory: 'lots', which is not a size in MiB" % path in warnings
    assert len(warnings) == 6      # 2017 mapping, 2018 'lots', 2019 list, 2020 true, 2022 1.5, 2023 swap 100K


@pytest.mark.parametrize("name, args, message", [
    ("list-containers.yaml", dict(vmid=4242, memory=2048), "CT 4242 is not declared in {file}: it declares CTs 2017"),
    ("duplicate-vmid.yaml", dict(vmid=2017, memory=2048), "CT 2017 is declared 2 times in {file}"),
    ("not-yaml.yaml", dict(vmid=2017, memory=2048), "{file} is not valid YAML: line 5, column 9"),
    ("wrong-types.yaml", dict(vmid=2017, memory=2048), "memory of CT 2017 (containers[0].memory, line 3) is a mapping"),
    ("anchors-merge.yaml", dict(vmid=2022, memory=2048), "memory of CT 2022 cannot be changed alone"),
    ("list-containers.yaml", dict(memory=2048), "memory, swap and set change one CT's entry: give its vmid"),
    ("list-containers.yaml", dict(vmid=2017, memory="2 gigs"), "memory: '2 gigs' is not a size"),
    ("list-containers.yaml", dict(vmid=2017, set={"net": ["eth0"]}), "set: net must be a string, number or boolean"),
])
def test_refusals_leave_the_file_untouched(site, name, args, message):
    path = site(name)
    before = path.read_bytes()
    kind, result = run_main(file=str(path), backup=True, **args)
    assert kind is FailJson and result["changed"] is False
    assert result["msg"].startswith(message.format(file=path))
    assert path.read_bytes() == before and os.listdir(path.parent) == [name]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.yaml", "{path} does not exist; file must be the site's declared YAML file"),
    (lambda tmp: tmp, "{path} is a directory; file must be the declared YAML file itself"),
])
def test_unreadable_file(tmp_path, make, message):
    path = make(tmp_path)
    kind, result = run_main(file=str(path), vmid=2017)
    assert kind is FailJson and result["msg"] == message.format(path=path) + " (such as enva.yaml)"


def test_read_permission_denied_is_reported(site, monkeypatch):
    path = site("list-containers.yaml")
    real_open = open

    def denied(name, *args, **kwargs):
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    kind, result = run_main(file=str(path), vmid=2017)
    assert kind is FailJson
    assert result["msg"] == "cannot read %s: Permission denied; run the task as a user that can read it" % path


def test_unwritable_directory_is_reported_and_nothing_changes(site, monkeypatch):
    path = site("list-containers.yaml")
    before = path.read_bytes()

    def no_room(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(declared_ct.tempfile, "mkstemp", no_room)
    kind, result = run_main(file=str(path), vmid=2017, memory=2048)
    assert kind is FailJson
    assert result["msg"] == ("cannot write %s: Permission denied in %s; the file is replaced through a temporary file "
                             "in its directory, so the directory must be writable" % (path, path.parent))
    assert path.read_bytes() == before


def test_a_file_changed_meanwhile_is_not_overwritten(site, monkeypatch):
    path = site("list-containers.yaml")
    plan_edit = declared_yaml.plan_edit

    def someone_else_writes(*args, **kwargs):
        plan = plan_edit(*args, **kwargs)
        path.write_bytes(path.read_bytes().replace(b"hostname: web1", b"hostname: web9"))
        return plan

    monkeypatch.setattr(declared_yaml, "plan_edit", someone_else_writes)
    kind, result = run_main(file=str(path), vmid=2017, memory=2048)
    assert kind is FailJson
    assert result["msg"] == "%s changed while this task edited it, so nothing was written; run the task again" % path
    assert b"hostname: web9" in path.read_bytes() and b"memory: 1024 " in path.read_bytes()


def test_missing_ruamel_yaml_is_named(monkeypatch, site):
    monkeypatch.setattr(declared_yaml, "HAS_RUAMEL", False)
    kind, result = run_main(file=str(site("list-containers.yaml")), vmid=2017)
    assert kind is FailJson
    assert result["msg"].startswith("Failed to import the required Python library (ruamel.yaml)")


def ansible(*args, cwd):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    return subprocess.run([str(BIN / "ansible"), "localhost", "-m", "enva.pve.declared_ct", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, check=False)


def test_through_ansible_check_diff_then_for_real(site):
    path = site("list-containers.yaml")
    before = path.read_bytes()
    checked = ansible("-a", "file=%s vmid=2017 memory=2048" % path, "--check", "--diff", cwd=path.parent)
    assert checked.returncode == 0, checked.stderr
    assert "-    memory: 1024           # set in 2023-03 (ticket 4711)\n" in checked.stdout
    assert "+    memory: 2048           # set in 2023-03 (ticket 4711)\n" in checked.stdout
    assert "localhost | CHANGED" in checked.stdout and path.read_bytes() == before
    applied = ansible("-a", "file=%s vmid=2017 memory=2048" % path, cwd=path.parent)
    assert applied.returncode == 0 and "CHANGED" in applied.stdout
    assert changed_lines(before, path.read_bytes())[0][0] == 12
    again = ansible("-a", "file=%s vmid=2017 memory=2G" % path, cwd=path.parent)
    assert again.returncode == 0 and "localhost | SUCCESS" in again.stdout


def test_lab_sample_file_2017_to_2048_changes_exactly_its_memory_line(tmp_path):
    path = tmp_path / "enva.yaml"
    shutil.copyfile(LAB_FILE, path)
    before = path.read_bytes()
    checked = ansible("-a", "file=%s vmid=2017 memory=2048" % path, "--check", "--diff", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert [line for line in checked.stdout.splitlines() if line.startswith(("-", "+"))] == [
        "--- before: %s" % path, "+++ after: %s" % path, "-    memory: 1024", "+    memory: 2048"]
    assert path.read_bytes() == before
    kind, result = run_main(file=str(path), vmid=2017, memory=2048)
    assert kind is ExitJson and result["changed"] is True and result["path_found"] == "containers[0]"
    ((number, old, new),) = changed_lines(before, path.read_bytes())
    assert (old, new) == (b"    memory: 1024\n", b"    memory: 2048\n")
    entry_lines = before.decode().splitlines()[result["line"] - 1:number]
    assert not any(line.startswith("  - ") for line in entry_lines[1:])      # the line is in 2017's own entry
    assert result["entry"]["before"]["memory"] == 1024 and result["memory_mb"] == 2048


def test_ansible_doc_renders():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    doc = subprocess.run([str(BIN / "ansible-doc"), "enva.pve.declared_ct"], capture_output=True, text=True, env=env,
                         check=True).stdout
    for word in ("file", "vmid", "path", "memory", "swap", "set", "backup", "path_found", "backup_file", "diff_mode"):
        assert word in doc
