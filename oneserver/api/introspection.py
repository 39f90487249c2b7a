"""The methods xmlrpc-c's registry adds to every server, oned's included: ``system.listMethods``,
``system.methodExist``, ``system.methodHelp``, ``system.methodSignature``, ``system.multicall``,
``system.shutdown``, ``system.capabilities`` and ``system.getCapabilities``. They take no
session and answer plain XML-RPC values (no ``[success, value, code]`` array); their refusals
are faults with xmlrpc-c's codes and words (``src/system_method.c``).

``system.multicall`` runs each call it carries as if it came alone: authenticated by its own
session, authorized, with every check of its method, in its own transaction. A call that fails
gives its failure array, a fault gives a fault struct, and the other calls still run. It carries
at most :data:`MAX_CALLS` calls, and none may be a ``system.multicall``. A multicall refused as
a whole (a call that is not a struct of ``methodName`` and ``params``, a recursive one) runs
none of its calls: xmlrpc-c would have run those before the bad one, and then answered the
same fault.
"""

from __future__ import annotations

import logging
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from oneserver.api import METHODS, SYSTEM, Plain, dispatch
from oneserver.api.methodhelp import ONED
from oneserver.errors import INTERNAL, Fault, OneError
from oneserver.wire import FAULT_TYPE, I8, Escaped, escape

log = logging.getLogger("oneserver.api")

# xmlrpc-c's fault codes beyond wire's.
FAULT_INDEX = -502
FAULT_PARSE = -503
FAULT_NO_SUCH_METHOD = -506
FAULT_REFUSED = -507
FAULT_LIMIT = -509

# A multicall is served by one worker, call after call: this bounds what one request holds it
# for (xmlrpc-c sets no bound).
MAX_CALLS = 256

# xmlrpc-c's system methods: signature and help, in the order its registry adds them.
SYSTEM_HELP: dict[str, tuple[str, str]] = {
    "system.listMethods": (
        "A:", "Return an array of all available XML-RPC methods on this server."),
    "system.methodExist": (
        "s:b", "Tell whether a method by a specified name exists on this server"),
    "system.methodHelp": ("s:s", "Given the name of a method, return a help string."),
    "system.methodSignature": (
        "A:s", "Given the name of a method, return an array of legal signatures. Each "
               "signature is an array of strings.  The first item of each signature is the "
               "return type, and any others items are parameter types."),
    "system.multicall": (
        "A:A", "Process an array of calls, and return an array of results.  Calls should be "
               "structs of the form {'methodName': string, 'params': array}. Each result will "
               "either be a single-item array containg the result value, or a struct of the "
               "form {'faultCode': int, 'faultString': string}.  This is useful when you need "
               "to make lots of small calls without lots of round trips."),
    "system.shutdown": ("i:s", "Shut down the server.  Return code is always zero."),
    "system.capabilities": (
        "S:", "Return the capabilities of XML-RPC server.  This includes the version number "
              "of the XML-RPC For C/C++ software"),
    "system.getCapabilities": (
        "S:", "Return the list of standard capabilities of XML-RPC server.  See "
              "http://tech.groups.yahoo.com/group/xml-rpc/message/2897"),
}
# The xmlrpc-c oned 7.4 is built with on Debian 12 (libxmlrpc-c++8v5 1.33.14).
XMLRPC_C_VERSION = (1, 33, 14)
_ONED_HELP = {name: (sig, text) for name, sig, text in ONED}
_TYPE_NAMES = {"i": "int", "b": "boolean", "d": "double", "s": "string",
               "8": "dateTime.iso8601", "6": "base64", "S": "struct", "A": "array", "n": "nil",
               "I": "i8"}


# --------------------------------------------------------------------------- values

def _xml_type(value: Any) -> tuple[str, int]:
    """xmlrpc-c's name and number of a value's type (xmlrpc_type_name, xmlrpc_type)."""
    if type(value) is bool:
        return "BOOL", 1
    if type(value) is I8:
        return "I8", 10
    if isinstance(value, int):
        return "INT", 0
    if isinstance(value, float):
        return "DOUBLE", 2
    if isinstance(value, xmlrpc.client.DateTime):
        return "DATETIME", 3
    if isinstance(value, str):
        return "STRING", 4
    if isinstance(value, xmlrpc.client.Binary | bytes):
        return "BASE64", 5
    if isinstance(value, list):
        return "ARRAY", 6
    if isinstance(value, dict):
        return "STRUCT", 7
    return "NIL", 9


