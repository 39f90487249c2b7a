"""The XML-RPC method table: each method declares its parameter types, the trailing ones being
optional as in oned, and gets a :class:`Context` with the authenticated caller."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oneserver import db
from oneserver.api.authz import RUN_IN_DISABLED_ZONE, TABLE, Operation, operation
from oneserver.errors import (
    AUTH_FAILED,
    AUTHENTICATION,
    INTERNAL,
    Fault,
    OneError,
    not_authorized,
)
from oneserver.model.acl import KIND_TYPE, RIGHT_NAMES, USE, Caller, Rule, Target, allowed
from oneserver.wire import FAULT_NO_METHOD, FAULT_TYPE, I8

RETRIES = 3  # a call whose transaction hit a PostgreSQL deadlock runs again

# The decoder gives <i4> values as int (always within 32 bits) and <i8> ones as wire.I8,
# which oned refuses where its signature says i, as it refuses a bool (an int to Python).
TYPE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "i": (lambda v: type(v) is int, "integer"),
    "s": (lambda v: type(v) is str, "string"),
    "b": (lambda v: type(v) is bool, "boolean"),
    "A": (lambda v: type(v) is list, "array"),
}


@dataclass
class Context:
    method: str
    caller: Caller
    op: Operation = field(default_factory=lambda: Operation(None, 0))
    _rules: list[Rule] | None = field(default=None, repr=False)

    def rules(self) -> list[Rule]:
        if self._rules is None:
            self._rules = [
                Rule(r.oid, r.user, r.resource, r.rights, r.zone) for r in db.Acl.select()
            ]
        return self._rules

    def authorize(self, target: Target, right: int | None = None) -> None:
        """AUTHORIZATION unless the caller holds, on ``target``, the right the authorization
        table gives this call for an object of that kind (``right``: a stronger right the
        table names, e.g. ``authz.CHMOD_ADMIN_BITS``)."""
        need = self.op.right_on(target.kind, target.oid) if right is None else right
        if self.caller.is_admin or need == 0:
            return
        if not allowed(self.caller, target, need, self.rules()):
            raise not_authorized(self.caller.uid, RIGHT_NAMES[need],
                                 KIND_TYPE.get(target.kind, target.kind.upper()), target.oid)

    def may(self, target: Target, right: int = USE) -> bool:
        """Whether the caller holds ``right`` on ``target`` (pool listings: USE)."""
        return self.caller.is_admin or allowed(self.caller, target, right, self.rules())


@dataclass(frozen=True)
class Method:
    name: str
    sig: str
    defaults: tuple[Any, ...]
    handler: Callable[..., int | str]
    authenticate: bool = True


METHODS: dict[str, Method] = {}


class Plain(bytes):
    """A whole methodResponse carrying a plain value, not oned's [success, value, code] array:
    what xmlrpc-c's own system.* methods answer (``api.introspection``)."""


# xmlrpc-c's system.* methods: they take the call's parameters as they came, no session.
SYSTEM: dict[str, Callable[[tuple[Any, ...]], Plain]] = {}


def api(name: str, sig: str = "", defaults: tuple[Any, ...] = (), authenticate: bool = True
        ) -> Callable[[Callable[..., int | str]], Callable[..., int | str]]:
    """Register ``handler(ctx, *params)`` as XML-RPC method ``name``. ``sig`` lists the types of
    the parameters after the session (i, s, b, A); the last ``len(defaults)`` are optional."""

    def register(handler: Callable[..., int | str]) -> Callable[..., int | str]:
        METHODS[name] = Method(name, sig, defaults, handler, authenticate)
        return handler

    return register


