# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The records the event loop keeps: the state its parts share (RelayState), upstreams, queries in flight, connections; its fixed tuning."""

import collections
import ipaddress
import os
import select
import time

from .systemd import RateLimitedWarnings

# Fixed tuning (the limits a user may change are options, see config.py) ------------------
UDP_SOCKETS_PER_UPSTREAM = 8  # a power of two: a random byte picks one
ROTATE_AFTER = 10000  # queries before a UDP upstream socket gets a new port (or --port-lifetime seconds)
FAIL_THRESHOLD = 3  # timeouts in a row that mark an upstream down
PROBE_INTERVAL = 1.0
TICK = 0.05  # timers (timeouts, probes, idle TCP, watchdog) run this often
BURST = range(64)  # datagrams read from one socket per wakeup, for fairness
TCP_PIPELINE = 64  # queries in flight per TCP client before we stop reading it
TCP_READ = 16384  # bytes read from a TCP client at a time
TCP_SOCKET_BUFFER = 32768  # SO_SNDBUF/SO_RCVBUF of a TCP client's socket (the kernel doubles it)
UPSTREAM_TCP_PIPELINE = 16  # queries on one upstream TCP connection before another one is opened (up to the cap)
UPSTREAM_TCP_IDLE = 5.0  # seconds an upstream TCP connection with nothing in flight stays open
METRICS_CLIENTS = 8
ACL_CACHE = 1024  # access decisions remembered, by client address (cleared when full)
RANDOM_POOL = 3 * 4096
SOCKET_BUFFER = 1 << 21
RTT_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
EPOLL_BAD = select.EPOLLERR | select.EPOLLHUP


class RelayState:
    """What the parts of the relay share, declared once; each part receives it (and names the other parts it calls).

    The loop (relay.py) owns it and sets the running configuration (apply);
    forwarding.py, udp.py, tcp_clients.py, tcp_upstreams.py and metrics.py
    read and change only what is listed here, plus their own records.
    """

    __slots__ = (
        # the loop: epoll and its handlers, the time of this wakeup and its number, rate-limited warnings
        "epoll", "handlers", "now", "round", "stopping", "warnings",
        # key bases of upstream sockets and connections (index << 16), the random pool for IDs and socket picks
        "next_index", "random", "random_pos",
        # sockets: the listeners by (kind, label); upstreams in configured order, and in the order to try them
        "listeners", "upstreams", "order", "retired",
        # queries: in flight by key (in deadline order), counters
        "inflight", "events", "rcodes", "udp_queries", "tcp_queries",
        # access: the allow list and the decisions remembered per client address
        "allow", "acl_cache",
        # the running configuration (Settings) and the values the handlers read from it
        "settings", "timeout", "max_inflight", "log_queries", "tcp_idle_timeout", "tcp_frame_timeout", "max_tcp_clients",
        "max_tcp_per_client", "tcp_buffer", "tcp_budget", "max_upstream_tcp", "port_lifetime")

    def __init__(self):
        self.epoll = select.epoll()
        self.handlers = {}  # fd -> (handler, obj): the loop calls handler(obj, events)
        self.now = time.monotonic()
        self.round = 0  # wakeups of the loop
        self.stopping = False
        self.warnings = RateLimitedWarnings()
        self.next_index = 1
        self.random = b""
        self.random_pos = RANDOM_POOL
        self.listeners = {}  # (kind, label) -> socket
        self.upstreams = []  # Upstream, in the configured order
        self.order = ()  # the same, healthy ones first
        self.retired = collections.deque()  # (close_at, UpSocket): replaced or removed, open for late answers
        self.inflight = {}  # key -> Pending
        self.events = collections.Counter()  # "kind:reason" -> count
        self.rcodes = [0] * 16  # answers sent to clients, by rcode
        self.udp_queries = self.tcp_queries = 0
        self.allow = ()
        self.acl_cache = {}  # client address -> allowed
        self.settings = None
        self.timeout = self.max_inflight = self.tcp_idle_timeout = self.tcp_frame_timeout = None
        self.max_tcp_clients = self.max_tcp_per_client = self.tcp_buffer = self.tcp_budget = None
        self.max_upstream_tcp = self.port_lifetime = None
        self.log_queries = False

    def register(self, sock, mask, handler, obj):
        """Poll ``sock`` for ``mask``; the loop calls ``handler(obj, events)``."""
        fd = sock.fileno()
        self.epoll.register(fd, mask)
        self.handlers[fd] = (handler, obj)

    def unregister(self, sock):
        """Stop polling ``sock`` and close it."""
        fd = sock.fileno()
        if fd >= 0 and self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        sock.close()

    def new_base(self):
        """A fresh key base for an upstream socket or connection: base | ID keys its queries in flight."""
        base = self.next_index << 16
        self.next_index += 1
        return base

    def allowed(self, host):
        """Whether ``host`` (a client address) is in the allow list; remembered in acl_cache."""
        try:
            addr = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        allowed = any(addr in net for net in self.allow)
        if len(self.acl_cache) >= ACL_CACHE:
            self.acl_cache.clear()
        self.acl_cache[host] = allowed
        return allowed

    def random_bytes(self, count):
        """``count`` unpredictable bytes, from a pool refilled from os.urandom."""
        pos = self.random_pos
        if pos + count > RANDOM_POOL:
            self.random = os.urandom(RANDOM_POOL)
            pos = 0
        self.random_pos = pos + count
        return self.random[pos:pos + count]