class _Rendered(str):
    """A ``<value>`` already written (the result of one call of a multicall)."""


def value(v: Any) -> str:
    """``<value>…</value>`` as xmlrpc-c writes it (CRLF after each array item and member)."""
    if type(v) is _Rendered:
        return v
    if type(v) is bool:
        return f"<value><boolean>{int(v)}</boolean></value>"
    if type(v) is I8:
        return f"<value><i8>{int(v)}</i8></value>"
    if isinstance(v, int):
        return f"<value><i4>{v}</i4></value>"
    if isinstance(v, str):
        return f"<value><string>{v if type(v) is Escaped else escape(v)}</string></value>"
    if isinstance(v, list):
        return "<value><array><data>\r\n" + "".join(value(i) + "\r\n" for i in v) + \
            "</data></array></value>"
    members = "".join(f"<member><name>{escape(k)}</name>\r\n{value(i)}</member>\r\n"
                      for k, i in v.items())
    return f"<value><struct>\r\n{members}</struct></value>"


def reply(v: Any) -> Plain:
    return Plain(('<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n'
                  f"<param>{value(v)}</param>\r\n</params>\r\n</methodResponse>\r\n").encode())


# ------------------------------------------------------------------- parameters

def _no_params(params: tuple[Any, ...]) -> None:
    if params:
        raise Fault(FAULT_INDEX, f"Format string requests exactly 0 items from array, but "
                                 f"array has {len(params)} items.  (A '*' at the end would "
                                 f"avoid this failure)")


def _one_string(params: tuple[Any, ...]) -> str:
    """xmlrpc_decompose_value(params, "(s)")."""
    if not params:
        raise Fault(FAULT_INDEX, "Format string requests 1 items from array, but array has "
                                 "only 0 items.")
    if len(params) > 1:
        raise Fault(FAULT_INDEX, f"Format string requests exactly 1 items from array, but "
                                 f"array has {len(params)} items.  (A '*' at the end would "
                                 f"avoid this failure)")
    if not isinstance(params[0], str):
        raise Fault(FAULT_TYPE, f"Value of type {_xml_type(params[0])[0]} supplied where type "
                                f"STRING was expected.")
    return params[0]


def _described(name: str) -> tuple[str, str] | None:
    """(signature, help) of a method this server serves, None for any other."""
    if name in SYSTEM_HELP:
        return SYSTEM_HELP[name]
    if name in METHODS:
        return _ONED_HELP.get(name, ("?", "No help is available for this method."))
    return None


# ---------------------------------------------------------------------- methods

def list_methods(params: tuple[Any, ...]) -> Any:
    _no_params(params)
    served = [name for name, _, _ in ONED if name in METHODS]
    ours = sorted(set(METHODS) - set(_ONED_HELP))
    return [*SYSTEM_HELP, *served, *ours]


def method_exist(params: tuple[Any, ...]) -> Any:
    return _described(_one_string(params)) is not None


def method_help(params: tuple[Any, ...]) -> Any:
    name = _one_string(params)
    described = _described(name)
    if described is None:
        raise Fault(FAULT_NO_SUCH_METHOD, f"Method '{name}' does not exist")
    return described[1]


def method_signature(params: tuple[Any, ...]) -> Any:
    try:
        name = _one_string(params)
    except Fault as exc:
        raise Fault(exc.code, f"Invalid parameter list.  {exc.message}") from None
    described = _described(name)
    if described is None:
        raise Fault(FAULT_NO_SUCH_METHOD, f"Method '{name}' does not exist")
    signatures = [s for s in described[0].split(",") if s and s != "?"]
    if not signatures:
        return "undef"
    return [[_TYPE_NAMES[result], *(_TYPE_NAMES[p] for p in args)]
            for result, _, args in (s.partition(":") for s in signatures)]


def shutdown(params: tuple[Any, ...]) -> Any:
    try:
        _one_string(params)
    except Fault as exc:
        raise Fault(exc.code, f"Invalid parameter list.  {exc.message}") from None
    # oned gives xmlrpc-c no shutdown function.
    raise Fault(0, "This server program is not capable of shutting down")


def _no_params_index(params: tuple[Any, ...]) -> None:
    if params:
        raise Fault(FAULT_INDEX, f"There are no parameters.  You supplied {len(params)}")


