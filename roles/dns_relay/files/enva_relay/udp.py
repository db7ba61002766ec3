# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""UDP socket I/O: clients' datagrams in and answers out on the listeners, the connected sockets to the upstreams.

What happens to a query between its datagram and its answer is forwarding.py's.
Each upstream has UDP_SOCKETS_PER_UPSTREAM connected sockets (a random
ephemeral port each, so the kernel drops datagrams from anyone else); the
queries of one wakeup leave on one of them, picked at random, and a socket
gets a fresh port after ROTATE_AFTER queries or --port-lifetime seconds.
"""

import logging
import socket

from .state import BURST, EPOLLIN, ROTATE_AFTER, SOCKET_BUFFER, UDP_SOCKETS_PER_UPSTREAM, UpSocket
from .wire import HEADER_LEN, MAX_ANSWER, MAX_QUERY, answer_matches

LOG = logging.getLogger("enva-dns-relay")


def send_answer(listener, addr, out, events):
    """An answer to a UDP client, from the listener its query came in on; a failure is counted in ``events``."""
    try:
        listener.sendto(out, addr)
    except OSError as exc:
        events["dropped:send-error"] += 1
        LOG.debug("sendto %s: %s", addr, exc)


class UdpSockets:
    """The listeners' datagrams and the upstreams' UDP sockets.

    Its reach in the shared state: inflight (keys of the queries sent here),
    events, udp_queries, retired, now, round, timeout, warnings, new_base,
    random_bytes, register. Calls forwarding's queries, deliver, forward_retry
    and upstream_failed.
    """

    def __init__(self, state, forwarding):
        self.state = state
        self.forwarding = forwarding

    # clients -------------------------------------------------------------------------------

    def on_query(self, lsock, _events):
        """Drain a UDP listener (up to BURST datagrams) into one batch for forwarding.queries."""
        recvfrom = lsock.recvfrom
        batch = []
        for _burst in BURST:
            try:
                batch.append(recvfrom(MAX_QUERY + 1))
            except BlockingIOError:
                break
            except OSError as exc:
                self.state.events["dropped:recv-error"] += 1
                LOG.debug("recvfrom: %s", exc)
                break
        if batch:
            self.state.udp_queries += len(batch)
            self.forwarding.queries(batch, lsock)

    # upstreams -----------------------------------------------------------------------------

    def open_socket(self, upstream):
        """A new connected socket to ``upstream`` (the kernel binds a random ephemeral port), registered with the loop."""
        state = self.state
        sock = socket.socket(upstream.endpoint.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setblocking(False)
            sock.connect(upstream.endpoint.sockaddr)
        except OSError:
            sock.close()
            raise
        usock = UpSocket(sock, upstream, state.new_base(), state.now)
        state.register(sock, EPOLLIN, self.on_answer, usock)
        return usock

    def send_over_udp(self, pendings, deadline, sent_at):
        """Send each query on its chosen upstream's (pending.tried[-1]) UDP socket, with a fresh random ID.

        The socket is picked at random once per upstream and wakeup of the loop:
        each query's port is as unpredictable as with a pick per query, and the
        answers arrive together on one socket, which the loop then drains in one go.
        """
        state = self.state
        inflight = state.inflight
        wakeup = state.round
        random_bytes = state.random_bytes
        ids = random_bytes(2 * len(pendings))  # every query's ID in one draw (a batch is at most BURST queries)
        at = 0
        for pending in pendings:
            upstream = pending.tried[-1]
            usock = upstream.current
            if upstream.current_round != wakeup:
                usock = upstream.current = upstream.sockets[random_bytes(1)[0] & (UDP_SOCKETS_PER_UPSTREAM - 1)]
                upstream.current_round = wakeup
            base = usock.base
            rand = ids[at:at + 2]
            at += 2
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
                self.rotate(usock)

    def _send_failed(self, usock, out):
        """A send to an upstream failed: a pending ICMP error of an earlier datagram is reported once; try again."""
        try:
            usock.sock.send(out)
        except OSError as exc:
            usock.upstream.errors += 1
            LOG.debug("send to %s: %s", usock.upstream.label, exc)

    def rotate(self, usock):
        """Give the upstream a fresh socket (new random port); the old one stays open for late answers."""
        state = self.state
        upstream = usock.upstream
        if usock not in upstream.sockets:  # already replaced
            return
        try:
            fresh = self.open_socket(upstream)
        except OSError as exc:
            state.warnings.warning("rotate", state.now, "cannot open a new socket to %s: %s", upstream.label, exc)
            usock.sent = 0
            usock.opened = state.now
            return
        upstream.sockets[upstream.sockets.index(usock)] = fresh
        if upstream.current is usock:
            upstream.current = fresh
        state.retired.append((state.now + state.timeout + 1.0, usock))

    def on_answer(self, usock, _events):
        """Drain an upstream socket (up to BURST datagrams); the answers that match a query in flight to forwarding.deliver."""
        recv = usock.sock.recv
        events = self.state.events
        inflight = self.state.inflight
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
                events["ignored:short"] += 1
                continue
            pending = inflight.get(base | data[0] << 8 | data[1])
            if pending is None:
                events["ignored:id"] += 1
                continue
            question = pending.question
            if not (data[2] & 0x80 and not data[4] and data[5] == 1 and data[HEADER_LEN:HEADER_LEN + len(question)] == question
                    or answer_matches(data, question)):
                events["ignored:question"] += 1
                continue
            del inflight[pending.key]
            answers.append((pending, data))
        if answers:
            self.forwarding.deliver(upstream, answers)

    def _refused(self, usock):
        """The upstream refused a datagram: fail the queries waiting on this socket now rather than at their timeout."""
        inflight = self.state.inflight
        upstream = usock.upstream
        upstream.errors += 1
        base = usock.base
        victims = [pending for key, pending in inflight.items() if key & ~0xFFFF == base]
        LOG.debug("%s refused a query (ICMP port unreachable): %d queries fail over now", upstream.label, len(victims))
        for pending in victims:
            del inflight[pending.key]
            if pending.reply is None:  # a probe: the upstream stays down
                continue
            self.forwarding.upstream_failed(upstream)
            self.forwarding.forward_retry(pending)
