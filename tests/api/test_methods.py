"""Every method family over HTTP with pyone 7.3.80 (and raw XML-RPC where the exact failure array
matters): system, users, groups, ACL rules, clusters, datastores, hosts, VM templates, VMs and
VM pools. The server is shared by the session: objects get unique names, pools are never
assumed empty, and hosts are deleted or DISABLED before a test ends so that no other test's
VM is scheduled onto them."""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET

import pyone
import pytest

ALLOCATE, NO_EXISTS, ACTION, XML_RPC_API, INTERNAL, LOCKED = (
    0x4000, 0x400, 0x800, 0x1000, 0x2000, 0x8000)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fail(server, method: str, *params: object) -> tuple[str, int]:  # noqa: ANN001
    """A call that must fail: (message, code), with oned's 5-element failure array."""
    reply = server.call(method, *params)
    assert reply[0] is False and len(reply) == 5, reply
    assert reply[1].startswith(f"[{method}] "), reply
    return reply[1], reply[2]


def xml_of(server, method: str, *params: object) -> ET.Element:  # noqa: ANN001
    ok, body, code, *_ = server.call(method, *params)
    assert ok and code == 0, body
    return ET.fromstring(body)


def wait_for(check, timeout: float = 20.0):  # noqa: ANN001, ANN201
    deadline = time.time() + timeout
    while not (value := check()):
        if time.time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        time.sleep(0.05)
    return value


# ----------------------------------------------------------------------------- system

def test_system_version_and_config(server, one) -> None:
    assert one.system.version() == "7.4.0"
    assert server.call("one.system.version") == [True, "7.4.0", 0]
    conf = xml_of(server, "one.system.config")
    assert conf.tag == "OPENNEBULA_CONFIGURATION"
    assert conf.findtext("API_LIST_ORDER") == "DESC"
    assert conf.find("DEFAULT_UMASK") is not None


# ----------------------------------------------------------------------------- users

def test_user_methods(server, one) -> None:
    name = uniq("user")
    uid = one.user.allocate(name, "pw1", "", [])
    u = one.user.info(uid)
    assert (u.NAME, u.GID, u.GNAME, u.AUTH_DRIVER, u.ENABLED) == (name, 1, "users", "core", 1)
    assert u.GROUPS.ID == [1]
    assert u.PASSWORD != "pw1"  # stored as a digest
    msg, code = fail(server, "one.user.allocate", name, "x", "", [])
    assert (msg, code) == (f"[one.user.allocate] Error allocating a new user. NAME is "
                           f"already taken by USER {uid}.", ALLOCATE)
    assert uid in [x.ID for x in one.userpool.info().USER]
    pool_ids = [int(e.text) for e in xml_of(server, "one.userpool.info").findall("USER/ID")]
    assert pool_ids == sorted(pool_ids, reverse=True)  # API_LIST_ORDER = DESC

    assert one.user.passwd(uid, "pw2") == uid
    assert server.call("one.user.info", -1, session=f"{name}:pw2")[0]
    assert server.call("one.user.info", -1, session=f"{name}:pw1")[2] == 0x100

    one.user.update(uid, 'SSH_KEY="k1"\nLABEL="a"', 0)
    one.user.update(uid, 'LABEL="b"', 1)
    assert dict(one.user.info(uid).TEMPLATE) == {"SSH_KEY": "k1", "LABEL": "b"}
    one.user.update(uid, 'ONLY="x"', 0)
    assert dict(one.user.info(uid).TEMPLATE) == {"ONLY": "x"}

    gid = one.group.allocate(uniq("grp"))
    assert one.user.addgroup(uid, gid) == uid
    assert sorted(one.user.info(uid).GROUPS.ID) == [1, gid]
    assert uid in one.group.info(gid).USERS.ID
    assert fail(server, "one.user.addgroup", uid, gid)[1] == ACTION
    assert one.user.delgroup(uid, gid) == uid
    assert one.user.info(uid).GROUPS.ID == [1]
    assert fail(server, "one.user.delgroup", uid, 1)[1] == ACTION  # the primary group

    assert one.user.chgrp(uid, gid) == uid
    u = one.user.info(uid)
    assert (u.GID, u.GNAME, u.GROUPS.ID) == (gid, one.group.info(gid).NAME, [gid])
    assert uid not in (one.group.info(1).USERS.ID or [])
    one.user.chgrp(uid, 1)

    assert one.user.delete(uid) == uid
    msg, code = fail(server, "one.user.info", uid)
    assert (msg, code) == (f"[one.user.info] Error getting user [{uid}].", NO_EXISTS)
    assert uid not in [x.ID for x in one.userpool.info().USER]
    assert fail(server, "one.user.delete", 0)[1] == ACTION  # oneadmin stays
    one.group.delete(gid)


