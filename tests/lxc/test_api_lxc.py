"""The whole path through the API on real containers: pyone → API workers → core → SshTM +
LxcVMM + LxcIM → libvirt. First on the local libvirtd (host ``localhost``), then on namespace
hosts reached over real SSH (``lxc+ssh://``), with the scheduler placing the VMs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxc_specs import domain

from oneserver.model.vmstate import HostState, Lcm, VmState
from tests.conftest import Server, start_server, stop_server, wait_for, write_etc

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are exceptions already
pyone = pytest.importorskip("pyone")
TOOLS = Path(__file__).resolve().parents[2] / "tools" / "hosts"
ACTIVE, RUNNING = int(VmState.ACTIVE), int(Lcm.RUNNING)
# The core samples hosts this often here (oned.conf's 60 s would make the tests wait).
FAST = ["--monitor-interval", "0.5"]




def vm_template(name: str, source: Path | str, memory: int = 48, **extra: str) -> str:
    lines = [f'NAME = "{name}"', "CPU = 0.1", f"MEMORY = {memory}",
             f'DISK = [ SOURCE = "{source}" ]']
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n"




def error_of(one, vid: int) -> str:  # noqa: ANN001 - pyone has no stubs
    return str(dict(one.vm.info(vid).USER_TEMPLATE or {}).get("ERROR", ""))


def vm_dir(srv: Server, vid: int) -> Path:
    return srv.data_dir / "datastores" / "0" / str(vid)


def monitored(one, hid: int, timeout: float = 20.0) -> None:  # noqa: ANN001
    wait_for(f"host {hid} MONITORED", lambda: one.host.info(hid).STATE == HostState.MONITORED,
             timeout)


# --------------------------------------------------------------------------- local libvirtd

@pytest.fixture(scope="module")
def local(libvirtd: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Server, int, libvirt.virConnect]]:
    srv = start_server(tmp_path_factory.mktemp("api-lxc"), "sqlite", FAST)
    conn = libvirt.open(libvirtd)
    try:
        one = srv.pyone()
        hid = one.host.allocate("localhost", "lxc", "lxc", -1)
        monitored(one, hid)
        yield srv, hid, conn
    finally:
        stop_server(srv)
        for dom in conn.listAllDomains(0):  # what a failed test left behind
            if dom.name().startswith("one-") and str(srv.data_dir) in dom.XMLDesc(0):
                dom.destroy()
        conn.close()


@pytest.mark.lxc
def test_host_capacity_is_real(local: tuple[Server, int, libvirt.virConnect]) -> None:
    srv, hid, _ = local
    host = srv.pyone().host.info(hid)
    assert host.HOST_SHARE.TOTAL_CPU >= 100 and host.HOST_SHARE.TOTAL_MEM > 1024 * 1024
    assert host.TEMPLATE["HYPERVISOR"] == "lxc"
    assert host.TEMPLATE["LIBVIRT_URI"] == "lxc:///system"


@pytest.mark.lxc
def test_lifecycle(local: tuple[Server, int, libvirt.virConnect],
                   rootfs: tuple[Path, Path]) -> None:
    srv, _, conn = local
    one = srv.pyone()
    t0 = time.monotonic()
    vid = one.vm.allocate(vm_template("life", rootfs[0], memory=40))
    srv.wait_vm(vid, ACTIVE, RUNNING)
    print(f"allocate -> RUNNING took {time.monotonic() - t0:.3f} s")
    dom = domain(conn, vid)
    assert dom is not None and dom.isActive()
    assert dom.maxMemory() == 40 * 1024 and dom.memoryParameters()["hard_limit"] == 40 * 1024
    assert one.vm.info(vid).DEPLOY_ID == f"one-{vid}"
    assert (vm_dir(srv, vid) / "disk.0" / "sbin" / "init").exists()
    time.sleep(0.5)  # let init install its TERM trap, so stops are graceful

    one.vm.action("poweroff", vid)
    srv.wait_vm(vid, VmState.POWEROFF)
    assert domain(conn, vid) is None and vm_dir(srv, vid).exists()
    one.vm.action("resume", vid)
    srv.wait_vm(vid, ACTIVE, RUNNING)
    pid = domain(conn, vid).ID()
    time.sleep(0.5)

    one.vm.action("reboot", vid)
    wait_for("a new container after reboot",
             lambda: (d := domain(conn, vid)) is not None and d.ID() != pid)
    srv.wait_vm(vid, ACTIVE, RUNNING)
    time.sleep(0.5)

    one.vm.action("undeploy", vid)
    srv.wait_vm(vid, VmState.UNDEPLOYED)
    assert domain(conn, vid) is None
    one.vm.action("resume", vid)  # back to PENDING; the scheduler deploys it again
    srv.wait_vm(vid, ACTIVE, RUNNING)
    assert domain(conn, vid).isActive()

    one.vm.action("suspend", vid)
    srv.wait_vm(vid, VmState.SUSPENDED)
    assert domain(conn, vid).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    one.vm.action("resume", vid)
    srv.wait_vm(vid, ACTIVE, RUNNING)
    assert domain(conn, vid).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    time.sleep(0.5)

    t0 = time.monotonic()
    one.vm.action("terminate", vid)
    srv.wait_vm(vid, VmState.DONE)
    print(f"terminate -> DONE took {time.monotonic() - t0:.3f} s")
    assert domain(conn, vid) is None and not vm_dir(srv, vid).exists()


@pytest.mark.lxc
def test_bad_rootfs_is_a_prolog_failure(local: tuple[Server, int, libvirt.virConnect],
                                        tmp_path: Path) -> None:
    srv, hid, conn = local
    one = srv.pyone()
    bad = tmp_path / "corrupt.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 this is no gzip stream")
    # A manual deploy stops in the failure state, as in oned ...
    vid = one.vm.allocate(vm_template("badfs", bad), True)
    one.vm.deploy(vid, hid)
    srv.wait_vm(vid, ACTIVE, Lcm.PROLOG_FAILURE)
    assert "Error executing image transfer script" in error_of(one, vid)
    assert "not a valid gzip tar archive" in error_of(one, vid)
    assert domain(conn, vid) is None and not vm_dir(srv, vid).exists()
    one.vm.action("terminate", vid)
    srv.wait_vm(vid, VmState.DONE)
    # ... while the scheduler's placement goes back to PENDING, with the error, and cleaned.
    vid = one.vm.allocate(vm_template("badfs-sched", bad))
    wait_for("the scheduler's requeue", lambda: one.vm.info(vid).STATE == VmState.PENDING
             and "not a valid gzip tar archive" in error_of(one, vid))
    wait_for("no VM directory", lambda: not vm_dir(srv, vid).exists(), 5)
    one.vm.action("terminate", vid)
    srv.wait_vm(vid, VmState.DONE)


@pytest.mark.lxc
def test_missing_init_is_a_boot_failure(local: tuple[Server, int, libvirt.virConnect],
                                        rootfs: tuple[Path, Path]) -> None:
    srv, hid, conn = local
    one = srv.pyone()
    vid = one.vm.allocate(vm_template("noinit", rootfs[1], INIT="/sbin/not-here"), True)
    one.vm.deploy(vid, hid)
    srv.wait_vm(vid, ACTIVE, Lcm.BOOT_FAILURE)
    assert "cannot find init path" in error_of(one, vid)
    assert domain(conn, vid) is None
    one.vm.action("terminate-hard", vid)
    srv.wait_vm(vid, VmState.DONE)
    assert not vm_dir(srv, vid).exists()


@pytest.mark.lxc
def test_container_that_stops_on_its_own_turns_poweroff(
        local: tuple[Server, int, libvirt.virConnect], rootfs: tuple[Path, Path]) -> None:
    srv, _, conn = local
    one = srv.pyone()
    vid = one.vm.allocate(vm_template("selfstop", rootfs[0]))
    srv.wait_vm(vid, ACTIVE, RUNNING)
    domain(conn, vid).destroy()  # behind the server's back
    srv.wait_vm(vid, VmState.POWEROFF, timeout=10)
    one.vm.action("resume", vid)
    srv.wait_vm(vid, ACTIVE, RUNNING)
    one.vm.action("terminate-hard", vid)
    srv.wait_vm(vid, VmState.DONE)
    assert domain(conn, vid) is None and not vm_dir(srv, vid).exists()


@pytest.mark.lxc
def test_delete_while_deploy_is_in_flight(local: tuple[Server, int, libvirt.virConnect],
                                          rootfs: tuple[Path, Path], tmp_path: Path) -> None:
    _, _, conn = local
    # A host on the same libvirtd whose "ssh" (the server's configured ssh command) is slow
    # and records, for every command, which domains exist while it runs.
    log = tmp_path / "slow-ssh.log"
    wrapper = tmp_path / "slowssh"
    wrapper.write_text(
        "#!/bin/sh\nshift\n"
        f'echo "$* | $(virsh -q -c lxc:///system list --name | tr "\\n" " ")" >> {log}\n'
        'sleep 1\nexec sh -c "$*"\n')
    wrapper.chmod(0o755)
    srv = start_server(tmp_path / "srv", "sqlite",
                       [*FAST, "--etc", str(write_etc(tmp_path / "etc", str(wrapper)))])
    one = srv.pyone()
    hid = one.host.allocate("slowlocal", "lxc", "lxc", -1)
    one.host.update(hid, 'LIBVIRT_URI = "lxc:///system"\n', 1)
    one.host.status(hid, 1)  # disabled: the scheduler leaves it alone; one.vm.deploy does not
    try:
        vid = one.vm.allocate(vm_template("inflight", rootfs[0]), True)
        one.vm.deploy(vid, hid)
        srv.wait_vm(vid, ACTIVE, Lcm.PROLOG)
        # As oned: terminate (even -hard) is refused while the deploy runs ...
        with pytest.raises(pyone.OneActionException):
            one.vm.action("terminate-hard", vid)
        # ... and recover --delete is how an in-flight VM is killed.
        one.vm.recover(vid, 3)
        srv.wait_vm(vid, VmState.DONE)

        def removals() -> list[str]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [line for line in lines if "rm -rf" in line and "mkdir" not in line]

        wait_for("the cleanup's removal", lambda: removals() and not vm_dir(srv, vid).exists())
        time.sleep(1.5)  # nothing may show up late
        assert domain(conn, vid) is None and not vm_dir(srv, vid).exists()
        # Every removal of the VM directory ran while no domain of the VM existed.
        assert all(f"one-{vid} " not in line for line in removals())
    finally:
        wait_for("host empty", lambda: not one.host.info(hid).VMS.ID)
        one.host.delete(hid)
        stop_server(srv)


# --------------------------------------------------------------------------- namespace hosts

def vhost_conn(state: Path, index: int) -> libvirt.virConnect:
    """The host's own libvirtd, reached through its socket (not over ssh)."""
    sock = state / f"vh{index}" / "run" / "libvirt" / "libvirt-sock"
    return libvirt.open(f"lxc:///system?socket={sock}")


