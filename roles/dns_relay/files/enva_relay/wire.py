# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS wire format: pure functions over bytes (checks, matching, synthesized answers)."""

import collections
import struct

HEADER_LEN = 12
MAX_QUERY = 4096
MAX_ANSWER = 65535
MAX_LABEL = 63
MAX_NAME = 255
FORMERR, SERVFAIL, NOTIMP, REFUSED = 1, 2, 4, 5
RCODE_NAMES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
               "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14", "RCODE15")
ONE_QUESTION = b"\x00\x01"
# Malformed queries that get no answer at all (the rest get FORMERR or NOTIMP).
SILENT_REASONS = frozenset(("short", "response"))


class MessageError(ValueError):
    """A DNS message the relay does not forward; ``reason`` names its counter."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# Wire format: pure functions ------------------------------------------------

def question_end(msg):
    """Offset just past the question (name, type, class) that starts at byte 12 of ``msg``.

    The name must be plain labels: a query's only name has nothing earlier to
    point to, so a compression pointer there is always an error.
    """
    end = len(msg)
    pos = HEADER_LEN
    while True:
        if pos >= end:
            raise MessageError("truncated")
        length = msg[pos]
        if not length:
            break
        if length > MAX_LABEL:
            raise MessageError("pointer" if length >= 0xC0 else "label")
        pos += length + 1
        if pos - HEADER_LEN >= MAX_NAME:
            raise MessageError("name-length")
    pos += 5
    if pos > end:
        raise MessageError("truncated")
    return pos


def check_query(msg):
    """Check a client's message; return where its question ends or raise MessageError."""
    if len(msg) < HEADER_LEN:
        raise MessageError("short")
    flags = msg[2]
    if flags & 0x80:
        raise MessageError("response")
    if len(msg) > MAX_QUERY:
        raise MessageError("oversize")
    if flags & 0x78:
        raise MessageError("opcode")
    if msg[4:6] != ONE_QUESTION:
        raise MessageError("qdcount")
    return question_end(msg)


Query = collections.namedtuple("Query", "header labels qtype qclass rest")


def parse_query(msg):
    """Split a query into its header, question labels, type, class and the bytes after the question.

    Raises MessageError (and nothing else) for anything the relay would not
    forward; ``encode_query(parse_query(msg)) == msg`` for everything it accepts.
    """
    qend = check_query(msg)
    labels = []
    pos = HEADER_LEN
    while msg[pos]:
        labels.append(bytes(msg[pos + 1:pos + 1 + msg[pos]]))
        pos += msg[pos] + 1
    qtype, qclass = struct.unpack_from("!HH", msg, qend - 4)
    return Query(bytes(msg[:HEADER_LEN]), tuple(labels), qtype, qclass, bytes(msg[qend:]))


def encode_query(query):
    """The wire form of a Query (the inverse of parse_query)."""
    name = b"".join(bytes((len(label),)) + label for label in query.labels) + b"\x00"
    return query.header + name + struct.pack("!HH", query.qtype, query.qclass) + query.rest


def name_text(labels):
    """Labels as presentation text (for logs): ``www.Example.org.``; dots, backslashes and unprintables escaped."""
    return "".join("".join(chr(b) if 0x21 <= b < 0x7F and b not in (0x2E, 0x5C) else "\\%03d" % b for b in label) + "."
                   for label in labels) or "."


def describe(msg):
    """``name type N`` of a query, for debug logs."""
    query = parse_query(msg)
    return "%s type %d" % (name_text(query.labels), query.qtype)


def answer_matches(answer, question):
    """True if ``answer`` is a response whose one question equals ``question`` (wire bytes, name + type + class).

    The name is compared case-insensitively (ASCII, RFC 4343), type and class
    exactly. Label length bytes are at most 63, below 'A', so lowering both
    sides never makes different label structures equal.
    """
    qlen = len(question)
    if len(answer) < HEADER_LEN + qlen or not answer[2] & 0x80 or answer[4:6] != ONE_QUESTION:
        return False
    got = answer[HEADER_LEN:HEADER_LEN + qlen]
    if got == question:
        return True
    return got[-4:] == question[-4:] and got[:-4].lower() == question[:-4].lower()


def restore_answer(answer, query, qlen):
    """The upstream's answer with the client's ID and question bytes (``query``'s) put back."""
    return query[:2] + answer[2:HEADER_LEN] + query[HEADER_LEN:HEADER_LEN + qlen] + answer[HEADER_LEN + qlen:]


# The health probe: ". IN NS", RD=0 (any answer with our ID and question means the upstream is alive).
PROBE_QUERY = encode_query(Query(b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00", (), 2, 1, b""))


def synthesize(query, rcode, qend=0):
    """An answer of our own to ``query``: QR, RA, opcode/RD/CD copied; the question echoed if ``qend``."""
    flags = bytes((0x80 | (query[2] & 0x79), 0x80 | (query[3] & 0x10) | rcode))
    if qend:
        return query[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[HEADER_LEN:qend]
    return query[:2] + flags + bytes(8)
