"""The API's gunicorn worker: one event loop per process reads every request whole (headers,
then body, each under a deadline) before the application sees it, runs the application inline,
and writes the reply without blocking.

A client that connects and sends nothing, stops halfway through its headers or its body, or
does not read its reply holds a socket and a buffer, never the process: the loop goes on serving
everyone else and drops that connection at its deadline. Requests are still answered one at a
time per process, as by gunicorn's sync worker, so a call costs what it cost there; gunicorn's
gthread worker, measured, costs more CPU per ``one.vm.info`` and still gives a thread to a
client stalled inside its headers, for good (docs/performance.md).

Parsing stays gunicorn's: the loop only finds where a request ends (the blank line, then
Content-Length bytes) and hands those bytes to gunicorn's parser and WSGI response.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from gunicorn.http import wsgi
from gunicorn.http.errors import NoMoreData
from gunicorn.http.parser import RequestParser
from gunicorn.workers import base

from oneserver import settings, wire

# Seconds from a connection's accept (or the first byte of its next request) to the end of the
# request's headers, and from there to the end of its body.
HEADER_TIMEOUT = 5.0
BODY_TIMEOUT = 5.0
# Seconds a reply may take to leave, from when it could not be written at once.
WRITE_TIMEOUT = 10.0
# A large body or reply gets one more second per this many bytes: a slow but moving link
# still gets through, a stalled one does not.
MIN_RATE = 1 << 20
# Headers longer than this are handed to gunicorn's parser as they are, which refuses them
# (its own field and line limits are smaller).
HEADER_MAX = 64 * 1024
RECV_SIZE = 256 * 1024
# How often deadlines are checked and the master is told the worker lives.
TICK = 0.5
# After a reply that left input unread (a refused body), how long and how much of what the
# client still sends is read and dropped before the socket is closed.
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 1 << 20

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_GONE = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EMFILE, errno.ENFILE,
         errno.ENOBUFS, errno.ENOMEM, errno.EPROTO)


class Conn:
    """One client connection: bytes of the request being read, or the reply being written."""

    __slots__ = ("sock", "fd", "addr", "server", "buf", "scanned", "head_end", "need",
                 "held", "close_after", "deadline", "idle", "events", "reply", "keep", "linger")

    def __init__(self, sock: socket.socket, addr: Any, server: Any, deadline: float) -> None:
        self.sock, self.fd, self.addr, self.server = sock, sock.fileno(), addr, server
        self.buf = bytearray()
        self.scanned = 0  # where the search for the blank line goes on from
        self.head_end = -1  # index just past the blank line, once seen
        self.need = -1  # bytes of the whole request, once the headers tell
        self.held = 0  # of the worker's body budget, while the body is awaited
        self.close_after = False  # the body is not read: close after the reply
        self.deadline = deadline
        self.idle = False  # kept after a reply, no byte of a next request yet
        self.events = 0  # what the poller watches for (0: not registered)
        self.reply: memoryview | None = None  # the unsent rest of a reply
        self.keep = False  # keep the connection after the reply
        self.linger = 0  # bytes still to drop before closing (0: not closing)


class Outbox:
    """What gunicorn's Response writes to, in place of the socket: the reply is collected and
    the loop sends it without blocking."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.chunks.append(data)

    def send(self, data: bytes) -> int:
        # gunicorn's interim "100 Continue": the loop sent it if the body had to be awaited,
        # and the body is here now.
        return len(data)


def _as_socket(out: Outbox) -> socket.socket:
    # gunicorn's Response and handle_error only call sendall and send on what they are given
    # as the client socket; its stubs ask for a real one.
    return cast(socket.socket, out)


