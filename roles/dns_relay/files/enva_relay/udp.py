# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one forwarding path: every query (UDP or TCP) in, every answer out; UDP to the upstreams.

A query goes _query -> _forward -> _send_udp or _forward_tcp; an answer goes
_answered -> _finish, whichever transport it came on. There is no second,
hand-inlined copy of these steps for the common case: the common case is
made cheap inside them (the cheap header checks first, one random upstream
socket per wakeup of the loop, locals bound once per burst).
"""

import bisect
import logging
import time

from .state import BURST, ROTATE_AFTER, RTT_BOUNDS, TCP_PIPELINE, UDP_SOCKETS_PER_UPSTREAM, Pending
from .wire import (FORMERR, HEADER_LEN, MAX_ANSWER, MAX_QUERY, NOTIMP, REFUSED, SERVFAIL, SILENT_REASONS, MessageError, answer_matches,
                   check_query, describe, question_end, restore_answer, synthesize)

LOG = logging.getLogger("enva-dns-relay")


class UdpMixin:
    """Queries in, answers out, UDP to the upstreams (mixed into Relay)."""

    # queries ---------------------------------------------------------------------------

    def _on_udp_query(self, lsock, _events):
        """Drain a UDP listener (up to BURST datagrams), each through _query."""
        recvfrom = lsock.recvfrom
        query = self._query
        count = 0
        try:
            for _burst in BURST:
                try:
                    data, addr = recvfrom(MAX_QUERY + 1)
                except BlockingIOError:
                    return
                except OSError as exc:
                    self.events["dropped:recv-error"] += 1
                    LOG.debug("recvfrom: %s", exc)
                    return
                count += 1
                query(data, lsock, addr)
        finally:
            self.udp_queries += count

    def _query(self, data, reply, addr):
        """A client's message (UDP: ``addr`` is its address; TCP: ``reply`` is its TcpClient, ``addr`` None)."""
        if addr is None:
            allowed = reply.allowed
        else:
            allowed = self.acl_cache.get(addr[0])
            if allowed is None:
                allowed = self._allowed(addr[0])
        # The cheap checks first: an allowed, well-formed query with room in flight goes straight on.
        if (allowed and len(self.inflight) < self.max_inflight and HEADER_LEN < len(data) <= MAX_QUERY and not data[2] & 0xF8
                and not data[4] and data[5] == 1):
            try:
                qend = question_end(data)
            except MessageError as exc:
                self._malformed(data, reply, addr, exc.reason, allowed)
                return
        else:
            try:
                qend = check_query(data)
            except MessageError as exc:
                self._malformed(data, reply, addr, exc.reason, allowed)
                return
            if not allowed:
                self.events["refused:acl"] += 1
                self._respond(reply, addr, synthesize(data, REFUSED, qend))
                return
            if len(self.inflight) >= self.max_inflight:
                self.events["refused:inflight"] += 1
                self._respond(reply, addr, synthesize(data, REFUSED, qend))
                return
        if self.log_queries:
            LOG.debug("query %s from %s", describe(data), addr or reply.host)
        pending = Pending(data, data[HEADER_LEN:qend], reply, addr)
        if addr is None:
            reply.pending += 1
        self._forward(pending)

    def _malformed(self, data, reply, addr, reason, allowed):
        self.events["malformed:" + reason] += 1
        if reason in SILENT_REASONS:
            return
        if not allowed:
            self.events["refused:acl"] += 1
            self._respond(reply, addr, synthesize(data, REFUSED))
        else:
            self._respond(reply, addr, synthesize(data, NOTIMP if reason == "opcode" else FORMERR))

    def _forward(self, pending):
        """Send ``pending`` to the next upstream it has not tried, or SERVFAIL when none is left."""
        tried = pending.tried
        for upstream in self.order:
            if upstream not in tried:
                break
        else:
            self.events["servfail:exhausted"] += 1
            if self.log_queries:
                LOG.debug("SERVFAIL for %s: no upstream answered", describe(pending.query))
            self._servfail(pending)
            return
        pending.tried = tried + (upstream,)
        if pending.addr is None and pending.reply is not None:
            self._forward_tcp(pending, upstream)
        else:
            self._send_udp(pending, upstream)

    def _send_udp(self, pending, upstream):
        """Out on one of the upstream's UDP sockets (the same one for the whole wakeup), with a fresh random ID."""
        usock = upstream.current
        if upstream.current_round != self.round:
            usock = upstream.current = upstream.sockets[self._random_bytes(1)[0] & (UDP_SOCKETS_PER_UPSTREAM - 1)]
            upstream.current_round = self.round
        inflight = self.inflight
        base = usock.base
        rand = self._random_bytes(2)
        key = base | rand[0] << 8 | rand[1]
        while key in inflight:  # an ID already in flight on this socket: draw another
            rand = self._random_bytes(2)
            key = base | rand[0] << 8 | rand[1]
        pending.key = key
        pending.deadline = self.now + self.timeout
        pending.sent_at = time.monotonic()
        inflight[key] = pending
        upstream.queries += 1
        out = rand + pending.query[2:]
        try:
            usock.sock.send(out)
        except OSError:
            self._send_failed(usock, out)
        usock.sent += 1
        if usock.sent >= ROTATE_AFTER:
            self._rotate(usock)

    def _send_failed(self, usock, out):
        """A send to an upstream failed: a pending ICMP error of an earlier datagram is reported once; try again."""
        try:
            usock.sock.send(out)
        except OSError as exc:
            usock.upstream.errors += 1
            LOG.debug("send to %s: %s", usock.upstream.label, exc)

    def _rotate(self, usock):
        """Give the upstream a fresh socket (new random port); the old one stays open for late answers."""
        upstream = usock.upstream
        if usock not in upstream.sockets:  # already replaced
            return
        try:
            fresh = self._open_upsocket(upstream)
        except OSError as exc:
            self.warnings.warning("rotate", self.now, "cannot open a new socket to %s: %s", upstream.label, exc)
            usock.sent = 0
            usock.opened = self.now
            return
        upstream.sockets[upstream.sockets.index(usock)] = fresh
        if upstream.current is usock:
            upstream.current = fresh
        self.retired.append((self.now + self.timeout + 1.0, usock))

    # answers -------------------------------------------------------------------------------

    def _on_udp_answer(self, usock, _events):
        """Drain an upstream socket (up to BURST datagrams); each answer that matches a query in flight to _answered."""
        recv = usock.sock.recv
        inflight = self.inflight
        base = usock.base
        upstream = usock.upstream
        answered = self._answered
        for _burst in BURST:
            try:
                data = recv(MAX_ANSWER)
            except BlockingIOError:
                return
            except ConnectionRefusedError:  # ICMP port unreachable: nobody listens there
                self._refused(usock)
                continue
            except OSError as exc:  # other ICMP errors and the like
                upstream.errors += 1
                LOG.debug("recv from %s: %s", upstream.label, exc)
                continue
            if len(data) < HEADER_LEN:
                self.events["ignored:short"] += 1
                continue
            pending = inflight.get(base | data[0] << 8 | data[1])
            if pending is None:
                self.events["ignored:id"] += 1
                continue
            question = pending.question
            if not (data[2] & 0x80 and not data[4] and data[5] == 1 and data[HEADER_LEN:HEADER_LEN + len(question)] == question
                    or answer_matches(data, question)):
                self.events["ignored:question"] += 1
                continue
            del inflight[pending.key]
            answered(pending, upstream, data)

    def _refused(self, usock):
        """The upstream refused a datagram: fail the queries waiting on this socket now rather than at their timeout."""
        upstream = usock.upstream
        upstream.errors += 1
        base = usock.base
        victims = [pending for key, pending in self.inflight.items() if key & ~0xFFFF == base]
        LOG.debug("%s refused a query (ICMP port unreachable): %d queries fail over now", upstream.label, len(victims))
        for pending in victims:
            del self.inflight[pending.key]
            if pending.reply is None:  # a probe: the upstream stays down
                continue
            self._upstream_failed(upstream)
            self._forward(pending)

    def _answered(self, pending, upstream, data):
        """An upstream's answer (UDP or TCP) to ``pending``, already matched and out of the in-flight table."""
        rtt = time.monotonic() - pending.sent_at
        upstream.answers += 1
        upstream.rtt_sum += rtt
        upstream.rtt_buckets[bisect.bisect_left(RTT_BOUNDS, rtt)] += 1
        upstream.last_answer = self.now
        if upstream.fails:
            upstream.fails = 0
        if not upstream.up:
            self._set_health(upstream, True)
        if pending.reply is None:  # a probe
            return
        query = pending.query
        question = pending.question
        end = HEADER_LEN + len(question)
        self._finish(pending, query[:2] + data[2:] if data[HEADER_LEN:end] == question
                     else restore_answer(data, query, end - HEADER_LEN))

    def _servfail(self, pending):
        self._finish(pending, synthesize(pending.query, SERVFAIL, HEADER_LEN + len(pending.question)))

    def _finish(self, pending, out):
        """The final answer to a client's query."""
        self.rcodes[out[3] & 15] += 1
        addr = pending.addr
        if addr is not None:
            try:
                pending.reply.sendto(out, addr)
            except OSError as exc:
                self.events["dropped:send-error"] += 1
                LOG.debug("sendto %s: %s", addr, exc)
            return
        conn = pending.reply
        conn.pending -= 1
        self._tcp_send(conn, out)
        if conn.pending == TCP_PIPELINE - 1 and not conn.closed:
            self._tcp_frames(conn)

    def _respond(self, reply, addr, out):
        """An answer of our own (REFUSED, FORMERR, ...) to a message that never went upstream."""
        self.rcodes[out[3] & 15] += 1
        if addr is not None:
            try:
                reply.sendto(out, addr)
            except OSError as exc:
                self.events["dropped:send-error"] += 1
                LOG.debug("sendto %s: %s", addr, exc)
            return
        self._tcp_send(reply, out)