# ----------------------------------------------------------------------------- groups

def test_group_methods(server, one) -> None:
    name = uniq("grp")
    gid = one.group.allocate(name)
    g = one.group.info(gid)
    assert (g.ID, g.NAME) == (gid, name)
    assert fail(server, "one.group.allocate", name)[1] == ALLOCATE
    one.group.update(gid, 'DESCRIPTION="team"', 0)
    assert one.group.info(gid).TEMPLATE["DESCRIPTION"] == "team"
    pool = one.grouppool.info()
    assert gid in [x.ID for x in pool.GROUP] and 1 in [x.ID for x in pool.GROUP]

    uid = one.user.allocate(uniq("member"), "pw", "", [gid])
    assert fail(server, "one.group.delete", gid)[1] == ACTION  # it has a user
    one.user.delete(uid)
    assert one.group.delete(gid) == gid
    assert fail(server, "one.group.info", gid)[1] == NO_EXISTS
    assert fail(server, "one.group.delete", 1)[1] == ACTION  # "users" is reserved


# ----------------------------------------------------------------------------- ACL

def test_acl_methods(server, one) -> None:
    uid = one.user.allocate(uniq("acl"), "pw", "", [])
    user, res = 0x100000000 | uid, 0x1000000000 | 0x400000000  # #uid, VM/*
    rid = one.acl.addrule(f"{user:x}", f"{res:x}", "3")
    rules = {r.ID: r for r in one.acl.info().ACL}
    assert rules[rid].STRING == f"#{uid} VM/* USE+MANAGE #0"  # no zone: this zone, as oned
    assert (rules[rid].USER, rules[rid].RESOURCE, rules[rid].RIGHTS) == (
        f"{user:X}", f"{res:X}", "3")
    assert 0 in rules  # oned's bootstrap rule: @1 may create its resources
    assert fail(server, "one.acl.addrule", f"{user:x}", f"{res:x}", "3", "")[1] == INTERNAL
    assert one.acl.delrule(rid) == rid
    assert rid not in [r.ID for r in one.acl.info().ACL]
    msg, code = fail(server, "one.acl.delrule", rid)
    assert (msg, code) == (f"[one.acl.delrule] Error getting ACL [{rid}].", NO_EXISTS)
    one.user.delete(uid)


# ----------------------------------------------------------------------------- clusters

