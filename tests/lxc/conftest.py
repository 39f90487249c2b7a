"""Fixtures for the LXC driver tests.

Tiers: pure unit tests (no libvirt daemon), libvirt's in-process ``test:///default`` driver,
real ``lxc:///system`` (marker ``lxc``; a libvirtd is started through tools/hosts/libvirtd.sh
when none answers) and namespace hosts over ssh (marker ``netns``; tools/hosts/vhosts.sh).
Environment: ``ONESERVER_SKIP_LXC=1`` skips the real tiers; ``ONESERVER_VHOSTS`` is the number
of namespace hosts (default 3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "hosts"
SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
# lxc_specs.py sits next to the tests; make it importable under any pytest import mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


def _sh(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def lxc_answers() -> str | None:
    """None when lxc:///system answers, else why not."""
    try:
        import libvirt
    except ImportError:
        return "libvirt-python is not installed"
    try:
        libvirt.open("lxc:///system").close()
    except libvirt.libvirtError as exc:
        return f"lxc:///system does not answer: {exc}"
    return None


def real_tier_blocker() -> str | None:
    """Why real libvirt/netns tests cannot run here, or None."""
    if os.environ.get("ONESERVER_SKIP_LXC") == "1":
        return "ONESERVER_SKIP_LXC=1"
    if os.geteuid() != 0:
        return "real LXC tests need root"
    for tool in ("/usr/sbin/libvirtd", "/bin/busybox", "/usr/bin/virsh"):
        if not Path(tool).exists():
            return f"{tool} is missing (install libvirt-daemon-driver-lxc, busybox-static, " \
                   "libvirt-clients)"
    return None


@pytest.fixture(scope="session")
def rng():
    """libvirt's domain schema, or a skip with the reason."""
    if not SCHEMA.exists():
        print(f"schema check skipped: {SCHEMA} is absent (install libvirt-daemon)")
        pytest.skip(f"{SCHEMA} is absent (install libvirt-daemon)")
    from lxml import etree

    return etree.RelaxNG(etree.parse(str(SCHEMA)))


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(directory, .tar.gz) of a busybox rootfs whose /sbin/init exits on SIGTERM."""
    if not Path("/bin/busybox").exists():
        pytest.skip("/bin/busybox is missing (apt-get install busybox-static)")
    base = tmp_path_factory.mktemp("rootfs")
    res = _sh(TOOLS / "build-rootfs.sh", base / "rootfs", base / "rootfs.tar.gz")
    assert res.returncode == 0, res.stderr
    return base / "rootfs", base / "rootfs.tar.gz"


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libvirtd answering on lxc:///system for the module; stopped afterwards only if this
    fixture started it."""
    blocker = real_tier_blocker()
    if blocker:
        print(f"real LXC tests skipped: {blocker}")
        pytest.skip(blocker)
    if lxc_answers() is None:
        yield "lxc:///system"
        return
    state = tmp_path_factory.mktemp("libvirtd")
    res = _sh(TOOLS / "libvirtd.sh", "start", state)
    if res.returncode != 0 or lxc_answers() is not None:
        reason = f"libvirtd could not start: {res.stdout}{res.stderr}".strip()
        print(reason)
        pytest.skip(reason)
    try:
        yield "lxc:///system"
    finally:
        _sh(TOOLS / "libvirtd.sh", "stop", state)


@pytest.fixture(scope="module")
def vhosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """(state dir, host addresses) of N namespace hosts with libvirtd + sshd each."""
    blocker = real_tier_blocker()
    if blocker is None:
        for tool in ("/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"):
            if not Path(tool).exists():
                blocker = f"{tool} is missing (install openssh-server openssh-client)"
    if blocker is None and shutil.which("ip") is None:
        blocker = "iproute2 is missing"
    if blocker:
        print(f"namespace-host tests skipped: {blocker}")
        pytest.skip(blocker)
    n = int(os.environ.get("ONESERVER_VHOSTS", "3"))
    state = tmp_path_factory.mktemp("vhosts")
    res = _sh(TOOLS / "vhosts.sh", "up", str(n), state, timeout=300)
    try:
        if res.returncode != 0:
            reason = f"vhosts.sh up failed: {res.stdout}{res.stderr}".strip()
            print(reason)
            pytest.skip(reason)
        yield state, [f"10.213.1.{10 + i}" for i in range(1, n + 1)]
    finally:
        _sh(TOOLS / "vhosts.sh", "down", str(n), state, timeout=300)
