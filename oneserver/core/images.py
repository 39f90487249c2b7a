"""Datastore work for images, run by the core's executor: copy a registered rootfs into the
datastore (validating it on the way) and remove an image's files.

A copy writes ``BASE_PATH/.<hash>.part`` and renames it to ``BASE_PATH/<hash>[.tar.gz…]`` only
when the bytes are complete and the archive (or tree) checked out, so a datastore never holds
a half image, and a failed copy leaves nothing behind: the image turns ERROR with the reason in
its TEMPLATE/ERROR. Formats: ``tar``, ``tar.gz``, ``tar.xz``, ``tar.bz2`` (told apart by their
first bytes, not their names) and ``dir`` (a directory tree, copied as a tree)."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from oneserver import archives, db, numeric, store
from oneserver.errors import OneError
from oneserver.model import images
from oneserver.model.images import ImageState
from oneserver.template import Template

log = logging.getLogger("oneserver.model.images")
Doc = dict[str, Any]
CHUNK = 1 << 20
MAX_LINKS = 40


class BadImage(Exception):
    """The source is not a usable image; the message goes to the image's ERROR."""


# ----------------------------------------------------------------------------- operations

def copy(op: db.Operation) -> None:
    """Copy image ``op.vm_id`` into its datastore; READY or ERROR afterwards."""
    with db.write_transaction():
        if not store.exists("image", op.vm_id):
            return
        img = store.load("image", op.vm_id)
        if img["state"] != ImageState.LOCKED:
            return  # deleted (or otherwise moved on) before its copy ran
        ds = store.load("datastore", img["datastore_id"])
    src_id = op.args.get("from_image")
    final = None
    try:
        if src_id is None:
            source = images.check_path(ds, img["path"])  # again: the path may have changed
        else:
            source = store.load("image", int(src_id))["source"]
        final, fmt, sha, size_mb = place(source, ds["base_path"], _init_path(img))
    except Exception as exc:  # noqa: BLE001 - whatever broke, the image says why
        message = exc.message if isinstance(exc, OneError) else str(exc) or repr(exc)
        log.warning("image %s: copy failed: %s", op.vm_id, message)
        _finish(op, src_id, None, f"Error copying image in the datastore: {message}")
        return
    _finish(op, src_id, (final, fmt, sha, size_mb), None)


def _finish(op: db.Operation, src_id: Any, done: tuple[str, str, str, int] | None,
            error: str | None) -> None:
    with db.write_transaction():
        # Rows locked in the order the API locks them (source image, image, datastore), so a
        # clone in flight and its completion never wait on each other in a cycle.
        src = None
        if src_id is not None and store.exists("image", int(src_id)):
            src = store.load("image", int(src_id), for_update=True)
        alive = store.exists("image", op.vm_id)
        img = store.load("image", op.vm_id, for_update=True) if alive else None
        if img is not None and img["state"] == ImageState.LOCKED:
            tmpl = Template.from_json(img["template"])
            if done is not None:
                img["source"], img["format"], sha, img["size"] = done
                tmpl.set("SHA256", sha)
                if "ERROR" in tmpl:
                    tmpl.remove("ERROR")
                img["template"] = tmpl.to_json()
                images.set_state(img, ImageState.READY)
            else:
                img["template"] = tmpl.to_json()
                images.set_error(img, error or "unknown error")
                images.set_state(img, ImageState.ERROR)
            store.save("image", img)
            ds = store.load("datastore", img["datastore_id"], for_update=True)
            images.refresh_capacity(ds)
            store.save("datastore", ds)
        elif done is not None:
            _remove(done[0])  # the image went away while copying: keep nothing
        if src is not None:
            src["cloning_ops"] = max(0, src["cloning_ops"] - 1)
            if op.vm_id in src["clones"]:
                src["clones"].remove(op.vm_id)
            if src["cloning_ops"] == 0 and src["state"] in (ImageState.CLONE,
                                                             ImageState.USED) and not src["vms"]:
                images.set_state(src, ImageState.READY)
            store.save("image", src)


