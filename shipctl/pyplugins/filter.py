"""The Panoptes resource filter: a SQL WHERE-like selection of the resources a plugin runs for.

    resource_class = "network" AND resource_metadata.os_version LIKE "4%"
    resource_site NOT IN ("dc1", "dc2") OR resource_id != "lb1"

Fields: resource_site, resource_class, resource_subclass, resource_type, resource_id, resource_endpoint and
``resource_metadata.<key>``. Operators: ``=`` / ``eq``, ``!=`` / ``ne``, ``[NOT] LIKE`` (``%`` and ``_``
wildcards, ASCII case-insensitive as in SQLite), ``[NOT] IN (...)``, joined by AND and OR with SQL precedence
(AND first); parentheses group (an extension: upstream has none). Keywords and field names are
case-insensitive; values are double-quoted strings with backslash escapes. As in Panoptes' SQL, a condition on
a metadata key the resource does not have is false, whatever the operator.
"""

from __future__ import annotations

import re
from typing import Protocol

from shipctl.pyplugins.resources import FIELDS
from shipctl.records import record

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<open_string>"(?:[^"\\]|\\.)*\\?$)
      | (?P<op>!=|=|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]*)?)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
KEYWORDS = ("AND", "OR", "NOT", "LIKE", "IN", "EQ", "NE")


class FilterError(ValueError):
    """A malformed filter; the message says what was expected where."""


class HasFields(Protocol):
    def field(self, name: str) -> str | None: ...


@record(frozen=True)
class _Tok:
    """A token of a resource filter expression."""

    kind: str  # "string", "op", "word", "end"
    text: str
    pos: int  # 1-based column


@record(frozen=True)
class Cond:
    """One comparison of a resource filter: a field against values."""

    field: str
    op: str  # "=", "!=", "LIKE", "IN"
    values: tuple[str, ...]
    negate: bool = False
    like: re.Pattern[str] | None = None

    def matches(self, resource: HasFields) -> bool:
        value = resource.field(self.field)
        if value is None:
            return False  # SQL: a comparison with a missing metadata row is never true
        if self.op == "=":
            hit = value == self.values[0]
        elif self.op == "!=":
            hit = value != self.values[0]
        elif self.op == "LIKE":
            assert self.like is not None
            hit = self.like.fullmatch(value) is not None
        else:
            hit = value in self.values
        return hit != self.negate


@record(frozen=True)
class Any_:
    """A resource filter's OR: true when any part matches."""

    parts: tuple[Node, ...]

    def matches(self, resource: HasFields) -> bool:
        return any(p.matches(resource) for p in self.parts)


@record(frozen=True)
class All:
    """A resource filter's AND: true when every part matches."""

    parts: tuple[Node, ...]

    def matches(self, resource: HasFields) -> bool:
        return all(p.matches(resource) for p in self.parts)


Node = Cond | Any_ | All


@record(frozen=True)
class ResourceFilter:
    """A parsed resource filter, with the text it was parsed from."""

    text: str
    tree: Node

    def matches(self, resource: HasFields) -> bool:
        return self.tree.matches(resource)


def parse(text: str) -> ResourceFilter:
    """Parse a filter, or raise FilterError saying what was expected at which column."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError('empty filter: expected a condition such as resource_id = "host1"')
    p = _Parser(text)
    tree = p.expr()
    tok = p.peek()
    if tok.kind != "end":
        raise p.error("AND, OR or the end of the filter", tok)
    return ResourceFilter(text, tree)


def like_pattern(pattern: str) -> re.Pattern[str]:
    """SQLite LIKE: % any run, _ one character, ASCII letters case-insensitive, no escape character."""
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.ASCII | re.IGNORECASE | re.DOTALL)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = self._lex(text)
        self.i = 0

    def _lex(self, text: str) -> list[_Tok]:
        toks: list[_Tok] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:  # only trailing whitespace is left
                break
            kind = m.lastgroup or "bad"
            start = m.start(kind) + 1
            if kind == "open_string":
                raise FilterError(f"unterminated string starting at column {start} in {text!r}")
            if kind == "bad":
                raise FilterError(f"unexpected character {m.group(kind)!r} at column {start} in {text!r}")
            toks.append(_Tok(kind, m.group(kind), start))
            pos = m.end()
        toks.append(_Tok("end", "", len(text) + 1))
        return toks

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok.kind == "word" and tok.text.upper() in words:
            self.i += 1
            return tok.text.upper()
        return None

    def error(self, expected: str, tok: _Tok) -> FilterError:
        got = "the end of the filter" if tok.kind == "end" else repr(tok.text)
        return FilterError(f"expected {expected} at column {tok.pos}, got {got} in {self.text!r}")

    def expr(self) -> Node:
        parts = [self.conj()]
        while self.keyword("OR"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def conj(self) -> Node:
        parts = [self.atom()]
        while self.keyword("AND"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def atom(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.expr()
            close = self.take()
            if close.text != ")" or close.kind != "op":
                raise self.error('")"', close)
            return inner
        return self.cond()

    def field(self) -> str:
        tok = self.take()
        name = tok.text.lower() if tok.kind == "word" else ""
        if name in FIELDS:
            return name
        if tok.kind == "word" and name.startswith("resource_metadata."):
            key = tok.text.split(".", 1)[1]
            if not key:
                raise FilterError(
                    f"expected a metadata key after 'resource_metadata.' at column {tok.pos} in {self.text!r}"
                )
            return f"resource_metadata.{key}"
        raise self.error(f"a field ({', '.join(FIELDS)} or resource_metadata.<key>)", tok)

    def string(self) -> str:
        tok = self.take()
        if tok.kind != "string":
            raise self.error("a value in double quotes", tok)
        return re.sub(r"\\(.)", r"\1", tok.text[1:-1], flags=re.DOTALL)

    def cond(self) -> Cond:
        name = self.field()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("=", "!="):
            self.take()
            return Cond(name, tok.text, (self.string(),))
        word = self.keyword("EQ", "NE")
        if word:
            return Cond(name, "=" if word == "EQ" else "!=", (self.string(),))
        negate = self.keyword("NOT") is not None
        if self.keyword("LIKE"):
            pattern = self.string()
            return Cond(name, "LIKE", (pattern,), negate, like_pattern(pattern))
        if self.keyword("IN"):
            opening = self.take()
            if opening.kind != "op" or opening.text != "(":
                raise self.error('"(" after IN', opening)
            values = [self.string()]
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                values.append(self.string())
            close = self.take()
            if close.kind != "op" or close.text != ")":
                raise self.error('"," or ")"', close)
            return Cond(name, "IN", tuple(values), negate)
        after = "LIKE or IN after NOT" if negate else "=, !=, LIKE, NOT LIKE, IN or NOT IN"
        raise self.error(after, self.peek())
