"""Runs queued driver operations: at most one in flight per VM, in the order they were queued,
each on its driver's thread pool.

A VM operation walks its VM through transient states (``operations.DRIVES``), one driver step
per state: PROLOG the TM's prolog, BOOT the VMM's deploy, SHUTDOWN the shutdown, EPILOG the
TM's epilog… Each step's outcome (the next state, or the settled or failed one) is written in
one transaction together with the operation's ``state_seq``, the VM's count of state changes
after it. So wherever the core dies, the operation, run again, finds its VM either where its
last step left it (it goes on with that state's step; a settled VM leaves nothing to do) or
changed by someone else since (a ``recover``, a newer action, the monitor): then it is
superseded, touches nothing, and the operations queued after it deal with the VM. A step cut
short by a crash simply runs again: driver calls converge when repeated (deploy returns the
running domain, cancel and epilog succeed when nothing is left).

The VN drivers of a VM's NICs (``VN_MAD``) run as steps of the VMM's, as OpenNebula's VMM
driver runs its VNM actions: ``pre`` before each deploy and ``post`` after it (BOOT*), ``clean``
once the domain is gone from a host (after shutdown or cancel, and when a migration leaves
the source); they converge when repeated, as the others do."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from oneserver import db, store
from oneserver.core import images
from oneserver.core.registry import Registry
from oneserver.core.specs import host_ref, vm_spec
from oneserver.driver_contract import DriverError, HostRef, NicSpec, VMSpec
from oneserver.model import lifecycle, nic_hotplug, operations
from oneserver.model.vmstate import Lcm, VmState

log = logging.getLogger("oneserver.core")
Doc = dict[str, Any]

SHUTDOWN_TIMEOUT = 30.0
# VM operations in flight at once (each mostly waits on a driver slot or a host).
OPERATION_THREADS = 256


class Superseded(Exception):
    """Someone else changed the VM's state since this operation's last step."""


class Executor:
    def __init__(self, registry: Registry, wake: Callable[[], None]) -> None:
        self.registry = registry
        self.wake = wake
        self._inflight: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        # Threads that carry VM operations; the drivers' -t slots bound the actual calls.
        self._threads = ThreadPoolExecutor(OPERATION_THREADS, thread_name_prefix="operation")
        self.shutdown_timeout = SHUTDOWN_TIMEOUT

    # ------------------------------------------------------------------ queue handling

    def recover(self) -> None:
        """After a crash: operations that were running run again. Every driver call is
        idempotent (deploy returns the running domain, cancel and epilog succeed when nothing
        is left), so running a step twice converges on the same host state."""
        with db.write_transaction():
            db.Operation.update(status="queued", started=None).where(
                db.Operation.status == "running").execute()

    def dispatch(self) -> int:
        """Start the oldest queued operation of every VM that has none in flight."""
        started = 0
        # peewee's stubs keep the model as the row type after .tuples(); these rows are tuples.
        rows = cast(Iterable[tuple[int, str, int]],
                    db.Operation.select(db.Operation.id, db.Operation.kind, db.Operation.vm_id)
                    .where(db.Operation.status == "queued").order_by(db.Operation.id).tuples())
        # One queue per object: a VM's operations and an image's operations (kind "image",
        # its id in vm_id) never overtake each other.
        seen: set[tuple[str, int]] = set()
        for op_id, kind, vm_id in list(rows):
            key = (kind, vm_id)
            if key in seen:
                continue
            seen.add(key)
            with self._lock:
                if key in self._inflight:
                    continue
                self._inflight.add(key)
            op = self._claim(op_id)
            if op is None:
                with self._lock:
                    self._inflight.discard(key)
                continue
            if op.kind == "image":  # datastore copies run on the DS_MAD pool, not a VMM's
                self.registry.submit("ds", "fs", self._run, op)
            else:
                self._threads.submit(self._run, op)
            started += 1
        return started

    def _claim(self, op_id: int) -> db.Operation | None:
        with db.write_transaction():
            n = (db.Operation.update(status="running", started=time.time())
                 .where((db.Operation.id == op_id) & (db.Operation.status == "queued"))
                 .execute())
            return db.Operation.get_by_id(op_id) if n else None

    def close(self) -> None:
        """Wait for the operations in flight (each ends by writing its outcome)."""
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _run(self, op: db.Operation) -> None:
        status, result = "done", None
        try:
            self._perform(op)
        except Superseded as exc:
            result = f"superseded: {exc}"
        except Exception as exc:  # noqa: BLE001 - record it; the VM takes its failure path
            # A DriverError (e.g. a driver that is not installed) explains itself; anything
            # else is a bug that needs its traceback.
            if not isinstance(exc, DriverError):
                log.exception("operation %s %s of VM %s failed", op.id, op.action, op.vm_id)
            status, result = "failed", str(exc) or repr(exc)
            self._strand(op, result)
        finally:
            try:
                with db.write_transaction():
                    db.Operation.update(status=status, finished=time.time(), result=result
                                        ).where(db.Operation.id == op.id).execute()
            finally:
                with self._lock:
                    self._inflight.discard((op.kind, op.vm_id))
                self.wake()

    def _perform(self, op: db.Operation) -> None:
        if op.kind == "image":
            (images.copy if op.action == "image_copy" else images.delete)(op)
        elif op.action == "epilog" and op.args.get("then") == "none":
            self._clean(op, cancel=False)  # a terminated STOPPED/UNDEPLOYED VM: files only
        elif op.action in operations.DRIVES:
            self._drive(op, operations.DRIVES[op.action])
        elif op.action == "cleanup":
            self._clean(op, cancel=True)
        elif op.action in ("reboot", "reset"):
            self._restart(op, op.action)
        elif op.action == "update_sg":
            self._update_sg(op)
        else:
            raise DriverError(f"unknown operation {op.action!r}")

    def _drive(self, op: db.Operation, states: frozenset[int]) -> None:
        """Run the step of each of ``states`` the VM goes through, from the one it is in."""
        vm = store.load("vm", op.vm_id)
        self._check(op, vm)
        while vm["state"] == VmState.ACTIVE and vm["lcm_state"] in states:
            lcm, seq = vm["lcm_state"], op.state_seq
            vm = STEPS[lcm](self, op, vm)
            if op.state_seq == seq:  # a step must move the VM on, or this would never end
                raise RuntimeError(f"the step of LCM state {lcm} left the VM where it was")

    def _strand(self, op: db.Operation, message: str) -> None:
        """A VM operation that failed outside its steps' own error handling must not leave the
        VM in a transient state for ever: it takes the state's failure path (as recover
        --failure would), with the reason in USER_TEMPLATE/ERROR."""
        if op.kind != "vm" or op.action not in operations.DRIVES:
            return
        try:
            vm = store.load("vm", op.vm_id)
            if vm["state"] == VmState.ACTIVE and vm["lcm_state"] in lifecycle.FAILED:
                self._fail(op, message)
        except Superseded:
            pass  # the VM moved on meanwhile: nothing of this operation holds it
        except Exception:  # noqa: BLE001 - the operation is recorded as failed anyway
            log.exception("could not record the failure of VM %s", op.vm_id)

    # ------------------------------------------------------------------ writing outcomes

    def _check(self, op: db.Operation, vm: Doc) -> None:
        """Superseded unless the VM is where this operation's last step (or its queueing)
        left it."""
        seq = lifecycle.state_seq(vm)
        if op.state_seq is None:  # queued before operations remembered it: take the VM as is
            op.state_seq = seq
        elif seq != op.state_seq:
            raise Superseded(f"VM is now in {vm['state']}/{vm['lcm_state']}, changed since")

    def _write(self, op: db.Operation, change: Callable[[Doc, Doc | None], None],
               checked: bool = True) -> Doc:
        """Apply ``change`` to the VM and the operation's host in one transaction, with the
        operation's new ``state_seq``; ``checked``: only if the VM is still where this
        operation left it. Returns the VM as written."""
        return db.retrying(self._write_once, op, change, checked)

    def _write_once(self, op: db.Operation, change: Callable[[Doc, Doc | None], None],
                    checked: bool) -> Doc:
        with db.write_transaction():
            vm = store.load("vm", op.vm_id, for_update=True)
            host = store.load("host", op.host_id, for_update=True) if op.host_id >= 0 and \
                store.exists("host", op.host_id) else None
            if checked:
                self._check(op, vm)
            change(vm, host)
            store.save("vm", vm)
            if host is not None:
                store.save("host", host)
            seq = lifecycle.state_seq(vm)
            if checked and seq != op.state_seq:
                db.Operation.update(state_seq=seq).where(db.Operation.id == op.id).execute()
        if checked:
            op.state_seq = seq
        return vm

    def _advance(self, op: db.Operation, **extra: Any) -> Doc:
        def change(vm: Doc, host: Doc | None) -> None:
            vm.update(extra)
            lifecycle.advance(vm, host)
        return self._write(op, change)

    def _fail(self, op: db.Operation, message: str) -> Doc:
        return self._write(op, lambda vm, host: lifecycle.fail(vm, message))

    def _deploy_failed(self, op: db.Operation, message: str) -> Doc:
        """A scheduler placement goes back to PENDING with a back-off on this host; a manual
        ``one.vm.deploy`` stops in the failure state, as in oned."""
        if "backoff" not in op.args or op.args.get("mode") != "new":
            return self._fail(op, message)
        backoff = float(op.args["backoff"])

        def change(vm: Doc, host: Doc | None) -> None:
            operations.enqueue(vm, lifecycle.requeue(vm, host, message, backoff))
        return self._write(op, change)

    # ------------------------------------------------------------------ drivers

    def _drivers(self, op: db.Operation, vm: Doc, host_id: int | None = None
                 ) -> tuple[Doc, str, str]:
        """The host a step works on (the operation's unless told), its VMM and the VM's TM."""
        host = store.load("host", op.host_id if host_id is None else host_id)
        return host, host["vm_mad"], self.transfer_driver(vm, host)

    def transfer_driver(self, vm: Doc, host: Doc) -> str:
        vmm = self.registry.driver("vmm", host["vm_mad"])
        if getattr(vmm, "transfer_driver", None):
            return str(vmm.transfer_driver)
        h = [r for r in vm["history"] if r["hid"] == host["id"]]
        return str(h[-1]["tm_mad"]) if h else "ssh"

    # ------------------------------------------------------------------ steps (STEPS)

    def _prolog(self, op: db.Operation, vm: Doc) -> Doc:
        host, vmm, tm = self._drivers(op, vm)
        try:
            vm_dir = self.registry.call("tm", tm, "prolog", host_ref(host), vm_spec(vm, vmm))
        except DriverError as exc:
            return self._deploy_failed(op, f"Error executing image transfer script: {exc}")
        return self._advance(op, vm_dir=vm_dir)

    def _boot(self, op: db.Operation, vm: Doc) -> Doc:
        host, vmm, _ = self._drivers(op, vm)
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        try:
            self._network("pre", ref, vmm, spec)
            deploy_id = self.registry.call("vmm", vmm, "deploy", ref, spec)
        except DriverError as exc:
            self._undo_network(ref, vmm, spec)
            return self._deploy_failed(op, f"Error deploying virtual machine: {exc}")
        try:
            self._network("post", ref, vmm, spec)
        except DriverError as exc:  # a container must not run without its filters
            try:
                self.registry.call("vmm", vmm, "cancel", ref, spec)
            except DriverError:
                log.exception("VM %s: cancel after a failed network setup", vm["id"])
            self._undo_network(ref, vmm, spec)
            return self._deploy_failed(op, f"Error deploying virtual machine: {exc}")
        return self._advance(op, deploy_id=deploy_id)

    def _shutdown(self, op: db.Operation, vm: Doc) -> Doc:
        host, vmm, _ = self._drivers(op, vm)
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        try:
            if op.args.get("hard"):
                self.registry.call("vmm", vmm, "cancel", ref, spec)
            else:
                self.registry.call("vmm", vmm, "shutdown", ref, spec, self.shutdown_timeout)
            self._network("clean", ref, vmm, spec)
        except DriverError as exc:
            return self._fail(op, f"Error shutting down virtual machine: {exc}")
        return self._advance(op)

    def _epilog(self, op: db.Operation, vm: Doc) -> Doc:
        """EPILOG removes the VM's files from the host, EPILOG_STOP and EPILOG_UNDEPLOY keep
        them; a terminate from POWEROFF, SUSPENDED or a failure first cancels what runs."""
        host, vmm, tm = self._drivers(op, vm)
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        if op.args.get("cancel"):
            try:
                self.registry.call("vmm", vmm, "cancel", ref, spec)
                self._network("clean", ref, vmm, spec)
            except DriverError as exc:
                return self._fail(op, f"Error canceling virtual machine: {exc}")
        keep = vm["lcm_state"] != Lcm.EPILOG
        if not keep:  # the VM's end: persistent images keep its changes
            disks = {d.disk_id: d for d in spec.disks}
            try:
                images.save_persistent(vm, lambda disk_id, dest: bool(self.registry.call(
                    "tm", tm, "save", ref, spec, disks[disk_id], dest)))
            except Exception as exc:  # noqa: BLE001 - the epilog fails, the disk stays put
                return self._fail(op, f"Error saving a persistent image: {exc}")
        try:
            self.registry.call("tm", tm, "epilog", ref, spec, keep)
        except DriverError as exc:
            return self._fail(op, f"Error executing image transfer script: {exc}")
        return self._advance(op)

    def _save_migrate(self, op: db.Operation, vm: Doc) -> Doc:
        """Cold migration, first step: stop the VM on the host it leaves."""
        src, vmm, _ = self._drivers(op, vm, op.args.get("from", -1))
        ref, spec = host_ref(src), vm_spec(vm, vmm)
        try:
            self.registry.call("vmm", vmm, "shutdown", ref, spec, self.shutdown_timeout)
            self._network("clean", ref, vmm, spec)
        except DriverError as exc:
            return self._fail(op, f"Error saving virtual machine: {exc}")
        return self._advance(op)

    def _prolog_migrate(self, op: db.Operation, vm: Doc) -> Doc:
        """Carry the disks to the destination; a powered-off or suspended VM then stays so."""
        dst, vmm, tm = self._drivers(op, vm)
        try:
            vm_dir = self._move_disks(vm, op.args.get("from", -1), dst, vmm, tm)
        except DriverError as exc:
            return self._fail(op, f"Error migrating the disks: {exc}")
        return self._advance(op, vm_dir=vm_dir)

    def _move_disks(self, vm: Doc, src_id: int, dst: Doc, vmm: str, tm: str) -> str:
        """Carry the disks to ``dst`` with the TM's move when it has one (the VM keeps what it
        wrote); otherwise remove them from the source and build them again on ``dst``."""
        src = store.load("host", src_id) if src_id >= 0 and store.exists("host", src_id) \
            else None
        spec = vm_spec(vm, vmm)
        if src is not None and self.transfer_driver(vm, src) == tm:
            moved = self.registry.call("tm", tm, "move", host_ref(src), host_ref(dst), spec)
            if moved is not None:
                return str(moved)
        if src is not None:
            self.registry.call("tm", self.transfer_driver(vm, src), "epilog", host_ref(src),
                               vm_spec(vm, src["vm_mad"]), False)
        return str(self.registry.call("tm", tm, "prolog", host_ref(dst), spec))

    def _vmm_step(self, op: db.Operation, vm: Doc, method: str) -> Doc:
        host, vmm, _ = self._drivers(op, vm)
        try:
            self.registry.call("vmm", vmm, method, host_ref(host), vm_spec(vm, vmm))
        except DriverError as exc:
            return self._fail(op, f"Error in {method}: {exc}")
        return self._advance(op)

    def _suspend(self, op: db.Operation, vm: Doc) -> Doc:
        return self._vmm_step(op, vm, "suspend")

    def _resume(self, op: db.Operation, vm: Doc) -> Doc:
        return self._vmm_step(op, vm, "resume")

    def _resize(self, op: db.Operation, vm: Doc) -> Doc:
        return self._vmm_step(op, vm, "resize")

    def _hotplug_nic(self, op: db.Operation, vm: Doc) -> Doc:
        """attach_nic / detach_nic of one NIC: the VMM's call between the VN driver's pre and
        post (attach) or before its clean (detach), for that NIC only; the outcome (the NIC
        and its lease kept or given back) written by nic_hotplug. A failed attach leaves
        neither the interface nor its network setup behind."""
        host, vmm, _ = self._drivers(op, vm)
        nic_id, action = int(op.args["nic_id"]), op.action
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        nic = next((n for n in spec.nics if n.nic_id == nic_id), None)
        try:
            if nic is None:
                raise DriverError(f"the VM has no NIC {nic_id}")
            one = dataclasses.replace(spec, nics=(nic,))
            if action == "attach_nic":
                self._network("pre", ref, vmm, one)
                self.registry.call("vmm", vmm, action, ref, spec, nic)
                self._network("post", ref, vmm, one)
            else:
                self.registry.call("vmm", vmm, action, ref, spec, nic)
                self._network("clean", ref, vmm, one)
        except DriverError as exc:
            if action == "attach_nic" and nic is not None:
                self._undo_attach(ref, vmm, spec, nic)
            message = str(exc)
            return self._write(op, lambda v, h: nic_hotplug.failed(v, action, nic_id, message))
        return self._write(op, lambda v, h: nic_hotplug.done(v, action, nic_id))

    # ------------------------------------------------------------------ networks

    def _networks(self, vmm: str, spec: VMSpec) -> list[tuple[str, VMSpec]]:
        """(VN driver, the VM with only that driver's NICs) for each VN_MAD of the VM's
        NICs, in NIC order; none on hosts whose VMM drives models (dummy, sim)."""
        if not getattr(self.registry.driver("vmm", vmm), "runs_vn_drivers", False):
            return []
        by_driver: dict[str, list[NicSpec]] = {}
        for nic in spec.nics:
            if nic.vn_mad:
                by_driver.setdefault(nic.vn_mad, []).append(nic)
        return [(name, dataclasses.replace(spec, nics=tuple(nics)))
                for name, nics in by_driver.items()]

    def _network(self, method: str, ref: HostRef, vmm: str, spec: VMSpec) -> None:
        """``method`` (pre, post, clean) of every VN driver of the VM. A clean goes on with
        the other drivers after one failed (each removes its own), then raises the first."""
        failure: DriverError | None = None
        for name, part in self._networks(vmm, spec):
            try:
                self.registry.call("vn", name, method, ref, part)
            except DriverError as exc:
                if method != "clean":
                    raise
                failure = failure or exc
        if failure is not None:
            raise failure

    def _undo_attach(self, ref: HostRef, vmm: str, spec: VMSpec, nic: NicSpec) -> None:
        """After a failed attach: the interface goes (it must not stay unfiltered), then
        what the VN driver set up for it."""
        try:
            self.registry.call("vmm", vmm, "detach_nic", ref, spec, nic)
        except DriverError:
            log.exception("VM %s: detach of NIC %s after a failed attach", spec.id, nic.nic_id)
        self._undo_network(ref, vmm, dataclasses.replace(spec, nics=(nic,)))

    def _undo_network(self, ref: HostRef, vmm: str, spec: VMSpec) -> None:
        """After a failed deploy: what the VN drivers set up goes (the failure is what the
        VM shows; a clean that fails too is logged, and runs again with the cleanup)."""
        try:
            self._network("clean", ref, vmm, spec)
        except DriverError:
            log.exception("VM %s: network cleanup after a failed deploy", spec.id)

    # ------------------------------------------------------------------ stateless operations

    def _clean(self, op: db.Operation, cancel: bool) -> None:
        """After recover delete/delete-recreate (``cancel``: remove the domain first) or the
        terminate of a STOPPED/UNDEPLOYED VM: remove its files from the host. The VM's state
        was already settled by the API; only the host is cleaned."""
        vm = store.load("vm", op.vm_id)
        host, vmm, tm = self._drivers(op, vm)
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        if cancel:
            self.registry.call("vmm", vmm, "cancel", ref, spec)
            self._network("clean", ref, vmm, spec)
        self.registry.call("tm", tm, "epilog", ref, spec, False)

    def _restart(self, op: db.Operation, method: str) -> None:
        """Reboot or reset: the VM keeps running, an error is recorded. Run again after a
        crash (nothing tells a reboot that ended from one that never started)."""
        vm = store.load("vm", op.vm_id)
        host, vmm, _ = self._drivers(op, vm)
        try:
            self.registry.call("vmm", vmm, method, host_ref(host), vm_spec(vm, vmm))
        except DriverError as exc:
            message = f"Error {method}ing virtual machine: {exc}"
            self._write(op, lambda v, h: lifecycle.set_error(v, message), checked=False)

    def _update_sg(self, op: db.Operation) -> None:
        """A running VM's security groups changed (one.vm.attachsg/detachsg): its VN drivers'
        ``pre`` runs again, which sets each NIC's filters up from the VM's rules as they are
        now (it converges when repeated); the VM keeps running, an error is recorded. Only
        while the VM still runs on its host: else its next boot does it."""
        vm = store.load("vm", op.vm_id)
        if vm["state"] != VmState.ACTIVE or vm["lcm_state"] != Lcm.RUNNING:
            return
        host, vmm, _ = self._drivers(op, vm)
        try:
            self._network("pre", host_ref(host), vmm, vm_spec(vm, vmm))
        except DriverError as exc:
            message = f"Error updating security groups: {exc}"
            self._write(op, lambda v, h: lifecycle.set_error(v, message), checked=False)


# The driver step of each transient state: does the state's driver work, writes the outcome
# (lifecycle.advance on success, the failure path otherwise) and returns the VM as written.
STEPS: dict[int, Callable[[Executor, db.Operation, Doc], Doc]] = {
    **dict.fromkeys((Lcm.PROLOG, Lcm.PROLOG_RESUME, Lcm.PROLOG_UNDEPLOY), Executor._prolog),
    **dict.fromkeys((Lcm.BOOT, Lcm.BOOT_STOPPED, Lcm.BOOT_UNDEPLOY, Lcm.BOOT_POWEROFF,
                     Lcm.BOOT_UNKNOWN, Lcm.BOOT_MIGRATE), Executor._boot),
    **dict.fromkeys((Lcm.SHUTDOWN, Lcm.SHUTDOWN_POWEROFF, Lcm.SHUTDOWN_UNDEPLOY,
                     Lcm.SAVE_STOP), Executor._shutdown),
    **dict.fromkeys((Lcm.EPILOG, Lcm.EPILOG_STOP, Lcm.EPILOG_UNDEPLOY), Executor._epilog),
    Lcm.SAVE_MIGRATE: Executor._save_migrate,
    **dict.fromkeys((Lcm.PROLOG_MIGRATE, Lcm.PROLOG_MIGRATE_POWEROFF,
                     Lcm.PROLOG_MIGRATE_SUSPEND), Executor._prolog_migrate),
    Lcm.SAVE_SUSPEND: Executor._suspend,
    Lcm.BOOT_SUSPENDED: Executor._resume,
    Lcm.HOTPLUG_RESIZE: Executor._resize,
    Lcm.HOTPLUG_NIC: Executor._hotplug_nic,
}
