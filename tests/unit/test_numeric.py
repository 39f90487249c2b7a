"""Numbers read from callers' text as oned's C++ streams read them."""

from __future__ import annotations

import pytest

from oneserver.numeric import leading_hex64, leading_int, leading_uint, to_float, to_int


@pytest.mark.parametrize(("text", "int32", "int64"), [
    ("5", 5, 5), (" 5\t", 5, 5), ("+5", 5, 5), ("-5", -5, -5), ("0" * 500 + "7", 7, 7),
    ("2147483647", 2**31 - 1, 2**31 - 1), ("2147483648", None, 2**31),
    ("-2147483649", None, -(2**31) - 1), ("9223372036854775808", None, None),
    ("9" * 5000, None, None), ("5.0", None, None), ("1e3", None, None), ("nan", None, None),
    ("inf", None, None), ("1_000", None, None), ("\u0663", None, None), ("0x10", None, None),
    ("", None, None), ("5 5", None, None), ("\u00a05", None, None),
])
def test_to_int(text: str, int32: int | None, int64: int | None) -> None:
    assert to_int(text) == int32
    assert to_int(text, 64) == int64


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("-2.5", -2.5), ("1e3", 1000.0),
    (" 2 ", 2.0), ("3.4e38", 3.4e38), ("1e-40", 1e-40), ("1e-50", 0.0),  # a C float's 0
    ("nan", None), ("NaN", None), ("inf", None), ("-infinity", None), ("1e39", None),
    ("1e400", None), ("1e", None), ("e5", None), ("0x1p3", None), ("1_0", None),
    ("\u0663", None), ("", None), ("1,5", None),
])
def test_to_float(text: str, value: float | None) -> None:
    assert to_float(text) == value


def test_leading_numbers() -> None:
    assert [leading_uint(t) for t in ("5", "5abc", " 7", "-1", "-0", "x", "4294967296")] == \
        [5, 5, 7, 2**32 - 1, 0, None, None]
    assert [leading_int(t) for t in ("12x", "-3", "abc", "2147483648")] == [12, -3, None, None]


def test_leading_hex64() -> None:
    assert leading_hex64("1f") == 0x1F
    assert leading_hex64("0x1F zz") == 0x1F
    assert leading_hex64("zz") == 0
    assert leading_hex64("1" * 30) == 2**63 - 1  # overflow: the stream leaves the maximum
    assert leading_hex64("-" + "f" * 30) == -(2**63)
