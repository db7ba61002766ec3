"""Random-source-port DNS flood: every query from a fresh UDP socket, as stub resolvers send them.

This is what made socat fork a child per query in CT 2017 (dnsperf reuses a
few source ports and does not). Bounded in rate, time and count; each socket
waits up to --linger seconds for its answer, then is closed. Only loopback
and the lab's bridge (10.217.0.0/24) may be targeted. Standard library only.

    python3 tests/bench/dnsflood.py --server 127.0.0.1 --port 5353 --rate 2000 --duration 60 --count 120000

Prints one JSON line: {"sent", "answered", "rcodes", "seconds", "send_errors"}.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import resource
import selectors
import socket
import sys
import time

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support on sys.path
from support.dns_wire import query_wire

ALLOWED_TARGETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"), ipaddress.ip_network("10.217.0.0/24"))
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def flood(server, port, rate, duration, count, linger=1.0, name="www.bench.enva.test"):
    """Send up to ``count`` queries at ``rate``/s for at most ``duration`` s, each from a new socket."""
    address = ipaddress.ip_address(server)
    if not any(address in net for net in ALLOWED_TARGETS):
        raise SystemExit("dnsflood: %s is neither loopback nor the lab's bridge; refusing to send" % server)
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, int(rate * linger) + 256))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    selector = selectors.DefaultSelector()
    open_sockets = collections.deque()
    rcodes = collections.Counter()
    sent = answered = send_errors = 0
    started = time.monotonic()
    interval = 1.0 / rate
    deadline = started + duration + interval / 2  # rate x duration queries, not one fewer to rounding
    due = started
    target = (server, port)
    try:
        while True:
            now = time.monotonic()
            while sent < count and due <= now < deadline:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                try:
                    sock.sendto(query_wire(name, sent & 0xFFFF), target)
                except OSError:
                    send_errors += 1
                selector.register(sock, selectors.EVENT_READ)
                open_sockets.append((now + linger, sock))
                sent += 1
                due += interval
            while open_sockets and (open_sockets[0][0] <= now or open_sockets[0][1].fileno() < 0):
                sock = open_sockets.popleft()[1]
                if sock.fileno() >= 0:
                    selector.unregister(sock)
                    sock.close()
            if not open_sockets and (sent >= count or now >= deadline):
                break
            wait = min(max(0.0, due - now), 0.05) if sent < count and now < deadline else 0.05
            for key, _mask in selector.select(wait):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if len(data) >= 4:
                    answered += 1
                    rcodes[RCODES.get(data[3] & 15, str(data[3] & 15))] += 1
                selector.unregister(sock)
                sock.close()
    finally:
        for _expires, sock in open_sockets:
            if sock.fileno() >= 0:
                sock.close()
        selector.close()
    return {"sent": sent, "answered": answered, "rcodes": dict(rcodes), "send_errors": send_errors,
            "seconds": round(time.monotonic() - started, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="queries per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds, at most")
    parser.add_argument("--count", type=int, default=10000, help="queries, at most")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds each socket waits for its answer")
    parser.add_argument("--name", default="www.bench.enva.test")
    args = parser.parse_args(argv)
    result = flood(args.server, args.port, args.rate, args.duration, args.count, args.linger, args.name)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
