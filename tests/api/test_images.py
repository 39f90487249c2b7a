"""Images and image datastores through the API (pyone 7.3.80 and raw XML-RPC) on the shared
server: registration from real archives and directories (copied by the core, never by an API
worker), states, RUNNING_VMS as VMs on dummy hosts take and give back images, persistent
images, bad images refused with nothing left behind, and every document against image.xsd."""

from __future__ import annotations

import hashlib
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyone
import pytest
import xsd  # tests/api/xsd.py, beside this file

from oneserver.model.images import ImageState
from tests.conftest import wait_for

READY, USED, DISABLED, LOCKED, ERROR, USED_PERS = (
    ImageState.READY, ImageState.USED, ImageState.DISABLED, ImageState.LOCKED,
    ImageState.ERROR, ImageState.USED_PERS)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"




def make_rootfs(path: Path, init: bool = True, sbin_link: bool = False) -> Path:
    """A tiny rootfs tree (no busybox needed: nothing runs it on dummy hosts)."""
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    (path / "bin" / "sh").write_text("#!/bin/true\n")
    (path / "etc" / "hostname").write_text("img\n")
    (path / "data.bin").write_bytes(os.urandom(300_000))
    if sbin_link:  # merged /usr, as modern distributions ship it
        (path / "usr" / "sbin").mkdir(parents=True)
        os.symlink("usr/sbin", path / "sbin")
        target = path / "usr" / "sbin" / "init"
    else:
        (path / "sbin").mkdir()
        target = path / "sbin" / "init"
    if init:
        target.write_text("#!/bin/sh\nexec sleep 1000\n")
        target.chmod(0o755)
    return path


def pack(tree: Path, out: Path, mode: str = "w:gz") -> Path:
    with tarfile.open(out, mode) as tar:
        tar.add(tree, arcname=".")
    return out


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def ds(server, images_dir: Path) -> int:  # noqa: ANN001 - conftest's Server
    """An image datastore whose SAFE_DIRS is this module's directory ("/" is restricted)."""
    one = server.pyone()
    return one.datastore.allocate(
        f'NAME="{uniq("imgds")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
        f'RESTRICTED_DIRS="/"\nSAFE_DIRS="{images_dir}"\n', -1)


@pytest.fixture(scope="module")
def tgz(images_dir: Path) -> Path:
    return pack(make_rootfs(images_dir / "tree"), images_dir / "rootfs.tar.gz")


def register(one, ds: int, path: Path | str, **extra: str) -> int:  # noqa: ANN001
    lines = [f'NAME="{uniq("img")}"', f'PATH="{path}"']
    lines += [f'{k}="{v}"' for k, v in extra.items()]
    return one.image.allocate("\n".join(lines) + "\n", ds)


def wait_image(one, iid: int, *states: int, timeout: float = 20.0):  # noqa: ANN001, ANN201
    return wait_for(f"image {iid} in {states}",
                    lambda: (i := one.image.info(iid)).STATE in states and i, timeout)


def valid(server, method: str, *args: object) -> str:  # noqa: ANN001
    ok, body, *_ = server.call(method, *args)
    assert ok, body
    assert xsd.errors(body) == [], body
    return body


def files_in(base: str) -> set[str]:
    return set(os.listdir(base)) if os.path.isdir(base) else set()


@pytest.fixture
def host(server) -> Iterator[int]:  # noqa: ANN001
    """A dummy host, disabled so only this test's manual deploys land there."""
    one = server.pyone()
    hid = one.host.allocate(uniq("img-host"), "dummy", "dummy", -1)
    one.host.status(hid, 1)
    wait_for("host capacity", lambda: one.host.info(hid).HOST_SHARE.TOTAL_CPU == 800)
    yield hid


def vm_with(one, disk: str, hid: int) -> int:  # noqa: ANN001
    return one.vm.allocate(f'NAME="{uniq("imgvm")}"\nCPU=0.1\nMEMORY=32\nDISK=[{disk}]\n'
                           f'SCHED_REQUIREMENTS="ID = {hid}"\n', True)


# ----------------------------------------------------------------------------- registration

