"""Every point between two transactions of every operation where the core can die: the rows
such a crash leaves are written while no core runs (the supervisor is held with SIGSTOP, its
core killed), then the supervisor goes on, starts a new core, and each VM must settle where
its operation leads, each operation end (done, or superseded when its VM was changed by
someone else meanwhile), and each host's HOST_SHARE equal the sum of the VMs it holds.

One crash, one restart for all points: each point has its own VM on its own dummy host, so
each is judged alone. The rows are built with the product's own rules (``lifecycle``), as the
API and the executor write them: the API's transition queues the operation, then the
executor's steps (``lifecycle.advance``) as far as the point says."""

from __future__ import annotations

import os
import signal
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oneserver import api, db, store
from oneserver.model import lifecycle, nic_hotplug
from oneserver.model.images import ImageState
from oneserver.model.vmstate import Lcm, VmState
from oneserver.template import Template
from tests.api.test_crash import children, role
from tests.conftest import Server, backends, start_server, stop_server, wait_for

Doc = dict[str, Any]
Ops = list[lifecycle.Op]
CPU, MEMORY = 0.25, 64  # every VM's size: 25 in CPU_USAGE, 65536 KB in MEM_USAGE
HOLDING = (VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED)  # states that keep capacity
S, L = VmState, Lcm


def act(name: str) -> Callable[[Doc, Doc, Doc | None], Ops]:
    """``one.vm.action name`` as the API applies it."""
    return lambda vm, host, dst: lifecycle.action(vm, name, 0, 0)


def deploy(vm: Doc, host: Doc, dst: Doc | None) -> Ops:
    """A placement (the scheduler's or ``one.vm.deploy``) of a HOLD, STOPPED or UNDEPLOYED VM."""
    op = lifecycle.deploy(vm, host, 0, "dummy")
    op.args["backoff"] = 1.0  # as the scheduler's: a failed deploy goes back to PENDING
    return [op]


def migrate(vm: Doc, host: Doc, dst: Doc | None) -> Ops:
    assert dst is not None
    return [lifecycle.migrate(vm, host, dst, 0, "dummy", 0, 0)]


def resize(vm: Doc, host: Doc, dst: Doc | None) -> Ops:
    lifecycle.set_state(vm, VmState.ACTIVE, Lcm.HOTPLUG_RESIZE)
    return [lifecycle.Op("resize", host["id"])]


NETWORK: dict[str, int] = {}  # the network NIC points use, made by build_world


def nic_attach(vm: Doc, host: Doc, dst: Doc | None) -> Ops:
    """``one.vm.attachnic`` on a running VM (its lease taken now, HOTPLUG_NIC)."""
    nic = Template([("NIC", {"NETWORK_ID": str(NETWORK["id"])})])
    return nic_hotplug.attach(vm, nic, lambda kind, obj: None, 0, 0)


def nic_detach(vm: Doc, host: Doc, dst: Doc | None) -> Ops:
    """``one.vm.detachnic`` of the VM's first NIC on a running VM (HOTPLUG_NIC)."""
    return nic_hotplug.detach(vm, 0, 0, 0)


def recover(code: int) -> Callable[[Doc, Doc, Doc | None], Ops]:
    return lambda vm, host, dst: lifecycle.recover(vm, host, code, 0, 0)


def failed(vm: Doc, host: Doc) -> Ops:
    lifecycle.fail(vm, "injected driver failure")
    return []


def requeued(vm: Doc, host: Doc) -> Ops:
    return lifecycle.requeue(vm, host, "injected driver failure", 1.0)


@dataclass(frozen=True)
class Point:
    name: str
    base: str  # what the VM is made through the API first: hold running poweroff suspended…
    start: Callable[[Doc, Doc, Doc | None], Ops]  # the API call that queued the operation
    steps: int  # executor steps committed before the crash
    expect: tuple[int, int]  # (STATE, LCM_STATE) once settled
    # The executor's outcome of a failed step, committed before the crash.
    failure: Callable[[Doc, Doc], Ops] | None = None
    # An API call made while no core ran, after the crash (its operation is queued behind).
    later: Callable[[Doc, Doc, Doc | None], Ops] | None = None
    status: str = "running"  # the crashed operation's row: claimed, or not yet
    legacy: bool = False  # an operation row written before operations counted VM states
    superseded: bool = False  # the crashed operation must end without touching the VM
    two_hosts: bool = False  # migrations: the VM moves to a second host
    records: int | None = None  # HISTORY records at the end, when it tells a rerun apart
    nics: int | None = None  # NICs the VM is made with (on NETWORK), and has once settled


