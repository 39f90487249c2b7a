"""A bounded, deterministic fuzzing run against a real server: malformed XML-RPC bodies, every
wrong wire type in every parameter of every registered method, templates drawn by hypothesis
(sent to the methods that take one, so the scheduler and the monitor read them too), and huge
or deeply nested inputs. Whatever comes in:

* every reply is HTTP 200 and a well-formed methodResponse (a fault, or oned's result array);
* no reply is "Internal error" and the server log (``tmp/server.log``) has no traceback;
* normal calls made from another thread all along are answered;
* afterwards the scheduler still places a plain VM.

A private server per backend with two dummy hosts; hypothesis is derandomized and bounded,
so a run is the same every time and takes a minute or two."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
import uuid
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneserver import api
from oneserver.template import Template
from tests.conftest import PASSWORD, Server, backends, start_server, stop_server, wait_for

ADMIN = f"oneadmin:{PASSWORD}"
USER, USER_PW = "fuzzer", "fuzzpw"
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------- the server

@dataclass
class Heartbeat:
    """Plain calls in a loop from another thread, each on a fresh connection."""

    server: Server
    vm: int
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        proxy = xmlrpc.client.ServerProxy(self.server.url)
        while not self.stop.wait(0.02):
            try:
                version = proxy.one.system.version(ADMIN)
                info = proxy.one.vm.info(ADMIN, self.vm)
                pool = proxy.one.vmpool.info(ADMIN, -2, self.vm, self.vm, -1)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                self.failures.append(repr(exc))
                continue
            if version[:2] != [True, "7.4.0"] or info[0] is not True or pool[0] is not True:
                self.failures.append(repr((version, info[:2], pool[:2])))
            self.answered += 1


@dataclass
class World:
    server: Server
    heartbeat: Heartbeat
    vm: int
    hosts: list[int]


@pytest.fixture(scope="module", params=backends())
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    srv = start_server(tmp_path_factory.mktemp(f"fuzz-{request.param}"), request.param)
    thread = None
    try:
        one = srv.pyone()
        hosts = [one.host.allocate(f"fuzz-host-{i}", "dummy", "dummy", -1) for i in range(2)]
        wait_for("hosts MONITORED", lambda: all(one.host.info(h).STATE == 2 for h in hosts))
        vm = one.vm.allocate('NAME="heartbeat"\nCPU=0.1\nMEMORY=16', True)
        one.user.allocate(USER, USER_PW, "", [])
        beat = Heartbeat(srv, vm)
        thread = threading.Thread(target=beat.run, daemon=True)
        thread.start()
        yield World(srv, beat, vm, hosts)
    finally:
        if thread is not None:
            beat.stop.set()
            thread.join(60)
        stop_server(srv)


def post(server: Server, body: bytes) -> bytes:
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    try:
        conn.request("POST", url.path, body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, (resp.status, data[:300])
        return data
    finally:
        conn.close()


def reply(server: Server, body: bytes) -> list | xmlrpc.client.Fault:
    """The reply, checked: a well-formed methodResponse that is no internal error."""
    data = post(server, body)
    try:
        (value,), _ = xmlrpc.client.loads(data)
    except xmlrpc.client.Fault as fault:
        assert type(fault.faultCode) is int and type(fault.faultString) is str, data[:300]
        assert "Internal error" not in fault.faultString, fault
        return fault
    assert isinstance(value, list) and value and type(value[0]) is bool, data[:300]
    if value[0]:
        assert len(value) == 3 and value[2] == 0 and type(value[1]) in (int, str), value
    else:
        assert len(value) == 5 and type(value[1]) is str and value[1].startswith("["), value
        assert all(type(v) is int for v in value[2:]) and value[2] > 0, value
        assert "Internal error" not in value[1], value
    return value


def call_xml(method: str, *values: str) -> bytes:
    """A methodCall of already-encoded <value> contents."""
    return (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
            + "".join(f"<param><value>{v}</value></param>" for v in values)
            + "</params></methodCall>").encode()


def call(method: str, *params: object) -> bytes:
    return xmlrpc.client.dumps(params, method, allow_none=True).encode()


def string(text: str) -> str:
    return f"<string>{xmlrpc.client.escape(text)}</string>"


# ----------------------------------------------------------------------------- wire types

# One value of every XML-RPC type, and the signature letter it satisfies (None: no letter).
WIRE: dict[str, tuple[str, str | None]] = {
    "i4": ("<i4>0</i4>", "i"), "int": ("<int>-1</int>", "i"), "i8": ("<i8>0</i8>", None),
    "big-i8": ("<i8>9223372036854775807</i8>", None), "string": (string("0"), "s"),
    "untyped": ("0", "s"), "boolean": ("<boolean>0</boolean>", "b"),
    "double": ("<double>0.0</double>", None), "array": ("<array><data/></array>", "A"),
    "struct": ("<struct></struct>", None), "nil": ("<nil/>", None),
    "base64": ("<base64>AAAA</base64>", None),
    "datetime": ("<dateTime.iso8601>20260101T00:00:00</dateTime.iso8601>", None),
}
RIGHT = {"s": string(ADMIN), "i": "<i4>0</i4>", "b": "<boolean>0</boolean>",
         "A": "<array><data/></array>"}


def wrong_type_calls() -> Iterator[tuple[str, int, str, bytes]]:
    api.load_all()
    for name, method in sorted(api.METHODS.items()):
        sig = "s" + method.sig  # the session first
        for pos, letter in enumerate(sig):
            for wire, (value, fits) in WIRE.items():
                if fits == letter:
                    continue
                values = [RIGHT[k] for k in sig]
                values[pos] = value
                yield name, pos, wire, call_xml(name, *values)
        required = len(sig) - len(method.defaults)
        yield name, required - 1, "missing", call_xml(name, *[RIGHT[k] for k in sig[:required - 1]])


def test_every_wrong_type_in_every_parameter(world: World) -> None:
    calls = list(wrong_type_calls())
    assert len(calls) > 2500  # every method, every parameter, every other type
    for name, pos, wire, body in calls:
        answer = reply(world.server, body)
        assert isinstance(answer, xmlrpc.client.Fault) and answer.faultCode == -501, (
            name, pos, wire, answer)


EDGE = {
    "i": [-(2**31), -2, -1, 0, 1, 2**31 - 1],
    "s": ["", "0", "-1", "nan", "1e400", "\u0663", "0x7fffffffffffffff", "a" * 5000,
          "../../../etc/passwd", 'A="1"\nB=[C="2"]', "<TEMPLATE><A>1</A></TEMPLATE>",
          "99999999999999999999,1,-1", "#0 VM/* USE #0", "\x00\x01"],
    "b": [True, False],
    "A": [[], [0], [-1], [2**31 - 1], [1, 1, 1], ["x"], [[0]], [{}]],
}
READ_ONLY = (".info", "pool.", ".monitoring", "system.", "zone.")


def edge_calls() -> Iterator[tuple[str, str, tuple[object, ...]]]:
    """Each method with right-typed edge values, position by position (so every edge value
    of every parameter is sent): as an unprivileged user, and as oneadmin where the method
    only reads."""
    api.load_all()
    for name, method in sorted(api.METHODS.items()):
        rounds = max([len(EDGE[k]) for k in method.sig] or [1])
        sessions = [f"{USER}:{USER_PW}"] + ([ADMIN] if any(r in name for r in READ_ONLY)
                                            else [])
        for session in sessions:
            for i in range(rounds):
                yield name, session, tuple(EDGE[k][i % len(EDGE[k])] for k in method.sig)


def test_edge_values_in_every_parameter(world: World) -> None:
    for name, session, params in edge_calls():
        if "\x00" in repr(params):
            body = call_xml(name, string(session), *[string(p) if isinstance(p, str) else
                                                     RIGHT["i"] for p in params])
        else:
            body = call(name, session, *params)
        reply(world.server, body)


# ----------------------------------------------------------------------------- bodies

MALFORMED = [
    b"", b" ", b"<", b"<?xml version='1.0'?>", b"<methodCall>", b"</methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param></param></params>"
    b"</methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><i4>1</i4>"
    b"<i4>2</i4></value></param></params></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><value><i4>1</i4></value>"
    b"</params></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><struct>"
    b"<member><value><i4>1</i4></value></member></struct></value></param></params>"
    b"</methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><array><i4>1</i4>"
    b"</array></value></param></params></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><unknown>1"
    b"</unknown></value></param></params></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><i4>1</i4>"
    b"</value></param></params></methodCall><methodCall/>",
    b"<methodCall><methodName><i4>1</i4></methodName></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><base64>!!!"
    b"</base64></value></param></params></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><fault><value><struct></struct>"
    b"</value></fault></methodCall>",
    b"\xef\xbb\xbf<methodCall><methodName>one.system.version</methodName></methodCall>",
    b"<?xml version='1.0' encoding='latin-1'?><methodCall><methodName>one.vm.info\xe9"
    b"</methodName></methodCall>",
    b"<methodCall><methodName>one.vm.info\xff\xfe</methodName></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><string>"
    b"<![CDATA[oneadmin:testpass]]></string></value></param><param><value><i4>0</i4>"
    b"</value></param></params></methodCall>",
    b"<methodCall><methodName>one.vm.info</methodName><params><param><value><string>"
    b"&#0;</string></value></param></params></methodCall>",
    b"<x:methodCall xmlns:x='u'><x:methodName>one.vm.info</x:methodName></x:methodCall>",
    b"<methodCall a='" + b"x" * 100_000 + b"'><methodName>m</methodName></methodCall>",
    b"<methodCall><methodName>" + b"m" * 2_000_000 + b"</methodName></methodCall>",
    b"<methodCall>" + b"<!-- c -->" * 10_000 + b"<methodName>one.system.version"
    b"</methodName></methodCall>",
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies(world: World, body: bytes) -> None:
    reply(world.server, body)


TAGS = ["value", "i4", "int", "i8", "string", "boolean", "double", "array", "data", "struct",
        "member", "name", "nil", "base64", "dateTime.iso8601", "param", "params", "methodName"]
TEXTS = st.sampled_from(["", "0", "1", "-1", "x", "2147483648", "9" * 30, " 1", "1 ", "AAAA",
                         "nan", "oneadmin:testpass", "one.vm.info", "&amp;", "&lt;"])
ELEMENTS = st.recursive(
    TEXTS,
    lambda inner: st.builds(lambda tag, kids: f"<{tag}>{''.join(kids)}</{tag}>",
                            st.sampled_from(TAGS), st.lists(inner, max_size=3)),
    max_leaves=12,
)


@FUZZ
@given(method=st.sampled_from(["one.vm.info", "one.user.allocate", "one.vmpool.infoset",
                               "one.vm.allocate", "one.acl.addrule", "nope"]),
       params=st.lists(ELEMENTS, max_size=5))
def test_structured_garbage(world: World, method: str, params: list[str]) -> None:
    body = (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
            + "".join(params) + "</params></methodCall>").encode()
    reply(world.server, body)


@FUZZ
@given(data=st.data())
def test_garbled_calls(world: World, data: st.DataObject) -> None:
    body = bytearray(call("one.vm.allocate", ADMIN, "CPU=0.1\nMEMORY=8", True))
    for _ in range(data.draw(st.integers(1, 10))):
        if not body:
            break
        pos = data.draw(st.integers(0, len(body) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        if op == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del body[pos:pos + data.draw(st.integers(1, 30))]
        elif op == "dup":
            body[pos:pos] = body[pos:pos + data.draw(st.integers(1, 30))]
        else:
            body[pos:pos] = data.draw(st.sampled_from(
                [b"<i8>1</i8>", b"<value>", b"</data>", b"<![CDATA[", b"&#x0;", b"\xff"]))
    reply(world.server, bytes(body))


# ----------------------------------------------------------------------------- templates

NUMBERS = st.sampled_from([
    "0", "1", "0.5", "-1", "64", "nan", "NaN", "inf", "-inf", "infinity", "1e39", "1e400",
    "3.4e38", "1e-50", "0x10", "1_000", "\u0663", "99999999999999999999", "", " 1", "1 ",
    "2147483648", "-2147483649", "9223372036854775808", "1.5", "+2", ".5", "5.", "1e",
])
WORDS = st.text(st.sampled_from(list("AZaz09_-./*?[]!&|=<>@\"' ()#%,$\\\n")), max_size=20)
EXPR_ATOMS = st.sampled_from(["ID", "FREE_CPU", "RUNNING_VMS", "CURRENT_VMS", "NAME",
                              "HOSTNAME", "MAX_MEM", "X", "CLUSTER_ID", "PCI/VENDOR"])
COMPARISONS = st.builds(lambda v, op, lit: f"{v} {op} {lit}", EXPR_ATOMS,
                        st.sampled_from(["=", "!=", ">", "<", "@>"]),
                        NUMBERS | st.sampled_from(['"fuzz-*"', "dummy", '"x"']))
REQUIREMENTS = st.recursive(
    COMPARISONS,
    lambda inner: st.builds(lambda a, op, b: f"{a} {op} {b}", inner,
                            st.sampled_from(["&", "|"]), inner)
    | st.builds(lambda a: f"!({a})", inner) | st.builds(lambda a: f"({a})", inner),
    max_leaves=8,
) | WORDS | st.builds(lambda n: "(" * n + "ID > -1" + ")" * n, st.integers(90, 2000))
RANKS = st.recursive(
    EXPR_ATOMS | NUMBERS,
    lambda inner: st.builds(lambda a, op, b: f"{a} {op} {b}", inner,
                            st.sampled_from(["+", "-", "*", "/"]), inner)
    | st.builds(lambda a: f"-({a})", inner),
    max_leaves=8,
) | WORDS
DISKS = st.dictionaries(
    st.sampled_from(["IMAGE_ID", "IMAGE", "IMAGE_UID", "IMAGE_UNAME", "SIZE", "SOURCE",
                     "TYPE", "TARGET", "DISK_ID", "PERSISTENT"]),
    NUMBERS | WORDS, max_size=4)
ATTRIBUTES = st.one_of(
    st.tuples(st.sampled_from(["CPU", "MEMORY", "VCPU", "USER_PRIORITY", "MEMORY_MAX",
                               "VCPU_MAX", "RESERVED_CPU", "RESERVED_MEM", "SIZE", "TYPE",
                               "PERSISTENT"]), NUMBERS),
    st.tuples(st.just("SCHED_REQUIREMENTS"), REQUIREMENTS),
    st.tuples(st.just("SCHED_RANK"), RANKS),
    st.tuples(st.just("DISK"), DISKS),
    st.tuples(st.sampled_from(["NAME", "PATH", "SAFE_DIRS", "RESTRICTED_DIRS", "INIT",
                               "NIC", "CONTEXT", "DEPLOY_ID", "SUBMIT_ON_HOLD", "OS"]), WORDS),
)
# Mostly with a CPU and MEMORY oned takes, so that most VMs get past allocation and the
# scheduler reads their other attributes.
SIZED = st.sampled_from([[("CPU", "0.01"), ("MEMORY", "1")], [("CPU", "1"), ("MEMORY", "64")],
                         [("CPU", "1000"), ("MEMORY", "1")], []])
TEMPLATES = st.builds(lambda base, extra: base + extra, SIZED, st.lists(ATTRIBUTES, max_size=6))
TEMPLATE_CALLS = ["one.vm.allocate"] * 4 + ["one.vm.allocate-hold", "one.template.allocate",
                  "one.vm.update", "one.vm.updateconf", "one.vm.resize", "one.host.update",
                  "one.cluster.update", "one.image.allocate", "one.user.update",
                  "one.datastore.allocate"]


def _text(attrs: list[tuple[str, object]], xml: bool) -> str:
    tmpl = Template([(n, v) for n, v in attrs if not isinstance(v, dict) or v])
    return tmpl.to_xml() if xml else tmpl.to_text()


@settings(FUZZ, max_examples=300)
@given(attrs=TEMPLATES, where=st.sampled_from(TEMPLATE_CALLS), xml=st.booleans(),
       as_user=st.booleans())
def test_generated_templates(world: World, attrs: list[tuple[str, object]], where: str,
                             xml: bool, as_user: bool) -> None:
    text = _text(attrs, xml)
    session = f"{USER}:{USER_PW}" if as_user else ADMIN
    vm, host = world.vm, world.hosts[0]
    params: dict[str, tuple[object, ...]] = {
        "one.vm.allocate": (text, False), "one.vm.allocate-hold": (text, True),
        "one.template.allocate": (text,), "one.vm.update": (vm, text, 1),
        "one.vm.updateconf": (vm, text, 1), "one.vm.resize": (vm, text, False),
        "one.host.update": (host, text, 1), "one.cluster.update": (0, text, 1),
        "one.image.allocate": (text, 1), "one.user.update": (0, text, 1),
        "one.datastore.allocate": (text, -1),
    }
    answer = reply(world.server, call(where.removesuffix("-hold"), session, *params[where]))
    if where == "one.template.allocate" and answer[0] is True:
        reply(world.server, call("one.template.instantiate", session, answer[1], "", False,
                                 "", False))


# ----------------------------------------------------------------------------- sizes

def nested(open_: str, close: str, inner: str, depth: int) -> str:
    return open_ * depth + inner + close * depth


BIG_ARRAY = "<array><data>" + "<value><i4>1</i4></value>" * 100_000 + "</data></array>"
SIZES: dict[str, bytes] = {
    "array nested 10k": call_xml("one.user.allocate", string(ADMIN), string("n1"), string("p"),
                                 string(""), nested("<array><data><value>",
                                                    "</value></data></array>", "", 10_000)),
    "array nested 60": call_xml("one.user.allocate", string(ADMIN), string("n2"), string("p"),
                                string(""), nested("<array><data><value>",
                                                   "</value></data></array>", "", 60)),
    "struct nested 10k": call_xml("one.vm.info", string(ADMIN), nested(
        "<struct><member><name>a</name><value>", "</value></member></struct>", "", 10_000)),
    "100k groups": call_xml("one.user.allocate", string(ADMIN), string("many-groups"),
                            string("p"), string(""), BIG_ARRAY),
    "100k distinct groups": call_xml(
        "one.user.allocate", string(ADMIN), string("many-distinct"), string("p"), string(""),
        "<array><data>" + "".join(f"<value><i4>{i}</i4></value>" for i in range(100_000))
        + "</data></array>"),
    "100k array for an id": call_xml("one.vm.info", string(ADMIN), BIG_ARRAY),
    "100k params": call_xml("one.vm.info", string(ADMIN), *["<i4>0</i4>"] * 100_000),
    "8 MB template": call("one.vm.allocate", ADMIN, "A=\"" + "x" * 8_000_000 + "\"", True),
    "8 MB session": call("one.vm.info", "a" * 8_000_000 + ":x", 0),
    "8 MB id list": call("one.vmpool.infoset", ADMIN, ",".join(["7"] * 4_000_000), False),
    "8 MB acl": call("one.acl.addrule", ADMIN, "1" * 8_000_000, "f" * 8_000_000, "1", ""),
    "8 MB name": call("one.vm.rename", ADMIN, 0, "n" * 8_000_000),
    "8 MB path": call("one.image.allocate", ADMIN, 'NAME="big"\nPATH="/var/tmp/'
                      + "p/" * 1_000_000 + '"', 1),
    "deep XML template": call("one.vm.allocate", ADMIN, nested("<A>", "</A>", "1", 100_000),
                              True),
    "deep text template": call("one.vm.allocate", ADMIN, nested("A=[B=", "]", "1", 100_000),
                               True),
    "multicall of wrong types": call_xml("system.multicall", "<array><data>" + "".join(
        "<value><struct><member><name>methodName</name><value>one.vm.info</value></member>"
        f"<member><name>params</name><value><array><data><value>{string(ADMIN)}</value>"
        f"<value>{wire}</value></data></array></value></member></struct></value>"
        for wire, _ in WIRE.values()) * 20 + "</data></array>"),
    "multicall of 20k calls": call("system.multicall", [
        {"methodName": "one.system.version", "params": [ADMIN]}] * 20_000),
    "multicall in multicall": call("system.multicall", [
        {"methodName": "system.multicall", "params": [[
            {"methodName": "one.vm.info", "params": [ADMIN, 0]}]]}, {"nope": 1}, [], 7]),
    "1 MB requirement chain": call(
        "one.vm.allocate", ADMIN, 'CPU=0.01\nMEMORY=1\nSCHED_REQUIREMENTS="'
        + " & ".join(f"ID != {i + 10**6}" for i in range(60_000)) + '"', False),
    "100k-level requirement": call(
        "one.vm.allocate", ADMIN, 'CPU=0.01\nMEMORY=1\nSCHED_REQUIREMENTS="'
        + nested("(", ")", "ID > -1", 100_000) + '"', False),
}


@pytest.mark.parametrize("name", list(SIZES))
def test_huge_and_deep_inputs(world: World, name: str) -> None:
    reply(world.server, SIZES[name])


# ----------------------------------------------------------------------------- afterwards

def test_the_scheduler_still_places_a_vm(world: World) -> None:
    """After everything above (fuzzed VMs pending or running on the hosts): a plain VM that
    comes first in the pass is placed on a new host."""
    one = world.server.pyone()
    one.zone.enable(0, True)  # the edge values disabled zone 0, which then refuses changes
    name = f"fuzz-final-{uuid.uuid4().hex[:8]}"
    vid = one.vm.allocate(f'NAME="final"\nCPU=0.01\nMEMORY=1\nUSER_PRIORITY=2147483647\n'
                          f'SCHED_REQUIREMENTS="NAME = \\"{name}\\""')
    one.host.allocate(name, "dummy", "dummy", -1)
    world.server.wait_vm(vid, 3, 3, timeout=60)


def test_normal_calls_were_answered_throughout(world: World) -> None:
    beat = world.heartbeat
    assert beat.failures == []
    assert beat.answered > 0


def test_no_traceback_in_the_server_log(world: World) -> None:
    log = (world.server.data_dir.parent / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000:][:6000]
    assert "Internal error" not in log
