"""xmlrpc-c's system methods as oned 7.4's server answers them: plain values without a session
(system.listMethods is a plain array of names, as oned's recorded reply), faults with xmlrpc-c's
codes and words, and system.multicall running each call it carries with every check that call
gets alone (authentication, authorization, parameter types), bounded and never recursive."""

from __future__ import annotations

import uuid
import xmlrpc.client

import pytest

from oneserver import api
from oneserver.api import introspection
from oneserver.api.methodhelp import ONED
from tests.conftest import Server

AUTHENTICATION, AUTHORIZATION = 0x100, 0x200
SYSTEM = ["system.listMethods", "system.methodExist", "system.methodHelp",
          "system.methodSignature", "system.multicall", "system.shutdown",
          "system.capabilities", "system.getCapabilities"]


def proxy(server: Server) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(server.url)


def fault(server: Server, method: str, *params: object) -> tuple[int, str]:
    with pytest.raises(xmlrpc.client.Fault) as info:
        getattr(proxy(server), method)(*params)
    return info.value.faultCode, info.value.faultString


def raw(server: Server, method: str, *params: object) -> bytes:
    import urllib.request
    body = xmlrpc.client.dumps(params, method).encode()
    with urllib.request.urlopen(urllib.request.Request(server.url, body)) as r:
        return r.read()


def test_list_methods_is_a_plain_array_in_oneds_order(server: Server) -> None:
    names = proxy(server).system.listMethods()
    assert names[:8] == SYSTEM
    api.load_all()
    assert set(names[8:]) == set(api.METHODS)
    order = {name: i for i, (name, _, _) in enumerate(ONED)}
    ours = [n for n in names[8:] if n in order]
    assert ours == sorted(ours, key=order.__getitem__)
    assert {"one.zone.info", "one.zonepool.info", "one.vdc.addcluster", "one.vdcpool.info",
            "one.acl.addrule"} <= set(names)
    body = raw(server, "system.listMethods")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n'
                           b"<params>\r\n<param><value><array><data>\r\n<value><string>"
                           b"system.listMethods</string></value>\r\n")
    assert body.endswith(b"</data></array></value></param>\r\n</params>\r\n"
                         b"</methodResponse>\r\n")


def test_help_signature_and_existence(server: Server) -> None:
    p = proxy(server)
    assert p.system.methodHelp("one.zone.info") == "Returns zone information"
    assert p.system.methodHelp("system.listMethods") == (
        "Return an array of all available XML-RPC methods on this server.")
    assert p.system.methodSignature("one.vm.info") == [["array", "string", "int", "boolean"]]
    # As oned registered it: "A:sis", though the server reads an int.
    assert p.system.methodSignature("one.zone.resetserver") == [
        ["array", "string", "int", "string"]]
    assert p.system.methodSignature("system.listMethods") == [["array"]]
    assert p.system.methodExist("one.vdc.info") is True
    assert p.system.methodExist("one.nosuch.call") is False
    assert fault(server, "system.methodHelp", "one.nosuch.call") == (
        -506, "Method 'one.nosuch.call' does not exist")
    assert fault(server, "system.methodSignature", "one.nosuch.call") == (
        -506, "Method 'one.nosuch.call' does not exist")
    assert fault(server, "system.methodHelp", 7) == (
        -501, "Value of type INT supplied where type STRING was expected.")
    assert fault(server, "system.methodSignature") == (
        -502, "Invalid parameter list.  Format string requests 1 items from array, but "
              "array has only 0 items.")
    # No session: a client that sends one as to oned's own methods is told so.
    assert fault(server, "system.listMethods", server.session) == (
        -502, "Format string requests exactly 0 items from array, but array has 1 items.  "
              "(A '*' at the end would avoid this failure)")
    caps = p.system.capabilities()
    assert caps["facility"] == "xmlrpc-c" and caps["protocol_version"] == 2
    assert p.system.getCapabilities()["introspect"]["specVersion"] == 1


def test_shutdown_is_refused_and_the_server_goes_on(server: Server) -> None:
    assert fault(server, "system.shutdown", "bye") == (
        0, "This server program is not capable of shutting down")
    assert server.call("one.system.version")[1] == "7.4.0"


