"""Whatever a caller sends, every stored body and every info and pool reply parses, and a pool
lists exactly the objects there are: random templates in the text and the XML form (random
names and values, hostile ones among them), random object names and driver names, through
allocate, update and rename of VMs, templates, images, hosts, clusters, datastores, users and
groups. A call may fail, but only with oned's answer, never an internal error or a fault."""

from __future__ import annotations

import tarfile
import tempfile
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from conftest import Server, backends, start_server, stop_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree


@dataclass(frozen=True)
class Kind:
    pool: str
    pool_args: tuple[object, ...]
    element: str  # the pool's element for one object
    info: str
    renamable: bool


KINDS: dict[str, Kind] = {
    "vm": Kind("one.vmpool.info", (-2, -1, -1, -1), "VM", "one.vm.info", True),
    "template": Kind("one.templatepool.info", (-2, -1, -1), "VMTEMPLATE", "one.template.info",
                     True),
    "image": Kind("one.imagepool.info", (-2, -1, -1), "IMAGE", "one.image.info", True),
    "host": Kind("one.hostpool.info", (), "HOST", "one.host.info", True),
    "cluster": Kind("one.clusterpool.info", (), "CLUSTER", "one.cluster.info", True),
    "datastore": Kind("one.datastorepool.info", (), "DATASTORE", "one.datastore.info", True),
    "user": Kind("one.userpool.info", (), "USER", "one.user.info", False),
    "group": Kind("one.grouppool.info", (), "GROUP", "one.group.info", False),
}
# The VM pool has a second reply built from other stored bodies (full instead of short).
EXTRA_POOLS = {"vm": [("one.vmpool.infoextended", (-2, -1, -1, -1))]}


@dataclass
class World:
    server: Server
    rootfs: Path
    ids: dict[str, set[int]] = field(default_factory=dict)  # what each pool must list
    created: dict[str, set[int]] = field(default_factory=dict)  # what the test may change

    def call(self, method: str, *params: object) -> list[Any]:
        """A call that may fail, but only as oned fails: no fault, no internal error."""
        try:
            reply = self.server.call(method, *params)
        except xmlrpc.client.Fault as exc:
            raise AssertionError(f"{method}{params!r}: fault {exc}") from None
        assert reply[0] or "Internal error" not in reply[1], (method, params, reply)
        return reply

    def document(self, method: str, *params: object) -> etree._Element:
        reply = self.call(method, *params)
        assert reply[0], (method, params, reply)
        try:
            return etree.fromstring(reply[1].encode())
        except etree.XMLSyntaxError as exc:
            raise AssertionError(f"{method}{params!r} does not parse: {exc}\n{reply[1]}"
                                 ) from None

    def pool_ids(self, kind: str) -> list[int]:
        k = KINDS[kind]
        lists = []
        for method, args in [(k.pool, k.pool_args), *EXTRA_POOLS.get(kind, [])]:
            root = self.document(method, *args)
            lists.append(sorted(int(e.findtext("ID")) for e in root.iter(k.element)
                                if e.getparent() is root))
            assert len(root.findall(f".//{k.element}")) == len(lists[-1]), method  # no nested
        assert all(ids == lists[0] for ids in lists), lists
        return lists[0]

    def check(self, kind: str) -> None:
        """The invariant for one kind: its pool lists exactly the known objects, and the info
        of each of them parses."""
        assert self.pool_ids(kind) == sorted(self.ids[kind])
        for i in sorted(self.ids[kind]):
            assert self.document(KINDS[kind].info, i).findtext("ID") == str(i)


@pytest.fixture(scope="module", params=backends())
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    srv = start_server(tmp_path_factory.mktemp(f"invariant-{request.param}"), request.param)
    # Images register only from /var/tmp (the default datastore's SAFE_DIRS).
    with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="oneserver-invariant-",
                                     suffix=".tar", delete=False) as f:
        rootfs = Path(f.name)
    with tarfile.open(rootfs, "w") as tar:
        tar.add(__file__, arcname="etc/motd")
    w = World(srv, rootfs)
    try:
        for kind in KINDS:
            w.ids[kind] = set(w.pool_ids(kind))
        yield w
    finally:
        rootfs.unlink()
        stop_server(srv)


