"""Debian releases in the lab (issue 22): VM nodes PVE 9-shaped (trixie) by default or PVE 8 (bookworm), and each
CT on the release its declared entry names (bookworm unless it says ``release:``)."""

from __future__ import annotations

import json

import pytest

from enva_lab import ct, declared, rootfs, settings, vmimage
from enva_lab.errors import LabError
from enva_lab.settings import Layout

ENTRY = "containers:\n  - vmid: 2101\n    hostname: web\n    ip: 10.217.0.101\n"


@pytest.mark.parametrize("value, name", [
    ("trixie", "trixie"), ("13", "trixie"), (13, "trixie"), ("Debian-13", "trixie"), ("9", "trixie"),
    ("pve9", "trixie"), ("bookworm", "bookworm"), ("12", "bookworm"), ("8", "bookworm"), ("PVE8", "bookworm")])
def test_a_release_by_codename_version_or_pve_major(value, name):
    assert settings.release_name(value) == name


def test_an_unknown_release_is_refused_naming_the_ones_the_lab_builds():
    with pytest.raises(ValueError, match=r"'forky' is not one the lab builds: bookworm \(Debian 12\), trixie"):
        settings.release_name("forky")


@pytest.mark.parametrize("value", ["forky", "14", 14, "sid", "Debian-14"])
def test_a_ct_of_an_unknown_debian_release_is_handled_as_debians_newest_with_a_note(value):
    release, note = settings.ct_release(value)
    assert release == "trixie"
    assert "%r is not one the lab builds: handled as Debian's, on trixie (Debian 13)" % (value,) in note


@pytest.mark.parametrize("value", ["bookworm", "13", "pve9"])
def test_a_ct_of_a_release_the_lab_builds_has_no_note(value):
    assert settings.ct_release(value)[1] is None


@pytest.mark.parametrize("value", ["", "not a release", "../etc", True, None, ["trixie"], "x" * 40])
def test_a_ct_release_that_is_no_release_name_is_refused(value):
    with pytest.raises(ValueError, match="is not a Debian codename or version"):
        settings.ct_release(value)


def test_a_declared_ct_of_an_unknown_release_runs_on_the_newest_and_says_so():
    cts = declared.read_text(ENTRY + "    release: forky\n", "enva.yaml")
    assert cts[0].release == "trixie"
    assert cts[0].release_note.startswith("enva.yaml")
    assert "'forky' is not one the lab builds" in cts[0].release_note


def test_a_declared_ct_release_that_is_no_name_is_a_declared_file_error():
    with pytest.raises(declared.DeclaredFileError, match=r"release '\.\./x' is not a Debian codename"):
        declared.read_text(ENTRY + "    release: ../x\n", "enva.yaml")


@pytest.mark.parametrize("pve, release", [(None, "trixie"), ("9", "trixie"), ("8", "bookworm"), ("pve8", "bookworm")])
def test_nodes_are_pve_9_shaped_unless_enva_lab_pve_says_8(monkeypatch, pve, release):
    if pve is None:
        monkeypatch.delenv("ENVA_LAB_PVE", raising=False)
    else:
        monkeypatch.setenv("ENVA_LAB_PVE", pve)
    assert settings.node_release() == release
    assert settings.node_release("bookworm") == "bookworm"          # --release wins over the environment


def test_enva_lab_pve_other_than_9_or_8_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("ENVA_LAB_PVE", "7")
    with pytest.raises(LabError, match="ENVA_LAB_PVE=7: .* set 9 or 8"):
        vmimage.Paths(tmp_path)


def test_the_two_node_images_sit_side_by_side_with_one_host_key(monkeypatch, tmp_path):
    monkeypatch.delenv("ENVA_LAB_PVE", raising=False)
    trixie, bookworm = vmimage.Paths(tmp_path), vmimage.Paths(tmp_path, release="bookworm")
    assert (trixie.node.name, trixie.pve, bookworm.node.name, bookworm.pve) == ("node-trixie", "9", "node-bookworm", "8")
    assert trixie.image != bookworm.image and trixie.build != bookworm.build
    assert trixie.known_hosts == bookworm.known_hosts and trixie.host_key == bookworm.host_key
    assert vmimage.recipe("trixie")["release"] == "trixie" and set(vmimage.recipe("trixie")["ct_rootfs"]) == {
        "bookworm", "trixie"}


