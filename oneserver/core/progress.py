"""Transfer progress, from the TM drivers into the VM: ``USER_TEMPLATE/TRANSFER_PROGRESS``
while the VM is in a PROLOG state, written at most once a second per VM, removed when the
transfer ends. It is also how a transfer learns that its VM moved on (a ``recover --delete``
during PROLOG): the answer is then "stop", and the driver aborts and cleans up at once instead
of finishing a copy nobody wants. The cleanup queued by the delete runs after it, never
alongside (operations of a VM run one at a time)."""

from __future__ import annotations

import logging
import threading
import time

from oneserver import db, store
from oneserver.model.vmstate import Lcm, VmState
from oneserver.template import Template

log = logging.getLogger("oneserver.core")
PROLOG_STATES = frozenset({
    Lcm.PROLOG, Lcm.PROLOG_RESUME, Lcm.PROLOG_UNDEPLOY, Lcm.PROLOG_MIGRATE,
    Lcm.PROLOG_MIGRATE_POWEROFF, Lcm.PROLOG_MIGRATE_SUSPEND, Lcm.PROLOG_MIGRATE_UNKNOWN,
})
ATTR = "TRANSFER_PROGRESS"


def text(done: int, total: int) -> str:
    mb = 2**20
    if total <= 0:
        return f"{done // mb} MB"
    return f"{min(100, done * 100 // total)}% ({done // mb}/{total // mb} MB)"


class Progress:
    """The core's :data:`~oneserver.driver_contract.ProgressSink`."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[int, tuple[float, bool]] = {}

    def __call__(self, vm_id: int, done: int, total: int) -> bool:
        finished = total > 0 and done >= total
        now = time.monotonic()
        with self._lock:
            last = self._last.get(vm_id)
            if not finished and last is not None and now - last[0] < self.interval:
                return last[1]
        try:
            go_on = self._write(vm_id, done, total, finished)
        except Exception:  # noqa: BLE001 - progress is informative; never fail a transfer
            log.exception("recording the transfer progress of VM %s failed", vm_id)
            go_on = True
        with self._lock:
            if finished:
                self._last.pop(vm_id, None)
            else:
                self._last[vm_id] = (now, go_on)
        return go_on

    def _write(self, vm_id: int, done: int, total: int, finished: bool) -> bool:
        with db.write_transaction():
            if not store.exists("vm", vm_id):
                return False
            vm = store.load("vm", vm_id, for_update=True)
            if vm["state"] != VmState.ACTIVE or vm["lcm_state"] not in PROLOG_STATES:
                return False
            ut = Template.from_json(vm["user_template"])
            if finished:
                if ATTR not in ut:
                    return True
                ut.remove(ATTR)
            else:
                ut.set(ATTR, text(done, total))
            vm["user_template"] = ut.to_json()
            store.save("vm", vm)
        return True
