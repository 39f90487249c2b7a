"""XML documents as oned 7.4 renders them: element order, CDATA on template values, no
whitespace. Mechanism only: these functions turn stored documents into text and decide nothing.
Every value goes through ``oneserver.xmltext`` (``el`` and ``cdata`` here, or a template's
``to_xml``), so whatever it holds the document stays well formed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oneserver import xmltext
from oneserver.template import Template

PERM_NAMES = (
    "OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A", "OTHER_U", "OTHER_M",
    "OTHER_A",
)


def el(name: str, value: Any) -> str:
    """A plain element, text escaped."""
    return f"<{name}>{xmltext.text(str(value))}</{name}>"


def cdata(name: str, value: Any) -> str:
    """An element whose text is a CDATA section, as oned writes driver names and values."""
    return f"<{name}>{xmltext.cdata(str(value))}</{name}>"


def permissions(perms: Sequence[int]) -> str:
    inner = "".join(f"<{n}>{v}</{n}>" for n, v in zip(PERM_NAMES, perms, strict=True))
    return f"<PERMISSIONS>{inner}</PERMISSIONS>"


def perms_to_int(perms: Sequence[int]) -> int:
    value = 0
    for bit in perms:
        value = (value << 1) | (1 if bit else 0)
    return value


def ids(name: str, values: Sequence[int]) -> str:
    return f"<{name}>" + "".join(f"<ID>{v}</ID>" for v in values) + f"</{name}>"


def template(doc: Any, root: str = "TEMPLATE") -> str:
    return Template.from_json(doc or []).to_xml(root)


def lock(doc: dict[str, Any]) -> str:
    lk = doc.get("lock")
    if not lk:
        return ""
    return (
        f"<LOCK><LOCKED>{lk['locked']}</LOCKED><OWNER>{lk['owner']}</OWNER>"
        f"<TIME>{lk['time']}</TIME><REQ_ID>{lk.get('req_id', -1)}</REQ_ID></LOCK>"
    )


def owner_head(doc: dict[str, Any]) -> str:
    """ID UID GID UNAME GNAME NAME, the head shared by owned objects."""
    return (
        f"<ID>{doc['id']}</ID><UID>{doc['uid']}</UID><GID>{doc['gid']}</GID>"
        + el("UNAME", doc["uname"]) + el("GNAME", doc["gname"]) + el("NAME", doc["name"])
    )


def pool(root: str, bodies: Sequence[str], tail: str = "") -> str:
    return f"<{root}>" + "".join(bodies) + tail + f"</{root}>"
