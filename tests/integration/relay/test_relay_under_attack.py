"""The relay under attack (issue 17): each finding reproduced on loopback, bounded in count and time.

Every test here failed against the relay before the fix (run the suite with
ENVA_RELAY=/path/to/the/old/enva_dns_relay.py to see it) and passes now. None
asserts on speed: each waits for a state (an answer, a closed connection, a
counter) with a generous bound.
"""

from __future__ import annotations

import os
import random
import re
import resource
import select
import signal
import socket
import struct

import dns.message
import dns.rcode
import dns.rrset

from support.relay import (
    WAIT, Reply, answer, ask_udp, free_port, make_answer, make_query, read_tcp_message, silent, tcp_frame, udp_client, wait_for,
    with_id,
)
from support.procfs import status_kib, tcp_send_queue_bytes

LINGER_RST = struct.pack("ii", 1, 0)


def rcode_of(wire):
    return wire[3] & 0x0F


def connect(port, source="127.0.0.1", rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(WAIT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_relay(sock):
    """True if the relay closed (FIN or RST) ``sock`` without answering."""
    try:
        return sock.recv(65535) == b""
    except ConnectionResetError:
        return True


# 1. memory from outside the allow list, and from clients that never read ---------------------------

def test_tcp_clients_outside_the_allow_list_are_reset_at_accept_without_being_read(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--allow", "10.99.0.0/16")
    refused = []
    try:
        for index in range(50):
            try:
                sock = connect(relay.port)
            except ConnectionResetError:  # reset before connect() even returned
                continue
            refused.append(sock)
            try:
                sock.sendall(b"".join(tcp_frame(make_query("x%d.test." % index, qid=i)) for i in range(20)))
            except (ConnectionResetError, BrokenPipeError):
                pass
        assert all(closed_by_relay(sock) for sock in refused), "no REFUSED answers are buffered for them: they are reset"
        wait_for(lambda: relay.metric('tcp_total{reason="refused-acl"}') == 50, what="50 connections refused")
    finally:
        for sock in refused:
            sock.close()
    assert relay.metric('queries_total{transport="tcp"}') == 0 and upstream.queries() == []


def big_answers(count=1000):
    """An upstream whose answers to 'big.test. A' carry ``count`` A records (about 16 KiB)."""
    template = {}

    def behave(query, transport):
        del transport
        if not query[12:].startswith(b"\x03big\x04test\x00"):
            return [Reply(make_answer(query))]
        if "wire" not in template:
            response = dns.message.make_response(dns.message.from_wire(query))
            response.answer.append(dns.rrset.from_text_list(response.question[0].name, 300, "IN", "A",
                                                            ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(count)]))
            template["wire"] = response.to_wire(max_size=65535)
        return [Reply(with_id(template["wire"], int.from_bytes(query[:2], "big")))]
    return behave


def test_clients_that_never_read_their_answers_cannot_grow_the_relay_past_its_buffers(relay_factory, upstream_factory):
    up = upstream_factory(big_answers())
    relay = relay_factory("--upstream", up.addr, "--timeout", "10")
    clients, per_client = 60, 60  # 60 x 60 answers of 16 KiB: 56 MiB if the relay buffered them
    socks = []
    try:
        for index in range(clients):
            sock = connect(relay.port, source="127.0.0.%d" % (10 + index % 8), rcvbuf=4096)  # 8 per address
            sock.sendall(b"".join(tcp_frame(make_query("big.test.", qid=index * per_client + i)) for i in range(per_client)))
            socks.append(sock)

        def settled():
            metrics = relay.metrics()
            cut = sum(v for k, v in metrics.items() if re.search(r'tcp_total\{reason="(slow-reader|budget|buffer)-closed"\}', k))
            delivered = len(up.queries("tcp")) >= clients * per_client
            return (cut >= clients or delivered) and metrics["enva_dns_relay_inflight"] == 0
        wait_for(settled, timeout=120, what="every non-reading client cut off (or every answer buffered)")
        peak_mib = status_kib(relay.pid, "VmHWM") / 1024
        kernel_mib = tcp_send_queue_bytes(relay.port) / 1024 / 1024
    finally:
        for sock in socks:
            sock.close()
    assert peak_mib + kernel_mib < 40, "peak RSS %.1f MiB + %.1f MiB in the kernel's send queues: the relay buffered what " \
        "its clients did not read" % (peak_mib, kernel_mib)
    assert relay.metric("tcp_buffered_bytes") <= 4096 * 1024
    assert rcode_of(ask_udp(relay.port, make_query("after.test."))) == 0


# 2. trickle: bytes do not keep a connection, a query must arrive in full in time ------------------------

def test_a_trickle_attack_does_not_keep_legitimate_tcp_clients_out(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--max-tcp-clients", "32", "--tcp-frame-timeout", "1",
                          "--tcp-idle-timeout", "3")
    attackers = []
    legit = None
    try:
        for index in range(64):  # from 8 addresses, 8 each: within the per-address cap, twice the table
            attackers.append(connect(relay.port, source="127.0.0.%d" % (2 + index % 8)))
        wait_for(lambda: relay.metric("tcp_clients") == 32, what="the attackers holding every slot")
        frame = tcp_frame(make_query("slow.test.", qid=1))
        legit = connect(relay.port)
        legit.sendall(tcp_frame(make_query("legit.test.", qid=0x1E61)))
        answered = None
        for step in range(150):  # one byte per attacker every 0.2 s, for at most 30 s
            for sock in list(attackers):
                try:
                    sock.send(frame[step % len(frame):step % len(frame) + 1])
                except OSError:
                    attackers.remove(sock)
                    sock.close()
            if select.select([legit], [], [], 0.2)[0]:
                answered = read_tcp_message(legit)
                break
        assert answered is not None and answered[:2] == b"\x1e\x61" and rcode_of(answered) == dns.rcode.NOERROR
    finally:
        for sock in attackers + ([legit] if legit else []):
            sock.close()
    assert relay.metric('tcp_total{reason="frame-timeout"}') > 0


def test_an_empty_frame_closes_the_connection(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr)
    with connect(relay.port) as sock:
        sock.sendall(b"\x00\x00" + tcp_frame(make_query("after.empty.test.", qid=5)))
        assert closed_by_relay(sock), "a frame shorter than a DNS header is not a DNS client's"
    assert relay.metric('tcp_total{reason="bad-frame"}') == 1


def test_connections_per_client_address_are_capped(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--max-tcp-per-client", "4")
    socks = [connect(relay.port, source="127.0.0.3") for _conn in range(10)]
    try:
        wait_for(lambda: relay.metric('tcp_total{reason="refused-per-client"}') == 6, what="6 connections refused")
        assert relay.metric("tcp_clients") == 4
        with connect(relay.port) as other:  # another address still gets in
            other.sendall(tcp_frame(make_query("other.test.", qid=9)))
            assert read_tcp_message(other)[:2] == b"\x00\x09"
    finally:
        for sock in socks:
            sock.close()


# 3. upstream TCP connections reused and capped ---------------------------------------------------------

def test_pipelined_tcp_queries_share_a_few_upstream_connections_and_out_of_order_answers_match(relay_factory, upstream_factory):
    rng = random.Random(17)

    def shuffled(query, transport):
        index = int(dns.message.from_wire(query).question[0].name.labels[0][1:])
        return [Reply(make_answer(query, "10.7.%d.%d" % (index >> 8, index & 255)), delay=rng.random() * 0.05)]

    up = upstream_factory(shuffled)
    relay = relay_factory("--upstream", up.addr)
    clients, per_client = 20, 64
    socks = [connect(relay.port, source="127.0.0.%d" % (10 + client % 4)) for client in range(clients)]  # 5 per address
    try:
        for number, sock in enumerate(socks):
            sock.sendall(b"".join(tcp_frame(make_query("q%d.test." % (number * per_client + i), qid=number * per_client + i))
                                  for i in range(per_client)))
        for number, sock in enumerate(socks):
            got = {}
            for _answer in range(per_client):
                wire = read_tcp_message(sock)
                message = dns.message.from_wire(wire)
                got[message.id] = (str(message.question[0].name), message.answer[0][0].address)
            assert got == {number * per_client + i: ("q%d.test." % (number * per_client + i),
                                                     "10.7.%d.%d" % ((number * per_client + i) >> 8, (number * per_client + i) & 255))
                           for i in range(per_client)}
    finally:
        for sock in socks:
            sock.close()
    assert len(up.queries("tcp")) == clients * per_client
    assert up.accepts <= 8, "%d upstream TCP connections for %d queries (the cap is 8)" % (up.accepts, clients * per_client)
    assert relay.metric('upstream_tcp_opened_total{upstream="%s"}' % up.addr) == up.accepts


# 4. a client that half-closes and then resets with a query pending --------------------------------------

def test_a_reset_after_a_half_close_closes_the_connection_instead_of_spinning(relay_factory, upstream_factory):
    up = upstream_factory(silent)
    relay = relay_factory("--upstream", up.addr, "--timeout", "60")
    sock = connect(relay.port)
    sock.sendall(tcp_frame(make_query("pending.test.", qid=4)))
    wait_for(lambda: up.queries("tcp"), what="the query at the upstream")
    sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: relay.metric("tcp_clients") == 1, what="the client still counted after its FIN")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    sock.close()
    wait_for(lambda: relay.metric("tcp_clients") == 0, what="the reset client closed (its query still pending)")
    assert relay.metric('tcp_total{reason="reset"}') == 1


# 5. warnings at the descriptor limit are rate-limited ---------------------------------------------------

def counters(relay):
    relay.signal(signal.SIGUSR1)
    lines = wait_for(lambda: [line for line in relay.log().splitlines() if "counters (SIGUSR1)" in line], what="a counters line")
    match = re.search(r'tcp_total\{reason="accept-error"\}=(\d+)', lines[-1])
    return int(match.group(1)) if match else 0


def test_out_of_descriptors_the_accept_warning_is_logged_once_not_every_tick(relay_factory, upstream):
    relay = relay_factory("--upstream", upstream.addr, "--tcp-idle-timeout", "20")
    spare = len(os.listdir("/proc/%d/fd" % relay.pid)) + 2
    resource.prlimit(relay.pid, resource.RLIMIT_NOFILE, (spare, spare))
    socks = [connect(relay.port) for _conn in range(8)]  # 2 accepted, 6 wait in the backlog: accept fails each tick
    try:
        wait_for(lambda: counters(relay) >= 10, what="10 failed accepts")
    finally:
        for sock in socks:
            sock.close()
    warnings = [line for line in relay.log().splitlines() if "WARNING" in line and ("backlog" in line or "not accepting" in line)]
    assert len(warnings) == 1, warnings


# 6. the smaller ones ------------------------------------------------------------------------------------

def test_a_lower_timeout_by_sighup_applies_to_queries_already_in_flight(relay_factory, upstream_factory, tmp_path):
    up = upstream_factory(silent)
    config = tmp_path / "relay.ini"
    config.write_text("[relay]\nupstream = %s\ntimeout = 60\n" % up.addr)  # longer than any wait here
    relay = relay_factory("--config", str(config))
    with udp_client() as first, udp_client() as second:
        first.sendto(make_query("first.test.", qid=1), ("127.0.0.1", relay.port))
        wait_for(lambda: len(up.queries()) == 1, what="the first query at the upstream")
        config.write_text("[relay]\nupstream = %s\ntimeout = 0.5\n" % up.addr)
        relay.signal(signal.SIGHUP)
        relay.wait_message("READY=1", count=2, what="the reload done")
        second.sendto(make_query("second.test.", qid=2), ("127.0.0.1", relay.port))
        got = second.recv(65535)  # waits at most WAIT (30 s), half the first query's old timeout
        assert got[:2] == b"\x00\x02" and rcode_of(got) == dns.rcode.SERVFAIL
        first.setblocking(False)
        try:
            early = first.recv(65535)
        except BlockingIOError:
            early = None
    assert early is not None and rcode_of(early) == dns.rcode.SERVFAIL, "the first query's deadline moved up too"


def test_queries_cut_by_the_sigterm_drain_get_servfail(relay_factory, upstream_factory):
    first, second = upstream_factory(silent), upstream_factory(silent)
    relay = relay_factory("--upstream", first.addr, "--upstream", second.addr, "--timeout", "1")
    with udp_client() as sock:
        sock.sendto(make_query("cut.test.", qid=0xC07), ("127.0.0.1", relay.port))
        wait_for(first.queries, what="the query at the first upstream")
        relay.signal(signal.SIGTERM)  # the drain (1 s) ends while the query waits for the second upstream
        assert relay.proc.wait(WAIT) == 0
        sock.settimeout(5)
        got = sock.recv(65535)
    assert got[:2] == b"\x0c\x07" and rcode_of(got) == dns.rcode.SERVFAIL
    assert 'servfail_total{reason="drain"}=1' in relay.log()


def test_an_upstream_that_refuses_fails_over_at_once_not_after_the_timeout(relay_factory, upstream):
    closed = "127.0.0.1:%d" % free_port()  # nothing listens: ICMP port unreachable
    relay = relay_factory("--upstream", closed, "--upstream", upstream.addr, "--timeout", "60")
    got = ask_udp(relay.port, make_query("refused.test.", qid=0x1C), timeout=20)  # a third of --timeout
    assert got is not None and got[:2] == b"\x00\x1c" and rcode_of(got) == dns.rcode.NOERROR
    assert relay.metric('upstream_timeouts_total{upstream="%s"}' % closed) == 0
    assert relay.metric('upstream_errors_total{upstream="%s"}' % closed) >= 1


def test_upstream_source_ports_rotate_with_time_as_well_as_count(relay_factory, upstream_factory):
    up = upstream_factory(answer)
    relay = relay_factory("--upstream", up.addr, "--port-lifetime", "1")

    def ports():
        with up.lock:
            return {addr[1] for kind, _data, addr in up.received if kind == "udp"}
    for index in range(100):  # about 1 query every 0.1 s; 8 sockets' ports at any time
        assert rcode_of(ask_udp(relay.port, make_query("p%d.test." % index))) == 0
        if len(ports()) > 8:
            break
        select.select([], [], [], 0.1)
    assert len(ports()) > 8, "after 100 queries over 10 s, the ports are still those of the first 8 sockets"
