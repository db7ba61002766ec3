"""The random-source-port flood against a real UDP responder on loopback: counts, bounds, source ports."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from enva_lab import dns, flood


class Responder:
    """A UDP server on 127.0.0.1 that answers every ``answer_every``-th query (NOERROR, the query's ID)
    and records the source ports it saw."""

    def __init__(self, answer_every=1):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer_every = answer_every
        self.ports = []
        self.names = set()
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        count = 0
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            count += 1
            self.ports.append(peer[1])
            self.names.add(data[12:-4])
            if count % self.answer_every == 0:
                flags = struct.unpack("!H", data[2:4])[0] | 0x8000
                self.sock.sendto(data[:2] + struct.pack("!H", flags) + data[4:], peer)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.fixture
def responder():
    made = []

    def make(answer_every=1):
        made.append(Responder(answer_every))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_every_query_comes_from_a_fresh_source_port_and_is_counted(responder):
    server = responder()
    stats, _elapsed = flood.run("127.0.0.1", 200, 1.0, port=server.port, timeout=0.5)
    assert stats.sent == 200 and stats.answered == 200 and stats.lost == 0
    assert stats.rcodes == {"NOERROR": 200}
    assert len(server.ports) == 200 and len(set(server.ports)) >= 190   # random ports: a rare repeat is chance
    assert len(server.names) > 1                        # names from the lab zone, not one name


def test_unanswered_queries_are_lost_after_the_timeout(responder):
    server = responder(answer_every=2)
    stats, elapsed = flood.run("127.0.0.1", 100, 1.0, port=server.port, timeout=0.3)
    assert (stats.sent, stats.answered, stats.lost) == (100, 50, 50)
    assert elapsed < 1.0 + 0.3 + 0.5


def test_open_sockets_are_bounded(responder):
    server = responder(answer_every=10 ** 6)           # never answers
    opened = []
    stats, _elapsed = flood.run("127.0.0.1", 300, 1.0, port=server.port, timeout=2, max_open=50,
                                on_tick=lambda _t, _s, open_sockets: opened.append(open_sockets))
    assert stats.sent == 300 and stats.lost == 300 and stats.answered == 0
    assert opened and max(opened) <= 50


def test_the_flood_stops_when_asked(responder):
    server = responder()
    stats, elapsed = flood.run("127.0.0.1", 100, 30, port=server.port, timeout=0.3, stop_when=lambda: True)
    assert stats.sent <= 110 and elapsed < 3


@pytest.mark.parametrize("qps, seconds, max_open, message", [
    (0, 1, 10, "--qps"), (10 ** 6, 1, 10, "--qps"), (10, 0, 10, "--seconds"), (10, 3600, 10, "--seconds"),
    (10, 1, 0, "--max-open"),
])
def test_unbounded_floods_are_refused(qps, seconds, max_open, message):
    with pytest.raises(ValueError, match=message):
        flood.check_bounds(qps, seconds, max_open)


def test_query_wire_format():
    query = dns.build_query("sins.lab.enva.test", "A", qid=0x1234)
    assert query == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                     b"\x04sins\x03lab\x04enva\x04test\x00\x00\x01\x00\x01")
    assert dns.build_query("big.lab.enva.test.", "TXT", qid=1, edns=True).endswith(
        b"\x00\x10\x00\x01" + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")


@pytest.mark.parametrize("data, expected", [
    (b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00", (0x1234, "NOERROR", False, 1)),
    (b"\x00\x07\x83\x85\x00\x01\x00\x00\x00\x00\x00\x00", (7, "REFUSED", True, 0)),
    (b"\x00\x07\x81\x83\x00\x01\x00\x00\x00\x01\x00\x00", (7, "NXDOMAIN", False, 0)),
])
def test_answers_are_read_from_the_header(data, expected):
    answer = dns.parse_answer(data)
    assert (answer.qid, answer.rcode_name, answer.truncated, answer.answers) == expected


@pytest.mark.parametrize("data", [b"\x00\x01", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"])
def test_what_is_not_a_response_is_refused(data):
    with pytest.raises(ValueError):
        dns.parse_answer(data)