class Upstream:
    """One upstream server: its UDP socket pool, its TCP connections, health and counters."""

    __slots__ = ("endpoint", "label", "up", "fails", "last_answer", "sockets", "current", "current_round", "tcp", "queries",
                 "answers", "timeouts", "errors", "rtt_sum", "rtt_buckets", "retired", "tcp_opened")

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.label = endpoint.label
        self.up = True
        self.fails = 0  # tries in a row that got no answer
        self.last_answer = float("-inf")  # monotonic time of its last answer
        self.sockets = []  # UpSocket
        self.current = None  # the UpSocket the queries of this wakeup of the loop leave through
        self.current_round = -1
        self.tcp = []  # TcpUpstream, at most --max-upstream-tcp
        self.queries = self.answers = self.timeouts = self.errors = self.tcp_opened = 0
        self.rtt_sum = 0.0
        self.rtt_buckets = [0] * (len(RTT_BOUNDS) + 1)
        self.retired = False


class UpSocket:
    """A connected UDP socket to an upstream; ``base`` | ID is the key of its queries in flight."""

    __slots__ = ("sock", "upstream", "base", "sent", "opened")

    def __init__(self, sock, upstream, base, now):
        self.sock = sock
        self.upstream = upstream
        self.base = base
        self.sent = 0
        self.opened = now


class Pending:
    """A query in flight: the client's bytes, where to answer, which upstreams were tried."""

    __slots__ = ("query", "question", "reply", "addr", "tried", "key", "deadline", "sent_at", "conn", "requeued")

    def __init__(self, query, question, reply, addr, tried=()):
        self.query = query  # the client's message, as received
        self.question = question  # its question section (name, type, class)
        self.reply = reply  # UDP: the listening socket; TCP: the TcpClient; probe: None
        self.addr = addr  # UDP: the client's address; TCP and probe: None
        self.tried = tried  # the upstreams tried so far, the current one last
        self.key = 0  # UDP: upstream socket's base | ID; TCP: the connection's base | ID
        self.deadline = 0.0  # monotonic time this try times out
        self.sent_at = 0.0
        self.conn = None  # TCP: the TcpUpstream carrying this try
        self.requeued = False  # TCP: sent again once after its connection closed under it


class TcpClient:
    """A client's TCP connection: framed queries in, framed answers out."""

    __slots__ = ("sock", "host", "allowed", "rbuf", "wbuf", "pending", "idle_at", "frame_at", "eof", "mask", "closed",
                 "accounted")

    def __init__(self, sock, host, allowed, idle_at):
        self.sock = sock
        self.host = host
        self.allowed = allowed
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.pending = 0
        self.idle_at = idle_at  # closed at this time unless a whole query arrives or answers are read
        self.frame_at = None  # a query begun: closed at this time unless it is complete
        self.eof = False
        self.mask = EPOLLIN
        self.closed = False
        self.accounted = 0  # bytes of rbuf + wbuf counted in the relay's TCP budget


class TcpUpstream:
    """A reused TCP connection to an upstream: queries pipelined out, answers matched by ID and question."""

    __slots__ = ("sock", "upstream", "base", "out", "rbuf", "connected", "waiting", "answered", "idle_since", "closed", "mask")

    def __init__(self, sock, upstream, base, now):
        self.sock = sock
        self.upstream = upstream
        self.base = base
        self.out = bytearray()
        self.rbuf = bytearray()
        self.connected = False
        self.waiting = {}  # ID -> Pending
        self.answered = 0
        self.idle_since = now
        self.closed = False
        self.mask = EPOLLOUT  # connecting


class MetricsClient:
    """An HTTP request to the metrics endpoint."""

    __slots__ = ("sock", "rbuf", "wbuf", "since")

    def __init__(self, sock, now):
        self.sock = sock
        self.rbuf = b""
        self.wbuf = b""
        self.since = now