def test_cluster_methods(server, one) -> None:
    name = uniq("cl")
    cid = one.cluster.allocate(name)
    c = one.cluster.info(cid)
    assert (c.NAME, c.HOSTS.ID, c.DATASTORES.ID) == (name, [], [])
    assert fail(server, "one.cluster.allocate", name)[1] == ALLOCATE
    one.cluster.update(cid, 'RESERVED_CPU="10"', 1)
    assert one.cluster.info(cid).TEMPLATE["RESERVED_CPU"] == "10"
    new_name = uniq("cl-renamed")
    assert one.cluster.rename(cid, new_name) == cid
    assert one.cluster.info(cid).NAME == new_name
    assert cid in [x.ID for x in one.clusterpool.info().CLUSTER]

    hid = one.host.allocate(uniq("cl-host"), "dummy", "dummy", -1)
    one.host.status(hid, 1)
    assert one.cluster.addhost(cid, hid) == cid
    h = one.host.info(hid)
    assert (h.CLUSTER_ID, h.CLUSTER) == (cid, new_name)
    assert one.cluster.info(cid).HOSTS.ID == [hid]
    assert hid not in one.cluster.info(0).HOSTS.ID
    assert one.cluster.adddatastore(cid, 0) == cid
    assert 0 in one.cluster.info(cid).DATASTORES.ID
    assert cid in one.datastore.info(0).CLUSTERS.ID
    assert fail(server, "one.cluster.delete", cid)[1] == ACTION  # not empty

    assert one.cluster.delhost(cid, hid) == cid
    assert one.host.info(hid).CLUSTER_ID == 0
    assert hid in one.cluster.info(0).HOSTS.ID
    assert one.cluster.deldatastore(cid, 0) == cid
    assert cid not in one.datastore.info(0).CLUSTERS.ID
    assert fail(server, "one.cluster.deldatastore", cid, 0)[1] == ACTION
    assert one.cluster.delete(cid) == cid
    assert fail(server, "one.cluster.info", cid)[1] == NO_EXISTS
    one.host.delete(hid)


# ----------------------------------------------------------------------------- datastores

def test_datastore_methods(server, one) -> None:
    name = uniq("ds")
    dsid = one.datastore.allocate(f'NAME="{name}"\nTYPE="SYSTEM_DS"\nTM_MAD="dummy"', -1)
    ds = one.datastore.info(dsid)
    assert (ds.NAME, ds.TYPE, ds.STATE, ds.TM_MAD, ds.CLUSTERS.ID) == (name, 1, 0, "dummy",
                                                                          [0])
    assert dsid in one.cluster.info(0).DATASTORES.ID
    assert fail(server, "one.datastore.allocate", f'NAME="{name}"\nTM_MAD="dummy"\n'
                'TYPE="SYSTEM_DS"', -1)[1] == ALLOCATE
    assert fail(server, "one.datastore.allocate", f'NAME="{uniq("ds")}"', -1)[1] == ALLOCATE

    one.datastore.update(dsid, 'SHARED="YES"', 1)
    assert one.datastore.info(dsid).TEMPLATE["SHARED"] == "YES"
    new_name = uniq("ds-renamed")
    one.datastore.rename(dsid, new_name)
    assert one.datastore.info(dsid).NAME == new_name
    one.datastore.chmod(dsid, 1, 1, 1, 1, 1, 0, 1, 0, 0)
    p = one.datastore.info(dsid).PERMISSIONS
    assert (p.OWNER_A, p.GROUP_M, p.OTHER_U, p.OTHER_M) == (1, 1, 1, 0)
    assert fail(server, "one.datastore.chmod", dsid, 2, -1, -1, -1, -1, -1, -1, -1,
                -1)[1] == XML_RPC_API
    uid = one.user.allocate(uniq("ds-owner"), "pw", "", [])
    one.datastore.chown(dsid, uid, 1)
    ds = one.datastore.info(dsid)
    assert (ds.UID, ds.GID, ds.GNAME) == (uid, 1, "users")
    one.datastore.chown(dsid, 0, -1)  # -1 keeps the group
    assert (one.datastore.info(dsid).UID, one.datastore.info(dsid).GID) == (0, 1)

    assert one.datastore.enable(dsid, False) == dsid
    assert one.datastore.info(dsid).STATE == 1
    one.datastore.enable(dsid, True)
    assert one.datastore.info(dsid).STATE == 0
    assert dsid in [x.ID for x in one.datastorepool.info().DATASTORE]

    assert one.datastore.delete(dsid) == dsid
    assert fail(server, "one.datastore.info", dsid)[1] == NO_EXISTS
    assert dsid not in one.cluster.info(0).DATASTORES.ID
    one.user.delete(uid)


