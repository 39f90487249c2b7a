"""Images on real parts: the ssh TM's host-side cache (hits, eviction, corrupt and half-written
entries, changed images, the per-host transfer limit, cancellation), the shared TM, and the
whole path through the API — images registered from busybox tarballs built by
tools/hosts/build-rootfs.sh, deployed through the LXC driver to the local libvirtd and to
namespace hosts over SSH, with a recover --delete during a slow PROLOG."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxc_specs import domain

from drivers.shared import SharedTM
from drivers.ssh import SshTM
from oneserver.driver_contract import DiskSpec, DriverError, HostRef, VMSpec
from oneserver.model.images import ImageState
from oneserver.model.vmstate import Lcm, VmState
from tests.conftest import Server, start_server, stop_server, wait_for, write_etc

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "hosts"
ACTIVE, RUNNING = int(VmState.ACTIVE), int(Lcm.RUNNING)
FAST = ["--monitor-interval", "0.5"]
LOCAL = HostRef(0, "localhost")




def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(base: Path, name: str, pad_mb: int = 0) -> Path:
    """A busybox rootfs tarball from tools/hosts/build-rootfs.sh, padded with incompressible
    data so transfers take measurable time."""
    tree = base / name
    res = subprocess.run([TOOLS / "build-rootfs.sh", tree], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"build-rootfs.sh failed: {res.stderr}")
    if pad_mb:
        (tree / "pad").write_bytes(os.urandom(pad_mb * 2**20))
    (tree / "etc" / "image-name").write_text(name + "\n")
    out = base / f"{name}.tar.gz"
    subprocess.run(["tar", "-C", tree, "-czf", out, "."], check=True)
    return out


@pytest.fixture(scope="module")
def tarballs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not Path("/bin/busybox").exists():
        pytest.skip("/bin/busybox is missing (apt-get install busybox-static)")
    base = tmp_path_factory.mktemp("img-tarballs")
    return {"a": build(base, "a"), "b": build(base, "b"), "big": build(base, "big", pad_mb=6)}


def vm(vm_id: int, tarball: Path, image_id: int = 1, sha: str | None = None) -> VMSpec:
    disk = DiskSpec(0, str(tarball), attrs={"SHA256": sha or sha256(tarball),
                                            "IMAGE_ID": str(image_id)})
    return VMSpec(id=vm_id, name=f"v{vm_id}", cpu=1, vcpu=1, memory_mb=32, disks=(disk,))


def counters(tm: SshTM, host: str = "localhost") -> dict[str, int]:
    return {k: int(v) for k, v in tm.metrics(host).items()}


@pytest.fixture
def tm(tmp_path: Path) -> SshTM:
    return SshTM({"datastore_dir": str(tmp_path / "data" / "datastores" / "0")})


# --------------------------------------------------------------------------- the TM's cache

def test_second_vm_is_a_cache_hit(tm: SshTM, tarballs: dict[str, Path], tmp_path: Path) -> None:
    first = tm.prolog(LOCAL, vm(1, tarballs["a"]))
    sent = counters(tm)["TM_BYTES_SENT"]
    assert sent == tarballs["a"].stat().st_size
    second = tm.prolog(LOCAL, vm(2, tarballs["a"]))
    c = counters(tm)
    assert (c["TM_CACHE_MISSES"], c["TM_CACHE_HITS"], c["TM_BYTES_SENT"]) == (1, 1, sent)
    for d in (first, second):
        assert os.access(Path(d, "disk.0", "sbin", "init"), os.X_OK)
        assert Path(d, "disk.0", "etc", "image-name").read_text() == "a\n"
    # The VM's copy is its own: writing it leaves the cache (and the other VM) alone.
    Path(second, "disk.0", "etc", "image-name").write_text("changed\n")
    third = tm.prolog(LOCAL, vm(3, tarballs["a"]))
    assert Path(third, "disk.0", "etc", "image-name").read_text() == "a\n"
    assert counters(tm)["TM_CACHE_HITS"] == 2
    cache = Path(tm.cache_dir(LOCAL))
    assert cache == tmp_path / "data" / "tm-cache" / "localhost"
    assert (cache / sha256(tarballs["a"]) / "OK").exists()
    for i, d in enumerate((first, second, third), start=1):
        tm.epilog(LOCAL, vm(i, tarballs["a"]))
        assert not Path(d).exists()
    assert (cache / sha256(tarballs["a"])).exists()  # the cache outlives the VMs


def test_eviction_least_recently_used(tmp_path: Path, tarballs: dict[str, Path]) -> None:
    tm = SshTM({"datastore_dir": str(tmp_path / "d" / "ds" / "0"), "CACHE_MAX_MB": "2"})
    cache = Path(tm.cache_dir(LOCAL))
    tm.prolog(LOCAL, vm(1, tarballs["a"], image_id=1))
    tm.prolog(LOCAL, vm(2, tarballs["b"], image_id=2))  # a busybox tree is > 1 MB: a goes
    assert not (cache / sha256(tarballs["a"])).exists()
    assert (cache / sha256(tarballs["b"]) / "OK").exists()
    assert counters(tm)["TM_CACHE_EVICTIONS"] == 1
    tm.prolog(LOCAL, vm(3, tarballs["a"], image_id=1))
    assert counters(tm)["TM_CACHE_MISSES"] == 3
    assert not (cache / sha256(tarballs["b"])).exists()
    assert not [p for p in cache.iterdir() if p.name.startswith((".tmp", ".trash"))]


def test_corrupt_entry_is_refilled(tm: SshTM, tarballs: dict[str, Path]) -> None:
    tm.prolog(LOCAL, vm(1, tarballs["a"]))
    entry = Path(tm.cache_dir(LOCAL)) / sha256(tarballs["a"])
    (entry / "rootfs" / "bin" / "busybox").unlink()  # damaged behind the driver's back
    d = tm.prolog(LOCAL, vm(2, tarballs["a"]))
    c = counters(tm)
    assert (c["TM_CACHE_CORRUPT"], c["TM_CACHE_MISSES"], c.get("TM_CACHE_HITS", 0)) == (1, 2, 0)
    assert Path(d, "disk.0", "bin", "busybox").exists()
    assert (entry / "rootfs" / "bin" / "busybox").exists()
    tm.prolog(LOCAL, vm(3, tarballs["a"]))
    assert counters(tm)["TM_CACHE_HITS"] == 1


def test_half_written_entry_is_never_used(tm: SshTM, tarballs: dict[str, Path]) -> None:
    sha = sha256(tarballs["a"])
    cache = Path(tm.cache_dir(LOCAL))
    # What a fill killed halfway leaves: a temp dir, or (a crash between steps) no OK marker.
    (cache / f".tmp.{sha}.dead" / "rootfs").mkdir(parents=True)
    (cache / sha / "rootfs" / "bin").mkdir(parents=True)
    d = tm.prolog(LOCAL, vm(1, tarballs["a"]))
    assert counters(tm)["TM_CACHE_MISSES"] == 1 and "TM_CACHE_HITS" not in tm.metrics("localhost")
    assert Path(d, "disk.0", "sbin", "init").exists()


def test_changed_image_drops_its_old_entry(tm: SshTM, tarballs: dict[str, Path]) -> None:
    cache = Path(tm.cache_dir(LOCAL))
    tm.prolog(LOCAL, vm(1, tarballs["a"], image_id=7))
    # Image 7 now has other content (a new checksum): its old entry goes.
    tm.prolog(LOCAL, vm(2, tarballs["b"], image_id=7))
    assert not (cache / sha256(tarballs["a"])).exists()
    assert (cache / sha256(tarballs["b"]) / "OK").exists()
    assert counters(tm)["TM_CACHE_DROPPED"] == 1


def test_cache_over_ssh_command(tarballs: dict[str, Path], tmp_path: Path) -> None:
    """The same through an ssh command (one that runs the script here), per host name."""
    script = tmp_path / "fakessh"
    script.write_text('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    script.chmod(0o755)
    tm = SshTM({"datastore_dir": str(tmp_path / "d" / "ds" / "0"), "ssh_command": str(script)})
    h1, h2 = HostRef(1, "node1"), HostRef(2, "node2")
    for i, host in enumerate((h1, h1, h2, h2)):
        assert Path(tm.prolog(host, vm(10 + i, tarballs["a"])), "disk.0", "sbin", "init").exists()
    for host in ("node1", "node2"):
        c = counters(tm, host)
        assert (c["TM_CACHE_MISSES"], c["TM_CACHE_HITS"]) == (1, 1)
        assert c["TM_BYTES_SENT"] == tarballs["a"].stat().st_size
    assert tm.cache_dir(h1) != tm.cache_dir(h2)


def test_host_transfer_limit(tarballs: dict[str, Path], tmp_path: Path) -> None:
    """Six VMs at once on one host with HOST_TRANSFERS=2: never more than two placements run
    there together, while another host is not held up by them."""
    log = tmp_path / "runs.log"
    script = tmp_path / "slowssh"
    script.write_text(f'#!/bin/sh\nh=$1\nshift\necho "start $h $(date +%s.%N)" >> {log}\n'
                      f'sleep 0.3\nsh -c "$*"; rc=$?\necho "end $h $(date +%s.%N)" >> {log}\n'
                      'exit $rc\n')
    script.chmod(0o755)
    tm = SshTM({"datastore_dir": str(tmp_path / "d" / "ds" / "0"), "ssh_command": str(script),
                "HOST_TRANSFERS": "2", "CACHE": "no"})
    errors: list[BaseException] = []

    def run(host: HostRef, i: int) -> None:
        try:
            tm.prolog(host, vm(100 + i, tarballs["a"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(HostRef(1, "busy"), i)) for i in range(6)]
    threads += [threading.Thread(target=run, args=(HostRef(2, "other"), 9))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    events = sorted((float(ts), kind, host) for kind, host, ts in
                    (line.split() for line in log.read_text().splitlines()))
    running, peak = 0, 0
    for _, kind, host in events:
        if "busy" in host:
            running += 1 if kind == "start" else -1
            peak = max(peak, running)
    assert peak == 2


def test_cancelled_transfer_cleans_up(tarballs: dict[str, Path], tmp_path: Path) -> None:
    tm = SshTM({"datastore_dir": str(tmp_path / "d" / "ds" / "0"), "BW_LIMIT_MBPS": "2"})
    seen: list[tuple[int, int]] = []

    def progress(vm_id: int, done: int, total: int) -> bool:
        seen.append((done, total))
        return done < 2 * 2**20  # "the VM left PROLOG" once 2 MB went

    tm.progress = progress
    t0 = time.monotonic()
    with pytest.raises(DriverError, match="cancelled"):
        tm.prolog(LOCAL, vm(1, tarballs["big"]))
    assert time.monotonic() - t0 < 3.0  # not the 3+ s the whole 6 MB would take
    assert not Path(tm.vm_dir(LOCAL, vm(1, tarballs["big"]))).exists()
    cache = Path(tm.cache_dir(LOCAL))
    assert not [p for p in cache.iterdir() if p.name != "by-image"]
    assert seen and seen[0][1] == tarballs["big"].stat().st_size


def test_shared_tm(tarballs: dict[str, Path], rootfs: tuple[Path, Path], tmp_path: Path) -> None:
    tm = SharedTM({"datastore_dir": str(tmp_path / "ds")})
    disks = (DiskSpec(0, str(tarballs["a"])), DiskSpec(1, str(rootfs[0]), target="/data"))
    spec = VMSpec(id=5, name="s", cpu=1, vcpu=1, memory_mb=32, disks=disks)
    d = tm.prolog(LOCAL, spec)
    assert Path(d, "disk.0", "etc", "image-name").read_text() == "a\n"
    assert Path(d, "disk.1", "sbin", "init").exists()
    tm.epilog(LOCAL, spec)
    assert not Path(d).exists()
    bad = VMSpec(id=6, name="s", cpu=1, vcpu=1, memory_mb=32,
                 disks=(DiskSpec(0, "/nonexistent/x.tar.gz"),))
    with pytest.raises(DriverError, match="not on the host"):
        tm.prolog(LOCAL, bad)
    assert not Path(tm.vm_dir(LOCAL, bad)).exists()


# --------------------------------------------------------------------------- through the API

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def register(one, ds: int, path: Path, name: str) -> int:  # noqa: ANN001 - pyone has no stubs
    iid = one.image.allocate(f'NAME="{name}"\nPATH="{path}"\n', ds)
    wait_for(f"image {name} READY", lambda: one.image.info(iid).STATE in (
        ImageState.READY, ImageState.ERROR))
    img = one.image.info(iid)
    assert img.STATE == ImageState.READY, img.TEMPLATE.get("ERROR")
    return iid


def image_vm(name: str, iid: int, **extra: str) -> str:
    lines = [f'NAME = "{name}"', "CPU = 0.1", "MEMORY = 32", f"DISK = [ IMAGE_ID = {iid} ]"]
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    return "\n".join(lines) + "\n"




def host_metric(one, hid: int, name: str) -> int:  # noqa: ANN001
    return int(dict(one.host.info(hid).TEMPLATE).get(name, 0))


@pytest.fixture(scope="module")
def local(libvirtd: str, tmp_path_factory: pytest.TempPathFactory, tarballs: dict[str, Path]
          ) -> Iterator[tuple[Server, int, int, libvirt.virConnect]]:
    """A server with host localhost and an image datastore whose SAFE_DIRS holds the
    tarballs; yields (server, host id, datastore id, libvirt connection)."""
    srv = start_server(tmp_path_factory.mktemp("img-lxc"), "sqlite", FAST)
    conn = libvirt.open(libvirtd)
    try:
        one = srv.pyone()
        ds = one.datastore.allocate(
            f'NAME="images"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
            f'SAFE_DIRS="{tarballs["a"].parent}"\n', -1)
        hid = one.host.allocate("localhost", "lxc", "lxc", -1)
        wait_for("host MONITORED", lambda: one.host.info(hid).STATE == 2)
        yield srv, hid, ds, conn
    finally:
        stop_server(srv)
        for dom in conn.listAllDomains(0):
            if dom.name().startswith("one-") and str(srv.data_dir) in dom.XMLDesc(0):
                dom.destroy()
        conn.close()


@pytest.mark.lxc
def test_image_vms_on_local_libvirtd(local: tuple[Server, int, int, libvirt.virConnect],
                                     tarballs: dict[str, Path]) -> None:
    srv, hid, ds, conn = local
    one = srv.pyone()
    iid = register(one, ds, tarballs["a"], "busybox-a")
    vids = []
    for i in range(2):
        vids.append(one.vm.allocate(image_vm(f"img-{i}", iid)))
        srv.wait_vm(vids[-1], ACTIVE, RUNNING)
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS) == (ImageState.USED, 2)
    for vid in vids:
        assert domain(conn, vid).isActive()
        disk = srv.data_dir / "datastores" / "0" / str(vid) / "disk.0"
        assert (disk / "etc" / "image-name").read_text() == "a\n"
        assert "TRANSFER_PROGRESS" not in dict(one.vm.info(vid).USER_TEMPLATE)
    # The second VM came from the host's cache: seen in the host's monitoring TEMPLATE.
    wait_for("cache counters on the host", lambda: host_metric(one, hid, "TM_CACHE_HITS") >= 1)
    assert host_metric(one, hid, "TM_CACHE_MISSES") == 1
    assert host_metric(one, hid, "TM_BYTES_SENT") == tarballs["a"].stat().st_size
    for vid in vids:
        one.vm.action("terminate-hard", vid)
    for vid in vids:
        srv.wait_vm(vid, VmState.DONE)
        assert domain(conn, vid) is None
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS) == (ImageState.READY, 0)


@pytest.mark.lxc
def test_persistent_image_keeps_what_its_vm_wrote(
        local: tuple[Server, int, int, libvirt.virConnect], tarballs: dict[str, Path]) -> None:
    """As in OpenNebula: a persistent image is used by one VM at a time and gets that VM's
    changes back when it ends, so the next VM starts from them."""
    srv, _, ds, conn = local
    one = srv.pyone()
    iid = register(one, ds, tarballs["a"], "busybox-persistent")
    one.image.persistent(iid, True)
    before = one.image.info(iid)
    first = one.vm.allocate(image_vm("pers-1", iid))
    srv.wait_vm(first, ACTIVE, RUNNING)
    assert one.image.info(iid).STATE == ImageState.USED_PERS
    disk = srv.data_dir / "datastores" / "0" / str(first) / "disk.0"
    (disk / "root" / "written-by-the-first-vm").write_text("kept\n")
    one.vm.action("terminate-hard", first)
    srv.wait_vm(first, VmState.DONE)
    after = one.image.info(iid)
    assert (after.STATE, after.RUNNING_VMS) == (ImageState.READY, 0)
    assert after.SOURCE != before.SOURCE and not Path(before.SOURCE).exists()
    assert after.TEMPLATE["SHA256"] != before.TEMPLATE["SHA256"]
    second = one.vm.allocate(image_vm("pers-2", iid))
    srv.wait_vm(second, ACTIVE, RUNNING)
    disk = srv.data_dir / "datastores" / "0" / str(second) / "disk.0"
    assert (disk / "root" / "written-by-the-first-vm").read_text() == "kept\n"
    assert domain(conn, second).isActive()
    one.vm.action("terminate-hard", second)
    srv.wait_vm(second, VmState.DONE)


def _ops(srv: Server, vid: int) -> list[tuple[str, str, float, float]]:
    db = sqlite3.connect(srv.db_url.removeprefix("sqlite:///"))
    try:
        return db.execute("SELECT action, status, started, finished FROM operation "
                          "WHERE kind = 'vm' AND vm_id = ? ORDER BY id", (vid,)).fetchall()
    finally:
        db.close()


@pytest.mark.lxc
def test_recover_delete_during_slow_prolog(local: tuple[Server, int, int, libvirt.virConnect],
                                           tarballs: dict[str, Path], tmp_path: Path) -> None:
    """The old driver's cancel/tm_delete race: the cleanup must never run while the transfer
    still writes. Here the transfer is slow (1 MB/s), progress shows in the VM, the delete
    stops it, and the cleanup runs strictly after it; nothing is left anywhere."""
    _, _, _, conn = local
    log = tmp_path / "ssh.log"
    wrapper = tmp_path / "localssh"  # "ssh" that runs here and logs each command's start/end
    wrapper.write_text(f'#!/bin/sh\nshift\necho "start $(date +%s.%N) $*" >> {log}\n'
                       f'sh -c "$*"; rc=$?\necho "end $(date +%s.%N)" >> {log}\nexit $rc\n')
    wrapper.chmod(0o755)
    # A server of its own, whose configured ssh command is the wrapper.
    srv = start_server(tmp_path / "srv", "sqlite",
                       [*FAST, "--etc", str(write_etc(tmp_path / "etc", str(wrapper)))])
    one = srv.pyone()
    ds = one.datastore.allocate(
        f'NAME="images"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
        f'SAFE_DIRS="{tarballs["a"].parent}"\n', -1)
    iid = register(one, ds, tarballs["big"], "busybox-big")
    hid = one.host.allocate("slowimg", "lxc", "lxc", -1)
    one.host.update(hid, 'LIBVIRT_URI = "lxc:///system"\nTM_BW_LIMIT_MBPS = "1"\n', 1)
    one.host.status(hid, 1)
    try:
        vid = one.vm.allocate(image_vm("slow", iid), True)
        one.vm.deploy(vid, hid)
        srv.wait_vm(vid, ACTIVE, Lcm.PROLOG)
        progress = wait_for("TRANSFER_PROGRESS", lambda: dict(
            one.vm.info(vid).USER_TEMPLATE).get("TRANSFER_PROGRESS"), 10)
        assert "%" in str(progress) and "MB" in str(progress)
        with pytest.raises(Exception, match="not available"):
            one.vm.action("terminate-hard", vid)
        one.vm.recover(vid, 3)
        srv.wait_vm(vid, VmState.DONE)
        assert one.image.info(iid).RUNNING_VMS == 0
        wait_for("both operations finished", lambda: [o[1] for o in _ops(srv, vid)] == [
            "failed", "done"] or [o[1] for o in _ops(srv, vid)] == ["done", "done"], 20)
        (_, _, _, deploy_end), (_, _, cleanup_start, _) = _ops(srv, vid)
        assert cleanup_start >= deploy_end  # one operation per VM at a time, in order
        vm_dir = srv.data_dir / "datastores" / "0" / str(vid)
        assert not vm_dir.exists() and domain(conn, vid) is None
        cache = srv.data_dir / "tm-cache" / "slowimg"  # no half entry, no temp dir left
        assert not [p for p in cache.iterdir() if p.name != "by-image"]
        # The transfer was stopped, not finished: far less than the 6 MB went.
        sent = wait_for("bytes counted", lambda: host_metric(one, hid, "TM_BYTES_SENT"))
        print(f"operations {_ops(srv, vid)}; {sent} of {tarballs['big'].stat().st_size} "
              "bytes sent before the delete stopped the transfer")
        assert sent < tarballs["big"].stat().st_size
        time.sleep(1.0)  # nothing shows up late
        assert not vm_dir.exists()
    finally:
        wait_for("host empty", lambda: not one.host.info(hid).VMS.ID)
        one.host.delete(hid)
        stop_server(srv)


# --------------------------------------------------------------------------- namespace hosts

@pytest.mark.netns
def test_images_on_namespace_hosts(vhosts: tuple[Path, list[str]], tarballs: dict[str, Path],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    state, addresses = vhosts
    tmp = tmp_path_factory.mktemp("img-vhosts")
    srv = start_server(tmp, "sqlite",
                       [*FAST, "--etc", str(write_etc(tmp / "etc", str(state / "sshwrap")))])
    one = srv.pyone()
    try:
        ds = one.datastore.allocate(
            f'NAME="images"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
            f'SAFE_DIRS="{tarballs["a"].parent}"\n', -1)
        iid = register(one, ds, tarballs["a"], "busybox")
        hids = [one.host.allocate(addr, "lxc", "lxc", -1) for addr in addresses[:2]]
        for hid in hids:
            wait_for("host MONITORED", lambda h=hid: one.host.info(h).STATE == 2)
        vids = []
        for hid in hids:  # two VMs per host, deployed one after the other
            for i in range(2):
                vid = one.vm.allocate(image_vm(f"ns-{hid}-{i}", iid), True)
                one.vm.deploy(vid, hid)
                srv.wait_vm(vid, ACTIVE, RUNNING, timeout=60)
                vids.append(vid)
        size = tarballs["a"].stat().st_size
        for hid in hids:  # one transfer per host; the second VM was a cache hit
            wait_for("host counters", lambda h=hid: host_metric(one, h, "TM_CACHE_HITS") == 1)
            assert host_metric(one, hid, "TM_CACHE_MISSES") == 1
            assert host_metric(one, hid, "TM_BYTES_SENT") == size
        for vid in vids:
            one.vm.action("terminate-hard", vid)
        for vid in vids:
            srv.wait_vm(vid, VmState.DONE, timeout=60)
        assert one.image.info(iid).RUNNING_VMS == 0
        for hid in hids:
            one.host.delete(hid)
    finally:
        stop_server(srv)
        shutil.rmtree(srv.data_dir / "tm-cache", ignore_errors=True)