POINTS = [
    # NIC hotplug: HOTPLUG_NIC → RUNNING, the NIC (and its lease) kept or given back
    Point("nic-attach-claimed", "running", nic_attach, 0, (S.ACTIVE, L.RUNNING), nics=1),
    Point("nic-detach-claimed", "running", nic_detach, 0, (S.ACTIVE, L.RUNNING), nics=0),
    # deploy: PROLOG → BOOT → RUNNING
    Point("deploy-queued", "hold", deploy, 0, (S.ACTIVE, L.RUNNING), status="queued"),
    Point("deploy-claimed", "hold", deploy, 0, (S.ACTIVE, L.RUNNING)),
    Point("deploy-after-prolog", "hold", deploy, 1, (S.ACTIVE, L.RUNNING)),
    Point("deploy-after-boot", "hold", deploy, 2, (S.ACTIVE, L.RUNNING), records=1),
    Point("deploy-after-boot-legacy", "hold", deploy, 2, (S.ACTIVE, L.RUNNING), legacy=True),
    Point("deploy-after-boot-failed", "hold", deploy, 1, (S.ACTIVE, L.BOOT_FAILURE),
          failure=failed),
    Point("deploy-after-requeue", "hold", deploy, 1, (S.ACTIVE, L.RUNNING), failure=requeued,
          records=2),
    Point("deploy-then-poweroff", "hold", deploy, 2, (S.POWEROFF, 0), later=act("poweroff"),
          superseded=True),
    Point("deploy-then-recreate", "hold", deploy, 1, (S.ACTIVE, L.RUNNING), later=recover(4),
          superseded=True, records=2),
    # Moved away and back to PROLOG by someone else before it ran: not this deploy's PROLOG.
    Point("deploy-queued-then-recreate", "hold", deploy, 0, (S.ACTIVE, L.RUNNING),
          later=recover(4), status="queued", superseded=True, records=2),
    Point("resume-stopped-claimed", "stopped", deploy, 0, (S.ACTIVE, L.RUNNING)),
    Point("resume-stopped-after-prolog", "stopped", deploy, 1, (S.ACTIVE, L.RUNNING)),
    Point("resume-undeployed-claimed", "undeployed", deploy, 0, (S.ACTIVE, L.RUNNING)),
    Point("resume-undeployed-after-prolog", "undeployed", deploy, 1, (S.ACTIVE, L.RUNNING)),
    # terminate: SHUTDOWN → EPILOG → DONE
    Point("terminate-claimed", "running", act("terminate"), 0, (S.DONE, 0)),
    Point("terminate-after-shutdown", "running", act("terminate"), 1, (S.DONE, 0)),
    Point("terminate-after-shutdown-legacy", "running", act("terminate"), 1, (S.DONE, 0),
          legacy=True),
    Point("terminate-after-epilog", "running", act("terminate"), 2, (S.DONE, 0)),
    Point("terminate-hard-after-shutdown", "running", act("terminate-hard"), 1, (S.DONE, 0)),
    Point("terminate-after-shutdown-failed", "running", act("terminate"), 0,
          (S.ACTIVE, L.RUNNING), failure=failed),
    Point("terminate-poweroff-claimed", "poweroff", act("terminate"), 0, (S.DONE, 0)),
    Point("terminate-poweroff-after-epilog", "poweroff", act("terminate"), 1, (S.DONE, 0)),
    Point("terminate-poweroff-after-epilog-failed", "poweroff", act("terminate"), 0,
          (S.ACTIVE, L.EPILOG_FAILURE), failure=failed),
    Point("terminate-stopped-claimed", "stopped", act("terminate"), 0, (S.DONE, 0)),
    # undeploy: SHUTDOWN_UNDEPLOY → EPILOG_UNDEPLOY → UNDEPLOYED
    Point("undeploy-claimed", "running", act("undeploy"), 0, (S.UNDEPLOYED, 0)),
    Point("undeploy-after-shutdown", "running", act("undeploy"), 1, (S.UNDEPLOYED, 0)),
    Point("undeploy-after-shutdown-legacy", "running", act("undeploy"), 1, (S.UNDEPLOYED, 0),
          legacy=True),
    Point("undeploy-after-epilog", "running", act("undeploy"), 2, (S.UNDEPLOYED, 0)),
    Point("undeploy-poweroff-claimed", "poweroff", act("undeploy"), 0, (S.UNDEPLOYED, 0)),
    # stop: SAVE_STOP → EPILOG_STOP → STOPPED
    Point("stop-claimed", "running", act("stop"), 0, (S.STOPPED, 0)),
    Point("stop-after-save", "running", act("stop"), 1, (S.STOPPED, 0)),
    Point("stop-after-save-legacy", "running", act("stop"), 1, (S.STOPPED, 0), legacy=True),
    Point("stop-after-epilog", "running", act("stop"), 2, (S.STOPPED, 0)),
    # poweroff: SHUTDOWN_POWEROFF → POWEROFF
    Point("poweroff-claimed", "running", act("poweroff"), 0, (S.POWEROFF, 0)),
    Point("poweroff-after-shutdown", "running", act("poweroff"), 1, (S.POWEROFF, 0)),
    Point("poweroff-hard-claimed", "running", act("poweroff-hard"), 0, (S.POWEROFF, 0)),
    # resume: BOOT_POWEROFF → RUNNING; BOOT_SUSPENDED → RUNNING
    Point("resume-poweroff-claimed", "poweroff", act("resume"), 0, (S.ACTIVE, L.RUNNING)),
    Point("resume-poweroff-after-boot", "poweroff", act("resume"), 1, (S.ACTIVE, L.RUNNING)),
    Point("resume-poweroff-after-boot-legacy", "poweroff", act("resume"), 1,
          (S.ACTIVE, L.RUNNING), legacy=True),
    Point("resume-suspended-claimed", "suspended", act("resume"), 0, (S.ACTIVE, L.RUNNING)),
    Point("resume-suspended-after-resume", "suspended", act("resume"), 1,
          (S.ACTIVE, L.RUNNING)),
    # suspend: SAVE_SUSPEND → SUSPENDED
    Point("suspend-claimed", "running", act("suspend"), 0, (S.SUSPENDED, 0)),
    Point("suspend-after-save", "running", act("suspend"), 1, (S.SUSPENDED, 0)),
    # reboot, reset, resize: the VM stays RUNNING
    Point("reboot-claimed", "running", act("reboot"), 0, (S.ACTIVE, L.RUNNING)),
    Point("reset-claimed", "running", act("reboot-hard"), 0, (S.ACTIVE, L.RUNNING)),
    Point("resize-claimed", "running", resize, 0, (S.ACTIVE, L.RUNNING)),
    Point("resize-after-resize", "running", resize, 1, (S.ACTIVE, L.RUNNING)),
    # migrate: SAVE_MIGRATE → PROLOG_MIGRATE → BOOT_MIGRATE → RUNNING on the second host
    Point("migrate-claimed", "running", migrate, 0, (S.ACTIVE, L.RUNNING), two_hosts=True),
    Point("migrate-after-save", "running", migrate, 1, (S.ACTIVE, L.RUNNING), two_hosts=True),
    Point("migrate-after-disks", "running", migrate, 2, (S.ACTIVE, L.RUNNING), two_hosts=True),
    Point("migrate-after-boot", "running", migrate, 3, (S.ACTIVE, L.RUNNING), two_hosts=True,
          records=2),
    Point("migrate-poweroff-claimed", "poweroff", migrate, 0, (S.POWEROFF, 0), two_hosts=True),
    Point("migrate-poweroff-after-disks", "poweroff", migrate, 1, (S.POWEROFF, 0),
          two_hosts=True),
    # delete, delete-recreate: the VM is settled by the API; the cleanup must still run
    Point("delete-claimed", "running", recover(3), 0, (S.DONE, 0)),
    Point("delete-recreate-claimed", "running", recover(4), 0, (S.ACTIVE, L.RUNNING),
          records=2),
]


