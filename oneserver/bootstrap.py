"""First start: the objects oned creates on an empty database (users oneadmin and serveradmin,
groups oneadmin and users, cluster default, datastores system/default/files, default ACLs)."""

from __future__ import annotations

import os
import secrets

from oneserver import db, secgroups, settings, store
from oneserver.acl import DEFAULT_RULES
from oneserver.api import hash_password
from oneserver.template import Template

DATASTORES = (
    (0, "system", "SYSTEM_DS", "-", "ssh", 1),
    (1, "default", "IMAGE_DS", "fs", "ssh", 0),
    (2, "files", "FILE_DS", "fs", "ssh", 2),
)


def oneadmin_password(data_dir: str) -> tuple[str, str | None]:
    """The password from the file named by ONE_AUTH, else a new one written to
    ``DATA/one_auth``. Returns (password, path written or None)."""
    path = os.environ.get("ONE_AUTH")
    if path and os.path.isfile(path):
        with open(path) as f:
            _, _, password = f.read().strip().partition(":")
        if password:
            return password, None
    password = secrets.token_hex(16)
    out = os.path.join(data_dir, "one_auth")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"oneadmin:{password}\n")
    return password, out


def _group(oid: int, name: str, users: list[int]) -> None:
    store.insert("group", {"id": oid, "name": name, "template": [], "users": users,
                           "admins": []})
    db.bump_oid("group_pool", 99)  # oned starts user-created groups at 100


def _user(oid: int, name: str, password: str, driver: str) -> None:
    store.insert("user", {
        "id": oid, "gid": 0, "groups": [0], "gname": "oneadmin", "name": name,
        "password": hash_password(password), "auth_driver": driver, "enabled": True,
        "tokens": [], "template": [],
    })


def _datastore(oid: int, name: str, type_name: str, ds_mad: str, tm_mad: str, type_: int,
               base: str) -> None:
    # RESTRICTED_DIRS/SAFE_DIRS as oned 7.4 sets them: images register from /var/tmp only,
    # until an administrator names other safe directories (one.datastore.update).
    tmpl = Template([("TYPE", type_name), ("TM_MAD", tm_mad), ("DS_MAD", ds_mad),
                     ("RESTRICTED_DIRS", "/"), ("SAFE_DIRS", "/var/tmp")])
    if type_ == 1:
        tmpl.remove("DS_MAD")
    store.insert("datastore", {
        "id": oid, "uid": 0, "gid": 0, "uname": "oneadmin", "gname": "oneadmin", "name": name,
        "perms": [1, 1, 0, 1, 0, 0, 0, 0, 0], "lock": None, "ds_mad": ds_mad,
        "tm_mad": tm_mad, "base_path": f"{base}/{oid}", "type": type_, "disk_type": 0,
        "state": 0, "clusters": [0], "total_mb": 0, "free_mb": 0, "used_mb": 0, "images": [],
        "template": tmpl.to_json(),
    })


def _networking() -> None:
    """The default security group (SecurityGroupPool: id 0, everything in and out), also in a
    database made before networks; ids below 100 are the system's."""
    if not store.exists("secgroup", secgroups.DEFAULT_ID):
        store.insert("secgroup", secgroups.default_doc())
        db.bump_oid("secgroup_pool", 99)


def bootstrap() -> str | None:
    """Create the initial objects once. Returns a line to print (where the oneadmin password
    is) on the first start, None afterwards."""
    conf = settings.current()
    with db.write_transaction():
        if db.Meta.get_or_none(db.Meta.key == "bootstrapped") is not None:
            _networking()
            return None
        password, written = oneadmin_password(conf.data_dir)
        _group(0, "oneadmin", [0, 1])
        _group(1, "users", [])
        _user(0, "oneadmin", password, "core")
        _user(1, "serveradmin", secrets.token_hex(16), "server_cipher")
        db.bump_oid("user_pool", 1)
        store.insert("cluster", {"id": 0, "name": "default", "hosts": [],
                                 "datastores": [0, 1, 2], "vnets": [],
                                 "template": [["RESERVED_CPU", ""], ["RESERVED_MEM", ""]]})
        db.bump_oid("cluster_pool", 99)
        for ds in DATASTORES:
            _datastore(*ds, base=conf.datastores_dir)
        db.bump_oid("datastore_pool", 99)
        for i, (user, resource, rights, zone) in enumerate(DEFAULT_RULES):
            db.Acl.create(oid=i, user=user, resource=resource, rights=rights, zone=zone)
        db.bump_oid("acl", len(DEFAULT_RULES) - 1)
        _networking()
        db.Meta.create(key="bootstrapped", value="1")
    if written:
        return f"oneadmin password written to {written} (oneadmin:{password})"
    return "oneadmin password taken from $ONE_AUTH"
