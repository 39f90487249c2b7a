"""``oneserver serve`` as a small process supervisor: the API (a gunicorn master with its
workers) and the core run as two child processes. A core that dies is started again (its
unfinished operations resume from the database); if the API dies, everything stops. The core
is deliberately not a child of the gunicorn master, which reaps any child it sees.

Nothing outlives the supervisor: its children and the gunicorn workers are killed by the kernel
when their parent dies (``PR_SET_PDEATHSIG``), whatever a dead child started is ended before it
is replaced, and a ``serve`` started after a killed one ends what that one left running
(``pidfile``) before it binds its port."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from gunicorn.app.base import BaseApplication

from oneserver.pidfile import PidFile, sweep

log = logging.getLogger("oneserver")
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies, however it dies; exit now if
    it is already gone. Called in a new child, by the thread that forked it (the signal follows
    the death of that thread)."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


# Settings that only newer gunicorns have (and older ones refuse).
NEWER_GUNICORN = frozenset({"control_socket_disable"})


class GunicornApp(BaseApplication):
    """gunicorn configured in code; each worker opens its own database connection."""

    def __init__(self, options: dict[str, Any], data_dir: str, db_url: str,
                 etc_dir: str | None) -> None:
        self.options = options
        self.data_dir, self.db_url, self.etc_dir = data_dir, db_url, etc_dir
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in NEWER_GUNICORN and key not in self.cfg.settings:
                continue
            self.cfg.set(key, value)
        data_dir, db_url, etc_dir = self.data_dir, self.db_url, self.etc_dir

        def post_fork(server: Any, worker: Any) -> None:
            die_with_parent(server.pid)  # a killed master leaves no worker on the port
            from oneserver import wsgi
            wsgi.setup(data_dir, db_url, etc_dir)

        self.cfg.set("post_fork", post_fork)

    def load(self) -> Any:
        from oneserver.wsgi import application
        return application


def run_api(host: str, port: int, workers: int, data_dir: str, db_url: str,
            etc_dir: str | None) -> None:
    GunicornApp({
        "bind": f"{host}:{port}", "workers": workers,
        # Per worker at most 256 connections at once (kept-alive ones included; more wait in
        # the backlog for another worker), a kept-alive one closed after 5 s without a request.
        "worker_class": "oneserver.http_worker.EventWorker", "worker_connections": 256,
        "keepalive": 5, "timeout": 60, "graceful_timeout": 10, "accesslog": None,
        "loglevel": "warning", "preload_app": False,
        # gunicorn >= 25.1 opens a control socket at one path per user, shared by every
        # server on the machine (and removed by whichever stops first); we have no use for it.
        "control_socket_disable": True,
    }, data_dir, db_url, etc_dir).run()


@dataclass
class Child:
    name: str
    argv: list[str]
    restart: bool
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        parent = os.getpid()
        self.proc = subprocess.Popen(self.argv, env=env,
                                     preexec_fn=lambda: die_with_parent(parent))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def supervise(children: list[Child], pidfile: PidFile) -> int:
    """Run the children until SIGTERM/SIGINT or until a child that must not restart exits.
    ``pidfile``: this serve's claim on the data directory (taken before the schema and the
    bootstrap are touched); released when the children are gone."""
    stopping = threading.Event()
    code = 0

    def on_signal(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for child in children:
            child.start(pidfile.env(child.name))
        while not stopping.wait(0.5):
            for child in children:
                assert child.proc is not None
                rc = child.proc.poll()
                if rc is None:
                    continue
                # What the dead child started (workers, driver commands) goes with it, so
                # that nothing of it runs beside its successor or holds the port.
                sweep(pidfile.marker(child.name))
                if not child.restart:
                    log.error("%s exited with %s; stopping", child.name, rc)
                    code = rc or 1
                    stopping.set()
                    break
                log.error("%s exited with %s; starting it again", child.name, rc)
                child.start(pidfile.env(child.name))
    finally:
        for child in children:  # the API first: no new work arrives while the core stops
            child.stop()
        pidfile.release()
    return code
