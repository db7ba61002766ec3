"""dns_query: main() end to end against a real unbound on loopback (lab.enva.test, nothing else), a UDP port
that never answers, a TCP port that accepts and never answers, and a port where nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.enva.pve.plugins.module_utils import dns_check
from ansible_collections.enva.pve.plugins.modules import dns_query
from support import module_harness as harness
from support.dns_servers import (
    BIG_TXT, SilentTcp, SilentUdp, Unbound, free_port)
from support.module_harness import ExitJson, FailJson

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    harness.raise_on_exit(monkeypatch, warnings=[])


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    server = Unbound(tmp_path_factory.mktemp("unbound")).start()
    yield server
    server.stop()
    # unbound's closing statistics: it answered from its local zone and never asked another server
    assert " 0 recursions" in server.log.read_text()


def run_main(**args):
    return harness.run_main(dns_query, args)


def ask(unbound, **args):
    return run_main(server="127.0.0.1", port=unbound.port, **args)


@pytest.mark.parametrize("protocol", ["udp", "tcp", "auto"])
def test_a_record(unbound, protocol):
    kind, result = ask(unbound, name="www.lab.enva.test", protocol=protocol, expected_answers=["10.217.0.17"])
    assert kind is ExitJson and result["changed"] is False
    assert (result["rcode"], result["answers"], result["ttl"]) == ("NOERROR", ["10.217.0.17"], 300)
    assert result["records"] == ["www.lab.enva.test. 300 IN A 10.217.0.17"]
    assert (result["server"], result["port"], result["name"], result["type"]) == (
        "127.0.0.1", unbound.port, "www.lab.enva.test.", "A")
    assert result["protocol"] == ("udp" if protocol == "auto" else protocol)
    assert result["flags"] == {"qr": True, "aa": True, "tc": False, "rd": True, "ra": True, "ad": False, "cd": False}
    assert isinstance(result["latency_ms"], float) and result["latency_ms"] >= 0 and result["tries"] == 1


@pytest.mark.parametrize("name, rdtype, expected, answers", [
    ("www.lab.enva.test", "AAAA", ["fd00:217:0:0::17"], ["fd00:217::17"]),          # another spelling of it
    ("txt.lab.enva.test", "TXT", ["hello world"], ['"hello world"']),                 # the text, no quotes needed
    ("spf.lab.enva.test", "txt", ['"v=spf1" "-all"'], ['"v=spf1" "-all"']),            # two strings
    ("lab.enva.test", "MX", ["20 MX2.lab.enva.test", "10 mail.lab.enva.test."],       # any order, case, final dot
     ["10 mail.lab.enva.test.", "20 mx2.lab.enva.test."]),
    ("multi.lab.enva.test.", "A", ["10.217.0.3", "10.217.0.1", "10.217.0.2"], ["10.217.0.1", "10.217.0.2", "10.217.0.3"]),
    ("multi.lab.enva.test", "AAAA", [], []),                                         # NODATA
])
def test_answers_compare_as_dns_data_in_any_order(unbound, name, rdtype, expected, answers):
    kind, result = ask(unbound, name=name, type=rdtype, expected_answers=expected)
    assert kind is ExitJson, result.get("msg")
    assert sorted(result["answers"]) == answers and result["rcode"] == "NOERROR"


def test_no_expectation_takes_any_answers(unbound):
    kind, result = ask(unbound, name="multi.lab.enva.test")
    assert kind is ExitJson and len(result["answers"]) == 3 and result["ttl"] == 60


def test_wrong_answers_fail_naming_the_question_and_what_came_back(unbound):
    kind, result = ask(unbound, name="www.lab.enva.test", expected_answers=["10.217.0.99"])
    assert kind is FailJson
    assert result["msg"] == ("DNS check failed: www.lab.enva.test. A via 127.0.0.1 port %d over udp: expected "
                             "[10.217.0.99], got [10.217.0.17] (rcode NOERROR)" % unbound.port)
    assert result["answers"] == ["10.217.0.17"] and result["rcode"] == "NOERROR" and result["changed"] is False


def test_some_of_the_answers_is_not_enough(unbound):
    kind, result = ask(unbound, name="multi.lab.enva.test", expected_answers=["10.217.0.1", "10.217.0.2"],
                       protocol="tcp")
    assert kind is FailJson
    assert result["msg"].endswith("over tcp: expected [10.217.0.1, 10.217.0.2], got [%s] (rcode NOERROR)"
                                  % ", ".join(result["answers"]))


def test_nodata_expected_but_answers_came(unbound):
    kind, result = ask(unbound, name="www.lab.enva.test", type="AAAA", expected_answers=[])
    assert kind is FailJson and result["msg"].endswith("expected no answers, got [fd00:217::17] (rcode NOERROR)")


def test_nxdomain_when_expected(unbound):
    kind, result = ask(unbound, name="no-such-host.lab.enva.test", expected_rcode="nxdomain")
    assert kind is ExitJson and result["rcode"] == "NXDOMAIN" and result["answers"] == []


def test_nxdomain_when_not_expected(unbound):
    kind, result = ask(unbound, name="no-such-host.lab.enva.test")
    assert kind is FailJson
    assert result["msg"] == ("DNS check failed: no-such-host.lab.enva.test. A via 127.0.0.1 port %d over udp: expected "
                             "rcode NOERROR, got NXDOMAIN with no answers" % unbound.port)


def test_a_name_that_must_resolve_but_exists_fails_an_nxdomain_expectation(unbound):
    kind, result = ask(unbound, name="www.lab.enva.test", expected_rcode="NXDOMAIN")
    assert kind is FailJson and result["msg"].endswith("expected rcode NXDOMAIN, got NOERROR with [10.217.0.17]")


def test_refused(unbound):
    kind, result = ask(unbound, name="example.com", expected_rcode="REFUSED")
    assert kind is ExitJson and result["rcode"] == "REFUSED"
    kind, result = ask(unbound, name="example.com", protocol="tcp")
    assert kind is FailJson and result["msg"].endswith("over tcp: expected rcode NOERROR, got REFUSED with no answers")


def test_truncated_over_udp(unbound):
    kind, result = ask(unbound, name="big.lab.enva.test", type="TXT", protocol="udp")
    assert kind is ExitJson
    assert result["flags"]["tc"] is True and result["answers"] == [] and result["protocol"] == "udp"
    assert result["warnings"] == ["the answer from 127.0.0.1 port %d was truncated (TC flag); protocol tcp or auto "
                                  "gets the whole answer" % unbound.port]


def test_truncated_over_udp_with_expected_answers_says_why(unbound):
    kind, result = ask(unbound, name="big.lab.enva.test", type="TXT", protocol="udp", expected_answers=BIG_TXT)
    assert kind is FailJson
    assert result["msg"].endswith("got no answers (rcode NOERROR); the answer was truncated (TC flag): use protocol "
                                  "tcp or auto for the whole answer")


@pytest.mark.parametrize("protocol", ["tcp", "auto"])
def test_the_whole_big_answer_over_tcp(unbound, protocol):
    kind, result = ask(unbound, name="big.lab.enva.test", type="TXT", protocol=protocol, expected_answers=BIG_TXT)
    assert kind is ExitJson, result.get("msg")
    assert result["protocol"] == "tcp" and result["flags"]["tc"] is False and len(result["answers"]) == 8
    assert result["warnings"] == []


def test_recursion_desired_off(unbound):
    kind, result = ask(unbound, name="www.lab.enva.test", recursion_desired=False)
    assert kind is ExitJson and result["flags"]["rd"] is False


def test_check_mode_still_asks(unbound):
    kind, result = ask(unbound, name="www.lab.enva.test", _ansible_check_mode=True, expected_answers=["10.217.0.17"])
    assert kind is ExitJson and result["answers"] == ["10.217.0.17"] and result["changed"] is False
    kind, result = ask(unbound, name="www.lab.enva.test", _ansible_check_mode=True, expected_answers=["10.0.0.1"])
    assert kind is FailJson


@pytest.mark.parametrize("retries, tail, tries", [(0, "no answer within 0.3 s", 1),
                                                  (2, "no answer within 0.3 s (3 tries)", 3)])
def test_silent_udp_port_times_out(retries, tail, tries):
    with SilentUdp() as silent:
        kind, result = run_main(server="127.0.0.1", port=silent.port, name="www.lab.enva.test", timeout=0.3,
                                retries=retries)
    assert kind is FailJson
    assert result["msg"] == "DNS check failed: www.lab.enva.test. A via 127.0.0.1 port %d over udp: %s" % (
        silent.port, tail)
    assert (result["rcode"], result["answers"], result["latency_ms"], result["tries"]) == (None, [], None, tries)


def test_silent_tcp_port_times_out():
    with SilentTcp() as silent:
        kind, result = run_main(server="127.0.0.1", port=silent.port, name="www.lab.enva.test", timeout=0.3,
                                protocol="tcp")
    assert kind is FailJson and result["msg"].endswith("port %d over tcp: no answer within 0.3 s" % silent.port)


def test_auto_says_it_tried_udp_first():
    with SilentUdp() as silent:
        kind, result = run_main(server="127.0.0.1", port=silent.port, name="www.lab.enva.test", timeout=0.3,
                                protocol="auto")
    assert kind is FailJson
    assert result["msg"].endswith("port %d over udp (then tcp if truncated): no answer within 0.3 s" % silent.port)


def test_nothing_listening_on_tcp():
    port = free_port()
    kind, result = run_main(server="127.0.0.1", port=port, name="www.lab.enva.test", protocol="tcp")
    assert kind is FailJson
    assert result["msg"].endswith("over tcp: connection refused: nothing listens on tcp port %d" % port)


@pytest.mark.parametrize("args, message", [
    (dict(server="ns1.lab.enva.test"), "server 'ns1.lab.enva.test' is not an IP address; give the server's IPv4 or IPv6"),
    (dict(type="AXFRX"), "type 'AXFRX' is not a DNS record type"),
    (dict(expected_rcode="FINE"), "expected_rcode 'FINE' is not a DNS rcode"),
    (dict(expected_answers=["10.217.0.300"]), "expected answer '10.217.0.300' is not A data"),
    (dict(type="MX", expected_answers=["mail.lab.enva.test"]), "expected answer 'mail.lab.enva.test' is not MX data"),
    (dict(name="www..lab"), "name 'www..lab' is not a DNS name"),
    (dict(port=0), "port 0 is not a port number (1-65535)"),
    (dict(timeout=0.0), "timeout must be more than 0 seconds, not 0.0"),
    (dict(retries=-1), "retries must be 0 or more, not -1"),
])
def test_inputs_that_cannot_be_asked(args, message):
    base = dict(server="127.0.0.1", name="www.lab.enva.test")
    base.update(args)
    kind, result = run_main(**base)
    assert kind is FailJson and result["msg"].startswith(message)


def test_ipv6_server_is_accepted_as_an_address():
    # ::1 without a server on this port: refused over TCP, which shows the address was used as given
    port = free_port()
    kind, result = run_main(server="::1", port=port, name="www.lab.enva.test", protocol="tcp", timeout=0.5)
    assert kind is FailJson and result["server"] == "::1"
    assert result["msg"].startswith("DNS check failed: www.lab.enva.test. A via ::1 port %d over tcp: " % port)


def test_missing_dnspython_is_named(monkeypatch):
    monkeypatch.setattr(dns_check, "HAS_DNSPYTHON", False)
    kind, result = run_main(server="127.0.0.1", name="www.lab.enva.test")
    assert kind is FailJson and result["msg"].startswith("Failed to import the required Python library (dnspython)")


def test_through_ansible(unbound):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", NO_COLOR="1")

    def ansible(args):
        return subprocess.run([str(BIN / "ansible"), "localhost", "-m", "enva.pve.dns_query", "-a", args],
                              capture_output=True, text=True, env=env, check=False)

    good = ansible("server=127.0.0.1 port=%d name=www.lab.enva.test expected_answers=10.217.0.17" % unbound.port)
    assert good.returncode == 0 and "localhost | SUCCESS" in good.stdout and "10.217.0.17" in good.stdout
    bad = ansible("server=127.0.0.1 port=%d name=gone.lab.enva.test protocol=tcp" % unbound.port)
    assert bad.returncode != 0
    assert ("DNS check failed: gone.lab.enva.test. A via 127.0.0.1 port %d over tcp: expected rcode NOERROR, got "
            "NXDOMAIN with no answers" % unbound.port) in bad.stdout


def test_ansible_doc_renders():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    doc = subprocess.run([str(BIN / "ansible-doc"), "enva.pve.dns_query"], capture_output=True, text=True, env=env,
                         check=True).stdout
    for word in ("server", "protocol", "expected_answers", "expected_rcode", "latency_ms", "retries", "check_mode"):
        assert word in doc
