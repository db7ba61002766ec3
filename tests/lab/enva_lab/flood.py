"""The random-source-port DNS flood: each query from a fresh UDP socket, as stub resolvers send them.

That is what makes ``socat UDP4-LISTEN:53,fork`` fork one child per query (dnsperf reuses a few
source ports and does not). The flood is bounded three ways: in time (``seconds``), in count
(``qps * seconds`` queries at most) and in open sockets (``max_open``; beyond that the oldest
unanswered query is given up as lost).
"""

import os
import random
import select
import socket
import time
from collections import OrderedDict

from enva_lab import dns, settings

MAX_SECONDS = 900
MAX_QPS = 20000


class FloodStats:
    """Counters of one flood."""

    def __init__(self):
        self.sent = 0
        self.answered = 0
        self.lost = 0
        self.send_errors = 0
        self.rcodes = {}

    def as_dict(self):
        return {"sent": self.sent, "answered": self.answered, "lost": self.lost, "send_errors": self.send_errors,
                "rcodes": dict(sorted(self.rcodes.items()))}


SIZED_MIN_QPS = 50
SIZED_MAX_QPS = 2000
"""A flood sized to the host asks for one query per fork the host makes a second (socat forks one child per
query; past that its listener only falls behind and the extra queries are lost), 50 to 2,000 q/s."""


def fork_rate(seconds=1.0, at_most=20000):
    """Processes this host forks (and reaps) a second, measured for ``seconds`` (at most ``at_most`` forks)."""
    count = 0
    started = time.monotonic()
    while count < at_most and time.monotonic() - started < seconds:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        count += 1
    return count / (time.monotonic() - started)


def sized_qps(forks_per_second):
    """The flood rate for a host that forks ``forks_per_second``: one query per fork, 50 to 2,000 q/s."""
    return int(max(SIZED_MIN_QPS, min(SIZED_MAX_QPS, forks_per_second)))


def check_bounds(qps, seconds, max_open):
    """ValueError when a flood would not be bounded as the lab promises."""
    if not 0 < qps <= MAX_QPS:
        raise ValueError("--qps must be between 1 and %d, not %s" % (MAX_QPS, qps))
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError("--seconds must be between 1 and %d, not %s" % (MAX_SECONDS, seconds))
    if not 0 < max_open <= 16384:
        raise ValueError("--max-open must be between 1 and 16384, not %s" % max_open)


def run(target, qps, seconds, max_open=4096, timeout=2.0, on_tick=None, stop_when=None, names=None,
        port=settings.DNS_PORT):
    """Flood ``target`` (an address on the lab bridge) on ``port`` and return ``(FloodStats, seconds run)``.

    ``on_tick(elapsed, stats, open_sockets)`` runs about once a second; the flood ends early when
    ``stop_when()`` (checked at each tick) returns true.
    """
    check_bounds(qps, seconds, max_open)
    names = names or ["%s.%s" % (name, settings.ZONE) for name in dns.FLOOD_NAMES]
    stats = FloodStats()
    pending = OrderedDict()           # fd -> (socket, query id, sent at)
    poller = select.epoll()
    started = time.monotonic()
    next_tick = started + 1.0
    limit = int(qps * seconds)
    stopped = False
    drain_until = None

    def finish(fd, lost):
        sock = pending.pop(fd)[0]
        poller.unregister(fd)
        sock.close()
        if lost:
            stats.lost += 1

    try:
        while True:
            now = time.monotonic()
            elapsed = now - started
            sending = not stopped and elapsed < seconds and stats.sent < limit
            if sending:
                due = min(int(qps * elapsed) + 1, limit) - stats.sent
                for _count in range(min(due, 500)):
                    if len(pending) >= max_open:
                        finish(next(iter(pending)), lost=True)
                    _send((target, port), random.choice(names), poller, pending, stats, now)
            elif not pending or (drain_until is not None and now > drain_until):
                break
            elif drain_until is None:
                drain_until = now + timeout       # the last queries get their full time to be answered
            for fd, _events in poller.poll(0.002 if sending else 0.05):
                sock, qid, _sent_at = pending[fd]
                try:
                    data = sock.recv(4096)
                    answer = dns.parse_answer(data)
                except (OSError, ValueError):
                    continue
                if answer.qid == qid:
                    stats.answered += 1
                    stats.rcodes[answer.rcode_name] = stats.rcodes.get(answer.rcode_name, 0) + 1
                    finish(fd, lost=False)
            while pending:
                fd, (_sock, _qid, sent_at) = next(iter(pending.items()))
                if now - sent_at < timeout:
                    break
                finish(fd, lost=True)
            if now >= next_tick:
                next_tick += 1.0
                if on_tick:
                    on_tick(elapsed, stats, len(pending))
                if stop_when and stop_when():
                    stopped = True
    finally:
        for fd in list(pending):
            finish(fd, lost=True)
        poller.close()
    return stats, time.monotonic() - started


def _send(server, name, poller, pending, stats, now):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    qid = random.getrandbits(16)
    try:
        sock.sendto(dns.build_query(name, "A", qid), server)
    except OSError:
        stats.send_errors += 1
        sock.close()
        return
    stats.sent += 1
    pending[sock.fileno()] = (sock, qid, now)
    poller.register(sock.fileno(), select.EPOLLIN)
