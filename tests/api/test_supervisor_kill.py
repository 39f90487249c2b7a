"""Nothing of ``oneserver serve`` outlives it, whichever of its processes is SIGKILLed and in
whatever order (the supervisor, the gunicorn master, a worker, the core): within a few seconds
no process of the server runs outside a live supervisor, and a new ``serve`` on the same port
and data directory starts and answers, with the data of the first."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
from conftest import PASSWORD, ROOT, Server, free_port, wait_for
from procstat import children

ORDERS = [
    ("supervisor",), ("master",), ("worker",), ("core",),
    ("worker", "core", "master"), ("core", "worker", "supervisor"), ("worker", "supervisor"),
]
WORKERS = 2


def launch(tmp: Path, port: int) -> Server:
    """``oneserver serve`` on ``port`` with its data in ``tmp/data``; returns once it answers."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (tmp / "one_auth").write_text(f"oneadmin:{PASSWORD}\n")
    with open(tmp / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oneserver", "serve", "--port", str(port), "--data",
             str(data), "--workers", str(WORKERS)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=dict(os.environ, ONE_AUTH=str(tmp / "one_auth")))
    server = Server(f"http://127.0.0.1:{port}/RPC2", f"sqlite:///{data / 'one.db'}", data,
                    "sqlite", proc)

    def answers() -> bool:
        assert proc.poll() is None, (tmp / "server.log").read_text()
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            return bool(server.call("one.system.version")[0])
        return False

    wait_for("the server to answer", answers)
    wait_for("every worker to start", lambda: len(workers(server)) == WORKERS)
    return server


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie holds no port or file)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def server_processes(server: Server) -> set[int]:
    """Every running process of this server: they all name its data directory."""
    mark = str(server.data_dir).encode()
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if mark in Path(f"/proc/{name}/cmdline").read_bytes() and running(int(name)):
                    found.add(int(name))
    return found


def descendants(pid: int) -> set[int]:
    out = {pid}
    for child in children(pid):
        out |= descendants(child)
    return out


def child_role(server: Server, role: str) -> int | None:
    for pid in children(server.proc.pid):
        with contextlib.suppress(OSError):
            if role.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:4]:
                return pid
    return None


def workers(server: Server) -> list[int]:
    master = child_role(server, "api")
    return [p for p in children(master) if running(p)] if master else []


def victim(server: Server, role: str) -> int:
    pid = {"supervisor": server.proc.pid, "master": child_role(server, "api"),
           "worker": (workers(server) or [None])[0], "core": child_role(server, "core")}[role]
    assert pid is not None, f"no {role} to kill"
    return pid


def settled(server: Server, role: str, killed: int) -> bool:
    """Whether the server is back to a steady state after ``killed`` (a ``role``) died: the
    worker or core replaced, or, after the supervisor or master, the whole server gone."""
    if running(killed):
        return False
    if role == "worker":
        return killed not in workers(server) and len(workers(server)) == WORKERS
    if role == "core":
        return child_role(server, "core") not in (None, killed)
    return server.proc.poll() is not None and not server_processes(server)


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_kill_leaves_no_orphan_and_serve_starts_again(tmp_path: Path,
                                                      order: tuple[str, ...]) -> None:
    port = free_port()
    server = launch(tmp_path, port)
    try:
        vm = server.call("one.vm.allocate", 'NAME="survivor"\nCPU=0.1\nMEMORY=32', True)[1]
        for role in order:
            pid = victim(server, role)
            os.kill(pid, signal.SIGKILL)
            wait_for(f"the server to settle after its {role} was killed",
                     lambda role=role, pid=pid: settled(server, role, pid), timeout=15)
            if server.proc.poll() is None:  # nothing runs outside the live supervisor
                assert server_processes(server) <= descendants(server.proc.pid)
        if server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(30)
        wait_for("no process of the server to remain", lambda: not server_processes(server),
                 timeout=10)

        server = launch(tmp_path, port)
        ok, body, *_ = server.call("one.vm.info", vm)
        assert ok and "<NAME>survivor</NAME>" in body
    finally:
        if server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(30)
        for pid in server_processes(server):  # a failed case must not leave its orphans
            os.kill(pid, signal.SIGKILL)


def test_second_serve_on_the_same_data_is_refused(tmp_path: Path) -> None:
    server = launch(tmp_path, free_port())
    try:
        second = subprocess.run(
            [sys.executable, "-m", "oneserver", "serve", "--port", str(free_port()), "--data",
             str(server.data_dir)], capture_output=True, cwd=ROOT, timeout=60,
            env=dict(os.environ, ONE_AUTH=str(tmp_path / "one_auth")))
        assert second.returncode != 0
        assert f"oneserver serve (pid {server.proc.pid}) is running" in second.stderr.decode()
        assert server.call("one.system.version")[1] == "7.4.0"  # the first is untouched
    finally:
        server.proc.terminate()
        server.proc.wait(30)
    assert not server_processes(server)