@pytest.mark.parametrize("fmt", ["tar.gz", "tar.xz", "tar", "dir"])
def test_register_formats(server, ds: int, images_dir: Path, fmt: str) -> None:  # noqa: ANN001
    one = server.pyone()
    tree = make_rootfs(images_dir / uniq("t"))
    if fmt == "dir":
        path = tree
    else:
        mode = {"tar.gz": "w:gz", "tar.xz": "w:xz", "tar": "w"}[fmt]
        # A misleading name: the format comes from the bytes, not the suffix.
        path = pack(tree, images_dir / f"{uniq('r')}.img", mode)
    iid = register(one, ds, path)
    img = wait_image(one, iid, READY, ERROR)
    assert img.STATE == READY, img.TEMPLATE.get("ERROR")
    assert img.FORMAT == fmt and img.PATH == str(path)
    base = one.datastore.info(ds).BASE_PATH
    assert img.SOURCE.startswith(base + "/") and os.path.exists(img.SOURCE)
    assert img.SIZE >= 1 and img.RUNNING_VMS == 0 and img.TYPE == 0 and img.PERSISTENT == 0
    sha = img.TEMPLATE["SHA256"]
    if fmt != "dir":
        assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert iid in one.datastore.info(ds).IMAGES.ID
    valid(server, "one.image.info", iid)
    valid(server, "one.imagepool.info", -2, -1, -1)
    valid(server, "one.datastore.info", ds)


def test_directory_checksum_is_canonical(server, ds: int, images_dir: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    tree = make_rootfs(images_dir / uniq("same"))
    a, b = register(one, ds, tree), register(one, ds, tree)
    sums = [wait_image(one, i, READY).TEMPLATE["SHA256"] for i in (a, b)]
    assert sums[0] == sums[1]
    (tree / "etc" / "hostname").write_text("changed\n")
    c = register(one, ds, tree)
    assert wait_image(one, c, READY).TEMPLATE["SHA256"] != sums[0]


def test_merged_usr_rootfs_finds_init(server, ds: int, images_dir: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    path = pack(make_rootfs(images_dir / uniq("usr"), sbin_link=True),
                images_dir / f"{uniq('usr')}.tar.gz")
    assert wait_image(one, register(one, ds, path), READY, ERROR).STATE == READY


def test_image_datastore_capacity(server, ds: int, tgz: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    wait_image(one, register(one, ds, tgz), READY)
    d = one.datastore.info(ds)
    assert d.TOTAL_MB > 0 and d.FREE_MB > 0 and d.USED_MB > 0
    assert d.TOTAL_MB >= d.FREE_MB


# ----------------------------------------------------------------------------- bad images

def _bad(server, ds: int, path: Path, why: str) -> None:  # noqa: ANN001
    """Registered, then the core's check fails: ERROR with the reason, no file left."""
    one = server.pyone()
    base = one.datastore.info(ds).BASE_PATH
    before = files_in(base)
    iid = register(one, ds, path)
    img = wait_image(one, iid, ERROR, READY)
    assert img.STATE == ERROR
    assert why in img.TEMPLATE["ERROR"], img.TEMPLATE["ERROR"]
    assert files_in(base) <= before | {n for n in files_in(base) if not n.startswith(".")}
    assert not [n for n in files_in(base) if n.endswith(".part")]
    valid(server, "one.image.info", iid)
    one.image.delete(iid)
    wait_for("the failed image gone", lambda: iid not in one.datastore.info(ds).IMAGES.ID)


def test_corrupt_archive(server, ds: int, images_dir: Path, tgz: Path) -> None:  # noqa: ANN001
    truncated = images_dir / f"{uniq('trunc')}.tar.gz"
    truncated.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    _bad(server, ds, truncated, "not a valid tar archive")
    garbage = images_dir / f"{uniq('garbage')}.tar.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00 no gzip stream at all" * 10)
    _bad(server, ds, garbage, "not a valid tar archive")
    text = images_dir / f"{uniq('text')}.tar"
    text.write_text("hello\n")
    _bad(server, ds, text, "neither a directory nor a tar archive")


def test_missing_init(server, ds: int, images_dir: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    tree = make_rootfs(images_dir / uniq("noinit"), init=False)
    path = pack(tree, images_dir / f"{uniq('noinit')}.tar.gz")
    _bad(server, ds, path, "has no /sbin/init")
    _bad(server, ds, tree, "has no /sbin/init")
    # With INIT in the image template, that path is what must exist.
    assert wait_image(one, register(one, ds, path, INIT="/bin/sh"), READY, ERROR).STATE == READY
    # A DATABLOCK is data: no init needed.
    assert wait_image(one, register(one, ds, path, TYPE="DATABLOCK"), READY).TYPE == 2


def test_refused_paths_leave_nothing(server, ds: int, images_dir: Path,  # noqa: ANN001
                                     tmp_path: Path) -> None:
    one = server.pyone()
    count = len(one.imagepool.info(-2, -1, -1).IMAGE)
    outside = pack(make_rootfs(tmp_path / "outside"), tmp_path / "outside.tar.gz")
    cases = [(str(outside), "restricted directory"),
             ("http://example.com/rootfs.tar.gz", "URL"),
             (str(images_dir / "does-not-exist.tar.gz"), "does not exist"),
             ("relative/rootfs.tar.gz", "absolute")]
    for path, why in cases:
        ok, msg, code, *_ = server.call("one.image.allocate",
                                        f'NAME="{uniq("no")}"\nPATH="{path}"\n', ds)
        assert not ok and code == 0x4000 and why in msg, msg
    ok, msg, *_ = server.call("one.image.allocate", f'NAME="{uniq("no")}"\n', ds)
    assert not ok and "No PATH" in msg
    ok, msg, *_ = server.call("one.image.allocate", f'NAME="{uniq("no")}"\nPATH="{outside}"\n', 0)
    assert not ok and "not an image datastore" in msg
    assert len(one.imagepool.info(-2, -1, -1).IMAGE) == count


# ----------------------------------------------------------------------------- VMs and images

def test_vm_takes_and_gives_back(server, ds: int, tgz: Path, host: int) -> None:  # noqa: ANN001
    one = server.pyone()
    iid = register(one, ds, tgz)
    img = wait_image(one, iid, READY)
    a = vm_with(one, f"IMAGE_ID={iid}", host)
    b = vm_with(one, f'IMAGE="{img.NAME}"', host)
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS, sorted(img.VMS.ID)) == (USED, 2, sorted([a, b]))
    disk = one.vm.info(a).TEMPLATE["DISK"]
    assert disk["IMAGE_ID"] == str(iid) and disk["SOURCE"] == img.SOURCE
    assert disk["SHA256"] == img.TEMPLATE["SHA256"] and disk["CLONE"] == "YES"
    assert disk["DATASTORE_ID"] == str(ds) and disk["SIZE"] == str(img.SIZE)
    ok, msg, *_ = server.call("one.image.delete", iid)
    assert not ok and "used by 2 VM" in msg
    one.vm.deploy(a, host, False, -1, "")
    server.wait_vm(a, 3, 3)
    one.vm.action("terminate", a)
    server.wait_vm(a, 6)
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS, img.VMS.ID) == (USED, 1, [b])
    one.vm.action("terminate", b)  # from HOLD: straight to DONE
    server.wait_vm(b, 6)
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS) == (READY, 0)
    valid(server, "one.image.info", iid)


