"""Zones and VDCs as a standalone oned 7.4 serves them, through pyone and raw calls: zone 0
and the default VDC from the first start with oned's bodies and ACL rules, the refusals of a
non-federated server (which change nothing), and the ACL rules a VDC gives its groups, which
the scheduler then follows."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import xsd  # tests/api/xsd.py

from tests.conftest import Server, start_server, stop_server

ACTION, AUTHORIZATION, NO_EXISTS, INTERNAL, ALLOCATE = 0x800, 0x200, 0x400, 0x2000, 0x4000
DESCRIPTION = (
    "Every new group is added to this VDC. Use it to store default access rules for your "
    "groups. NOTE: You may need to remove a group from the default VDC before assigning it to "
    "other VDC.")
# oned 7.4.0's one.vdc.info 0 on a new database, byte for byte.
DEFAULT_VDC = (
    "<VDC><ID>0</ID><NAME>default</NAME><GROUPS><ID>1</ID></GROUPS><CLUSTERS><CLUSTER>"
    "<ZONE_ID>0</ZONE_ID><CLUSTER_ID>-10</CLUSTER_ID></CLUSTER></CLUSTERS><HOSTS></HOSTS>"
    "<DATASTORES></DATASTORES><VNETS></VNETS><TEMPLATE><DESCRIPTION><![CDATA["
    + DESCRIPTION + "]]></DESCRIPTION></TEMPLATE></VDC>")
# oned 7.4.0's six rules of a new database (ID, USER, RESOURCE, RIGHTS, ZONE, STRING), in the
# order one.acl.info lists them (by user, then by id).
DEFAULT_RULES = [
    (0, "200000001", "121429400000000", "8", "400000000",
     "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *"),
    (3, "200000001", "2400000000", "2", "100000000", "@1 HOST/* MANAGE #0"),
    (4, "200000001", "4400000000", "1", "100000000", "@1 NET/* USE #0"),
    (5, "200000001", "100400000000", "1", "100000000", "@1 DATASTORE/* USE #0"),
    (1, "400000000", "800400000000", "1", "400000000", "* ZONE/* USE *"),
    (2, "400000000", "18000400000000", "1", "400000000", "* MARKETPLACE+MARKETPLACEAPP/* USE *"),
]
_ACL = re.compile(r"<ACL><ID>(\d+)</ID><USER>(\w+)</USER><RESOURCE>(\w+)</RESOURCE>"
                  r"<RIGHTS>(\w+)</RIGHTS><ZONE>(\w+)</ZONE><STRING>([^<]*)</STRING></ACL>")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A server of this module alone: its first objects are as oned makes them."""
    srv = start_server(tmp_path_factory.mktemp("tenancy"), "sqlite")
    yield srv
    stop_server(srv)


def valid(xml: object) -> None:
    assert isinstance(xml, str) and not xsd.errors(xml), xsd.errors(str(xml))


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(server: Server, method: str, *params: object, session: str | None = None) -> object:
    reply = server.call(method, *params, session=session)
    assert reply[0] is True, (method, params, reply)
    return reply[1]


def refused(server: Server, code: int, message: str, method: str, *params: object,
            session: str | None = None) -> None:
    reply = server.call(method, *params, session=session)
    assert reply[0] is False and reply[2] == code, (method, params, reply)
    assert reply[1] == f"[{method}] {message}", reply


def rules(server: Server) -> list[tuple[str, ...]]:
    return [m.groups() for m in _ACL.finditer(ok(server, "one.acl.info"))]


def rule_strings(server: Server) -> set[str]:
    return {r[5] for r in rules(server)}


def user(server: Server, *groups: int) -> str:
    name = uniq("u")
    ok(server, "one.user.allocate", name, "pw", "", list(groups))
    return f"{name}:pw"


