"""The data directory's ``serve.pid``: which ``oneserver serve`` owns the directory, and the
token its processes carry, so that whatever a killed one leaves behind can be found and ended.

The supervisor holds an exclusive ``flock`` on the file while it lives; the kernel drops the
lock when the process dies, however it dies, so a lock that can be taken means no supervisor.
Every process the supervisor starts gets ``ONESERVER_SERVE=<token>:<child>`` in its
environment, and so does everything those start in turn (gunicorn workers, driver commands,
their ssh): a process carrying a dead serve's token is a leftover, wherever it was reparented
and whatever process group or session it moved to.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

NAME = "serve.pid"
ENV = "ONESERVER_SERVE"
# How long a sweep waits for the processes it killed to be gone.
SWEEP_WAIT = 5.0


class Busy(RuntimeError):
    """Another ``oneserver serve`` is running with this data directory."""


class PidFile:
    """This supervisor's hold on a data directory, from :meth:`claim` to :meth:`release`."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, NAME)
        self.token = uuid.uuid4().hex
        self.fd = -1

    def claim(self) -> list[int]:
        """Take the directory: refuse (:class:`Busy`) while another supervisor holds it, else
        end what the previous one left running and record this one. Returns the pids ended."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _record(fd).get("pid", "?")
            os.close(fd)
            raise Busy(f"oneserver serve (pid {held}) is running with data directory "
                       f"{os.path.dirname(self.path)}") from None
        self.fd = fd
        previous = _record(fd).get("token")
        ended = sweep(f"{previous}:") if isinstance(previous, str) and previous else []
        self._write({"pid": os.getpid(), "token": self.token})
        return ended

    def env(self, child: str) -> dict[str, str]:
        """The environment for a child named ``child``."""
        return dict(os.environ, **{ENV: self.marker(child)})

    def marker(self, child: str = "") -> str:
        """The token of ``child``'s processes; without a name, the prefix of all of them."""
        return f"{self.token}:{child}"

    def release(self) -> None:
        """End anything of this serve still running and give the directory up."""
        sweep(self.marker())
        self._write({})
        os.close(self.fd)
        self.fd = -1

    def _write(self, record: dict[str, object]) -> None:
        data = json.dumps(record).encode() if record else b""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)


def _record(fd: int) -> dict[str, object]:
    try:
        value = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # torn or foreign content: nothing to go on
        return {}
    return value if isinstance(value, dict) else {}


def carrying(marker: str) -> Iterator[int]:
    """Pids of the processes whose ``ONESERVER_SERVE`` starts with ``marker`` (this process
    excluded; processes of other users are not readable, and are not ours)."""
    wanted = f"{ENV}={marker}".encode()
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone, or not ours
            continue
        if any(entry.startswith(wanted) for entry in environ.split(b"\0")):
            yield int(name)


def sweep(marker: str) -> list[int]:
    """SIGKILL every process carrying ``marker`` and wait until they are gone (reaped or
    zombies, which hold no socket or file any more). Returns their pids."""
    pids = list(carrying(marker))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + SWEEP_WAIT
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    return pids


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"