def test_persistent_one_vm_at_a_time(server, ds: int, tgz: Path, host: int) -> None:  # noqa: ANN001
    one = server.pyone()
    iid = register(one, ds, tgz, PERSISTENT="YES")
    assert wait_image(one, iid, READY).PERSISTENT == 1
    a = vm_with(one, f"IMAGE_ID={iid}", host)
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS) == (USED_PERS, 1)
    assert one.vm.info(a).TEMPLATE["DISK"]["CLONE"] == "NO"
    ok, msg, code, *_ = server.call("one.vm.allocate",
                                    f"CPU=0.1\nMEMORY=32\nDISK=[IMAGE_ID={iid}]\n", True)
    assert not ok and code == 0x4000 and "persistent" in msg, msg
    ok, msg, *_ = server.call("one.image.persistent", iid, False)
    assert not ok and "in use" in msg
    one.vm.recover(a, 3)  # delete: DONE at once
    assert one.image.info(iid).STATE == READY
    b = vm_with(one, f"IMAGE_ID={iid}", host)
    assert one.image.info(iid).VMS.ID == [b]
    one.vm.action("terminate", b)
    assert one.image.persistent(iid, False) == iid
    assert one.image.info(iid).PERSISTENT == 0


def test_unusable_images_are_refused(server, ds: int, tgz: Path, images_dir: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    iid = register(one, ds, tgz)
    wait_image(one, iid, READY)
    one.image.enable(iid, False)
    assert one.image.info(iid).STATE == DISABLED
    ok, msg, *_ = server.call("one.vm.allocate", f"CPU=1\nMEMORY=8\nDISK=[IMAGE_ID={iid}]", True)
    assert not ok and "DISABLED" in msg
    one.image.enable(iid, True)
    assert one.image.info(iid).STATE == READY
    for disk, why in (("IMAGE_ID=999999", "Error getting image [999999]"),
                      ('IMAGE="no-such-image"', "does not exist")):
        ok, msg, *_ = server.call("one.vm.allocate", f"CPU=1\nMEMORY=8\nDISK=[{disk}]", True)
        assert not ok and why in msg, msg
    # SOURCE disks (a path, no image) keep working.
    vid = one.vm.allocate(f'CPU=1\nMEMORY=8\nDISK=[SOURCE="{tgz}"]', True)
    assert one.vm.info(vid).TEMPLATE["DISK"]["SOURCE"] == str(tgz)


# ----------------------------------------------------------------------------- other methods

def test_image_methods(server, ds: int, tgz: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    iid = register(one, ds, tgz, DESCRIPTION="first")
    img = wait_image(one, iid, READY)
    base = one.datastore.info(ds).BASE_PATH
    new = uniq("renamed")
    assert one.image.rename(iid, new) == iid and one.image.info(iid).NAME == new
    one.image.update(iid, 'DESCRIPTION="second"\nLABEL="x"', 1)
    t = one.image.info(iid).TEMPLATE
    assert t["DESCRIPTION"] == "second" and t["LABEL"] == "x" and t["SHA256"]
    one.image.chtype(iid, "DATABLOCK")
    assert one.image.info(iid).TYPE == 2
    ok, msg, *_ = server.call("one.image.chtype", iid, "FLOPPY")
    assert not ok
    one.image.chtype(iid, "OS")
    one.image.chmod(iid, 1, 1, 1, 1, 0, 0, 0, 0, 0)
    assert one.image.info(iid).PERMISSIONS.GROUP_U == 1
    one.image.chown(iid, -1, 1)
    assert one.image.info(iid).GID == 1
    one.image.lock(iid, 4)
    ok, msg, *_ = server.call("one.image.rename", iid, uniq("locked"))
    assert not ok
    one.image.unlock(iid)
    clone = one.image.clone(iid, uniq("clone"))
    c = wait_image(one, clone, READY)
    assert c.TEMPLATE["SHA256"] == img.TEMPLATE["SHA256"] and c.SOURCE != img.SOURCE
    assert c.CLONING_ID == iid and one.image.info(iid).STATE == READY
    assert one.image.info(iid).CLONING_OPS == 0
    valid(server, "one.image.info", clone)
    with pytest.raises(pyone.OneException):
        one.image.clone(iid, c.NAME)  # name taken
    source = c.SOURCE
    one.image.delete(clone)
    wait_for("the clone deleted", lambda: clone not in one.datastore.info(ds).IMAGES.ID)
    assert not os.path.exists(source) and os.path.exists(img.SOURCE)
    assert not [n for n in files_in(base) if n.startswith(".")]
    ok, msg, code, *_ = server.call("one.image.info", clone)
    assert not ok and code == 0x400
    valid(server, "one.imagepool.info", -2, -1, -1)


def test_image_pool_filters(server, ds: int, tgz: Path) -> None:  # noqa: ANN001
    one = server.pyone()
    iid = register(one, ds, tgz)
    wait_image(one, iid, 1)  # READY: no copy left in flight for the next test to see
    ids = [i.ID for i in one.imagepool.info(-2, -1, -1).IMAGE]
    assert iid in ids and ids == sorted(ids, reverse=True)
    assert [i.ID for i in one.imagepool.info(-2, iid, iid).IMAGE] == [iid]
    body = valid(server, "one.imagepool.info", -3, -1, -1)
    assert f"<ID>{iid}</ID>" in body


def test_delete_while_locked(server, ds: int, tgz: Path) -> None:  # noqa: ANN001
    """A delete right after allocate is ordered after the copy: nothing is left either way."""
    one = server.pyone()
    base = one.datastore.info(ds).BASE_PATH
    before = files_in(base)
    iid = register(one, ds, tgz)
    one.image.delete(iid)
    wait_for("deleted", lambda: not server.call("one.image.info", iid)[0])
    assert files_in(base) <= before
    assert iid not in one.datastore.info(ds).IMAGES.ID
