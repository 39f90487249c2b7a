"""The README's commands, as a newcomer types them.

The ``sh`` blocks of "Using it" run in order in one bash, as written, against a server of
their own, in a stand-in for the checkout: the server's directory, with its ``data/`` (whose
``one_auth`` holds oneadmin's password, as a first start without ``ONE_AUTH`` writes it) and
links to ``tools/`` and, as ``.venv``, to the Python environment running the tests. The one
change to their text: the server's port for 2633. The install and test commands above them
are checked here for what they run (CI runs ``tools/run-tests.sh`` itself, and
``test_install.py`` installs the package into a fresh venv)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Server, start_server, stop_server

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.M | re.S)
HEADING = re.compile(r"^## (.+)$", re.M)
PORT = "127.0.0.1:2633"


def blocks(lang: str = "sh", section: str | None = None) -> list[str]:
    """The README's fenced ``lang`` blocks, those under the ``## section`` heading only when
    it is given."""
    text = README.read_text()
    found = []
    for m in FENCE.finditer(text):
        headings = HEADING.findall(text, 0, m.start())
        if m.group(1) == lang and (section is None or headings and headings[-1] == section):
            found.append(m.group(2))
    return found


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    tmp = tmp_path_factory.mktemp("readme")
    srv = start_server(tmp, "sqlite")
    shutil.copy(tmp / "one_auth", srv.data_dir / "one_auth")
    (tmp / "tools").symlink_to(ROOT / "tools")
    (tmp / ".venv").symlink_to(sys.prefix)
    yield tmp, srv
    stop_server(srv)


def test_every_shell_block_parses() -> None:
    found = blocks()
    assert len(found) >= 3, found
    for block in found:
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert done.returncode == 0, (block, done.stderr)


def test_install_and_test_commands_stay_out_of_the_system_python() -> None:
    """Debian's python3 is externally managed (PEP 668): pip and the server come from a venv
    in the checkout, which the test script makes (and reuses) for itself."""
    install, tests = blocks()[:2]
    assert install.split() == ["python3", "-m", "venv", ".venv", "&&", ".venv/bin/pip",
                               "install", "-e", ".", "&&", ".venv/bin/oneserver", "serve",
                               "--data", "./data"], install
    assert tests.strip() == "tools/run-tests.sh"
    for block in blocks():
        assert not re.search(r"(^|[;&|(]\s*)(pip3?|python3? -m pip) ", block, re.M), block


@pytest.mark.skipif(not Path("/bin/busybox").exists(),
                    reason="the README's rootfs needs busybox: apt install busybox-static")
def test_using_it_runs_as_written(checkout: tuple[Path, Server]) -> None:
    where, srv = checkout
    port = srv.url.split("/")[2].rsplit(":", 1)[1]
    script = "\n".join(blocks(section="Using it"))
    assert PORT in script
    env = {k: v for k, v in os.environ.items() if k not in ("ONE_AUTH", "ONE_XMLRPC")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c",
                           script.replace(PORT, f"127.0.0.1:{port}")],
                          cwd=where, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-2:] == ["web is RUNNING", "web2 is RUNNING"], done.stdout
    one = srv.pyone()
    assert [v.NAME for v in one.vmpool.info(-2, -1, -1, -1).VM] == ["web2", "web"]
