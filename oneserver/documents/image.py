"""The ``<IMAGE>`` document, in the element order of OpenNebula 7.4's image.xsd."""

from __future__ import annotations

from typing import Any

from oneserver.documents import el, ids, lock, owner_head, permissions, template


def image(doc: dict[str, Any]) -> str:
    snaps = doc.get("snapshots") or {}
    return (
        "<IMAGE>" + owner_head(doc) + lock(doc) + permissions(doc["perms"])
        + f"<TYPE>{doc['type']}</TYPE><DISK_TYPE>{doc['disk_type']}</DISK_TYPE>"
        f"<PERSISTENT>{doc['persistent']}</PERSISTENT><REGTIME>{doc['regtime']}</REGTIME>"
        f"<MODTIME>{doc.get('modtime', doc['regtime'])}</MODTIME>"
        + el("SOURCE", doc["source"]) + el("PATH", doc["path"]) + el("FORMAT", doc["format"])
        + el("FS", doc.get("fs", "")) + f"<SIZE>{doc['size']}</SIZE>"
        f"<STATE>{doc['state']}</STATE><PREV_STATE>{doc['prev_state']}</PREV_STATE>"
        f"<RUNNING_VMS>{len(doc['vms'])}</RUNNING_VMS>"
        f"<CLONING_OPS>{doc['cloning_ops']}</CLONING_OPS>"
        f"<CLONING_ID>{doc['cloning_id']}</CLONING_ID>"
        f"<TARGET_SNAPSHOT>{doc.get('target_snapshot', -1)}</TARGET_SNAPSHOT>"
        f"<DATASTORE_ID>{doc['datastore_id']}</DATASTORE_ID>" + el("DATASTORE", doc["datastore"])
        + ids("VMS", doc["vms"]) + ids("CLONES", doc["clones"])
        + ids("APP_CLONES", doc.get("app_clones", []))
        + template(doc["template"])
        + "<SNAPSHOTS>" + el("ALLOW_ORPHANS", snaps.get("allow_orphans", "NO"))
        + f"<CURRENT_BASE>{snaps.get('current_base', -1)}</CURRENT_BASE>"
        + el("NEXT_SNAPSHOT", snaps.get("next_snapshot", 0)) + "</SNAPSHOTS>"
        "<BACKUP_INCREMENTS></BACKUP_INCREMENTS></IMAGE>"
    )
