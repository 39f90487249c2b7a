"""Authentication and authorization over HTTP with pyone 7.3.80: core passwords, login tokens,
and a user of group ``users`` who sees and manages only what permissions and ACL rules allow.
A refused call (AUTHENTICATION 256 or AUTHORIZATION 512) must change nothing."""

from __future__ import annotations

import re
import time
import uuid

import pyone
import pytest

AUTHENTICATION, AUTHORIZATION = 0x100, 0x200
VM_ALL = 0x1000000000 | 0x400000000  # resource "VM/*"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def refused(server, session: str, method: str, *params: object) -> tuple[str, int]:  # noqa: ANN001
    reply = server.call(method, *params, session=session)
    assert reply[0] is False and len(reply) == 5, reply
    return reply[1], reply[2]


def vm_body(server, vid: int) -> str:  # noqa: ANN001
    """oneadmin's view of a VM, minus what the scheduler writes on its own."""
    body = server.call("one.vm.info", vid)[1]
    return re.sub(r"<SCHED_MESSAGE>.*?</SCHED_MESSAGE>", "", body)


def new_user(one) -> tuple[int, str, str]:  # noqa: ANN001
    """A user of group ``users``: (id, name, session)."""
    name = uniq("u")
    uid = one.user.allocate(name, "secret", "", [])
    return uid, name, f"{name}:secret"


def admin_vm(one) -> int:  # noqa: ANN001
    """oneadmin's VM on hold; no host matches it, so released it stays PENDING."""
    return one.vm.allocate(f'NAME="{uniq("admin-vm")}"\nCPU=0.1\nMEMORY=16\n'
                           'SCHED_REQUIREMENTS="ID = -999"', True)


# ----------------------------------------------------------------------------- authentication

def test_wrong_password_is_authentication_and_changes_nothing(server, one) -> None:
    uid, name, _ = new_user(one)
    vid = admin_vm(one)
    before = vm_body(server, vid)
    for session in (f"{name}:wrong", "oneadmin:wrong", f"{uniq('nobody')}:x", "nocolon", ":x"):
        msg, code = refused(server, session, "one.vm.action", "terminate", vid)
        assert (msg, code) == (
            "[one.vm.action] User couldn't be authenticated, aborting call.", AUTHENTICATION)
    msg, code = refused(server, "oneadmin:wrong", "one.vm.info", vid)
    assert msg == "[one.vm.info] User couldn't be authenticated, aborting call."  # badauth
    msg, code = refused(server, f"{name}:wrong", "one.user.passwd", uid, "hijack")
    assert code == AUTHENTICATION
    assert vm_body(server, vid) == before
    assert server.call("one.user.info", -1, session=f"{name}:secret")[0]
    with pytest.raises(pyone.OneAuthenticationException):
        server.pyone(f"{name}:wrong").vm.info(vid)
    one.vm.action("terminate", vid)


def test_own_password_change(server, one) -> None:
    uid, name, session = new_user(one)
    user = server.pyone(session)
    assert user.user.info(-1).ID == uid
    assert user.user.passwd(uid, "newsecret") == uid  # a user may change its own password
    assert refused(server, session, "one.user.info", -1)[1] == AUTHENTICATION
    assert server.call("one.user.info", -1, session=f"{name}:newsecret")[0]


