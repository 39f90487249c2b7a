"""The WSGI application the API workers serve: one XML-RPC call per POST to ``/RPC2`` or
``/``. Every failure of a call becomes an OpenNebula failure array or an XML-RPC fault, never
a 500; a request that is not a call (another method, no Content-Length, longer than
MESSAGE_SIZE) gets the HTTP error page oned's xmlrpc-c server sends."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from oneserver import api, db, settings, wakeup, wire
from oneserver.errors import INTERNAL, Fault, OneError

log = logging.getLogger("oneserver.api")

NOT_POST = wire.error_page(405, "POST is the only HTTP method this server understands")
NO_LENGTH = wire.error_page(411, "You must send a content-length HTTP header in an XML-RPC call.")
HEADERS = [("Content-Type", "text/xml; charset=utf-8")]

StartResponse = Callable[..., Any]


def handle(body: bytes) -> list[bytes]:
    """Answer one XML-RPC request body (the reply as byte chunks)."""
    method = "?"
    try:
        method, params = wire.parse_call(body)
        result = api.dispatch(method, params)
        if isinstance(result, api.Plain):  # xmlrpc-c's system.*: a whole reply already
            return [result]
        return wire.success(result)
    except OneError as exc:
        return [wire.failure(f"[{method}] {exc.message}", exc.code, exc.resp_id)]
    except Fault as exc:
        return [wire.fault(exc.code, exc.message)]
    except Exception:  # a bug or a database failure: the transaction was rolled back
        log.exception("internal error in %s", method)
        return [wire.failure(f"[{method}] Internal error, see the server log.", INTERNAL, -1)]


def _page(start_response: StartResponse, status: str, page: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/html"), ("Content-Length", str(len(page)))])
    return [page]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        return _page(start_response, "405 Method Not Allowed", NOT_POST)
    if environ.get("PATH_INFO", "/") not in ("/RPC2", "/", ""):
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    # As xmlrpc-c: the length is checked before a byte of the body is read (the worker has
    # not buffered a body it may not read either), and a call without one is refused.
    length = environ.get("CONTENT_LENGTH", "")
    if not length.isdigit():  # gunicorn already refused a malformed one
        return _page(start_response, "411 Length Required", NO_LENGTH)
    size = int(length)
    if size > settings.current().message_size:
        return _page(start_response, "500 Internal Server Error",
                     wire.error_page(500, f"XML-RPC request too large ({size} bytes)"))
    out = handle(environ["wsgi.input"].read(size))
    start_response("200 OK", HEADERS + [("Content-Length", str(sum(map(len, out))))])
    return out


def setup(data_dir: str, db_url: str | None = None, etc_dir: str | None = None) -> None:
    """Prepare a worker process: settings, database connection, method table."""
    conf = settings.configure(data_dir, db_url, etc_dir)
    db.open_database(conf.db_url)
    wakeup.configure(conf.wakeup_socket)
    api.load_all()
