"""Images: states, where they may be registered from, and how VMs take and give them back.

Policy shared by the API workers (allocate, attach to a VM) and the core (copy into the
datastore). Image documents are changed inside the caller's write transaction; the copy itself
runs in the core (``oneserver.core.images``)."""

from __future__ import annotations

import enum
import os
import shutil
import stat
from typing import Any

from oneserver import numeric, settings, store
from oneserver.errors import ACTION, OneError
from oneserver.model.vmstate import VmState
from oneserver.template import Template

Doc = dict[str, Any]


class ImageState(enum.IntEnum):
    INIT = 0
    READY = 1
    USED = 2
    DISABLED = 3
    LOCKED = 4
    ERROR = 5
    CLONE = 6
    DELETE = 7
    USED_PERS = 8
    LOCKED_USED = 9
    LOCKED_USED_PERS = 10


# Image TYPE (the element is the index; the template and the CLI use the names).
TYPES = ("OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT", "BACKUP")
# What VMs may attach: a persistent image only when nobody uses it.
ATTACHABLE = {ImageState.READY, ImageState.USED}
ATTACHABLE_PERSISTENT = {ImageState.READY}
MAX_LINKS = 40  # symlinks followed in one path, as Linux's ELOOP limit


def set_state(img: Doc, state: ImageState) -> None:
    img["prev_state"], img["state"] = img["state"], int(state)


def set_error(img: Doc, message: str) -> None:
    tmpl = Template.from_json(img["template"])
    tmpl.set("ERROR", message)
    img["template"] = tmpl.to_json()


def clear_error(img: Doc) -> None:
    tmpl = Template.from_json(img["template"])
    if "ERROR" in tmpl:
        tmpl.remove("ERROR")
        img["template"] = tmpl.to_json()


# ----------------------------------------------------------------------------- paths

def _dirs(value: str) -> list[str]:
    return [os.path.realpath(d) for d in value.split() if d.startswith("/")]


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def check_path(ds: Doc, path: str) -> str:
    """The real path of ``path`` if images may be registered from it, else a message why not.
    As oned's datastore drivers: refused under the datastore's ``RESTRICTED_DIRS`` unless under
    one of its ``SAFE_DIRS``; the datastores themselves are always refused (an image must not
    be a file the server owns). Local paths only: no URLs.

    A refused place is refused without being looked at, so the answer never tells whether
    something exists there: the path is resolved one component at a time (symlinks followed
    as the kernel follows them) and each step is checked before it is stat'ed."""
    if "://" in path:
        raise OneError(ACTION, f"PATH {path} is a URL; only local paths can be registered")
    if not path.startswith("/"):
        raise OneError(ACTION, f"PATH {path} is not an absolute path")
    real = _Places(ds).resolve(path)
    if real is None:
        raise OneError(ACTION, f"PATH {path} does not exist")
    return real


