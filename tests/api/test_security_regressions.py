"""Regressions of what a hostile user found: commands run from host templates, locks, tokens
scoped to a group, user self-service. Each test failed on the code before its fix."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server, stop_server, wait_for, write_etc

AUTHENTICATION, AUTHORIZATION, ACTION, XML_RPC_API = 0x100, 0x200, 0x800, 0x1000
GROUP, VM_ALL = 0x200000000, 0x1000000000 | 0x400000000


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_user(server: Server, *groups: int) -> tuple[int, str, str]:
    name = uniq("u")
    ok, uid, *_ = server.call("one.user.allocate", name, "pw", "", list(groups))
    assert ok, uid
    return uid, name, f"{name}:pw"


def code_of(reply: list) -> int:
    assert reply[0] is False, reply
    return reply[2]


@pytest.fixture(scope="module")
def false_ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose configured ssh command is /bin/false: nothing reaches any host."""
    tmp = tmp_path_factory.mktemp("false-ssh")
    srv = start_server(tmp, "sqlite", ["--etc", str(write_etc(tmp / "etc", "/bin/false"))])
    yield srv
    stop_server(srv)


def test_group_users_cannot_change_hosts(server: Server) -> None:
    one = server.pyone()
    hid = one.host.allocate(uniq("h"), "dummy", "dummy", -1)
    _, _, bob = new_user(server, 1)
    for method, params in (("one.host.update", (hid, 'SSH_COMMAND="sh -c id --"', 1)),
                           ("one.host.rename", (hid, uniq("renamed"))),
                           ("one.host.status", (hid, 1)), ("one.host.delete", (hid,))):
        reply = server.call(method, *params, session=bob)
        assert code_of(reply) == AUTHORIZATION, reply
        assert reply[1] == f"[{method}] User [{reply[1].split('[')[2].split(']')[0]}] : " \
                           f"Not authorized to perform ADMIN HOST [{hid}]."
    assert "SSH_COMMAND" not in str(one.host.info(hid).TEMPLATE)
    one.host.delete(hid)


def test_host_template_command_never_runs(false_ssh: Server, tmp_path: Path) -> None:
    """Even oneadmin's SSH_COMMAND in a host template is not a program to run: the transfer
    goes through the configured ssh (here /bin/false) and fails, and nothing else runs."""
    one = false_ssh.pyone()
    pwned = tmp_path / "PWNED"
    hid = one.host.allocate("pwnhost", "dummy", "dummy", -1)
    one.host.update(hid, f'SSH_COMMAND="sh -c \'id > {pwned}\' --"\n'
                         f'SSH_HOST="-oProxyCommand=sh -c \'id > {pwned}\'"\n', 1)
    (tmp_path / "rootfs").mkdir()
    vid = one.vm.allocate(f'CPU=0.1\nMEMORY=16\nDISK=[SOURCE="{tmp_path / "rootfs"}"]\n'
                          f'SCHED_REQUIREMENTS="ID = {hid}"')
    wait_for("the deploy to fail", lambda: one.vm.info(vid).LCM_STATE != 0
             and one.vm.info(vid).LCM_STATE not in (1, 2), 30)  # LCM_INIT, PROLOG, BOOT
    assert not pwned.exists()


def test_disk_source_is_oneadmins(server: Server) -> None:
    """A DISK SOURCE is a path on the front-end the core copies into the container: only the
    oneadmin group may name one (everybody else uses images)."""
    _, _, bob = new_user(server, 1)
    reply = server.call("one.vm.allocate", 'CPU=0.1\nMEMORY=16\nDISK=[SOURCE="/root"]', True,
                        session=bob)
    assert code_of(reply) == AUTHORIZATION
    assert reply[1] == "[one.vm.allocate] VM Template includes a restricted attribute " \
                       "DISK/SOURCE."


def test_admin_lock_binds_the_owner(server: Server) -> None:
    one = server.pyone()
    uid, _, bob = new_user(server, 1)
    vid = server.pyone(bob).vm.allocate("CPU=0.1\nMEMORY=16", True)
    assert vid >= 0 and one.vm.info(vid).UID == uid
    one.vm.lock(vid, 4, False)
    reply = server.call("one.vm.unlock", vid, session=bob)
    assert (code_of(reply), reply[1]) == (
        ACTION, "[one.vm.unlock] Cannot unlock: Lock is owned by another user")
    reply = server.call("one.vm.lock", vid, 1, False, session=bob)
    assert (code_of(reply), reply[1]) == (
        ACTION, "[one.vm.lock] Error trying to lock the resource.")
    assert one.vm.info(vid).LOCK.LOCKED == 4 and one.vm.info(vid).LOCK.OWNER == 0
    # The owner's own lock is the owner's to lift, and the admin may lift any.
    one.vm.unlock(vid)
    assert server.call("one.vm.lock", vid, 2, False, session=bob)[0]
    assert server.call("one.vm.unlock", vid, session=bob)[0]
    one.vm.action("terminate", vid)


