# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP to the upstreams: at most --max-upstream-tcp connections to each, reused, queries pipelined.

A query goes on the connection with the fewest queries waiting; a new one is
opened when every open one has UPSTREAM_TCP_PIPELINE waiting and the cap
allows. Each query has its own random ID on its connection; an answer is
matched by ID and question, in whatever order it comes. A connection the
upstream closes after it answered something (an idle timeout on its side) has
its waiting queries sent again once on a fresh one; any other failure counts
against the upstream and the queries go to the next one.
"""

import errno
import logging
import os
import socket
import time

from .state import EPOLL_BAD, EPOLLIN, EPOLLOUT, UPSTREAM_TCP_IDLE, UPSTREAM_TCP_PIPELINE, TcpUpstream
from .wire import HEADER_LEN, answer_matches

LOG = logging.getLogger("enva-dns-relay")
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class TcpUpstreams:
    """The upstream side of TCP; each upstream's connections are on its Upstream record (``tcp``).

    Its reach in the shared state: inflight (keys of the queries sent here),
    events, now, timeout, max_upstream_tcp, epoll, new_base, random_bytes,
    register, unregister. Calls forwarding's deliver, forward_retry, servfail
    and upstream_failed.
    """

    def __init__(self, state, forwarding):
        self.state = state
        self.forwarding = forwarding

    def send_over_tcp(self, pending, upstream):
        """Send one query on a TCP connection to ``upstream`` (already chosen), with a fresh random ID on that connection."""
        state = self.state
        forwarding = self.forwarding
        best = None
        for conn in upstream.tcp:
            if best is None or len(conn.waiting) < len(best.waiting):
                best = conn
        conn = best
        if best is None or (len(best.waiting) >= UPSTREAM_TCP_PIPELINE and len(upstream.tcp) < state.max_upstream_tcp):
            try:
                conn = self._open_conn(upstream)
            except OSError as exc:
                LOG.debug("TCP to %s: %s", upstream.label, exc)
                if exc.errno in OUT_OF_DESCRIPTORS:  # a local problem, not the upstream's
                    if best is None:
                        state.events["servfail:no-socket"] += 1
                        forwarding.servfail(pending)
                        return
                else:
                    upstream.errors += 1
                    forwarding.upstream_failed(upstream)
                    forwarding.forward_retry(pending)
                    return
        waiting = conn.waiting
        rand = state.random_bytes(2)
        qid = rand[0] << 8 | rand[1]
        while qid in waiting:
            rand = state.random_bytes(2)
            qid = rand[0] << 8 | rand[1]
        waiting[qid] = pending
        pending.key = conn.base | qid
        pending.conn = conn
        pending.deadline = state.now + state.timeout
        pending.sent_at = time.monotonic()
        state.inflight[pending.key] = pending
        upstream.queries += 1
        query = pending.query
        conn.out += len(query).to_bytes(2, "big") + rand + query[2:]
        if conn.connected:
            self._write(conn)

    def _open_conn(self, upstream):
        sock = socket.socket(upstream.endpoint.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(upstream.endpoint.sockaddr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        conn = TcpUpstream(sock, upstream, self.state.new_base(), self.state.now)
        upstream.tcp.append(conn)
        upstream.tcp_opened += 1
        self.state.register(sock, EPOLLOUT, self._on_conn, conn)
        return conn

    def _on_conn(self, conn, events):
        sock = conn.sock
        if not conn.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._conn_failed(conn, os.strerror(err))
                return
            if not events & EPOLLOUT:
                return
            conn.connected = True
        if events & EPOLLOUT and conn.out:
            self._write(conn)
            if conn.closed:
                return
        if not events & (EPOLLIN | EPOLL_BAD):
            self._interest(conn)
            return
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._conn_failed(conn, str(exc))
            return
        if not chunk:
            self._conn_failed(conn, "closed by the upstream")
            return
        state = self.state
        rbuf = conn.rbuf
        rbuf += chunk
        waiting = conn.waiting
        answers = []
        while len(rbuf) >= 2:
            size = rbuf[0] << 8 | rbuf[1]
            if len(rbuf) < size + 2:
                break
            data = bytes(rbuf[2:size + 2])
            del rbuf[:size + 2]
            pending = waiting.get(data[0] << 8 | data[1]) if len(data) >= HEADER_LEN else None
            if pending is None or not answer_matches(data, pending.question):
                state.events["ignored:tcp"] += 1
                continue
            del waiting[data[0] << 8 | data[1]]
            del state.inflight[pending.key]
            pending.conn = None
            conn.answered += 1
            if not waiting:
                conn.idle_since = state.now
            answers.append((pending, data))
        if answers:
            self.forwarding.deliver(conn.upstream, answers)

    def _write(self, conn):
        """Hand the kernel what it takes of the queries queued on ``conn``."""
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._conn_failed(conn, str(exc))
            return
        del conn.out[:sent]
        self._interest(conn)

    def _interest(self, conn):
        mask = EPOLLIN | EPOLLOUT if conn.out or not conn.connected else EPOLLIN
        if mask != conn.mask:
            conn.mask = mask
            self.state.epoll.modify(conn.sock.fileno(), mask)

    def _conn_failed(self, conn, why):
        inflight = self.state.inflight
        forwarding = self.forwarding
        upstream = conn.upstream
        self._close_conn(conn)
        LOG.debug("TCP to %s: %s (%d queries waiting on it)", upstream.label, why, len(conn.waiting))
        again = conn.answered > 0  # it served us before: the upstream closed it (idle), not a failure
        for pending in list(conn.waiting.values()):
            if inflight.get(pending.key) is pending:
                del inflight[pending.key]
            pending.conn = None
            if again and not pending.requeued:
                pending.requeued = True
                self.send_over_tcp(pending, upstream)
            else:
                upstream.errors += 1
                forwarding.upstream_failed(upstream)
                forwarding.forward_retry(pending)
        conn.waiting.clear()

    def _close_conn(self, conn):
        if conn.closed:
            return
        conn.closed = True
        if conn in conn.upstream.tcp:
            conn.upstream.tcp.remove(conn)
        self.state.unregister(conn.sock)

    def timers(self, now, upstreams):
        """Close the upstream connections that have had nothing waiting for UPSTREAM_TCP_IDLE seconds."""
        for upstream in upstreams:
            for conn in [c for c in upstream.tcp if not c.waiting and c.idle_since <= now - UPSTREAM_TCP_IDLE]:
                self._close_conn(conn)

    def forget_try(self, pending):
        """A TCP try that timed out: its connection no longer waits for it (a late answer is ignored)."""
        conn = pending.conn
        if conn is not None:
            conn.waiting.pop(pending.key & 0xFFFF, None)
            if not conn.waiting:
                conn.idle_since = self.state.now
            pending.conn = None
