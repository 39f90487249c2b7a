"""The methods many object kinds share with the same signature and meaning (oned's generic
request classes: info, update, rename, chmod, chown, lock, unlock), registered once per kind
instead of written again in every module."""

from __future__ import annotations

from collections.abc import Callable

from oneserver.api import Context, api
from oneserver.api import common as c

Handler = Callable[..., int | str]


def _info(kind: str) -> Handler:
    def handler(ctx: Context, oid: int, decrypt: bool) -> str:
        return c.info(ctx, kind, oid)
    return handler


def _update(kind: str) -> Handler:
    def handler(ctx: Context, oid: int, text: str, mode: int) -> int:
        return c.update(ctx, kind, oid, text, mode)
    return handler


def _chmod(kind: str) -> Handler:
    def handler(ctx: Context, oid: int, *bits: int) -> int:
        return c.chmod(ctx, kind, oid, list(bits[:9]))  # one.template.chmod adds "recursive"
    return handler


def _chown(kind: str) -> Handler:
    def handler(ctx: Context, oid: int, uid: int, gid: int) -> int:
        return c.chown(ctx, kind, oid, uid, gid)
    return handler


def _lock(kind: str) -> Handler:
    def handler(ctx: Context, oid: int, level: int, test: bool) -> int:
        return c.lock(ctx, kind, oid, level, test)
    return handler


def _unlock(kind: str) -> Handler:
    def handler(ctx: Context, oid: int) -> int:
        return c.unlock(ctx, kind, oid)
    return handler


def _rename(kind: str, per_owner: bool) -> Handler:
    def handler(ctx: Context, oid: int, name: str) -> int:
        return c.rename(ctx, kind, oid, name, unique_per_owner=per_owner)
    return handler


SIGNATURES: dict[str, tuple[str, tuple[object, ...]]] = {
    "info": ("ib", (False,)), "update": ("isi", (0,)), "chmod": ("iiiiiiiiii", ()),
    "chown": ("iii", ()), "lock": ("iib", (False,)), "unlock": ("i", ()), "rename": ("is", ()),
}
FACTORIES: dict[str, Callable[[str], Handler]] = {
    "info": _info, "update": _update, "chmod": _chmod, "chown": _chown, "lock": _lock,
    "unlock": _unlock,
}


def register(prefix: str, kind: str, *verbs: str, names_per_owner: bool = False) -> None:
    """Register ``<prefix>.<verb>`` for each verb on objects of ``kind``. ``names_per_owner``:
    a name must be unique among one owner's objects (templates, images), else pool-wide."""
    for verb in verbs:
        sig, defaults = SIGNATURES[verb]
        handler = (_rename(kind, names_per_owner) if verb == "rename"
                   else FACTORIES[verb](kind))
        api(f"{prefix}.{verb}", sig, defaults)(handler)