def test_user_updates_itself_and_admin_disables_users(server: Server) -> None:
    uid, name, session = new_user(server, 1)
    assert server.call("one.user.update", uid, 'SSH_PUBLIC_KEY="ssh-ed25519 AAA"', 1,
                       session=session)[0]
    assert "SSH_PUBLIC_KEY" in server.call("one.user.info", uid, session=session)[1]
    assert code_of(server.call("one.user.enable", uid, False, session=session)) \
        == AUTHORIZATION
    assert server.call("one.user.enable", uid, False)[0]
    assert "<ENABLED>0</ENABLED>" in server.call("one.user.info", uid)[1]
    assert code_of(server.call("one.user.info", -1, session=session)) == AUTHENTICATION
    assert server.call("one.user.enable", uid, True)[0]
    assert server.call("one.user.info", -1, session=session)[0]
    reply = server.call("one.user.enable", 0, False)
    assert (code_of(reply), reply[1]) == (
        ACTION, "[one.user.enable] Cannot enable/disable oneadmin user")


def _vm_ids(server: Server, session: str) -> set[int]:
    body = server.call("one.vmpool.info", -2, -1, -1, -1, session=session)[1]
    return {int(i) for i in re.findall(r"<VM><ID>(\d+)</ID>", body)}


def test_group_scoped_tokens_act_with_that_group_only(server: Server) -> None:
    one = server.pyone()
    gid = one.group.allocate(uniq("scope"))
    uid, name, session = new_user(server, 1, gid)
    # A VM another member of "users" shares with the group.
    _, _, carol = new_user(server, 1)
    shared = server.pyone(carol).vm.allocate("CPU=0.1\nMEMORY=16", True)
    one.vm.chmod(shared, 1, 1, 0, 1, 0, 0, 0, 0, 0)
    assert shared in _vm_ids(server, session)

    ok, token, *_ = server.call("one.user.login", name, "", 600, gid, session=session)
    assert ok, token
    scoped = f"{name}:{token}"
    assert shared not in _vm_ids(server, scoped)  # only the token's group counts
    assert server.call("one.user.info", -1, session=scoped)[1].count("<GID>") >= 1
    reply = server.call("one.user.login", name, "", 600, -1, session=scoped)
    assert (code_of(reply), reply[1]) == (
        XML_RPC_API, "[one.user.login] Cannot create a full token with a specific group token")
    reply = server.call("one.user.login", name, "", 600, 1, session=scoped)
    assert (code_of(reply), reply[1]) == (
        XML_RPC_API, "[one.user.login] EGID is not in user group list")

    one.user.delgroup(uid, gid)  # the token dies with the membership
    assert code_of(server.call("one.user.info", -1, session=scoped)) == AUTHENTICATION
    assert server.call("one.user.info", -1, session=session)[0]
    one.vm.action("terminate", shared)


def test_admin_scoped_to_users_is_not_admin(server: Server) -> None:
    one = server.pyone()
    uid, name, session = new_user(server, 1)
    one.user.addgroup(uid, 0)
    assert server.call("one.host.allocate", uniq("h"), "dummy", "dummy", -1,
                       session=session)[0]  # a member of oneadmin is an administrator
    ok, token, *_ = server.call("one.user.login", name, "", 600, 1, session=session)
    assert ok, token
    reply = server.call("one.host.allocate", uniq("h"), "dummy", "dummy", -1,
                        session=f"{name}:{token}")
    assert code_of(reply) == AUTHORIZATION
    assert code_of(server.call("one.acl.info", session=f"{name}:{token}")) == AUTHORIZATION


def test_reads_oned_refuses_to_users(server: Server) -> None:
    one = server.pyone()
    hid = one.host.allocate(uniq("h"), "dummy", "dummy", -1)
    _, _, bob = new_user(server, 1)
    assert code_of(server.call("one.acl.info", session=bob)) == AUTHORIZATION
    assert code_of(server.call("one.host.monitoring", hid, session=bob)) == AUTHORIZATION
    assert code_of(server.call("one.host.info", hid, session=bob)) == AUTHORIZATION
    for method, params in (("one.hostpool.info", ()), ("one.clusterpool.info", ()),
                           ("one.hostpool.monitoring", (-1,))):
        ok, body, *_ = server.call(method, *params, session=bob)
        assert ok and "<ID>" not in body and "<HOST_ID>" not in body, (method, body[:200])
    one.host.delete(hid)


def test_restricted_attributes_stay_oneadmins(server: Server) -> None:
    """What the core reads as root (a datastore's SAFE_DIRS) and oned.conf's restricted VM
    attributes cannot be added or changed by their non-admin owners through update."""
    one = server.pyone()
    uid, _, bob = new_user(server, 1)
    ds = one.datastore.allocate(f'NAME="{uniq("ds")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\n'
                                'TM_MAD="ssh"\n', -1)
    one.datastore.chown(ds, uid, 1)
    for mode in (0, 1):
        reply = server.call("one.datastore.update", ds, 'SAFE_DIRS="/"', mode, session=bob)
        assert (code_of(reply), reply[1]) == (
            AUTHORIZATION, "[one.datastore.update] Template includes a restricted attribute "
                           "RESTRICTED_DIRS." if mode == 0 else
            "[one.datastore.update] Template includes a restricted attribute SAFE_DIRS.")
    assert server.call("one.datastore.update", ds, 'NOTE="mine"', 1, session=bob)[0]
    assert one.datastore.info(ds).TEMPLATE["SAFE_DIRS"] == "/var/tmp"
    ok, tid, *_ = server.call("one.template.allocate", f'NAME="{uniq("t")}"\nCPU=1\n',
                              session=bob)
    assert ok, tid
    reply = server.call("one.template.update", tid, 'DISK=[SOURCE="/etc"]', 1, session=bob)
    assert code_of(reply) == AUTHORIZATION and "DISK/SOURCE" in reply[1]
    one.datastore.delete(ds)
