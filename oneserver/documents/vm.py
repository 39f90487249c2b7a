"""The ``<VM>`` document: full (``vm.info``), extended (last history only) and short
(``vmpool.info``)."""

from __future__ import annotations

from typing import Any

from oneserver.documents import cdata, el, lock, owner_head, permissions, template
from oneserver.template import Template

HISTORY_TIMES = ("PSTIME", "PETIME", "RSTIME", "RETIME", "ESTIME", "EETIME")

# What the short body keeps of TEMPLATE and USER_TEMPLATE, member by member in the order
# VirtualMachine::to_xml_short writes them: every DISK member (empty when unset); a NIC's
# addresses and scheduling hints when set, then five members always; the USER_TEMPLATE
# attributes list views and the scheduler read, the first three only when not empty.
SHORT_DISK = (
    "DISK_ID", "DATASTORE", "DATASTORE_ID", "IMAGE", "IMAGE_ID", "SIZE", "TYPE", "CLONE",
    "CLONE_TARGET", "LN_TARGET", "DISK_SNAPSHOT_TOTAL_SIZE",
)
SHORT_NIC_IF_SET = (
    "IP", "EXTERNAL_IP", "IP6", "IP6_ULA", "IP6_LINK", "IP6_GLOBAL", "NETWORK_MODE",
    "SCHED_REQUIREMENTS", "SCHED_RANK",
)
SHORT_NIC = ("MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS")
SHORT_USER_IF_SET = ("LABELS", "ERROR", "SCHED_MESSAGE")
SHORT_USER = (
    "SCHED_RANK", "SCHED_DS_RANK", "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS", "USER_PRIORITY",
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


def _members(vec: dict[str, str], keys: tuple[str, ...], if_set: bool) -> str:
    return "".join(cdata(k, vec.get(k, "")) for k in keys if not if_set or vec.get(k, ""))


def short(doc: dict[str, Any]) -> str:
    tmpl = Template.from_json(doc["template"])
    utmpl = Template.from_json(doc["user_template"])
    t = [el("CPU", tmpl.get_str("CPU")), el("MEMORY", tmpl.get_str("MEMORY")),
         el("VCPU", tmpl.get_str("VCPU"))]
    for disk in tmpl.vectors("DISK"):
        t.append("<DISK>" + _members(disk, SHORT_DISK, False) + "</DISK>")
    for nic in tmpl.vectors("NIC"):
        t.append("<NIC>" + _members(nic, SHORT_NIC_IF_SET, True)
                 + _members(nic, SHORT_NIC, False) + "</NIC>")
    mon = Template.from_json(doc["monitoring"])
    # Empty before the first sample, then always all three, as oned.
    mon_xml = "".join(cdata(k, mon.get_str(k)) for k in ("CPU", "MEMORY", "STATE"))
    monitoring = f"<MONITORING>{mon_xml}</MONITORING>" if mon.items else "<MONITORING/>"
    user = "".join(cdata(k, utmpl.get_str(k)) for k in SHORT_USER_IF_SET if utmpl.get_str(k))
    user += "".join(cdata(k, utmpl.get_str(k)) for k in SHORT_USER if k in utmpl)
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
    # Only the level of a lock: who holds it is for vm.info.
    lk = doc.get("lock")
    short_lock = f"<LOCK><LOCKED>{lk['locked']}</LOCKED></LOCK>" if lk else ""
    return (
        "<VM>" + owner_head(doc) + f"<LAST_POLL>{doc['last_poll']}</LAST_POLL>"
        f"<STATE>{doc['state']}</STATE><LCM_STATE>{doc['lcm_state']}</LCM_STATE>"
        f"<RESCHED>{doc['resched']}</RESCHED><STIME>{doc['stime']}</STIME>"
        f"<ETIME>{doc['etime']}</ETIME>" + el("DEPLOY_ID", doc["deploy_id"]) + short_lock
        + "<TEMPLATE>" + "".join(t) + "</TEMPLATE>" + monitoring + user_xml + hist + "</VM>"
    )
