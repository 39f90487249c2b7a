"""What a caller's expression or a record's numbers can do to a scheduling pass: at most cost
its own VMs a message."""

from __future__ import annotations

import pytest

from oneserver.core.monitor import _reserved
from oneserver.errors import OneError
from oneserver.model.capacity import vm_capacity, vm_size
from oneserver.scheduler.expr import MAX_DEPTH, ExprError, compile_rank, compile_requirements
from oneserver.scheduler.placement import (
    PREFIX,
    HostCandidate,
    PassLimits,
    PendingVM,
    Policy,
    schedule,
)
from oneserver.template import Template


def lookup(name: str) -> list[str]:
    return {"ID": ["7"], "FREE_CPU": ["100"]}.get(name, [])


def test_long_chains_evaluate_without_deep_calls() -> None:
    terms = 20_000  # far more than Python's recursion limit
    assert compile_requirements(" & ".join(["ID = 7"] * terms))(lookup) is True
    assert compile_requirements(" & ".join(["ID = 7"] * terms) + " & ID = 8")(lookup) is False
    assert compile_requirements(" | ".join(["ID = 8"] * terms) + " | ID = 7")(lookup) is True
    # One precedence level, left to right, as before: (false | true) & false.
    assert compile_requirements("ID = 8 | ID = 7 & ID = 9 & ID = 7")(lookup) is False
    assert compile_rank(" + ".join(["FREE_CPU"] * terms))(lookup) == 100.0 * terms
    assert compile_rank(" - ".join(["FREE_CPU"] * 3))(lookup) == -100.0
    assert compile_rank("2 * 3 + FREE_CPU / 4 - 1")(lookup) == 30.0
    assert compile_rank("FREE_CPU * 2 * 3 / 4")(lookup) == 150.0


@pytest.mark.parametrize("text", [
    "(" * (MAX_DEPTH + 1) + "ID = 7" + ")" * (MAX_DEPTH + 1),
    "!" * (MAX_DEPTH + 1) + "ID = 7",
    "(" * 50_000,
])
def test_deep_requirements_are_refused(text: str) -> None:
    with pytest.raises(ExprError, match="nested deeper than"):
        compile_requirements(text)


def test_nesting_up_to_the_limit() -> None:
    assert compile_requirements("(" * MAX_DEPTH + "ID = 7" + ")" * MAX_DEPTH)(lookup) is True
    assert compile_rank("-" * MAX_DEPTH + "FREE_CPU")(lookup) == 100.0
    with pytest.raises(ExprError, match="nested deeper than"):
        compile_rank("-" * (MAX_DEPTH + 1) + "FREE_CPU")


def _host(hid: int, attrs: dict[str, list]) -> HostCandidate:
    return HostCandidate(hid, f"h{hid}", 0, 800, 0, 1 << 24, 0, 0, attrs)


def test_a_failing_expression_costs_only_its_vms() -> None:
    # An attribute value no expression can read (not text): evaluating it raises.
    hosts = [_host(0, {"ODD": [None]}), _host(1, {})]
    vms = [PendingVM(1, 0.1, 16, requirements="ODD = 1"), PendingVM(2, 0.1, 16),
           PendingVM(3, 0.1, 16, requirements="ODD = 1")]
    result = schedule(vms, hosts, Policy(), PassLimits(max_dispatch=10, max_host=10))
    assert [p.vm_id for p in result.placements] == [2]
    assert result.messages[1].startswith(PREFIX + "its expressions cannot be evaluated")
    assert result.messages[3] == result.messages[1]


def _vm(**attrs: str) -> dict:
    return {"id": 5, "template": Template(list(attrs.items())).to_json()}


@pytest.mark.parametrize(("attrs", "word"), [
    ({"CPU": "nan", "MEMORY": "1"}, "CPU"), ({"CPU": "inf", "MEMORY": "1"}, "CPU"),
    ({"CPU": "-1", "MEMORY": "1"}, "CPU"), ({"CPU": "1", "MEMORY": "1.5"}, "MEMORY"),
    ({"CPU": "1", "MEMORY": "1e400"}, "MEMORY"),
])
def test_unreadable_sizes_are_refused(attrs: dict[str, str], word: str) -> None:
    with pytest.raises(OneError, match=f"{word} attribute must be a positive"):
        vm_size(_vm(**attrs))


def test_sizes() -> None:
    assert vm_size(_vm(CPU="0.5", MEMORY="64")) == (0.5, 64)
    assert vm_capacity(_vm(CPU="0.25", MEMORY="64")) == (25, 65536)


@pytest.mark.parametrize(("value", "reserved"), [
    ("", 0), ("100", 100), ("50%", 4), ("-100", -100), ("200%", 14), (" 10 ", 10),
    ("1.5", 0), ("nan", 0), ("inf", 0), ("1e400", 0), ("inf%", 0), ("10x", 0),
])
def test_reserved_capacity_as_host_share_reads_it(value: str, reserved: int) -> None:
    # Of a total of 7: oned's MAX = 7 * (1 - 50 / 100.0) = 3.5 -> 3, so 4 are reserved.
    assert _reserved(value, 7) == reserved
