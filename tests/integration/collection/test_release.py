"""The release a user pins: the built tarball installed into a clean collections path (nothing of this
checkout on the path), every module and role documented from there, the playbooks run by FQCN, and the
changelog holding the release (as README's "Install the collection" tells it)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))["version"]
MODULES = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "meta" / "argument_specs.yml").exists())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``ansible-galaxy collection build`` then ``install`` into an empty path; the environment that uses it."""
    base = tmp_path_factory.mktemp("release")
    (base / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")       # none of this checkout's settings
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(base / "collections"), ANSIBLE_CONFIG=str(base / "ansible.cfg"),
               HOME=str(base))
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(base), str(ROOT)],
                   check=True, capture_output=True, text=True, env=env, cwd=str(base))
    tarball = base / ("enva-pve-%s.tar.gz" % VERSION)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(base / "collections"),
                    str(tarball)], check=True, capture_output=True, text=True, env=env, cwd=str(base))
    return tarball, base / "collections" / "ansible_collections" / "enva" / "pve", env


def run(env, *argv):
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=env,
                          cwd=str(Path(env["HOME"])), timeout=300, check=False)
    return done.returncode, done.stdout + done.stderr


def test_the_release_is_the_version_and_its_changelog_has_it(installed):
    tarball, path, _env = installed
    assert VERSION == "1.0.0"
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "CHANGELOG.rst" in names and "changelogs/changelog.yaml" in names
    assert "v%s" % VERSION in (path / "CHANGELOG.rst").read_text(encoding="utf-8")
    releases = yaml.safe_load((path / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))["releases"]
    assert VERSION in releases


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_documented_from_the_installed_path(installed, module):
    code, out = run(installed[2], "ansible-doc", "enva.pve.%s" % module)
    assert code == 0, out
    assert str(installed[1]) in out.split("\n")[0], "documented from elsewhere than the installed collection"


@pytest.mark.parametrize("role", ROLES)
def test_every_role_is_documented_from_the_installed_path(installed, role):
    code, out = run(installed[2], "ansible-doc", "-t", "role", "enva.pve.%s" % role)
    assert code == 0, out


@pytest.mark.parametrize("playbook", ["haproxy_dns", "oom_audit"])
def test_the_playbooks_run_by_fqcn(installed, playbook):
    """As the README runs them: ansible-playbook -i inventories/example enva.pve.NAME (here --syntax-check,
    the example inventory's hosts do not exist; tests/integration/lab/test_first_run.py runs them for real)."""
    code, out = run(installed[2], "ansible-playbook", "-i", str(ROOT / "inventories" / "example"),
                    "enva.pve.%s" % playbook, "--syntax-check")
    assert code == 0, out

