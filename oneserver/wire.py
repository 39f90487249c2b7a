"""XML-RPC on the wire: reading a methodCall and writing replies byte-compatible with oned's
xmlrpc-c server (CRLF line ends, ``i8`` for the replication index)."""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any

from oneserver.errors import Fault

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n'
_OPEN = "<param><value><array><data>\r\n"
_CLOSE = "</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n"

INT_MAX = 2**31 - 1
INT_MIN = -(2**31)

# Optional BOM, XML declaration, comments and processing instructions, then <methodCall>.
_ROOT = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--.*?-->\s*)*<methodCall[\s>]", re.DOTALL)

# xmlrpc-c's fault codes.
FAULT_PARSE = -503
FAULT_TYPE = -501
FAULT_NO_METHOD = -506
FAULT_LIMIT = -509


class Escaped(str):
    """Text already escaped for an XML-RPC ``<string>``: stored bodies are kept this way so
    that info and pool replies are copied out, not escaped again on every call."""


def escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def parse_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """Decode a methodCall. DTDs and entities are refused before parsing, so nothing can
    expand or reach the network; anything malformed becomes a :class:`Fault`."""
    upper = body.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise Fault(FAULT_PARSE, "XML-RPC request must not contain a DTD or entities")
    if not _ROOT.match(body):
        raise Fault(FAULT_PARSE, "Malformed XML-RPC call: the document is not a <methodCall>")
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as exc:  # expat errors, bad values, bad base64…
        raise Fault(FAULT_PARSE, f"Malformed XML-RPC call: {exc}") from None
    if not method:
        raise Fault(FAULT_PARSE, "Malformed XML-RPC call: no methodName")
    return method, params


def success(value: int | str | bool) -> list[bytes]:
    """The reply as byte chunks: a large document is encoded once and never copied into a
    bigger string (WSGI writes the chunks one after another)."""
    if type(value) is bool:
        item = f"<value><boolean>{int(value)}</boolean></value>"
    elif type(value) is int:
        item = f"<value><i4>{value}</i4></value>"
    else:
        text = value if type(value) is Escaped else escape(value)
        return [_SUCCESS_STRING, text.encode(), _SUCCESS_STRING_END]
    return [(_SUCCESS + item + _SUCCESS_END).encode()]


_SUCCESS = _HEAD + _OPEN + "<value><boolean>1</boolean></value>\r\n"
_SUCCESS_END = "\r\n<value><i4>0</i4></value>\r\n" + _CLOSE
_SUCCESS_STRING = (_SUCCESS + "<value><string>").encode()
_SUCCESS_STRING_END = ("</string></value>" + _SUCCESS_END).encode()


def failure(message: str, code: int, resp_id: int) -> bytes:
    return (
        _HEAD + _OPEN + "<value><boolean>0</boolean></value>\r\n"
        f"<value><string>{escape(message)}</string></value>\r\n"
        f"<value><i4>{code}</i4></value>\r\n"
        f"<value><i4>{resp_id}</i4></value>\r\n"
        "<value><i8>-1</i8></value>\r\n" + _CLOSE
    ).encode()


def fault(code: int, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<fault>\r\n'
        "<value><struct>\r\n"
        f"<member><name>faultCode</name>\r\n<value><i4>{code}</i4></value></member>\r\n"
        f"<member><name>faultString</name>\r\n<value><string>{escape(message)}</string></value>"
        "</member>\r\n</struct></value>\r\n</fault>\r\n</methodResponse>\r\n"
    ).encode()