def test_first_start_has_oned_zone_vdc_and_rules(fresh: Server) -> None:
    port = fresh.url.split(":")[2].split("/")[0]
    zone = ok(fresh, "one.zone.info", 0, False)
    assert zone == (f"<ZONE><ID>0</ID><NAME>OpenNebula</NAME><STATE>0</STATE><TEMPLATE>"
                    f"<ENDPOINT><![CDATA[http://127.0.0.1:{port}/RPC2]]></ENDPOINT></TEMPLATE>"
                    f"<SERVER_POOL></SERVER_POOL></ZONE>")
    assert ok(fresh, "one.zonepool.info") == f"<ZONE_POOL>{zone}</ZONE_POOL>"
    assert ok(fresh, "one.vdc.info", 0, False) == DEFAULT_VDC
    assert ok(fresh, "one.vdcpool.info") == f"<VDC_POOL>{DEFAULT_VDC}</VDC_POOL>"
    assert [tuple(map(str, r)) for r in rules(fresh)] == [
        (str(r[0]), *r[1:]) for r in DEFAULT_RULES]
    for method, params in (("one.zone.info", (0,)), ("one.zonepool.info", ()),
                           ("one.vdc.info", (0,)), ("one.vdcpool.info", ())):
        valid(ok(fresh, method, *params))
    one = fresh.pyone()
    assert one.zone.info(0).TEMPLATE["ENDPOINT"] == f"http://127.0.0.1:{port}/RPC2"
    assert one.vdc.info(0).GROUPS.ID == [1]
    assert [z.NAME for z in one.zonepool.info().ZONE] == ["OpenNebula"]
    assert [v.NAME for v in one.vdcpool.info().VDC] == ["default"]


def test_a_rule_without_a_zone_is_for_zone_0(server: Server) -> None:
    rid = ok(server, "one.acl.addrule", f"{0x100000000 | 4242:x}", "1400000000", "1")
    assert (str(rid), "100001092", "1400000000", "1", "100000000",
            "#4242 VM/* USE #0") in rules(server)
    ok(server, "one.acl.delrule", rid)


def test_a_rule_of_another_zone_gives_nothing_here(server: Server) -> None:
    gid = ok(server, "one.group.allocate", uniq("zone5"))
    ok(server, "one.vdc.delgroup", 0, gid)
    session = user(server, gid)
    hid = ok(server, "one.host.allocate", uniq("h"), "dummy", "dummy", -1)
    # "@gid HOST/* USE #5": USE on every host, but in zone 5 only.
    rid = ok(server, "one.acl.addrule", f"{0x200000000 | gid:x}", "2400000000", "1",
             "100000005")
    refused(server, AUTHORIZATION, f"User [{_uid(server, session)}] : Not authorized to "
            f"perform USE HOST [{hid}].", "one.host.info", hid, False, session=session)
    ok(server, "one.acl.delrule", rid)


def _uid(server: Server, session: str) -> int:
    return server.pyone(session).user.info(-1).ID