def test_every_transient_state_has_a_step_and_its_outcomes() -> None:
    """What makes every crash point resumable: each state an operation drives has a driver
    step, a next state or a settled one, and a failure path."""
    from oneserver.core.executor import STEPS
    from oneserver.model import operations
    driven = set().union(*operations.DRIVES.values())
    assert driven == set(STEPS)
    for lcm in driven:
        assert lcm in lifecycle.ADVANCE or lcm in lifecycle.SETTLED_OK, lcm
        assert lcm in lifecycle.FAILED, lcm
    for lcm, nxt in lifecycle.ADVANCE.items():  # a next step belongs to the same operations
        assert all(nxt in states for states in operations.DRIVES.values() if lcm in states)


# ----------------------------------------------------------------------------- the server

@dataclass
class Case:
    point: Point
    vm: int
    host: int
    dst: int | None
    op: int = -1  # the crashed operation's id


@dataclass
class World:
    server: Server
    cases: dict[str, Case]
    images: dict[str, int]
    image_dir: Path


def hold_core(server: Server) -> None:
    """No core runs afterwards, and none is started: the supervisor is stopped (SIGSTOP) and
    its core killed."""
    core = role(server.proc.pid, "core")
    os.kill(server.proc.pid, signal.SIGSTOP)
    os.kill(core, signal.SIGKILL)
    # A zombie until the supervisor reaps it, but its files and locks are already released.
    wait_for("the core to die", lambda: Path(f"/proc/{core}/stat").read_text().split()[2]
             in "ZX")


