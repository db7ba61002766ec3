"""End to end: the relay as a subprocess between real sockets and a scripted upstream on 127.0.0.1."""

from __future__ import annotations

import collections
import configparser
import os
import random
import resource
import signal
import socket
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from support.relay import (
    RELAY, RELAY_PYTHON, WAIT, Reply, answer, ask_udp, free_port, make_answer, make_query, question_len, read_tcp_message,
    silent, tcp_frame, udp_client, wait_for, with_id,
)

PROBE_QUESTION = b"\x00\x00\x02\x00\x01"  # ". IN NS"


def rcode_of(wire):
    return wire[3] & 0x0F


def first_address(wire):
    message = dns.message.from_wire(wire)
    return [rdata.address for rrset in message.answer for rdata in rrset][0]


def client_queries(server):
    """What the upstream got, without the relay's health probes."""
    return [q for q in server.queries() if q[12:] != PROBE_QUESTION]


# Matching and pass-through ------------------------------------------------------------

def test_only_the_id_changes_and_the_client_gets_its_own_id_and_question_back(relay_factory, upstream_factory):
    sent = []

    def lowercasing(query, transport):
        wire = bytearray(make_answer(query, "192.0.2.10"))
        qlen = question_len(query)
        wire[12:12 + qlen - 4] = bytes(query[12:12 + qlen - 4]).lower()  # as some servers do
        sent.append(bytes(wire))
        return [Reply(bytes(wire))]

    up = upstream_factory(lowercasing)
    relay = relay_factory("--upstream", up.addr)
    query = make_query("WwW.ExAmPlE.TeSt.", qid=0x1234)
    qlen = question_len(query)
    got = ask_udp(relay.port, query)

    forwarded = up.queries()
    assert len(forwarded) == 1
    assert forwarded[0][2:] == query[2:], "everything but the ID reaches the upstream unchanged (flags, EDNS)"
    assert sent[0][12:12 + qlen] != query[12:12 + qlen], "the upstream did lower-case the name"
    assert got[:2] == b"\x12\x34"
    assert got[12:12 + qlen] == query[12:12 + qlen], "the client's own question bytes (mixed case) come back"
    assert got[2:12] == sent[0][2:12] and got[12 + qlen:] == sent[0][12 + qlen:], "the rest of the answer is untouched"
    message = dns.message.from_wire(got)
    assert first_address(got) == "192.0.2.10" and message.edns == 0, "EDNS (OPT) came through"


def test_each_forwarded_query_gets_a_fresh_id_and_a_random_source_port(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr)
    for i in range(300):
        assert ask_udp(relay.port, make_query("n%d.test." % i, qid=0x4242)) is not None
    ids = [int.from_bytes(q[:2], "big") for q in upstream.queries()]
    ports = {addr[1] for _kind, _data, addr in upstream.received}
    assert len(ids) == 300
    assert len(set(ids)) >= 290, "IDs are drawn at random (a few birthday collisions at most)"
    assert sorted(ids) != ids and len({b - a for a, b in zip(ids, ids[1:])}) > 100, "not a counter"
    assert len(ports) >= 4 and relay.port not in ports, "several upstream sockets, none the listening port"