def test_standalone_zone_refusals_change_nothing(server: Server) -> None:
    before = ok(server, "one.zone.info", 0, False)
    refused(server, ALLOCATE, "Error allocating a new zone. New zones can only be created at "
            "federation master", "one.zone.allocate", 'NAME="z2"\nENDPOINT="http://x/RPC2"')
    refused(server, ACTION, "Cannot delete zone. System Zones (ID < 100) cannot be deleted.",
            "one.zone.delete", 0)
    refused(server, NO_EXISTS, "Error getting zone [7].", "one.zone.delete", 7)
    refused(server, NO_EXISTS, "Error getting zone [7].", "one.zone.info", 7, False)
    refused(server, ACTION, "Enable/disable mode have to be set through the target zone "
            "endpoints", "one.zone.enable", 1, True)
    refused(server, ACTION, "Servers have to be added through the target zone endpoints",
            "one.zone.addserver", 3, 'SERVER=[NAME="a",ENDPOINT="http://a/RPC2"]')
    refused(server, ACTION, "Servers have to be deleted through the target zone endpoints",
            "one.zone.delserver", 3, 0)
    refused(server, ACTION, "Servers have to be deleted through the target zone endpoints",
            "one.zone.resetserver", 3, 0)
    refused(server, ACTION, "SERVER not found in template", "one.zone.addserver", 0, 'A="1"')
    refused(server, ACTION, "Missing NAME in SERVER", "one.zone.addserver", 0,
            'SERVER=[ENDPOINT="http://a/RPC2"]')
    refused(server, ACTION, "Missing ENDPOINT or ENDPOINT_GRPC in SERVER",
            "one.zone.addserver", 0, 'SERVER=[NAME="a"]')
    refused(server, ACTION, "SERVER not found in zone", "one.zone.delserver", 0, 9)
    session = user(server, 1)
    uid = _uid(server, session)
    # Everybody may USE zones ("* ZONE/* USE *"); nothing more.
    assert ok(server, "one.zone.info", 0, False, session=session) == before
    for method, params, right in (
            ("one.zone.update", (0, 'X="1"', 1), "MANAGE"),
            ("one.zone.rename", (0, "other"), "MANAGE"),
            ("one.zone.enable", (0, False), "ADMIN"),
            ("one.zone.addserver", (0, 'SERVER=[NAME="a",ENDPOINT="http://a/RPC2"]'),
             "ADMIN"),
            ("one.zone.delete", (0,), "ADMIN"),
            ("one.zone.raftstatus", (), "ADMIN")):
        refused(server, AUTHORIZATION, f"User [{uid}] : Not authorized to perform {right} "
                f"ZONE [0].", method, *params, session=session)
    assert ok(server, "one.zone.info", 0, False) == before


def test_zone_servers_update_and_raft_status(server: Server) -> None:
    pool = re.search(r"<SERVER_POOL>.*</SERVER_POOL>", ok(server, "one.zone.info", 0, False))
    for sid in re.findall(r"<ID><!\[CDATA\[(\d+)\]\]></ID>", pool.group(0) if pool else ""):
        ok(server, "one.zone.delserver", 0, int(sid))  # what other tests of this server added
    endpoint = re.search(r"<ENDPOINT><!\[CDATA\[(.*?)\]\]>",
                         ok(server, "one.zone.info", 0, False)).group(1)
    ok(server, "one.zone.update", 0, f'ENDPOINT="{endpoint}"', 0)  # and their attributes
    before = ok(server, "one.zone.info", 0, False)
    raft = ok(server, "one.zone.raftstatus")
    ok(server, "one.zone.addserver", 0, 'SERVER=[NAME="s1",ENDPOINT="http://s1:2633/RPC2"]')
    ok(server, "one.zone.addserver", 0, 'SERVER=[NAME="s2",ENDPOINT_GRPC="s2:2634",ID="7"]')
    body = ok(server, "one.zone.info", 0, False)
    # Ids are the zone's next ones (other tests of this server may have added servers), in
    # the order given; an ID in the template is not kept.
    found = re.search(
        r"<SERVER><ENDPOINT><!\[CDATA\[http://s1:2633/RPC2\]\]></ENDPOINT>"
        r"<ID><!\[CDATA\[(\d+)\]\]></ID><NAME><!\[CDATA\[s1\]\]></NAME></SERVER><SERVER>"
        r"<ENDPOINT_GRPC><!\[CDATA\[s2:2634\]\]></ENDPOINT_GRPC><ID><!\[CDATA\[(\d+)\]\]></ID>"
        r"<NAME><!\[CDATA\[s2\]\]></NAME></SERVER></SERVER_POOL>", body)
    assert found, body
    s1, s2 = int(found.group(1)), int(found.group(2))
    assert s2 == s1 + 1
    valid(body)
    # A standalone server stays solo: oned's Raft takes servers only as a leader.
    assert ok(server, "one.zone.raftstatus") == raft
    ok(server, "one.zone.resetserver", 0, s2)
    ok(server, "one.zone.delserver", 0, s1)
    ok(server, "one.zone.delserver", 0, s2)
    # SERVER in the template is never kept, nor an empty ENDPOINT.
    ok(server, "one.zone.update", 0, 'SERVER=[NAME="x"]\nENDPOINT=""\nLABEL="z"', 1)
    body = ok(server, "one.zone.info", 0, False)
    assert "<ENDPOINT><![CDATA[-]]></ENDPOINT>" in body and "<SERVER>" not in body
    ok(server, "one.zone.update", 0, f'ENDPOINT="{endpoint}"', 0)
    ok(server, "one.zone.rename", 0, "Renamed")
    ok(server, "one.zone.rename", 0, "OpenNebula")
    assert ok(server, "one.zone.info", 0, False) == before


