"""The ``<VM>`` document: full (``vm.info``), extended (last history only) and short
(``vmpool.info``)."""

from __future__ import annotations

from typing import Any

from oneserver.documents import cdata, el, lock, owner_head, permissions, template
from oneserver.template import Template

HISTORY_TIMES = ("PSTIME", "PETIME", "RSTIME", "RETIME", "ESTIME", "EETIME")

# Attributes of TEMPLATE that the short body carries (VirtualMachine::to_xml_short).
SHORT_DISK = (
    "CLONE", "CLONE_TARGET", "DATASTORE", "DATASTORE_ID", "DISK_ID", "DISK_SNAPSHOT_TOTAL_SIZE",
    "IMAGE", "IMAGE_ID", "LN_TARGET", "SIZE", "TYPE",
)
SHORT_NIC = (
    "EXTERNAL_IP", "IP", "IP6", "IP6_GLOBAL", "IP6_LINK", "IP6_ULA", "NETWORK_MODE",
    "SCHED_RANK", "SCHED_REQUIREMENTS",
)
SHORT_USER = (
    "ERROR", "LABELS", "SCHED_DS_RANK", "SCHED_DS_REQUIREMENTS", "SCHED_MESSAGE", "SCHED_RANK",
    "SCHED_REQUIREMENTS", "USER_PRIORITY",
)


def history(h: dict[str, Any]) -> str:
    parts = [
        f"<OID>{h['oid']}</OID><SEQ>{h['seq']}</SEQ>", el("HOSTNAME", h["hostname"]),
        f"<HID>{h['hid']}</HID><CID>{h['cid']}</CID>",
        f"<STIME>{h['stime']}</STIME><ETIME>{h['etime']}</ETIME>",
        cdata("VM_MAD", h["vm_mad"]), cdata("TM_MAD", h["tm_mad"]),
        f"<DS_ID>{h['ds_id']}</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>0</ACTION_ID>",
    ]
    parts += [f"<{t}>{h[t.lower()]}</{t}>" for t in HISTORY_TIMES]
    parts.append(
        f"<ACTION>{h['action']}</ACTION><UID>{h['uid']}</UID><GID>{h['gid']}</GID>"
        f"<REQUEST_ID>{h['request_id']}</REQUEST_ID>"
    )
    return "<HISTORY>" + "".join(parts) + "</HISTORY>"


def history_records(records: list[dict[str, Any]]) -> str:
    if not records:
        return "<HISTORY_RECORDS/>"
    return "<HISTORY_RECORDS>" + "".join(history(h) for h in records) + "</HISTORY_RECORDS>"


def full(doc: dict[str, Any], all_history: bool = True) -> str:
    records = doc["history"] if all_history else doc["history"][-1:]
    return (
        "<VM>" + owner_head(doc) + permissions(doc["perms"])
        + f"<LAST_POLL>{doc['last_poll']}</LAST_POLL>"
        f"<STATE>{doc['state']}</STATE><LCM_STATE>{doc['lcm_state']}</LCM_STATE>"
        f"<PREV_STATE>{doc['prev_state']}</PREV_STATE>"
        f"<PREV_LCM_STATE>{doc['prev_lcm_state']}</PREV_LCM_STATE>"
        f"<RESCHED>{doc['resched']}</RESCHED><STIME>{doc['stime']}</STIME>"
        f"<ETIME>{doc['etime']}</ETIME>" + el("DEPLOY_ID", doc["deploy_id"]) + lock(doc)
        + template(doc["monitoring"], "MONITORING")
        + "<SCHED_ACTIONS></SCHED_ACTIONS>"
        + template(doc["template"]) + template(doc["user_template"], "USER_TEMPLATE")
        + history_records(records)
        + "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>"
    )


def _short_vector(vec: dict[str, str], keys: tuple[str, ...]) -> str:
    return "".join(cdata(k, vec[k]) for k in keys if vec.get(k, "") != "")


def short(doc: dict[str, Any]) -> str:
    tmpl = Template.from_json(doc["template"])
    utmpl = Template.from_json(doc["user_template"])
    t = [el("CPU", tmpl.get_str("CPU")), el("MEMORY", tmpl.get_str("MEMORY")),
         el("VCPU", tmpl.get_str("VCPU"))]
    for disk in tmpl.vectors("DISK"):
        t.append("<DISK>" + _short_vector(disk, SHORT_DISK) + "</DISK>")
    for nic in tmpl.vectors("NIC"):
        t.append("<NIC>" + _short_vector(nic, SHORT_NIC) + "</NIC>")
    mon = Template.from_json(doc["monitoring"])
    mon_parts = "".join(cdata(k, mon.get_str(k)) for k in ("CPU", "MEMORY", "STATE") if k in mon)
    monitoring = f"<MONITORING>{mon_parts}</MONITORING>" if mon_parts else "<MONITORING/>"
    user = "".join(cdata(k, utmpl.get_str(k)) for k in SHORT_USER if k in utmpl)
    user_xml = f"<USER_TEMPLATE>{user}</USER_TEMPLATE>" if user else "<USER_TEMPLATE/>"
    if doc["history"]:
        h = doc["history"][-1]
        hist = (
            f"<HISTORY_RECORDS><HISTORY><OID>{h['oid']}</OID><SEQ>{h['seq']}</SEQ>"
            + cdata("HOSTNAME", h["hostname"])
            + f"<HID>{h['hid']}</HID><CID>{h['cid']}</CID><DS_ID>{h['ds_id']}</DS_ID>"
            + cdata("VM_MAD", h["vm_mad"]) + cdata("TM_MAD", h["tm_mad"])
            + cdata("ACTION", h["action"]) + "</HISTORY></HISTORY_RECORDS>"
        )
    else:
        hist = "<HISTORY_RECORDS/>"
    return (
        "<VM>" + owner_head(doc) + f"<LAST_POLL>{doc['last_poll']}</LAST_POLL>"
        f"<STATE>{doc['state']}</STATE><LCM_STATE>{doc['lcm_state']}</LCM_STATE>"
        f"<RESCHED>{doc['resched']}</RESCHED><STIME>{doc['stime']}</STIME>"
        f"<ETIME>{doc['etime']}</ETIME>" + el("DEPLOY_ID", doc["deploy_id"]) + lock(doc)
        + "<TEMPLATE>" + "".join(t) + "</TEMPLATE>" + monitoring + user_xml + hist + "</VM>"
    )