def test_login_tokens(server, one) -> None:
    uid, name, session = new_user(one)
    user = server.pyone(session)
    token = user.user.login(name, "", 60, -1)
    assert isinstance(token, str) and len(token) >= 16
    assert server.pyone(f"{name}:{token}").user.info(-1).ID == uid
    [t] = one.user.info(uid).LOGIN_TOKEN
    assert t.TOKEN == token and t.EXPIRATION_TIME > time.time() and t.EGID == -1

    short = user.user.login(name, "", 1, -1)
    assert server.call("one.user.info", -1, session=f"{name}:{short}")[0]
    deadline = time.time() + 5
    while server.call("one.user.info", -1, session=f"{name}:{short}")[0]:
        assert time.time() < deadline, "an expired token still authenticates"
        time.sleep(0.1)
    assert refused(server, f"{name}:{short}", "one.user.info", -1)[1] == AUTHENTICATION
    assert server.call("one.user.info", -1, session=f"{name}:{token}")[0]  # others stay

    forever = user.user.login(name, "", -1, -1)
    assert server.call("one.user.info", -1, session=f"{name}:{forever}")[0]
    user.user.login(name, "", 0, -1)  # 0: drop every token
    for tok in (token, forever):
        assert refused(server, f"{name}:{tok}", "one.user.info", -1)[1] == AUTHENTICATION
    assert server.call("one.user.info", -1, session=session)[0]  # the password still works

    gid = one.group.allocate(uniq("egid"))
    one.user.addgroup(uid, gid)
    # A new group has no rights of its own (as in oned): let its members create VMs.
    one.acl.addrule(hex(0x200000000 | gid)[2:], hex(VM_ALL)[2:], "8", "")
    scoped = user.user.login(name, "", 60, gid)
    [t] = one.user.info(uid).LOGIN_TOKEN  # the others were dropped above
    assert t.EGID == gid
    vid = server.pyone(f"{name}:{scoped}").vm.allocate('CPU=0.1\nMEMORY=16', True)
    assert one.vm.info(vid).GID == gid  # created in the token's effective group
    one.vm.action("terminate", vid)

    other_uid, other, _ = new_user(one)
    assert refused(server, session, "one.user.login", other, "", 60, -1)[1] == AUTHORIZATION
    assert not one.user.info(other_uid).LOGIN_TOKEN


# ----------------------------------------------------------------------------- authorization

def test_user_manages_own_vms_only(server, one) -> None:
    uid, name, session = new_user(one)
    user = server.pyone(session)
    mine = user.vm.allocate(f'NAME="{uniq("mine")}"\nCPU=0.1\nMEMORY=16', True)
    vm = one.vm.info(mine)
    assert (vm.UID, vm.GID, vm.UNAME, vm.GNAME) == (uid, 1, name, "users")
    theirs = admin_vm(one)

    for flag in (-2, -1, -3, uid):
        ids = [v.ID for v in user.vmpool.info(flag, -1, -1, -1).VM]
        assert mine in ids and theirs not in ids, flag
    assert [v.ID for v in user.vmpool.info(0, -1, -1, -1).VM] == []  # oneadmin's: none usable
    assert theirs not in [v.ID for v in user.vmpool.infoextended(-2, -1, -1, -1).VM]
    assert [v.ID for v in user.vmpool.infoset(f"{mine},{theirs}", False).VM] == [mine]

    before = vm_body(server, theirs)
    msg, code = refused(server, session, "one.vm.info", theirs)
    assert (msg, code) == (f"[one.vm.info] User [{uid}] : Not authorized to perform USE VM "
                           f"[{theirs}].", AUTHORIZATION)
    for method, params in (("one.vm.action", ("terminate", theirs)),
                           ("one.vm.rename", (theirs, "stolen")),
                           ("one.vm.update", (theirs, 'X="1"', 1)),
                           ("one.vm.chown", (theirs, uid, -1)),
                           ("one.vm.chmod", (theirs, 1, 1, 1, 1, 1, 1, 1, 1, 1))):
        assert refused(server, session, method, *params)[1] == AUTHORIZATION, method
    with pytest.raises(pyone.OneAuthorizationException):
        user.vm.action("release", theirs)
    assert vm_body(server, theirs) == before

    user.vm.rename(mine, uniq("mine-renamed"))
    user.vm.update(mine, 'NOTE="ok"', 1)
    assert user.vm.info(mine).USER_TEMPLATE["NOTE"] == "ok"
    # deploy, recover and resched are admin operations, chown to another user too
    hid = one.host.allocate(uniq("auth-host"), "dummy", "dummy", -1)
    one.host.status(hid, 1)
    assert refused(server, session, "one.vm.deploy", mine, hid)[1] == AUTHORIZATION
    assert refused(server, session, "one.vm.recover", mine, 3)[1] == AUTHORIZATION
    assert refused(server, session, "one.vm.chown", mine, 0, -1)[1] == AUTHORIZATION
    assert one.vm.info(mine).STATE == 2 and one.vm.info(mine).UID == uid
    assert user.vm.action("terminate", mine) == mine
    assert one.vm.info(mine).STATE == 6
    one.vm.action("terminate", theirs)
    one.host.delete(hid)