def test_an_image_stamped_for_the_other_release_is_not_current(tmp_path):
    paths = vmimage.Paths(tmp_path, release="trixie")
    paths.node.mkdir()
    for path in (paths.image, paths.kernel, paths.initrd):
        path.write_text("")
    paths.stamp.write_text(json.dumps({"recipe": vmimage.recipe("bookworm")}))
    assert not vmimage.is_current(paths)
    paths.stamp.write_text(json.dumps({"recipe": vmimage.recipe("trixie")}))
    assert vmimage.is_current(paths)


def test_the_old_single_image_is_named_not_removed(tmp_path):
    paths = vmimage.Paths(tmp_path)
    assert vmimage.legacy_note(paths) is None
    (paths.legacy / "node.img").parent.mkdir(parents=True)
    (paths.legacy / "node.img").write_text("6 GiB")
    assert "earlier version's node image" in vmimage.legacy_note(paths) and (paths.legacy / "node.img").exists()


def test_each_release_has_its_own_rootfs_and_recipe(tmp_path):
    layout = Layout(root=tmp_path / "lab", cache=tmp_path / "cache")
    assert layout.base_rootfs_of("trixie") == tmp_path / "cache" / "base" / "trixie-amd64" / "rootfs"
    assert layout.base_rootfs == layout.base_rootfs_of("bookworm")
    assert rootfs.recipe("trixie")["release"] == "trixie" and rootfs.recipe()["release"] == "bookworm"
    base = layout.base_dir("trixie")
    (base / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (base / "rootfs" / "usr" / "bin" / "socat").write_text("")
    (base / "stamp.json").write_text(json.dumps({"recipe": rootfs.recipe("trixie")}))
    assert rootfs.is_current(layout, "trixie") and not rootfs.is_current(layout, "bookworm")


def test_a_declared_ct_is_bookworm_unless_its_entry_names_a_release():
    assert declared.read_text(ENTRY, "enva.yaml")[0].release == "bookworm"
    assert declared.read_text(ENTRY + "    release: 13\n", "enva.yaml")[0].release == "trixie"
    with pytest.raises(declared.DeclaredFileError, match=r"enva.yaml containers\[0\] \(vmid 2101\): release 'a b'"):
        declared.read_text(ENTRY + "    release: a b\n", "enva.yaml")


def test_the_samples_keep_ct_2017_on_bookworm_and_run_a_trixie_ct():
    for sample in ("enva.yaml", "enva-node.yaml"):
        cts = {item.vmid: item for item in declared.read_text(
            (settings.CHECKOUT / "tests" / "lab" / sample).read_text(), sample)}
        assert cts[2017].release == "bookworm" and cts[2101].release == "trixie" and cts[2101].onboot


def test_a_generated_entry_says_its_release_only_when_it_is_not_the_default():
    item = declared.DeclaredCt(2150, "fleet-2150", "10.217.0.150", release="trixie")
    assert "    release: trixie" in declared.entry_text(item, 2)
    assert "release" not in declared.entry_text(declared.DeclaredCt(2151, "fleet-2151", "10.217.0.151"), 2)


def test_a_cts_lxc_config_sits_on_its_releases_rootfs(tmp_path, monkeypatch):
    layout = Layout(root=tmp_path / "lab", cache=tmp_path / "cache")
    monkeypatch.setattr(ct.host, "run", lambda *args, **kwargs: None)     # ssh-keygen -A: keys are not the point
    item = declared.read_text(ENTRY + "    release: trixie\n", "enva.yaml")[0]
    ct.write_pve_conf(layout, item)
    ct.build_layer(layout, item, "ssh-ed25519 AAAA lab\n")
    assert ct.ct_release(layout, 2101) == "trixie"
    monkeypatch.setattr(ct.host, "cpu_count", lambda: 2)
    monkeypatch.setattr(ct.host, "has_memsw", lambda: True)
    monkeypatch.setattr(ct.host, "cgroup_backend", lambda: "cgroup-v2")
    text = ct.write_lxc_config(layout, 2101).read_text()
    assert "overlay:%s:" % layout.base_rootfs_of("trixie") in text
    layout.ct_release_file(2101).unlink()              # a layer built before releases were declared
    assert "overlay:%s:" % layout.base_rootfs_of("bookworm") in ct.write_lxc_config(layout, 2101).read_text()
