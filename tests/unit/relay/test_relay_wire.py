"""The relay's wire-format functions: query checks, the parser, answer matching, synthesized answers."""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ansible_collections.enva.pve.roles.dns_relay.files.enva_relay import wire as relay
from support.relay import make_answer, make_query

HEADER = bytes.fromhex("abcd01000001000000000000")  # ID abcd, RD, QDCOUNT 1
A_IN = b"\x00\x01\x00\x01"


def wire_name(*labels):
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


@pytest.mark.parametrize("msg, reason", [
    (b"", "short"),
    (HEADER[:11], "short"),
    (HEADER[:2] + b"\x81\x00" + HEADER[4:] + wire_name(b"a") + A_IN, "response"),
    (HEADER[:2] + b"\x28\x00" + HEADER[4:] + wire_name(b"a") + A_IN, "opcode"),  # UPDATE
    (HEADER[:4] + b"\x00\x00" + HEADER[6:] + wire_name(b"a") + A_IN, "qdcount"),
    (HEADER[:4] + b"\x00\x02" + HEADER[6:] + wire_name(b"a") + A_IN, "qdcount"),
    (HEADER, "truncated"),
    (HEADER + b"\x03ww", "truncated"),
    (HEADER + b"\x03www", "truncated"),
    (HEADER + wire_name(b"www") + b"\x00\x01\x00", "truncated"),
    (HEADER + b"\xc0\x0c" + A_IN, "pointer"),
    (HEADER + b"\x03www\xc0\x0c" + A_IN, "pointer"),
    (HEADER + b"\x40" + b"a" * 64 + b"\x00" + A_IN, "label"),
    (HEADER + b"\x80" + A_IN, "label"),
    (HEADER + wire_name(*[b"a" * 63] * 4) + A_IN, "name-length"),  # 257 bytes of name
    (HEADER + wire_name(b"a") + A_IN + b"\x00" * 4096, "oversize"),
])
def test_check_query_rejects_with_a_reason(msg, reason):
    with pytest.raises(relay.MessageError) as caught:
        relay.check_query(msg)
    assert caught.value.reason == reason


@pytest.mark.parametrize("msg, qend", [
    (HEADER + b"\x00" + A_IN, 17),  # the root
    (HEADER + wire_name(b"www", b"example", b"test") + A_IN, 12 + 18 + 4),
    (HEADER + wire_name(*[b"a" * 63] * 3, b"b" * 61) + A_IN, 12 + 255 + 4),  # the longest legal name
    (HEADER + wire_name(b"a") + A_IN + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 12 + 3 + 4),  # EDNS after
])
def test_check_query_accepts_and_finds_the_end_of_the_question(msg, qend):
    assert relay.check_query(msg) == qend


def test_parse_query_splits_a_real_query():
    wire = make_query("WwW.Example.TEST.", "AAAA", qid=0x0102)
    parsed = relay.parse_query(wire)
    assert parsed.header[:2] == b"\x01\x02"
    assert parsed.labels == (b"WwW", b"Example", b"TEST")
    assert (parsed.qtype, parsed.qclass) == (28, 1)
    assert parsed.rest == wire[12 + 18 + 4:]
    assert relay.name_text(parsed.labels) == "WwW.Example.TEST."


@pytest.mark.parametrize("labels, text", [
    ((), "."),
    ((b"a.b", b"c\\d"), "a\\046b.c\\092d."),
    ((b"\x00\xff", b"x y"), "\\000\\255.x\\032y."),
])
def test_name_text_escapes(labels, text):
    assert relay.name_text(labels) == text


@settings(max_examples=2000)
@given(st.binary(max_size=600))
@example(HEADER + b"\x3f")
@example(HEADER + b"\xff\xff")
def test_parser_raises_only_its_own_error_and_round_trips_what_it_accepts(msg):
    try:
        parsed = relay.parse_query(msg)
    except relay.MessageError as exc:
        assert exc.reason in {"short", "response", "oversize", "opcode", "qdcount", "truncated", "pointer", "label",
                              "name-length"}
        return
    assert relay.encode_query(parsed) == msg
    assert relay.check_query(msg) == len(msg) - len(parsed.rest)


