"""Tests for oneserver.xmltext: whatever a value holds, the element it is written into parses
and reads back as the value (with what XML 1.0 cannot carry replaced by U+FFFD)."""

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from oneserver import xmltext

# Lone surrogates too: a path decoded with surrogateescape holds them.
ANY_TEXT = st.lists(st.text(st.characters(blacklist_categories=()), max_size=3) | st.sampled_from(
    ["]]>", "]]", "]", ">", "<", "&", "\r", "\x00", "\ud800", "\udfff", "\uffff"])).map("".join)


def read_back(element: str) -> str:
    return etree.fromstring(element.encode()).text or ""


def expected(value: str) -> str:
    # An XML parser turns CR LF and lone CR into LF, in CDATA sections too.
    return xmltext.valid_chars(value).replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=500, derandomize=True, database=None)
@given(ANY_TEXT)
def test_cdata_reads_back(value: str) -> None:
    assert read_back(f"<A>{xmltext.cdata(value)}</A>") == expected(value)


@settings(max_examples=500, derandomize=True, database=None)
@given(ANY_TEXT)
def test_text_reads_back(value: str) -> None:
    assert read_back(f"<A>{xmltext.text(value)}</A>") == expected(value)


def test_cdata_end_split() -> None:
    assert xmltext.cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"
    assert xmltext.cdata("") == "<![CDATA[]]>"


def test_text_escapes() -> None:
    assert xmltext.text("a]]>&<b>") == "a]]&gt;&amp;&lt;b&gt;"


def test_what_xml_cannot_carry() -> None:
    kept = "\t\n\r \x7f\x85\u2028\ud7ff\ue000\ufffd\U00010000\U0010ffff"
    assert xmltext.valid_chars(kept) == kept
    assert xmltext.valid_chars("\x00\x08\x0b\x0c\x1f\ud800\udfff\ufffe\uffff") == "\ufffd" * 9
