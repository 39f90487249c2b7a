"""The cheap signal from an API worker to the core: "new work was committed". A datagram on a
unix socket (abstract, or a path); lost datagrams are harmless because the core also polls the
operation and VM rows, which are the truth."""

from __future__ import annotations

import contextlib
import os
import socket

_path: str | None = None
_sock: socket.socket | None = None


def configure(path: str | None) -> None:
    global _path, _sock
    _path = path
    _sock = None


def notify() -> None:
    global _sock
    if not _path:
        return
    try:
        if _sock is None:
            _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sock.setblocking(False)
        _sock.sendto(b"w", _path)
    except OSError:
        pass  # core not listening or queue full: it will poll


class Listener:
    """The core's end of the socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not path.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a signal; drain any others queued."""
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(16)
        except TimeoutError:
            return False
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(16)
        return True

    def close(self) -> None:
        self.sock.close()
        if not self.path.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
