"""dns_check: parsing what dns_query is asked, summarizing DNS responses, and telling an expected answer from another.

Responses are real dnspython messages, made from the presentation format `dig` prints.
"""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from ansible_collections.enva.pve.plugins.module_utils import dns_check


def response(rcode="NOERROR", flags="QR AA RD RA", question="www.lab.enva.test. IN A", answer=""):
    return dns.message.from_text("id 4711\nopcode QUERY\nrcode %s\nflags %s\n;QUESTION\n%s\n;ANSWER\n%s\n"
                                 % (rcode, flags, question, answer))


@pytest.mark.parametrize("text, rdtype", [("A", "A"), ("aaaa", "AAAA"), (" txt ", "TXT"), ("MX", "MX"), ("ptr", "PTR"),
                                          ("SOA", "SOA"), ("TYPE65", "HTTPS")])
def test_parse_type(text, rdtype):
    assert dns_check.parse_type(text) == dns.rdatatype.from_text(rdtype)


@pytest.mark.parametrize("text", ["", "AXFRX", "A A", "TYPE999999"])
def test_parse_type_refuses(text):
    with pytest.raises(ValueError, match="is not a DNS record type"):
        dns_check.parse_type(text)


@pytest.mark.parametrize("text, rcode", [("NOERROR", 0), ("nxdomain", 3), ("REFUSED", 5), ("ServFail", 2)])
def test_parse_rcode(text, rcode):
    assert dns_check.parse_rcode(text) == rcode


def test_parse_rcode_refuses():
    with pytest.raises(ValueError, match="expected_rcode 'OK' is not a DNS rcode"):
        dns_check.parse_rcode("OK")


@pytest.mark.parametrize("text, absolute", [("www.lab.enva.test", "www.lab.enva.test."),
                                            ("www.lab.enva.test.", "www.lab.enva.test."), (".", ".")])
def test_parse_name_is_absolute(text, absolute):
    assert dns_check.parse_name(text).to_text() == absolute


@pytest.mark.parametrize("text", ["a..b", "x" * 64 + ".test"])
def test_parse_name_refuses(text):
    with pytest.raises(ValueError, match="is not a DNS name"):
        dns_check.parse_name(text)


@pytest.mark.parametrize("rdtype, texts, canonical", [
    ("A", ["10.217.0.17"], ["10.217.0.17"]),
    ("AAAA", ["FD00:217:0:0:0:0:0:17"], ["fd00:217::17"]),
    ("TXT", ["hello world"], ['"hello world"']),
    ("TXT", ['say "hi" \\o/'], ['"say \\"hi\\" \\\\o/"']),
    ("TXT", ['"v=spf1" "-all"'], ['"v=spf1" "-all"']),
    ("MX", ["10 mail.lab.enva.test"], ["10 mail.lab.enva.test."]),
    ("CNAME", ["www.lab.enva.test."], ["www.lab.enva.test."]),
    ("SRV", ["0 5 53 ns.lab.enva.test"], ["0 5 53 ns.lab.enva.test."]),
])
def test_parse_expected(rdtype, texts, canonical):
    parsed = dns_check.parse_expected(texts, dns.rdatatype.from_text(rdtype))
    assert [rdata.to_text() for rdata in parsed] == canonical


@pytest.mark.parametrize("rdtype, text", [("A", "10.217.0.256"), ("A", "fd00::1"), ("AAAA", "10.0.0.1"),
                                          ("MX", "mail.lab.enva.test"), ("SRV", "53 ns")])
def test_parse_expected_refuses(rdtype, text):
    with pytest.raises(ValueError, match="expected answer %r is not %s data" % (text, rdtype)):
        dns_check.parse_expected([text], dns.rdatatype.from_text(rdtype))