def save_persistent(vm: Doc, save: Callable[[int, str], bool]) -> None:
    """Before a VM's disks are removed at the end of its life: each disk of a persistent image
    is written back into the image, as OpenNebula does, so the next VM starts from what this
    one left. ``save(disk_id, dest)`` writes the disk's content to ``dest`` (the TM's save);
    the archive is checked and stored like a registered image, then replaces the old one."""
    for disk in Template.from_json(vm["template"]).vectors("DISK"):
        if disk.get("PERSISTENT") != "YES" or disk.get("SAVE") != "YES":
            continue
        oid = numeric.to_id(disk.get("IMAGE_ID", ""))
        disk_id = numeric.to_id(disk.get("DISK_ID", ""))
        if oid is None or disk_id is None or not store.exists("image", oid):
            continue  # written by the server when the VM took the image: changed behind it
        img = store.load("image", oid)
        base = store.load("datastore", img["datastore_id"])["base_path"]
        os.makedirs(base, exist_ok=True)
        part = os.path.join(base, f".{uuid.uuid4().hex}.save.part")
        try:
            if not save(disk_id, part):
                continue  # this transfer driver keeps no changes
            final, fmt, sha, size_mb = place(part, base, None)
        finally:
            _remove(part)
        with db.write_transaction():
            img = store.load("image", oid, for_update=True)
            old = img["source"]
            img["source"], img["format"], img["size"] = final, fmt, size_mb
            tmpl = Template.from_json(img["template"])
            tmpl.set("SHA256", sha)
            img["template"] = tmpl.to_json()
            img["modtime"] = int(time.time())
            store.save("image", img)
        if old != final:
            _remove(old)
        log.info("image %s: saved back from VM %s (%s)", oid, vm["id"], sha[:12])


def delete(op: db.Operation) -> None:
    """Remove image ``op.vm_id``'s files, then the image."""
    with db.write_transaction():
        if not store.exists("image", op.vm_id):
            return
        img = store.load("image", op.vm_id)
        if img["state"] != ImageState.DELETE:
            return
        ds = store.load("datastore", img["datastore_id"])
    source = img["source"]
    if source and _inside(source, ds["base_path"]):
        _remove(source)
    with db.write_transaction():
        if not store.exists("image", op.vm_id):
            return
        store.delete("image", op.vm_id)
        ds = store.load("datastore", img["datastore_id"], for_update=True)
        if op.vm_id in ds["images"]:
            ds["images"].remove(op.vm_id)
        images.refresh_capacity(ds)
        store.save("datastore", ds)


def _init_path(img: Doc) -> str | None:
    """What must exist in an OS image: the template's INIT, else /sbin/init (the LXC driver's
    default). Other types (DATABLOCK…) are data: nothing is required."""
    if img["type"] != images.TYPES.index("OS"):
        return None
    return Template.from_json(img["template"]).get_str("INIT") or "/sbin/init"


def _inside(path: str, base: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(base).rstrip("/") + "/")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# ----------------------------------------------------------------------------- the copy

def detect_format(path: str) -> str:
    if os.path.isdir(path):
        return "dir"
    fmt = archives.sniff(path, by_name=False)
    if fmt is not None:
        return fmt
    raise BadImage(f"{path} is neither a directory nor a tar archive (plain, gzip, xz or "
                   "bzip2)")


def place(source: str, base_path: str, init: str | None) -> tuple[str, str, str, int]:
    """Copy ``source`` into ``base_path`` under a fresh name and check it; returns (path,
    format, sha256, size in MB unpacked). On any failure nothing new remains."""
    fmt = detect_format(source)
    os.makedirs(base_path, exist_ok=True)
    _remove_stale_parts(base_path)
    name = uuid.uuid4().hex
    part = os.path.join(base_path, f".{name}.part")
    final = os.path.join(base_path, name + ("" if fmt == "dir" else f".{fmt}"))
    try:
        if fmt == "dir":
            sha, size = _copy_tree(source, part, init)
        else:
            sha, size = _copy_archive(source, part, init)
        os.rename(part, final)
    except BaseException:
        _remove(part)
        raise
    return final, fmt, sha, max(1, math.ceil(size / 2**20))


