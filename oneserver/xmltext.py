"""Character data for every XML document the server renders: escaped text and CDATA sections.

Whatever a value holds, what these functions return keeps the document well formed: a value
can neither close the element it is put in nor open another one. oned wraps values in CDATA
and relies on its parser to refuse "]]>"; values also come from drivers, hosts and older
documents, so the guarantee is given here, where every value is written, not at each entry.

XML 1.0 cannot carry most C0 controls, lone surrogates, U+FFFE or U+FFFF, not even as
character references. oned copies them into its bodies, which clients then fail to parse; they
are replaced by U+FFFD here so that the body parses and still shows that something was there.
They cannot come in through XML-RPC (its parser refuses them), only from drivers and hosts.
"""

from __future__ import annotations

import re

_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
REPLACEMENT = "\ufffd"


def valid_chars(value: str) -> str:
    """``value`` with every character XML 1.0 cannot carry replaced by U+FFFD."""
    # Fast path: every such character is a control, a surrogate or unassigned, none printable.
    return value if value.isprintable() else _INVALID.sub(REPLACEMENT, value)


def text(value: str) -> str:
    """``value`` as element content: ``&``, ``<`` and ``>`` escaped (``>`` too, so that "]]>"
    never appears in content)."""
    return markup(valid_chars(value))


def markup(value: str) -> str:
    """``&``, ``<`` and ``>`` of ``value`` escaped, for text whose characters are known to be
    valid already (a stored body rendered through :func:`text` and :func:`cdata`)."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    return value


def cdata(value: str) -> str:
    """``value`` as one CDATA section, split around each "]]>" so none can end it early (the
    parsed text is ``value`` again)."""
    value = valid_chars(value)
    if "]]>" in value:
        value = value.replace("]]>", "]]]]><![CDATA[>")
    return "<![CDATA[" + value + "]]>"