def test_multicall_checks_each_call_as_if_alone(server: Server) -> None:
    name = f"mc-{uuid.uuid4().hex[:8]}"
    ok, uid, *_ = server.call("one.user.allocate", name, "pw", "", [1])
    assert ok
    user = f"{name}:pw"
    results = proxy(server).system.multicall([
        {"methodName": "one.system.version", "params": [server.session]},
        {"methodName": "one.zone.info", "params": ["oneadmin:wrong", 0]},
        {"methodName": "one.vdc.allocate", "params": [user, 'NAME="mc-denied"']},
        {"methodName": "one.zone.info", "params": [user, 0]},
        {"methodName": "one.nosuch.call", "params": [server.session]},
        {"methodName": "one.zone.info", "params": [server.session, "zero"]},
        {"methodName": "system.methodHelp", "params": ["one.vdc.info"]},
    ])
    assert results[0] == [[True, "7.4.0", 0]]
    assert results[1] == [[False, "[one.zone.info] User couldn't be authenticated, aborting "
                                  "call.", AUTHENTICATION, -1, -1]]
    assert results[2] == [[False, f"[one.vdc.allocate] User [{uid}] : Not authorized to "
                                  f"perform CREATE VDC.", AUTHORIZATION, -1, -1]]
    assert results[3][0][0] is True and results[3][0][1].startswith("<ZONE><ID>0</ID>")
    assert results[4] == {"faultCode": -506,
                          "faultString": "Method 'one.nosuch.call' not defined"}
    assert results[5]["faultCode"] == -501
    assert results[6] == ["Returns VDC information"]
    assert "mc-denied" not in server.call("one.vdcpool.info")[1]
    # Python's own multicall client reads these results.
    mc = xmlrpc.client.MultiCall(proxy(server))
    mc.one.system.version(server.session)
    mc.system.methodExist("one.zone.info")
    assert list(mc()) == [[True, "7.4.0", 0], True]


@pytest.mark.parametrize("bad", [
    {"methodName": "system.multicall", "params": [[]]},
    "not a struct",
    {"params": []},
    {"methodName": "one.system.version"},
    {"methodName": "one.system.version", "params": "x"},
])
def test_a_malformed_multicall_runs_nothing(server: Server, bad: object) -> None:
    name = f"mc-{uuid.uuid4().hex[:8]}"
    with pytest.raises(xmlrpc.client.Fault) as info:
        proxy(server).system.multicall([
            {"methodName": "one.vdc.allocate", "params": [server.session, f'NAME="{name}"']},
            bad])
    if isinstance(bad, dict) and bad.get("methodName") == "system.multicall":
        assert (info.value.faultCode, info.value.faultString) == (
            -507, "Recursive system.multicall forbidden")
    assert name not in server.call("one.vdcpool.info")[1]


def test_multicall_is_bounded(server: Server) -> None:
    name = f"mc-{uuid.uuid4().hex[:8]}"
    calls = [{"methodName": "one.vdc.allocate", "params": [server.session, f'NAME="{name}"']}]
    calls += [{"methodName": "one.system.version", "params": [server.session]}
              ] * introspection.MAX_CALLS
    with pytest.raises(xmlrpc.client.Fault) as info:
        proxy(server).system.multicall(calls)
    assert info.value.faultCode == -509
    assert name not in server.call("one.vdcpool.info")[1]
    results = proxy(server).system.multicall(calls[1:])
    assert len(results) == introspection.MAX_CALLS
    assert fault(server, "system.multicall") == (
        -503, "system.multicall takes one parameter, which is an array, each element "
              "describing one RPC.  You supplied 0 arguments")


def test_every_listed_method_is_described(server: Server) -> None:
    from oneserver.api import authz
    p = proxy(server)
    names = p.system.listMethods()
    assert set(api.SYSTEM) == set(SYSTEM) and set(SYSTEM) <= set(authz.TABLE)
    calls = [{"methodName": m, "params": [name]} for name in names
             for m in ("system.methodHelp", "system.methodSignature")]
    for i in range(0, len(calls), introspection.MAX_CALLS):
        for result in p.system.multicall(calls[i:i + introspection.MAX_CALLS]):
            assert isinstance(result, list) and len(result) == 1, result
            assert isinstance(result[0], str | list) and result[0], result
