"""Scheduler expressions: grammar, v6 semantics and errors (opennebula-api.md section 7.3)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneserver.scheduler.expr import (
    ExprError,
    Lookup,
    compile_rank,
    compile_requirements,
    variables,
)

HOST: dict[str, list[str]] = {
    "ID": ["7"],
    "NAME": ["node-12"],
    "HYPERVISOR": ["kvm"],
    "FREE_CPU": ["350"],
    "LOAD": ["2.5"],
    "RUNNING_VMS": ["3"],
    "NEG": ["-4"],
    "EMPTY": [""],
    "TEXT": ["abc"],
    "PCI/VENDOR": ["10de", "8086"],
    "TAGS": ["ssd", "gpu", "10"],
    "CURRENT_VMS": ["4", "9"],
    "NAN": ["nan"],
}


def lookup(name: str) -> list[str]:
    return HOST.get(name, [])


def req(text: str, look: Lookup = lookup) -> bool:
    return compile_requirements(text)(look)


def rank(text: str, look: Lookup = lookup) -> float:
    return compile_rank(text)(look)


# ----------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FREE_CPU = 350", True),
        ("FREE_CPU = 350.0", True),
        ("FREE_CPU = 351", False),
        ("FREE_CPU != 351", True),
        ("FREE_CPU != 350", False),
        ("FREE_CPU > 349", True),
        ("FREE_CPU > 350", False),
        ("FREE_CPU < 351", True),
        ("FREE_CPU < 350", False),
        ("LOAD > 2.4", True),
        ("LOAD < 2.6", True),
        ("LOAD = 2.5", True),
        ("NEG = -4", True),
        ("NEG < - 3", True),
        ("NEG > -5", True),
    ],
)
def test_numeric_comparisons(text: str, expected: bool) -> None:
    assert req(text) is expected


@pytest.mark.parametrize(
    "text",
    ["TEXT = 1", "TEXT != 1", "TEXT > 1", "TEXT < 1", "EMPTY = 0", "EMPTY != 0"],
)
def test_numeric_comparison_with_non_numeric_value_is_false(text: str) -> None:
    assert req(text) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('HYPERVISOR = "kvm"', True),
        ("HYPERVISOR = kvm", True),  # a bare word is a string literal
        ('HYPERVISOR = "KVM"', False),  # case-sensitive
        ('HYPERVISOR != "kvm"', False),
        ('HYPERVISOR != "lxc"', True),
        ('NAME = "node*"', True),
        ('NAME = "node-1?"', True),
        ('NAME = "node-1[0-2]"', True),
        ('NAME = "node-1[3-9]"', False),
        ('NAME != "node*"', False),
        ('NAME = "node"', False),  # whole-value match
        ('EMPTY = ""', True),
        ('HYPERVISOR = ""', False),
        ('ID = "7"', True),  # a quoted number compares as a string
        ('ID = "0*"', False),
    ],
)
def test_string_glob_comparisons(text: str, expected: bool) -> None:
    assert req(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('PCI/VENDOR @> "8086"', True),
        ('PCI/VENDOR @> "10*"', True),
        ('PCI/VENDOR @> "1002"', False),
        ("TAGS @> gpu", True),
        ("TAGS @> 10", True),
        ("TAGS @> 11", False),
        ("FREE_CPU @> 350", True),
        ('MISSING @> "*"', False),
    ],
)
def test_contains_matches_any_value(text: str, expected: bool) -> None:
    assert req(text) is expected


def test_plain_comparison_reads_the_first_value() -> None:
    assert req('PCI/VENDOR = "10de"') is True
    assert req('PCI/VENDOR = "8086"') is False


@pytest.mark.parametrize(
    "text",
    [
        "MISSING = 1",
        "MISSING != 1",
        "MISSING > 1",
        "MISSING < 1",
        'MISSING = "*"',
        'MISSING != "x"',
    ],
)
def test_missing_variable_makes_the_comparison_false(text: str) -> None:
    assert req(text) is False
    assert req(f"!({text})") is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CURRENT_VMS = 9", True),
        ("CURRENT_VMS = 5", False),
        ("CURRENT_VMS != 5", True),
        ("CURRENT_VMS != 4", False),
        ("CURRENT_VMS @> 9", True),
    ],
)
def test_current_vms_is_a_membership_test(text: str, expected: bool) -> None:
    assert req(text) is expected


def test_current_vms_anti_affinity_holds_on_an_empty_host() -> None:
    assert req("CURRENT_VMS != 5", lambda name: []) is True
    assert req("CURRENT_VMS = 5", lambda name: []) is False


# ----------------------------------------------------------------------------- boolean ops


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ID = 7 & FREE_CPU > 0", True),
        ("ID = 7 & FREE_CPU < 0", False),
        ("ID = 8 | FREE_CPU > 0", True),
        ("ID = 8 | FREE_CPU < 0", False),
        ("!ID = 8", True),
        ("! ID = 7", False),
        ("!!ID = 7", True),
        ("(ID = 7)", True),
        ("((ID = 8) | (ID = 7)) & HYPERVISOR = kvm", True),
        # One precedence level, left-associative: a | b & c == (a | b) & c.
        ("ID = 7 | ID = 8 & ID = 9", False),
        ("ID = 7 | (ID = 8 & ID = 9)", True),
        # ! binds to the operand right after it: !a & b == (!a) & b.
        ("!ID = 8 & ID = 7", True),
        ("!(ID = 8 & ID = 7)", True),
        ("!ID = 7 | ID = 7", True),
        ("ID=7&FREE_CPU>300|ID=1", True),
        ("  \tID = 7\n", True),
    ],
)
def test_boolean_operators(text: str, expected: bool) -> None:
    assert req(text) is expected


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_requirements_are_true(text: str) -> None:
    assert req(text, lambda name: []) is True


def test_bang_equals_may_be_spaced() -> None:
    assert req("ID ! = 8") is True
    assert req("TAGS @ > gpu") is True


# ----------------------------------------------------------------------------- rank


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0.0),
        ("  ", 0.0),
        ("5", 5.0),
        ("2.5", 2.5),
        ("FREE_CPU", 350.0),
        ("- RUNNING_VMS", -3.0),
        ("-RUNNING_VMS", -3.0),
        ("--RUNNING_VMS", 3.0),
        ("RUNNING_VMS -1", 2.0),
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),  # left-associative
        ("12 / 3 / 2", 2.0),
        ("7 / 2", 3.5),
        ("- (RUNNING_VMS * 50 + FREE_CPU)", -500.0),
        ("FREE_CPU / 0", 0.0),
        ("FREE_CPU / (RUNNING_VMS - 3)", 0.0),
        ("1 / 0 + 4", 4.0),
        ("MISSING + 1", 1.0),
        ("TEXT * 2 + 1", 1.0),
        ("LOAD * 2", 5.0),
        ("NEG * -1", 4.0),
        ("PCI/VENDOR".replace("/", " / "), 0.0),  # '/' divides in a rank: 0 / 0
        ("NAN + 1", 0.0),
    ],
)
def test_rank_arithmetic(text: str, expected: float) -> None:
    value = rank(text)
    assert isinstance(value, float)
    assert value == expected


def test_rank_is_float_even_for_integers() -> None:
    assert isinstance(rank("ID"), float)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("ID =", 5),
        ("ID", 3),
        ("= 5", 1),
        ("ID = 5 &", 9),
        ("ID = 5 ID = 6", 8),
        ("(ID = 5", 8),
        ("ID = 5)", 7),
        ("ID >= 5", 5),
        ("ID <= 5", 5),
        ("ID == 5", 5),
        ('ID > "5"', 4),
        ("ID < abc", 4),
        ("ID @ 5", 6),
        ("ID ! 5", 6),
        ("ID = -abc", 7),
        ('ID = "open', 6),
        ("ID = 5 # x", 8),
        ("ID = 5.", 7),
        ("5 = ID", 1),
        ("ID = 5 ^ 2", 8),
        ("()", 2),
        ("_X = 1", 1),
    ],
)
def test_requirement_errors_name_the_column(text: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_requirements(text)
    assert info.value.pos == column - 1
    assert f"column {column}" in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("1 +", 4),
        ("(1 + 2", 7),
        ("1 2", 3),
        ("* 2", 1),
        ("ID = 1", 4),
        ('"x" + 1', 1),
        ("2 ^ 3", 3),
        ("A & B", 3),
        ("PCI/", 5),
        ("$X", 1),
    ],
)
def test_rank_errors_name_the_column(text: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_rank(text)
    assert info.value.pos == column - 1


def test_expr_error_is_a_value_error() -> None:
    assert issubclass(ExprError, ValueError)


def test_error_messages_say_what_was_found() -> None:
    with pytest.raises(ExprError, match="found end of expression"):
        compile_requirements("ID =")
    with pytest.raises(ExprError, match="unterminated string"):
        compile_requirements('NAME = "x')
    with pytest.raises(ExprError, match="needs a numeric literal"):
        compile_requirements('ID > "x"')
    with pytest.raises(ExprError, match="unexpected character '#'"):
        compile_rank("1 # 2")


# ----------------------------------------------------------------------------- variables()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", set()),
        (
            'HYPERVISOR = kvm & !(FREE_CPU > 5) | PCI/VENDOR @> "x"',
            {"HYPERVISOR", "FREE_CPU", "PCI/VENDOR"},
        ),
        ("- (RUNNING_VMS * 50 + FREE_CPU)", {"RUNNING_VMS", "FREE_CPU"}),
        ("CURRENT_VMS != 3", {"CURRENT_VMS"}),
        ("A / B", {"A", "B"}),
        ("7", set()),
    ],
)
def test_variables(text: str, names: set[str]) -> None:
    assert variables(text) == names


def test_variables_of_an_invalid_expression_raise() -> None:
    with pytest.raises(ExprError):
        variables("A = ")


# ----------------------------------------------------------------------------- properties

_NAMES = st.sampled_from(["A", "B", "C"])
_VALUES = st.lists(st.sampled_from(["0", "1", "2.5", "-3", "x", "ab", ""]), max_size=2)


@st.composite
def _env(draw: st.DrawFn) -> dict[str, list[str]]:
    return {name: draw(_VALUES) for name in ("A", "B", "C")}


@st.composite
def _comparison(draw: st.DrawFn) -> tuple[str, object]:
    name = draw(_NAMES)
    op = draw(st.sampled_from(["=", "!=", ">", "<"]))
    lit = draw(st.sampled_from(["0", "1", "2.5", "-3"]))
    return f"{name} {op} {lit}", (name, op, float(lit))


def _eval_cmp(node: tuple[str, str, float], env: dict[str, list[str]]) -> bool:
    name, op, lit = node
    vals = env.get(name, [])
    if not vals:
        return False
    try:
        value = float(vals[0])
    except ValueError:
        return False
    return {"=": value == lit, "!=": value != lit, ">": value > lit, "<": value < lit}[op]


@st.composite
def _bool_chain(draw: st.DrawFn) -> tuple[str, list[tuple[str, bool, object]]]:
    """A flat chain 'c0 op c1 op c2 ...' with optional '!' on each operand."""
    items = []
    parts = []
    for i in range(draw(st.integers(1, 5))):
        text, node = draw(_comparison())
        neg = draw(st.booleans())
        op = "" if i == 0 else draw(st.sampled_from(["&", "|"]))
        items.append((op, neg, node))
        parts.append(f"{op} {'!' if neg else ''}{text}")
    return " ".join(parts), items


@given(_bool_chain(), _env())
def test_boolean_chain_folds_left_with_one_precedence_level(
    chain: tuple[str, list[tuple[str, bool, object]]], env: dict[str, list[str]]
) -> None:
    text, items = chain
    expected = False
    for op, neg, node in items:
        value = _eval_cmp(node, env) != neg  # type: ignore[arg-type]
        expected = value if not op else (expected and value if op == "&" else expected or value)
    assert compile_requirements(text)(lambda n: env.get(n, [])) is expected


_Tree = object  # int literal, variable name, ("neg", t) or (op, t, t)

_TREES = st.recursive(
    st.integers(0, 50) | st.sampled_from(["A", "B", "C"]),
    lambda inner: (
        st.tuples(st.sampled_from("+-*/"), inner, inner) | st.tuples(st.just("neg"), inner)
    ),
    max_leaves=8,
)


def _render(tree: _Tree) -> str:
    if isinstance(tree, tuple):
        if tree[0] == "neg":
            return f"-{_render(tree[1])}"
        return f"({_render(tree[1])} {tree[0]} {_render(tree[2])})"
    return str(tree)


def _evaluate(tree: _Tree, env: dict[str, list[str]]) -> float:
    if isinstance(tree, int):
        return float(tree)
    if isinstance(tree, str):
        vals = env.get(tree, [])
        try:
            return float(vals[0]) if vals else 0.0
        except ValueError:
            return 0.0
    assert isinstance(tree, tuple)
    if tree[0] == "neg":
        return -_evaluate(tree[1], env)
    a, b = _evaluate(tree[1], env), _evaluate(tree[2], env)
    if tree[0] == "/":
        return a / b if b else 0.0
    return {"+": a + b, "-": a - b, "*": a * b}[tree[0]]


@given(_TREES, _env())
def test_rank_matches_a_reference_evaluator(tree: _Tree, env: dict[str, list[str]]) -> None:
    expected = _evaluate(tree, env)
    got = compile_rank(_render(tree))(lambda n: env.get(n, []))
    assert got == pytest.approx(expected if math.isfinite(expected) else 0.0)
