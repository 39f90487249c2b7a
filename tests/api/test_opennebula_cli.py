"""opennebula-cli 7.4.0 (PyPI, pyone-based) as a user runs it: subprocesses reading
ONE_XMLRPC and ONE_AUTH. It asks ``one.system.version`` before every command and refuses any
server line but 7.0/7.4, so each passing command also checks the version we report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PASSWORD, Server

pytestmark = pytest.mark.skipif(shutil.which("one") is None,
                                reason="opennebula-cli is not installed (pip install .[test])")


def run(server: Server, home: Path, *argv: str, auth: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ONE_XMLRPC=server.url, ONE_AUTH=auth or f"literal:oneadmin:{PASSWORD}",
               HOME=str(home), NO_COLOR="1", TERM="dumb", COLUMNS="200")
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> object:
    return json.loads(proc.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The CLI keeps contexts under $HOME: keep them out of the real one."""
    return tmp_path


def test_host_create_list_show(server: Server, home: Path) -> None:
    created = as_json(run(server, home, "onehost", "--output", "json", "create", "cli-host1",
                          "-i", "dummy", "-v", "dummy"))
    assert created["resource"] == "host" and created["action"] == "create"
    hid = created["id"]
    assert isinstance(hid, int)
    listing = run(server, home, "one", "host", "list").stdout
    assert "cli-host1" in listing
    hosts = as_json(run(server, home, "one", "--output", "json", "host", "list"))
    assert any(h["id"] == hid and h["name"] == "cli-host1" for h in hosts)
    deadline = time.time() + 20
    while True:
        shown = as_json(run(server, home, "one", "--output", "json", "host", "show", str(hid)))
        if shown["state_id"] == 2 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert shown["id"] == hid and shown["name"] == "cli-host1"
    assert shown["state_id"] == 2  # MONITORED by the dummy driver
    assert shown["cluster"] == "default"
    assert shown["host_share"]["TOTAL_CPU"] > 0


def test_vm_create_list_show(server: Server, home: Path, tmp_path: Path) -> None:
    tmpl = tmp_path / "vm.tmpl"
    tmpl.write_text('NAME="cli-vm1"\nCPU=0.1\nMEMORY=32\nDESCRIPTION="from opennebula-cli"\n')
    created = as_json(run(server, home, "one", "--output", "json", "vm", "create", str(tmpl)))
    assert created["resource"] == "vm"
    vid = created["id"]
    listing = run(server, home, "one", "vm", "list").stdout
    assert "cli-vm1" in listing
    vms = as_json(run(server, home, "one", "--output", "json", "vm", "list"))
    assert any(v["id"] == vid and v["name"] == "cli-vm1" for v in vms)
    shown = as_json(run(server, home, "one", "--output", "json", "vm", "show", str(vid)))
    assert shown["id"] == vid and shown["name"] == "cli-vm1"
    assert shown["template"]["MEMORY"] == "32" and shown["template"]["VMID"] == str(vid)
    assert shown["user_template"]["DESCRIPTION"] == "from opennebula-cli"
    assert shown["state"] in ("PENDING", "ACTIVE")
    server.call("one.vm.recover", vid, 3)


def test_auth_file_and_errors(server: Server, home: Path, tmp_path: Path) -> None:
    auth = tmp_path / "one_auth"
    auth.write_text(f"oneadmin:{PASSWORD}\n")
    run(server, home, "one", "--output", "json", "host", "list", auth=str(auth))
    missing = run(server, home, "one", "--output", "json", "vm", "show", "999999", check=False)
    assert missing.returncode != 0
    assert "Error getting virtual machine [999999]" in missing.stdout + missing.stderr
    bad = run(server, home, "one", "host", "list", auth="literal:oneadmin:wrong", check=False)
    assert bad.returncode != 0