# ----------------------------------------------------------------------------- hosts

def test_host_methods(server, one) -> None:
    name = uniq("host")
    hid = one.host.allocate(name, "dummy", "dummy", -1)
    one.host.status(hid, 1)  # no other test's VM may land here
    msg, code = fail(server, "one.host.allocate", name, "dummy", "dummy", -1)
    # host_allocate_dup.rpc.xml
    assert (msg, code) == (f"[one.host.allocate] Error allocating a new host. NAME is already "
                           f"taken by HOST {hid}.", ALLOCATE)
    assert fail(server, "one.host.allocate", uniq("h"), "dummy", "dummy", 99999)[1] == NO_EXISTS
    assert hid in [h.ID for h in one.hostpool.info().HOST]

    one.host.update(hid, 'LABEL="rack1"', 1)
    t = one.host.info(hid).TEMPLATE
    assert t["LABEL"] == "rack1" and t["IM_MAD"] == "dummy"
    new_name = uniq("host-renamed")
    assert one.host.rename(hid, new_name) == hid
    assert one.host.info(hid).NAME == new_name
    assert fail(server, "one.host.rename", hid, "")[1] != 0

    wait_for(lambda: one.host.info(hid).HOST_SHARE.TOTAL_CPU == 800)
    mon = xml_of(server, "one.host.monitoring", hid)
    assert mon.tag == "MONITORING_DATA"
    rec = mon.findall("MONITORING")[-1]
    assert int(rec.findtext("ID")) == hid and int(rec.findtext("TIMESTAMP")) > 0
    assert rec.find("CAPACITY/FREE_CPU") is not None
    mon = one.host.monitoring(hid)
    assert mon.MONITORING[-1].ID == hid
    pool_mon = xml_of(server, "one.hostpool.monitoring")
    assert hid in [int(m.findtext("ID")) for m in pool_mon.findall("MONITORING")]
    last = xml_of(server, "one.hostpool.monitoring", 0)
    ids = [int(m.findtext("ID")) for m in last.findall("MONITORING")]
    assert ids.count(hid) == 1  # 0 seconds: only the last record per host

    assert one.host.delete(hid) == hid
    msg, code = fail(server, "one.host.info", hid)
    assert (msg, code) == (f"[one.host.info] Error getting host [{hid}].", NO_EXISTS)
    assert fail(server, "one.host.delete", hid)[1] == NO_EXISTS


# ----------------------------------------------------------------------------- templates

