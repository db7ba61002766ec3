# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a DNS answer says, and whether it is the one expected: the pure part of the dns_query module.

Answers are compared as DNS data, not as text: expected answers are parsed as rdata of the queried
type, so ``fd00:217:0::17`` equals ``fd00:217::17``, ``10 MAIL.lab.enva.test`` equals
``10 mail.lab.enva.test.``, and the order of records does not matter.
"""

from __future__ import absolute_import, division, print_function

import traceback

try:
    import dns.exception
    import dns.flags
    import dns.name
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError:
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = traceback.format_exc()

__metaclass__ = type

FLAG_NAMES = ("qr", "aa", "tc", "rd", "ra", "ad", "cd")


def parse_type(text):
    """The rdatatype of ``A``, ``aaaa``, ``TXT``...; ValueError names what is wrong."""
    try:
        return dns.rdatatype.from_text(text.strip().upper())
    except (dns.exception.DNSException, ValueError):
        raise ValueError("type %r is not a DNS record type (A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT, ...)" % text)


def parse_rcode(text):
    """The rcode of ``NOERROR``, ``nxdomain``, ``REFUSED``...; ValueError names what is wrong."""
    try:
        return dns.rcode.from_text(text.strip().upper())
    except (dns.exception.DNSException, ValueError):
        raise ValueError("expected_rcode %r is not a DNS rcode (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, FORMERR, ...)"
                         % text)


def parse_name(text):
    """An absolute DNS name; ValueError names what is wrong."""
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as error:
        raise ValueError("name %r is not a DNS name: %s" % (text, error))


def parse_expected(texts, rdtype):
    """The expected answers as rdata of ``rdtype`` (relative names are made absolute).

    A TXT answer may be given as the text itself (one string, no quotes needed) or as rdata text with
    quotes (``"v=spf1" "-all"`` for several strings).
    """
    parsed = []
    for text in texts:
        source = text
        if rdtype == dns.rdatatype.TXT and not text.lstrip().startswith('"'):
            source = '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
        try:
            parsed.append(dns.rdata.from_text(dns.rdataclass.IN, rdtype, source, origin=dns.name.root,
                                              relativize=False))
        except (dns.exception.DNSException, ValueError) as error:
            raise ValueError("expected answer %r is not %s data: %s" % (text, dns.rdatatype.to_text(rdtype), error))
    return parsed


def summarize(response, rdtype):
    """What the response says: rcode, answers of the queried type, all answer records, TTL, flags."""
    matching = [rrset for rrset in response.answer if rrset.rdtype == rdtype]
    return {
        "rcode": dns.rcode.to_text(response.rcode()),
        "answers": [rdata.to_text() for rrset in matching for rdata in rrset],
        "records": [line for rrset in response.answer for line in rrset.to_text().splitlines()],
        "ttl": min(rrset.ttl for rrset in matching) if matching else None,
        "flags": dict((name, bool(response.flags & dns.flags.from_text(name))) for name in FLAG_NAMES),
    }


def answer_rdatas(response, rdtype):
    """The rdata of the answers of the queried type, for comparison."""
    return [rdata for rrset in response.answer if rrset.rdtype == rdtype for rdata in rrset]


def _listing(texts):
    return "[%s]" % ", ".join(texts) if texts else "no answers"


def mismatch(summary, got, expected_rcode, expected):
    """Why the answer is not the expected one (a phrase), or None when it is.

    ``got`` and ``expected`` are rdata lists (``expected`` None: any answers will do).
    """
    rcode = dns.rcode.to_text(expected_rcode)
    if summary["rcode"] != rcode:
        problem = "expected rcode %s, got %s with %s" % (rcode, summary["rcode"], _listing(summary["answers"]))
    elif expected is not None and set(got) != set(expected):
        wanted = _listing(sorted(rdata.to_text() for rdata in expected))
        problem = "expected %s, got %s (rcode %s)" % (wanted, _listing(summary["answers"]), summary["rcode"])
    else:
        return None
    if summary["flags"]["tc"]:
        problem += "; the answer was truncated (TC flag): use protocol tcp or auto for the whole answer"
    return problem


def describe(query, problem):
    """The failure message: which question, to which server, over what, and what came back."""
    return "DNS check failed: %s %s via %s port %d over %s: %s" % (
        query["name"], query["type"], query["server"], query["port"], query["protocol"], problem)
