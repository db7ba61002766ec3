"""The collection's execution environment metadata, checked with ansible-builder (no image is built).

* meta/ee-requirements.txt has the pins of requirements.txt;
* ``ansible-builder create`` with README's EE definition, word for word (its tarball built from this checkout),
  writes a context whose galaxy requirements name the collection;
* the context's own introspection script (what the image build runs after installing the collections) over the
  collection installed from that tarball yields proxmoxer, requests, dnspython, ruamel.yaml and the bindep lines,
  attributed to enva.pve.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.release import BIN, ROOT, install_release

# What enva.pve's modules need, and paramiko for community.proxmox's proxmox_pct_remote (CTs reached by pct
# exec, whose own EE requirements do not name it).
RUNTIME_PACKAGES = ("proxmoxer", "requests", "dnspython", "ruamel.yaml", "paramiko")


def run(command, cwd):
    done = subprocess.run([str(word) for word in command], cwd=str(cwd), capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, "%s: %s%s" % (" ".join(map(str, command)), done.stdout[-3000:], done.stderr[-3000:])
    return done


def pins(path):
    found = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[name.lower()] = version
    return found


def readme_definition():
    text = (ROOT / "README.md").read_text()
    section = text.split("## An execution environment (AWX, Automation Platform)", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1)


def test_the_metadata_names_its_files_and_they_pin_what_requirements_txt_pins():
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    ee, dev = pins(ROOT / "meta" / "ee-requirements.txt"), pins(ROOT / "requirements.txt")
    assert sorted(ee) == sorted(RUNTIME_PACKAGES)
    assert {name: dev[name] for name in ee} == ee


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ee")
    (tmp / "build").mkdir()
    tarball, installed, _env = install_release(tmp / "build")      # build/enva-pve-VERSION.tar.gz, as README's
    definition = readme_definition()
    assert tarball.name in definition, "README's EE definition names another version"
    (tmp / "execution-environment.yml").write_text(definition)
    run([BIN / "ansible-builder", "create", "-f", "execution-environment.yml", "-c", "context"], tmp)
    (tmp / "installed").symlink_to(installed.parents[2])          # the collections path introspect.py reads
    return tmp, tarball


def test_create_writes_a_context_that_installs_the_collection(context):
    tmp, tarball = context
    build = tmp / "context" / "_build"
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert galaxy["collections"] == [{"name": "collections/%s" % tarball.name, "type": "file"}]
    assert (build / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    (containerfile,) = [path for path in (tmp / "context").iterdir() if path.name in ("Containerfile", "Dockerfile")]
    text = containerfile.read_text()
    assert "ansible-core==2.19.14" in text and "introspect.py introspect" in text
    assert "ansible-galaxy collection install" in text


def test_the_contexts_introspection_finds_the_collections_python_and_system_packages(context):
    tmp, _tarball = context
    pip, bindep = tmp / "pip.txt", tmp / "bindep.txt"
    done = run([sys.executable, tmp / "context" / "_build" / "scripts" / "introspect.py", "introspect",
                "--write-pip", pip, "--write-bindep", bindep, tmp / "installed"], tmp)
    python = pip.read_text()
    for name in RUNTIME_PACKAGES:
        assert re.search(r"^%s==[0-9.]+\s+# from collection enva\.pve$" % re.escape(name), python, flags=re.M), python
    system = bindep.read_text()
    assert "openssh-client [platform:dpkg]  # from collection enva.pve" in system, system
    assert "ca-certificates  # from collection enva.pve" in system, system
    assert "enva.pve" in done.stdout
