"""``one.image.*`` and ``one.imagepool.*``. Registering an image creates it LOCKED and queues
the copy into the datastore for the core: API workers never copy data."""

from __future__ import annotations

import math
import os
from typing import Any

from oneserver import db, store, wakeup
from oneserver.api import Context, api, authz, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, ALLOCATE, OneError
from oneserver.model import images, operations
from oneserver.model.acl import Target
from oneserver.model.history import now
from oneserver.model.images import ImageState
from oneserver.template import Template

# Attributes that are elements of <IMAGE>, not template entries.
ELEMENT_ATTRS = ("NAME", "PATH", "SOURCE", "TYPE", "PERSISTENT", "SIZE", "FORMAT")
IMAGE_DS = 0


def _image_datastore(ctx: Context, ds_id: int, what: str) -> dict[str, Any]:
    ds = store.load("datastore", ds_id, for_update=True)
    ctx.authorize(c.target("datastore", ds))
    if ds["type"] != IMAGE_DS:
        raise OneError(ALLOCATE, f"Error {what}. Datastore {ds_id} ({ds['name']}) is not an "
                                 "image datastore (TYPE must be IMAGE_DS).")
    if ds["state"] != 0:
        raise OneError(ALLOCATE, f"Error {what}. Datastore {ds_id} is disabled.")
    return ds


def _type(name: str, what: str) -> int:
    name = (name or "OS").upper()
    if name not in images.TYPES:
        raise OneError(ALLOCATE, f"Error {what}. Unknown TYPE {name}: use one of "
                                 f"{', '.join(images.TYPES)}.")
    return images.TYPES.index(name)


def _new_image(ctx: Context, oid: int, name: str, ds: dict[str, Any], tmpl: Template,
               path: str, type_: int, persistent: bool) -> dict[str, Any]:
    for attr in ELEMENT_ATTRS:
        tmpl.remove(attr)
    t = now()
    return {
        **c.new_owned_doc(ctx, oid, name), "type": type_, "disk_type": 0,
        "persistent": int(persistent), "regtime": t, "modtime": t, "source": "",
        "path": path, "format": "", "fs": "", "size": 0,
        "state": int(ImageState.LOCKED), "prev_state": int(ImageState.LOCKED),
        "cloning_ops": 0, "cloning_id": -1, "target_snapshot": -1,
        "datastore_id": ds["id"], "datastore": ds["name"], "vms": [], "clones": [],
        "app_clones": [], "template": tmpl.to_json(),
    }


def _unique(ctx: Context, name: str, what: str) -> None:
    c.valid_name(name)
    taken = store.name_taken("image", name, ctx.caller.uid)
    if taken is not None:
        raise OneError(ALLOCATE, f"Error {what}. NAME is already taken by IMAGE {taken}.")


def _add_to_datastore(ds: dict[str, Any], oid: int) -> None:
    ds["images"].append(oid)
    images.refresh_capacity(ds)
    store.save("datastore", ds)


@api("one.image.allocate", "sib", (False,))
def image_allocate(ctx: Context, text: str, ds_id: int, no_capacity_check: bool) -> int:
    what = "allocating a new image"
    ctx.authorize(Target("image"))
    tmpl = c.parse_template(text)
    authz.check_restricted(ctx.caller.is_admin, "image", [tmpl])
    name = tmpl.get_str("NAME")
    if not name:
        raise OneError(ALLOCATE, f"Error {what}. No NAME in template.")
    path = tmpl.get_str("PATH")
    if not path:
        raise OneError(ALLOCATE, f"Error {what}. No PATH in template: register a rootfs "
                                 "(.tar, .tar.gz, .tar.xz, .tar.bz2 or a directory) by its path.")
    type_ = _type(tmpl.get_str("TYPE"), what)
    persistent = tmpl.get_str("PERSISTENT", "NO").upper() in ("YES", "TRUE", "1")
    with db.write_transaction():
        ds = _image_datastore(ctx, ds_id, what)
        _unique(ctx, name, what)
        try:
            real = images.check_path(ds, path)
        except OneError as exc:
            raise OneError(ALLOCATE, f"Error {what}. {exc.message}") from None
        # Only a stat here: a directory's size is known once the core has copied it.
        size_mb = math.ceil(os.path.getsize(real) / 2**20) if os.path.isfile(real) else 0
        images.refresh_capacity(ds)
        if size_mb > ds["free_mb"] and not (no_capacity_check and ctx.caller.is_admin):
            raise OneError(ALLOCATE, f"Error {what}. Not enough space in datastore "
                                     f"{ds_id}: {size_mb} MB needed, {ds['free_mb']} MB free.")
        oid = store.next_id("image")
        doc = _new_image(ctx, oid, name, ds, tmpl, path, type_, persistent)
        doc["size"] = size_mb
        store.insert("image", doc)
        _add_to_datastore(ds, oid)
        operations.enqueue_image(oid, "image_copy")
    wakeup.notify()
    return oid