def release_core(server: Server) -> int:
    """The supervisor goes on, finds its core dead and starts another; its pid."""
    old = set(children(server.proc.pid))
    os.kill(server.proc.pid, signal.SIGCONT)
    return wait_for("a new core", lambda: next(
        (p for p in children(server.proc.pid) if p not in old), None))


def make_base(server: Server, cases: list[Case]) -> None:
    """Bring each VM where its point starts, through the API."""
    one = server.pyone()
    actions = {"poweroff": "poweroff", "suspended": "suspend", "stopped": "stop",
               "undeployed": "undeploy"}
    for case in cases:
        if case.point.base in actions:
            server.wait_vm(case.vm, S.ACTIVE, L.RUNNING, timeout=30)
            one.vm.action(actions[case.point.base], case.vm)
    wanted = {"hold": (S.HOLD, 0), "running": (S.ACTIVE, L.RUNNING), "poweroff": (S.POWEROFF, 0),
              "suspended": (S.SUSPENDED, 0), "stopped": (S.STOPPED, 0),
              "undeployed": (S.UNDEPLOYED, 0)}
    for case in cases:
        server.wait_vm(case.vm, *wanted[case.point.base], timeout=30)


def write_crash(case: Case) -> None:
    """The rows the crash of ``case.point`` leaves, in one transaction (the core is dead)."""
    p = case.point
    now = time.time()
    with db.write_transaction():
        vm, host = store.load("vm", case.vm), store.load("host", case.host)
        dst = store.load("host", case.dst) if case.dst is not None else None
        ops = p.start(vm, host, dst)
        assert len(ops) == 1, ops
        worked_on = dst if dst is not None else host  # where the operation's steps run
        for _ in range(p.steps):
            lifecycle.advance(vm, worked_on)
        queued_by_step = p.failure(vm, worked_on) if p.failure else []
        seq = lifecycle.state_seq(vm)
        later = p.later(vm, host, dst) if p.later else []
        store.save("vm", vm)
        for h in (host, dst):
            if h is not None:
                store.save("host", h)
        op = ops[0]
        case.op = db.Operation.create(
            vm_id=vm["id"], host_id=op.host_id, action=op.action, args=op.args, created=now,
            status=p.status, started=now if p.status == "running" else None,
            state_seq=None if p.legacy else seq).id
        for op in queued_by_step + later:
            db.Operation.create(vm_id=vm["id"], host_id=op.host_id, action=op.action,
                                args=op.args, created=now, state_seq=lifecycle.state_seq(vm))


# ----------------------------------------------------------------------------- images

def rootfs(directory: Path) -> Path:
    tree = directory / "tree"
    (tree / "sbin").mkdir(parents=True)
    (tree / "sbin" / "init").write_text("#!/bin/sh\nexec sleep 1000\n")
    (tree / "data.bin").write_bytes(os.urandom(100_000))
    out = directory / "rootfs.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(tree, arcname=".")
    return out


