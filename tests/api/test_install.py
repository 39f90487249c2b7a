"""``pip install .`` (not editable) into a fresh venv gives a server that runs on its own: the
wheel carries the default configuration (etc/), ``oneserver --version`` answers, and ``serve``
says which configuration files it read and answers ``one.system.version``. The build reads a
copy of the checkout (so nothing is written into it) and pip takes the dependencies from its
cache or the package index."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
from conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.install
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "data", "build", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", tmp / "venv"], check=True, env=env)
    subprocess.run([tmp / "venv" / "bin" / "python", "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", str(src)],
                   check=True, env=env, cwd=tmp, timeout=300)
    shutil.rmtree(src)  # the installed server must not need its source
    return tmp / "venv"


def run(venv: Path, *args: str) -> str:
    done = subprocess.run([venv / "bin" / "oneserver", *args], capture_output=True, text=True,
                          check=True, cwd=venv.parent, timeout=60)
    return done.stdout


def test_version(venv: Path) -> None:
    assert run(venv, "--version").startswith("oneserver 0.1.0 (OpenNebula 7.4.0 XML-RPC API)")


def test_help_shows_defaults_and_environment(venv: Path) -> None:
    out = run(venv, "serve", "--help")
    for shown in ("default: 2633", "default: 4", "default: ./data", "default: 127.0.0.1",
                  "ONE_AUTH", "ONESERVER_DATA", "ONESERVER_DB", "ONESERVER_ETC",
                  "ONESERVER_LOG"):
        assert shown in out, out
    assert "--version" in run(venv, "--help")


def test_serve_reads_the_packaged_etc_and_answers(venv: Path) -> None:
    port = free_port()
    log = venv.parent / "serve.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "ONE_AUTH") and not k.startswith("ONESERVER_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([venv / "bin" / "oneserver", "serve", "--port", str(port),
                                 "--workers", "1"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=venv.parent, env=env)
    try:
        data = venv.parent / "data"
        auth = wait_for("DATA/one_auth", lambda: (data / "one_auth").is_file()
                        and (data / "one_auth").read_text().strip())
        proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")

        def version() -> list | None:
            with contextlib.suppress(OSError):
                return proxy.one.system.version(auth)
            assert proc.poll() is None, log.read_text()
            return None

        assert wait_for("one.system.version", version) == [True, "7.4.0", 0]
        etc = next(venv.glob("lib/python3*/site-packages/oneserver/etc"))
        lines = log.read_text().splitlines()
        assert (f"configuration: {etc}/oned.conf, {etc}/sched.conf, "
                f"{etc}/vmm_exec/vmm_exec_lxc.conf") in lines, lines
    finally:
        proc.terminate()
        proc.wait(30)
