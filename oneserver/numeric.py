"""Numbers in callers' text, read as oned reads them: C++ ``istringstream >> value`` on the
trimmed attribute (oned trims every template value it parses). ASCII digits only, nothing
after the number, within the range of oned's C type, and never NaN or infinity (``float("nan")``
and ``int("٣")`` are Python's, not oned's). A reader gets ``None`` for text that is not such
a number and answers with oned's message for its attribute."""

from __future__ import annotations

import math
import re
import struct

# What C's isspace() calls white space (str.strip() would also take Unicode spaces).
_SPACE = " \t\n\v\f\r"
_INT = re.compile(r"([+-]?)0*([0-9]+)")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_LEADING_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?)0*([0-9]+)")
_LEADING_HEX = re.compile(r"[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)")

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1


def to_int(text: str, bits: int = 32) -> int | None:
    """A whole value of a C ``int`` (``bits`` 32) or ``long`` (64), else None."""
    m = _INT.fullmatch(text.strip(_SPACE))
    if m is None or len(m.group(2)) > 20:  # too long for any C integer (and for int())
        return None
    value = int(m.group(1) + m.group(2))
    limit = 2 ** (bits - 1)
    return value if -limit <= value < limit else None


def to_float(text: str) -> float | None:
    """A whole value of a C ``float``: finite and within its range, else None."""
    text = text.strip(_SPACE)
    if not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    try:  # rounded to a C float as strtof() rounds
        single: float = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:  # the Pythons that refuse to round to infinity
        return None
    if not math.isfinite(single):
        return None
    return 0.0 if single == 0.0 else value  # too small for a float: oned holds 0


def to_id(text: str) -> int | None:
    """An object ID as oned reads one from a template (a C ``int``)."""
    return to_int(text, 32)


def leading_int(text: str) -> int | None:
    """The number a C++ stream reads into an ``int`` from the start of ``text`` (what
    follows it is ignored), else None."""
    m = _LEADING_INT.match(text)
    if m is None or len(m.group(2)) > 20:
        return None
    value = int(m.group(1) + m.group(2))
    return value if INT32_MIN <= value <= INT32_MAX else None


def leading_uint(text: str) -> int | None:
    """The number a C++ stream reads into an ``unsigned int`` from the start of ``text``
    (what follows it is ignored; a minus sign wraps around as strtoul does), else None."""
    m = _LEADING_INT.match(text)
    if m is None or len(m.group(2)) > 20:
        return None
    value = int(m.group(2))
    if value > UINT32_MAX:
        return None
    return (UINT32_MAX + 1 - value) % (UINT32_MAX + 1) if m.group(1) == "-" else value


def leading_hex64(text: str) -> int:
    """What ``istringstream >> hex >> (long long)`` leaves in the variable (oned never looks
    at the stream's state): the hex number at the start of ``text``, ``0x`` allowed; 0 when
    there is none; clamped to the long long range when it overflows."""
    m = _LEADING_HEX.match(text)
    if m is None:
        return 0
    value = int(m.group(2), 16)
    value = -value if m.group(1) == "-" else value
    return max(INT64_MIN, min(INT64_MAX, value))
