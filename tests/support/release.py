"""The collection as a user gets it: the built tarball installed into an empty collections path, and an
environment in which Ansible sees only that (none of this checkout's ansible.cfg or collection link)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))["version"]
# What a user's ansible.cfg would say for SSH to fresh hosts; nothing that points into the checkout.
CONFIG = "[defaults]\nhost_key_checking = false\ninterpreter_python = auto_silent\ncallback_result_format = yaml\n"


def install_release(base):
    """``(tarball, installed collection dir, env)`` after ``ansible-galaxy collection build`` and ``install``."""
    base = Path(base)
    (base / "ansible.cfg").write_text(CONFIG, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(base / "collections"), ANSIBLE_CONFIG=str(base / "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(base), str(ROOT)],
                   check=True, capture_output=True, text=True, env=env, cwd=str(base))
    tarball = base / ("enva-pve-%s.tar.gz" % VERSION)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(base / "collections"),
                    str(tarball)], check=True, capture_output=True, text=True, env=env, cwd=str(base))
    return tarball, base / "collections" / "ansible_collections" / "enva" / "pve", env