def test_chmod_and_acl_rules_open_access(server, one) -> None:
    uid, _, session = new_user(one)
    user = server.pyone(session)
    vid = admin_vm(one)

    one.vm.chmod(vid, -1, -1, -1, -1, -1, -1, 1, -1, -1)  # OTHER_U
    assert user.vm.info(vid).ID == vid
    assert vid in [v.ID for v in user.vmpool.info(-2, -1, -1, -1).VM]
    assert refused(server, session, "one.vm.rename", vid, "x")[1] == AUTHORIZATION
    one.vm.chmod(vid, -1, -1, -1, -1, -1, -1, 0, -1, -1)
    assert refused(server, session, "one.vm.info", vid)[1] == AUTHORIZATION

    rule = one.acl.addrule(f"{0x100000000 | uid:x}", f"{0x1000000000 | 0x100000000 | vid:x}",
                           "3")  # #uid VM/#vid USE+MANAGE
    assert user.vm.info(vid).ID == vid
    new_name = uniq("via-acl")
    user.vm.rename(vid, new_name)
    user.vm.action("release", vid)
    vm = one.vm.info(vid)
    assert (vm.NAME, vm.UID, vm.STATE) == (new_name, 0, 1)
    one.acl.delrule(rule)
    assert refused(server, session, "one.vm.info", vid)[1] == AUTHORIZATION

    rule = one.acl.addrule(f"{0x100000000 | uid:x}", f"{VM_ALL:x}", "1")  # #uid VM/* USE
    assert vid in [v.ID for v in user.vmpool.info(-2, -1, -1, -2).VM]
    one.acl.delrule(rule)
    one.vm.action("terminate-hard", vid)


def test_user_cannot_touch_admin_resources(server, one) -> None:
    uid, name, session = new_user(one)
    user = server.pyone(session)
    host_name = uniq("denied-host")
    msg, code = refused(server, session, "one.host.allocate", host_name, "dummy", "dummy", -1)
    assert code == AUTHORIZATION
    assert host_name not in [h.NAME for h in one.hostpool.info().HOST]
    assert refused(server, session, "one.acl.addrule", "100000000", "1400000000", "1")[1] \
        == AUTHORIZATION
    assert refused(server, session, "one.acl.delrule", 0)[1] == AUTHORIZATION
    assert 0 in [r.ID for r in one.acl.info().ACL]
    assert refused(server, session, "one.group.allocate", uniq("g"))[1] == AUTHORIZATION
    assert refused(server, session, "one.cluster.allocate", uniq("c"))[1] == AUTHORIZATION
    assert refused(server, session, "one.user.allocate", uniq("x"), "p", "", [])[1] \
        == AUTHORIZATION
    assert refused(server, session, "one.user.delete", 0)[1] == AUTHORIZATION
    assert refused(server, session, "one.user.passwd", 0, "pwned")[1] == AUTHORIZATION
    assert refused(server, session, "one.user.chgrp", uid, 0)[1] == AUTHORIZATION
    assert one.user.info(uid).GID == 1
    assert server.call("one.user.info", 0)[0]  # oneadmin's password is unchanged

    # templates: a user sees its own and those it may use
    tid = one.template.allocate(f'NAME="{uniq("admin-tpl")}"\nCPU=0.1\nMEMORY=16')
    own = user.template.allocate(f'NAME="{uniq("user-tpl")}"\nCPU=0.1\nMEMORY=16')
    ids = [t.ID for t in user.templatepool.info(-2, -1, -1).VMTEMPLATE]
    assert own in ids and tid not in ids
    assert refused(server, session, "one.template.instantiate", tid, "", True, "",
                   False)[1] == AUTHORIZATION
    one.template.chmod(tid, -1, -1, -1, 1, -1, -1, -1, -1, -1)  # GROUP_U, group oneadmin
    assert refused(server, session, "one.template.info", tid)[1] == AUTHORIZATION
    one.template.chown(tid, -1, 1)  # now in group users
    vid = user.template.instantiate(tid, "", True, "", False)
    assert one.vm.info(vid).UID == uid
    config = server.call("one.system.config", session=session)
    assert config[0] and "<OPENNEBULA_CONFIGURATION>" in config[1]
    assert user.system.version() == "7.4.0"
    one.vm.action("terminate", vid)
    for t in (tid, own):
        one.template.delete(t)
