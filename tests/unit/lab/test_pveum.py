"""The PVE API lab's pveum and its permission model, as PVE computes them: ACLs of users and tokens, the most
specific path wins, propagate, and a privilege-separated token holding only what it and its user both hold."""

from __future__ import annotations

import json
import re

import pytest

from enva_lab.api_lab import pveum
from enva_lab.api_lab.access import Access

# The README's recipe before issue 16: ACLs granted to the token only.
OLD_RECIPE = [
    ["role", "add", "EnvaMemory", "--privs", "VM.Audit VM.Config.Memory Sys.Audit"],
    ["user", "add", "enva@pve"],
    ["user", "token", "add", "enva@pve", "ansible", "--privsep", "1"],
    ["acl", "modify", "/vms", "--roles", "EnvaMemory", "--tokens", "enva@pve!ansible"],
    ["acl", "modify", "/nodes", "--roles", "PVEAuditor", "--tokens", "enva@pve!ansible"],
]
NEW_RECIPE = [
    ["role", "add", "EnvaAudit", "--privs", "VM.Audit"],
    ["role", "add", "EnvaNodeAudit", "--privs", "Sys.Audit"],
    ["role", "add", "EnvaMemory", "--privs", "VM.Audit VM.Config.Memory"],
    ["user", "add", "enva@pve"],
    ["user", "token", "add", "enva@pve", "ansible", "--privsep", "1"],
    ["acl", "modify", "/vms", "--roles", "EnvaAudit", "--users", "enva@pve", "--tokens", "enva@pve!ansible"],
    ["acl", "modify", "/nodes", "--roles", "EnvaNodeAudit", "--users", "enva@pve", "--tokens", "enva@pve!ansible"],
    ["acl", "modify", "/vms/2017", "--roles", "EnvaMemory", "--users", "enva@pve", "--tokens", "enva@pve!ansible"],
]


@pytest.fixture
def labdir(tmp_path, monkeypatch):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "credentials.json").write_text(json.dumps(
        {"users": {"root@pam": {"password": "x"}}, "tokens": {}, "roles": {}, "acl": []}))
    monkeypatch.setenv("ENVA_LAB_DIR", str(tmp_path))
    return tmp_path


def run(commands, capsys):
    outputs = []
    for argv in commands:
        code = pveum.main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (argv, err)
        outputs.append(out)
    return outputs


def access(labdir):
    return Access(json.loads((labdir / "api" / "credentials.json").read_text()), "-")


def test_old_recipe_gives_the_token_nothing(labdir, capsys):
    run(OLD_RECIPE, capsys)
    held = access(labdir)
    assert held.privileges("enva@pve!ansible", "/vms/2017") == set()
    assert held.privileges("enva@pve!ansible", "/nodes/pve1") == set()


def test_new_recipe_least_privilege(labdir, capsys):
    outputs = run(NEW_RECIPE, capsys)
    held = access(labdir)
    token = "enva@pve!ansible"
    assert held.privileges(token, "/vms/2017") == {"VM.Audit", "VM.Config.Memory"}
    assert held.privileges(token, "/vms/2101") == {"VM.Audit"}          # memory only where it changes
    assert held.privileges(token, "/nodes/pve1") == {"Sys.Audit"}
    assert held.privileges(token, "/vms") == {"VM.Audit"}               # Sys.Audit is not on /vms
    secret = re.search(r"│ value +│ ([0-9a-f-]{36}) +│", outputs[4]).group(1)
    assert json.loads((labdir / "api" / "credentials.json").read_text())["tokens"][token]["secret"] == secret


def test_propagate_and_the_most_specific_path_wins(labdir, capsys):
    run(NEW_RECIPE[:5] + [
        ["acl", "modify", "/vms", "--roles", "EnvaMemory", "--users", "enva@pve", "--propagate", "0"],
        ["acl", "modify", "/", "--roles", "EnvaAudit", "--users", "enva@pve"],
        ["acl", "modify", "/vms/2018", "--roles", "NoAccess", "--users", "enva@pve"],
    ], capsys)
    held = access(labdir)
    assert held.privileges("enva@pve", "/vms") == {"VM.Audit", "VM.Config.Memory"}     # its own path
    assert held.privileges("enva@pve", "/vms/2017") == {"VM.Audit"}   # /vms does not propagate: / applies
    assert held.privileges("enva@pve", "/vms/2018") == set()          # NoAccess below wins
    held.tokens["enva@pve!ansible"]["privsep"] = False
    assert held.privileges("enva@pve!ansible", "/vms") == {"VM.Audit", "VM.Config.Memory"}   # the user's


@pytest.mark.parametrize("argv, message", [
    (["acl", "modify", "/vms", "--roles", "Nosuch", "--users", "enva@pve"], "role 'Nosuch' does not exist"),
    (["acl", "modify", "/vms", "--roles", "PVEAuditor", "--users", "nobody@pve"], "user 'nobody@pve' does not exist"),
    (["acl", "modify", "/vms", "--roles", "PVEAuditor", "--tokens", "enva@pve!nosuch"],
     "no such token 'nosuch' for user 'enva@pve'"),
    (["acl", "modify", "/foo", "--roles", "PVEAuditor", "--users", "enva@pve"], "invalid ACL path '/foo'"),
    (["acl", "modify", "/vms", "--roles", "PVEAuditor"], "either 'users', 'groups' or 'tokens' is required"),
    (["role", "add", "Bad", "--privs", "VM.Audit VM.Fly"], "invalid privilege 'VM.Fly'"),
    (["user", "add", "enva@pve"], "create user failed: user 'enva@pve' already exists"),
    (["user", "token", "add", "nobody@pve", "t"], "no such user ('nobody@pve')"),
])
def test_refusals_in_pves_words_change_nothing(labdir, capsys, argv, message):
    run([["user", "add", "enva@pve"]], capsys)
    before = (labdir / "api" / "credentials.json").read_text()
    assert pveum.main(argv) == 255
    assert capsys.readouterr().err.strip() == message
    assert (labdir / "api" / "credentials.json").read_text() == before


def test_token_add_as_json_and_permissions(labdir, capsys):
    run(NEW_RECIPE[:4], capsys)
    assert pveum.main(["user", "token", "add", "enva@pve", "ro", "--output-format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["full-tokenid"] == "enva@pve!ro" and answer["info"] == {"privsep": "1"}
    assert pveum.main(["user", "permissions", "enva@pve", "--path", "/vms/2017"]) == 0
    assert json.loads(capsys.readouterr().out) == {"/vms/2017": {}}


def test_token_permissions_as_the_readme_checks_them(labdir, capsys):
    run(NEW_RECIPE, capsys)
    assert pveum.main(["user", "token", "permissions", "enva@pve", "ansible", "--path", "/vms/2017"]) == 0
    assert json.loads(capsys.readouterr().out) == {"/vms/2017": {"VM.Audit": 1, "VM.Config.Memory": 1}}
