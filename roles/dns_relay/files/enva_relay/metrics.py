# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counters: the Prometheus text endpoint (HTTP/1.0 GET, any path) and the SIGUSR1 log line."""

import collections
import logging
import os

from .state import EPOLLIN, EPOLLOUT, METRICS_CLIENTS, RTT_BOUNDS, MetricsClient
from .wire import RCODE_NAMES

LOG = logging.getLogger("enva-dns-relay")


def resident_bytes():
    """This process's resident set size, from /proc/self/statm."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Metrics:
    """The metrics endpoint (its listener and clients are kept here) and the counters.

    Its reach in the shared state (reads, but for its own sockets): udp_queries,
    tcp_queries, rcodes, events, inflight, upstreams (their counters), now,
    warnings, epoll, register, unregister; of the TCP clients' part: clients
    and buffered.
    """

    def __init__(self, state, tcp_clients):
        self.state = state
        self.tcp_clients = tcp_clients
        self.sock = None  # the listener, with its address as configured
        self.label = None
        self.clients = []

    def listen(self, sock, label):
        """Serve on ``sock`` (None: no endpoint) instead of the listener so far, which is closed."""
        if self.sock is not None:
            self.state.unregister(self.sock)
        self.sock, self.label = sock, label
        if sock is not None:
            self.state.register(sock, EPOLLIN, self._on_accept, None)
            LOG.info("metrics on http://%s/metrics", label)

    def _on_accept(self, _obj, _events):
        state = self.state
        try:
            sock, _peer = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # EMFILE: refuse it rather than spin on a listener that stays readable
            state.warnings.warning("metrics", state.now, "metrics: accept failed (%s); closing the metrics endpoint until the next reload", exc)
            state.unregister(self.sock)
            self.sock = self.label = None
            return
        if len(self.clients) >= METRICS_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        client = MetricsClient(sock, state.now)
        self.clients.append(client)
        state.register(sock, EPOLLIN, self._on_client, client)

    def _on_client(self, client, _events):
        try:
            if not client.wbuf:
                chunk = client.sock.recv(4096)
                client.rbuf += chunk
                if not chunk or len(client.rbuf) > 8192:
                    self._close(client)
                    return
                if b"\r\n\r\n" not in client.rbuf and b"\n\n" not in client.rbuf:
                    return
                body = self.metrics_text().encode()
                client.wbuf = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
            client.wbuf = client.wbuf[client.sock.send(client.wbuf):]
        except BlockingIOError:
            return
        except OSError:
            self._close(client)
            return
        if client.wbuf:
            self.state.epoll.modify(client.sock.fileno(), EPOLLOUT)
        else:
            self._close(client)

    def _close(self, client):
        if client in self.clients:
            self.clients.remove(client)
            self.state.unregister(client.sock)

    def timers(self, now):
        """Close the requests older than 5 seconds."""
        for client in [c for c in self.clients if c.since < now - 5.0]:
            self._close(client)

    def snapshot(self):
        """Every counter, as {name: value} with Prometheus-style label suffixes."""
        state = self.state
        values = collections.OrderedDict()
        values['queries_total{transport="udp"}'] = state.udp_queries
        values['queries_total{transport="tcp"}'] = state.tcp_queries
        for rcode, count in enumerate(state.rcodes):
            if count or rcode in (0, 1, 2, 3, 4, 5):
                values['responses_total{rcode="%s"}' % RCODE_NAMES[rcode]] = count
        for name in ("malformed", "refused", "ignored", "servfail", "dropped", "tcp", "reload", "errors"):
            for key in sorted(k for k in state.events if k.startswith(name + ":")):
                values['%s_total{reason="%s"}' % (name, key.partition(":")[2])] = state.events[key]
        values["inflight"] = sum(1 for p in state.inflight.values() if p.reply is not None)
        values["tcp_clients"] = len(self.tcp_clients.clients)
        values["tcp_buffered_bytes"] = self.tcp_clients.buffered
        for upstream in state.upstreams:
            label = '{upstream="%s"}' % upstream.label
            values["upstream_up" + label] = int(upstream.up)
            values["upstream_queries_total" + label] = upstream.queries
            values["upstream_answers_total" + label] = upstream.answers
            values["upstream_timeouts_total" + label] = upstream.timeouts
            values["upstream_errors_total" + label] = upstream.errors
            values["upstream_tcp_connections" + label] = len(upstream.tcp)
            values["upstream_tcp_opened_total" + label] = upstream.tcp_opened
        values["resident_memory_bytes"] = resident_bytes()
        return values

    def metrics_text(self):
        """The Prometheus text exposition of snapshot() plus the upstream RTT histograms."""
        lines = []
        seen = set()
        for key, value in self.snapshot().items():
            name = "enva_dns_relay_" + key.partition("{")[0]
            if name not in seen:
                seen.add(name)
                kind = "counter" if name.endswith("_total") else "gauge"
                lines.append("# TYPE %s %s" % (name, kind))
            lines.append("enva_dns_relay_%s %s" % (key, value))
        lines.append("# TYPE enva_dns_relay_upstream_rtt_seconds histogram")
        for upstream in self.state.upstreams:
            total = 0
            for bound, count in zip(RTT_BOUNDS + (float("inf"),), upstream.rtt_buckets):
                total += count
                edge = "+Inf" if bound == float("inf") else repr(bound)
                lines.append('enva_dns_relay_upstream_rtt_seconds_bucket{upstream="%s",le="%s"} %d' % (upstream.label, edge, total))
            lines.append('enva_dns_relay_upstream_rtt_seconds_sum{upstream="%s"} %.6f' % (upstream.label, upstream.rtt_sum))
            lines.append('enva_dns_relay_upstream_rtt_seconds_count{upstream="%s"} %d' % (upstream.label, upstream.answers))
        return "\n".join(lines) + "\n"

    def log_counters(self, why):
        """One log line with every counter and the mean upstream RTTs."""
        parts = ["%s=%s" % (key, value) for key, value in self.snapshot().items()]
        for upstream in self.state.upstreams:
            if upstream.answers:
                parts.append('upstream_rtt_mean_ms{upstream="%s"}=%.3f' % (upstream.label, 1000 * upstream.rtt_sum / upstream.answers))
        LOG.info("counters (%s): %s", why, " ".join(parts))