def test_vdc_rules_follow_groups_and_resources(server: Server) -> None:
    gid = ok(server, "one.group.allocate", uniq("vdcg"))
    cid = ok(server, "one.cluster.allocate", uniq("vdcc"))
    hid = ok(server, "one.host.allocate", uniq("vdch"), "dummy", "dummy", -1)
    vid = ok(server, "one.vdc.allocate", f'NAME="{uniq("vdc")}"\nDESCRIPTION="d"')
    assert vid >= 100
    ok(server, "one.vdc.addgroup", vid, gid)
    ok(server, "one.vdc.addcluster", vid, 0, cid)
    ok(server, "one.vdc.addhost", vid, 0, hid)
    ok(server, "one.vdc.adddatastore", vid, 0, 1)
    mine = {s for s in rule_strings(server) if s.startswith(f"@{gid} ")}
    assert mine >= {f"@{gid} HOST/%{cid} MANAGE #0", f"@{gid} NET/%{cid} USE #0",
                    f"@{gid} DATASTORE/%{cid} USE #0", f"@{gid} HOST/#{hid} MANAGE #0",
                    f"@{gid} DATASTORE/#1 USE #0"}
    body = ok(server, "one.vdc.info", vid, False)
    valid(body)
    assert (f"<GROUPS><ID>{gid}</ID></GROUPS><CLUSTERS><CLUSTER><ZONE_ID>0</ZONE_ID>"
            f"<CLUSTER_ID>{cid}</CLUSTER_ID></CLUSTER></CLUSTERS><HOSTS><HOST><ZONE_ID>0"
            f"</ZONE_ID><HOST_ID>{hid}</HOST_ID></HOST></HOSTS><DATASTORES><DATASTORE>"
            f"<ZONE_ID>0</ZONE_ID><DATASTORE_ID>1</DATASTORE_ID></DATASTORE></DATASTORES>"
            f"<VNETS></VNETS><TEMPLATE><DESCRIPTION><![CDATA[d]]></DESCRIPTION></TEMPLATE>"
            ) in body
    # A second group gets the same rules; all clusters of zone 0 replace the one cluster.
    g2 = ok(server, "one.group.allocate", uniq("vdcg2"))
    ok(server, "one.vdc.addgroup", vid, g2)
    assert f"@{g2} HOST/#{hid} MANAGE #0" in rule_strings(server)
    ok(server, "one.vdc.delgroup", 0, g2)  # the default VDC already gives @g2 HOST/*
    ok(server, "one.vdc.addcluster", vid, 0, -10)
    strings = rule_strings(server)
    assert f"@{gid} HOST/%{cid} MANAGE #0" not in strings
    assert {f"@{gid} HOST/* MANAGE #0", f"@{g2} DATASTORE/* USE #0"} <= strings
    assert "<CLUSTER_ID>-10</CLUSTER_ID>" in ok(server, "one.vdc.info", vid, False)
    ok(server, "one.vdc.delgroup", vid, g2)
    assert not {s for s in rule_strings(server) if s.startswith(f"@{g2} ")}
    # Deleting the VDC takes its groups' rules. As in oned, that includes the rules the default
    # VDC (gid is in it too) gives the same way: one rule serves both, and goes with either.
    ok(server, "one.vdc.delete", vid)
    assert {s for s in rule_strings(server) if s.startswith(f"@{gid} ")} == set()
    refused(server, NO_EXISTS, f"Error getting VDC [{vid}].", "one.vdc.info", vid, False)


