"""``<CLUSTER>``, ``<DATASTORE>`` and ``<VMTEMPLATE>`` documents."""

from __future__ import annotations

from typing import Any

from oneserver.documents import cdata, el, ids, lock, owner_head, permissions, template


def cluster(doc: dict[str, Any]) -> str:
    return (
        f"<CLUSTER><ID>{doc['id']}</ID>" + el("NAME", doc["name"]) + ids("HOSTS", doc["hosts"])
        + ids("DATASTORES", doc["datastores"]) + ids("VNETS", doc["vnets"])
        + template(doc["template"]) + "</CLUSTER>"
    )


def datastore(doc: dict[str, Any]) -> str:
    return (
        "<DATASTORE>" + owner_head(doc) + permissions(doc["perms"])
        + cdata("DS_MAD", doc["ds_mad"]) + cdata("TM_MAD", doc["tm_mad"])
        + cdata("BASE_PATH", doc["base_path"])
        + f"<TYPE>{doc['type']}</TYPE><DISK_TYPE>{doc['disk_type']}</DISK_TYPE>"
        f"<STATE>{doc['state']}</STATE>" + ids("CLUSTERS", doc["clusters"])
        + f"<TOTAL_MB>{doc['total_mb']}</TOTAL_MB><FREE_MB>{doc['free_mb']}</FREE_MB>"
        f"<USED_MB>{doc['used_mb']}</USED_MB>" + ids("IMAGES", doc["images"])
        + template(doc["template"]) + "</DATASTORE>"
    )


def vmtemplate(doc: dict[str, Any]) -> str:
    return (
        "<VMTEMPLATE>" + owner_head(doc) + lock(doc) + permissions(doc["perms"])
        + f"<REGTIME>{doc['regtime']}</REGTIME>" + template(doc["template"]) + "</VMTEMPLATE>"
    )