def test_template_methods(server, one) -> None:
    name = uniq("tpl")
    tid = one.template.allocate(f'NAME="{name}"\nCPU="0.5"\nMEMORY="64"\n'
                                'SCHED_REQUIREMENTS="ID = -999"')
    t = one.template.info(tid)
    assert (t.NAME, t.UID, t.TEMPLATE["CPU"], t.TEMPLATE["MEMORY"]) == (name, 0, "0.5", "64")
    assert t.REGTIME > 0
    assert fail(server, "one.template.allocate", f'NAME="{name}"\nCPU=1')[1] == ALLOCATE
    assert tid in [x.ID for x in one.templatepool.info(-2, -1, -1).VMTEMPLATE]
    assert [x.ID for x in one.templatepool.info(-2, tid, tid).VMTEMPLATE] == [tid]

    one.template.update(tid, 'DESCRIPTION="web"', 1)
    assert one.template.info(tid).TEMPLATE["DESCRIPTION"] == "web"
    new_name = uniq("tpl-renamed")
    one.template.rename(tid, new_name)
    t = one.template.info(tid)
    assert (t.NAME, t.TEMPLATE["NAME"]) == (new_name, new_name)
    one.template.chmod(tid, 1, 1, 0, 1, 0, 0, 0, 0, 0)
    assert one.template.info(tid).PERMISSIONS.GROUP_U == 1
    one.template.chown(tid, -1, 1)
    assert one.template.info(tid).GID == 1

    clone = one.template.clone(tid, uniq("tpl-clone"))
    assert one.template.info(clone).TEMPLATE["DESCRIPTION"] == "web"
    assert one.template.info(clone).UID == 0

    # instantiate: on hold, named after the template when no name is given
    vid = one.template.instantiate(tid, "", True, 'MEMORY="96"', False)
    vm = one.vm.info(vid)
    assert (vm.STATE, vm.NAME) == (2, f"{new_name}-{vid}")
    assert (vm.TEMPLATE["TEMPLATE_ID"], vm.TEMPLATE["MEMORY"]) == (str(tid), "96")
    assert vm.USER_TEMPLATE["DESCRIPTION"] == "web"
    named = one.template.instantiate(tid, uniq("from-tpl"), True)
    assert one.vm.info(named).NAME.startswith("from-tpl-")

    assert one.template.lock(tid, 2, False) == tid
    assert one.template.info(tid).LOCK.LOCKED == 2
    msg, code = fail(server, "one.template.update", tid, 'X="1"', 1)
    assert (msg, code) == (f"[one.template.update] The resource virtual machine template is "
                           f"locked. [{tid}].", LOCKED)
    assert fail(server, "one.template.delete", tid)[1] == LOCKED
    assert fail(server, "one.template.lock", tid, 1, True)[1] == ACTION  # already locked
    assert one.template.unlock(tid) == tid
    assert one.template.info(tid).LOCK is None
    one.template.update(tid, 'X="1"', 1)

    for t_id in (clone, tid):
        assert one.template.delete(t_id) == t_id
        assert fail(server, "one.template.info", t_id)[1] == NO_EXISTS
    for v in (vid, named):
        one.vm.action("terminate", v)


# ----------------------------------------------------------------------------- VMs

def test_vm_allocate_info_and_failures(server, one) -> None:
    name = uniq("vm")
    vid = one.vm.allocate(f'NAME="{name}"\nCPU=0.25\nMEMORY=48\nLABELS="a,b"\n'
                          'SCHED_REQUIREMENTS="ID = -999"', True)
    vm = one.vm.info(vid)
    assert (vm.NAME, vm.UID, vm.GID, vm.UNAME, vm.GNAME) == (name, 0, 0, "oneadmin",
                                                             "oneadmin")
    assert (vm.STATE, vm.LCM_STATE, vm.ETIME, vm.RESCHED, vm.DEPLOY_ID) == (2, 0, 0, 0, "")
    assert vm.STIME > 0
    assert (vm.TEMPLATE["CPU"], vm.TEMPLATE["MEMORY"], vm.TEMPLATE["VMID"]) == (
        "0.25", "48", str(vid))
    assert vm.TEMPLATE["AUTOMATIC_REQUIREMENTS"] == "!(PIN_POLICY = PINNED)"
    assert vm.USER_TEMPLATE["LABELS"] == "a,b" and "NAME" not in vm.USER_TEMPLATE
    p = vm.PERMISSIONS
    assert [p.OWNER_U, p.OWNER_M, p.OWNER_A, p.GROUP_U, p.OTHER_U] == [1, 1, 0, 0, 0]

    unnamed = one.vm.allocate({"CPU": "0.1", "MEMORY": "16"}, True)
    assert one.vm.info(unnamed).NAME == f"one-{unnamed}"

    msg, code = fail(server, "one.vm.allocate", "CPU=")
    assert code == INTERNAL and "Parse error" in msg  # vm_allocate_bad_template.rpc.xml
    assert fail(server, "one.vm.allocate", 'CPU=1\nMEMORY=0')[1] != 0
    msg, code = fail(server, "one.vm.info", 99999999)
    assert (msg, code) == ("[one.vm.info] Error getting virtual machine [99999999].", NO_EXISTS)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.info(99999999)

    mon = xml_of(server, "one.vm.monitoring", vid)
    assert mon.tag == "MONITORING_DATA"
    for v in (vid, unnamed):
        one.vm.action("terminate", v)