class _Places:
    """Where a datastore may read images from, decided on paths alone."""

    def __init__(self, ds: Doc) -> None:
        self.tmpl = Template.from_json(ds["template"])
        self.ds_id = ds["id"]
        self.safe = _dirs(self.tmpl.get_str("SAFE_DIRS", ""))
        self.restricted = _dirs(self.tmpl.get_str("RESTRICTED_DIRS", ""))
        self.own = os.path.realpath(settings.current().datastores_dir)

    def check(self, path: str, user_path: str) -> None:
        """Refuse ``path`` (absolute, no symlinks in it) unless images may come from there."""
        if _under(path, self.own):
            raise OneError(ACTION, f"PATH {user_path} is inside the datastores directory "
                                   f"{self.own}")
        if any(_under(path, r) for r in self.restricted) and not any(
                _under(path, s) for s in self.safe):
            raise OneError(ACTION, f"PATH {user_path} is in a restricted directory "
                                   f"(RESTRICTED_DIRS={self.tmpl.get_str('RESTRICTED_DIRS')!r}, "
                                   f"SAFE_DIRS={self.tmpl.get_str('SAFE_DIRS')!r} of datastore "
                                   f"{self.ds_id})")

    def on_the_way(self, path: str) -> bool:
        """A directory above a SAFE_DIRS entry: real (the entries are real paths), so it is
        walked through without a look."""
        return any(_under(s, path) and s != path for s in self.safe)

    def resolve(self, user_path: str) -> str | None:
        """The real path ``user_path`` leads to, None if nothing is there; refused (and not
        looked at) as soon as a step leaves the allowed places."""
        todo = [p for p in reversed(user_path.split("/")) if p]  # next component last
        done = "/"
        hops = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                done = os.path.dirname(done)
                continue
            step = os.path.join(done, part)
            if self.on_the_way(step):
                done = step
                continue
            self.check(step, user_path)
            try:
                st = os.lstat(step)
                target = os.readlink(step) if stat.S_ISLNK(st.st_mode) else None
            except (OSError, ValueError):  # missing, not a directory, NUL byte, too long…
                return None
            if target is None:
                done = step
                continue
            hops += 1
            if hops > MAX_LINKS:
                return None
            todo += [p for p in reversed(target.split("/")) if p]
            if target.startswith("/"):
                done = "/"
        self.check(done, user_path)
        return done