def image_crashes(server: Server, ds: int, path: Path) -> dict[str, int]:
    """Image operations cut short, while no core runs: a copy-in claimed (its half-written part
    file left in the datastore), a copy that finished but was not marked done, a clone claimed,
    a delete claimed after the files went. Returns the images by point."""
    one = server.pyone()
    out = {name: one.image.allocate(f'NAME="{name}-{uuid.uuid4().hex[:6]}"\nPATH="{path}"\n', ds)
           for name in ("copy-claimed", "copy-finished", "clone-source", "delete-claimed")}
    return out


def claim_image_ops(image_ids: list[int]) -> None:
    with db.write_transaction():
        db.Operation.update(status="running", started=time.time()).where(
            (db.Operation.kind == "image") & (db.Operation.vm_id.in_(image_ids))
            & (db.Operation.status == "queued")).execute()


# ----------------------------------------------------------------------------- fixture

@pytest.fixture(scope="module", params=backends())
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"crash-points-{request.param}")
    server = start_server(tmp, request.param)
    db.open_database(server.db_url)
    api.load_all()  # the rules that span kinds (a VM that ends releases its images)
    try:
        yield build_world(server, tmp)
    finally:
        db.database.close()
        stop_server(server)


def build_world(server: Server, tmp: Path) -> World:
    one = server.pyone()
    cases: dict[str, Case] = {}
    NETWORK["id"] = one.vn.allocate('NAME="cp-net"\nVN_MAD="dummy"\nBRIDGE="cpbr"\n'
                                    'AR=[TYPE="IP4",IP="10.213.9.10",SIZE="10"]', -1)
    for p in POINTS:
        hid = one.host.allocate(f"cp-{p.name}", "dummy", "dummy", -1)
        dst = one.host.allocate(f"cp-{p.name}-dst", "dummy", "dummy", -1) if p.two_hosts \
            else None
        nics = f'NIC=[NETWORK_ID="{NETWORK["id"]}"]\n' if p.name == "nic-detach-claimed" else ""
        vm = one.vm.allocate(f'NAME="cp-{p.name}"\nCPU={CPU}\nMEMORY={MEMORY}\n'
                             f'SCHED_REQUIREMENTS="ID = {hid}"\n{nics}', p.base == "hold")
        cases[p.name] = Case(p, vm, hid, dst)
    for case in cases.values():
        for hid in (case.host, case.dst):
            if hid is not None:
                wait_for("host capacity", lambda h=hid: one.host.info(h).HOST_SHARE.MAX_CPU)
    make_base(server, list(cases.values()))
    image_dir = tmp / "images"
    image_dir.mkdir()
    path = rootfs(image_dir)
    ds = one.datastore.allocate(f'NAME="cp-ds"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
                                f'RESTRICTED_DIRS="/"\nSAFE_DIRS="{image_dir}"\n', -1)
    ready = image_crashes(server, ds, path)
    for iid in ready.values():
        wait_for(f"image {iid} ready", lambda i=iid: one.image.info(i).STATE == ImageState.READY)

    hold_core(server)
    for case in cases.values():
        write_crash(case)
    images = dict(ready)
    images["copy-claimed"] = one.image.allocate(
        f'NAME="copy-claimed-{uuid.uuid4().hex[:6]}"\nPATH="{path}"\n', ds)
    images["clone"] = one.image.clone(ready["clone-source"], f"clone-{uuid.uuid4().hex[:6]}")
    one.image.delete(ready["delete-claimed"])
    base = Path(one.datastore.info(ds).BASE_PATH)
    (base / f".{uuid.uuid4().hex}.part").write_bytes(b"half a copy")  # the cut copy's
    os.unlink(one.image.info(ready["delete-claimed"]).SOURCE)  # the cut delete's files went
    with db.write_transaction():  # a copy that ended but was not marked done
        db.Operation.create(kind="image", vm_id=ready["copy-finished"], host_id=-1,
                            action="image_copy", args={}, created=time.time(),
                            status="running", started=time.time())
    claim_image_ops(list(images.values()))
    release_core(server)
    return World(server, cases, images, base)


# ----------------------------------------------------------------------------- checks