def test_vm_rename_update_updateconf_chmod_chown_lock(server, one) -> None:
    vid = one.vm.allocate(f'NAME="{uniq("vmops")}"\nCPU=0.1\nMEMORY=16', True)
    new_name = uniq("vm-renamed")
    assert one.vm.rename(vid, new_name) == vid
    assert one.vm.info(vid).NAME == new_name
    assert fail(server, "one.vm.rename", vid, "bad/name")[1] != 0
    assert one.vm.info(vid).NAME == new_name

    one.vm.update(vid, 'A="1"\nB="2"', 0)
    one.vm.update(vid, 'B="3"', 1)
    ut = one.vm.info(vid).USER_TEMPLATE
    assert (ut["A"], ut["B"]) == ("1", "3")
    one.vm.update(vid, 'C="4"', 0)
    assert "A" not in one.vm.info(vid).USER_TEMPLATE
    assert fail(server, "one.vm.update", vid, 'C="5"', 2)[1] == XML_RPC_API

    one.vm.updateconf(vid, 'CONTEXT=[NETWORK="YES",SSH_PUBLIC_KEY="k"]\nGRAPHICS=[TYPE="VNC"]')
    t = one.vm.info(vid).TEMPLATE
    assert t["CONTEXT"]["SSH_PUBLIC_KEY"] == "k" and t["GRAPHICS"]["TYPE"] == "VNC"
    assert t["CPU"] == "0.1"  # other sections untouched

    one.vm.chmod(vid, -1, -1, -1, 1, 1, -1, 1, -1, -1)
    p = one.vm.info(vid).PERMISSIONS
    assert (p.OWNER_U, p.OWNER_M, p.GROUP_U, p.GROUP_M, p.OTHER_U, p.OTHER_M) == (
        1, 1, 1, 1, 1, 0)
    uid = one.user.allocate(uniq("vm-owner"), "pw", "", [])
    one.vm.chown(vid, uid, 1)
    vm = one.vm.info(vid)
    assert (vm.UID, vm.GID, vm.GNAME) == (uid, 1, "users")
    assert vid in [v.ID for v in one.vmpool.info(uid, -1, -1, -1).VM]
    one.vm.chown(vid, 0, 0)

    assert one.vm.lock(vid, 3, False) == vid  # ADMIN level: manage ops still allowed
    one.vm.rename(vid, new_name + "x")
    assert fail(server, "one.vm.recover", vid, 3)[1] == LOCKED
    one.vm.unlock(vid)
    one.vm.lock(vid, 1, False)  # USE level: everything is locked
    vm = one.vm.info(vid)
    assert vm.LOCK.LOCKED == 1 and vm.LOCK.OWNER == 0
    assert fail(server, "one.vm.rename", vid, "other")[1] == LOCKED
    assert fail(server, "one.vm.action", "release", vid)[1] == LOCKED
    assert one.vm.info(vid).STATE == 2
    one.vm.unlock(vid)
    assert one.vm.info(vid).LOCK is None
    one.vm.action("terminate", vid)
    one.user.delete(uid)


# ----------------------------------------------------------------------------- VM pools

