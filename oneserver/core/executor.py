"""Runs queued driver operations: at most one in flight per VM, in the order they were queued,
each on its driver's thread pool. Every step's outcome is written back in its own transaction,
and only if the VM is still in the state the step expects (a step overtaken by, say, a
``recover --delete`` is dropped; the cleanup queued after it undoes what it did)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from oneserver import db, history, lifecycle, operations, store
from oneserver.core import images
from oneserver.core.registry import Registry
from oneserver.core.specs import host_ref, vm_spec
from oneserver.driver_contract import DriverError
from oneserver.vmstate import Lcm, VmState

log = logging.getLogger("oneserver.core")
Doc = dict[str, Any]

PROLOG_NEXT = {Lcm.PROLOG: Lcm.BOOT, Lcm.PROLOG_RESUME: Lcm.BOOT_STOPPED,
               Lcm.PROLOG_UNDEPLOY: Lcm.BOOT_UNDEPLOY, Lcm.PROLOG_MIGRATE: Lcm.BOOT_MIGRATE}
SHUTDOWN_EPILOG = {"done": Lcm.EPILOG, "undeploy": Lcm.EPILOG_UNDEPLOY, "stop": Lcm.EPILOG_STOP}
SHUTDOWN_STATES = {Lcm.SHUTDOWN, Lcm.SHUTDOWN_POWEROFF, Lcm.SHUTDOWN_UNDEPLOY, Lcm.SAVE_STOP}
EPILOG_STATES = {Lcm.EPILOG, Lcm.EPILOG_STOP, Lcm.EPILOG_UNDEPLOY}
SHUTDOWN_TIMEOUT = 30.0
# VM operations in flight at once (each mostly waits on a driver slot or a host).
OPERATION_THREADS = 256


class Superseded(Exception):
    """The VM left the state this step was for."""


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
        rows = (db.Operation.select(db.Operation.id, db.Operation.kind, db.Operation.vm_id)
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
            getattr(self, f"op_{op.action}")(op)
        except Superseded as exc:
            result = f"superseded: {exc}"
        except DriverError as exc:  # e.g. the host names a driver that is not installed
            status, result = "failed", str(exc)
            self._strand(op, str(exc))
        except Exception as exc:  # noqa: BLE001 - record it; the VM state says the rest
            log.exception("operation %s %s of VM %s failed", op.id, op.action, op.vm_id)
            status, result = "failed", str(exc)
        finally:
            try:
                with db.write_transaction():
                    db.Operation.update(status=status, finished=time.time(), result=result
                                        ).where(db.Operation.id == op.id).execute()
            finally:
                with self._lock:
                    self._inflight.discard((op.kind, op.vm_id))
                self.wake()

    def _strand(self, op: db.Operation, message: str) -> None:
        """A VM operation that failed outside its steps' own error handling must not leave the
        VM in a transient state for ever: it takes the state's failure path (as recover
        --failure would), with the reason in USER_TEMPLATE/ERROR."""
        if op.kind != "vm":
            return
        try:
            vm = store.load("vm", op.vm_id)
            if vm["state"] == VmState.ACTIVE and vm["lcm_state"] in lifecycle.FAILED:
                self._fail(op, [vm["lcm_state"]], message)
        except Exception:  # noqa: BLE001 - the operation is recorded as failed anyway
            log.exception("could not record the failure of VM %s", op.vm_id)

    # ------------------------------------------------------------------ helpers

    def _load(self, vm_id: int, host_id: int) -> tuple[Doc, Doc | None]:
        vm = store.load("vm", vm_id, for_update=True)
        host = store.load("host", host_id, for_update=True) if host_id >= 0 and store.exists(
            "host", host_id) else None
        return vm, host

    def _write(self, op: db.Operation, expect: Iterable[int] | None,
               change: Callable[[Doc, Doc | None], None], host_id: int | None = None) -> None:
        """Apply ``change`` to the VM (and its host) if the VM is still in one of the
        ``expect``ed LCM states."""
        db.retrying(self._write_once, op, expect, change, host_id)

    def _write_once(self, op: db.Operation, expect: Iterable[int] | None,
                    change: Callable[[Doc, Doc | None], None], host_id: int | None) -> None:
        with db.write_transaction():
            vm, host = self._load(op.vm_id, op.host_id if host_id is None else host_id)
            if expect is not None and (vm["state"] != VmState.ACTIVE
                                       or vm["lcm_state"] not in set(expect)):
                raise Superseded(f"VM is in {vm['state']}/{vm['lcm_state']}")
            change(vm, host)
            store.save("vm", vm)
            if host is not None:
                store.save("host", host)

    def _snapshot(self, op: db.Operation, host_id: int | None = None
                  ) -> tuple[Doc, Doc, str, str]:
        vm = store.load("vm", op.vm_id)
        host = store.load("host", op.host_id if host_id is None else host_id)
        tm = self.transfer_driver(vm, host)
        return vm, host, host["vm_mad"], tm

    def transfer_driver(self, vm: Doc, host: Doc) -> str:
        vmm = self.registry.driver("vmm", host["vm_mad"])
        if getattr(vmm, "transfer_driver", None):
            return vmm.transfer_driver
        h = [r for r in vm["history"] if r["hid"] == host["id"]]
        return h[-1]["tm_mad"] if h else "ssh"

    def _fail(self, op: db.Operation, expect: Iterable[int], message: str) -> None:
        def change(vm: Doc, host: Doc | None) -> None:
            lifecycle.fail(vm, message)
        self._write(op, expect, change)

    def _deploy_failed(self, op: db.Operation, lcm: int, message: str) -> None:
        """A scheduler placement goes back to PENDING with a back-off on this host; a manual
        ``one.vm.deploy`` stops in the failure state, as in oned."""
        if "backoff" not in op.args or op.args.get("mode") != "new":
            self._fail(op, [lcm], message)
            return
        backoff = float(op.args["backoff"])

        def change(vm: Doc, host: Doc | None) -> None:
            operations.enqueue(vm["id"], lifecycle.requeue(vm, host, message, backoff))
        self._write(op, [lcm], change)

    def _settle(self, op: db.Operation, expect: Iterable[int], **extra: Any) -> None:
        def change(vm: Doc, host: Doc | None) -> None:
            vm.update(extra)
            lifecycle.settle(vm, host)
        self._write(op, expect, change)

    def _to(self, op: db.Operation, expect: Iterable[int], lcm: Lcm) -> None:
        def change(vm: Doc, host: Doc | None) -> None:
            h = history.last_history(vm)
            if h is not None and lcm in EPILOG_STATES:
                h["retime"] = h["retime"] or history.now()
                h["estime"] = history.now()
            if h is not None and lcm in PROLOG_NEXT.values():
                h["petime"] = history.now()
            lifecycle.set_state(vm, VmState.ACTIVE, lcm)
        self._write(op, expect, change)

    # ------------------------------------------------------------------ operations

    def op_deploy(self, op: db.Operation) -> None:
        """PROLOG* (TM prolog) → BOOT* (VMM deploy) → RUNNING."""
        vm, host, vmm, tm = self._snapshot(op)
        ref = host_ref(host)
        lcm = vm["lcm_state"]
        if lcm in PROLOG_NEXT:
            try:
                vm_dir = self.registry.call("tm", tm, "prolog", ref, vm_spec(vm, vmm))
            except DriverError as exc:
                self._deploy_failed(op, lcm, f"Error executing image transfer script: {exc}")
                return
            self._write(op, [lcm], lambda v, h: v.update(vm_dir=vm_dir))
            self._to(op, [lcm], PROLOG_NEXT[Lcm(lcm)])
            vm = store.load("vm", op.vm_id)
            lcm = vm["lcm_state"]
        try:
            deploy_id = self.registry.call("vmm", vmm, "deploy", ref, vm_spec(vm, vmm))
        except DriverError as exc:
            self._deploy_failed(op, lcm, f"Error deploying virtual machine: {exc}")
            return
        self._settle(op, [lcm], deploy_id=deploy_id)

    def op_boot(self, op: db.Operation) -> None:
        """Start again on the same host (resume from POWEROFF or UNKNOWN)."""
        vm, host, vmm, _ = self._snapshot(op)
        lcm = vm["lcm_state"]
        try:
            deploy_id = self.registry.call("vmm", vmm, "deploy", host_ref(host), vm_spec(vm, vmm))
        except DriverError as exc:
            self._fail(op, [lcm], f"Error deploying virtual machine: {exc}")
            return
        self._settle(op, [lcm], deploy_id=deploy_id)

    def op_shutdown(self, op: db.Operation) -> None:
        vm, host, vmm, tm = self._snapshot(op)
        lcm = vm["lcm_state"]
        if lcm not in SHUTDOWN_STATES:
            raise Superseded(f"VM is in LCM state {lcm}")
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        try:
            if op.args.get("hard"):
                self.registry.call("vmm", vmm, "cancel", ref, spec)
            else:
                self.registry.call("vmm", vmm, "shutdown", ref, spec, self.shutdown_timeout)
        except DriverError as exc:
            self._fail(op, [lcm], f"Error shutting down virtual machine: {exc}")
            return
        then = op.args.get("then", "done")
        if then == "poweroff":
            self._settle(op, [lcm])
            return
        self._to(op, [lcm], SHUTDOWN_EPILOG[then])
        self._epilog(op, SHUTDOWN_EPILOG[then], tm, keep=then != "done")

    def _epilog(self, op: db.Operation, lcm: int, tm: str, keep: bool) -> None:
        vm, host, vmm, _ = self._snapshot(op)
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        if lcm == Lcm.EPILOG and not keep:  # the VM's end: persistent images keep its changes
            disks = {d.disk_id: d for d in spec.disks}
            try:
                images.save_persistent(vm, lambda disk_id, dest: bool(self.registry.call(
                    "tm", tm, "save", ref, spec, disks[disk_id], dest)))
            except Exception as exc:  # noqa: BLE001 - the epilog fails, the disk stays put
                self._fail(op, [lcm], f"Error saving a persistent image: {exc}")
                return
        try:
            self.registry.call("tm", tm, "epilog", ref, spec, keep)
        except DriverError as exc:
            self._fail(op, [lcm], f"Error executing image transfer script: {exc}")
            return
        self._settle(op, [lcm])

    def op_epilog(self, op: db.Operation) -> None:
        """Remove what is left on the host: terminate from POWEROFF/SUSPENDED/failures, and
        the files of a STOPPED or UNDEPLOYED VM that was terminated (``then`` none)."""
        vm, host, vmm, tm = self._snapshot(op)
        then = op.args.get("then", "done")
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        if op.args.get("cancel"):
            try:
                self.registry.call("vmm", vmm, "cancel", ref, spec)
            except DriverError as exc:
                self._fail(op, [vm["lcm_state"]], f"Error canceling virtual machine: {exc}")
                return
        if then == "none":
            self.registry.call("tm", tm, "epilog", ref, spec, False)
            return
        lcm = vm["lcm_state"]
        if lcm not in EPILOG_STATES:
            raise Superseded(f"VM is in LCM state {lcm}")
        self._epilog(op, lcm, tm, keep=then != "done")

    def op_cleanup(self, op: db.Operation) -> None:
        """After recover delete/delete-recreate: remove the domain, then its files. The VM's
        state was already settled by the API; only the host is cleaned."""
        vm, host, vmm, tm = self._snapshot(op)
        ref, spec = host_ref(host), vm_spec(vm, vmm)
        self.registry.call("vmm", vmm, "cancel", ref, spec)
        self.registry.call("tm", tm, "epilog", ref, spec, False)

    def _simple(self, op: db.Operation, method: str, expect: set[int] | None) -> None:
        vm, host, vmm, _ = self._snapshot(op)
        lcm = vm["lcm_state"]
        if expect is not None and lcm not in expect:
            raise Superseded(f"VM is in LCM state {lcm}")
        try:
            self.registry.call("vmm", vmm, method, host_ref(host), vm_spec(vm, vmm))
        except DriverError as exc:
            if expect is None:  # reboot/reset: the VM keeps running, the error is recorded
                message = f"Error {method}ing virtual machine: {exc}"
                self._write(op, None, lambda v, h: lifecycle.set_error(v, message))
            else:
                self._fail(op, [lcm], f"Error in {method}: {exc}")
            return
        if expect is not None:
            self._settle(op, [lcm])

    # Image operations (copy into a datastore, delete from it) are in core/images.py; they use
    # this queue so each image's operations run one at a time, in order.
    def op_image_copy(self, op: db.Operation) -> None:
        images.copy(op)

    def op_image_delete(self, op: db.Operation) -> None:
        images.delete(op)

    def op_reboot(self, op: db.Operation) -> None:
        self._simple(op, "reboot", None)

    def op_reset(self, op: db.Operation) -> None:
        self._simple(op, "reset", None)

    def op_suspend(self, op: db.Operation) -> None:
        self._simple(op, "suspend", {Lcm.SAVE_SUSPEND})

    def op_resume(self, op: db.Operation) -> None:
        self._simple(op, "resume", {Lcm.BOOT_SUSPENDED})

    def op_resize(self, op: db.Operation) -> None:
        self._simple(op, "resize", {Lcm.HOTPLUG_RESIZE})

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

    def op_migrate(self, op: db.Operation) -> None:
        """Cold migration: stop on the source, move the disks, start on the destination."""
        vm = store.load("vm", op.vm_id)
        src_id = op.args.get("from", -1)
        lcm = vm["lcm_state"]
        if lcm == Lcm.SAVE_MIGRATE:
            _, src, vmm, tm = self._snapshot(op, src_id)
            try:
                self.registry.call("vmm", vmm, "shutdown", host_ref(src), vm_spec(vm, vmm),
                                   self.shutdown_timeout)
            except DriverError as exc:
                self._fail(op, [lcm], f"Error saving virtual machine: {exc}")
                return
            self._to(op, [lcm], Lcm.PROLOG_MIGRATE)
            lcm = Lcm.PROLOG_MIGRATE
        vm, dst, vmm, tm = self._snapshot(op)
        if lcm in (Lcm.PROLOG_MIGRATE, Lcm.PROLOG_MIGRATE_POWEROFF, Lcm.PROLOG_MIGRATE_SUSPEND):
            try:
                vm_dir = self._move_disks(vm, src_id, dst, vmm, tm)
            except DriverError as exc:
                self._fail(op, [lcm], f"Error migrating the disks: {exc}")
                return
            if lcm != Lcm.PROLOG_MIGRATE:  # a powered-off or suspended VM stays so
                self._settle(op, [lcm], vm_dir=vm_dir)
                return
            self._write(op, [lcm], lambda v, h: v.update(vm_dir=vm_dir))
            self._to(op, [lcm], Lcm.BOOT_MIGRATE)
            lcm = Lcm.BOOT_MIGRATE
            vm = store.load("vm", op.vm_id)
        try:
            deploy_id = self.registry.call("vmm", vmm, "deploy", host_ref(dst), vm_spec(vm, vmm))
        except DriverError as exc:
            self._fail(op, [lcm], f"Error deploying virtual machine: {exc}")
            return
        self._settle(op, [lcm], deploy_id=deploy_id)