@pytest.mark.netns
def test_vhosts_through_the_api(vhosts: tuple[Path, list[str]], rootfs: tuple[Path, Path],
                                tmp_path_factory: pytest.TempPathFactory) -> None:
    state, addresses = vhosts
    tmp = tmp_path_factory.mktemp("api-vhosts")
    # libvirt and the TM reach the hosts through the lab's ssh, configured in oned.conf.
    srv = start_server(tmp, "sqlite",
                       [*FAST, "--etc", str(write_etc(tmp / "etc", str(state / "sshwrap")))])
    one = srv.pyone()
    vids: list[int] = []
    try:
        hids = [one.host.allocate(addr, "lxc", "lxc", -1) for addr in addresses]
        t0 = time.monotonic()
        for hid in hids:
            monitored(one, hid)
        print(f"{len(hids)} hosts MONITORED after {time.monotonic() - t0:.2f} s")
        for i, hid in enumerate(hids, start=1):
            host = one.host.info(hid)
            assert host.TEMPLATE["HOSTNAME"] == f"vh{i}"
            assert host.HOST_SHARE.TOTAL_CPU >= 100 and host.HOST_SHARE.TOTAL_MEM > 1024 * 1024
            assert host.HOST_SHARE.DATASTORES.MAX_DISK > 0
            assert host.TEMPLATE["DISK_MONITOR"] == "df over ssh"

        t0 = time.monotonic()
        vids = [one.vm.allocate(vm_template(f"spread-{i}", rootfs[1], memory=32))
                for i in range(2 * len(hids))]
        for vid in vids:
            srv.wait_vm(vid, ACTIVE, RUNNING, timeout=60)
        print(f"{len(vids)} VMs RUNNING over ssh after {time.monotonic() - t0:.2f} s")
        placed = {vid: one.vm.info(vid).HISTORY_RECORDS.HISTORY[-1].HID for vid in vids}
        assert sorted(list(placed.values()).count(h) for h in hids) == [2] * len(hids)
        for i, hid in enumerate(hids, start=1):
            conn = vhost_conn(state, i)
            names = {d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
            conn.close()
            assert names == {f"one-{v}" for v, h in placed.items() if h == hid}

        dead = [v for v, h in placed.items() if h == hids[0]]
        subprocess.run([TOOLS / "vhosts.sh", "kill", "1", state], check=True, timeout=60)
        t0 = time.monotonic()
        wait_for("host ERROR", lambda: one.host.info(hids[0]).STATE == HostState.ERROR)
        for vid in dead:
            srv.wait_vm(vid, ACTIVE, Lcm.UNKNOWN)
        print(f"host ERROR, its VMs UNKNOWN after {time.monotonic() - t0:.2f} s")
        assert "Error monitoring Host" in one.host.info(hids[0]).TEMPLATE["ERROR"]
        for vid in set(vids) - set(dead):
            assert one.vm.info(vid).LCM_STATE == RUNNING

        subprocess.run([TOOLS / "vhosts.sh", "revive", "1", state], check=True, timeout=60)
        t0 = time.monotonic()
        monitored(one, hids[0])
        for vid in dead:
            srv.wait_vm(vid, ACTIVE, RUNNING)
        print(f"host MONITORED, its VMs RUNNING again after {time.monotonic() - t0:.2f} s")

        # Cold migration keeps what the container wrote: the TM carries its directory over.
        mover = next(v for v, h in placed.items() if h == hids[1])
        marker = vm_dir(srv, mover) / "disk.0" / "written-before-migration"
        marker.write_text("kept")
        t0 = time.monotonic()
        one.vm.migrate(mover, hids[2], False, False, -1, 0)
        wait_for("VM on the third host",
                 lambda: one.vm.info(mover).HISTORY_RECORDS.HISTORY[-1].HID == hids[2])
        srv.wait_vm(mover, ACTIVE, RUNNING, timeout=60)
        print(f"cold migration over ssh in {time.monotonic() - t0:.2f} s")
        assert marker.read_text() == "kept"
        for index, expect in ((2, False), (3, True)):
            conn = vhost_conn(state, index)
            assert (domain(conn, mover) is not None) == expect
            conn.close()

        for vid in vids:
            one.vm.action("terminate-hard", vid)
        for vid in vids:
            srv.wait_vm(vid, VmState.DONE, timeout=60)
            assert not vm_dir(srv, vid).exists()
        for i in range(1, len(hids) + 1):
            conn = vhost_conn(state, i)
            assert conn.listAllDomains(0) == []
            conn.close()
    finally:
        stop_server(srv)