def vm_state(one: Any, vid: int) -> tuple[int, int]:
    info = one.vm.info(vid)
    return info.STATE, info.LCM_STATE


def unfinished(vid: int, kind: str = "vm") -> int:
    return db.Operation.select().where(
        (db.Operation.kind == kind) & (db.Operation.vm_id == vid)
        & (db.Operation.status.in_(("queued", "running")))).count()


def settled(world: World, case: Case) -> bool:
    one = world.server.pyone()
    return unfinished(case.vm) == 0 and vm_state(one, case.vm) == case.point.expect


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_crash_point_settles(world: World, point: Point) -> None:
    case = world.cases[point.name]
    one = world.server.pyone()
    wait_for(f"VM {case.vm} to settle in {point.expect}", lambda: settled(world, case))
    crashed = db.Operation.get_by_id(case.op)
    assert crashed.status == "done", crashed.result
    assert (crashed.result or "").startswith("superseded") == point.superseded, crashed.result
    info = one.vm.info(case.vm)
    if point.records is not None:  # a step already done was not done again
        assert len(info.HISTORY_RECORDS.HISTORY) == point.records
    expected_host = case.dst if point.two_hosts else case.host
    if info.STATE in HOLDING:
        assert info.HISTORY_RECORDS.HISTORY[-1].HID == expected_host
    for hid in (case.host, case.dst):
        if hid is not None:
            assert_capacity(one, hid)
    if point.nics is not None:
        nics = [n for n in Template.from_json(store.load("vm", case.vm)["template"])
                .vectors("NIC")]
        assert len(nics) == point.nics, nics
        assert not any("ATTACH" in n or "DETACH" in n for n in nics), nics


def assert_capacity(one: Any, hid: int) -> None:
    """HOST_SHARE is what the VMs placed on the host take, no more, no less."""
    holders = []
    for vm in one.vmpool.infoextended(-2, -1, -1, -1).VM:
        hist = vm.HISTORY_RECORDS.HISTORY if vm.HISTORY_RECORDS else []
        if hist and hist[-1].HID == hid and vm.STATE in HOLDING:
            holders.append(vm.ID)
    share = one.host.info(hid).HOST_SHARE
    assert (share.RUNNING_VMS, share.CPU_USAGE, share.MEM_USAGE) == (
        len(holders), len(holders) * int(CPU * 100), len(holders) * MEMORY * 1024), holders


def test_image_copy_claimed_is_copied(world: World) -> None:
    one = world.server.pyone()
    iid = world.images["copy-claimed"]
    wait_for("the copy", lambda: unfinished(iid, "image") == 0)
    img = one.image.info(iid)
    assert img.STATE == ImageState.READY, img.TEMPLATE
    assert Path(img.SOURCE).is_file()


def test_image_copy_finished_is_not_copied_again(world: World) -> None:
    one = world.server.pyone()
    iid = world.images["copy-finished"]
    source = one.image.info(iid).SOURCE
    wait_for("the rerun", lambda: unfinished(iid, "image") == 0)
    img = one.image.info(iid)
    assert (img.STATE, img.SOURCE) == (ImageState.READY, source)


def test_image_clone_claimed_frees_its_source(world: World) -> None:
    one = world.server.pyone()
    src, clone = world.images["clone-source"], world.images["clone"]
    wait_for("the clone", lambda: unfinished(clone, "image") == 0)
    assert one.image.info(clone).STATE == ImageState.READY
    assert one.image.info(src).STATE == ImageState.READY  # no clone left counted on it
    with db.database.atomic():
        assert store.load("image", src)["cloning_ops"] == 0


def test_image_delete_claimed_removes_the_image(world: World) -> None:
    iid = world.images["delete-claimed"]
    wait_for("the delete", lambda: not store.exists("image", iid))


def test_no_half_copies_count_as_images(world: World) -> None:
    """Whatever the crash cut, every image file in the datastore belongs to an image (the
    part file of the cut copy is not one; it is removed once stale)."""
    one = world.server.pyone()
    wait_for("image operations", lambda: all(unfinished(i, "image") == 0
                                             for i in world.images.values()))
    sources = {Path(i.SOURCE).name for i in one.imagepool.info(-2, -1, -1).IMAGE}
    names = {n for n in os.listdir(world.image_dir) if not n.endswith(".part")}
    assert names == sources
