"""The WSGI application the API workers serve: one XML-RPC call per POST to ``/RPC2`` or
``/``. Every failure becomes an OpenNebula failure array or an XML-RPC fault, never a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from oneserver import api, db, settings, wakeup, wire
from oneserver.errors import INTERNAL, Fault, OneError

log = logging.getLogger("oneserver.api")

MAX_BODY = 32 * 1024 * 1024  # bytes; oned's MESSAGE_SIZE is larger, but nobody sends that much
NOT_POST = (
    b"<HTML><HEAD><TITLE>Error 405</TITLE></HEAD><BODY><H1>Error 405</H1>"
    b"<P>POST is the only HTTP method this server understands</P></BODY></HTML>"
)
HEADERS = [("Content-Type", "text/xml; charset=utf-8")]

StartResponse = Callable[..., Any]


def handle(body: bytes) -> list[bytes]:
    """Answer one XML-RPC request body (the reply as byte chunks)."""
    method = "?"
    try:
        method, params = wire.parse_call(body)
        return wire.success(api.dispatch(method, params))
    except OneError as exc:
        return [wire.failure(f"[{method}] {exc.message}", exc.code, exc.resp_id)]
    except Fault as exc:
        return [wire.fault(exc.code, exc.message)]
    except Exception:  # a bug or a database failure: the transaction was rolled back
        log.exception("internal error in %s", method)
        return [wire.failure(f"[{method}] Internal error, see the server log.", INTERNAL, -1)]


def _read_body(environ: dict[str, Any]) -> bytes | None:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            n = int(length)
        except ValueError:
            return b""
        if n > MAX_BODY:
            return None
        return stream.read(n)
    data = stream.read(MAX_BODY + 1)  # chunked: read at most the limit
    return None if len(data) > MAX_BODY else data


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        start_response("405 Method Not Allowed", [("Content-Type", "text/html"),
                                                  ("Content-Length", str(len(NOT_POST)))])
        return [NOT_POST]
    if environ.get("PATH_INFO", "/") not in ("/RPC2", "/", ""):
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    body = _read_body(environ)
    if body is None:
        out = [wire.fault(wire.FAULT_LIMIT, f"Request too large (limit {MAX_BODY} bytes)")]
    else:
        out = handle(body)
    start_response("200 OK", HEADERS + [("Content-Length", str(sum(map(len, out))))])
    return out


def setup(data_dir: str, db_url: str | None = None, etc_dir: str | None = None) -> None:
    """Prepare a worker process: settings, database connection, method table."""
    conf = settings.configure(data_dir, db_url, etc_dir)
    db.open_database(conf.db_url)
    wakeup.configure(conf.wakeup_socket)
    api.load_all()
