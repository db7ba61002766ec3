"""Loopback ports and polling: the two helpers every test and benchmark that starts a server needs."""

from __future__ import annotations

import socket
import time

WAIT = 30.0  # seconds: the longest any wait may take before the caller gives up


def free_port(taken=(), host="127.0.0.1"):
    """A port free on ``host`` for both UDP and TCP (as far as can be told without holding it), not in ``taken``."""
    for _attempt in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP on %s" % host)


def poll(predicate, timeout=WAIT, interval=0.05):
    """Call ``predicate`` until it returns something true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def wait_for(predicate, timeout=WAIT, interval=0.05, what="condition"):
    """Like ``poll``, but raise ``TimeoutError`` naming ``what`` when the predicate never holds."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise TimeoutError("timed out after %ss waiting for %s" % (timeout, what))
    return value