# --- what callers send -------------------------------------------------------------------------

# Anything XML-RPC can carry (its parser refuses most C0 controls, surrogates, U+FFFE/U+FFFF).
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff",
                      min_codepoint=0x20) | st.sampled_from("\t\n\r")
HOSTILE = st.sampled_from([
    "]]>", "x]]></LABELS></USER_TEMPLATE><HISTORY_RECORDS/></VM><VM><ID>4242</ID></VM><VM>",
    "</TEMPLATE><VM>", "<![CDATA[", "&amp;", "&#1;", "&", "<", ">", '"', "\\", "'", "\r\n",
    "\u2028", "\x85", "\x7f", "\U0001f600", "é", "", " ", "#", "=", "[", "]", ",",
])
VALUES = st.one_of(HOSTILE, st.text(CHARS, max_size=12),
                   st.lists(HOSTILE | st.text(CHARS, max_size=4), max_size=4).map("".join))


def mostly(usual: st.SearchStrategy[str], odd: st.SearchStrategy[str], one_in: int
           ) -> st.SearchStrategy[str]:
    """``odd`` about once in ``one_in`` draws: enough inputs get through to be stored."""
    return st.integers(1, one_in).flatmap(lambda i: odd if i == 1 else usual)


# Names of the text form (oned's lexer takes [A-Za-z0-9_]+), names only the XML form can
# write, and names that neither may hold.
NAMES = mostly(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
    | st.sampled_from(["NAME", "LABELS", "ERROR", "DISK", "NIC", "SCHED_MESSAGE",
                       "SCHED_REQUIREMENTS", "DESCRIPTION", "xml", "XMLa", "_", "_1"]),
    st.sampled_from(["9X", "0", "a-b", "A.B", "é", "ns:x", "x y", ""])
    | st.from_regex(r"[A-Za-z0-9_\u00e9][A-Za-z0-9_.\-\u00e9]{0,5}", fullmatch=True),
    12)
ATTRS = st.lists(st.tuples(NAMES, VALUES | st.lists(st.tuples(NAMES, VALUES), max_size=3)),
                 max_size=4)
# What oned takes as an object name (no &|:\";/'#{}$<> nor controls), hostile to XML all the
# same ("]]" and "=" are allowed), and now and then anything.
OBJECT_NAMES = mostly(
    st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                          blacklist_characters="&|:\\\";/'#{}$<>\ufffe\uffff"),
            min_size=1, max_size=12).filter(lambda n: n.strip() != "")
    | st.sampled_from(["]]", "a]]b", "x=y", "[]", "é ü"]),
    VALUES, 5)


def text_form(attrs: list[tuple[str, Any]]) -> str:
    def quote(value: str) -> str:
        return '"' + value.replace('"', '\\"') + '"'
    lines = []
    for name, value in attrs:
        if isinstance(value, list):
            lines.append(f"{name} = [ " + ", ".join(f"{k} = {quote(v)}" for k, v in value) + " ]")
        else:
            lines.append(f"{name} = {quote(value)}")
    return "\n".join(lines)


def xml_form(attrs: list[tuple[str, Any]]) -> str:
    def element(name: str, value: str) -> str:
        return f"<{name}>{escape(value)}</{name}>"
    parts = ["<TEMPLATE>"]
    for name, value in attrs:
        if isinstance(value, list):
            parts.append(f"<{name}>" + "".join(element(k, v) for k, v in value) + f"</{name}>")
        else:
            parts.append(element(name, value))
    return "".join(parts) + "</TEMPLATE>"


