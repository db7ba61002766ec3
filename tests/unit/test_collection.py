"""The collection's packaging: galaxy.yml metadata and what the built artifact holds."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_GALAXY = Path(sys.executable).with_name("ansible-galaxy")


@pytest.fixture(scope="module")
def galaxy():
    return yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))


def test_galaxy_identity(galaxy):
    assert (galaxy["namespace"], galaxy["name"]) == ("enva", "pve")
    assert galaxy["license"] == ["GPL-3.0-or-later"]
    assert {"infrastructure", "linux", "networking", "monitoring"} <= set(galaxy["tags"])
    assert (ROOT / galaxy["readme"]).is_file()


def test_runtime_requires_ansible():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    assert runtime["requires_ansible"].startswith(">=")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, galaxy):
    out = tmp_path_factory.mktemp("build")
    subprocess.run(
        [str(ANSIBLE_GALAXY), "collection", "build", "--output-path", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    tarball = out / f"enva-pve-{galaxy['version']}.tar.gz"
    with tarfile.open(tarball) as tar:
        return tar.getnames()


@pytest.mark.parametrize("prefix", [
    "tests/", "extensions/molecule/", "molecule/", ".venv/", ".cache/", "build/", "tools/", ".ci/", "changelogs/fragments/",
])
def test_artifact_leaves_out_development_files(artifact, prefix):
    leaked = [name for name in artifact if name.startswith(prefix) or name == prefix.rstrip("/")]
    assert not leaked, f"{prefix} must not be in the built collection: {leaked[:5]}"


@pytest.mark.parametrize("member", ["MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml"])
def test_artifact_has_collection_files(artifact, member):
    assert member in artifact
