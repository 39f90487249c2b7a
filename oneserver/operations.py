"""Queueing driver operations for the core (in the caller's transaction)."""

from __future__ import annotations

import time

from oneserver import db
from oneserver.lifecycle import Op


def enqueue(vm_id: int, ops: list[Op]) -> None:
    now = time.time()
    for op in ops:
        db.Operation.create(vm_id=vm_id, host_id=op.host_id, action=op.action, args=op.args,
                            created=now)


def enqueue_image(image_id: int, action: str, **args: object) -> None:
    """Queue a datastore operation (``image_copy``, ``image_delete``) for image ``image_id``;
    it runs in the core after the image's earlier operations."""
    db.Operation.create(kind="image", vm_id=image_id, host_id=-1, action=action, args=args,
                        created=time.time())
