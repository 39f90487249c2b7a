"""XML-RPC on the wire: reading a methodCall and writing replies byte-compatible with oned's
xmlrpc-c server (CRLF line ends, ``i8`` for the replication index)."""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any, cast

from oneserver import xmltext
from oneserver.errors import Fault
from oneserver.numeric import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n'
_OPEN = "<param><value><array><data>\r\n"
_CLOSE = "</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n"

# Optional BOM, XML declaration, comments and processing instructions, then <methodCall>.
_ROOT = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--.*?-->\s*)*<methodCall[\s>]", re.DOTALL)

# xmlrpc-c's fault codes.
FAULT_INTERNAL = -500
FAULT_PARSE = -503
FAULT_TYPE = -501
FAULT_NO_METHOD = -506

NOT_A_CALL = "Call XML not a proper XML-RPC call.  "  # how xmlrpc-c begins a parse fault
MAX_NESTING = 63  # arrays/structs inside one parameter (xmlrpc-c's nesting limit of 64 values)


class Escaped(str):
    """Text already escaped for an XML-RPC ``<string>``: stored bodies are kept this way so
    that info and pool replies are copied out, not escaped again on every call."""


def escape(text: str) -> str:
    """Text (valid XML characters already: stored bodies, our own values) as the content of
    an XML-RPC ``<string>``."""
    return xmltext.markup(text)


class I8(int):
    """An integer the caller sent as ``<i8>``: oned's integer parameters are ``<i4>``, and
    xmlrpc-c refuses an ``<i8>`` where one is expected, whatever its value."""

    __slots__ = ()


# Element decoders with xmlrpc-c's rules for values, in place of Python's: integers as
# strtol() reads them and within their type's range, <i8> kept apart from <i4>, no Apache
# extension types, nesting limited.
Unmarshaller = xmlrpc.client.Unmarshaller
TOO_DEEP = "Nested data structure too deep."


def _end_int(u: Unmarshaller, data: str) -> None:
    # The common case at C speed: ASCII digits (a minus before them) too few to be out of
    # range; anything else goes through the checks that word xmlrpc-c's refusal.
    if len(data) < 10 and data.isascii() and (data.isdigit() or (
            data[:1] == "-" and data[1:].isdigit())):
        u.append(int(data))
    else:
        u.append(_integer(data, "int", INT32_MIN, INT32_MAX))
    u._value = False


def _end_i8(u: Unmarshaller, data: str) -> None:
    u.append(I8(_integer(data, "i8", INT64_MIN, INT64_MAX)))
    u._value = False


def _end_boolean(u: Unmarshaller, data: str) -> None:
    if data not in ("0", "1"):
        raise ValueError("<boolean> XML element content must be either '0' or '1' according "
                         f"to XML-RPC.  This one has '{data}'")
    u.append(data == "1")
    u._value = False


# The innermost array or struct ends while every enclosing one is still open: its end is
# where the depth is known.
def _end_array(u: Unmarshaller, data: str) -> None:
    if len(u._marks) > MAX_NESTING:
        raise ValueError(TOO_DEEP)
    Unmarshaller.end_array(u, data)


def _end_struct(u: Unmarshaller, data: str) -> None:
    if len(u._marks) > MAX_NESTING:
        raise ValueError(TOO_DEEP)
    Unmarshaller.end_struct(u, data)


_APACHE = ("biginteger", "float", "bigdecimal")  # extension types unknown to xmlrpc-c


class _Decoder(Unmarshaller):
    dispatch = {tag: f for tag, f in Unmarshaller.dispatch.items() if tag not in _APACHE} | {
        "i1": _end_int, "i2": _end_int, "i4": _end_int, "int": _end_int, "i8": _end_i8,
        "boolean": _end_boolean, "array": _end_array, "struct": _end_struct}


_DIGITS = re.compile(r"[+-]?[0-9]+")