labels_strategy = st.lists(st.binary(min_size=1, max_size=63), max_size=6).filter(
    lambda labels: sum(len(label) + 1 for label in labels) + 1 <= 255)


@given(id_=st.integers(0, 0xFFFF), flags=st.integers(0, 0xFFFF), labels=labels_strategy,
       qtype=st.integers(0, 0xFFFF), qclass=st.integers(0, 0xFFFF), rest=st.binary(max_size=64))
def test_every_well_formed_query_is_accepted_and_round_trips(id_, flags, labels, qtype, qclass, rest):
    flags &= 0x07FF  # QR=0, opcode QUERY
    header = struct.pack("!HHHHHH", id_, flags, 1, 0, 0, 0)
    query = relay.Query(header, tuple(labels), qtype, qclass, rest)
    wire = relay.encode_query(query)
    assert relay.parse_query(wire) == query


@given(labels=labels_strategy.filter(bool), data=st.data())
def test_answer_matching_ignores_the_case_of_the_name_only(labels, data):
    question = wire_name(*labels) + A_IN
    flipped = bytearray(question)
    for index in data.draw(st.lists(st.integers(0, len(question) - 5), max_size=8)):
        if 0x41 <= flipped[index] <= 0x5A or 0x61 <= flipped[index] <= 0x7A:
            flipped[index] ^= 0x20
    answer = b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + bytes(flipped) + b"tail"
    assert relay.answer_matches(answer, question)
    restored = relay.restore_answer(answer, b"\xab\xcd\x01\x00" + b"\x00" * 8 + question, len(question))
    assert restored == b"\xab\xcd" + answer[2:12] + question + b"tail"


@pytest.mark.parametrize("change, matches", [
    (lambda a: a, True),
    (lambda a: a[:12] + a[12:].replace(b"www", b"WWW", 1), True),
    (lambda a: a[:12] + a[12:].replace(b"www", b"wwx", 1), False),  # another name
    (lambda a: a[:12] + a[12:].replace(b"\x00\x01\x00\x01", b"\x00\x1c\x00\x01", 1), False),  # AAAA, not A
    (lambda a: a[:12] + a[12:].replace(b"\x00\x01\x00\x01", b"\x00\x01\x00\x03", 1), False),  # class CH
    (lambda a: a[:2] + bytes((a[2] & 0x7F,)) + a[3:], False),  # QR=0: a query, not an answer
    (lambda a: a[:4] + b"\x00\x00" + a[6:], False),  # no question
    (lambda a: a[:4] + b"\x00\x02" + a[6:], False),
    (lambda a: a[:20], False),  # cut inside the question
])
def test_answer_matches_table(change, matches):
    query = make_query("www.example.test.", qid=1, edns=False)
    question = query[12:]
    assert relay.answer_matches(change(make_answer(query)), question) is matches


def test_answer_matching_never_confuses_a_qtype_byte_with_a_letter():
    # type 0x0041 (HTTPS, 65) vs 0x0061 (97): lowering the whole question would make them equal
    question = wire_name(b"a") + b"\x00\x41\x00\x01"
    answer = b"\x00\x00\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + wire_name(b"a") + b"\x00\x61\x00\x01"
    assert not relay.answer_matches(answer, question)


@pytest.mark.parametrize("rcode", [dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED])
def test_synthesized_answers_keep_id_opcode_rd_cd_and_echo_the_question(rcode):
    query = bytearray(make_query("www.example.test.", qid=0xBEEF, edns=False))
    query[3] |= 0x10  # CD
    qend = relay.check_query(bytes(query))
    message = dns.message.from_wire(relay.synthesize(bytes(query), rcode, qend))
    assert message.id == 0xBEEF and message.rcode() == rcode
    assert message.flags & 0x8000 and message.flags & 0x0100 and message.flags & 0x0080 and message.flags & 0x0010
    assert str(message.question[0].name) == "www.example.test."
    header_only = relay.synthesize(bytes(query), rcode)
    assert len(header_only) == 12 and header_only[:2] == b"\xbe\xef" and header_only[4:] == bytes(8)


def test_the_probe_is_a_root_ns_query():
    probe = dns.message.from_wire(relay.PROBE_QUERY)
    assert str(probe.question[0].name) == "." and probe.question[0].rdtype == 2 and not probe.flags & 0x0100
