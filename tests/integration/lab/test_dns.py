"""The SiNS stand-in: the lab zone's records, and the real unbound run on loopback with the lab's config
(it answers the zone, refuses everything else, truncates the big RRset over UDP, and never recurses)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from enva_lab import declared, dns, settings
from support.net import free_port
from support.unbound_dir import unbound_workdir

CTS = declared.read_text(settings.SAMPLE.read_text(), "enva.yaml")
needs_unbound = pytest.mark.skipif(not shutil.which("unbound"), reason="unbound is not installed (make setup)")


def records(name, rtype):
    return [rdata for rname, kind, rdata in dns.zone_records(CTS) if rname == name and kind == rtype]


def test_each_ct_has_a_and_aaaa_and_the_zone_has_the_services():
    assert records("haproxy.lab.enva.test", "A") == ["10.217.0.17"]
    assert records("haproxy.lab.enva.test", "AAAA") == ["fd10:217::17"]
    assert records("web.lab.enva.test", "A") == ["10.217.0.101"]
    assert records("www.lab.enva.test", "A") == ["10.217.0.17"]
    assert records("api.lab.enva.test", "A") == ["10.217.0.17"]
    assert records("sins.lab.enva.test", "A") == ["10.217.0.53"]
    assert records("ct2017.lab.enva.test", "CNAME") == ["haproxy.lab.enva.test."]
    assert records("lab.enva.test", "MX") == ["10 mail.lab.enva.test."]
    assert records("lab.enva.test", "TXT") == ['"v=spf1 ip4:10.217.0.0/24 -all"']


def test_the_big_txt_rrset_is_larger_than_any_udp_answer():
    strings = dns.big_txt_strings()
    wire = sum(12 + 1 + len(text) for text in strings)      # name pointer, type, class, ttl, rdlength + string
    assert len(strings) == dns.BIG_TXT_PARTS and all(len(text) <= 255 for text in strings)
    assert wire > 1232 > 512
    assert all(ch not in text for text in strings for ch in '"();\\')


def test_recursion_counters_from_unbound_control():
    text = "thread0.num.queries=4\ntotal.num.queries=12\ntotal.num.cachemiss=0\ntotal.num.recursivereplies=0\n" \
           "total.requestlist.max=0\nnum.answer.rcode.REFUSED=3\nnum.answer.rcode.NOERROR=9\ntime.up=1.5\n"
    assert dns.recursion_counters(text) == {
        "total.num.queries": 12, "total.num.cachemiss": 0, "total.num.recursivereplies": 0,
        "total.requestlist.max": 0, "num.answer.rcode.REFUSED": 3, "num.answer.rcode.NOERROR": 9}


@pytest.fixture
def unbound_tmp():
    """Where the test's unbound may read and write under Debian's AppArmor profile (support.unbound_dir)."""
    with unbound_workdir() as path:
        yield path


@pytest.fixture
def unbound(unbound_tmp):
    """The lab's unbound config, served on a free loopback port by the real unbound."""
    tmp_path = unbound_tmp
    port = free_port()
    conf = tmp_path / "unbound.conf"
    conf.write_text(dns.unbound_conf(CTS, tmp_path, tmp_path / "unbound.log", tmp_path / "unbound.ctl",
                                     interface="127.0.0.1", port=port))
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    process = subprocess.Popen(["unbound", "-d", "-p", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    server = ("127.0.0.1", port)
    deadline = time.monotonic() + 10
    while dns.query(server, "sins.lab.enva.test", timeout=0.2) is None:
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "unbound.log").read_text()
    yield server, conf
    process.terminate()
    process.wait(timeout=10)


@needs_unbound
def test_unbound_answers_the_zone_refuses_the_rest_and_never_recurses(unbound):
    server, conf = unbound
    assert dns.query(server, "web.lab.enva.test").rcode_name == "NOERROR"
    assert dns.query(server, "ct2017.lab.enva.test").answers == 1                   # the CNAME alone
    assert dns.query(server, "haproxy.lab.enva.test", "AAAA").answers == 1
    assert dns.query(server, "17.0.217.10.in-addr.arpa", "PTR").answers == 1
    assert dns.query(server, "nothing.lab.enva.test").rcode_name == "NXDOMAIN"
    for name in ("www.example.com", "deb.debian.org", "com"):
        assert dns.query(server, name).rcode_name == "REFUSED", name
    assert dns.query(server, "enva.test").rcode_name == "NXDOMAIN"        # unbound's own RFC 6761 zone "test."
    big_udp = dns.query(server, dns.BIG_TXT_NAME, "TXT")
    big_tcp = dns.query(server, dns.BIG_TXT_NAME, "TXT", tcp=True)
    assert big_udp.truncated and not big_tcp.truncated and big_tcp.answers == dns.BIG_TXT_PARTS
    stats = subprocess.run(["unbound-control", "-c", str(conf), "stats_noreset"], capture_output=True, text=True,
                           check=True).stdout
    counters = dns.recursion_counters(stats)
    assert counters["total.num.queries"] >= 11
    assert counters["total.num.cachemiss"] == counters["total.num.recursivereplies"] == 0
    assert counters["total.requestlist.max"] == 0
