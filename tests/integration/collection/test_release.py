"""The release a user pins: the built tarball installed into a clean collections path (nothing of this
checkout on the path), every module and role documented from there, the playbooks run by FQCN, and the
changelog holding the release (as README's "Install the collection" tells it)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from support.release import BIN, ROOT, VERSION, install_release

MODULES = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "meta" / "argument_specs.yml").exists())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("release")
    tarball, path, env = install_release(base)
    return tarball, path, dict(env, HOME=str(base))


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