@st.composite
def templates(draw: st.DrawFn, base: list[tuple[str, Any]]) -> str:
    """A template holding ``base`` (what allocate needs) among random attributes, in either
    form; now and then random text instead."""
    attrs = draw(ATTRS)
    at = draw(st.integers(0, len(attrs)))
    attrs[at:at] = base
    form = draw(st.sampled_from(["text", "xml", "text", "xml", "raw"]))
    if form == "raw":
        return draw(st.text(CHARS, max_size=40))
    return text_form(attrs) if form == "text" else xml_form(attrs)


def needs(kind: str, name: str, driver: str, rootfs: Path) -> list[tuple[str, Any]]:
    """What an allocate of ``kind`` must hold to succeed, so that most of them do."""
    out: list[tuple[str, Any]] = [("NAME", name)]
    if kind == "vm":
        out += [("CPU", "0.1"), ("MEMORY", "32")]
    elif kind == "image":
        out.append(("PATH", str(rootfs)))
    elif kind == "datastore":
        out += [("DS_MAD", driver), ("TM_MAD", driver)]
    return out


@dataclass(frozen=True)
class Op:
    """One call. Everything is drawn whatever the server holds (hypothesis needs the same draws
    to replay an example): which object a change is made to is an index into what exists."""
    kind: str
    allocate: bool
    name: str
    driver: str  # also a password, a token, an auth driver
    template: str
    mode: int
    verb: int
    target: int


@st.composite
def operations(draw: st.DrawFn, rootfs: Path) -> Op:
    kind = draw(st.sampled_from(sorted(KINDS)))
    name, driver = draw(OBJECT_NAMES), draw(VALUES)
    return Op(kind, draw(st.booleans()), name, driver,
              draw(templates(needs(kind, name, driver, rootfs))), draw(st.integers(0, 1)),
              draw(st.integers(0, 3)), draw(st.integers(0, 2**16)))


def allocate(w: World, op: Op) -> list[Any]:
    if op.kind in ("vm", "template", "image", "datastore"):
        extra = {"vm": (True,), "template": (), "image": (1,), "datastore": (-1,)}[op.kind]
        return w.call(f"one.{op.kind}.allocate", op.template, *extra)
    if op.kind == "host":
        return w.call("one.host.allocate", op.name, op.driver, op.driver[::-1], -1)
    if op.kind == "user":
        auth = ["", "core", op.driver][op.mode + op.verb % 2]
        return w.call("one.user.allocate", op.name, op.driver, auth, [])
    return w.call(f"one.{op.kind}.allocate", op.name)


def change(w: World, op: Op, oid: int) -> None:
    verbs = ["update"] + (["rename"] if KINDS[op.kind].renamable else [])
    verbs += ["passwd", "login"] if op.kind == "user" else []
    verb = verbs[op.verb % len(verbs)]
    if verb == "update":
        w.call(f"one.{op.kind}.update", oid, op.template, op.mode)
    elif verb == "rename":
        w.call(f"one.{op.kind}.rename", oid, op.name)
    elif verb == "passwd":
        w.call("one.user.passwd", oid, op.driver)
    else:
        user = w.document("one.user.info", oid).findtext("NAME")
        w.call("one.user.login", user, op.driver, 3600, -1)


@settings(max_examples=400, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_document_parses_and_pools_count_right(world: World, data: st.DataObject
                                                     ) -> None:
    op = data.draw(operations(world.rootfs), label="operation")
    mine = sorted(world.created.get(op.kind, ()))
    if op.allocate or not mine:
        reply = allocate(world, op)
        if reply[0]:
            world.ids[op.kind].add(reply[1])
            world.created.setdefault(op.kind, set()).add(reply[1])
    else:
        change(world, op, mine[op.target % len(mine)])
    for kind in KINDS:  # a change may reach other kinds' bodies (a cluster's name, its hosts')
        assert world.pool_ids(kind) == sorted(world.ids[kind]), kind


def test_every_info_parses_afterwards(world: World) -> None:
    for kind in KINDS:
        world.check(kind)