def test_groups_join_and_leave_the_default_vdc(server: Server) -> None:
    gid = ok(server, "one.group.allocate", uniq("newg"))
    assert f"<ID>{gid}</ID>" in ok(server, "one.vdc.info", 0, False)
    assert {f"@{gid} HOST/* MANAGE #0", f"@{gid} NET/* USE #0",
            f"@{gid} DATASTORE/* USE #0"} <= rule_strings(server)
    ok(server, "one.group.delete", gid)
    assert f"<ID>{gid}</ID>" not in ok(server, "one.vdc.info", 0, False)
    assert not {s for s in rule_strings(server) if s.startswith(f"@{gid} ")}


def test_vdc_refusals_change_nothing(server: Server) -> None:
    vid = ok(server, "one.vdc.allocate", f'NAME="{uniq("vdcr")}"')
    name = ok(server, "one.vdc.info", vid, False)
    taken = re.search(r"<NAME>(.*?)</NAME>", name).group(1)
    before, acl = ok(server, "one.vdc.info", vid, False), rules(server)
    refused(server, INTERNAL, f"NAME is already taken by Vdc {vid}.", "one.vdc.allocate",
            f'NAME="{taken}"')
    refused(server, INTERNAL, "Invalid NAME, it cannot be empty", "one.vdc.allocate", "A=1")
    refused(server, ACTION, "Cannot delete VDC. System VDCs (ID < 100) cannot be deleted.",
            "one.vdc.delete", 0)
    refused(server, NO_EXISTS, "Error getting VDC [99999].", "one.vdc.addgroup", 99999, 1)
    refused(server, NO_EXISTS, "Error getting group [99999].", "one.vdc.addgroup", vid, 99999)
    refused(server, NO_EXISTS, "Error getting zone [5].", "one.vdc.addcluster", vid, 5, 0)
    refused(server, NO_EXISTS, "Error getting cluster [99999].", "one.vdc.addcluster", vid,
            0, 99999)
    refused(server, NO_EXISTS, "Error getting host [99999].", "one.vdc.addhost", vid, 0, 99999)
    refused(server, NO_EXISTS, "Error getting datastore [99999].", "one.vdc.adddatastore",
            vid, 0, 99999)
    refused(server, NO_EXISTS, "Error getting virtual network [99999].", "one.vdc.addvnet",
            vid, 0, 99999)
    refused(server, INTERNAL, "Group 1 is not assigned to the VDC " + str(vid),
            "one.vdc.delgroup", vid, 1)
    refused(server, INTERNAL, "NET 99999 from Zone 0 is not assigned to the VDC ",
            "one.vdc.delvnet", vid, 0, 99999)
    refused(server, INTERNAL, "CLUSTER 0 from Zone 5 is not assigned to the VDC ",
            "one.vdc.delcluster", vid, 5, 0)
    ok(server, "one.vdc.addgroup", vid, 1)
    refused(server, INTERNAL, f"Group 1 is already assigned to the VDC {vid}",
            "one.vdc.addgroup", vid, 1)
    ok(server, "one.vdc.delgroup", vid, 1)
    ok(server, "one.vdc.addcluster", vid, 0, 0)
    refused(server, INTERNAL, "CLUSTER 0 from Zone 0 is already assigned to the VDC",
            "one.vdc.addcluster", vid, 0, 0)
    ok(server, "one.vdc.delcluster", vid, 0, 0)
    session = user(server, 1)
    uid = _uid(server, session)
    for method, params, right in (("one.vdc.info", (vid, False), "USE"),
                                  ("one.vdc.addgroup", (vid, 1), "ADMIN"),
                                  ("one.vdc.update", (vid, 'A="1"', 1), "MANAGE"),
                                  ("one.vdc.delete", (vid,), "ADMIN")):
        refused(server, AUTHORIZATION, f"User [{uid}] : Not authorized to perform {right} "
                f"VDC [{vid}].", method, *params, session=session)
    refused(server, AUTHORIZATION, f"User [{uid}] : Not authorized to perform CREATE VDC.",
            "one.vdc.allocate", 'NAME="mine"', session=session)
    assert ok(server, "one.vdc.info", vid, False) == before
    assert rules(server) == acl


