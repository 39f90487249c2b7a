"""The XML-RPC decoder keeps each value's wire type and refuses what xmlrpc-c refuses."""

from __future__ import annotations

import pytest

from oneserver import wire
from oneserver.errors import Fault


def decode(value: str) -> tuple:
    body = ("<?xml version='1.0'?><methodCall><methodName>m</methodName><params><param>"
            f"<value>{value}</value></param></params></methodCall>").encode()
    return wire.parse_call(body)[1]


def test_integer_types_are_kept() -> None:
    (i4,), (i8,), (ex,) = decode("<i4>5</i4>"), decode("<i8>5</i8>"), decode("<ex:i8>7</ex:i8>")
    assert type(i4) is int and i4 == 5
    assert type(i8) is wire.I8 and i8 == 5 and type(ex) is wire.I8
    (array,) = decode("<array><data><value><int>1</int></value><value><i8>2</i8></value>"
                      "</data></array>")
    assert [type(v) for v in array] == [int, wire.I8]


@pytest.mark.parametrize(("value", "detail"), [
    ("<i4>2147483648</i4>", "above the range allowed by XML-RPC (maximum is 2147483647)"),
    ("<int>-2147483649</int>", "below the range allowed by XML-RPC (minimum is -2147483648)"),
    ("<i4>" + "9" * 30 + "</i4>", "represents a number beyond the range"),
    ("<i8>9223372036854775808</i8>", "represents a number beyond the range"),
    ("<i4> 5</i4>", "starts with white space"),
    ("<i4>5 </i4>", "contains non-numerical junk: ' '"),
    ("<i4></i4>", "XML element content is empty"),
    ("<i4>\u0663</i4>", "contains non-numerical junk"),
    ("<i4>1_0</i4>", "contains non-numerical junk"),
    ("<boolean>2</boolean>", "must be either '0' or '1'"),
    ("<biginteger>1</biginteger>", "unknown tag"),
    ("<array><data>" + "<value><array><data>" * 63 + "</data></array></value>" * 63
     + "</data></array>", "Nested data structure too deep."),
])
def test_refused_values(value: str, detail: str) -> None:
    with pytest.raises(Fault) as info:
        decode(value)
    assert info.value.code == wire.FAULT_PARSE
    assert info.value.message.startswith(wire.NOT_A_CALL) and detail in info.value.message


def test_nesting_up_to_the_limit() -> None:
    depth = wire.MAX_NESTING
    (value,) = decode("<array><data>" + "<value><array><data>" * (depth - 1)
                      + "</data></array></value>" * (depth - 1) + "</data></array>")
    for _ in range(depth - 1):
        (value,) = value
    assert value == []
