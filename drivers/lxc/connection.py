"""libvirt connections to hosts: which URI a host has, and a thread-safe cache of them.

URI choice, first match wins: the host (or cluster) template's ``LIBVIRT_URI``; ``lxc:///system``
for a host named ``localhost``; the driver option ``uri_template``; else
``lxc+ssh://root@{hostname}/system``. ``{hostname}`` and ``{id}`` are filled from the host.
When the URI uses ssh and has no ``command=``, the ``SSH_COMMAND`` of the host template (or the
option ``ssh_command``) is added, so libvirt and the TM go through the same ssh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import libvirt

from oneserver.driver_contract import HostRef, HostUnreachable

DEFAULT_URI = "lxc+ssh://root@{hostname}/system"
LOCAL_URI = "lxc:///system"

# Codes libvirt gives when the transport, not the request, failed.
_BROKEN_CODES = frozenset({
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
})

T = TypeVar("T")


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours become exceptions instead."""


libvirt.registerErrorHandler(_quiet, None)


def host_uri(host: HostRef, options: Mapping[str, Any]) -> str:
    """The libvirt URI of ``host`` (see the module docstring for the rules)."""
    template = host.template.get("LIBVIRT_URI")
    if not template:
        if host.name == "localhost":
            template = LOCAL_URI
        else:
            template = options.get("uri_template") or DEFAULT_URI
    uri = str(template).format(hostname=host.name, id=host.id)
    ssh_command = host.template.get("SSH_COMMAND") or options.get("ssh_command")
    scheme = urlsplit(uri).scheme
    if ssh_command and scheme.endswith("+ssh") and "command=" not in uri:
        uri += ("&" if "?" in uri else "?") + "command=" + quote(str(ssh_command), safe="/")
    return uri


def is_broken(exc: libvirt.libvirtError) -> bool:
    """True when ``exc`` says the connection itself is gone (worth reopening)."""
    code = exc.get_error_code()
    if code in _BROKEN_CODES:
        return True
    text = str(exc).lower()
    return code == libvirt.VIR_ERR_INTERNAL_ERROR and ("closed" in text or "eof" in text)


class ConnectionPool:
    """One open libvirt connection per URI, shared by threads.

    libvirt connections are themselves thread-safe; the lock only guards the cache so that
    two threads never open the same URI at once or reuse a connection another thread closed.
    """

    def __init__(self, options: Mapping[str, Any] | None = None,
                 opener: Callable[[str], libvirt.virConnect] = libvirt.open) -> None:
        self.options: Mapping[str, Any] = dict(options or {})
        self._opener = opener
        self._lock = threading.Lock()
        self._conns: dict[str, libvirt.virConnect] = {}

    def uri(self, host: HostRef) -> str:
        return host_uri(host, self.options)

    def get(self, host: HostRef) -> libvirt.virConnect:
        """An open, alive connection to ``host``. Raises :class:`HostUnreachable`."""
        uri = self.uri(host)
        with self._lock:
            conn = self._conns.get(uri)
            if conn is not None and not _alive(conn):
                self._drop(uri)
                conn = None
            if conn is None:
                try:
                    conn = self._opener(uri)
                except libvirt.libvirtError as exc:
                    raise HostUnreachable(f"cannot connect to {uri}: {exc}") from exc
                self._conns[uri] = conn
            return conn

    def call(self, host: HostRef, fn: Callable[[libvirt.virConnect], T]) -> T:
        """Run ``fn(conn)``; if the connection turns out broken, reopen once and retry.
        A second transport failure raises :class:`HostUnreachable`; other libvirt errors
        propagate unchanged (callers turn them into DriverError with context)."""
        for attempt in (1, 2):
            conn = self.get(host)
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                if not is_broken(exc):
                    raise
                self.invalidate(host)
                if attempt == 2:
                    raise HostUnreachable(f"lost connection to {self.uri(host)}: {exc}") from exc
        raise AssertionError("unreachable")

    def invalidate(self, host: HostRef) -> None:
        """Forget (and close) the cached connection of ``host``; the next call reopens."""
        with self._lock:
            self._drop(self.uri(host))

    def close(self) -> None:
        """Close every cached connection; the pool stays usable afterwards."""
        with self._lock:
            for uri in list(self._conns):
                self._drop(uri)

    def _drop(self, uri: str) -> None:
        conn = self._conns.pop(uri, None)
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # already dead; nothing to release


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False
