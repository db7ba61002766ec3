# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The relay: one epoll loop, its configuration (applied live on SIGHUP), timers and signals.

Its parts each receive the shared state (state.RelayState) and the parts they
call, and keep their own records:

    forwarding.Forwarding(state)                  the path every query takes
    udp.UdpSockets(state, forwarding)             UDP socket I/O, both sides
    tcp_clients.TcpClients(state, forwarding)     TCP clients
    tcp_upstreams.TcpUpstreams(state, forwarding) TCP to the upstreams
    metrics.Metrics(state, tcp_clients)           counters, the endpoint
    forwarding.connect(udp, tcp_clients, tcp_upstreams)
"""

import collections
import logging
import os
import resource
import signal
import socket
import time

from .config import ConfigError
from .forwarding import Forwarding
from .metrics import Metrics
from .state import EPOLLIN, METRICS_CLIENTS, PROBE_INTERVAL, SOCKET_BUFFER, TICK, UDP_SOCKETS_PER_UPSTREAM, Pending, RelayState, Upstream
from .systemd import Notifier
from .tcp_clients import TcpClients
from .tcp_upstreams import TcpUpstreams
from .udp import UdpSockets
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


class Relay:
    """The event loop, the configuration it runs, its timers and signals; the parts it is made of."""

    def __init__(self, settings, loader=None, notifier=None):
        self.loader = loader
        self.notifier = notifier or Notifier()
        self.state = state = RelayState()
        self.forwarding = Forwarding(state)
        self.udp = UdpSockets(state, self.forwarding)
        self.tcp_clients = TcpClients(state, self.forwarding)
        self.tcp_upstreams = TcpUpstreams(state, self.forwarding)
        self.forwarding.connect(self.udp, self.tcp_clients, self.tcp_upstreams)
        self.metrics = Metrics(state, self.tcp_clients)
        self.removed_upstreams = []  # removed by a reload, until their TCP connections are closed
        self.running = True
        self.stop_deadline = 0.0
        self.next_tick = state.now
        self.next_probe = state.now
        self.next_watchdog = state.now
        self.signal_r, self.signal_w = socket.socketpair()
        for sock in (self.signal_r, self.signal_w):
            sock.setblocking(False)
        state.register(self.signal_r, EPOLLIN, self._on_signal, None)
        self.apply(settings)

    # configuration --------------------------------------------------------------

    def apply(self, settings):
        """Make ``settings`` the running configuration; on OSError nothing changed."""
        state = self.state
        wanted = collections.OrderedDict()
        for endpoint in settings.listen:
            for kind in ("udp", "tcp"):
                wanted[(kind, endpoint.label)] = (kind, endpoint)
        current = {u.label: u for u in state.upstreams}
        metrics_label = settings.metrics.label if settings.metrics else None
        opened, fresh, metrics_sock = {}, {}, None
        what = None
        try:
            for key, (kind, endpoint) in wanted.items():
                if key not in state.listeners:
                    what = "listen on %s/%s" % (endpoint.label, kind)
                    opened[key] = open_listener(kind, endpoint)
            if metrics_label != self.metrics.label and settings.metrics:
                what = "serve metrics on %s" % metrics_label
                metrics_sock = open_listener("tcp", settings.metrics)
            for endpoint in settings.upstream:
                if endpoint.label not in current:
                    what = "open a socket to upstream %s" % endpoint.label
                    fresh[endpoint.label] = upstream = Upstream(endpoint)
                    for _slot in range(UDP_SOCKETS_PER_UPSTREAM):
                        upstream.sockets.append(self.udp.open_socket(upstream))
        except OSError as exc:
            for sock in list(opened.values()) + [metrics_sock]:
                if sock is not None:
                    sock.close()
            for upstream in fresh.values():
                for usock in upstream.sockets:
                    state.unregister(usock.sock)
            raise OSError(exc.errno, "cannot %s: %s" % (what, exc.strerror or exc))
        for key in list(state.listeners):
            if key not in wanted:
                state.unregister(state.listeners.pop(key))
                LOG.info("stopped listening on %s/%s", key[1], key[0])
        for key, sock in opened.items():
            state.listeners[key] = sock
            state.register(sock, EPOLLIN, self.udp.on_query if key[0] == "udp" else self.tcp_clients.on_accept, sock)
            LOG.info("listening on %s/%s", key[1], key[0])
        if metrics_label != self.metrics.label:
            self.metrics.listen(metrics_sock, metrics_label)
        state.upstreams = [current.pop(e.label, None) or fresh[e.label] for e in settings.upstream]
        for upstream in current.values():  # removed: answers to its queries in flight still arrive
            upstream.retired = True
            for usock in upstream.sockets:
                state.retired.append((state.now + settings.timeout + 1.0, usock))
            self.removed_upstreams.append(upstream)
            LOG.info("upstream %s removed", upstream.label)
        self.forwarding.reorder()
        if state.timeout is not None and settings.timeout < state.timeout:
            self.forwarding.shorten_deadlines(settings.timeout)
        state.timeout = settings.timeout
        state.max_inflight = settings.max_inflight
        state.allow = settings.allow
        state.acl_cache.clear()
        for conn in self.tcp_clients.clients:
            conn.allowed = state.allowed(conn.host)
        state.tcp_idle_timeout = settings.tcp_idle_timeout
        state.tcp_frame_timeout = settings.tcp_frame_timeout
        state.max_tcp_clients = settings.max_tcp_clients
        state.max_tcp_per_client = settings.max_tcp_per_client
        state.tcp_buffer = settings.tcp_buffer * 1024
        state.tcp_budget = settings.tcp_buffer_budget * 1024
        state.max_upstream_tcp = settings.max_upstream_tcp
        state.port_lifetime = settings.port_lifetime
        LOG.setLevel(settings.log_level.upper())
        state.log_queries = settings.log_level == "debug"
        raise_fd_limit(settings)
        open_to_all = [str(n) for n in state.allow if n.prefixlen == 0]
        if open_to_all:
            LOG.warning("allow includes %s: this relay answers anyone who can reach it", ", ".join(open_to_all))
        state.settings = settings

    # timers ----------------------------------------------------------------------

    def _tick(self, now):
        state = self.state
        self.next_tick = now + TICK
        if state.inflight:
            self.forwarding.expire_due(now)
        if now >= self.next_probe:
            self.next_probe = now + PROBE_INTERVAL
            for upstream in state.upstreams:
                if not upstream.up:
                    self.forwarding.forward_batch((Pending(PROBE_QUERY, PROBE_QUERY[HEADER_LEN:], None, None,
                                                           tuple(u for u in state.upstreams if u is not upstream)),))
                for usock in [u for u in upstream.sockets if u.sent and u.opened <= now - state.port_lifetime]:
                    self.udp.rotate(usock)
            self.tcp_upstreams.timers(now, state.upstreams + self.removed_upstreams)
            self.removed_upstreams = [u for u in self.removed_upstreams if u.tcp]
        retired = state.retired
        while retired and retired[0][0] <= now:
            state.unregister(retired.popleft()[1].sock)
        if self.tcp_clients.clients or self.tcp_clients.accept_paused:
            self.tcp_clients.timers(now)
        self.metrics.timers(now)
        if self.notifier.watchdog and now >= self.next_watchdog:
            self.next_watchdog = now + self.notifier.watchdog
            self.notifier.send("WATCHDOG=1")
        if state.stopping and (now >= self.stop_deadline or not any(p.reply is not None for p in state.inflight.values())):
            self._drain_cut()
            self.running = False

    def _drain_cut(self):
        """The drain is over: SERVFAIL to every query still waiting (an answer, not silence), flushed once."""
        state = self.state
        state.max_inflight = 0  # a TCP query read while answering these gets REFUSED at once, not forwarded
        for pending in [p for p in state.inflight.values() if p.reply is not None]:
            del state.inflight[pending.key]
            self.tcp_upstreams.forget_try(pending)
            state.events["servfail:drain"] += 1
            self.forwarding.servfail(pending)
        for conn in list(self.tcp_clients.clients):
            if conn.wbuf:
                self.tcp_clients.flush(conn)

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
                self.metrics.log_counters("SIGUSR1")

    def reload(self):
        """Re-read the configuration (SIGHUP); keep the running one if the new one fails."""
        if self.loader is None or self.state.stopping:
            return
        self.notifier.send("RELOADING=1\nMONOTONIC_USEC=%d" % (time.monotonic_ns() // 1000))
        try:
            self.apply(self.loader())
            LOG.info("configuration reloaded: %s", " ".join(
                "%s=%s" % (k, ",".join(v) if isinstance(v, list) else v) for k, v in self.state.settings.raw.items() if v))
        except (ConfigError, OSError) as exc:
            self.state.events["reload:failed"] += 1
            LOG.error("reload failed, the running configuration stays: %s", exc)
        self.notifier.send("READY=1\nSTATUS=%s" % self.status())

    def stop(self):
        """Stop listening; the loop ends once queries in flight are answered (at most --timeout)."""
        state = self.state
        if state.stopping:
            self.running = False  # a second signal: now
            return
        state.stopping = True
        self.notifier.send("STOPPING=1")
        LOG.info("stopping: no new queries, %d in flight", len(state.inflight))
        for (kind, label), sock in list(state.listeners.items()):
            if kind == "tcp":
                state.unregister(state.listeners.pop((kind, label)))
            else:  # answers in flight still leave through it: only stop reading
                state.epoll.unregister(sock.fileno())
                del state.handlers[sock.fileno()]
        self.stop_deadline = state.now + state.timeout
        self.next_tick = state.now

    def status(self):
        """The one-line STATUS= text for systemd."""
        return "listening on %s, forwarding to %s" % (", ".join(sorted({k[1] for k in self.state.listeners})),
                                                      ", ".join(u.label for u in self.state.upstreams))

    def run(self):
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        previous = {}
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            previous[number] = signal.signal(number, _ignore_signal)
        old_wakeup = signal.set_wakeup_fd(self.signal_w.fileno(), warn_on_full_buffer=False)
        self.notifier.send("READY=1\nMAINPID=%d\nSTATUS=%s" % (os.getpid(), self.status()))
        state = self.state
        LOG.info("ready (%s; timeout %gs, max-inflight %d, allow %s)", self.status(), state.timeout, state.max_inflight,
                 ", ".join(str(n) for n in state.allow))
        poll = state.epoll.poll
        handlers = state.handlers
        monotonic = time.monotonic
        try:
            while self.running:
                events = poll(max(0.0, self.next_tick - state.now), 256)
                now = state.now = monotonic()
                state.round += 1
                try:
                    for fd, mask in events:
                        entry = handlers.get(fd)
                        if entry is not None:
                            entry[0](entry[1], mask)
                    if now >= self.next_tick:
                        self._tick(now)
                except Exception:  # pylint: disable=broad-exception-caught  # a bug must not take DNS down
                    state.events["errors:internal"] += 1
                    LOG.exception("internal error (the relay goes on; please report this)")
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for number, handler in previous.items():
                signal.signal(number, handler)
        self.metrics.log_counters("exit")
        self.close()
        return 0

    def close(self):
        """Close every socket."""
        state = self.state
        for fd, (_handler, obj) in list(state.handlers.items()):
            del state.handlers[fd]
            sock = getattr(obj, "sock", obj)
            if isinstance(sock, socket.socket):
                sock.close()
        for sock in list(state.listeners.values()) + [self.metrics.sock, self.signal_r, self.signal_w]:
            if sock is not None:
                sock.close()
        for _close_at, usock in state.retired:
            usock.sock.close()
        state.epoll.close()
        self.notifier.close()


def _ignore_signal(_number, _frame):
    """Signals are handled in the loop (set_wakeup_fd); the handler only has to exist."""
