"""Helpers for the relay's tests: DNS messages, a scripted upstream, the relay as a subprocess.

Everything runs on 127.0.0.1 with ports the kernel hands out. Every process a
test starts is stopped by its PID at teardown. Waits are generous (the
machine may be loaded); no test asserts on speed.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from support import net
from support.dns_wire import tcp_frame  # noqa: F401  pylint: disable=unused-import  # the relay tests frame with it
from support.procfs import status_kib

ROOT = Path(__file__).resolve().parents[2]
# ENVA_RELAY=/path/to/an/older/enva_dns_relay.py runs the suite against another version (to see a test fail before a fix).
RELAY = Path(os.environ.get("ENVA_RELAY") or ROOT / "roles" / "dns_relay" / "files" / "enva_dns_relay.py")
WAIT = 30.0  # seconds: the most any wait may take before a test fails
# The interpreter the relay runs under (e.g. ENVA_RELAY_PYTHON=python3.9 to check the oldest supported one).
RELAY_PYTHON = os.environ.get("ENVA_RELAY_PYTHON") or sys.executable


def wait_for(predicate, timeout=WAIT, interval=0.05, what="condition"):
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout``."""
    try:
        return net.wait_for(predicate, timeout, interval, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    return net.free_port()


# DNS messages ---------------------------------------------------------------------

def make_query(name, rdtype="A", qid=None, edns=True, **kwargs):
    """A query's wire bytes (dnspython), with EDNS by default (so that pass-through is visible)."""
    if edns:
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232, **kwargs)
    else:
        query = dns.message.make_query(name, rdtype, use_edns=False, **kwargs)
    if qid is not None:
        query.id = qid
    return query.to_wire()


def make_answer(query_wire, address="192.0.2.1", tc=False, rcode=None, ttl=300):
    """A response to ``query_wire`` with one A record (none when TC=1), echoing its EDNS."""
    query = dns.message.from_wire(query_wire)
    response = dns.message.make_response(query)
    if tc:
        response.flags |= dns.flags.TC
    elif query.question[0].rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(query.question[0].name, ttl, "IN", "A", address))
    if rcode is not None:
        response.set_rcode(rcode)
    return response.to_wire()


def with_id(wire, qid):
    return qid.to_bytes(2, "big") + wire[2:]


def question_len(wire):
    """Length of the question section (name + type + class) that starts at byte 12."""
    pos = 12
    while wire[pos]:
        pos += wire[pos] + 1
    return pos + 5 - 12


def udp_client(source="127.0.0.1", timeout=WAIT):
    """A UDP socket bound to ``source`` (never the wildcard: then it cannot catch answers meant for
    another test's closed socket on 127.0.0.2, where the floods come from)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(timeout)
    return sock


def ask_udp(port, wire, timeout=WAIT):
    """Send one datagram from a fresh socket; the first answer (bytes) or None on timeout."""
    with udp_client(timeout=timeout) as sock:
        sock.sendto(wire, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except socket.timeout:
            return None


def read_tcp_message(sock):
    """One length-prefixed message from a blocking TCP socket, or None at EOF."""
    head = recv_exact(sock, 2)
    if head is None:
        return None
    return recv_exact(sock, int.from_bytes(head, "big"))


def recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# The scripted upstream ---------------------------------------------------------------

class Reply:
    """What the upstream sends back: ``data`` after ``delay`` s, optionally from a forger's socket."""

    def __init__(self, data, delay=0.0, forged=False):
        self.data = data
        self.delay = delay
        self.forged = forged


def answer(query, transport):  # the default behaviour: a plain answer
    del transport
    return [Reply(make_answer(query))]


def silent(query, transport):
    del query, transport
    return []


class ScriptedUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP on one port) whose behaviour the test sets.

    ``behave(query_bytes, transport)`` returns a list of Reply. Everything
    received is kept in ``received`` as (transport, bytes, source address).
    """

    def __init__(self, behave=answer):
        self.behave = behave
        self.received = []
        self.strays = []
        self.lock = threading.Lock()
        self.port = None
        for _attempt in range(100):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(64)
        self.forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.forger.bind(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.port
        self.wake_r, self.wake_w = socket.socketpair()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.udp, selectors.EVENT_READ, "udp")
        self.selector.register(self.tcp, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.scheduled = []
        self.sequence = itertools.count()
        self.buffers = {}
        self.accepts = 0  # TCP connections accepted so far
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def queries(self, transport=None):
        """The messages received so far (bytes), optionally of one transport."""
        with self.lock:
            return [data for kind, data, _addr in self.received if transport in (None, kind)]

    def _schedule(self, replies, target):
        now = time.monotonic()
        for reply in replies:
            heapq.heappush(self.scheduled, (now + reply.delay, next(self.sequence), reply, target))

    def _run(self):
        while not self.stopped:
            timeout = max(0.0, self.scheduled[0][0] - time.monotonic()) if self.scheduled else 0.5
            for key, _mask in self.selector.select(timeout):
                self._ready(key)
            while self.scheduled and self.scheduled[0][0] <= time.monotonic():
                _when, _seq, reply, target = heapq.heappop(self.scheduled)
                self._send(reply, target)

    def _ready(self, key):
        if key.data == "wake":
            key.fileobj.recv(64)
        elif key.data == "udp":
            data, addr = self.udp.recvfrom(65535)
            self._received("udp", data, addr, addr)
        elif key.data == "accept":
            conn, _peer = self.tcp.accept()
            self.accepts += 1
            self.buffers[conn] = b""
            self.selector.register(conn, selectors.EVENT_READ, "tcp")
        else:
            conn = key.fileobj
            chunk = conn.recv(65535)
            if not chunk:
                self.selector.unregister(conn)
                self.buffers.pop(conn, None)
                conn.close()
                return
            buf = self.buffers[conn] + chunk
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                size = int.from_bytes(buf[:2], "big")
                data, buf = buf[2:2 + size], buf[2 + size:]
                self._received("tcp", data, conn.getpeername(), conn)
            self.buffers[conn] = buf

    def _received(self, kind, data, addr, target):
        if len(data) < 12 or data[2] & 0x80:  # not a query: a stray datagram, not ours to answer
            with self.lock:
                self.strays.append(data)
            return
        with self.lock:
            self.received.append((kind, data, addr))
        self._schedule(self.behave(data, kind), target)

    def _send(self, reply, target):
        try:
            if isinstance(target, socket.socket):
                if target.fileno() >= 0:
                    target.sendall(tcp_frame(reply.data))
            elif reply.forged:
                self.forger.sendto(reply.data, target)
            else:
                self.udp.sendto(reply.data, target)
        except OSError:
            pass

    def close(self):
        self.stopped = True
        self.wake_w.send(b"x")
        self.thread.join(10)
        for sock in list(self.buffers) + [self.udp, self.tcp, self.forger, self.wake_r, self.wake_w]:
            sock.close()
        self.selector.close()


# The relay as a subprocess ----------------------------------------------------------------

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


class RelayProcess:
    """``python enva_dns_relay.py --listen 127.0.0.1:PORT ...``, ready once it sent READY=1."""

    def __init__(self, tmp_path, args, env=None, metrics=True):
        self.tmp_path = tmp_path
        self.messages = []
        for _attempt in range(5):  # free_port() can race with another process taking the port
            self.port = free_port()
            self.metrics_port = free_port() if metrics else None
            if self._start(args, env, metrics):
                return
        pytest.fail("the relay could not bind a free port in 5 attempts:\n%s" % self.log())

    def _start(self, args, env, metrics):
        """Start and wait for READY=1; False if the relay lost a race for its port."""
        self.notify_path = self.tmp_path / ("notify-%d.sock" % self.port)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.log_path = self.tmp_path / ("relay-%d.log" % self.port)
        command = [RELAY_PYTHON, str(RELAY), "--listen", "127.0.0.1:%d" % self.port]
        if metrics:
            command += ["--metrics", str(self.metrics_port)]
        command += list(args)
        environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        environ["NOTIFY_SOCKET"] = str(self.notify_path)
        environ.update(env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environ)
        self.pid = self.proc.pid

        def ready_or_exited():
            return self.proc.poll() is not None or "READY=1" in "\n".join(self.read_messages()).split("\n")
        wait_for(ready_or_exited, what="READY=1 from the relay (log: %s)" % self.log_path)
        if self.proc.poll() is None:
            return True
        if "Address already in use" in self.log():
            self.notify.close()
            return False
        pytest.fail("relay exited with %s:\n%s" % (self.proc.returncode, self.log()))
        return False

    def read_messages(self, timeout=0.1):
        """Collect sd_notify datagrams that arrived (waiting up to ``timeout`` for the first)."""
        self.notify.settimeout(timeout)
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages
            self.notify.settimeout(0)

    def wait_message(self, text, count=1, what=None):
        def seen():
            if self.proc.poll() is not None:
                pytest.fail("relay exited with %s:\n%s" % (self.proc.returncode, self.log()))
            return sum(text in m.split("\n") for m in self.read_messages()) >= count
        wait_for(seen, what=what or "%dx %s on NOTIFY_SOCKET" % (count, text))

    def log(self):
        return self.log_path.read_text(errors="replace")

    def rss_kib(self):
        return status_kib(self.pid, "VmRSS")

    def metrics_text(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=WAIT) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return response.read().decode()

    def metrics(self):
        """{'name{labels}': value} of the Prometheus endpoint."""
        values = {}
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            match = METRIC_LINE.match(line)
            assert match, "not a Prometheus sample line: %r" % line
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        return values

    def metric(self, key):
        return self.metrics().get("enva_dns_relay_" + key, 0.0)

    def signal(self, number):
        os.kill(self.pid, number)

    def stop(self, timeout=WAIT):
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode
