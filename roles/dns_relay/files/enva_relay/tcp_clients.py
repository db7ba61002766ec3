# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP clients (RFC 7766 framing) with limits an outsider cannot exhaust.

The allow list is applied at accept (a refused address is reset before it
sends a byte); at most --max-tcp-per-client connections per address; a query
must arrive in full within --tcp-frame-timeout of its first byte, and only a
whole query (or answers being read) keeps a connection from its idle timeout;
each client may hold --tcp-buffer KiB in the relay and all together
--tcp-buffer-budget KiB. HUP and ERR from epoll close the connection, also
after the client half-closed (else a reset client with a query pending would
spin the loop).
"""

import logging
import socket
import struct

from .state import BURST, EPOLL_BAD, EPOLLIN, EPOLLOUT, TCP_PIPELINE, TCP_READ, TCP_SOCKET_BUFFER, TcpClient
from .wire import HEADER_LEN, MAX_QUERY

LOG = logging.getLogger("enva-dns-relay")
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and leaves no TIME_WAIT


def reset(sock):
    """Close a connection at once with RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    except OSError:
        pass
    sock.close()


class TcpClients:
    """Accepting and serving TCP clients; their connections, per-address counts and buffer total are kept here.

    Its reach in the shared state: listeners and epoll (to pause accepting),
    acl_cache and allowed, events, tcp_queries, now, stopping, warnings, the
    TCP limits of the running configuration (max_tcp_clients,
    max_tcp_per_client, tcp_idle_timeout, tcp_frame_timeout, tcp_buffer,
    tcp_budget), register, unregister. Calls forwarding.queries.
    """

    def __init__(self, state, forwarding):
        self.state = state
        self.forwarding = forwarding
        self.clients = set()  # TcpClient
        self.per_host = {}  # client address -> TCP connections from it
        self.buffered = 0  # bytes in every TCP client's buffers
        self.accept_paused = False

    def on_accept(self, lsock, _events):
        """Accept what the listener has (up to BURST), within the limits; a refused address is reset at once."""
        state = self.state
        for _burst in BURST:
            if len(self.clients) >= state.max_tcp_clients:
                self.pause_accept(True, "%d TCP clients (--max-tcp-clients): new ones wait in the backlog" % len(self.clients))
                return
            try:
                sock, peer = lsock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and the like: the connection stays queued; retry on the next tick
                state.events["tcp:accept-error"] += 1
                self.pause_accept(True, "cannot accept TCP clients (%s): they wait in the backlog" % (exc.strerror or exc))
                return
            host = peer[0]
            allowed = state.acl_cache.get(host)
            if allowed is None:
                allowed = state.allowed(host)
            if not allowed:
                state.events["tcp:refused-acl"] += 1
                reset(sock)
                continue
            count = self.per_host.get(host, 0)
            if count >= state.max_tcp_per_client:
                state.events["tcp:refused-per-client"] += 1
                reset(sock)
                continue
            self.per_host[host] = count + 1
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_SOCKET_BUFFER)
            except OSError:
                pass
            conn = TcpClient(sock, host, True, state.now + state.tcp_idle_timeout)
            self.clients.add(conn)
            state.register(sock, EPOLLIN, self._on_client, conn)

    def pause_accept(self, pause, why=""):
        """Stop (or resume) polling the TCP listeners; connections wait in the kernel's backlog meanwhile."""
        if pause == self.accept_paused:
            return
        state = self.state
        self.accept_paused = pause
        for (kind, _label), sock in state.listeners.items():
            if kind == "tcp":
                state.epoll.modify(sock.fileno(), 0 if pause else EPOLLIN)
        if pause:
            state.warnings.warning("accept", state.now, "%s", why)

    def _on_client(self, conn, events):
        if events & EPOLL_BAD:  # reset, or shut down both ways: nobody can read our answers any more
            self.state.events["tcp:reset"] += 1
            self._close_client(conn)
            return
        if events & EPOLLOUT:
            self.flush(conn)
            if conn.closed:
                return
        if conn.eof or not events & EPOLLIN:
            return
        try:
            chunk = conn.sock.recv(TCP_READ)
        except BlockingIOError:
            return
        except OSError:
            self._close_client(conn)
            return
        if not chunk:
            conn.eof = True
            conn.frame_at = None
            if conn.pending or conn.wbuf:
                self._interest(conn)
            else:
                self._close_client(conn)
            return
        if not self._room(conn, len(chunk), "buffer"):
            return
        conn.rbuf += chunk
        self.frames(conn)

    def frames(self, conn):
        """Handle the complete queries in ``conn``'s buffer, up to TCP_PIPELINE in flight."""
        rbuf = conn.rbuf
        frames = []
        room = TCP_PIPELINE - conn.pending
        while len(rbuf) >= 2 and len(frames) < room:
            size = rbuf[0] << 8 | rbuf[1]
            if size < HEADER_LEN or size > MAX_QUERY or (len(rbuf) > 4 and rbuf[4] & 0x80):
                # shorter than a header, longer than any query, or an answer: not a DNS client
                self.state.events["tcp:bad-frame"] += 1
                self._close_client(conn)
                return
            if len(rbuf) < size + 2:
                break
            frames.append((bytes(rbuf[2:size + 2]), None))
            del rbuf[:size + 2]
        state = self.state
        if frames:
            state.tcp_queries += len(frames)
            conn.idle_at = state.now + state.tcp_idle_timeout
            self.forwarding.queries(frames, conn)
            if conn.closed:
                return
        if rbuf and (len(rbuf) < 2 or len(rbuf) < (rbuf[0] << 8 | rbuf[1]) + 2):  # a query begun, not complete
            if frames or conn.frame_at is None:
                conn.frame_at = state.now + state.tcp_frame_timeout
        else:
            conn.frame_at = None
        self._account(conn)
        self._interest(conn)

    def _interest(self, conn):
        mask = 0
        if not conn.eof and conn.pending < TCP_PIPELINE and len(conn.wbuf) < self.state.tcp_buffer // 2:
            mask |= EPOLLIN
        if conn.wbuf:
            mask |= EPOLLOUT
        if mask != conn.mask:
            conn.mask = mask
            self.state.epoll.modify(conn.sock.fileno(), mask)

    def _room(self, conn, more, reason):
        """True if ``more`` bytes fit in ``conn``'s --tcp-buffer and in the --tcp-buffer-budget; else ``conn`` is closed."""
        state = self.state
        if len(conn.rbuf) + len(conn.wbuf) + more > state.tcp_buffer:
            state.events["tcp:%s-closed" % reason] += 1
        elif self.buffered + more > state.tcp_budget:
            state.events["tcp:budget-closed"] += 1
        else:
            return True
        self._close_client(conn)
        return False

    def _account(self, conn):
        """Keep the relay's total of TCP client buffers in step with ``conn``'s."""
        size = len(conn.rbuf) + len(conn.wbuf)
        self.buffered += size - conn.accounted
        conn.accounted = size

    def send(self, conn, out):
        """A framed answer to ``conn``: written now if the kernel takes it, else buffered (within --tcp-buffer and the budget)."""
        if conn.closed:
            return
        frame = len(out).to_bytes(2, "big") + out
        if not conn.wbuf:
            sent = self._write(conn, frame)
            if sent < 0:
                return
            if sent == len(frame):
                if conn.eof and not conn.pending:
                    self._close_client(conn)
                return
            frame = frame[sent:]
        if not self._room(conn, len(frame), "slow-reader"):
            return
        conn.wbuf += frame
        self._account(conn)
        self._interest(conn)

    def _write(self, conn, data):
        """Hand the kernel what it takes of ``data`` now; how much, or -1 if the connection failed (and is closed)."""
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self._close_client(conn)
            return -1
        if sent:  # the client reads: not idle
            conn.idle_at = self.state.now + self.state.tcp_idle_timeout
        return sent

    def flush(self, conn):
        """Write what the kernel takes of ``conn``'s unsent answers."""
        if conn.closed:
            return
        if conn.wbuf:
            sent = self._write(conn, conn.wbuf)
            if sent < 0:
                return
            if sent:
                del conn.wbuf[:sent]
                self._account(conn)
        if conn.eof and not conn.wbuf and not conn.pending:
            self._close_client(conn)
        else:
            self._interest(conn)

    def timers(self, now):
        """Close the clients whose query did not arrive in time, and the idle ones; resume accepting when there is room."""
        state = self.state
        if self.accept_paused and len(self.clients) < state.max_tcp_clients and not state.stopping:
            self.pause_accept(False)
        for conn in [c for c in self.clients if (c.frame_at is not None and c.frame_at <= now and c.mask & EPOLLIN)
                     or (c.idle_at <= now and not c.pending)]:
            if conn.frame_at is not None and conn.frame_at <= now:
                state.events["tcp:frame-timeout"] += 1
            else:
                state.events["tcp:idle-closed"] += 1
            self._close_client(conn)

    def _close_client(self, conn):
        if conn.closed:
            return
        conn.closed = True
        self.clients.discard(conn)
        count = self.per_host.get(conn.host, 0) - 1
        if count > 0:
            self.per_host[conn.host] = count
        else:
            self.per_host.pop(conn.host, None)
        self.buffered -= conn.accounted
        conn.accounted = 0
        conn.rbuf = conn.wbuf = b""
        self.state.unregister(conn.sock)
