"""The scheduler job: read pending VMs and usable hosts, run one placement pass, deploy through
the same path as ``one.vm.deploy`` (capacity re-checked and reserved in the transaction that
changes the VM), and tell every VM that stays pending why."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from oneserver import capabilities, db, store
from oneserver.acl import MANAGE, Caller, Rule, Target, allowed
from oneserver.api.vm import migrate_to, place
from oneserver.capacity import fits
from oneserver.driver_contract import Capability
from oneserver.scheduler.placement import (
    DISPATCH_LIMITED,
    NOT_CONSIDERED,
    HostCandidate,
    PassLimits,
    PendingVM,
    Policy,
    schedule,
)
from oneserver.template import Template
from oneserver.vmstate import HostState, Lcm, VmState

log = logging.getLogger("oneserver.scheduler")
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
            try:
                return float(t.get_str(name, str(default)))
            except ValueError:
                return default

        sched = (t.vectors("DEFAULT_SCHED") or [{}])[0]
        return cls(
            interval=num("SCHED_INTERVAL", 15), max_vm=int(num("MAX_VM", 5000)),
            max_dispatch=int(num("MAX_DISPATCH", 30)), max_host=int(num("MAX_HOST", 1)),
            live_rescheds=int(num("LIVE_RESCHEDS", 0)),
            policy=int(sched.get("POLICY", "1") or 1), rank=sched.get("RANK", ""),
            wake_on_events=t.get_str("WAKE_ON_EVENTS", "YES").upper() != "NO",
            backoff=num("DEPLOY_BACKOFF", 60),
        )


@dataclass
class Scheduler:
    conf: SchedConf

    def run_pass(self) -> int:
        """One pass; returns the number of VMs dispatched."""
        if not self._pending():
            return 0  # the common case on a wake-up: don't read the pools at all
        hosts, _ = self._hosts()
        vms, vm_docs = self._vms(hosts)
        if not vms:
            return 0
        result = schedule(vms, hosts, Policy(self.conf.policy, self.conf.rank),
                          PassLimits(self.conf.max_vm, self.conf.max_dispatch,
                                     self.conf.max_host))
        placed = 0
        for p in result.placements:
            if self._dispatch(p.vm_id, p.host_id):
                placed += 1
        self._write_messages(result.messages, vm_docs)
        return placed

    # -------------------------------------------------------------- reading the pools

    def _hosts(self) -> tuple[list[HostCandidate], dict[int, Any]]:
        clusters = {r.oid: r.doc for r in db.Cluster.select(db.Cluster.oid, db.Cluster.doc)}
        out, docs = [], {}
        rows = db.Host.select(db.Host.doc).where(db.Host.state == HostState.MONITORED)
        for (doc,) in rows.tuples():
            share = doc["share"]
            out.append(HostCandidate(
                id=doc["id"], name=doc["name"], cluster_id=doc["cluster_id"],
                max_cpu=share["max_cpu"], cpu_usage=share["cpu_usage"],
                max_mem=share["max_mem"], mem_usage=share["mem_usage"],
                running_vms=share["running_vms"],
                attrs=host_attrs(doc, clusters.get(doc["cluster_id"])),
            ))
            docs[doc["id"]] = doc
        return out, docs

    def _vms(self, hosts: list[HostCandidate]) -> tuple[list[PendingVM], dict[int, Any]]:
        now = time.time()
        rights = _HostRights(hosts)
        q = db.VM.select(db.VM.doc).where(
            (db.VM.state == VmState.PENDING)
            | ((db.VM.resched == 1) & ((db.VM.state == VmState.POWEROFF)
                                       | (db.VM.state == VmState.ACTIVE)))
        ).order_by(db.VM.oid)
        vms, docs = [], {}
        for (doc,) in q.tuples():
            if doc["state"] == VmState.ACTIVE and doc["lcm_state"] not in (Lcm.RUNNING,
                                                                           Lcm.UNKNOWN):
                continue
            if doc["state"] != VmState.PENDING and not self._can_move(doc):
                continue
            t = Template.from_json(doc["template"])
            u = Template.from_json(doc["user_template"])
            auto = t.get_str("AUTOMATIC_REQUIREMENTS")
            user_req = u.get_str("SCHED_REQUIREMENTS")
            req = f"{auto} & ( {user_req} )" if auto and user_req else auto or user_req
            # Hosts where a deploy of this VM failed recently (lifecycle.requeue).
            excluded = {int(h) for h, until in doc.get("sched_backoff", {}).items()
                        if until > now}
            if doc["state"] != VmState.PENDING and doc["history"]:
                excluded.add(doc["history"][-1]["hid"])  # a resched VM must move
            excluded |= rights.forbidden(doc)
            try:
                priority = int(u.get_str("USER_PRIORITY", "0") or 0)
            except ValueError:
                priority = 0
            vms.append(PendingVM(
                id=doc["id"], cpu=float(t.get_str("CPU", "0") or 0),
                memory_mb=int(float(t.get_str("MEMORY", "0") or 0)), requirements=req,
                rank=u.get_str("SCHED_RANK"), priority=priority, excluded_hosts=excluded,
            ))
            docs[doc["id"]] = doc
        return vms, docs

    @staticmethod
    def _pending() -> bool:
        return db.VM.select(db.VM.oid).where(
            (db.VM.state == VmState.PENDING) | (db.VM.resched == 1)).exists()

    @staticmethod
    def _can_move(doc: dict[str, Any]) -> bool:
        """A resched VM moves by cold migration only where its driver can migrate (the LXC
        driver can't carry a container's disk to another host yet: it stays where it is)."""
        vm_mad = doc["history"][-1]["vm_mad"] if doc["history"] else ""
        return Capability.MIGRATE_COLD in capabilities.of(vm_mad)

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
            old = Template.from_json(docs[vm_id]["user_template"]).get_str("SCHED_MESSAGE")
            if old.partition(" : ")[2] != message:
                todo.append((vm_id, message))
        for i in range(0, len(todo), MESSAGE_BATCH):
            with db.write_transaction():
                for vm_id, message in todo[i:i + MESSAGE_BATCH]:
                    vm = store.load("vm", vm_id, for_update=True)
                    if vm["state"] != VmState.PENDING and not vm["resched"]:
                        continue
                    u = Template.from_json(vm["user_template"])
                    u.set("SCHED_MESSAGE", f"{stamp} : {message}")
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
    return store.load("datastore", 0)["tm_mad"]


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
