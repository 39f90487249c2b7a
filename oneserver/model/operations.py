"""Queueing driver operations for the core (in the caller's transaction), and which VM states
each operation drives its VM through."""

from __future__ import annotations

import time
from typing import Any

from oneserver import db
from oneserver.model.lifecycle import Op, state_seq
from oneserver.model.vmstate import Lcm as L

# The transient states a VM operation takes its VM through, one driver step each. After a
# crash the operation goes on from whichever of them its VM is in; a VM in any other state has
# settled (or failed) and the operation has nothing left to do. Operations not named here
# (reboot, reset, cleanup, a terminated VM's epilog) change no state: they just run again.
DRIVES: dict[str, frozenset[int]] = {
    "deploy": frozenset({L.PROLOG, L.PROLOG_RESUME, L.PROLOG_UNDEPLOY, L.BOOT, L.BOOT_STOPPED,
                         L.BOOT_UNDEPLOY}),
    "boot": frozenset({L.BOOT_POWEROFF, L.BOOT_UNKNOWN}),
    "shutdown": frozenset({L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY, L.SAVE_STOP,
                           L.EPILOG, L.EPILOG_STOP, L.EPILOG_UNDEPLOY}),
    "epilog": frozenset({L.EPILOG, L.EPILOG_STOP, L.EPILOG_UNDEPLOY}),
    "migrate": frozenset({L.SAVE_MIGRATE, L.PROLOG_MIGRATE, L.PROLOG_MIGRATE_POWEROFF,
                          L.PROLOG_MIGRATE_SUSPEND, L.BOOT_MIGRATE}),
    "suspend": frozenset({L.SAVE_SUSPEND}),
    "resume": frozenset({L.BOOT_SUSPENDED}),
    "resize": frozenset({L.HOTPLUG_RESIZE}),
    "attach_nic": frozenset({L.HOTPLUG_NIC}),
    "detach_nic": frozenset({L.HOTPLUG_NIC}),
}


def enqueue(vm: dict[str, Any], ops: list[Op]) -> None:
    """Queue ``ops`` for ``vm`` as it is now (after the state change that asked for them)."""
    now = time.time()
    for op in ops:
        db.Operation.create(vm_id=vm["id"], host_id=op.host_id, action=op.action, args=op.args,
                            created=now, state_seq=state_seq(vm))


def enqueue_image(image_id: int, action: str, **args: object) -> None:
    """Queue a datastore operation (``image_copy``, ``image_delete``) for image ``image_id``;
    it runs in the core after the image's earlier operations."""
    db.Operation.create(kind="image", vm_id=image_id, host_id=-1, action=action, args=args,
                        created=time.time())