def capabilities(params: tuple[Any, ...]) -> Any:
    _no_params_index(params)
    major, minor, point = XMLRPC_C_VERSION
    return {"facility": "xmlrpc-c", "version_major": major, "version_minor": minor,
            "version_point": point, "protocol_version": 2}


def get_capabilities(params: tuple[Any, ...]) -> Any:
    _no_params_index(params)
    return {"introspect": {
        "specUrl": "http://xmlrpc-c.sourceforge.net/xmlrpc-c/introspection.html",
        "specVersion": 1}}


def _call_list(params: tuple[Any, ...]) -> list[Any]:
    if len(params) != 1:
        raise Fault(FAULT_PARSE, f"system.multicall takes one parameter, which is an array, "
                                 f"each element describing one RPC.  You supplied "
                                 f"{len(params)} arguments")
    if not isinstance(params[0], list):
        raise Fault(FAULT_TYPE, f"system.multicall's parameter should be an array, each "
                                f"element describing one RPC.  But it is type "
                                f"{_xml_type(params[0])[1]} instead.")
    calls = params[0]
    if len(calls) > MAX_CALLS:
        raise Fault(FAULT_LIMIT, f"system.multicall carries {len(calls)} calls; this server "
                                 f"runs at most {MAX_CALLS} in one request")
    return calls


def _method_and_params(call: Any) -> tuple[str, list[Any]]:
    """xmlrpc_decompose_value(call, "{s:s,s:A,*}"): a failure ends the whole multicall."""
    if not isinstance(call, dict):
        raise Fault(FAULT_TYPE, f"An element of the multicall array is type "
                                f"{_xml_type(call)[1]}, but should be a struct (with members "
                                f"'methodName' and 'params')")
    for key in ("methodName", "params"):
        if key not in call:
            raise Fault(FAULT_INDEX, f"No member of struct has key '{key}'")
        if key == "methodName" and not isinstance(call[key], str):
            raise Fault(FAULT_TYPE, f"Value of type {_xml_type(call[key])[0]} supplied where "
                                    f"type STRING was expected.")
    if not isinstance(call["params"], list):
        raise Fault(FAULT_TYPE, f"Value to be decomposed is of type "
                                f"{_xml_type(call['params'])[0]}, but the 'A' specifier "
                                f"requires type ARRAY")
    if call["methodName"] == "system.multicall":
        raise Fault(FAULT_REFUSED, "Recursive system.multicall forbidden")
    return call["methodName"], call["params"]


def _outcome(name: str, params: list[Any]) -> _Rendered:
    """One call's result as the value xmlrpc-c puts in the multicall's array: a one-item
    array holding what the call alone would answer, or a fault struct."""
    try:
        system = HANDLERS.get(name)
        if system is not None:  # no session, no status array: its value itself
            return _Rendered(value([system(tuple(params))]))
        result = dispatch(name, tuple(params))
    except OneError as exc:
        return _Rendered(value([[False, f"[{name}] {exc.message}", exc.code, exc.resp_id,
                                 I8(-1)]]))
    except Fault as exc:
        return _Rendered(value({"faultCode": exc.code, "faultString": exc.message}))
    except Exception:  # as wsgi.handle: a bug or a database failure, rolled back
        log.exception("internal error in %s (system.multicall)", name)
        return _Rendered(value([[False, f"[{name}] Internal error, see the server log.",
                                 INTERNAL, -1, I8(-1)]]))
    return _Rendered(value([[True, result, 0]]))


def multicall(params: tuple[Any, ...]) -> Any:
    calls = [_method_and_params(call) for call in _call_list(params)]
    return [_outcome(name, call_params) for name, call_params in calls]


# Each takes the call's parameters and gives the plain value it answers.
HANDLERS: dict[str, Callable[[tuple[Any, ...]], Any]] = {
    "system.listMethods": list_methods, "system.methodExist": method_exist,
    "system.methodHelp": method_help, "system.methodSignature": method_signature,
    "system.multicall": multicall, "system.shutdown": shutdown,
    "system.capabilities": capabilities, "system.getCapabilities": get_capabilities,
}


def _served(handler: Callable[[tuple[Any, ...]], Any]) -> Callable[[tuple[Any, ...]], Plain]:
    return lambda params: reply(handler(params))


SYSTEM.update({name: _served(handler) for name, handler in HANDLERS.items()})
