"""First start: the objects oned creates on an empty database (users oneadmin and serveradmin,
groups oneadmin and users, cluster default, datastores system/default/files, default ACLs,
zone 0 and the default VDC)."""

from __future__ import annotations

import os
import secrets

from oneserver import db, settings, store
from oneserver.api import hash_password
from oneserver.model import aclstore, secgroups, vdcs
from oneserver.model.acl import ALL, DEFAULT_RULES, GROUP, INDIVIDUAL, TYPES, USE
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


LOCAL_ZONE_NAME = "OpenNebula"
# What a database made before VDCs gave group users instead of the default VDC's three rules.
_OLD_VDC_RULE = (GROUP | 1, ALL | TYPES["NET"] | TYPES["DATASTORE"], USE, INDIVIDUAL | 0)


def endpoint(host: str, port: int) -> str:
    """The XML-RPC endpoint zone 0 names, as oned writes it (``http://localhost:PORT/RPC2``
    when it listens on every address)."""
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/RPC2"


def _tenancy(xmlrpc_endpoint: str) -> None:
    """Zone 0 (ZonePool) and the default VDC with group users and every cluster of zone 0
    (VdcPool), whose rules let group users deploy; ids below 100 are the system's."""
    if not store.exists("zone", 0):
        store.insert("zone", {"id": 0, "name": LOCAL_ZONE_NAME, "state": 0,
                              "template": [["ENDPOINT", xmlrpc_endpoint]], "servers": []})
        db.bump_oid("zone_pool", 99)
    if not store.exists("vdc", vdcs.DEFAULT_ID):
        aclstore.delete_matching(*_OLD_VDC_RULE)
        doc = vdcs.new_doc(vdcs.DEFAULT_ID, "default",
                           [["DESCRIPTION", vdcs.DEFAULT_DESCRIPTION]])
        store.insert("vdc", doc)
        vdcs.add_group(doc, 1)
        vdcs.add_resource(doc, "clusters", 0, vdcs.ALL_RESOURCES)
        store.save("vdc", doc)
        db.bump_oid("vdc_pool", 99)


def _networking() -> None:
    """The default security group (SecurityGroupPool: id 0, everything in and out), also in a
    database made before networks; ids below 100 are the system's."""
    if not store.exists("secgroup", secgroups.DEFAULT_ID):
        store.insert("secgroup", secgroups.default_doc())
        db.bump_oid("secgroup_pool", 99)


def bootstrap(xmlrpc_endpoint: str = "http://localhost:2633/RPC2") -> str | None:
    """Create the initial objects once (zone 0 and the default VDC also in a database made
    before them). Returns a line to print (where the oneadmin password is) on the first
    start, None afterwards."""
    conf = settings.current()
    with db.write_transaction():
        if db.Meta.get_or_none(db.Meta.key == "bootstrapped") is not None:
            _tenancy(xmlrpc_endpoint)
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
        _tenancy(xmlrpc_endpoint)
        _networking()
        db.Meta.create(key="bootstrapped", value="1")
    if written:
        return f"oneadmin password written to {written} (oneadmin:{password})"
    return "oneadmin password taken from $ONE_AUTH"