def _wait_placed(server: Server, vid: int) -> int:
    deadline = time.time() + 20
    while time.time() < deadline:
        vm = server.pyone().vm.info(vid)
        if vm.STATE == 3 and vm.LCM_STATE == 3:
            return vm.HISTORY_RECORDS.HISTORY[-1].HID
        time.sleep(0.05)
    raise AssertionError(f"VM {vid} never ran: {vm.USER_TEMPLATE.get('SCHED_MESSAGE')}")


def test_a_vdc_group_deploys_only_on_its_cluster(server: Server) -> None:
    """The scheduler places a user's VM only where the owner may MANAGE the host: for a group
    taken out of the default VDC and put in a VDC with one cluster, that cluster's hosts."""
    one = server.pyone()
    role = f"role{uuid.uuid4().hex[:8]}"
    cid = one.cluster.allocate(uniq("only"))
    one.cluster.adddatastore(cid, 0)  # the system datastore, which the VDC's group USEs
    inside = one.host.allocate(uniq("in"), "dummy", "dummy", cid)
    outside = [one.host.allocate(uniq("out"), "dummy", "dummy", -1) for _ in range(2)]
    for hid in (inside, *outside):
        one.host.update(hid, f'ROLE="{role}"', 1)
    deadline = time.time() + 20
    while any(one.host.info(h).STATE != 2 for h in (inside, *outside)):
        assert time.time() < deadline, "hosts not MONITORED"
        time.sleep(0.05)
    gid = one.group.allocate(uniq("tenant"))
    one.vdc.delgroup(0, gid)
    vid = one.vdc.allocate(f'NAME="{uniq("tenant-vdc")}"')
    one.vdc.addgroup(vid, gid)
    one.vdc.addcluster(vid, 0, cid)
    # What onegroup create --resources VM would add: the group's users may create VMs.
    one.acl.addrule(f"{0x200000000 | gid:x}", "1400000000", "8", "")
    session = user(server, gid)
    template = f'CPU=0.1\nMEMORY=16\nSCHED_REQUIREMENTS="ROLE = {role}"\n'
    vms = [server.pyone(session).vm.allocate(template) for _ in range(3)]
    assert {_wait_placed(server, v) for v in vms} == {inside}


def test_a_disabled_zone_serves_reads_only(fresh: Server) -> None:
    ok(fresh, "one.zone.enable", 0, False)
    try:
        assert "<STATE>1</STATE>" in ok(fresh, "one.zone.info", 0, False)
        before = ok(fresh, "one.vdcpool.info")
        refused(fresh, INTERNAL, "Cannot process request, zone disabled", "one.vdc.allocate",
                'NAME="while-disabled"')
        refused(fresh, INTERNAL, "Cannot process request, zone disabled", "one.acl.info")
        assert ok(fresh, "one.vdcpool.info") == before
        assert ok(fresh, "one.system.version") == "7.4.0"
        # A session that is no good is told so first, as oned.
        reply = fresh.call("one.vdc.allocate", 'NAME="x"', session="oneadmin:wrong")
        assert reply[2] == 0x100
    finally:
        ok(fresh, "one.zone.enable", 0, True)
    assert "<STATE>0</STATE>" in ok(fresh, "one.zone.info", 0, False)
    vid = ok(fresh, "one.vdc.allocate", f'NAME="{uniq("after")}"')
    ok(fresh, "one.vdc.delete", vid)


