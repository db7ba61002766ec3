# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The relay: one epoll loop, its configuration (applied live on SIGHUP), timers and signals.

The handlers live in the mixins: udp (the one forwarding path and UDP to the
upstreams), tcp_clients, tcp_upstreams, metrics.
"""

import collections
import ipaddress
import logging
import os
import resource
import select
import signal
import socket
import time

from .config import ConfigError
from .metrics import MetricsMixin
from .state import (ACL_CACHE, EPOLLIN, FAIL_THRESHOLD, METRICS_CLIENTS, PROBE_INTERVAL, RANDOM_POOL, SOCKET_BUFFER, TICK,
                    UDP_SOCKETS_PER_UPSTREAM, Pending, UpSocket, Upstream)
from .systemd import Notifier, RateLimitedWarnings
from .tcp_clients import TcpClientsMixin
from .tcp_upstreams import TcpUpstreamsMixin
from .udp import UdpMixin
from .wire import HEADER_LEN, PROBE_QUERY

LOG = logging.getLogger("enva-dns-relay")


def raise_fd_limit(settings):
    """Raise the soft RLIMIT_NOFILE to what the limits can use."""
    needed = (settings.max_tcp_clients + (settings.max_upstream_tcp + 2 * UDP_SOCKETS_PER_UPSTREAM) * len(settings.upstream)
              + 2 * len(settings.listen) + METRICS_CLIENTS + 64)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        LOG.warning("only %d file descriptors (hard limit); TCP queries beyond that get SERVFAIL", wanted)


def open_listener(kind, endpoint):
    """A bound, non-blocking UDP or TCP listening socket."""
    sock = socket.socket(endpoint.family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        if endpoint.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == "udp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(endpoint.sockaddr)
        if kind != "udp":
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Relay(UdpMixin, TcpClientsMixin, TcpUpstreamsMixin, MetricsMixin):
    """The event loop and everything it serves."""

    def __init__(self, settings, loader=None, notifier=None):
        self.loader = loader
        self.notifier = notifier or Notifier()
        self.epoll = select.epoll()
        self.handlers = {}
        self.now = time.monotonic()
        self.inflight = {}
        self.listeners = {}  # (kind, label) -> socket
        self.metrics_sock = None
        self.metrics_label = None
        self.metrics_clients = []
        self.upstreams = []
        self.order = ()
        self.retired = collections.deque()  # (close_at, UpSocket)
        self.removed_upstreams = []  # removed by a reload, until their TCP connections are closed
        self.tcp_clients = set()
        self.tcp_per_host = {}  # client address -> TCP connections from it
        self.tcp_buffered = 0  # bytes in every TCP client's buffers
        self.accept_paused = False
        self.warnings = RateLimitedWarnings()
        self.round = 0  # wakeups of the loop
        self.random = b""
        self.random_pos = RANDOM_POOL
        self.next_index = 1
        self.acl_cache = {}
        self.running = True
        self.stopping = False
        self.stop_deadline = 0.0
        self.next_tick = self.now
        self.next_probe = self.now
        self.next_watchdog = self.now
        self.udp_queries = 0
        self.tcp_queries = 0
        self.rcodes = [0] * 16
        self.events = collections.Counter()
        self.settings = None
        self.timeout = self.max_inflight = self.allow = self.tcp_idle_timeout = self.tcp_frame_timeout = None
        self.max_tcp_clients = self.max_tcp_per_client = self.tcp_buffer = self.tcp_budget = None
        self.max_upstream_tcp = self.port_lifetime = None
        self.log_queries = False
        self.signal_r, self.signal_w = socket.socketpair()
        for sock in (self.signal_r, self.signal_w):
            sock.setblocking(False)
        self._register(self.signal_r, EPOLLIN, self._on_signal, None)
        self.apply(settings)

    # registration ---------------------------------------------------------------

    def _register(self, sock, mask, handler, obj):
        fd = sock.fileno()
        self.epoll.register(fd, mask)
        self.handlers[fd] = (handler, obj)

    def _unregister(self, sock):
        fd = sock.fileno()
        if fd >= 0 and self.handlers.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        sock.close()

    # configuration --------------------------------------------------------------

    def apply(self, settings):
        """Make ``settings`` the running configuration; on OSError nothing changed."""
        wanted = collections.OrderedDict()
        for endpoint in settings.listen:
            for kind in ("udp", "tcp"):
                wanted[(kind, endpoint.label)] = (kind, endpoint)
        current = {u.label: u for u in self.upstreams}
        metrics_label = settings.metrics.label if settings.metrics else None
        opened, fresh, metrics_sock = {}, {}, None
        what = None
        try:
            for key, (kind, endpoint) in wanted.items():
                if key not in self.listeners:
                    what = "listen on %s/%s" % (endpoint.label, kind)
                    opened[key] = open_listener(kind, endpoint)
            if metrics_label != self.metrics_label and settings.metrics:
                what = "serve metrics on %s" % metrics_label
                metrics_sock = open_listener("tcp", settings.metrics)
            for endpoint in settings.upstream:
                if endpoint.label not in current:
                    what = "open a socket to upstream %s" % endpoint.label
                    fresh[endpoint.label] = upstream = Upstream(endpoint)
                    for _slot in range(UDP_SOCKETS_PER_UPSTREAM):
                        upstream.sockets.append(self._open_upsocket(upstream))
        except OSError as exc:
            for sock in list(opened.values()) + [metrics_sock]:
                if sock is not None:
                    sock.close()
            for upstream in fresh.values():
                for usock in upstream.sockets:
                    self._unregister(usock.sock)
            raise OSError(exc.errno, "cannot %s: %s" % (what, exc.strerror or exc))
        for key in list(self.listeners):
            if key not in wanted:
                self._unregister(self.listeners.pop(key))
                LOG.info("stopped listening on %s/%s", key[1], key[0])
        for key, sock in opened.items():
            self.listeners[key] = sock
            self._register(sock, EPOLLIN, self._on_udp_query if key[0] == "udp" else self._on_tcp_accept, sock)
            LOG.info("listening on %s/%s", key[1], key[0])
        if metrics_label != self.metrics_label:
            if self.metrics_sock is not None:
                self._unregister(self.metrics_sock)
            self.metrics_sock, self.metrics_label = metrics_sock, metrics_label
            if metrics_sock is not None:
                self._register(metrics_sock, EPOLLIN, self._on_metrics_accept, None)
                LOG.info("metrics on http://%s/metrics", metrics_label)
        self.upstreams = [current.pop(e.label, None) or fresh[e.label] for e in settings.upstream]
        for upstream in current.values():  # removed: answers to its queries in flight still arrive
            upstream.retired = True
            for usock in upstream.sockets:
                self.retired.append((self.now + settings.timeout + 1.0, usock))
            self.removed_upstreams.append(upstream)
            LOG.info("upstream %s removed", upstream.label)
        self._reorder()
        if self.timeout is not None and settings.timeout < self.timeout:
            self._shorten_deadlines(settings.timeout)
        self.timeout = settings.timeout
        self.max_inflight = settings.max_inflight
        self.allow = settings.allow
        self.acl_cache.clear()
        for conn in self.tcp_clients:
            conn.allowed = self._allowed(conn.host)
        self.tcp_idle_timeout = settings.tcp_idle_timeout
        self.tcp_frame_timeout = settings.tcp_frame_timeout
        self.max_tcp_clients = settings.max_tcp_clients
        self.max_tcp_per_client = settings.max_tcp_per_client
        self.tcp_buffer = settings.tcp_buffer * 1024
        self.tcp_budget = settings.tcp_buffer_budget * 1024
        self.max_upstream_tcp = settings.max_upstream_tcp
        self.port_lifetime = settings.port_lifetime
        LOG.setLevel(settings.log_level.upper())
        self.log_queries = settings.log_level == "debug"
        raise_fd_limit(settings)
        open_to_all = [str(n) for n in self.allow if n.prefixlen == 0]
        if open_to_all:
            LOG.warning("allow includes %s: this relay answers anyone who can reach it", ", ".join(open_to_all))
        self.settings = settings

    def _open_upsocket(self, upstream):
        sock = socket.socket(upstream.endpoint.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setblocking(False)
            sock.connect(upstream.endpoint.sockaddr)  # the kernel binds a random ephemeral port
        except OSError:
            sock.close()
            raise
        usock = UpSocket(sock, upstream, self.next_index << 16, self.now)
        self.next_index += 1
        self._register(sock, EPOLLIN, self._on_udp_answer, usock)
        return usock

    def _shorten_deadlines(self, timeout):
        """A lower --timeout applies to the queries in flight too: their deadlines move up and the table is re-sorted.

        The in-flight table is kept in deadline order (its insertion order, as
        every try waits the same --timeout): _tick expires from its front.
        Only a change of --timeout breaks that order, so the one place that
        changes it re-sorts, instead of every query paying for a heap.
        """
        for pending in self.inflight.values():
            pending.deadline = min(pending.deadline, pending.sent_at + timeout)
        ordered = sorted(self.inflight.items(), key=lambda item: item[1].deadline)
        self.inflight.clear()
        self.inflight.update(ordered)

    def _reorder(self):
        self.order = tuple([u for u in self.upstreams if u.up] + [u for u in self.upstreams if not u.up])

    def _allowed(self, host):
        try:
            addr = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        allowed = any(addr in net for net in self.allow)
        if len(self.acl_cache) >= ACL_CACHE:
            self.acl_cache.clear()
        self.acl_cache[host] = allowed
        return allowed

    def _random_bytes(self, count):
        """``count`` unpredictable bytes, from a pool refilled from os.urandom."""
        pos = self.random_pos
        if pos + count > RANDOM_POOL:
            self.random = os.urandom(RANDOM_POOL)
            pos = 0
        self.random_pos = pos + count
        return self.random[pos:pos + count]

    # timers ----------------------------------------------------------------------

    def _tick(self, now):
        self.next_tick = now + TICK
        inflight = self.inflight
        if inflight:
            expired = []
            for pending in inflight.values():  # insertion order is deadline order (see _shorten_deadlines)
                if pending.deadline > now:
                    break
                expired.append(pending)
            for pending in expired:
                self._expire(pending)
        if now >= self.next_probe:
            self.next_probe = now + PROBE_INTERVAL
            for upstream in self.upstreams:
                if not upstream.up:
                    self._send((Pending(PROBE_QUERY, PROBE_QUERY[HEADER_LEN:], None, None, tuple(u for u in self.upstreams if u is not upstream)),))
                for usock in [u for u in upstream.sockets if u.sent and u.opened <= now - self.port_lifetime]:
                    self._rotate(usock)
            self._upstream_tcp_timers(now, self.upstreams + self.removed_upstreams)
            self.removed_upstreams = [u for u in self.removed_upstreams if u.tcp]
        retired = self.retired
        while retired and retired[0][0] <= now:
            self._unregister(retired.popleft()[1].sock)
        if self.accept_paused and len(self.tcp_clients) < self.max_tcp_clients and not self.stopping:
            self._pause_accept(False)
        if self.tcp_clients:
            self._tcp_timers(now)
        for client in [c for c in self.metrics_clients if c.since < now - 5.0]:
            self._close_metrics(client)
        if self.notifier.watchdog and now >= self.next_watchdog:
            self.next_watchdog = now + self.notifier.watchdog
            self.notifier.send("WATCHDOG=1")
        if self.stopping and (now >= self.stop_deadline or not any(p.reply is not None for p in inflight.values())):
            self._drain_cut()
            self.running = False

    def _drain_cut(self):
        """The drain is over: SERVFAIL to every query still waiting (an answer, not silence), flushed once."""
        self.max_inflight = 0  # a TCP query read while answering these gets REFUSED at once, not forwarded
        for pending in [p for p in self.inflight.values() if p.reply is not None]:
            del self.inflight[pending.key]
            self._forget_tcp_try(pending)
            self.events["servfail:drain"] += 1
            self._servfail(pending)
        for conn in list(self.tcp_clients):
            if conn.wbuf:
                self._tcp_flush(conn)

    def _expire(self, pending):
        del self.inflight[pending.key]
        upstream = pending.tried[-1]
        self._forget_tcp_try(pending)
        if pending.reply is None:  # a probe: the upstream stays down
            return
        upstream.timeouts += 1
        self._upstream_failed(upstream)
        self._forward(pending)

    def _upstream_failed(self, upstream):
        """Count a try without an answer; down after FAIL_THRESHOLD of them and a whole timeout of silence.

        The silence condition keeps a busy upstream that drops a burst of
        queries (its answers to the others still arriving) in service.
        """
        upstream.fails += 1
        if (upstream.up and upstream.fails >= FAIL_THRESHOLD and upstream.last_answer <= self.now - self.timeout
                and not upstream.retired):
            self._set_health(upstream, False)

    def _set_health(self, upstream, up):
        upstream.up = up
        if up:
            LOG.warning("upstream %s answers again", upstream.label)
        else:
            LOG.warning("upstream %s: %d queries in a row failed; skipping it, probing it every %gs",
                        upstream.label, upstream.fails, PROBE_INTERVAL)
        self._reorder()

    # TCP clients -----------------------------------------------------------------
    # signals and the loop --------------------------------------------------------

    def _on_signal(self, _obj, _events):
        try:
            numbers = self.signal_r.recv(64)
        except BlockingIOError:
            return
        for number in numbers:
            if number in (signal.SIGTERM, signal.SIGINT):
                self.stop()
            elif number == signal.SIGHUP:
                self.reload()
            elif number == signal.SIGUSR1:
                self.log_counters("SIGUSR1")

    def reload(self):
        """Re-read the configuration (SIGHUP); keep the running one if the new one fails."""
        if self.loader is None or self.stopping:
            return
        self.notifier.send("RELOADING=1\nMONOTONIC_USEC=%d" % (time.monotonic_ns() // 1000))
        try:
            self.apply(self.loader())
            LOG.info("configuration reloaded: %s", " ".join(
                "%s=%s" % (k, ",".join(v) if isinstance(v, list) else v) for k, v in self.settings.raw.items() if v))
        except (ConfigError, OSError) as exc:
            self.events["reload:failed"] += 1
            LOG.error("reload failed, the running configuration stays: %s", exc)
        self.notifier.send("READY=1\nSTATUS=%s" % self.status())

    def stop(self):
        """Stop listening; the loop ends once queries in flight are answered (at most --timeout)."""
        if self.stopping:
            self.running = False  # a second signal: now
            return
        self.stopping = True
        self.notifier.send("STOPPING=1")
        LOG.info("stopping: no new queries, %d in flight", len(self.inflight))
        for (kind, label), sock in list(self.listeners.items()):
            if kind == "tcp":
                self._unregister(self.listeners.pop((kind, label)))
            else:  # answers in flight still leave through it: only stop reading
                self.epoll.unregister(sock.fileno())
                del self.handlers[sock.fileno()]
        self.stop_deadline = self.now + self.timeout
        self.next_tick = self.now

    def status(self):
        """The one-line STATUS= text for systemd."""
        return "listening on %s, forwarding to %s" % (", ".join(sorted({k[1] for k in self.listeners})),
                                                      ", ".join(u.label for u in self.upstreams))

    def run(self):
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        previous = {}
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            previous[number] = signal.signal(number, _ignore_signal)
        old_wakeup = signal.set_wakeup_fd(self.signal_w.fileno(), warn_on_full_buffer=False)
        self.notifier.send("READY=1\nMAINPID=%d\nSTATUS=%s" % (os.getpid(), self.status()))
        LOG.info("ready (%s; timeout %gs, max-inflight %d, allow %s)", self.status(), self.timeout, self.max_inflight,
                 ", ".join(str(n) for n in self.allow))
        poll = self.epoll.poll
        handlers = self.handlers
        monotonic = time.monotonic
        try:
            while self.running:
                events = poll(max(0.0, self.next_tick - self.now), 256)
                now = self.now = monotonic()
                self.round += 1
                try:
                    for fd, mask in events:
                        entry = handlers.get(fd)
                        if entry is not None:
                            entry[0](entry[1], mask)
                    if now >= self.next_tick:
                        self._tick(now)
                except Exception:  # pylint: disable=broad-exception-caught  # a bug must not take DNS down
                    self.events["errors:internal"] += 1
                    LOG.exception("internal error (the relay goes on; please report this)")
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for number, handler in previous.items():
                signal.signal(number, handler)
        self.log_counters("exit")
        self.close()
        return 0

    def close(self):
        """Close every socket."""
        for fd, (_handler, obj) in list(self.handlers.items()):
            del self.handlers[fd]
            sock = getattr(obj, "sock", obj)
            if isinstance(sock, socket.socket):
                sock.close()
        for sock in list(self.listeners.values()) + [self.metrics_sock, self.signal_r, self.signal_w]:
            if sock is not None:
                sock.close()
        for _close_at, usock in self.retired:
            usock.sock.close()
        self.epoll.close()
        self.notifier.close()


def _ignore_signal(_number, _frame):
    """Signals are handled in the loop (set_wakeup_fd); the handler only has to exist."""