@api("one.image.clone", "isi", (-1,))
def image_clone(ctx: Context, oid: int, name: str, ds_id: int) -> int:
    what = "cloning the image"
    ctx.authorize(Target("image"))
    with db.write_transaction():
        src = c.load_checked(ctx, "image", oid, for_update=True)
        c.check_lock("image", src, ctx.op.right)
        if src["state"] not in (ImageState.READY, ImageState.USED):
            raise OneError(ACTION, f"Cannot clone image {oid} in state "
                                   f"{ImageState(src['state']).name}: it must be READY or USED",
                           oid)
        ds = _image_datastore(ctx, src["datastore_id"] if ds_id < 0 else ds_id, what)
        _unique(ctx, name, what)
        new_id = store.next_id("image")
        doc = _new_image(ctx, new_id, name, ds, Template.from_json(src["template"]),
                         src["source"], src["type"], False)
        doc["cloning_id"], doc["size"] = oid, src["size"]
        store.insert("image", doc)
        _add_to_datastore(ds, new_id)
        # As oned: the source counts the copy in progress and is USED meanwhile (a persistent
        # one is CLONE, so no VM takes it while its bytes are read).
        src["cloning_ops"] += 1
        src["clones"].append(new_id)
        if src["state"] == ImageState.READY:
            images.set_state(src, ImageState.CLONE if src["persistent"] else ImageState.USED)
        store.save("image", src)
        operations.enqueue_image(new_id, "image_copy", from_image=oid)
    wakeup.notify()
    return new_id


@api("one.image.delete", "ib", (False,))
def image_delete(ctx: Context, oid: int, force: bool) -> int:
    with db.write_transaction():
        img = c.load_checked(ctx, "image", oid, for_update=True)
        c.check_lock("image", img, ctx.op.right)
        if img["vms"]:
            raise OneError(ACTION, f"Cannot delete image {oid}: it is used by "
                                   f"{len(img['vms'])} VM(s) ({', '.join(map(str, img['vms']))})",
                           oid)
        if img["cloning_ops"] > 0:
            raise OneError(ACTION, f"Cannot delete image {oid}: it is being cloned", oid)
        if img["state"] == ImageState.DELETE:
            return oid
        # The core removes the files, then the image; a copy still queued sees DELETE and
        # does nothing (operations of one image run in order).
        images.set_state(img, ImageState.DELETE)
        store.save("image", img)
        operations.enqueue_image(oid, "image_delete")
    wakeup.notify()
    return oid


@api("one.image.enable", "ib")
def image_enable(ctx: Context, oid: int, enable: bool) -> int:
    with c.changing(ctx, "image", oid) as img:
        have = img["state"]
        want = ImageState.READY if enable else ImageState.DISABLED
        if have != want:
            if have != (ImageState.DISABLED if enable else ImageState.READY):
                raise OneError(ACTION, f"Cannot {'enable' if enable else 'disable'} image "
                                       f"{oid} in state {ImageState(have).name}", oid)
            images.set_state(img, want)
    return oid


@api("one.image.persistent", "ib")
def image_persistent(ctx: Context, oid: int, persistent: bool) -> int:
    with c.changing(ctx, "image", oid) as img:
        if bool(img["persistent"]) != persistent:
            if img["state"] not in (ImageState.READY, ImageState.DISABLED):
                raise OneError(ACTION, f"Cannot change the persistent type of image {oid} in "
                                       f"state {ImageState(img['state']).name}: it must not be "
                                       "in use", oid)
            img["persistent"] = int(persistent)
            img["modtime"] = now()
    return oid


@api("one.image.chtype", "is")
def image_chtype(ctx: Context, oid: int, type_name: str) -> int:
    with c.changing(ctx, "image", oid) as img:
        if type_name.upper() not in images.TYPES:
            raise OneError(ACTION, f"Unknown image type {type_name}", oid)
        img["type"] = images.TYPES.index(type_name.upper())
    return oid


@api("one.imagepool.info", "iii", (-1, -1))
def imagepool_info(ctx: Context, flag: int, start: int, end: int) -> str:
    return c.listing(ctx, "image", "IMAGE_POOL", flag, start, end)


generic.register("one.image", "image", "update", "rename", "chmod", "chown", "info", "lock",
                 "unlock", names_per_owner=True)
