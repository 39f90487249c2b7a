"""Clients that stall never starve the others: with 50 connections stopped inside their headers
or their bodies, or not reading their replies, normal calls are answered, and the server closes
the stalled sockets itself. A call longer than oned.conf's MESSAGE_SIZE gets oned's answer
(HTTP 500 "XML-RPC request too large (N bytes)"), without its body being read."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Server, start_server, stop_server

STALLED = 50
LIMIT = 64 * 1024  # MESSAGE_SIZE of this server
# A client's guard against a hang, not a measurement: a starved call would wait for gunicorn's
# 60 s worker timeout.
GUARD = 30.0
HEADERS_CUT = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n"
BODY_CUT = (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 1000\r\n\r\n<?xml version='1.0'?><methodCall>")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("stalled")
    etc = Path(shutil.copytree(ROOT / "etc", tmp / "etc"))
    conf = etc / "oned.conf"
    text, n = re.subn(r"(?m)^MESSAGE_SIZE\s*=.*$", f"MESSAGE_SIZE = {LIMIT}", conf.read_text())
    assert n == 1
    conf.write_text(text)
    server = start_server(tmp, "sqlite", ["--etc", str(etc)])
    yield server
    stop_server(server)


def post(server: Server, body: bytes, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def call(server: Server, method: str, *params: object) -> list:
    status, body = post(server, xmlrpc.client.dumps((server.session, *params), method).encode())
    assert status == 200, body
    (reply,), _ = xmlrpc.client.loads(body)
    return reply


def stall(server: Server, first: bytes) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
    sock.sendall(first)
    return sock


def closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the socket; returns what it sent before."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_stalled_connections_do_not_starve_calls(srv: Server) -> None:
    vm = call(srv, "one.vm.allocate", 'NAME="stall"\nCPU=0.1\nMEMORY=32', True)[1]
    socks = [stall(srv, HEADERS_CUT if i % 2 else BODY_CUT) for i in range(STALLED)]
    try:
        for _ in range(20):
            ok, body, *_ = call(srv, "one.vm.info", vm)
            assert ok and "<NAME>stall</NAME>" in body
        assert call(srv, "one.system.version")[1] == "7.4.0"
        for i, sock in enumerate(socks):
            got = closed_by_server(sock)
            if i % 2:
                assert got == b"", got  # headers never ended: just dropped
            else:  # a body that stops coming gets xmlrpc-c's 408 first
                assert got.startswith(b"HTTP/1.1 408 "), got
                assert b"Timed out waiting for client to send its POST data" in got
    finally:
        for sock in socks:
            sock.close()


def test_clients_that_do_not_read_replies_do_not_starve_calls(srv: Server) -> None:
    vm = call(srv, "one.vm.allocate", 'NAME="reader"\nCPU=0.1\nMEMORY=32', True)[1]
    request = xmlrpc.client.dumps((srv.session, vm), "one.vm.info").encode()
    one = (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(request), request))
    socks = []
    for _ in range(10):
        # Each asks for a few MB of replies and reads none: more than the socket buffers
        # hold, so the server has replies it cannot write (sent: what fits, never blocking).
        sock = stall(srv, b"")
        sock.setblocking(False)
        try:
            sock.send(one * 2000)
        except BlockingIOError:
            pass
        sock.settimeout(GUARD)
        socks.append(sock)
    try:
        for _ in range(20):
            assert call(srv, "one.vm.info", vm)[0] is True
        for sock in socks:  # read now, they are answered or dropped, and closed either way
            closed_by_server(sock)
    finally:
        for sock in socks:
            sock.close()


def test_bodies_held_at_once_are_bounded(srv: Server) -> None:
    # A worker holds bodies being received up to twice MESSAGE_SIZE: of five that each
    # announce 60 KB and send none, a worker (there are two) gets at least three, and refuses
    # the third at once instead of holding it.
    head = (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 60000\r\n\r\n")
    socks = [stall(srv, head) for _ in range(5)]
    try:
        assert call(srv, "one.system.version")[1] == "7.4.0"
        answers = [closed_by_server(sock).split(b"\r\n", 1)[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert set(answers) <= {b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 408 Request Timeout"}
    assert b"HTTP/1.1 503 Service Unavailable" in answers, answers


def test_oversized_call_is_answered_as_oned(srv: Server) -> None:
    too_long = b"<?xml version='1.0'?><methodCall>" + b" " * LIMIT + b"</methodCall>"
    status, body = post(srv, too_long)
    assert status == 500
    assert body == (b"<HTML><HEAD><TITLE>Error 500</TITLE></HEAD><BODY><H1>Error 500</H1>"
                    b"<P>XML-RPC request too large (%d bytes)</P></BODY></HTML>" % len(too_long))
    # Refused from its Content-Length alone: nothing of the body needs to arrive.
    sock = stall(srv, b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
    try:
        assert b"XML-RPC request too large (1073741824 bytes)" in closed_by_server(sock)
    finally:
        sock.close()
    # Just under the limit is a call like any other.
    template = "NAME=big\nCPU=0.1\nMEMORY=32\nNOTE=" + "x" * (LIMIT - 2048)
    ok, vm, *_ = call(srv, "one.vm.allocate", template, True)
    assert ok, vm


def test_call_without_content_length_is_refused_as_oned(srv: Server) -> None:
    sock = stall(srv, b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\n")
    try:
        got = closed_by_server(sock)
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 411 "), got
    assert got.endswith(b"<P>You must send a content-length HTTP header in an XML-RPC call.</P>"
                        b"</BODY></HTML>")