def hash_password(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def authenticate(session: str) -> Caller:
    user, sep, secret = session.partition(":")
    if not sep or not user:
        raise OneError(AUTHENTICATION, AUTH_FAILED)
    rows = db.raw(
        'SELECT u.oid, u.gid, u.password, u.enabled, u.groups, g.name FROM "user" u '
        'LEFT JOIN "group" g ON g.oid = u.gid WHERE u.name = ?', user)
    if not rows or not rows[0][3]:
        raise OneError(AUTHENTICATION, AUTH_FAILED)
    uid, gid, password, _, groups, gname = rows[0]
    member_of = frozenset(int(g) for g in groups.split(",") if g)
    if hash_password(secret) != password:
        token = _valid_token(db.User.get_by_id(uid).doc, secret)
        if token is None:
            raise OneError(AUTHENTICATION, AUTH_FAILED)
        egid = token.get("egid", -1)
        if egid >= 0:
            # A scoped token acts with that one group only, and dies with the membership
            # (UserPool::authenticate).
            if egid not in member_of:
                raise OneError(AUTHENTICATION, AUTH_FAILED)
            gid, member_of = egid, frozenset({egid})
            gname = db.Group.select(db.Group.name).where(db.Group.oid == gid).scalar() or ""
    return Caller(uid, gid, user, gname or "", member_of)


def _valid_token(doc: dict[str, Any], secret: str) -> dict[str, Any] | None:
    now = time.time()
    tokens: list[dict[str, Any]] = doc.get("tokens", [])
    for token in tokens:
        if token["token"] == secret and (token["expiration"] < 0 or token["expiration"] > now):
            return token
    return None


ZONE_DISABLED = "zone_disabled"  # the Meta row one.zone.enable writes while zone 0 is disabled


def zone_disabled() -> bool:
    """Whether this server's zone is disabled: only reads are served then (one indexed read,
    made by the calls that may change something)."""
    return bool(db.raw("SELECT 1 FROM meta WHERE key = ?", ZONE_DISABLED))


def check_params(m: Method, params: tuple[Any, ...]) -> list[Any]:
    """Apply oned's (xmlrpc-c's) rules: wrong type or too few → fault; extra ones ignored."""
    required = len(m.sig) - len(m.defaults)
    if len(params) < required:
        raise Fault(FAULT_TYPE, f"Not enough parameters: {m.name} takes at least "
                                f"{required + 1}, got {len(params) + 1}")
    values = []
    for i, kind in enumerate(m.sig):
        if i >= len(params):
            values.append(m.defaults[i - required])
            continue
        ok, type_name = TYPE_CHECKS[kind]
        if not ok(params[i]):
            given = ", not an <i8>" if type(params[i]) is I8 else ""
            raise Fault(FAULT_TYPE, f"Type mismatch: parameter {i + 2} of {m.name} must be "
                                    f"{'a 32-bit ' if kind == 'i' else 'a '}{type_name}{given}")
        values.append(params[i])
    return values


def dispatch(name: str, params: tuple[Any, ...]) -> int | str | Plain:
    """Run one call. Raises OneError (a failure array) or Fault (an XML-RPC fault)."""
    system = SYSTEM.get(name)
    if system is not None:
        return system(params)
    m = METHODS.get(name)
    if m is None:
        raise Fault(FAULT_NO_METHOD, f"Method '{name}' not defined")
    if not params or type(params[0]) is not str:
        raise Fault(FAULT_TYPE, f"Type mismatch: parameter 1 of {name} must be the session string")
    values = check_params(m, params[1:])
    caller = authenticate(params[0]) if m.authenticate else Caller(-1, -1, "", "")
    if name not in RUN_IN_DISABLED_ZONE and zone_disabled():
        raise OneError(INTERNAL, "Cannot process request, zone disabled")
    ctx = Context(name, caller, operation(name, values))
    return db.retrying(m.handler, ctx, *values, attempts=RETRIES)


def load_all() -> None:
    """Import the modules that register methods."""
    from oneserver.api import (  # noqa: F401
        acl,
        cluster,
        datastore,
        group,
        host,
        image,
        introspection,
        secgroup,
        system,
        user,
        vdc,
        vm,
        vmnic,
        vmpool,
        vmtemplate,
        vn,
        vntemplate,
        zone,
    )
    unlisted = sorted((set(METHODS) | set(SYSTEM)) - set(TABLE))
    if unlisted:  # fail closed: a method nobody reviewed is not served
        raise RuntimeError(f"methods missing from the authorization table: {unlisted}")