def _integer(data: str, tag: str, low: int, high: int) -> int:
    """The value of an ``<int>``/``<i8>`` element, refused as xmlrpc-c refuses it."""
    if not data:
        raise ValueError(f"<{tag}> XML element content is empty")
    if data[0].isspace():
        raise ValueError(f"<{tag}> content '{data}' starts with white space")
    digits = _DIGITS.match(data)
    if digits is None:
        raise ValueError(f"<{tag}> value '{data}' contains non-numerical junk: '{data}'")
    # strtol() reads a C long (64 bits): beyond it is ERANGE, below it the element's range.
    significant = digits.group().lstrip("+-").lstrip("0")
    value = int(digits.group()) if len(significant) <= 20 else INT64_MAX + 1
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"<{tag}> XML element value '{data}' represents a number beyond the "
                         f"range that XML-RPC allows ({low} - {high})")
    if value < low:
        raise ValueError(f"<{tag}> value {value} is below the range allowed by XML-RPC "
                         f"(minimum is {low})")
    if value > high:
        raise ValueError(f"<{tag}> value {value} is above the range allowed by XML-RPC "
                         f"(maximum is {high})")
    if digits.end() != len(data):
        raise ValueError(f"<{tag}> value '{data}' contains non-numerical junk: "
                         f"'{data[digits.end():]}'")
    return value


def parse_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """Decode a methodCall. DTDs and entities are refused before parsing, so nothing can
    expand or reach the network; anything malformed becomes a :class:`Fault`. Each value
    keeps its XML-RPC type: ``<i8>`` integers are :class:`I8`, ``<i4>`` ones plain ints."""
    upper = body.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise Fault(FAULT_PARSE, "XML-RPC request must not contain a DTD or entities")
    if not _ROOT.match(body):
        raise Fault(FAULT_PARSE, NOT_A_CALL + "The document is not a <methodCall>")
    decoder = _Decoder()
    parser = xmlrpc.client.ExpatParser(decoder)
    try:
        parser.feed(body)
        parser.close()
        params, method = decoder.close(), decoder.getmethodname()
    except Exception as exc:  # expat errors, bad values, bad base64…
        raise Fault(FAULT_PARSE, NOT_A_CALL + (str(exc) or type(exc).__name__)) from None
    if not method:
        raise Fault(FAULT_PARSE, NOT_A_CALL + "No methodName")
    return method, params


def success(value: int | str | bool) -> list[bytes]:
    """The reply as byte chunks: a large document is encoded once and never copied into a
    bigger string (WSGI writes the chunks one after another)."""
    if type(value) is bool:
        item = f"<value><boolean>{int(value)}</boolean></value>"
    elif type(value) is int:
        item = f"<value><i4>{value}</i4></value>"
    else:
        text = value if type(value) is Escaped else escape(cast(str, value))
        return [_SUCCESS_STRING, text.encode(), _SUCCESS_STRING_END]
    return [(_SUCCESS + item + _SUCCESS_END).encode()]


_SUCCESS = _HEAD + _OPEN + "<value><boolean>1</boolean></value>\r\n"
_SUCCESS_END = "\r\n<value><i4>0</i4></value>\r\n" + _CLOSE
_SUCCESS_STRING = (_SUCCESS + "<value><string>").encode()
_SUCCESS_STRING_END = ("</string></value>" + _SUCCESS_END).encode()


def failure(message: str, code: int, resp_id: int) -> bytes:
    return (
        _HEAD + _OPEN + "<value><boolean>0</boolean></value>\r\n"
        f"<value><string>{xmltext.text(message)}</string></value>\r\n"
        f"<value><i4>{code}</i4></value>\r\n"
        f"<value><i4>{resp_id}</i4></value>\r\n"
        "<value><i8>-1</i8></value>\r\n" + _CLOSE
    ).encode()


def fault(code: int, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<fault>\r\n'
        "<value><struct>\r\n"
        f"<member><name>faultCode</name>\r\n<value><i4>{code}</i4></value></member>\r\n"
        f"<member><name>faultString</name>\r\n<value><string>{xmltext.text(message)}</string></value>"
        "</member>\r\n</struct></value>\r\n</fault>\r\n</methodResponse>\r\n"
    ).encode()


def error_page(status: int, explanation: str) -> bytes:
    """The HTML body xmlrpc-c's HTTP server (oned's) sends with an HTTP error status, e.g.
    500 "XML-RPC request too large (N bytes)" for a call longer than MESSAGE_SIZE."""
    return (f"<HTML><HEAD><TITLE>Error {status}</TITLE></HEAD><BODY><H1>Error {status}</H1>"
            f"<P>{explanation}</P></BODY></HTML>").encode()
