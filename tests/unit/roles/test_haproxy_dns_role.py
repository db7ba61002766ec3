"""roles/haproxy_dns: argument_specs in step with defaults, the playbook and inventories that use it,
and its in-CT helper files/ct_dns_facts.py (parsers over real-looking input, and a real run)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest

from support import role_specs
from support.role_specs import ROOT
from support.scripts import load_script

ROLE = ROOT / "roles" / "haproxy_dns"


@pytest.fixture(scope="module")
def facts():
    return load_script(ROLE / "files" / "ct_dns_facts.py", "ct_dns_facts")


def test_secrets_are_no_log():
    options = role_specs.role_options(ROLE)
    assert options["haproxy_dns_api_token_secret"].get("no_log") is True
    assert options["haproxy_dns_api_password"].get("no_log") is True


def test_playbook_runs_the_role_on_the_haproxy_group():
    plays = role_specs.load(ROOT / "playbooks" / "haproxy_dns.yml")
    assert len(plays) == 1
    assert plays[0]["hosts"] == "{{ haproxy_dns_hosts | default('haproxy') }}"
    assert plays[0]["roles"] == [{"role": "enva.pve.haproxy_dns"}]


@pytest.mark.parametrize("inventory", ["lab", "example"])
def test_inventories_name_the_ct_the_node_and_sins(inventory):
    hosts = role_specs.load(ROOT / "inventories" / inventory / "hosts.yml")["all"]["children"]
    group = role_specs.load(ROOT / "inventories" / inventory / "group_vars" / "haproxy.yml")
    ct = hosts["haproxy"]["hosts"]["ct2017"]
    assert ct["haproxy_dns_vmid"] == 2017
    node = ct.get("haproxy_dns_node_host", group.get("haproxy_dns_node_host"))
    # Set, it names a node host; unset, the node the API finds is the inventory host of that name.
    assert node is None or node in hosts["pve_nodes"]["hosts"]
    assert hosts["pve_nodes"]["hosts"]
    assert group["haproxy_dns_upstreams"] and all(re.match(r"^[\d.]+:\d+$", item) for item in group["haproxy_dns_upstreams"])
    text = (ROOT / "inventories" / inventory / "group_vars" / "haproxy.yml").read_text(encoding="utf-8")
    assert not re.search(r"token_secret:\s*['\"]?[0-9a-f-]{20,}", text), "a token secret in clear"


HAPROXY_CFG = """global
\tlog /dev/log local0
resolvers sins
\tnameserver local 127.0.0.1:53
backend web
\tserver web1 web.lab.enva.test:8080 resolvers sins init-addr last,libc,none
\tserver web2 10.217.0.102:8080 check
\tserver web3 web.lab.enva.test:8081   # the same name again
backend api
\tserver-template api 3 api.lab.enva.test:8081 check resolvers sins
\tserver v6 [fd10:217::5]:80
\tserver local /run/app.sock
#\tserver old old.lab.enva.test:80
"""


def test_haproxy_names_are_the_host_names_of_server_lines(facts, tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text(HAPROXY_CFG)
    assert facts.haproxy_names(str(path)) == ["web.lab.enva.test", "api.lab.enva.test"]
    assert facts.haproxy_names(str(tmp_path / "missing.cfg")) == []


@pytest.mark.parametrize("text, expected", [
    ("0100007F:0035", ("127.0.0.1", 53)),
    ("1100D90A:0035", ("10.217.0.17", 53)),
    ("00000000:0035", ("0.0.0.0", 53)),
    ("00000000000000000000000001000000:0035", ("::1", 53)),
])
def test_proc_net_addresses(facts, text, expected):
    assert facts._hex_address(text) == expected


def test_describe_groups_sockets_by_process_and_unit(facts):
    listeners = [
        {"proto": "udp", "address": "0.0.0.0", "port": 53, "command": "socat", "unit": "dns-forwarder.service"},
        {"proto": "udp", "address": "127.0.0.1", "port": 53, "command": "socat", "unit": "dns-forwarder.service"},
        {"proto": "udp", "address": "127.0.0.1", "port": 53, "command": "socat", "unit": "dns-forwarder.service"},
        {"proto": "tcp6", "address": "::1", "port": 53, "command": None, "unit": None},
    ]
    assert facts.describe(listeners) == ("socat [dns-forwarder.service] on udp 0.0.0.0:53, udp 127.0.0.1:53; "
                                         "? [no unit] on tcp6 [::1]:53")
    assert facts.describe([]) == "nothing"


def test_a_real_run_finds_a_udp_listener_and_its_process(tmp_path):
    """The script as the role runs it: a UDP socket bound here is found with this test's own pid."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        done = subprocess.run([sys.executable, str(ROLE / "files" / "ct_dns_facts.py"), "--port", str(port),
                               "--resolve", "localhost", "--resolve", "no-such-name.invalid"],
                              capture_output=True, text=True, check=True, timeout=60)
    finally:
        sock.close()
    result = json.loads(done.stdout)
    mine = [entry for entry in result["listeners"] if entry["proto"] == "udp"]
    assert mine and mine[0]["address"] == "127.0.0.1" and mine[0]["port"] == port
    assert mine[0]["pid"] is not None and mine[0]["command"]
    assert "socat" in result["processes"] and result["processes"]["total"] >= 1
    resolved = {item["name"]: item for item in result["resolved"]}
    assert "127.0.0.1" in resolved["localhost"]["addresses"]
    assert resolved["no-such-name.invalid"]["addresses"] == [] and resolved["no-such-name.invalid"]["error"]