def refresh_capacity(ds: Doc) -> None:
    """TOTAL/FREE/USED_MB of the filesystem holding the datastore (as oned's monitor of an
    fs datastore reports it)."""
    path = ds["base_path"]
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        usage = shutil.disk_usage(path or "/")
    except OSError:
        return
    mb = 1024 * 1024
    ds["total_mb"], ds["free_mb"], ds["used_mb"] = (
        usage.total // mb, usage.free // mb, usage.used // mb)


# ----------------------------------------------------------------------------- VM disks

def _find(ctx_uid: int, disk: dict[str, str]) -> Doc:
    """The image a DISK names, read as ImagePool::acquire_disk reads it: IMAGE_ID when it is
    a number (an ``int``), else IMAGE by name (+ IMAGE_UID/IMAGE_UNAME; the caller's own
    image by default); a DISK with neither is not an image disk."""
    oid = numeric.to_id(disk.get("IMAGE_ID", ""))
    if oid is not None:
        return store.load("image", oid, for_update=True)
    name = disk.get("IMAGE", "")
    if not name:
        raise OneError(ACTION, f"Unknown disk type {disk.get('TYPE', '').upper()}")
    uid = _owner(ctx_uid, disk)
    if uid is None:
        raise OneError(ACTION, f"User {ctx_uid} does not own an image with name: {name} . "
                               "Set IMAGE_UNAME or IMAGE_UID of owner in DISK.")
    oid = store.name_taken("image", name, uid)
    if oid is None:
        raise OneError(ACTION, f"Image {name!r} of user {uid} does not exist")
    return store.load("image", oid, for_update=True)


def _owner(ctx_uid: int, disk: dict[str, str]) -> int | None:
    """Whose image a DISK names (VirtualMachineDisk::get_uid): IMAGE_UID read as a C++
    stream reads an ``int`` (what follows the number is ignored), else IMAGE_UNAME's user,
    else the caller; None when that names nobody."""
    if disk.get("IMAGE_UID", "") != "":
        return numeric.leading_int(disk["IMAGE_UID"])
    if disk.get("IMAGE_UNAME", "") != "":
        return store.name_taken("user", disk["IMAGE_UNAME"])
    return ctx_uid


def attach(vm_id: int, system: Template, ctx_uid: int,
           may_use: Any) -> None:
    """Resolve every DISK that names an image (``IMAGE_ID`` or ``IMAGE``) and take the image
    for VM ``vm_id``: the DISK gets the image's SOURCE, SIZE, datastore and checksum, the
    image counts the VM (USED, or USED_PERS for a persistent image, which only one VM may
    hold). ``may_use(image_doc)`` raises when the caller lacks USE on it. Within the caller's
    transaction: a refused disk leaves nothing changed."""
    taken: dict[int, Doc] = {}
    disks = system.vectors("DISK")
    for i, disk in enumerate(disks):
        if disk.get("IMAGE_ID", "") == "" and not disk.get("IMAGE"):
            continue
        try:
            img = _take(ctx_uid, disk, taken, may_use)
        except OneError as exc:
            if exc.code != ACTION:
                raise
            raise OneError(ACTION, f"DISK {i}: {exc.message}") from None  # as oned words it
        persistent = bool(img["persistent"])
        ds = store.load("datastore", img["datastore_id"])
        tmpl = Template.from_json(img["template"])
        disk.update({
            "IMAGE": img["name"], "IMAGE_ID": str(img["id"]), "IMAGE_UID": str(img["uid"]),
            "IMAGE_UNAME": img["uname"], "IMAGE_STATE": str(img["state"]),
            "SOURCE": img["source"], "SIZE": str(img["size"]), "ORIGINAL_SIZE": str(img["size"]),
            "DATASTORE": img["datastore"], "DATASTORE_ID": str(img["datastore_id"]),
            "TM_MAD": ds["tm_mad"], "TYPE": "FILE", "FORMAT": img["format"],
            "CLONE": "NO" if persistent else "YES", "SAVE": "YES" if persistent else "NO",
            "READONLY": disk.get("READONLY", "NO"),
            "PERSISTENT": "YES" if persistent else "NO",
            "SHA256": tmpl.get_str("SHA256"),
        })
        if img["type"] == TYPES.index("OS") and "INIT" not in system and "INIT" in tmpl:
            system.set("INIT", tmpl.get_str("INIT"))  # the image knows how its rootfs boots
        if vm_id not in img["vms"]:
            img["vms"].append(vm_id)
        set_state(img, ImageState.USED_PERS if persistent else ImageState.USED)
        taken[img["id"]] = img
    for img in taken.values():
        store.save("image", img)


def _take(ctx_uid: int, disk: dict[str, str], taken: dict[int, Doc], may_use: Any) -> Doc:
    """The image a DISK names, if the caller may use it and it can take one more VM."""
    img = _find(ctx_uid, disk)
    img = taken.get(img["id"], img)
    may_use(img)
    persistent = bool(img["persistent"])
    ok = ATTACHABLE_PERSISTENT if persistent else ATTACHABLE
    if img["state"] not in ok or (persistent and img["id"] in taken):
        state = ImageState(img["state"]).name
        if persistent and (img["state"] == ImageState.USED_PERS or img["id"] in taken):
            why = f"it is persistent and used by VM {img['vms'][0]} (one VM at a time)"
        else:
            why = "it must be READY" + ("" if persistent else " or USED")
        raise OneError(ACTION, f"Cannot use image {img['id']} ({img['name']}) in state "
                               f"{state}: {why}")
    return img


def release(vm: Doc) -> None:
    """Give back the images of a VM that reached DONE (a before-save hook on VMs, so it holds
    on every path to DONE). Once per VM: DONE is final."""
    if vm["state"] != VmState.DONE or vm.get("images_released"):
        return
    vm["images_released"] = True
    for disk in Template.from_json(vm["template"]).vectors("DISK"):
        oid = numeric.to_id(disk.get("IMAGE_ID", ""))
        if oid is None or not store.exists("image", oid):
            continue
        img = store.load("image", oid, for_update=True)
        if vm["id"] not in img["vms"]:
            continue
        img["vms"].remove(vm["id"])
        if not img["vms"] and img["state"] in (ImageState.USED, ImageState.USED_PERS):
            set_state(img, ImageState.READY)
        store.save("image", img)


store.before_save("vm", release)