def test_summary_of_a_cname_chain():
    summary = dns_check.summarize(response(question="web.lab.enva.test. IN A", answer=(
        "web.lab.enva.test. 600 IN CNAME www.lab.enva.test.\n"
        "www.lab.enva.test. 300 IN A 10.217.0.17\n"
        "www.lab.enva.test. 300 IN A 10.217.0.18")), dns.rdatatype.A)
    assert summary == {
        "rcode": "NOERROR",
        "answers": ["10.217.0.17", "10.217.0.18"],
        "records": ["web.lab.enva.test. 600 IN CNAME www.lab.enva.test.", "www.lab.enva.test. 300 IN A 10.217.0.17",
                    "www.lab.enva.test. 300 IN A 10.217.0.18"],
        "ttl": 300,
        "flags": {"qr": True, "aa": True, "tc": False, "rd": True, "ra": True, "ad": False, "cd": False},
    }


def test_summary_of_a_truncated_empty_answer():
    summary = dns_check.summarize(response(flags="QR TC RD", question="big.lab.enva.test. IN TXT"), dns.rdatatype.TXT)
    assert (summary["answers"], summary["records"], summary["ttl"]) == ([], [], None)
    assert summary["flags"]["tc"] is True and summary["flags"]["aa"] is False


A_ANSWER = "www.lab.enva.test. 300 IN A 10.217.0.17"
TWO_ANSWERS = A_ANSWER + "\nwww.lab.enva.test. 300 IN A 10.217.0.18"
MISMATCHES = [
    # (response, expected rcode, expected answers (None: any), the phrase or None)
    (response(answer=A_ANSWER), "NOERROR", None, None),
    (response(answer=A_ANSWER), "NOERROR", ["10.217.0.17"], None),
    (response(answer=A_ANSWER), "NOERROR", ["10.217.0.18"], "expected [10.217.0.18], got [10.217.0.17] (rcode NOERROR)"),
    (response(answer=A_ANSWER), "NOERROR", [], "expected no answers, got [10.217.0.17] (rcode NOERROR)"),
    (response(answer=TWO_ANSWERS), "NOERROR", ["10.217.0.18", "10.217.0.17"], None),
    (response(answer=TWO_ANSWERS), "NOERROR", ["10.217.0.17"],
     "expected [10.217.0.17], got [10.217.0.17, 10.217.0.18] (rcode NOERROR)"),
    (response(rcode="NXDOMAIN"), "NOERROR", None, "expected rcode NOERROR, got NXDOMAIN with no answers"),
    (response(rcode="NXDOMAIN"), "NXDOMAIN", None, None),
    (response(rcode="NXDOMAIN"), "NXDOMAIN", [], None),
    (response(answer=A_ANSWER), "NXDOMAIN", None, "expected rcode NXDOMAIN, got NOERROR with [10.217.0.17]"),
    (response(rcode="REFUSED", flags="QR RD"), "REFUSED", None, None),
    (response(rcode="SERVFAIL", flags="QR RD RA"), "NOERROR", ["10.217.0.17"],
     "expected rcode NOERROR, got SERVFAIL with no answers"),
    (response(flags="QR TC RD"), "NOERROR", ["10.217.0.17"],
     "expected [10.217.0.17], got no answers (rcode NOERROR); the answer was truncated (TC flag): use protocol tcp "
     "or auto for the whole answer"),
    (response(flags="QR TC RD"), "NOERROR", None, None),
]


@pytest.mark.parametrize("message, rcode, expected, phrase", MISMATCHES)
def test_mismatch(message, rcode, expected, phrase):
    rdtype = message.question[0].rdtype
    summary = dns_check.summarize(message, rdtype)
    expected_rdata = None if expected is None else dns_check.parse_expected(expected, rdtype)
    got = dns_check.answer_rdatas(message, rdtype)
    assert dns_check.mismatch(summary, got, dns.rcode.from_text(rcode), expected_rdata) == phrase


def test_describe_names_the_question_server_and_protocol():
    query = {"name": "www.lab.enva.test.", "type": "A", "server": "10.217.0.17", "port": 53, "protocol": "tcp"}
    assert dns_check.describe(query, "no answer within 2.0 s") == (
        "DNS check failed: www.lab.enva.test. A via 10.217.0.17 port 53 over tcp: no answer within 2.0 s")
