"""Placement of pending VMs on hosts, compatible with OpenNebula's mm_sched (v3-v6)."""

from oneserver.scheduler.expr import (
    ExprError,
    Lookup,
    compile_rank,
    compile_requirements,
    variables,
)
from oneserver.scheduler.placement import (
    HostCandidate,
    PassLimits,
    PassResult,
    PendingVM,
    Placement,
    Policy,
    schedule,
)

__all__ = [
    "ExprError",
    "HostCandidate",
    "Lookup",
    "PassLimits",
    "PassResult",
    "PendingVM",
    "Placement",
    "Policy",
    "compile_rank",
    "compile_requirements",
    "schedule",
    "variables",
]
