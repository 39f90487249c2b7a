"""OpenNebula's template language: the text form, the XML form and oned's XML rendering.

The behaviour mirrors oned (src/parsers/template_parser.l, template_syntax.y, Template.cc) so that
templates written for OpenNebula parse to the same attributes and render to the same XML.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from lxml import etree

from oneserver import xmltext

Vector = dict[str, str]
Value = str | Vector

MAX_SOURCE = 4 * 1024 * 1024  # characters; oned has no limit, but we must bound memory and time

# What one template may hold, counted as the characters of its XML form. oned bounds only a
# whole request (oned.conf's MESSAGE_SIZE), so merge updates could grow a template without end;
# bounding the template bounds the work one change does under the database's write lock (merge,
# render, store) and the body that info and pool replies copy out.
MAX_TEMPLATE = 8 * 1024 * 1024

XML_MALFORMED = "Parse error: XML Template malformed."

# Single character classes only (each match is linear); they keep the hand-written lexer fast.
# A name is what oned's lexer takes as a VARIABLE ([[:alnum:]_]+ in the C locale), in both forms.
_NAME_RUN = re.compile(r"[A-Za-z0-9_]+")
# Every name becomes an XML element name. oned fixes a top-level name that cannot be one
# (_attr_name) but writes a vector member as it came, so "DISK = [ 9X = 1 ]" made its bodies
# unparseable; such a member is refused instead.
_MEMBER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# oned's bare value is [^=#[:blank:]\n,\[\]]+. We also stop at \r: flex silently drops a stray \r
# between tokens, and treating CRLF files like LF files is what users of such files expect.
_BARE_RUN = re.compile(r"[^=#,\[\] \t\r\n]+")
_BLANK_RUN = re.compile(r"[ \t\r]*")
_SPACE_RUN = re.compile(r"[ \t\r\n]*")
_CDATA_END = "]]>"


class TemplateError(ValueError):
    """A template could not be parsed; str(e) is the message oned would return."""


def _attr_name(name: str) -> str:
    """A top-level name (one ``_NAME_RUN``) as oned's Attribute constructor makes it: upper
    case, with ONE_ before a name that does not start with a letter or "_" or that starts with
    "XML" as written (oned tests the name before upper-casing it: "xml_a" becomes XML_A)."""
    upper = name.upper()
    if not (name[0].isalpha() or name[0] == "_") or name.startswith("XML"):
        return "ONE_" + upper
    return upper


class Template:
    """Ordered multimap of attributes: top-level names repeat (several DISK), order kept."""

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self, items: Iterable[tuple[str, Value]] = ()) -> None:
        self.items: list[tuple[str, Value]] = [(n.upper(), _copy(v)) for n, v in items]

    def get(self, name: str, default: Value | None = None) -> Value | None:
        name = name.upper()
        for n, v in self.items:
            if n == name:
                return v
        return default

    def get_str(self, name: str, default: str = "") -> str:
        value = self.get(name)
        return value if isinstance(value, str) else default

    def get_all(self, name: str) -> list[Value]:
        name = name.upper()
        return [v for n, v in self.items if n == name]

    def vectors(self, name: str) -> list[Vector]:
        return [v for v in self.get_all(name) if isinstance(v, dict)]

    def set(self, name: str, value: Value) -> None:
        name = name.upper()
        out: list[tuple[str, Value]] = []
        placed = False
        for n, v in self.items:
            if n != name:
                out.append((n, v))
            elif not placed:
                out.append((name, value))
                placed = True
        if not placed:
            out.append((name, value))
        self.items = out

    def add(self, name: str, value: Value) -> None:
        self.items.append((name.upper(), value))

    def remove(self, name: str) -> list[Value]:
        name = name.upper()
        removed = [v for n, v in self.items if n == name]
        self.items = [(n, v) for n, v in self.items if n != name]
        return removed

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.upper()
        return any(n == name for n, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        return list(dict.fromkeys(n for n, _ in self.items))

    def copy(self) -> Template:
        return Template(self.items)

    def merge(self, other: Template) -> None:
        """Update type 1: every name present in other replaces all of its entries here (at the
        place of the first one); names new here follow, in other's order. One pass over each."""
        incoming: dict[str, list[tuple[str, Value]]] = {}
        for name, value in other.items:
            entries = incoming.get(name)
            if entries is None:
                entries = incoming[name] = []
            entries.append((name, _copy(value)))
        out: list[tuple[str, Value]] = []
        for item in self.items:
            entries = incoming.get(item[0])
            if entries is None:
                out.append(item)
            elif entries:
                out.extend(entries)
                incoming[item[0]] = []  # placed: the name's later entries here are dropped
        for entries in incoming.values():
            out.extend(entries)
        self.items = out

    def xml_size(self) -> int:
        """The length of :meth:`to_xml`'s text (without a "]]>" split), counted, not rendered."""
        size = 0
        for name, value in self.items:
            size += 2 * len(name) + 5
            if isinstance(value, dict):
                size += sum(2 * len(k) + 17 + len(v) for k, v in value.items())
            else:
                size += 12 + len(value)
        return size

    def _sorted(self) -> list[tuple[str, Value]]:
        # oned keeps attributes in a std::multimap: sorted by name, equal names in insertion order.
        return sorted(self.items, key=lambda item: item[0])

    def to_xml(self, root: str = "TEMPLATE") -> str:
        parts = [f"<{root}>"]
        for name, value in self._sorted():
            if isinstance(value, dict):
                inner = "".join(f"<{k}>{xmltext.cdata(value[k])}</{k}>" for k in sorted(value))
                parts.append(f"<{name}>{inner}</{name}>")
            else:
                parts.append(f"<{name}>{xmltext.cdata(value)}</{name}>")
        parts.append(f"</{root}>")
        return "".join(parts)

    def to_text(self) -> str:
        lines = []
        for name, value in self.items:
            if not isinstance(value, dict):
                lines.append(f"{name} = {_quote(value)}")
            elif not value:
                lines.append(f"{name} = [ ]")
            else:
                members = ",\n".join(f"  {k} = {_quote(v)}" for k, v in value.items())
                lines.append(f"{name} = [\n{members} ]")
        return "".join(line + "\n" for line in lines)

    def to_json(self) -> list[list[str | Value]]:
        return [[n, _copy(v)] for n, v in self.items]

    @classmethod
    def from_json(cls, data: Iterable[Sequence[Any]]) -> Template:
        tmpl = cls()  # one copy of each vector, not the two that __init__ would make
        tmpl.items = [(str(n).upper(), dict(v) if isinstance(v, dict) else str(v))
                      for n, v in data]
        return tmpl

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, v in self.items:
            v = _copy(v)
            if n not in out:
                out[n] = v
            elif isinstance(out[n], list):
                out[n].append(v)
            else:
                out[n] = [out[n], v]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self._sorted() == other._sorted()

    def __repr__(self) -> str:
        return f"Template({self.items!r})"