class EventWorker(base.Worker):
    """gunicorn worker class ``oneserver.http_worker.EventWorker``."""

    def init_process(self) -> None:
        self.poller = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.listeners: dict[int, tuple[socket.socket, Any]] = {}
        self.listening = False
        self.held = 0  # bytes of bodies being awaited, all connections together
        super().init_process()

    # ------------------------------------------------------------------------- the loop

    def run(self) -> None:
        self.limit = settings.current().message_size
        for sock in self.sockets:
            sock.setblocking(False)
            self.listeners[sock.fileno()] = (sock, sock.getsockname())
        self.poller.register(self.PIPE[0], select.EPOLLIN)
        next_tick = 0.0
        while self.alive:
            now = time.monotonic()
            if now >= next_tick:
                self.notify()
                self._expire(now)
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                next_tick = now + TICK
            self._listen(len(self.conns) < self.cfg.worker_connections)
            for fd, events in self.poller.poll(max(0.0, next_tick - now)):
                self._dispatch(fd, events)
        self._stop()

    def _dispatch(self, fd: int, events: int) -> None:
        if fd in self.listeners:
            conn = self._accept(*self.listeners[fd])
            if conn is not None:
                # The request has usually arrived with the connection: try it before polling.
                self._guarded(conn, self._read)
        elif fd == self.PIPE[0]:
            try:
                os.read(fd, 4096)  # signal wake-ups: the loop sees ``alive`` next round
            except BlockingIOError:
                pass
        elif (conn := self.conns.get(fd)) is not None:
            self._guarded(conn, self._read if conn.reply is None else self._flush)

    def _guarded(self, conn: Conn, step: Callable[[Conn], None]) -> None:
        try:
            step(conn)
        except Exception:  # a bug: lose this connection, not the worker
            self.log.exception("error on a connection from %s", conn.addr)
            self._close(conn)

    def _listen(self, on: bool) -> None:
        """Watch the listening sockets while under the connection bound. EPOLLEXCLUSIVE wakes
        one idle worker per new connection instead of all of them."""
        if on == self.listening:
            return
        for fd in self.listeners:
            if on:
                self.poller.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
            else:
                self.poller.unregister(fd)
        self.listening = on

    def _watch(self, conn: Conn, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self.poller.modify(conn.fd, events)
        else:
            self.poller.register(conn.fd, events)
        conn.events = events

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.conns.values() if c.deadline <= now]:
            if conn.reply is None and conn.head_end >= 0:  # as xmlrpc-c answers a late body
                self._refuse(conn, 408, "Request Timeout",
                             "Timed out waiting for client to send its POST data")
            else:
                self._close(conn)

    def _refuse(self, conn: Conn, status: int, reason: str, explanation: str) -> None:
        """Answer with an error page, as far as it can be written at once, and close."""
        body = wire.error_page(status, explanation)
        try:
            conn.sock.send(f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                           f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n"
                           .encode() + body)
        except OSError:
            pass
        self._close(conn)

    def _stop(self) -> None:
        """Stop accepting, drop connections that have no reply under way, and give the
        replies being written until the graceful timeout."""
        self._listen(False)
        for conn in [c for c in self.conns.values() if c.reply is None]:
            self._close(conn)
        limit = time.monotonic() + self.cfg.graceful_timeout
        while self.conns and time.monotonic() < limit:
            self.notify()
            for fd, events in self.poller.poll(TICK):
                if fd in self.conns:
                    self._dispatch(fd, events)
            self._expire(time.monotonic())
        for conn in list(self.conns.values()):
            self._close(conn)
        self.poller.close()

    # ------------------------------------------------------------------------- reading

    def _accept(self, listener: socket.socket, server: Any) -> Conn | None:
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        sock.setblocking(False)
        conn = Conn(sock, addr, server, time.monotonic() + HEADER_TIMEOUT)
        self.conns[conn.fd] = conn
        return conn

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            self._watch(conn, select.EPOLLIN)
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # closed by the client, between requests or in the middle of one
            self._close(conn)
            return
        if conn.linger:
            conn.linger = max(0, conn.linger - len(data))
            if not conn.linger:
                self._close(conn)
            return
        if conn.idle:  # the next request on a kept connection begins
            conn.deadline = time.monotonic() + HEADER_TIMEOUT
            conn.idle = False
        conn.buf += data
        self._advance(conn)
        if conn.fd in self.conns and conn.reply is None:
            self._watch(conn, select.EPOLLIN)

    def _advance(self, conn: Conn) -> None:
        """Serve every complete request in the buffer (a client may pipeline them)."""
        while conn.fd in self.conns and conn.reply is None:
            if conn.head_end < 0 and not self._headers(conn):
                return
            if len(conn.buf) < conn.need:
                return
            request, conn.buf = bytes(conn.buf[:conn.need]), conn.buf[conn.need:]
            conn.head_end = conn.need = -1
            conn.scanned = 0
            self._release(conn)
            self._serve(conn, request)

    def _headers(self, conn: Conn) -> bool:
        """Whether the headers are complete; if so, how much body follows and by when."""
        end = conn.buf.find(b"\r\n\r\n", conn.scanned)
        if end < 0:
            if len(conn.buf) <= HEADER_MAX:
                # A client sending a byte at a time does not make each search start over.
                conn.scanned = max(0, len(conn.buf) - 3)
                return False
            conn.head_end = conn.need = len(conn.buf)
            conn.close_after = True
            return True
        conn.head_end = end + 4
        head = bytes(conn.buf[:end]).lower()
        match = _CONTENT_LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        if (match is None and b"\r\ntransfer-encoding:" in head) or length > self.limit:
            # A body of unknown or refused length is not read: the application answers from
            # the headers (xmlrpc-c's 411 or 500), and the connection closes after the reply.
            conn.need = conn.head_end
            conn.close_after = True
            return True
        conn.need = conn.head_end + length
        conn.deadline = time.monotonic() + BODY_TIMEOUT + length / MIN_RATE
        if len(conn.buf) >= conn.need:
            return True
        if self.held + length > 2 * self.limit:
            # Bodies are held in memory until whole: a worker holds at most two of the
            # largest at once, and refuses the body that would go past that.
            self._refuse(conn, 503, "Service Unavailable", "Too many requests being received")
            return False
        conn.held = length
        self.held += length
        if b"\r\nexpect:" in head and b"100-continue" in head:
            try:
                conn.sock.send(_CONTINUE)
            except OSError:
                pass
        return True

    # ------------------------------------------------------------------------- serving

    def _serve(self, conn: Conn, request: bytes) -> None:
        out = Outbox()
        req = None
        keep = False
        try:
            req = next(RequestParser(self.cfg, [request], conn.addr))
            resp, environ = wsgi.create(req, _as_socket(out), conn.addr, conn.server, self.cfg)
            self.nr += 1
            if self.nr >= self.max_requests:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if conn.close_after or not self.alive or not self.cfg.keepalive:
                resp.force_close()
            # types-gunicorn's WSGI start_response takes no exc_info and returns None, unlike
            # PEP 3333's and its own Response's; strict's unused-ignore check says when not.
            respiter = self.wsgi(environ, resp.start_response)  # type: ignore[arg-type]
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                if hasattr(respiter, "close"):
                    respiter.close()
            keep = not resp.should_close()
        except (StopIteration, NoMoreData):
            pass  # nothing that makes a request (an empty or cut-off one): close
        except Exception as exc:  # gunicorn's 4xx for bad HTTP, its 500 for an app failure
            out.chunks.clear()
            self.handle_error(req, _as_socket(out), conn.addr, exc)
        self._reply(conn, out.chunks, keep)

    def _reply(self, conn: Conn, chunks: list[bytes], keep: bool) -> None:
        conn.keep = keep
        total = sum(map(len, chunks))
        try:
            sent = conn.sock.sendmsg(chunks) if chunks else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        if sent < total:
            conn.reply = memoryview(b"".join(chunks))[sent:]
            conn.deadline = time.monotonic() + WRITE_TIMEOUT + total / MIN_RATE
            self._watch(conn, select.EPOLLOUT)
            return
        self._done(conn)

    def _flush(self, conn: Conn) -> None:
        assert conn.reply is not None
        try:
            sent = conn.sock.send(conn.reply)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        conn.reply = conn.reply[sent:]
        if not conn.reply:
            conn.reply = None
            self._done(conn)
            self._advance(conn)
            if conn.fd in self.conns and conn.reply is None:
                self._watch(conn, select.EPOLLIN)

    def _done(self, conn: Conn) -> None:
        """The reply is out: wait for the connection's next request, or close it."""
        if not conn.keep or not self.alive:
            if conn.close_after or conn.buf:
                self._linger(conn)
            else:
                self._close(conn)
            return
        conn.close_after = False
        conn.idle = not conn.buf  # else a pipelined request has begun already
        conn.deadline = time.monotonic() + (self.cfg.keepalive if conn.idle else HEADER_TIMEOUT)

    def _linger(self, conn: Conn) -> None:
        """Close as RFC 9112 section 9.6 asks when input was left unread: end our side first
        and drop what the client still sends for a moment, so that the reset a close with
        unread input causes does not destroy the reply before the client has read it."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.buf = bytearray()
        conn.linger = LINGER_BYTES
        conn.deadline = time.monotonic() + LINGER_TIMEOUT
        self._watch(conn, select.EPOLLIN)

    def _release(self, conn: Conn) -> None:
        self.held -= conn.held
        conn.held = 0

    def _close(self, conn: Conn) -> None:
        self._release(conn)
        self.conns.pop(conn.fd, None)
        conn.fd = -1  # no longer in ``conns``, whatever takes its number next
        try:
            conn.sock.close()  # also leaves the poller
        except OSError:
            pass

