# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The forwarding path every query takes, UDP or TCP: checks, the upstream to try, retries and health, the answer back.

Queries go queries (checks, access, limits) -> forward_batch (each to the
next upstream it has not tried, out through udp.py or tcp_upstreams.py); a
timeout or a failed try sends one query on through forward_retry. Answers,
from UDP or TCP, go deliver (RTT, health, the client's ID and question
restored) -> finish (back to the client on its transport). Each of these
steps exists once, for every transport; they take a batch (the datagrams of
one wakeup, the frames of one read, one retried query) so that the common
case costs one loop iteration with its locals bound once per batch. The
socket I/O is the transports': udp.py, tcp_clients.py, tcp_upstreams.py.
"""

import bisect
import logging
import time

from .state import FAIL_THRESHOLD, PROBE_INTERVAL, RTT_BOUNDS, TCP_PIPELINE, Pending
from .udp import send_answer
from .wire import (FORMERR, HEADER_LEN, MAX_QUERY, NOTIMP, REFUSED, SERVFAIL, SILENT_REASONS, MessageError, check_query, describe,
                   question_end, restore_answer, synthesize)

LOG = logging.getLogger("enva-dns-relay")


class Forwarding:
    """The path shared by both transports.

    Its reach in the shared state: inflight, order (from upstreams), events,
    rcodes, now, timeout, max_inflight, log_queries, acl_cache and allowed.
    Calls the transports given to connect(): udp.send_over_udp,
    tcp_upstreams.send_over_tcp and forget_try, tcp_clients.send and frames.
    """

    def __init__(self, state):
        self.state = state
        self.udp = self.tcp_clients = self.tcp_upstreams = None

    def connect(self, udp, tcp_clients, tcp_upstreams):
        """The transports this path hands queries and answers to (they call back into it)."""
        self.udp = udp
        self.tcp_clients = tcp_clients
        self.tcp_upstreams = tcp_upstreams

    # queries ---------------------------------------------------------------------------

    def queries(self, batch, reply):
        """Clients' messages: UDP ``batch`` of (bytes, address) with ``reply`` the listener; TCP: (bytes, None), its TcpClient."""
        state = self.state
        acl_cache = state.acl_cache
        inflight = state.inflight
        limit = state.max_inflight
        ready = []
        for data, addr in batch:
            if addr is None:
                allowed = reply.allowed
            else:
                allowed = acl_cache.get(addr[0])
                if allowed is None:
                    allowed = state.allowed(addr[0])
            # The cheap checks first: an allowed, well-formed query with room in flight goes straight on.
            if (allowed and len(inflight) + len(ready) < limit and HEADER_LEN < len(data) <= MAX_QUERY and not data[2] & 0xF8
                    and not data[4] and data[5] == 1):
                try:
                    qend = question_end(data)
                except MessageError as exc:
                    self._malformed(data, reply, addr, exc.reason, allowed)
                    continue
            else:
                try:
                    qend = check_query(data)
                except MessageError as exc:
                    self._malformed(data, reply, addr, exc.reason, allowed)
                    continue
                if not allowed:
                    state.events["refused:acl"] += 1
                    self.respond(reply, addr, synthesize(data, REFUSED, qend))
                    continue
                if len(inflight) + len(ready) >= limit:
                    state.events["refused:inflight"] += 1
                    self.respond(reply, addr, synthesize(data, REFUSED, qend))
                    continue
            if state.log_queries:
                LOG.debug("query %s from %s", describe(data), addr or reply.host)
            ready.append(Pending(data, data[HEADER_LEN:qend], reply, addr))
        if ready:
            if ready[0].addr is None:
                reply.pending += len(ready)
            self.forward_batch(ready)

    def _malformed(self, data, reply, addr, reason, allowed):
        events = self.state.events
        events["malformed:" + reason] += 1
        if reason in SILENT_REASONS:
            return
        if not allowed:
            events["refused:acl"] += 1
            self.respond(reply, addr, synthesize(data, REFUSED))
        else:
            self.respond(reply, addr, synthesize(data, NOTIMP if reason == "opcode" else FORMERR))

    def forward_batch(self, pendings):
        """Each query of a batch to the next upstream it has not tried (SERVFAIL when none is left).

        A TCP client's query goes to tcp_upstreams.send_over_tcp at once; the
        others (UDP clients' and probes) leave together through udp.send_over_udp.
        """
        state = self.state
        order = state.order
        deadline = state.now + state.timeout
        sent_at = time.monotonic()
        over_udp = []
        for pending in pendings:
            tried = pending.tried
            for upstream in order:
                if upstream not in tried:
                    break
            else:
                state.events["servfail:exhausted"] += 1
                if state.log_queries:
                    LOG.debug("SERVFAIL for %s: no upstream answered", describe(pending.query))
                self.servfail(pending)
                continue
            pending.tried = tried + (upstream,)
            if pending.addr is None and pending.reply is not None:
                self.tcp_upstreams.send_over_tcp(pending, upstream)
            else:
                over_udp.append(pending)
        if over_udp:
            self.udp.send_over_udp(over_udp, deadline, sent_at)

    def forward_retry(self, pending):
        """One query whose try failed or timed out, to the next upstream it has not tried (SERVFAIL when none is left)."""
        self.forward_batch((pending,))

    # timeouts and health ---------------------------------------------------------------

    def expire_due(self, now):
        """Every try whose deadline has passed: counted against its upstream, the query to the next one."""
        inflight = self.state.inflight
        expired = []
        for pending in inflight.values():  # insertion order is deadline order (see shorten_deadlines)
            if pending.deadline > now:
                break
            expired.append(pending)
        for pending in expired:
            del inflight[pending.key]
            upstream = pending.tried[-1]
            self.tcp_upstreams.forget_try(pending)
            if pending.reply is None:  # a probe: the upstream stays down
                continue
            upstream.timeouts += 1
            self.upstream_failed(upstream)
            self.forward_retry(pending)

    def shorten_deadlines(self, timeout):
        """A lower --timeout applies to the queries in flight too: their deadlines move up and the table is re-sorted.

        The in-flight table is kept in deadline order (its insertion order, as
        every try waits the same --timeout): expire_due expires from its front.
        Only a change of --timeout breaks that order, so the one place that
        changes it re-sorts, instead of every query paying for a heap.
        """
        inflight = self.state.inflight
        for pending in inflight.values():
            pending.deadline = min(pending.deadline, pending.sent_at + timeout)
        ordered = sorted(inflight.items(), key=lambda item: item[1].deadline)
        inflight.clear()
        inflight.update(ordered)

    def reorder(self):
        """The order to try upstreams in: the configured one, healthy ones first."""
        upstreams = self.state.upstreams
        self.state.order = tuple([u for u in upstreams if u.up] + [u for u in upstreams if not u.up])

    def upstream_failed(self, upstream):
        """Count a try without an answer; down after FAIL_THRESHOLD of them and a whole timeout of silence.

        The silence condition keeps a busy upstream that drops a burst of
        queries (its answers to the others still arriving) in service.
        """
        upstream.fails += 1
        if (upstream.up and upstream.fails >= FAIL_THRESHOLD and upstream.last_answer <= self.state.now - self.state.timeout
                and not upstream.retired):
            self._set_health(upstream, False)

    def _set_health(self, upstream, up):
        upstream.up = up
        if up:
            LOG.warning("upstream %s answers again", upstream.label)
        else:
            LOG.warning("upstream %s: %d queries in a row failed; skipping it, probing it every %gs",
                        upstream.label, upstream.fails, PROBE_INTERVAL)
        self.reorder()

    # answers -------------------------------------------------------------------------------

    def deliver(self, upstream, answers):
        """``upstream``'s answers (UDP or TCP), each (Pending, bytes), already matched and out of the in-flight table."""
        state = self.state
        rcodes = state.rcodes
        events = state.events
        now = time.monotonic()
        buckets = upstream.rtt_buckets
        finish = self.finish
        rtt_sum = 0.0
        for pending, data in answers:
            rtt = now - pending.sent_at
            rtt_sum += rtt
            buckets[bisect.bisect_left(RTT_BOUNDS, rtt)] += 1
            if pending.reply is None:  # a probe
                continue
            query = pending.query
            question = pending.question
            end = HEADER_LEN + len(question)
            out = query[:2] + data[2:] if data[HEADER_LEN:end] == question else restore_answer(data, query, end - HEADER_LEN)
            addr = pending.addr
            if addr is not None:  # finish() for a UDP client, inline: this is the path of almost every answer
                rcodes[out[3] & 15] += 1
                send_answer(pending.reply, addr, out, events)
            else:
                finish(pending, out)
        upstream.answers += len(answers)
        upstream.rtt_sum += rtt_sum
        upstream.last_answer = state.now
        if upstream.fails:
            upstream.fails = 0
        if not upstream.up:
            self._set_health(upstream, True)

    def servfail(self, pending):
        """SERVFAIL to a client's query (no upstream left, or the relay stops)."""
        self.finish(pending, synthesize(pending.query, SERVFAIL, HEADER_LEN + len(pending.question)))

    def finish(self, pending, out):
        """The final answer to a client's query."""
        state = self.state
        state.rcodes[out[3] & 15] += 1
        addr = pending.addr
        if addr is not None:
            send_answer(pending.reply, addr, out, state.events)
            return
        conn = pending.reply
        conn.pending -= 1
        self.tcp_clients.send(conn, out)
        if conn.pending == TCP_PIPELINE - 1 and not conn.closed:
            self.tcp_clients.frames(conn)

    def respond(self, reply, addr, out):
        """An answer of our own (REFUSED, FORMERR, ...) to a message that never went upstream."""
        state = self.state
        state.rcodes[out[3] & 15] += 1
        if addr is not None:
            send_answer(reply, addr, out, state.events)
            return
        self.tcp_clients.send(reply, out)