def test_concurrent_clients_with_the_same_id_are_never_mixed_up(relay_factory, upstream_factory):
    jitter = random.Random(5)

    def numbered(query, transport):  # answers out of order
        index = int(dns.message.from_wire(query).question[0].name.labels[0][1:])
        return [Reply(make_answer(query, "10.0.%d.%d" % (index // 250, index % 250)), delay=jitter.uniform(0, 0.3))]

    up = upstream_factory(numbered)
    relay = relay_factory("--upstream", up.addr)
    clients = []
    for index in range(200):
        sock = udp_client()
        sock.sendto(make_query("c%d.test." % index, qid=7), ("127.0.0.1", relay.port))
        clients.append(sock)
    try:
        for index, sock in enumerate(clients):
            got = sock.recv(65535)
            assert got[:2] == b"\x00\x07"
            assert str(dns.message.from_wire(got).question[0].name) == "c%d.test." % index
            assert first_address(got) == "10.0.%d.%d" % (index // 250, index % 250)
    finally:
        for sock in clients:
            sock.close()


def test_a_burst_mixing_every_kind_of_query_gets_each_its_own_answer(relay_factory, upstream_factory):
    """Back to back from two clients, read by the relay in few wakeups: good queries (some answered with the
    name lower-cased, some after a forged answer), junk, another opcode, and a client outside --allow."""
    def varied(query, transport):
        index = int(dns.message.from_wire(query).question[0].name.labels[0][1:])
        wire = bytearray(make_answer(query, "10.1.0.%d" % index))
        qlen = question_len(query)
        if index % 3 == 1:
            wire[12:12 + qlen - 4] = bytes(query[12:12 + qlen - 4]).lower()
        replies = [Reply(bytes(wire), delay=0.05 * (index % 4))]
        if index % 3 == 2:
            replies.insert(0, Reply(make_answer(make_query("x.Burst.Test.", qid=int.from_bytes(query[:2], "big")))))
        return replies

    up = upstream_factory(varied)
    relay = relay_factory("--upstream", up.addr, "--allow", "127.0.0.1/32")
    malformed = malformed_cases()
    expected = {}
    with udp_client() as allowed, udp_client("127.0.0.2") as outsider:
        for index in range(60):
            qid = 0x1000 + index
            if index % 10 == 3:
                wire, rcode = malformed["qdcount"]
                expected[qid] = ("rcode", dns.rcode.FORMERR)
            elif index % 10 == 5:
                wire, rcode = malformed["opcode"]
                expected[qid] = ("rcode", dns.rcode.NOTIMP)
            elif index % 10 == 7:
                wire, rcode = malformed["short"]
            else:
                wire = make_query("b%d.Burst.Test." % index)
                expected[qid] = ("answer", index, wire)
            allowed.sendto(with_id(wire, qid) if len(wire) >= 12 else wire, ("127.0.0.1", relay.port))
            if index % 10 == 9:
                refused = make_query("r%d.Burst.Test." % index, qid=qid)
                outsider.sendto(refused, ("127.0.0.1", relay.port))
        got = {}
        while len(got) < len(expected):
            reply = allowed.recv(65535)
            got[int.from_bytes(reply[:2], "big")] = reply
        for index in range(9, 60, 10):
            reply = outsider.recv(65535)
            assert rcode_of(reply) == dns.rcode.REFUSED
            assert str(dns.message.from_wire(reply).question[0].name) == "r%d.Burst.Test." % index
    assert set(got) == set(expected)
    for qid, want in expected.items():
        if want[0] == "rcode":
            assert rcode_of(got[qid]) == want[1], hex(qid)
            continue
        _kind, index, wire = want
        qlen = question_len(wire)
        assert got[qid][12:12 + qlen] == wire[12:12 + qlen], "the client's own question bytes, mixed case kept"
        assert first_address(got[qid]) == "10.1.0.%d" % index
    assert all(q[12:].find(b"Burst") > 0 for q in client_queries(up)), "nothing malformed or refused was forwarded"
    good = [want[1] for want in expected.values() if want[0] == "answer"]
    assert len(client_queries(up)) == len(good) == 42
    metrics = relay.metrics()
    assert metrics['enva_dns_relay_ignored_total{reason="question"}'] == len([i for i in good if i % 3 == 2])
    assert metrics['enva_dns_relay_refused_total{reason="acl"}'] == 6
    assert metrics['enva_dns_relay_malformed_total{reason="short"}'] == 6


def test_forged_and_mismatched_answers_are_ignored_and_the_real_one_accepted(relay_factory, upstream_factory):
    def hostile(query, transport):
        qid = int.from_bytes(query[:2], "big")
        other_type = make_query("www.example.test.", "AAAA", qid=qid)
        echo = bytes(query)  # same ID and question, but QR=0
        return [
            Reply(with_id(make_answer(query, "198.51.100.1"), (qid + 1) % 65536)),  # wrong ID
            Reply(make_answer(make_query("other.example.test.", qid=qid), "198.51.100.2")),  # other name
            Reply(make_answer(other_type, "198.51.100.3")[:12] + other_type[12:]),  # other type
            Reply(echo),  # not a response
            Reply(b"\x00\x01\x02"),  # shorter than a header
            Reply(make_answer(query, "198.51.100.4"), forged=True),  # right ID and question, wrong source port
            Reply(make_answer(query, "192.0.2.44"), delay=0.3),  # the real one
        ]

    up = upstream_factory(hostile)
    relay = relay_factory("--upstream", up.addr)
    got = ask_udp(relay.port, make_query("www.example.test.", qid=99))
    assert got[:2] == b"\x00\x63" and rcode_of(got) == 0
    assert first_address(got) == "192.0.2.44"
    metrics = relay.metrics()
    assert metrics['enva_dns_relay_ignored_total{reason="id"}'] == 1
    assert metrics['enva_dns_relay_ignored_total{reason="question"}'] == 3
    assert metrics['enva_dns_relay_ignored_total{reason="short"}'] == 1


# TCP -------------------------------------------------------------------------------------

def test_truncated_udp_answer_passes_as_is_and_the_tcp_retry_works(relay_factory, upstream_factory):
    def truncating(query, transport):
        if transport == "udp":
            return [Reply(make_answer(query, tc=True))]
        return [Reply(make_answer(query, "192.0.2.53"))]

    up = upstream_factory(truncating)
    relay = relay_factory("--upstream", up.addr)
    query = make_query("big.example.test.", qid=0x0BAD)
    udp = ask_udp(relay.port, query)
    assert udp[:2] == b"\x0b\xad" and udp[2] & 0x02, "TC=1 reaches the client"
    assert not dns.message.from_wire(udp).answer

    response, used_tcp = dns.query.udp_with_fallback(dns.message.from_wire(query), "127.0.0.1", timeout=WAIT, port=relay.port)
    assert used_tcp and not response.flags & dns.flags.TC
    assert response.id == 0x0BAD and first_address(response.to_wire()) == "192.0.2.53"
    assert [kind for kind, _data, _addr in up.received] == ["udp", "udp", "tcp"], "TCP client -> TCP upstream"


def test_tcp_pipelined_queries_are_answered_each_with_its_own_id(relay_factory, upstream_factory):
    def slow_first(query, transport):
        index = int(dns.message.from_wire(query).question[0].name.labels[0][1:])
        return [Reply(make_answer(query, "10.1.0.%d" % index), delay=0.05 * (10 - index))]

    up = upstream_factory(slow_first)
    relay = relay_factory("--upstream", up.addr)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as conn:
        conn.sendall(b"".join(tcp_frame(make_query("p%d.test." % i, qid=1000 + i)) for i in range(10)))
        answers = {}
        for _answer in range(10):
            got = read_tcp_message(conn)
            answers[int.from_bytes(got[:2], "big")] = first_address(got)
    assert answers == {1000 + i: "10.1.0.%d" % i for i in range(10)}
    assert len(up.queries("tcp")) == 10


def test_idle_tcp_clients_are_closed_and_the_connection_count_is_bounded(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--tcp-idle-timeout", "0.5", "--max-tcp-clients", "2")
    first = socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT)
    second = socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT)
    third = socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT)  # waits in the backlog
    try:
        first.sendall(tcp_frame(make_query("one.test.", qid=1)))
        assert read_tcp_message(first)[:2] == b"\x00\x01"
        wait_for(lambda: relay.metric("tcp_clients") == 2, what="two TCP clients")
        third.sendall(tcp_frame(make_query("three.test.", qid=3)))
        assert relay.metric("tcp_clients") == 2
        # idle clients are closed by the relay (EOF), which lets the third one in
        assert first.recv(1) == b"" and second.recv(1) == b""
        assert read_tcp_message(third)[:2] == b"\x00\x03"
        assert relay.metrics()['enva_dns_relay_tcp_total{reason="idle-closed"}'] >= 2
    finally:
        for sock in (first, second, third):
            sock.close()


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_running_out_of_file_descriptors_means_servfail_not_a_crash(relay_factory, upstream_factory):
    up = upstream_factory(lambda q, t: [Reply(make_answer(q), delay=0.5)])
    relay = relay_factory("--upstream", up.addr, "--timeout", "10")
    spare = open_fds(relay.pid) + 4  # the 4 clients fit, a socket to the upstream does not
    resource.prlimit(relay.pid, resource.RLIMIT_NOFILE, (spare, spare))
    rcodes = collections.Counter()
    conns = [socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) for _conn in range(4)]
    try:
        for index, conn in enumerate(conns):
            conn.sendall(b"".join(tcp_frame(make_query("fd%d.test." % i, qid=100 * index + i)) for i in range(16)))
        for conn in conns:
            for _answer in range(16):
                rcodes[rcode_of(read_tcp_message(conn))] += 1
    finally:
        for conn in conns:
            conn.close()
    assert rcodes[dns.rcode.SERVFAIL] == 64, "every query got an answer: SERVFAIL, no socket for the upstream"
    wait_for(lambda: open_fds(relay.pid) <= spare - 4, what="the clients' sockets closed")
    assert relay.metric('servfail_total{reason="no-socket"}') == 64
    assert rcode_of(ask_udp(relay.port, make_query("after.test."))) == 0
    with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as conn:
        conn.sendall(tcp_frame(make_query("after.tcp.test.", qid=7)))
        assert rcode_of(read_tcp_message(conn)) == dns.rcode.NOERROR


def test_out_of_descriptors_for_accept_the_connections_wait_and_are_served_later(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--tcp-idle-timeout", "0.3")
    resource.prlimit(relay.pid, resource.RLIMIT_NOFILE, (26, 26))
    conns = [socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) for _conn in range(16)]
    try:
        for index, conn in enumerate(conns):
            conn.sendall(tcp_frame(make_query("acc%d.test." % index, qid=index)))
        for index, conn in enumerate(conns):  # served ones go idle and are closed, which frees descriptors
            got = read_tcp_message(conn)  # SERVFAIL when no descriptor was left for the upstream connection
            assert got[:2] == index.to_bytes(2, "big") and rcode_of(got) in (dns.rcode.NOERROR, dns.rcode.SERVFAIL)
    finally:
        for conn in conns:
            conn.close()
    assert relay.metric('tcp_total{reason="accept-error"}') > 0


# Timeouts, failover, health -------------------------------------------------------------------

def test_no_answer_means_servfail_after_each_upstream_was_tried(relay_factory, upstream_factory):
    first, second = upstream_factory(silent), upstream_factory(silent)
    relay = relay_factory("--upstream", first.addr, "--upstream", second.addr, "--timeout", "0.3")
    query = make_query("lost.test.", qid=0x5150)
    got = ask_udp(relay.port, query)
    assert got[:2] == b"\x51\x50" and rcode_of(got) == dns.rcode.SERVFAIL
    assert got[12:] == query[12:12 + question_len(query)], "the question is echoed"
    wait_for(lambda: len(first.queries()) == 1 and len(second.queries()) == 1, what="one try at each upstream")
    metrics = relay.metrics()
    assert metrics['enva_dns_relay_upstream_timeouts_total{upstream="%s"}' % first.addr] == 1
    assert metrics['enva_dns_relay_servfail_total{reason="exhausted"}'] == 1


def test_failover_skips_a_dead_upstream_and_probing_brings_it_back(relay_factory, upstream_factory):
    primary, secondary = upstream_factory(silent), upstream_factory()
    relay = relay_factory("--upstream", primary.addr, "--upstream", secondary.addr)
    up_metric = 'upstream_up{upstream="%s"}' % primary.addr
    clients = [udp_client() for _client in range(3)]
    for index, sock in enumerate(clients):
        sock.sendto(make_query("f%d.test." % index), ("127.0.0.1", relay.port))
    for sock in clients:
        assert rcode_of(sock.recv(512)) == 0, "answered by the second upstream after the first timed out"
        sock.close()
    wait_for(lambda: relay.metric(up_metric) == 0, what="the primary marked down")
    wait_for(lambda: len(client_queries(primary)) == 3, what="the 3 tries at the primary")

    for i in range(5):
        assert rcode_of(ask_udp(relay.port, make_query("s%d.test." % i))) == 0
    assert len(client_queries(primary)) == 3, "a down upstream is skipped"
    wait_for(lambda: len(primary.queries()) > 3, what="a health probe to the primary")

    primary.behave = answer
    wait_for(lambda: relay.metric(up_metric) == 1, what="the primary back up after answering a probe")
    assert rcode_of(ask_udp(relay.port, make_query("back.test."))) == 0
    assert len(client_queries(primary)) == 4, "the primary is first again"


def test_a_busy_upstream_that_drops_a_burst_but_answers_the_rest_stays_up(relay_factory, upstream_factory):
    up = upstream_factory(lambda q, t: [] if b"\x04drop" in q else [Reply(make_answer(q))])
    relay = relay_factory("--upstream", up.addr)
    servfails = 0
    with udp_client() as dropped:
        for i in range(3):
            dropped.sendto(make_query("drop.d%d.test." % i), ("127.0.0.1", relay.port))
        dropped.setblocking(False)
        deadline = time.monotonic() + WAIT
        while servfails < 3 and time.monotonic() < deadline:  # answered queries keep flowing meanwhile
            assert rcode_of(ask_udp(relay.port, make_query("busy.test."))) == 0
            try:
                servfails += rcode_of(dropped.recv(512)) == dns.rcode.SERVFAIL
            except BlockingIOError:
                time.sleep(0.02)
    assert servfails == 3
    assert relay.metric('upstream_timeouts_total{upstream="%s"}' % up.addr) == 3
    assert relay.metric('upstream_up{upstream="%s"}' % up.addr) == 1
    assert "skipping it" not in relay.log()


# Bad input, access control, limits -------------------------------------------------------------

def malformed_cases():
    valid = make_query("www.example.test.", qid=0x0A0A)
    header = valid[:12]
    return {
        "short": (b"\x0a\x0a\x01", None),
        "response": (valid[:2] + bytes((valid[2] | 0x80,)) + valid[3:], None),
        "qdcount": (valid[:4] + b"\x00\x02" + valid[6:], dns.rcode.FORMERR),
        "pointer": (header + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),
        "label": (header + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", dns.rcode.FORMERR),
        "truncated": (header + b"\x03www", dns.rcode.FORMERR),
        "name-length": (header + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01", dns.rcode.FORMERR),
        "oversize": (valid + b"\x00" * 5000, dns.rcode.FORMERR),
        "opcode": (valid[:2] + bytes((valid[2] | 0x10,)) + valid[3:], dns.rcode.NOTIMP),
    }


def test_malformed_queries_are_counted_never_forwarded_and_answered_formerr_or_dropped(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr)
    valid = make_query("ok.test.", qid=0x7777)
    for reason, (wire, rcode) in malformed_cases().items():
        with udp_client() as sock:
            sock.sendto(wire, ("127.0.0.1", relay.port))
            sock.sendto(valid, ("127.0.0.1", relay.port))
            first = sock.recv(65535)
            if rcode is None:  # dropped: the first thing back is the answer to the valid query
                assert first[:2] == b"\x77\x77", reason
            else:
                assert first[:2] == wire[:2] and first[2] & 0x80 and rcode_of(first) == rcode, reason
                assert first[4:6] == b"\x00\x00", "no question echoed for a question we could not read"
                assert sock.recv(65535)[:2] == b"\x77\x77"
        assert relay.metric('malformed_total{reason="%s"}' % reason) == 1, reason
    assert all(q[2:] == valid[2:] for q in upstream.queries()), "only the valid queries were forwarded"


def test_garbage_floods_are_survived_and_counted(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr)
    rng = random.Random(1035)
    garbage = [rng.randbytes(rng.randrange(0, 600)) for _message in range(2000)]
    with udp_client() as sock:  # open until its last reply arrived: no stray answers for other tests
        for wire in garbage:
            sock.sendto(wire, ("127.0.0.1", relay.port))
        wait_for(lambda: relay.metric('queries_total{transport="udp"}') == 2000, what="all the junk read")
        sock.setblocking(False)
        try:
            while sock.recv(65535):  # the replies to the junk (those the socket buffer held)
                pass
        except BlockingIOError:
            sock.settimeout(WAIT)
        sock.sendto(make_query("after.udp.test.", qid=3), ("127.0.0.1", relay.port))
        assert sock.recv(65535).startswith(b"\x00\x03\x81")
    with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as conn:
        conn.sendall(b"".join(tcp_frame(wire) for wire in garbage[:200]) + tcp_frame(make_query("after.tcp.test.", qid=4)))
        try:  # a frame that cannot be a query (too short, too long, an answer) closes the connection
            while read_tcp_message(conn) is not None:
                pass
        except ConnectionResetError:
            pass
    assert relay.metric('tcp_total{reason="bad-frame"}') == 1
    with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as conn:
        conn.sendall(tcp_frame(make_query("after.tcp.test.", qid=4)))
        got = read_tcp_message(conn)
        assert got[:2] == b"\x00\x04" and got[2] & 0x80 and got[12:].startswith(b"\x05after")
    assert rcode_of(ask_udp(relay.port, make_query("after.test."))) == 0
    metrics = relay.metrics()
    malformed = sum(v for k, v in metrics.items() if k.startswith("enva_dns_relay_malformed_total"))
    assert malformed >= 2000, "nearly all random junk is malformed (a valid one would be forwarded)"
    assert metrics['enva_dns_relay_queries_total{transport="udp"}'] == 2002
    assert relay.proc.poll() is None


def test_clients_outside_the_allow_list_get_refused(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--allow", "10.99.0.0/16")
    query = make_query("www.example.test.", qid=0x0ACC)
    got = ask_udp(relay.port, query)
    assert got[:2] == b"\x0a\xcc" and rcode_of(got) == dns.rcode.REFUSED
    assert got[12:] == query[12:12 + question_len(query)]
    try:  # TCP: reset at accept
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as conn:
            conn.sendall(tcp_frame(query))
            assert read_tcp_message(conn) is None
    except ConnectionResetError:
        pass
    assert upstream.queries() == []
    assert relay.metric('refused_total{reason="acl"}') == 1
    assert relay.metric('tcp_total{reason="refused-acl"}') == 1

    default = relay_factory("--upstream", upstream.addr)  # 'local': loopback and this host's subnets
    assert rcode_of(ask_udp(default.port, query)) == 0


def test_beyond_max_inflight_queries_are_refused_at_once(relay_factory, upstream_factory):
    up = upstream_factory(silent)
    relay = relay_factory("--upstream", up.addr, "--max-inflight", "4", "--timeout", "20")
    waiting = []
    try:
        for i in range(4):
            sock = udp_client()
            sock.sendto(make_query("w%d.test." % i), ("127.0.0.1", relay.port))
            waiting.append(sock)
        wait_for(lambda: relay.metric("inflight") == 4, what="4 queries in flight")
        got = ask_udp(relay.port, make_query("one-too-many.test.", qid=0x0505))
        assert got[:2] == b"\x05\x05" and rcode_of(got) == dns.rcode.REFUSED
        assert relay.metric('refused_total{reason="inflight"}') == 1
        wait_for(lambda: len(up.queries()) == 4, what="the 4 queries at the upstream")
    finally:
        for sock in waiting:
            sock.close()


def test_memory_stays_bounded_under_a_random_port_flood_to_a_dead_upstream(relay_factory, upstream_factory):
    """Each query from a fresh socket (a new source port), the upstream never answers: RSS must not grow."""
    dead = upstream_factory(silent)
    relay = relay_factory("--upstream", dead.addr)

    def flood(count, offset):
        for i in range(count):  # from 127.0.0.2: the answers to closed ports can reach no other test's socket
            with udp_client("127.0.0.2") as sock:
                sock.sendto(make_query("q%d.flood.test." % (offset + i), edns=False), ("127.0.0.1", relay.port))

    flood(8000, 0)  # fills the 4096 in-flight slots
    wait_for(lambda: relay.metric('refused_total{reason="inflight"}') > 0, what="REFUSED beyond max-inflight")
    warm = relay.rss_kib()
    for round_ in range(4):
        flood(8000, 8000 * (round_ + 1))
    wait_for(lambda: relay.metric('queries_total{transport="udp"}') == 40000, what="all 40,000 queries read")
    end = relay.rss_kib()
    assert relay.metric("inflight") <= 4096
    assert end - warm < 2048, "RSS grew from %d KiB to %d KiB over 32,000 more queries" % (warm, end)
    assert end < 32 * 1024


# Signals, systemd, configuration ---------------------------------------------------------------

def test_sighup_rereads_the_config_and_keeps_queries_in_flight(relay_factory, upstream_factory, tmp_path):
    old = upstream_factory(lambda q, t: [Reply(make_answer(q, "192.0.2.1"), delay=1.0)])
    new = upstream_factory(lambda q, t: [Reply(make_answer(q, "192.0.2.2"))])
    config = tmp_path / "relay.ini"
    config.write_text("[relay]\nupstream = %s\ntimeout = 10\n" % old.addr)
    relay = relay_factory("--config", str(config))
    with udp_client() as waiting:
        waiting.sendto(make_query("inflight.test.", qid=1), ("127.0.0.1", relay.port))
        wait_for(old.queries, what="the query at the old upstream")
        config.write_text("[relay]\nupstream = %s\n" % new.addr)
        relay.signal(signal.SIGHUP)
        relay.wait_message("READY=1", count=2)
        assert "RELOADING=1" in relay.read_messages()[1].split("\n")
        assert first_address(ask_udp(relay.port, make_query("after.test.", qid=2))) == "192.0.2.2"
        assert first_address(waiting.recv(65535)) == "192.0.2.1", "the query in flight was answered"
    assert len(old.queries()) == 1

    config.write_text("[relay]\nupstream = not-an-address\n")
    relay.signal(signal.SIGHUP)
    relay.wait_message("READY=1", count=3)
    assert "reload failed, the running configuration stays" in relay.log()
    assert relay.metric('reload_total{reason="failed"}') == 1
    assert first_address(ask_udp(relay.port, make_query("still.test."))) == "192.0.2.2"


def test_sigusr1_logs_the_counters(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr)
    for i in range(5):
        ask_udp(relay.port, make_query("u%d.test." % i))
    relay.signal(signal.SIGUSR1)
    line = wait_for(lambda: next((l for l in relay.log().splitlines() if "counters (SIGUSR1)" in l), None),
                    what="the counters in the log")
    assert 'queries_total{transport="udp"}=5' in line
    assert 'responses_total{rcode="NOERROR"}=5' in line
    assert 'upstream_answers_total{upstream="%s"}=5' % upstream.addr in line


def test_sd_notify_ready_watchdog_and_stopping(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, env={"WATCHDOG_USEC": "200000"})
    ready = next(m for m in relay.read_messages() if "READY=1" in m.split("\n"))
    assert "MAINPID=%d" % relay.pid in ready.split("\n")
    assert ready.split("\n")[-1].startswith("STATUS=listening on 127.0.0.1:%d" % relay.port)
    relay.wait_message("WATCHDOG=1", count=5)
    assert relay.stop() == 0
    assert "STOPPING=1" in relay.read_messages()


def test_sigterm_answers_queries_in_flight_then_exits_cleanly(relay_factory, upstream_factory):
    up = upstream_factory(lambda q, t: [Reply(make_answer(q, "192.0.2.9"), delay=0.5)])
    relay = relay_factory("--upstream", up.addr)
    with udp_client() as sock:
        sock.sendto(make_query("last.test."), ("127.0.0.1", relay.port))
        wait_for(up.queries, what="the query at the upstream")
        relay.signal(signal.SIGTERM)
        assert first_address(sock.recv(65535)) == "192.0.2.9"
    assert relay.proc.wait(WAIT) == 0
    assert "counters (exit)" in relay.log()


def test_metrics_are_prometheus_text_with_an_rtt_histogram(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr)
    for i in range(7):
        ask_udp(relay.port, make_query("m%d.test." % i))
    text = relay.metrics_text()
    metrics = relay.metrics()  # asserts every sample line's syntax
    label = 'upstream="%s"' % upstream.addr
    buckets = [v for k, v in metrics.items() if k.startswith("enva_dns_relay_upstream_rtt_seconds_bucket{%s," % label)]
    assert buckets == sorted(buckets) and buckets[-1] == 7
    assert metrics["enva_dns_relay_upstream_rtt_seconds_count{%s}" % label] == 7
    assert "# TYPE enva_dns_relay_upstream_rtt_seconds histogram" in text
    assert 0 < metrics["enva_dns_relay_resident_memory_bytes"] < 64 * 2 ** 20


def test_ipv6_listener(relay_factory, upstream, tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", port))
    except OSError:
        pytest.skip("::1 is not configured")
    relay = relay_factory("--upstream", upstream.addr, "--listen", "[::1]:%d" % port)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(WAIT)
        sock.sendto(make_query("v6.test.", qid=6), ("::1", port))
        assert rcode_of(sock.recv(65535)) == 0
    assert relay.metric('queries_total{transport="udp"}') == 1


def run_relay(*args):
    return subprocess.run([RELAY_PYTHON, str(RELAY)] + list(args), capture_output=True, text=True, timeout=WAIT, check=False)


def test_check_config_prints_a_config_that_reads_back_the_same(tmp_path):
    first = run_relay("--upstream", "192.0.2.53", "--upstream", "[2001:db8::53]:5353", "--allow", "10.0.0.0/8",
                      "--timeout", "1.5", "--check-config")
    assert first.returncode == 0, first.stderr
    parser = configparser.ConfigParser()
    parser.read_string(first.stdout)
    assert parser["relay"]["upstream"] == "192.0.2.53, [2001:db8::53]:5353"
    config = tmp_path / "effective.ini"
    config.write_text(first.stdout)
    again = run_relay("--config", str(config), "--check-config")
    assert again.returncode == 0 and again.stdout == first.stdout


@pytest.mark.parametrize("args, message", [
    (["--upstream", "dns.example"], "not an IP address"),
    ([], "upstream: at least one is required"),
    (["--upstream", "192.0.2.1", "--timeout", "0"], "out of range"),
    (["--upstream", "192.0.2.1", "--allow", "everyone"], "neither a CIDR nor 'local'"),
    (["--upstream", "192.0.2.1:99999"], "the port must be 1..65535"),
])
def test_bad_configuration_exits_2_with_a_reason(args, message):
    result = run_relay(*(args + ["--check-config"]))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_port_it_cannot_bind_is_exit_1_with_the_address(upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_relay("--listen", "127.0.0.1:%d" % port, "--upstream", upstream.addr)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:%d/udp" % port in result.stderr and "Traceback" not in result.stderr
