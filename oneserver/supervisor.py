"""``oneserver serve`` as a small process supervisor: the API (a gunicorn master with its
workers) and the core run as two child processes. A core that dies is started again (its
unfinished operations resume from the database); if the API dies, everything stops. The core
is deliberately not a child of the gunicorn master, which reaps any child it sees."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from gunicorn.app.base import BaseApplication

log = logging.getLogger("oneserver")
STOP_TIMEOUT = 15.0


class GunicornApp(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code; each worker opens its own database connection."""

    def __init__(self, options: dict[str, Any], data_dir: str, db_url: str,
                 etc_dir: str | None) -> None:
        self.options = options
        self.data_dir, self.db_url, self.etc_dir = data_dir, db_url, etc_dir
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        data_dir, db_url, etc_dir = self.data_dir, self.db_url, self.etc_dir

        def post_fork(server: Any, worker: Any) -> None:
            from oneserver import wsgi
            wsgi.setup(data_dir, db_url, etc_dir)

        self.cfg.set("post_fork", post_fork)

    def load(self) -> Any:
        from oneserver.wsgi import application
        return application


def run_api(host: str, port: int, workers: int, data_dir: str, db_url: str,
            etc_dir: str | None) -> None:
    GunicornApp({
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "sync", "timeout": 60,
        "graceful_timeout": 10, "accesslog": None, "loglevel": "warning",
        "preload_app": False,
    }, data_dir, db_url, etc_dir).run()


@dataclass
class Child:
    name: str
    argv: list[str]
    restart: bool
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def supervise(children: list[Child]) -> int:
    """Run the children until SIGTERM/SIGINT or until a child that must not restart exits."""
    stopping = threading.Event()
    code = 0

    def on_signal(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for child in children:
        child.start()
    try:
        while not stopping.wait(0.5):
            for child in children:
                assert child.proc is not None
                rc = child.proc.poll()
                if rc is None:
                    continue
                if not child.restart:
                    log.error("%s exited with %s; stopping", child.name, rc)
                    code = rc or 1
                    stopping.set()
                    break
                log.error("%s exited with %s; starting it again", child.name, rc)
                child.start()
    finally:
        for child in children:  # the API first: no new work arrives while the core stops
            child.stop()
    return code