def _copy(value: Value) -> Value:
    return copy.copy(value) if isinstance(value, dict) else value


def _quote(value: str) -> str:
    # Only \" is an escape, so a value ending in a backslash cannot be quoted unambiguously;
    # write it bare when the bare syntax can carry it.
    if value.endswith("\\") and not value.startswith('"') and _BARE_RUN.fullmatch(value):
        return value
    return '"' + value.replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Text form: hand-written lexer (flex's two start states become the value_mode flag) and a
# recursive-descent parser producing bison-style messages.


class _Tok(NamedTuple):
    kind: str  # token names as in template_syntax.y, so error messages read like oned's
    text: str
    src: str
    start: int
    stop: int

    # Lines and columns are only needed for an error message: working them out there, instead
    # of counting newlines on every token, halves the time a large template takes to parse.
    @property
    def line(self) -> int:
        return self.src.count("\n", 0, self.start) + 1

    @property
    def col(self) -> int:
        return self.start - self.src.rfind("\n", 0, self.start)

    @property
    def end(self) -> int:
        return self.col + max(self.stop - self.start, 1)


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0
        self._last_quote: int | None = None

    def _skip_blanks(self, newlines: bool) -> None:
        blanks = (_SPACE_RUN if newlines else _BLANK_RUN).match(self.src, self.pos)
        assert blanks is not None  # a starred class matches, if only the empty string
        self.pos = blanks.end()

    def _skip_comment(self) -> None:
        end = self.src.find("\n", self.pos)  # the comment eats its newline, like oned's rule
        self.pos = len(self.src) if end < 0 else end + 1

    def _tok(self, kind: str, start: int) -> _Tok:
        return _Tok(kind, self.src[start : self.pos], self.src, start, self.pos)

    def next(self, value_mode: bool = False) -> _Tok:
        src = self.src
        # Blanks after "=" were eaten by EQUAL, and EQUAL already turned "= # note" into an empty
        # value, so only the initial state skips blanks, newlines and comments.
        while not value_mode:
            self._skip_blanks(newlines=True)
            if self.pos >= len(src) or src[self.pos] != "#":
                break
            self._skip_comment()
        start = self.pos
        if start >= len(src):
            return self._tok("$end", start)
        char = src[start]
        if value_mode and char == '"':
            return self._string(start)
        if value_mode and (m := _BARE_RUN.match(src, start)):
            self.pos = m.end()
            return self._tok("STRING", start)
        if m := _NAME_RUN.match(src, start):
            self.pos = m.end()
            return self._tok("VARIABLE", start)
        self.pos = start + 1
        if char == "=":
            tok = self._tok("EQUAL", start)
            self._skip_blanks(newlines=False)
            if self.pos < len(src) and src[self.pos] in "\n#":
                # "NAME =" then newline (or a comment) is an empty value. At the end of input
                # oned's EQUAL_EMPTY rule (it needs the newline) does not match: a value is
                # then missing, a syntax error, as in oned's captured reply.
                if src[self.pos] == "\n":
                    self.pos += 1
                else:
                    self._skip_comment()
                return tok._replace(kind="EQUAL_EMPTY")
            return tok
        kind = {",": "COMMA", "[": "OBRACKET", "]": "CBRACKET"}.get(char, f"character {char!r}")
        return self._tok(kind, start)

    def _string(self, start: int) -> _Tok:
        src = self.src
        # flex's rule is "\"([^\"]|\\\")*\"" with longest match: the value ends at the first quote
        # not preceded by a backslash; failing that, at the last quote of the input.
        close, i = -1, start + 1
        while (j := src.find('"', i)) >= 0:
            if src[j - 1] != "\\":
                close = j
                break
            i = j + 1
        if close < 0:
            if self._last_quote is None:
                self._last_quote = src.rfind('"')
            close = self._last_quote if self._last_quote > start else -1
        bare = _BARE_RUN.match(src, start)
        bare_end = bare.end() if bare else start
        if close < 0 or bare_end > close + 1:  # the bare rule matched more: flex takes it
            self.pos = bare_end
            return self._tok("STRING", start)
        self.pos = close + 1
        return _Tok("QUOTED", src[start + 1 : close].replace('\\"', '"'), src, start, self.pos)


def _syntax_error(tok: _Tok, expecting: Iterable[str], detail: str = "") -> TemplateError:
    what = detail or f"unexpected {tok.kind}, expecting {' or '.join(expecting)}"
    return TemplateError(
        f"Parse error: syntax error, {what} at line {tok.line}, columns {tok.col}:{tok.end}"
    )


def _value(lexer: _Lexer, expecting: tuple[str, ...]) -> _Tok:
    tok = lexer.next(value_mode=True)
    glued = tok.kind == "STRING" and lexer.src.startswith(_CDATA_END, lexer.pos)
    if tok.kind in ("STRING", "QUOTED") and (glued or _CDATA_END in tok.text):
        # oned aborts on "]]>" so that a value can never close the CDATA section it is put in.
        raise _syntax_error(tok, (), "value contains ]]>")
    if tok.kind == "QUOTED":
        return _Tok("STRING", tok.text, tok.src, tok.start, tok.stop)
    if tok.kind not in expecting:
        raise _syntax_error(tok, expecting)
    return tok


def _vector(lexer: _Lexer) -> Vector:
    members: Vector = {}
    tok = lexer.next()
    if tok.kind == "CBRACKET":
        return members
    expecting: tuple[str, ...] = ("CBRACKET", "VARIABLE")
    while True:
        if tok.kind != "VARIABLE":
            raise _syntax_error(tok, expecting)
        if not _MEMBER_NAME.fullmatch(tok.text):
            raise _syntax_error(tok, (), f"attribute name {tok.text} must start with a letter "
                                         "or _")
        equal = lexer.next()
        if equal.kind != "EQUAL":
            raise _syntax_error(equal, ("EQUAL",))
        value = _value(lexer, ("STRING",))
        members.setdefault(tok.text.upper(), value.text)  # std::map::insert keeps the first
        sep = lexer.next()
        if sep.kind == "CBRACKET":
            return members
        if sep.kind != "COMMA":
            raise _syntax_error(sep, ("COMMA", "CBRACKET"))
        tok, expecting = lexer.next(), ("VARIABLE",)


def _check_size(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise TemplateError(
            f"Parse error: template too large ({len(source)} characters, limit {MAX_SOURCE})"
        )


def check_size(tmpl: Template) -> Template:
    """``tmpl``, unless it holds more than :data:`MAX_TEMPLATE` (TemplateError)."""
    size = tmpl.xml_size()
    if size > MAX_TEMPLATE:
        raise TemplateError(f"Template too large: {size} characters as XML, the limit is "
                            f"{MAX_TEMPLATE}")
    return tmpl


def _trim_name(tmpl: Template) -> Template:
    # Template::trim_name: "NAME" is used as the object's name, trailing blanks would be invisible.
    tmpl.items = [
        (n, v.rstrip() if n == "NAME" and isinstance(v, str) else v) for n, v in tmpl.items
    ]
    return tmpl


def parse_text(source: str) -> Template:
    _check_size(source)
    lexer, tmpl = _Lexer(source), Template()
    while (tok := lexer.next()).kind != "$end":
        if tok.kind != "VARIABLE":
            raise _syntax_error(tok, ("$end", "VARIABLE"))
        name = _attr_name(tok.text)
        equal = lexer.next()
        if equal.kind == "EQUAL_EMPTY":
            tmpl.items.append((name, ""))
            continue
        if equal.kind != "EQUAL":
            raise _syntax_error(equal, ("EQUAL",))
        # oned 7.4's grammar also takes CCDATA here; its messages list it (captured reply).
        value = _value(lexer, ("OBRACKET", "CCDATA", "STRING"))
        tmpl.items.append((name, _vector(lexer) if value.kind == "OBRACKET" else value.text))
    return check_size(_trim_name(tmpl))


# ---------------------------------------------------------------------------------------------
# XML form (Template::from_xml / rebuild_attributes).


def _xml_parser() -> etree.XMLParser:
    # No entity expansion, no network, no DTD loading: a template must never read files or URLs.
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def _xml_name(element: etree._Element, pattern: re.Pattern[str]) -> str:
    # The same names as the text form: "<A-B>" and "<É>" are XML names, but a template
    # holding one could not be written back as text (to_text, onevm update's editor).
    name = etree.QName(element).localname
    if not pattern.fullmatch(name):
        raise TemplateError(XML_MALFORMED)
    return name


def parse_xml(source: str) -> Template:
    _check_size(source)
    try:
        root = etree.fromstring(source.encode("utf-8"), _xml_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise TemplateError(XML_MALFORMED) from exc
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise TemplateError(XML_MALFORMED)  # entity tricks (billion laughs, XXE) need a DTD
    tmpl = Template()
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        name = _attr_name(_xml_name(child, _NAME_RUN))
        elements = [m for m in child if isinstance(m.tag, str)]
        if elements:
            # Members keep their case (oned does not upper-case them); the last duplicate wins.
            # Unlike oned we also accept indented XML (whitespace before the first member).
            names = [_xml_name(m, _MEMBER_NAME) for m in elements]
            vector = {n: m.text for n, m in zip(names, elements, strict=True) if m.text is not None}
            tmpl.items.append((name, vector))
        elif child.text is not None:  # <X/> and <X></X> carry nothing and are dropped
            tmpl.items.append((name, "".join(child.itertext())))
    return check_size(_trim_name(tmpl))


def parse(source: str) -> Template:
    """Template::parse_str_or_xml: XML when the very first character is "<", else text."""
    return parse_xml(source) if source.startswith("<") else parse_text(source)
