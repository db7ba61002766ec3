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


class TcpUpstreamsMixin:
    """The upstream side of TCP (mixed into Relay)."""

    def _forward_tcp(self, pending, upstream):
        best = None
        for conn in upstream.tcp:
            if best is None or len(conn.waiting) < len(best.waiting):
                best = conn
        conn = best
        if best is None or (len(best.waiting) >= UPSTREAM_TCP_PIPELINE and len(upstream.tcp) < self.max_upstream_tcp):
            try:
                conn = self._open_upstream_conn(upstream)
            except OSError as exc:
                LOG.debug("TCP to %s: %s", upstream.label, exc)
                if exc.errno in OUT_OF_DESCRIPTORS:  # a local problem, not the upstream's
                    if best is None:
                        self.events["servfail:no-socket"] += 1
                        self._servfail(pending)
                        return
                else:
                    upstream.errors += 1
                    self._upstream_failed(upstream)
                    self._forward(pending)
                    return
        waiting = conn.waiting
        rand = self._random_bytes(2)
        qid = rand[0] << 8 | rand[1]
        while qid in waiting:
            rand = self._random_bytes(2)
            qid = rand[0] << 8 | rand[1]
        waiting[qid] = pending
        pending.key = conn.base | qid
        pending.conn = conn
        pending.deadline = self.now + self.timeout
        pending.sent_at = time.monotonic()
        self.inflight[pending.key] = pending
        upstream.queries += 1
        query = pending.query
        conn.out += len(query).to_bytes(2, "big") + rand + query[2:]
        if conn.connected:
            self._upstream_send(conn)

    def _open_upstream_conn(self, upstream):
        sock = socket.socket(upstream.endpoint.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(upstream.endpoint.sockaddr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        conn = TcpUpstream(sock, upstream, self.next_index << 16, self.now)
        self.next_index += 1
        upstream.tcp.append(conn)
        upstream.tcp_opened += 1
        self._register(sock, EPOLLOUT, self._on_tcp_upstream, conn)
        return conn

    def _on_tcp_upstream(self, conn, events):
        sock = conn.sock
        if not conn.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._upstream_conn_failed(conn, os.strerror(err))
                return
            if not events & EPOLLOUT:
                return
            conn.connected = True
        if events & EPOLLOUT and conn.out:
            self._upstream_send(conn)
            if conn.closed:
                return
        if not events & (EPOLLIN | EPOLL_BAD):
            self._upstream_interest(conn)
            return
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._upstream_conn_failed(conn, str(exc))
            return
        if not chunk:
            self._upstream_conn_failed(conn, "closed by the upstream")
            return
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
                self.events["ignored:tcp"] += 1
                continue
            del waiting[data[0] << 8 | data[1]]
            del self.inflight[pending.key]
            pending.conn = None
            conn.answered += 1
            if not waiting:
                conn.idle_since = self.now
            answers.append((pending, data))
        if answers:
            self._deliver(conn.upstream, answers)

    def _upstream_send(self, conn):
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._upstream_conn_failed(conn, str(exc))
            return
        del conn.out[:sent]
        self._upstream_interest(conn)

    def _upstream_interest(self, conn):
        mask = EPOLLIN | EPOLLOUT if conn.out or not conn.connected else EPOLLIN
        if mask != conn.mask:
            conn.mask = mask
            self.epoll.modify(conn.sock.fileno(), mask)

    def _upstream_conn_failed(self, conn, why):
        upstream = conn.upstream
        self._close_upstream_conn(conn)
        LOG.debug("TCP to %s: %s (%d queries waiting on it)", upstream.label, why, len(conn.waiting))
        again = conn.answered > 0  # it served us before: the upstream closed it (idle), not a failure
        for pending in list(conn.waiting.values()):
            if self.inflight.get(pending.key) is pending:
                del self.inflight[pending.key]
            pending.conn = None
            if again and not pending.requeued:
                pending.requeued = True
                self._forward_tcp(pending, upstream)
            else:
                upstream.errors += 1
                self._upstream_failed(upstream)
                self._forward(pending)
        conn.waiting.clear()

    def _close_upstream_conn(self, conn):
        if conn.closed:
            return
        conn.closed = True
        if conn in conn.upstream.tcp:
            conn.upstream.tcp.remove(conn)
        self._unregister(conn.sock)

    def _upstream_tcp_timers(self, now, upstreams):
        """Close the upstream connections that have had nothing waiting for UPSTREAM_TCP_IDLE seconds."""
        for upstream in upstreams:
            for conn in [c for c in upstream.tcp if not c.waiting and c.idle_since <= now - UPSTREAM_TCP_IDLE]:
                self._close_upstream_conn(conn)

    def _forget_tcp_try(self, pending):
        """A TCP try that timed out: its connection no longer waits for it (a late answer is ignored)."""
        conn = pending.conn
        if conn is not None:
            conn.waiting.pop(pending.key & 0xFFFF, None)
            if not conn.waiting:
                conn.idle_since = self.now
            pending.conn = None
