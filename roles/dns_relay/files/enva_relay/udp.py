# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one forwarding path: every query (UDP or TCP) in, every answer out; UDP to the upstreams.

Queries go _queries (checks, access, limits) -> _send (next upstream, fresh
ID, out on UDP or handed to _forward_tcp); a timeout or a failure sends the
query through _send again. Answers, from UDP or TCP, go _deliver (RTT,
health, the client's ID and question restored) -> _finish. Each of these
steps exists once, for every transport; they take a batch (the datagrams of
one wakeup, the frames of one read, one retried query) so that the common
case costs one loop iteration with its locals bound once per batch.
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
        """Drain a UDP listener (up to BURST datagrams) into one batch for _queries."""
        recvfrom = lsock.recvfrom
        batch = []
        for _burst in BURST:
            try:
                batch.append(recvfrom(MAX_QUERY + 1))
            except BlockingIOError:
                break
            except OSError as exc:
                self.events["dropped:recv-error"] += 1
                LOG.debug("recvfrom: %s", exc)
                break
        if batch:
            self.udp_queries += len(batch)
            self._queries(batch, lsock)

    def _queries(self, batch, reply):
        """Clients' messages: UDP ``batch`` of (bytes, address) with ``reply`` the listener; TCP: (bytes, None), its TcpClient."""
        acl_cache = self.acl_cache
        inflight = self.inflight
        limit = self.max_inflight
        ready = []
        for data, addr in batch:
            if addr is None:
                allowed = reply.allowed
            else:
                allowed = acl_cache.get(addr[0])
                if allowed is None:
                    allowed = self._allowed(addr[0])
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
                    self.events["refused:acl"] += 1
                    self._respond(reply, addr, synthesize(data, REFUSED, qend))
                    continue
                if len(inflight) + len(ready) >= limit:
                    self.events["refused:inflight"] += 1
                    self._respond(reply, addr, synthesize(data, REFUSED, qend))
                    continue
            if self.log_queries:
                LOG.debug("query %s from %s", describe(data), addr or reply.host)
            ready.append(Pending(data, data[HEADER_LEN:qend], reply, addr))
        if ready:
            if ready[0].addr is None:
                reply.pending += len(ready)
            self._send(ready)

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
        """Send one query (again) to the next upstream it has not tried, or SERVFAIL when none is left."""
        self._send((pending,))

    def _send(self, pendings):
        """Send each query to the next upstream it has not tried (SERVFAIL when none is left), with a fresh random ID.

        UDP queries leave on one of the upstream's sockets, picked at random once
        per wakeup of the loop: each query's port is as unpredictable as with a
        pick per query, and the answers arrive together on one socket, which the
        loop then drains in one go. TCP queries go to _forward_tcp.
        """
        order = self.order
        inflight = self.inflight
        deadline = self.now + self.timeout
        sent_at = time.monotonic()
        wakeup = self.round
        random_bytes = self._random_bytes
        for pending in pendings:
            tried = pending.tried
            for upstream in order:
                if upstream not in tried:
                    break
            else:
                self.events["servfail:exhausted"] += 1
                if self.log_queries:
                    LOG.debug("SERVFAIL for %s: no upstream answered", describe(pending.query))
                self._servfail(pending)
                continue
            pending.tried = tried + (upstream,)
            if pending.addr is None and pending.reply is not None:
                self._forward_tcp(pending, upstream)
                continue
            usock = upstream.current
            if upstream.current_round != wakeup:
                usock = upstream.current = upstream.sockets[random_bytes(1)[0] & (UDP_SOCKETS_PER_UPSTREAM - 1)]
                upstream.current_round = wakeup
            base = usock.base
            rand = random_bytes(2)
            key = base | rand[0] << 8 | rand[1]
            while key in inflight:  # an ID already in flight on this socket: draw another
                rand = random_bytes(2)
                key = base | rand[0] << 8 | rand[1]
            pending.key = key
            pending.deadline = deadline
            pending.sent_at = sent_at
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
        """Drain an upstream socket (up to BURST datagrams); the answers that match a query in flight to _deliver."""
        recv = usock.sock.recv
        inflight = self.inflight
        base = usock.base
        upstream = usock.upstream
        answers = []
        for _burst in BURST:
            try:
                data = recv(MAX_ANSWER)
            except BlockingIOError:
                break
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
            answers.append((pending, data))
        if answers:
            self._deliver(upstream, answers)

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

    def _deliver(self, upstream, answers):
        """``upstream``'s answers (UDP or TCP), each (Pending, bytes), already matched and out of the in-flight table."""
        now = time.monotonic()
        buckets = upstream.rtt_buckets
        finish = self._finish
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
            finish(pending, query[:2] + data[2:] if data[HEADER_LEN:end] == question else restore_answer(data, query, end - HEADER_LEN))
        upstream.answers += len(answers)
        upstream.rtt_sum += rtt_sum
        upstream.last_answer = self.now
        if upstream.fails:
            upstream.fails = 0
        if not upstream.up:
            self._set_health(upstream, True)

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