def _remove_stale_parts(base_path: str, age: float = 3600.0) -> None:
    """Parts of copies a crashed core never finished (a copy in progress keeps writing, so
    its part is never this old)."""
    now = time.time()
    for name in os.listdir(base_path):
        path = os.path.join(base_path, name)
        if name.startswith(".") and name.endswith(".part"):
            try:
                if now - os.lstat(path).st_mtime > age:
                    _remove(path)
            except OSError:
                continue


def _copy_archive(source: str, part: str, init: str | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(part, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    members: dict[str, tarfile.TarInfo] = {}
    size = 0
    try:
        with tarfile.open(part, "r:*") as tar:
            for m in tar:  # reads the whole stream: a truncated or corrupt archive fails here
                name = _member_name(m.name)
                if name is None:
                    raise BadImage(f"unsafe member {m.name!r} (absolute or leaving the rootfs)")
                members[name] = m
                size += m.size
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BadImage(f"{source} is not a valid tar archive: {exc}") from exc
    if not members:
        raise BadImage(f"{source} is an empty archive")
    if init is not None:
        _require(init, source, lambda p: _tar_lookup(members, p))
    return digest.hexdigest(), size


def _member_name(name: str) -> str | None:
    """The member's path relative to the rootfs ("" for the root), None if it is absolute or
    climbs out of it."""
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/"):
        return None
    norm = posixpath.normpath(name) if name not in ("", ".") else "."
    if norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm


def _tar_lookup(members: dict[str, tarfile.TarInfo], path: str) -> tuple[str, str] | None:
    m = members.get(path)
    if m is None:
        # A directory that only appears as the parent of other members.
        prefix = path + "/"
        return ("dir", "") if any(k.startswith(prefix) for k in members) else None
    if m.issym():
        return "link", m.linkname
    if m.isdir():
        return "dir", ""
    return "file", ""


def _require(init: str, source: str, lookup: Callable[[str], tuple[str, str] | None]) -> None:
    """``init`` must resolve (following the rootfs's own symlinks) to a file in the image."""
    if resolve(init, lookup) is None:
        raise BadImage(f"{source} has no {init} (the container's init): give INIT in the "
                       "image template if it boots from another path")


def resolve(path: str, lookup: Callable[[str], tuple[str, str] | None]) -> str | None:
    """``path`` inside a rootfs, symlinks resolved against the rootfs (not this machine);
    None when it leads nowhere. ``lookup(rel)`` → ("file"|"dir"|"link", target) or None."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        rel = "/".join([*done, part])
        found = lookup(rel)
        if found is None:
            return None
        kind, target = found
        if kind == "link":
            hops += 1
            if hops > MAX_LINKS:
                return None
            todo = [p for p in target.split("/") if p] + todo
            if target.startswith("/"):
                done = []
            continue
        if kind == "file" and todo:
            return None
        done.append(part)
    return "/".join(done)


def _copy_tree(source: str, part: str, init: str | None) -> tuple[str, int]:
    """Copy a directory tree (owners, modes, links kept) and hash a canonical tar of it, so the
    same tree always has the same checksum."""
    os.makedirs(part)
    res = subprocess.run(["cp", "-a", "--", source.rstrip("/") + "/.", part + "/"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise BadImage(f"copying {source} failed: {res.stderr.strip()[:300]}")
    if init is not None:
        _require(init, source, lambda p: _dir_lookup(part, p))
    tar = subprocess.Popen(
        ["tar", "-C", part, "--sort=name", "--numeric-owner", "--format=gnu", "-cf", "-", "."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    digest = hashlib.sha256()
    assert tar.stdout is not None
    while chunk := tar.stdout.read(CHUNK):
        digest.update(chunk)
    err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
    if tar.wait() != 0:
        raise BadImage(f"reading {source} failed: {err.strip()[:300]}")
    size = 0
    for root, _dirs, files in os.walk(part):
        for f in files:
            size += os.lstat(os.path.join(root, f)).st_size
    return digest.hexdigest(), size


def _dir_lookup(root: str, rel: str) -> tuple[str, str] | None:
    try:
        st = os.lstat(os.path.join(root, rel))
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "link", os.readlink(os.path.join(root, rel))
    if stat.S_ISDIR(st.st_mode):
        return "dir", ""
    return "file", ""
