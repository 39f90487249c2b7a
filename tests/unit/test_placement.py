"""One scheduling pass (opennebula-api.md section 7.4): examples, messages and properties."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from oneserver.scheduler.expr import compile_rank, compile_requirements
from oneserver.scheduler.placement import (
    NO_HOSTS,
    NOT_CONSIDERED,
    HostCandidate,
    PassLimits,
    PassResult,
    PendingVM,
    Policy,
    policy_rank,
    schedule,
)

GB = 1024 * 1024  # KB


def host(hid: int, **kw: object) -> HostCandidate:
    fields: dict[str, object] = {
        "id": hid,
        "name": f"h{hid}",
        "cluster_id": 0,
        "max_cpu": 800,
        "cpu_usage": 0,
        "max_mem": 16 * GB,
        "mem_usage": 0,
        "running_vms": 0,
        "attrs": {},
    }
    fields.update(kw)
    return HostCandidate(**fields)  # type: ignore[arg-type]


def vm(vid: int, **kw: object) -> PendingVM:
    fields: dict[str, object] = {"id": vid, "cpu": 1.0, "memory_mb": 1024}
    fields.update(kw)
    return PendingVM(**fields)  # type: ignore[arg-type]


def placed(result: PassResult) -> dict[int, int]:
    return {p.vm_id: p.host_id for p in result.placements}


UNLIMITED = PassLimits(max_vm=0, max_dispatch=10_000, max_host=10_000)


# ----------------------------------------------------------------------------- examples


def test_striping_prefers_the_host_with_fewest_vms() -> None:
    hosts = [host(1, running_vms=5), host(2, running_vms=1), host(3, running_vms=3)]
    assert placed(schedule([vm(1)], hosts, Policy(1), PassLimits())) == {1: 2}


def test_packing_prefers_the_host_with_most_vms() -> None:
    hosts = [host(1, running_vms=5), host(2, running_vms=1), host(3, running_vms=7)]
    assert placed(schedule([vm(1)], hosts, Policy(0), PassLimits())) == {1: 3}


def test_load_aware_and_fixed_policies() -> None:
    hosts = [
        host(1, attrs={"FREE_CPU": ["100"], "PRIORITY": ["9"]}),
        host(2, attrs={"FREE_CPU": ["700"], "PRIORITY": ["1"]}),
    ]
    assert placed(schedule([vm(1)], hosts, Policy(2), PassLimits())) == {1: 2}
    assert placed(schedule([vm(1)], hosts, Policy(4), PassLimits())) == {1: 1}


def test_custom_policy_rank_and_vm_rank_override() -> None:
    hosts = [host(1, attrs={"SCORE": ["3"]}), host(2, attrs={"SCORE": ["8"]})]
    assert placed(schedule([vm(1)], hosts, Policy(3, "SCORE"), PassLimits())) == {1: 2}
    assert placed(schedule([vm(1)], hosts, Policy(3, "- SCORE"), PassLimits())) == {1: 1}
    assert placed(schedule([vm(1, rank="SCORE")], hosts, Policy(3, "-SCORE"), PassLimits())) == {
        1: 2
    }


def test_policy_rank_texts() -> None:
    assert [policy_rank(Policy(p)) for p in (0, 1, 2, 4)] == [
        "RUNNING_VMS",
        "- RUNNING_VMS",
        "FREE_CPU",
        "PRIORITY",
    ]
    assert policy_rank(Policy(3, "FREE_CPU * 2")) == "FREE_CPU * 2"
    assert policy_rank(Policy(9)) == "- RUNNING_VMS"


def test_rank_ties_go_to_the_lower_host_id_and_ranks_are_truncated() -> None:
    hosts = [host(5, attrs={"R": ["2.9"]}), host(3, attrs={"R": ["2.1"]})]
    # Both truncate to 2, so the lower id wins even though host 5 ranks higher as a float.
    assert placed(schedule([vm(1, rank="R")], hosts, Policy(), PassLimits())) == {1: 3}


def test_broken_default_rank_ranks_all_hosts_equal() -> None:
    hosts = [host(4), host(2)]
    assert placed(schedule([vm(1)], hosts, Policy(3, "1 +"), PassLimits())) == {1: 2}


def test_striping_spreads_within_one_pass() -> None:
    hosts = [host(1), host(2), host(3)]
    result = schedule([vm(i) for i in range(6)], hosts, Policy(1), UNLIMITED)
    assert Counter(placed(result).values()) == {1: 2, 2: 2, 3: 2}


def test_packing_fills_one_host_first() -> None:
    hosts = [host(1), host(2)]
    vms = [vm(i, cpu=2.0) for i in range(5)]  # 4 fit on an 800-CPU host
    result = schedule(vms, hosts, Policy(0), UNLIMITED)
    assert Counter(placed(result).values()) == {1: 4, 2: 1}


def test_priority_then_id_order() -> None:
    vms = [vm(1), vm(2, priority=5), vm(3, priority=5), vm(4, priority=-1)]
    result = schedule(vms, [host(1)], Policy(), UNLIMITED)
    assert [p.vm_id for p in result.placements] == [2, 3, 1, 4]


def test_capacity_is_rechecked_with_the_vms_already_placed() -> None:
    hosts = [host(1, max_cpu=300)]
    result = schedule([vm(i) for i in range(5)], hosts, Policy(), UNLIMITED)
    assert placed(result) == {0: 1, 1: 1, 2: 1}
    assert result.messages[3] == "Cannot dispatch VM: 1 host: not enough CPU; 0 left"


def test_fractional_cpu_is_rounded_not_truncated() -> None:
    # 0.29 * 100 == 28.999999999999996: it must still need 29.
    assert placed(schedule([vm(1, cpu=0.29)], [host(1, max_cpu=28)], Policy(), PassLimits())) == {}
    assert placed(schedule([vm(1, cpu=0.29)], [host(1, max_cpu=29)], Policy(), PassLimits())) == {
        1: 1
    }


def test_filters_and_message_counts() -> None:
    hosts = [
        host(1),  # excluded
        host(2, cluster_id=7),  # wrong cluster
        host(3, cpu_usage=750),  # not enough CPU
        host(4, mem_usage=16 * GB - 10),  # not enough memory
        host(5, attrs={"HYPERVISOR": ["lxc"]}),  # requirements false
        host(6, attrs={"HYPERVISOR": ["lxc"]}),
    ]
    pending = vm(9, requirements="HYPERVISOR = kvm", cluster_ids={0}, excluded_hosts={1})
    result = schedule([pending], hosts, Policy(), PassLimits())
    assert result.placements == []
    assert result.messages == {
        9: "Cannot dispatch VM: 1 host: excluded (deploy back-off, current host, or the owner "
        "may not use it); "
        "1 host: not in the VM's clusters; 1 host: not enough CPU; 1 host: not enough memory; "
        "2 hosts: SCHED_REQUIREMENTS false; 0 left"
    }


def test_max_host_message() -> None:
    result = schedule([vm(1), vm(2), vm(3)], [host(1), host(2)], Policy(), PassLimits())
    assert len(result.placements) == 2
    assert result.messages == {3: "Cannot dispatch VM: 2 hosts: MAX_HOST reached this pass; 0 left"}


def test_max_dispatch_message() -> None:
    limits = PassLimits(max_dispatch=1, max_host=5)
    result = schedule([vm(1), vm(2)], [host(1), host(2, cpu_usage=800)], Policy(), limits)
    assert placed(result) == {1: 1}
    assert result.messages == {
        2: "Cannot dispatch VM: MAX_DISPATCH reached (1 VMs dispatched this pass)"
    }


def test_max_vm_limits_the_vms_considered() -> None:
    result = schedule([vm(1), vm(2, priority=1)], [host(1)], Policy(), PassLimits(max_vm=1))
    assert placed(result) == {2: 1}
    assert result.messages == {1: NOT_CONSIDERED}


def test_no_hosts() -> None:
    result = schedule([vm(1), vm(2)], [], Policy(), PassLimits())
    assert result.messages == {1: NO_HOSTS, 2: NO_HOSTS}
    assert NO_HOSTS == "Cannot dispatch VM: No hosts enabled to run VMs"


def test_bad_expressions_skip_the_vm_only() -> None:
    vms = [vm(1, requirements="ID = "), vm(2, rank="1 +"), vm(3)]
    result = schedule(vms, [host(1)], Policy(), UNLIMITED)
    assert placed(result) == {3: 1}
    assert result.messages[1].startswith("SCHED_REQUIREMENTS: ")
    assert "column 5" in result.messages[1]
    assert result.messages[2].startswith("SCHED_RANK: ")


def test_excluded_host_is_avoided_for_a_resched() -> None:
    hosts = [host(1), host(2, running_vms=4)]
    result = schedule([vm(1, excluded_hosts={1})], hosts, Policy(1), PassLimits())
    assert placed(result) == {1: 2}


def test_requirements_on_vms_placed_in_the_same_pass() -> None:
    # RUNNING_VMS and CURRENT_VMS see the VMs dispatched earlier in the pass.
    hosts = [host(1), host(2, running_vms=1)]
    vms = [vm(1, requirements="RUNNING_VMS < 1"), vm(2, requirements="RUNNING_VMS < 1")]
    result = schedule(vms, hosts, Policy(), UNLIMITED)
    assert placed(result) == {1: 1}
    assert result.messages[2] == ("Cannot dispatch VM: 2 hosts: SCHED_REQUIREMENTS false; 0 left")
    anti = [vm(1), vm(2, requirements="CURRENT_VMS != 1")]
    assert placed(schedule(anti, [host(1), host(2)], Policy(0), UNLIMITED)) == {1: 1, 2: 2}
    affinity = [vm(1), vm(2, requirements="CURRENT_VMS = 1")]
    assert placed(schedule(affinity, [host(1), host(2)], Policy(1), UNLIMITED)) == {1: 1, 2: 1}


def test_dynamic_requirement_that_becomes_true_later() -> None:
    hosts = [host(1)]
    vms = [vm(1, requirements="RUNNING_VMS > 0"), vm(2), vm(3, requirements="RUNNING_VMS > 0")]
    result = schedule(vms, hosts, Policy(), UNLIMITED)
    assert placed(result) == {2: 1, 3: 1}
    assert result.messages[1] == "Cannot dispatch VM: 1 host: SCHED_REQUIREMENTS false; 0 left"


def test_host_variables() -> None:
    hosts = [host(1, name="alpha", cluster_id=3, max_mem=8 * GB), host(2, name="beta")]
    cases = {
        'NAME = "b*"': 2,
        "ID = 1": 1,
        "CLUSTER_ID = 3": 1,
        f"MAX_MEM = {8 * GB}": 1,
        "MAX_CPU > 799 & CPU_USAGE = 0 & MEM_USAGE < 1": 1,
    }
    for text, expected in cases.items():
        assert placed(schedule([vm(1, requirements=text)], hosts, Policy(), UNLIMITED)) == {
            1: expected
        }, text


def test_template_attrs_win_over_top_level_fields_but_not_host_share() -> None:
    hosts = [host(1, attrs={"NAME": ["custom"], "RUNNING_VMS": ["99"]})]
    assert placed(schedule([vm(1, requirements="NAME = custom")], hosts, Policy(), UNLIMITED))
    assert placed(schedule([vm(1, requirements="RUNNING_VMS = 0")], hosts, Policy(), UNLIMITED))


def test_inputs_are_not_mutated() -> None:
    attrs = {"CURRENT_VMS": ["4"]}
    hosts = [host(1, attrs=attrs)]
    before = repr(hosts)
    vms = [vm(1), vm(2)]
    schedule(vms, hosts, Policy(), UNLIMITED)
    assert repr(hosts) == before
    assert attrs == {"CURRENT_VMS": ["4"]}


# ----------------------------------------------------------------------------- reference model

STATIC_REQS = ["", "", "HYPERVISOR = kvm", "!(SSD = 1) | FREE_CPU > 300", "FREE_CPU > 100"]
DYNAMIC_REQS = ["RUNNING_VMS < 2", "CURRENT_VMS != 1", "CPU_USAGE < 400 | HYPERVISOR = lxc"]
RANKS = ["", "", "FREE_CPU", "- RUNNING_VMS * 10 + FREE_CPU / 100", "RUNNING_VMS", "MEM_USAGE"]


@st.composite
def hosts_st(draw: st.DrawFn, max_hosts: int = 8) -> list[HostCandidate]:
    n = draw(st.integers(0, max_hosts))
    ids = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True))
    hosts = []
    for hid in ids:
        max_cpu = draw(st.sampled_from([100, 200, 400, 800]))
        max_mem = draw(st.sampled_from([1, 2, 4])) * GB
        hosts.append(
            host(
                hid,
                cluster_id=draw(st.integers(0, 2)),
                max_cpu=max_cpu,
                # Mostly roomy hosts, so that passes place several VMs per host.
                cpu_usage=draw(st.sampled_from([0, 0, 50, max_cpu // 2, max_cpu])),
                max_mem=max_mem,
                mem_usage=draw(st.sampled_from([0, 0, GB // 2, max_mem])),
                running_vms=draw(st.integers(0, 4)),
                attrs={
                    "HYPERVISOR": [draw(st.sampled_from(["kvm", "lxc"]))],
                    "FREE_CPU": [str(draw(st.integers(0, 800)))],
                    "SSD": [draw(st.sampled_from(["0", "1"]))],
                    "PRIORITY": [str(draw(st.integers(0, 3)))],
                },
            )
        )
    return hosts


@st.composite
def vms_st(
    draw: st.DrawFn, host_ids: list[int], reqs: list[str], max_vms: int = 14
) -> list[PendingVM]:
    # A few shapes shared by many VMs, as in real clouds, so that VMs share a class.
    maybe_hosts = st.sampled_from([*host_ids, 999])  # 999: an id that is not a host
    shape = st.fixed_dictionaries(
        {
            "cpu": st.sampled_from([0.5, 1.0, 2.0]),
            "memory_mb": st.sampled_from([256, 512, 1024]),
            "requirements": st.sampled_from(reqs),
            "rank": st.sampled_from(RANKS),
            "cluster_ids": st.sampled_from([None, None, {0, 1}, {2}, set()]),
            "excluded_hosts": st.sets(maybe_hosts, max_size=2),
        }
    )
    shapes = draw(st.lists(shape, min_size=1, max_size=3))
    n = draw(st.integers(1, max_vms))
    ids = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n, unique=True))
    return [
        vm(vid, priority=draw(st.integers(0, 2)), **draw(st.sampled_from(shapes))) for vid in ids
    ]


limits_st = st.builds(
    PassLimits,
    max_vm=st.sampled_from([0, 0, 3, 10]),
    max_dispatch=st.sampled_from([0, 2, 5, 30, 30]),
    max_host=st.sampled_from([0, 1, 2, 4, 10, 10]),
)
policy_st = st.builds(Policy, policy=st.integers(0, 4), rank=st.sampled_from(RANKS))


@st.composite
def pass_st(draw: st.DrawFn, reqs: list[str] | None = None) -> tuple:
    hosts = draw(hosts_st())
    vms = draw(vms_st([h.id for h in hosts], reqs or STATIC_REQS + DYNAMIC_REQS))
    return vms, hosts, draw(policy_st), draw(limits_st)


def reference(
    vms: list[PendingVM], hosts: list[HostCandidate], policy: Policy, limits: PassLimits
) -> list[tuple[int, int]]:
    """Naive pass: every VM re-filters and re-ranks every host with the current state."""
    state = {
        h.id: {"cpu": h.cpu_usage, "mem": h.mem_usage, "run": h.running_vms, "n": 0, "cur": []}
        for h in hosts
    }

    def lookup(h: HostCandidate) -> dict[str, list[str]]:
        s = state[h.id]
        env = {"ID": [str(h.id)], "NAME": [h.name], "CLUSTER_ID": [str(h.cluster_id)]}
        env.update(h.attrs)
        env.update(
            MAX_CPU=[str(h.max_cpu)],
            MAX_MEM=[str(h.max_mem)],
            CPU_USAGE=[str(s["cpu"])],
            MEM_USAGE=[str(s["mem"])],
            RUNNING_VMS=[str(s["run"])],
            CURRENT_VMS=[*h.attrs.get("CURRENT_VMS", []), *s["cur"]],
        )
        return env

    order = sorted(vms, key=lambda v: (-v.priority, v.id))
    if limits.max_vm > 0:
        order = order[: limits.max_vm]
    out: list[tuple[int, int]] = []
    for v in order:
        if len(out) >= limits.max_dispatch:
            break
        req = compile_requirements(v.requirements)
        rank = compile_rank(v.rank or policy_rank(policy))
        cpu, mem = round(v.cpu * 100), v.memory_mb * 1024
        best: tuple[int, int] | None = None
        for h in hosts:
            s = state[h.id]
            env = lookup(h)
            ok = (
                h.id not in v.excluded_hosts
                and (v.cluster_ids is None or h.cluster_id in v.cluster_ids)
                and h.max_cpu - s["cpu"] >= cpu
                and h.max_mem - s["mem"] >= mem
                and req(lambda n, env=env: env.get(n, []))
                and s["n"] < limits.max_host
            )
            if ok:
                key = (-math.trunc(rank(lambda n, env=env: env.get(n, []))), h.id)
                best = key if best is None or key < best else best
        if best is not None:
            s = state[best[1]]
            s["cpu"] += cpu
            s["mem"] += mem
            s["run"] += 1
            s["n"] += 1
            s["cur"].append(str(v.id))
            out.append((v.id, best[1]))
    return out


@settings(max_examples=400, deadline=None)
@given(pass_st())
def test_matches_the_naive_reference(case: tuple) -> None:
    vms, hosts, policy, limits = case
    result = schedule(vms, hosts, policy, limits)
    assert [(p.vm_id, p.host_id) for p in result.placements] == reference(
        vms, hosts, policy, limits
    )


# ----------------------------------------------------------------------------- invariants


@settings(max_examples=300, deadline=None)
@given(pass_st())
def test_pass_invariants(case: tuple) -> None:
    vms, hosts, policy, limits = case
    result = schedule(vms, hosts, policy, limits)
    by_vm = {v.id: v for v in vms}
    by_host = {h.id: h for h in hosts}
    pairs = placed(result)

    # Every VM is either placed or explained, never both.
    assert len(pairs) == len(result.placements)
    assert set(pairs) | set(result.messages) == set(by_vm)
    assert not set(pairs) & set(result.messages)

    # MAX_DISPATCH and MAX_HOST.
    assert len(result.placements) <= limits.max_dispatch
    per_host = Counter(pairs.values())
    assert all(n <= limits.max_host for n in per_host.values())

    # Never over capacity.
    for hid, h in by_host.items():
        vs = [by_vm[v] for v, hh in pairs.items() if hh == hid]
        assert sum(round(v.cpu * 100) for v in vs) <= h.max_cpu - h.cpu_usage
        assert sum(v.memory_mb * 1024 for v in vs) <= h.max_mem - h.mem_usage

    for vid, hid in pairs.items():
        v, h = by_vm[vid], by_host[hid]
        assert hid not in v.excluded_hosts
        assert v.cluster_ids is None or h.cluster_id in v.cluster_ids
        if v.requirements in STATIC_REQS:
            assert compile_requirements(v.requirements)(lambda n, h=h: h.attrs.get(n, []))

    # Dispatch follows USER_PRIORITY desc, then VM id.
    keys = [(-by_vm[p.vm_id].priority, p.vm_id) for p in result.placements]
    assert keys == sorted(keys)

    # Within MAX_VM, a VM identical to a placed one that comes earlier was placed too.
    order = sorted(vms, key=lambda v: (-v.priority, v.id))
    seen_unplaced: set[tuple] = set()
    for v in order:
        shape = (
            v.cpu,
            v.memory_mb,
            v.requirements,
            v.rank,
            str(v.cluster_ids),
            str(sorted(v.excluded_hosts)),
        )
        if v.id in pairs:
            assert shape not in seen_unplaced or v.requirements in DYNAMIC_REQS
        elif not result.messages[v.id].startswith("Cannot dispatch VM: MAX_DISPATCH"):
            seen_unplaced.add(shape)


@settings(max_examples=200, deadline=None)
@given(
    n_hosts=st.integers(1, 6),
    n_vms=st.integers(0, 30),
    fit=st.integers(1, 5),
    running=st.integers(0, 3),
)
def test_packing_uses_the_fewest_hosts(n_hosts: int, n_vms: int, fit: int, running: int) -> None:
    hosts = [host(i, max_cpu=100 * fit, running_vms=running) for i in range(n_hosts)]
    vms = [vm(i) for i in range(n_vms)]
    result = schedule(vms, hosts, Policy(0), UNLIMITED)
    n_placed = len(result.placements)
    assert n_placed == min(n_vms, n_hosts * fit)
    assert len(set(placed(result).values())) == math.ceil(n_placed / fit)


@settings(max_examples=200, deadline=None)
@given(
    n_hosts=st.integers(1, 6),
    n_vms=st.integers(0, 30),
    max_host=st.integers(1, 10),
    running=st.integers(0, 3),
    reqs=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_striping_spreads_evenly(
    n_hosts: int, n_vms: int, max_host: int, running: int, reqs: list[bool]
) -> None:
    hosts = [
        host(i, running_vms=running, attrs={"OK": ["1" if reqs[i] else "0"]})
        for i in range(n_hosts)
    ]
    vms = [vm(i, cpu=0.01, memory_mb=1, requirements="OK = 1") for i in range(n_vms)]
    limits = PassLimits(max_vm=0, max_dispatch=10_000, max_host=max_host)
    result = schedule(vms, hosts, Policy(1), limits)
    eligible = [h.id for h in hosts if reqs[h.id]]
    counts = Counter(placed(result).values())
    assert set(counts) <= set(eligible)
    assert len(result.placements) == min(n_vms, len(eligible) * max_host)
    if eligible:
        spread = [counts.get(hid, 0) for hid in eligible]
        assert max(spread) - min(spread) <= 1


@settings(max_examples=100, deadline=None)
@given(pass_st(reqs=STATIC_REQS))
def test_identical_vms_share_work_without_changing_results(case: tuple) -> None:
    vms, hosts, policy, limits = case
    # Renumbering the VMs (keeping the order) must not change where each one goes.
    order = sorted(vms, key=lambda v: (-v.priority, v.id))
    renumbered = [replace(v, id=1000 + i, priority=0) for i, v in enumerate(order)]
    a = [p.host_id for p in schedule(vms, hosts, policy, limits).placements]
    b = [p.host_id for p in schedule(renumbered, hosts, policy, limits).placements]
    assert a == b
