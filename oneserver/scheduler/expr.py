"""OpenNebula scheduler expressions: SCHED_REQUIREMENTS (boolean) and SCHED_RANK (arithmetic).

Reference: opennebula-api.md section 7.3 (oned v6 ``expr_parser.l`` / ``expr_bool.y`` /
``expr_arith.y``).  The text is lexed and parsed once by a hand-written recursive-descent parser
into a tree of Python closures; the scheduler then calls the closure once per host, so all the
decisions that do not depend on the host (operator, literal type, glob compilation) are taken at
compile time.

Semantics kept from oned v6:

* a comparison is always ``VARIABLE op LITERAL``; ``=``, ``!=``, ``>``, ``<`` read the first value
  of the variable, ``@>`` is true when any of its values matches;
* a missing variable makes its comparison false, ``!=`` included;
* a numeric literal compares numerically, and a value that is not a number makes it false;
* a string literal (quoted, or a bare word) is a shell glob (``fnmatchcase``);
* ``!``, ``&`` and ``|`` share one precedence level and associate to the left, so ``!`` applies to
  the operand right after it and ``a | b & c`` means ``(a | b) & c``;
* ``CURRENT_VMS = <id>`` is a membership test (oned's ``HostXML::search`` pseudo-variable);
* in a rank, a missing or non-numeric variable reads 0 and a division by zero gives 0.

Deliberate leniencies: ``-`` is always lexed as an operator (oned's lexer glues it to a following
number, which makes ``X -1`` a syntax error there) and requirement variable names may contain
``/`` (``PCI/VENDOR @> "10de"``) because ``/`` is not an operator in boolean expressions.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "ExprError",
    "Lookup",
    "compile_rank",
    "compile_requirements",
    "variables",
]

Lookup = Callable[[str], list[str]]
BoolFn = Callable[[Lookup], bool]
NumFn = Callable[[Lookup], float]

_OPERATORS = "@!&|=><()*+/-^"
MAX_DEPTH = 100  # nesting levels in one expression
_GLOB_CHARS = frozenset("*?[")
_CURRENT_VMS = "CURRENT_VMS"


class ExprError(ValueError):
    """A requirement or rank expression that cannot be compiled."""

    def __init__(self, message: str, text: str, pos: int) -> None:
        self.pos = pos
        self.text = text
        super().__init__(f"{message} at column {pos + 1} of {text!r}")


# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "name", "str", "num", "op" or "eof"
    value: str
    pos: int


def _is_name_start(ch: str, slash: bool) -> bool:
    return ch.isascii() and (ch.isalpha() or (slash and ch == "/"))


def _is_name_char(ch: str, slash: bool) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_" or (slash and ch == "/"))


def _is_digit(ch: str) -> bool:
    # str.isdigit() also accepts non-ASCII digits that float() would then reject.
    return "0" <= ch <= "9"


def _lex_number(text: str, i: int) -> tuple[_Tok, int]:
    start = i
    while i < len(text) and _is_digit(text[i]):
        i += 1
    # A float needs digits on both sides of the dot, like oned's -?[0-9]+\.[0-9]+
    if i + 1 < len(text) and text[i] == "." and _is_digit(text[i + 1]):
        i += 1
        while i < len(text) and _is_digit(text[i]):
            i += 1
    return _Tok("num", text[start:i], start), i


def _lex_string(text: str, i: int) -> tuple[_Tok, int]:
    end = text.find('"', i + 1)
    if end < 0:
        raise ExprError("unterminated string", text, i)
    return _Tok("str", text[i + 1 : end], i), end + 1


def _lex(text: str, slash_names: bool) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif _is_digit(ch):
            tok, i = _lex_number(text, i)
            toks.append(tok)
        elif _is_name_start(ch, slash_names):
            start = i
            while i < len(text) and _is_name_char(text[i], slash_names):
                i += 1
            toks.append(_Tok("name", text[start:i], start))
        elif ch == '"':
            tok, i = _lex_string(text, i)
            toks.append(tok)
        elif ch in _OPERATORS:
            toks.append(_Tok("op", ch, i))
            i += 1
        else:
            raise ExprError(f"unexpected character {ch!r}", text, i)
    toks.append(_Tok("eof", "", len(text)))
    return toks


class _Parser:
    """Token cursor shared by both grammars; collects the variable names it meets."""

    def __init__(self, text: str, slash_names: bool) -> None:
        self.text = text
        self.toks = _lex(text, slash_names)
        self.i = 0
        self.depth = 0
        self.names: set[str] = set()

    @contextlib.contextmanager
    def nested(self) -> Iterator[None]:
        """One more level of parentheses, ``!`` or unary ``-``: parsing and evaluating
        recurse once per level, so a caller's expression must not be deeper than Python's
        stack allows (an error for this VM, not a crash of the scheduler pass)."""
        if self.depth >= MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels", self.text,
                            self.tok.pos)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, op: str) -> bool:
        if self.tok.kind == "op" and self.tok.value == op:
            self.i += 1
            return True
        return False

    def error(self, message: str, tok: _Tok | None = None) -> ExprError:
        tok = tok or self.tok
        found = "end of expression" if tok.kind == "eof" else repr(tok.value)
        if tok.kind == "str":
            found = f'"{tok.value}"'
        return ExprError(f"{message}, found {found}", self.text, tok.pos)

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise self.error(f"expected {op!r}")

    def expect_end(self) -> None:
        if self.tok.kind != "eof":
            raise self.error("unexpected token")


# --------------------------------------------------------------------------------------------
# Requirements (boolean)
# --------------------------------------------------------------------------------------------


def _to_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _num_cmp(op: str, lit: float) -> Callable[[float], bool]:
    if op == "=":
        return lit.__eq__
    if op == "!=":
        return lit.__ne__
    if op == ">":
        return lit.__lt__  # value > lit
    return lit.__gt__  # "<": value < lit


def _num_first(name: str, test: Callable[[float], bool]) -> BoolFn:
    def fn(lookup: Lookup) -> bool:
        vals = lookup(name)
        if not vals:
            return False
        num = _to_float(vals[0])
        return num is not None and test(num)

    return fn


def _num_any(name: str, lit: float) -> BoolFn:
    def fn(lookup: Lookup) -> bool:
        return any(_to_float(v) == lit for v in lookup(name))

    return fn


def _current_vms(op: str, lit: float) -> BoolFn:
    # oned's HostXML::search reads CURRENT_VMS as <lit> when that VM id runs on (or was just
    # dispatched to) the host and as -1 otherwise, and never reports it missing, so
    # "CURRENT_VMS != 7" is true on an empty host.
    test = _num_cmp(op, lit)

    def fn(lookup: Lookup) -> bool:
        found = any(_to_float(v) == lit for v in lookup(_CURRENT_VMS))
        return test(lit if found else -1.0)

    return fn


def _glob(pattern: str) -> Callable[[str], bool]:
    if _GLOB_CHARS.isdisjoint(pattern):
        return pattern.__eq__  # plain equality is much cheaper than a regex match
    matcher = re.compile(fnmatch.translate(pattern)).match
    return lambda value: matcher(value) is not None


def _str_cmp(name: str, op: str, pattern: str) -> BoolFn:
    match = _glob(pattern)
    if op == "@>":
        return lambda lookup: any(match(v) for v in lookup(name))
    want = op == "="

    def fn(lookup: Lookup) -> bool:
        vals = lookup(name)
        return bool(vals) and match(vals[0]) == want

    return fn


def _read_bool_op(p: _Parser) -> str:
    tok = p.tok
    for op, follow in (("@", ">"), ("!", "=")):
        if p.accept(op):
            if not p.accept(follow):
                raise p.error(f"expected {follow!r} after {op!r}")
            return op + follow
    for op in ("=", ">", "<"):
        if p.accept(op):
            return op
    raise p.error("expected a comparison operator (=, !=, >, <, @>)", tok)


def _read_literal(p: _Parser) -> tuple[str, str | float]:
    """Return ("num", value) or ("str", pattern)."""
    neg = p.accept("-")
    tok = p.next()
    if tok.kind == "num":
        num = float(tok.value)
        return "num", -num if neg else num
    if neg:
        raise p.error("expected a number after '-'", tok)
    if tok.kind in ("str", "name"):
        return "str", tok.value
    raise p.error("expected a number, a string or a word", tok)


def _comparison(p: _Parser) -> BoolFn:
    tok = p.next()
    if tok.kind != "name":
        raise p.error("expected a variable name", tok)
    p.names.add(tok.value)
    op_tok = p.tok
    op = _read_bool_op(p)
    kind, lit = _read_literal(p)
    if isinstance(lit, float):
        if tok.value == _CURRENT_VMS and op != "@>":
            return _current_vms(op, lit)
        if op == "@>":
            return _num_any(tok.value, lit)
        return _num_first(tok.value, _num_cmp(op, lit))
    if op in (">", "<"):
        raise p.error(f"{op!r} needs a numeric literal", op_tok)
    return _str_cmp(tok.value, op, lit)


def _not(fn: BoolFn) -> BoolFn:
    return lambda lookup: not fn(lookup)


def _and(a: BoolFn, b: BoolFn) -> BoolFn:
    return lambda lookup: a(lookup) and b(lookup)


def _or(a: BoolFn, b: BoolFn) -> BoolFn:
    return lambda lookup: a(lookup) or b(lookup)


def _chain(first: BoolFn, rest: list[tuple[bool, BoolFn]]) -> BoolFn:
    """``first op1 f1 op2 f2 ...`` left to right (op: True for ``&``), short-circuiting as
    nested ``and``/``or`` would, but in a loop: a chain of thousands of terms (``ID != 1 &
    ID != 2 & ...``) must not nest thousands of calls."""
    if not rest:
        return first
    if len(rest) == 1:
        is_and, second = rest[0]
        return _and(first, second) if is_and else _or(first, second)

    def fn(lookup: Lookup) -> bool:
        value = first(lookup)
        for is_and, term in rest:
            if value == is_and:  # true & x, false | x: x decides
                value = term(lookup)
        return value

    return fn


def _bool_operand(p: _Parser) -> BoolFn:
    if p.accept("!"):
        with p.nested():
            return _not(_bool_operand(p))
    if p.accept("("):
        with p.nested():
            inner = _bool_expr(p)
        p.expect(")")
        return inner
    return _comparison(p)


def _bool_expr(p: _Parser) -> BoolFn:
    # One precedence level, left-associative: fold operands left to right.
    first = _bool_operand(p)
    rest: list[tuple[bool, BoolFn]] = []
    while True:
        if p.accept("&"):
            rest.append((True, _bool_operand(p)))
        elif p.accept("|"):
            rest.append((False, _bool_operand(p)))
        else:
            return _chain(first, rest)


def _always_true(lookup: Lookup) -> bool:
    return True


def _parse_requirements(text: str) -> tuple[BoolFn, set[str]]:
    if not text.strip():
        return _always_true, set()
    p = _Parser(text, slash_names=True)
    fn = _bool_expr(p)
    p.expect_end()
    return fn, p.names


def compile_requirements(text: str) -> Callable[[Lookup], bool]:
    """Compile a SCHED_REQUIREMENTS expression; an empty text is always true."""
    return _parse_requirements(text)[0]


# --------------------------------------------------------------------------------------------
# Rank (arithmetic)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Num:
    """A rank sub-expression: ``const`` is set when it folds to a constant at compile time."""

    fn: NumFn
    const: float | None = None


def _const(value: float) -> _Num:
    return _Num(lambda lookup: value, value)


def _var(name: str) -> _Num:
    def fn(lookup: Lookup) -> float:
        vals = lookup(name)
        if not vals:
            return 0.0
        try:
            return float(vals[0])
        except ValueError:
            return 0.0

    return _Num(fn)


def _div(x: float, y: float) -> float:
    return x / y if y else 0.0


_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": float.__add__,
    "-": float.__sub__,
    "*": float.__mul__,
    "/": _div,
}


def _fold(first: _Num, rest: list[tuple[str, _Num]]) -> _Num:
    """``first op1 x1 op2 x2 ...`` left to right: a constant prefix is computed now, the rest
    in a loop (a sum of thousands of terms must not nest thousands of calls)."""
    i = 0
    while i < len(rest):
        op, term = rest[i]
        if first.const is None or term.const is None:
            break
        first = _const(_BINARY[op](first.const, term.const))
        i += 1
    steps = [(_BINARY[op], term.fn) for op, term in rest[i:]]
    if not steps:
        return first
    fa = first.fn
    if len(steps) == 1:
        f, fb = steps[0]
        return _Num(lambda lookup: f(fa(lookup), fb(lookup)))

    def fn(lookup: Lookup) -> float:
        value = fa(lookup)
        for f, term in steps:
            value = f(value, term(lookup))
        return value

    return _Num(fn)


def _neg(a: _Num) -> _Num:
    if a.const is not None:
        return _const(-a.const)
    fa = a.fn
    return _Num(lambda lookup: -fa(lookup))


def _factor(p: _Parser) -> _Num:
    if p.accept("-"):
        with p.nested():
            return _neg(_factor(p))
    if p.accept("("):
        with p.nested():
            inner = _sum(p)
        p.expect(")")
        return inner
    tok = p.next()
    if tok.kind == "num":
        return _const(float(tok.value))
    if tok.kind == "name":
        p.names.add(tok.value)
        return _var(tok.value)
    raise p.error("expected a number, a variable, '-' or '('", tok)


def _product(p: _Parser) -> _Num:
    first = _factor(p)
    rest = []
    while p.tok.kind == "op" and p.tok.value in "*/":
        op = p.next().value
        rest.append((op, _factor(p)))
    return _fold(first, rest)


def _sum(p: _Parser) -> _Num:
    first = _product(p)
    rest = []
    while p.tok.kind == "op" and p.tok.value in "+-":
        op = p.next().value
        rest.append((op, _product(p)))
    return _fold(first, rest)


def _finite(fn: NumFn) -> NumFn:
    # Host attributes such as "nan" or "inf" parse as floats; keep them from poisoning a sort.
    def rank(lookup: Lookup) -> float:
        value = fn(lookup)
        return value if math.isfinite(value) else 0.0

    return rank


def _parse_rank(text: str) -> tuple[NumFn, set[str]]:
    if not text.strip():
        return _const(0.0).fn, set()
    p = _Parser(text, slash_names=False)
    num = _sum(p)
    p.expect_end()
    if num.const is not None:
        return _const(num.const if math.isfinite(num.const) else 0.0).fn, p.names
    return _finite(num.fn), p.names


def compile_rank(text: str) -> Callable[[Lookup], float]:
    """Compile a SCHED_RANK expression to a float-valued function; an empty text gives 0."""
    return _parse_rank(text)[0]


def variables(text: str) -> set[str]:
    """Names of the variables an expression reads (to prefetch them).

    The text is tried as a requirement first (where ``V = word`` compares against a literal
    word), then as a rank; if it is neither, the requirement error is raised.
    """
    try:
        return _parse_requirements(text)[1]
    except ExprError as req_error:
        try:
            return _parse_rank(text)[1]
        except ExprError:
            raise req_error from None
