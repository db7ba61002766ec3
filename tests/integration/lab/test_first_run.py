"""A PVE admin's first run, on the lab as the README tells it: the token recipe word for word (the lab's
pveum), then haproxy_dns and oom_audit with that token; the old recipe (ACLs on the token only) fails in
preflight naming the missing privilege; a host without its VMID, a host that is another CT and a missing
declared file all fail before the first change, in check mode too, and CT 2017 is left as it was. The
playbooks run by FQCN from the release tarball installed into a clean collections path, as the README says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from enva_lab.settings import Layout
from support.release import BIN, ROOT, install_release

pytestmark = pytest.mark.lab

LABCTL = ROOT / "tests" / "lab" / "labctl"
LAYOUT = Layout()
OLD_RECIPE = """
pveum role add EnvaMemory --privs "VM.Audit VM.Config.Memory Sys.Audit"
pveum user add enva@pve
pveum user token add enva@pve ansible --privsep 1
pveum acl modify /vms --roles EnvaMemory --tokens 'enva@pve!ansible'
pveum acl modify /nodes --roles PVEAuditor --tokens 'enva@pve!ansible'
"""


def readme_recipe():
    """The shell block under README's "A least-privilege API token", as a reader copies it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### A least-privilege API token"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def labctl(*args):
    done = subprocess.run([str(LABCTL), *args], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def memory_of_2017():
    return int(re.search(r"^memory: (\d+)$", LAYOUT.pve_conf(2017).read_text(), re.M).group(1))


def playbook(name, *args, inventory=None):
    """``ansible-playbook -i INVENTORY enva.pve.NAME`` with the release installed from its tarball (README)."""
    env = dict(RELEASE["env"], HOME=os.environ.get("HOME", "/root"))
    inventory = inventory or ROOT / "inventories" / "lab"
    command = [str(BIN / "ansible-playbook"), "-i", str(inventory), "enva.pve.%s" % name,
               "-e", "oom_audit_report_dir=%s" % RELEASE["base"], *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(RELEASE["base"]), timeout=900,
                          check=False)
    return done.returncode, done.stdout + done.stderr


RELEASE = {}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("lxc-start"):
        pytest.skip("needs root and lxc (make setup)")
    base = tmp_path_factory.mktemp("first-run")
    _tarball, _path, env = install_release(base)
    RELEASE.update(base=base, env=env)
    labctl("up", "--cts", "1")
    credentials = LAYOUT.root / "api" / "credentials.json"
    saved = credentials.read_text(encoding="utf-8")
    yield credentials
    credentials.write_text(saved, encoding="utf-8")
    labctl("reset", "2017")


def fresh_pve(credentials, recipe):
    """A PVE with root@pam only, the recipe run on it with the lab's pveum first on PATH; the token's secret."""
    data = json.loads(credentials.read_text(encoding="utf-8"))
    data.update(users={"root@pam": data["users"]["root@pam"]}, tokens={}, roles={}, acl=[])
    credentials.write_text(json.dumps(data, indent=2), encoding="utf-8")
    labctl("reset", "2017")
    env = dict(os.environ, PATH="%s:%s" % (ROOT / "tests" / "lab" / "bin", os.environ["PATH"]),
               ENVA_LAB_DIR=str(LAYOUT.root))
    done = subprocess.run(["bash", "-e", "-c", recipe], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"│ value +│ ([0-9a-f-]{36}) +│", done.stdout).group(1)


def test_the_readme_recipe_then_the_fix_and_the_audit_pass(lab):
    secret = fresh_pve(lab, readme_recipe())
    assert memory_of_2017() == 1024
    code, out = playbook("haproxy_dns")
    assert code == 0, out[-4000:]
    assert memory_of_2017() == 2048
    code, out = playbook("oom_audit", "-e", "oom_audit_api_token_id=ansible",
                         "-e", "oom_audit_api_token_secret=%s" % secret)
    assert code == 0, out[-4000:]
    assert secret not in out


def test_the_old_recipe_fails_in_preflight_naming_the_privilege(lab):
    fresh_pve(lab, OLD_RECIPE)
    code, out = playbook("haproxy_dns")
    assert code != 0
    assert "The PVE API token enva@pve!ansible lacks VM.Audit, VM.Config.Memory on /vms/2017" in out, out[-4000:]
    assert "pveum acl modify /vms/2017 --roles ROLE --users enva@pve --tokens 'enva@pve!ansible'" in out
    assert memory_of_2017() == 1024
    # The module itself, past the preflight: PVE's 403, the missing privilege named.
    credentials = json.loads(lab.read_text(encoding="utf-8"))
    env = dict(RELEASE["env"], HOME=os.environ.get("HOME", "/root"), PROXMOX_HOST="127.0.0.1", PROXMOX_USER="enva@pve",
               PROXMOX_TOKEN_ID="ansible", PROXMOX_CA_PATH=str(LAYOUT.pki / "pve-root-ca.pem"),
               PROXMOX_TOKEN_SECRET=credentials["tokens"]["enva@pve!ansible"]["secret"])
    done = subprocess.run([str(BIN / "ansible"), "localhost", "-c", "local", "-m", "enva.pve.lxc_memory",
                           "-a", "vmid=2017 node=pve1 memory=2048"], capture_output=True, text=True, env=env,
                          cwd=str(RELEASE["base"]), timeout=300, check=False)
    assert done.returncode != 0
    assert "403" in done.stdout and "/vms/2017" in done.stdout and "VM.Audit" in done.stdout, done.stdout
    assert credentials["tokens"]["enva@pve!ansible"]["secret"] not in done.stdout
    assert memory_of_2017() == 1024


@pytest.mark.parametrize("mode", [[], ["--check"]])
def test_a_missing_declared_file_fails_before_the_first_change(lab, mode):
    fresh_pve(lab, readme_recipe())
    code, out = playbook("haproxy_dns", "-e", "haproxy_dns_enva_yaml_path=/nonexistent/enva.yaml", *mode)
    assert code != 0
    assert "Preflight | The declared file holds the CT" in out and "/nonexistent/enva.yaml" in out, out[-4000:]
    assert "Step 2" not in out and "Memory and swap, live" not in out
    assert memory_of_2017() == 1024


def test_a_host_that_is_another_ct_fails_in_preflight(lab):
    fresh_pve(lab, readme_recipe() + "pveum acl modify /vms/2101 --roles EnvaMemory --users enva@pve"
              " --tokens 'enva@pve!ansible'\n")
    code, out = playbook("haproxy_dns", "-e", "haproxy_dns_vmid=2101")
    assert code != 0
    assert "ct2017 is not CT 2101" in out, out[-4000:]
    assert memory_of_2017() == 1024 and "memory: 512" in LAYOUT.pve_conf(2101).read_text()


def test_a_host_without_its_vmid_fails_naming_haproxy_dns_vmid(lab, tmp_path):
    fresh_pve(lab, readme_recipe())
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "lab", inventory)
    hosts = (inventory / "hosts.yml").read_text(encoding="utf-8")
    (inventory / "hosts.yml").write_text(re.sub(r"\n +haproxy_dns_vmid: 2017", "", hosts), encoding="utf-8")
    code, out = playbook("haproxy_dns", inventory=inventory)
    assert code != 0
    assert "haproxy_dns_vmid" in out and "missing required arguments" in out, out[-4000:]
    assert memory_of_2017() == 1024
