"""roles/oom_audit: the playbook's syntax is valid (its argument spec: test_role_specs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.role_specs import ROOT


def test_playbook_syntax():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "--syntax-check", "-i",
                           "pve1,", str(ROOT / "playbooks" / "oom_audit.yml")],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
