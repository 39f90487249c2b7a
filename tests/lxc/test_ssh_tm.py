"""SshTM on this machine: locally (host ``localhost``) and through a fake ssh command that
runs the remote script locally, so the ssh code path is exercised without an sshd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from drivers.ssh import SshTM
from drivers.ssh.remote import Target, target_for_host, target_for_uri
from oneserver.driver_contract import DiskSpec, DriverError, HostRef, VMSpec

LOCAL = HostRef(0, "localhost")


def _vm(vm_id: int, *disks: DiskSpec, **template: str) -> VMSpec:
    return VMSpec(id=vm_id, name="t", cpu=1, vcpu=1, memory_mb=64, disks=disks, template=template)


NODE5 = HostRef(5, "node5")


@pytest.fixture
def fake_ssh(tmp_path: Path) -> str:
    """An ssh command (the TM's ``ssh_command`` option) that drops the destination and runs
    the command here."""
    log = tmp_path / "fake-ssh.log"
    script = tmp_path / "fakessh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {log}\nshift\nexec sh -c "$*"\n')
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("kind", ["tar.gz", "dir", "tar", "tar.xz"])
def test_prolog_epilog_local(kind: str, rootfs: tuple[Path, Path], tmp_path: Path) -> None:
    rdir, tgz = rootfs
    if kind == "tar.gz":
        source = tgz
    elif kind == "dir":
        source = rdir
    else:
        source = tmp_path / f"rootfs.{kind}"
        flag = "-J" if kind.endswith("xz") else ""
        subprocess.run(["tar", "-C", rdir, *filter(None, [flag]), "-cf", source, "."], check=True)
    tm = SshTM({"datastore_dir": str(tmp_path / "ds")})
    vm = _vm(11, DiskSpec(0, str(source)), DiskSpec(1, str(rdir), target="/data"))
    vm_dir = tm.prolog(LOCAL, vm)
    assert vm_dir == str(tmp_path / "ds" / "11")
    assert os.access(Path(vm_dir, "disk.0", "sbin", "init"), os.X_OK)
    assert Path(vm_dir, "disk.1", "bin", "busybox").exists()
    assert tm.prolog(LOCAL, vm) == vm_dir  # again: same result
    tm.epilog(LOCAL, vm, keep_disks=True)
    assert Path(vm_dir).exists()
    tm.epilog(LOCAL, vm)
    assert not Path(vm_dir).exists()
    tm.epilog(LOCAL, vm)  # nothing left: still a success


def test_prolog_over_ssh_command(fake_ssh: str, rootfs: tuple[Path, Path],
                                 tmp_path: Path) -> None:
    tm = SshTM({"datastore_dir": str(tmp_path / "ds"), "ssh_command": fake_ssh})
    vm = _vm(12, DiskSpec(0, str(rootfs[1])))
    vm_dir = tm.prolog(NODE5, vm)
    assert Path(vm_dir, "disk.0", "sbin", "init").exists()
    assert "root@node5" in (tmp_path / "fake-ssh.log").read_text()
    tm.epilog(NODE5, vm)
    assert not Path(vm_dir).exists()


def test_host_template_never_names_a_program(fake_ssh: str, tmp_path: Path) -> None:
    """SSH_COMMAND in a host template (written through the API) is ignored, and host and user
    names that ssh would read as options are refused."""
    pwned = tmp_path / "pwned"
    evil = HostRef(6, "node6", {"SSH_COMMAND": f"sh -c 'id > {pwned}' --"})
    assert target_for_host(evil, {}).command == ("ssh",)
    assert target_for_host(evil, {"ssh_command": fake_ssh}).command == (fake_ssh,)
    for bad in ({"SSH_HOST": "-oProxyCommand=touch /tmp/x"}, {"SSH_USER": "-oProxyCommand=x"},
                {"SSH_HOST": "a b"}, {"SSH_USER": "root;id"}):
        with pytest.raises(DriverError, match="not a"):
            target_for_host(HostRef(7, "node7", bad), {})
    with pytest.raises(DriverError):
        target_for_host(HostRef(8, "-oProxyCommand=x"), {})
    assert not pwned.exists()


def test_bad_tarball(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"this is not gzip")
    tm = SshTM({"datastore_dir": str(tmp_path / "ds")})
    with pytest.raises(DriverError, match="not a valid gzip tar"):
        tm.prolog(LOCAL, _vm(13, DiskSpec(0, str(bad))))
    assert not (tmp_path / "ds" / "13").exists()


@pytest.mark.parametrize("source, message", [
    ("/nonexistent/rootfs.tar.gz", "does not exist"),
    ("/etc/hostname", "neither a directory nor"),
])
def test_bad_source(source: str, message: str, tmp_path: Path) -> None:
    tm = SshTM({"datastore_dir": str(tmp_path / "ds")})
    with pytest.raises(DriverError, match=message):
        tm.prolog(LOCAL, _vm(14, DiskSpec(0, source)))
    assert not (tmp_path / "ds" / "14").exists()


def test_init_is_not_the_tms_business(rootfs: tuple[Path, Path], tmp_path: Path) -> None:
    # A rootfs without the INIT asked for is copied all the same: the VMM's deploy fails on
    # it, which oned reports as BOOT_FAILURE rather than a transfer (PROLOG) failure.
    tm = SshTM({"datastore_dir": str(tmp_path / "ds")})
    vm = _vm(15, DiskSpec(0, str(rootfs[1])), INIT="/usr/bin/missing-init")
    vm_dir = tm.prolog(LOCAL, vm)
    assert Path(vm_dir, "disk.0", "bin", "busybox").exists()
    tm.epilog(LOCAL, vm)
    assert not Path(vm_dir).exists()


def test_refuses_shallow_vm_dir() -> None:
    tm = SshTM({"datastore_dir": "/"})
    with pytest.raises(DriverError, match="refusing"):
        tm.epilog(LOCAL, _vm(1))


def test_targets() -> None:
    assert target_for_host(LOCAL, {}).is_local
    t = target_for_host(HostRef(1, "h1"), {"ssh_command": "ssh -F /x/cfg"})
    assert t.argv("echo hi") == ["ssh", "-F", "/x/cfg", "root@h1", "sh -c 'echo hi'"]
    assert target_for_uri("lxc:///system").is_local
    assert target_for_uri("test:///default").is_local
    u = target_for_uri("lxc+ssh://root@10.213.1.11:2222/system?command=/s/sshwrap")
    assert u == Target(address="10.213.1.11", user="root", port=2222, command=("/s/sshwrap",))
    with pytest.raises(ValueError):
        target_for_uri("lxc+tls://h1/system")