def test_vmpool_info_filters_ranges_and_paging(server, one) -> None:
    vids = [one.vm.allocate(f'NAME="{uniq("pool")}"\nCPU=0.1\nMEMORY=16', True)
            for _ in range(4)]
    lo, hi = vids[0], vids[-1]

    listed = [v.ID for v in one.vmpool.info(-2, lo, hi, -1).VM]
    assert listed == sorted(vids, reverse=True)  # API_LIST_ORDER = DESC, as oned 7.4
    short = xml_of(server, "one.vmpool.info", -2, lo, lo, -1).find("VM")
    assert short.find("PERMISSIONS") is None and short.find("TEMPLATE/CPU").text == "0.1"
    assert [v.ID for v in one.vmpool.info(-2, lo, hi, 2).VM] == listed  # HOLD
    assert one.vmpool.info(-2, lo, hi, 1).VM == []  # PENDING

    one.vm.action("terminate", vids[1])
    assert [v.ID for v in one.vmpool.info(-2, lo, hi, -1).VM] == [hi, vids[2], lo]
    assert vids[1] in [v.ID for v in one.vmpool.info(-2, lo, hi, -2).VM]
    assert [v.ID for v in one.vmpool.info(-2, lo, hi, 6).VM] == [vids[1]]

    # end < -1: start is an offset and -end the page size (Ruby CLI paging)
    page = [v.ID for v in one.vmpool.info(-2, 0, -2, -2).VM]
    assert len(page) == 2 and page == sorted(page, reverse=True)
    assert page[0] >= hi

    assert fail(server, "one.vmpool.info", -5, -1, -1, -1)[1] == XML_RPC_API
    assert fail(server, "one.vmpool.info", -2, -1, -1, 12)[1] == XML_RPC_API
    assert fail(server, "one.vmpool.info", -2, -1, -1, -3)[1] == XML_RPC_API

    ext = xml_of(server, "one.vmpool.infoextended", -2, lo, hi, -1)
    assert ext.tag == "VM_POOL" and ext.find("VM/PERMISSIONS") is not None
    assert [v.ID for v in one.vmpool.infoextended(-2, lo, hi, -1).VM] == [hi, vids[2], lo]

    s = one.vmpool.infoset(f"{lo},{hi}", False)
    assert sorted(v.ID for v in s.VM) == [lo, hi]
    full = xml_of(server, "one.vmpool.infoset", f"{lo}", True)
    assert full.find("VM/PERMISSIONS") is not None
    assert server.call("one.vmpool.infoset", "", False)[1] == "<VM_POOL></VM_POOL>"
    for v in (lo, vids[2], hi):
        one.vm.action("terminate", v)


def test_vmpool_monitoring_and_accounting(server, one) -> None:
    hid = one.host.allocate(uniq("acct-host"), "dummy", "dummy", -1)
    one.host.status(hid, 1)
    vid = one.vm.allocate(f'NAME="{uniq("acct")}"\nCPU=0.1\nMEMORY=16', True)
    one.vm.deploy(vid, hid)
    server.wait_vm(vid, 3, 3)
    one.vm.action("terminate-hard", vid)
    server.wait_vm(vid, 6, 0)

    mon = xml_of(server, "one.vmpool.monitoring", -2)
    assert mon.tag == "MONITORING_DATA"
    assert xml_of(server, "one.vmpool.monitoring", -2, 0).tag == "MONITORING_DATA"
    assert fail(server, "one.vmpool.monitoring", -9)[1] == XML_RPC_API

    acct = xml_of(server, "one.vmpool.accounting", -2, -1, -1)
    assert acct.tag == "HISTORY_RECORDS"
    mine = [h for h in acct.findall("HISTORY") if h.findtext("OID") == str(vid)]
    assert len(mine) == 1
    h = mine[0]
    assert (h.findtext("SEQ"), h.findtext("HID"), h.findtext("ACTION")) == ("0", str(hid), "28")
    assert h.find("VM/ID").text == str(vid) and h.find("VM/STATE").text == "6"
    future = int(time.time()) + 3600
    later = xml_of(server, "one.vmpool.accounting", -2, future, -1)
    assert str(vid) not in [x.findtext("OID") for x in later.findall("HISTORY")]
    assert fail(server, "one.vmpool.accounting", -9, -1, -1)[1] == XML_RPC_API
    one.host.delete(hid)


def test_unknown_method_is_a_fault(server) -> None:
    with pytest.raises(Exception) as err:
        server.call("one.no.such")
    assert "-506" in str(err.value) or "not defined" in str(err.value)
