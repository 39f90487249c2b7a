"""The scheduler job: read pending VMs and usable hosts, run one placement pass, deploy through
the same path as ``one.vm.deploy`` (capacity re-checked and reserved in the transaction that
changes the VM), and tell every VM that stays pending why."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import peewee as pw

from oneserver import db, numeric, store
from oneserver.api.vm import migrate_to, place
from oneserver.driver_contract import Capability
from oneserver.errors import OneError
from oneserver.model import capabilities
from oneserver.model.acl import MANAGE, Caller, Rule, Target, allowed
from oneserver.model.capacity import fits, vm_size
from oneserver.model.vmstate import HostState, Lcm, VmState
from oneserver.scheduler.placement import (
    DISPATCH_LIMITED,
    NOT_CONSIDERED,
    PREFIX,
    HostCandidate,
    PassLimits,
    PendingVM,
    Policy,
    schedule,
)
from oneserver.template import Template

log = logging.getLogger("oneserver.scheduler")
T = TypeVar("T")
MESSAGE_BATCH = 100


@dataclass
class SchedConf:
    interval: float = 15.0
    max_vm: int = 5000
    max_dispatch: int = 30
    max_host: int = 1
    live_rescheds: int = 0
    policy: int = 1
    rank: str = ""
    wake_on_events: bool = True
    backoff: float = 60.0  # seconds a host is avoided by a VM whose deploy failed on it

    @classmethod
    def from_template(cls, t: Template) -> SchedConf:
        def num(name: str, default: float) -> float:
            return _or_default(numeric.to_float(t.get_str(name, str(default))), default)

        sched = (t.vectors("DEFAULT_SCHED") or [{}])[0]
        return cls(
            interval=num("SCHED_INTERVAL", 15), max_vm=int(num("MAX_VM", 5000)),
            max_dispatch=int(num("MAX_DISPATCH", 30)), max_host=int(num("MAX_HOST", 1)),
            live_rescheds=int(num("LIVE_RESCHEDS", 0)),
            policy=_or_default(numeric.to_int(sched.get("POLICY", "1") or "1"), 1),
            rank=sched.get("RANK", ""),
            wake_on_events=t.get_str("WAKE_ON_EVENTS", "YES").upper() != "NO",
            backoff=num("DEPLOY_BACKOFF", 60),
        )


@dataclass
class Scheduler:
    conf: SchedConf
    # (kind, id, why) of the unreadable records already logged: said once, not every pass.
    _logged: set[tuple[str, int, str]] = field(default_factory=set, repr=False)
    # VMs whose deploy failed on their record: id -> (the record, their SCHED_MESSAGE).
    _undeployable: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)
    _texts: dict[int, str] = field(default_factory=dict, repr=False)  # this pass's records

    def run_pass(self) -> int:
        """One pass; returns the number of VMs dispatched. A VM or host whose record cannot
        be used is left out with the reason (the VM's SCHED_MESSAGE, the log for a host):
        it never stops the others from being placed."""
        if not self._pending():
            return 0  # the common case on a wake-up: don't read the pools at all
        hosts, skipped = self._hosts()
        self._texts.clear()
        vms, vm_docs, refused = self._vms(hosts)
        if not vms and not refused:
            return 0
        result = schedule(vms, hosts, Policy(self.conf.policy, self.conf.rank),
                          PassLimits(self.conf.max_vm, self.conf.max_dispatch,
                                     self.conf.max_host))
        messages = _note_skipped(result.messages, skipped)
        placed = 0
        for p in result.placements:
            try:
                if self._dispatch(p.vm_id, p.host_id):
                    placed += 1
            except OneError as exc:  # the VM or the host turned unusable since it was read
                log.warning("VM %s not dispatched to host %s: %s", p.vm_id, p.host_id,
                            exc.message)
                messages[p.vm_id] = PREFIX + exc.message
            except pw.DatabaseError:
                raise  # the database's trouble, not this VM's: the next pass tries again
            except Exception as exc:  # noqa: BLE001 - its record cannot be deployed
                why = self._left_out("VM", p.vm_id, exc)
                messages[p.vm_id] = f"{PREFIX}its record cannot be deployed ({why})"
                self._undeployable[p.vm_id] = (self._texts[p.vm_id], messages[p.vm_id])
        messages.update(refused)
        self._write_messages(messages, vm_docs)
        return placed

    # -------------------------------------------------------------- reading the pools

    def _hosts(self) -> tuple[list[HostCandidate], dict[int, str]]:
        """The usable hosts, and why each host whose record cannot be used was left out."""
        clusters = {r.oid: r.doc for r in db.Cluster.select(db.Cluster.oid, db.Cluster.doc)}
        out, skipped = [], {}
        rows = db.raw('SELECT oid, doc FROM "host" WHERE state = ? ORDER BY oid',
                      int(HostState.MONITORED))
        for oid, text in rows:
            try:
                out.append(_host_candidate(json.loads(text), clusters))
            except Exception as exc:  # noqa: BLE001 - one broken record, one host left out
                skipped[oid] = self._left_out("host", oid, exc)
        return out, skipped

    def _left_out(self, kind: str, oid: int, exc: Exception) -> str:
        why = _why(exc)
        if (kind, oid, why) not in self._logged:
            self._logged.add((kind, oid, why))
            log.warning("%s %s left out of scheduling: %s", kind, oid, why)
        return why

    def _vms(self, hosts: list[HostCandidate]
             ) -> tuple[list[PendingVM], dict[int, Any], dict[int, str]]:
        """The VMs to place, their documents, and the message of each one that cannot be."""
        now = time.time()
        rights = _HostRights(hosts)
        rows = db.raw(
            'SELECT oid, doc FROM "vm" WHERE state = ? OR (resched = 1 AND (state = ? OR '
            "state = ?)) ORDER BY oid",
            int(VmState.PENDING), int(VmState.POWEROFF), int(VmState.ACTIVE))
        vms, docs, refused = [], {}, {}
        undeployable, self._undeployable = self._undeployable, {}
        for oid, text in rows:
            try:
                doc = json.loads(text)
                known = undeployable.get(oid)
                if known is not None and known[0] == text:
                    # Its deploy failed on its record, which has not changed since: it must
                    # not take, pass after pass, the place of a VM that can be deployed.
                    self._undeployable[oid] = known
                    docs[oid], refused[oid] = doc, known[1]
                    continue
                self._texts[oid] = text
                vm = self._candidate(doc, rights, now)
            except OneError as exc:
                docs[oid], refused[oid] = doc, PREFIX + exc.message
                continue
            except Exception as exc:  # noqa: BLE001 - one broken record, one VM left out
                self._left_out("VM", oid, exc)  # not even where a message would go is readable
                continue
            if vm is not None:
                vms.append(vm)
                docs[oid] = doc
        return vms, docs, refused

    def _candidate(self, doc: dict[str, Any], rights: _HostRights, now: float
                   ) -> PendingVM | None:
        """The VM as the pass sees it; None if it is not to be moved; OneError with the
        reason if its template cannot be scheduled."""
        if doc["state"] == VmState.ACTIVE and doc["lcm_state"] not in (Lcm.RUNNING,
                                                                       Lcm.UNKNOWN):
            return None
        if doc["state"] != VmState.PENDING and not self._can_move(doc):
            return None
        t = Template.from_json(doc["template"])
        u = Template.from_json(doc["user_template"])
        cpu, memory_mb = vm_size(doc)
        auto = t.get_str("AUTOMATIC_REQUIREMENTS")
        user_req = u.get_str("SCHED_REQUIREMENTS")
        req = f"{auto} & ( {user_req} )" if auto and user_req else auto or user_req
        # Hosts where a deploy of this VM failed recently (lifecycle.requeue).
        excluded = {int(h) for h, until in doc.get("sched_backoff", {}).items() if until > now}
        if doc["state"] != VmState.PENDING and doc["history"]:
            excluded.add(doc["history"][-1]["hid"])  # a resched VM must move
        excluded |= rights.forbidden(doc)
        priority = _or_default(numeric.to_int(u.get_str("USER_PRIORITY", "0") or "0"), 0)
        return PendingVM(
            id=doc["id"], cpu=cpu, memory_mb=memory_mb, requirements=req,
            rank=u.get_str("SCHED_RANK"), priority=priority, excluded_hosts=excluded,
        )

    @staticmethod
    def _pending() -> bool:
        return db.VM.select(db.VM.oid).where(
            (db.VM.state == VmState.PENDING) | (db.VM.resched == 1)).exists()

    @staticmethod
    def _can_move(doc: dict[str, Any]) -> bool:
        """A resched VM moves by cold migration only where its driver can migrate (the LXC
        driver can't carry a container's disk to another host yet: it stays where it is)."""
        vm_mad = doc["history"][-1]["vm_mad"] if doc["history"] else ""
        caps = capabilities.of(vm_mad)  # a string: the driver cannot be loaded here
        return not isinstance(caps, str) and Capability.MIGRATE_COLD in caps

    # -------------------------------------------------------------- writing results

    def _dispatch(self, vm_id: int, host_id: int) -> bool:
        """Deploy (or migrate, for a resched VM) in one transaction; refuse if the VM or the
        host changed since the pass read them so that nothing is ever over-committed."""
        with db.write_transaction():
            vm = store.load("vm", vm_id, for_update=True)
            host = store.load("host", host_id, for_update=True)
            if host["state"] != HostState.MONITORED or not fits(host, vm):
                return False
            if vm["state"] == VmState.PENDING:
                place(vm, host, 0, _system_tm(), backoff=self.conf.backoff)
                return True
            if vm["resched"] == 1 and vm["history"]:
                src = store.load("host", vm["history"][-1]["hid"], for_update=True)
                migrate_to(vm, src, host, 0, _system_tm())
                return True
        return False

    def _write_messages(self, messages: dict[int, str], docs: dict[int, Any]) -> None:
        """Record why each VM that was tried stays pending. VMs the pass never reached
        (MAX_VM, MAX_DISPATCH) get nothing, as with mm_sched: with thousands pending, writing
        them all every pass would cost more than the pass. Unchanged messages are not
        rewritten; the rest is written in small transactions so API writes never wait long."""
        stamp = time.strftime("%a %b %d %H:%M:%S %Y")
        todo = []
        for vm_id, message in messages.items():
            if message == NOT_CONSIDERED or message.startswith(DISPATCH_LIMITED):
                continue
            try:
                old = Template.from_json(docs[vm_id]["user_template"]).get_str("SCHED_MESSAGE")
            except Exception as exc:  # noqa: BLE001 - no USER_TEMPLATE to write it in
                log.warning("VM %s: SCHED_MESSAGE not written (%s): %s", vm_id, _why(exc),
                            message)
                continue
            if old.partition(" : ")[2] != message:
                todo.append((vm_id, message))
        for i in range(0, len(todo), MESSAGE_BATCH):
            with db.write_transaction():
                for vm_id, message in todo[i:i + MESSAGE_BATCH]:
                    try:
                        self._write_message(vm_id, f"{stamp} : {message}")
                    except pw.DatabaseError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a record that cannot be saved
                        self._left_out("VM", vm_id, exc)  # (the others' messages still are)

    @staticmethod
    def _write_message(vm_id: int, message: str) -> None:
        vm = store.load("vm", vm_id, for_update=True)
        if vm["state"] != VmState.PENDING and not vm["resched"]:
            return
        u = Template.from_json(vm["user_template"])
        u.set("SCHED_MESSAGE", message)
        vm["user_template"] = u.to_json()
        store.save("vm", vm)


class _HostRights:
    """For one pass: the hosts each VM owner may not deploy on. As mm_sched, unless the owner
    is oneadmin or in its group, they need MANAGE on the host (permissions or ACL rules)."""

    def __init__(self, hosts: list[HostCandidate]) -> None:
        self.hosts = hosts
        self._rules: list[Rule] | None = None
        self._by_owner: dict[tuple[int, int], set[int]] = {}

    def forbidden(self, vm: dict[str, Any]) -> set[int]:
        key = (vm["uid"], vm["gid"])
        if vm["uid"] == 0 or vm["gid"] == 0:
            return set()
        if key not in self._by_owner:
            self._by_owner[key] = self._compute(vm["uid"], vm["gid"])
        return self._by_owner[key]

    def _compute(self, uid: int, gid: int) -> set[int]:
        row = db.User.get_or_none(db.User.oid == uid)
        groups = frozenset(int(g) for g in row.groups.split(",") if g) if row else \
            frozenset({gid})
        owner = Caller(uid, gid, "", "", groups)
        if owner.is_admin:
            return set()
        if self._rules is None:
            self._rules = [Rule(r.oid, r.user, r.resource, r.rights, r.zone)
                           for r in db.Acl.select()]
        return {h.id for h in self.hosts
                if not allowed(owner, Target("host", h.id, clusters=(h.cluster_id,)),
                               MANAGE, self._rules)}


def _system_tm() -> str:
    tm_mad: str = store.load("datastore", 0)["tm_mad"]
    return tm_mad


_SHARE = ("max_cpu", "cpu_usage", "max_mem", "mem_usage", "running_vms")


def _host_candidate(doc: dict[str, Any], clusters: dict[int, Any]) -> HostCandidate:
    """A host as the pass sees it; ValueError (or whatever the record's shape raises) when
    its HOST_SHARE numbers are not whole finite numbers."""
    share = doc["share"]
    numbers = {}
    for key in _SHARE:
        value = share[key]
        if type(value) is float and math.isfinite(value) and value.is_integer():
            value = int(value)
        if type(value) is not int:
            raise ValueError(f"HOST_SHARE/{key.upper()} is {value!r}, not a whole number")
        numbers[key] = value
    return HostCandidate(
        id=doc["id"], name=doc["name"], cluster_id=doc["cluster_id"],
        attrs=host_attrs(doc, clusters.get(doc["cluster_id"])), **numbers,
    )


def _or_default(value: T | None, default: T) -> T:
    return default if value is None else value


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _note_skipped(messages: dict[int, str], skipped: dict[int, str]) -> dict[int, str]:
    """The pass's messages, with the hosts left out named in those that explain why a VM
    found no host (the others are about the VM itself or the pass's limits)."""
    if not skipped:
        return messages
    first = min(skipped)
    n = len(skipped)
    note = (f"; {n} host{'' if n == 1 else 's'} left out, unreadable (HOST {first}: "
            f"{skipped[first]})")
    return {vm_id: message + note if message.startswith(PREFIX) and message != NOT_CONSIDERED
            and not message.startswith(DISPATCH_LIMITED) else message
            for vm_id, message in messages.items()}


def host_attrs(doc: dict[str, Any], cluster: dict[str, Any] | None) -> dict[str, list[str]]:
    """Expression variables of a host in oned's lookup order (TEMPLATE, HOST_SHARE,
    DATASTORES, MONITORING/CAPACITY, MONITORING/SYSTEM, top level, CLUSTER_TEMPLATE): the
    first place a name is found wins."""
    attrs: dict[str, list[str]] = {}

    def put(name: str, value: Any) -> None:
        if name not in attrs:
            attrs[name] = [str(value)]

    for name, value in Template.from_json(doc["template"]).items:
        if isinstance(value, str):
            attrs.setdefault(name, []).append(value)
    share = doc["share"]
    for key, value in share.items():
        put(key.upper(), value)
    for key, value in doc["datastores"].items():
        put(key.upper(), value)
    mon = doc.get("monitoring") or {}
    for section in ("capacity", "system"):
        for key, value in mon.get(section, {}).items():
            put(key.upper(), value)
    for key in ("id", "name", "state", "cluster_id", "cluster", "im_mad", "vm_mad"):
        put(key.upper(), doc[key])
    put("HOSTNAME", doc["name"])
    if cluster is not None:
        for name, value in Template.from_json(cluster["template"]).items:
            if isinstance(value, str):
                put(name, value)
    if "FREE_CPU" not in attrs:
        put("FREE_CPU", share["max_cpu"] - share["cpu_usage"])
    put("CURRENT_VMS", "")
    attrs["CURRENT_VMS"] = [str(v) for v in doc["vms"]]
    return attrs