def test_a_deleted_resource_leaves_its_vdcs(server: Server) -> None:
    gid = ok(server, "one.group.allocate", uniq("leave"))
    vid = ok(server, "one.vdc.allocate", f'NAME="{uniq("leave")}"')
    ok(server, "one.vdc.addgroup", vid, gid)
    cid = ok(server, "one.cluster.allocate", uniq("gone"))
    hid = ok(server, "one.host.allocate", uniq("gone"), "dummy", "dummy", -1)
    dsid = ok(server, "one.datastore.allocate",
              f'NAME="{uniq("gone")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n', -1)
    ok(server, "one.vdc.addcluster", vid, 0, cid)
    ok(server, "one.vdc.addhost", vid, 0, hid)
    ok(server, "one.vdc.adddatastore", vid, 0, dsid)
    # A rule given by hand on the host goes with it too (SharedAPI's del_resource_rules).
    by_hand = ok(server, "one.acl.addrule", f"{0x200000000 | gid:x}", f"{0x2100000000 | hid:x}",
                 "1")
    ok(server, "one.cluster.delete", cid)
    ok(server, "one.host.delete", hid)
    ok(server, "one.datastore.delete", dsid)
    body = ok(server, "one.vdc.info", vid, False)
    assert "<CLUSTERS></CLUSTERS><HOSTS></HOSTS><DATASTORES></DATASTORES>" in body
    mine = {s for s in rule_strings(server) if s.startswith(f"@{gid} ")}
    assert mine == {f"@{gid} HOST/* MANAGE #0", f"@{gid} NET/* USE #0",
                    f"@{gid} DATASTORE/* USE #0"}  # the default VDC's only
    assert str(by_hand) not in {r[0] for r in rules(server)}


def test_an_older_database_gets_zone_0_and_the_default_vdc(tmp_path) -> None:  # noqa: ANN001
    from tests.api.test_schema_migration import empty_database, load_release, serve, stop
    with empty_database("sqlite", tmp_path) as url:
        load_release("0.1.0", "sqlite", url)
        server = serve(tmp_path, url, "sqlite")
        try:
            assert ok(server, "one.vdc.info", 0, False) == DEFAULT_VDC
            assert "<NAME>OpenNebula</NAME>" in ok(server, "one.zone.info", 0, False)
            strings = [r[5] for r in rules(server)]
            # The release's own pair of rules becomes the default VDC's three.
            for rule in ("@1 HOST/* MANAGE #0", "@1 NET/* USE #0", "@1 DATASTORE/* USE #0"):
                assert strings.count(rule) == 1, strings
            assert "@1 NET+DATASTORE/* USE #0" not in strings
        finally:
            stop(server)


def test_a_vdc_network_gives_its_groups_use(server: Server) -> None:
    gid = ok(server, "one.group.allocate", uniq("net"))
    vid = ok(server, "one.vdc.allocate", f'NAME="{uniq("net")}"')
    ok(server, "one.vdc.addgroup", vid, gid)
    net = ok(server, "one.vn.allocate", f'NAME="{uniq("net")}"\nVN_MAD="dummy"\nBRIDGE="b0"\n'
             'AR=[TYPE="IP4",IP="10.99.0.1",SIZE="2"]', -1)
    ok(server, "one.vdc.addvnet", vid, 0, net)
    assert f"@{gid} NET/#{net} USE #0" in rule_strings(server)
    assert (f"<VNETS><VNET><ZONE_ID>0</ZONE_ID><VNET_ID>{net}</VNET_ID></VNET></VNETS>"
            in ok(server, "one.vdc.info", vid, False))
    ok(server, "one.vdc.delvnet", vid, 0, net)
    assert f"@{gid} NET/#{net} USE #0" not in rule_strings(server)
    # Another zone's network is not looked for here.
    refused(server, NO_EXISTS, "Error getting zone [3].", "one.vdc.addvnet", vid, 3, net)


def test_a_deleted_network_leaves_its_vdcs(server: Server) -> None:
    gid = ok(server, "one.group.allocate", uniq("netgone"))
    vid = ok(server, "one.vdc.allocate", f'NAME="{uniq("netgone")}"')
    ok(server, "one.vdc.addgroup", vid, gid)
    net = ok(server, "one.vn.allocate", f'NAME="{uniq("netgone")}"\nVN_MAD="dummy"\n'
             'BRIDGE="b0"\nAR=[TYPE="ETHER",SIZE="2"]', -1)
    ok(server, "one.vdc.addvnet", vid, 0, net)
    ok(server, "one.vn.delete", net)
    assert "<VNETS></VNETS>" in ok(server, "one.vdc.info", vid, False)
    assert f"@{gid} NET/#{net} USE #0" not in rule_strings(server)
