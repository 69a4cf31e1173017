"""The Scalyr agent's relaxed JSON, read the way its own parser (``scalyr_agent/json_lib/parser.py``) reads it.

Beyond JSON it accepts: ``//`` and ``/* */`` comments wherever whitespace may go; unquoted object keys
(``[A-Za-z_][A-Za-z0-9_]*``); a missing comma between two fields or elements when a line break separates them;
a trailing comma before ``}`` or ``]``; ``"a" + "b"`` string concatenation (values only, not keys);
``\"\"\"triple-quoted\"\"\"`` strings that may span lines; length-prefixed strings (a backtick, ``s``, a 4-byte
big-endian length, then that many UTF-8 bytes); and its loose numbers (any run of ``+-.eE`` and digits that
Python's ``int``/``float`` accepts, e.g. ``007``, ``1.``, ``-.5``).

What it refuses, we refuse, with the same wording where the agent has one: a line break inside a ``"..."``
string, an unknown backslash escape (``\\d`` must be written ``\\\\d``), ``'single quotes'``, ``NaN``, a comma
with nothing before it (``[,1]``, ``{,}``), two values on one line without a comma.

Where we differ, on purpose: the agent ignores whatever follows the top-level value (``{...} junk``); we
return its offset so the caller can warn (``Document.trailing``). A UTF-8 byte-order mark is skipped (the agent
reads it as an unexpected character). A ``\\uD83D\\uDE00`` surrogate pair is combined into one character
and a lone surrogate becomes U+FFFD (the agent keeps lone surrogates, which cannot be sent as UTF-8).
Duplicate keys: the last value wins, as in the agent's JsonObject.

Errors carry the byte offset, and the 1-based line (``\\n``, ``\\r`` and ``\\r\\n`` each end one, as for the
agent) and column (in characters) of the offending character.
"""

from __future__ import annotations

import struct
from typing import Any

from shipctl.records import record

_WS = b" \t\r\n"
_NUMBER_CHARS = frozenset(b"+-eE.0123456789")
_IDENT_START = frozenset(b"_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDENT = _IDENT_START | frozenset(b"0123456789")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\", "/": "/"}
_HEX = frozenset("0123456789abcdefABCDEF")
MAX_NUMBER_CHARS = 100  # the agent's limit on a numeric literal


class ScalyrJsonError(ValueError):
    """A syntax error: ``message`` at byte ``offset`` (``line`` and ``column`` are 1-based)."""

    def __init__(self, message: str, offset: int, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.offset = offset
        self.line = line
        self.column = column


@record(frozen=True)
class Document:
    value: Any
    trailing: int | None  # offset of non-blank text after the top-level value (the agent ignores it)


def position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of byte ``offset``; CR, LF and CRLF each end a line, as the agent counts."""
    offset = max(0, min(offset, len(data)))
    head = data[:offset]
    line = 1 + head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")
    start = max(head.rfind(b"\n"), head.rfind(b"\r")) + 1
    return line, len(head[start:].decode("utf-8", "replace")) + 1


def parse(data: bytes | str) -> Any:
    """The value of a whole document (text after it is ignored, as by the agent)."""
    return parse_document(data).value


def parse_document(data: bytes | str) -> Document:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    p = _Parser(data)
    if data.startswith(b"\xef\xbb\xbf"):
        p.pos = 3
    try:
        value = p.value(top=True)
    except RecursionError:
        raise p.error("arrays or objects nested too deeply", p.pos) from None
    c = p.skip()
    return Document(value, None if c is None else p.pos)


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.b = data
        self.n = len(data)
        self.pos = 0

    # --- helpers ------------------------------------------------------------------------------------------
    def error(self, message: str, offset: int | None = None) -> ScalyrJsonError:
        at = self.pos if offset is None else offset
        line, column = position(self.b, at)
        return ScalyrJsonError(message, at, line, column)

    def eof(self, what: str = "") -> ScalyrJsonError:
        return self.error(f"unexpected end of input{what}", self.n)

    def shown(self, at: int) -> str:
        """The character at ``at``, for a message."""
        chunk = self.b[at : at + 4]
        for k in range(1, len(chunk) + 1):
            try:
                return chunk[:k].decode("utf-8")
            except UnicodeDecodeError:
                continue
        return repr(chunk[:1])[2:-1]

    def skip(self) -> int | None:
        """Skip whitespace and comments; the next byte (not consumed), or None at the end."""
        b, n = self.b, self.n
        while self.pos < n:
            c = b[self.pos]
            if c in _WS:
                self.pos += 1
            elif c == 0x2F:  # "/"
                self.comment()
            else:
                return c
        return None

    def comment(self) -> None:
        start = self.pos
        b, n = self.b, self.n
        if start + 1 >= n:
            raise self.error("Unexpected character '/'", start)
        kind = b[start + 1]
        if kind == 0x2F:  # "//": through the end of the line
            i = start + 2
            while i < n and b[i] not in b"\r\n":
                i += 1
            if i < n and b[i] == 0x0D and i + 1 < n and b[i + 1] == 0x0A:
                i += 1
            self.pos = min(i + 1, n)
        elif kind == 0x2A:  # "/*"
            end = b.find(b"*/", start + 2)
            if end < 0:
                raise self.error("Unterminated comment", start)
            self.pos = end + 2
        else:
            raise self.error(f"Unexpected character '/{self.shown(start + 1)}'", start)

    def preceding_line_break(self) -> bool:
        """Whether only spaces and tabs stand between the last line break and here (a comma is inferred)."""
        i = self.pos - 1
        while i >= 0:
            c = self.b[i]
            if c in b"\r\n":
                return True
            if c not in b" \t":
                return False
            i -= 1
        return False

    # --- values -------------------------------------------------------------------------------------------
    def value(self, *, top: bool = False) -> Any:
        c = self.skip()
        at = self.pos
        if c is None:
            raise self.error("Empty input", self.n) if top else self.eof()
        if c == 0x7B:  # {
            return self.obj()
        if c == 0x5B:  # [
            return self.array()
        if c == 0x22:  # "
            if self.b[at + 1 : at + 3] == b'""':
                return self.triple()
            return self.concatenation()
        for word, result in ((b"true", True), (b"false", False), (b"null", None)):
            if c == word[0]:
                if self.b[at : at + len(word)] != word:
                    raise self.error("unknown identifier", at)
                self.pos += len(word)
                return result
        if c == 0x2D or 0x30 <= c <= 0x39:
            return self.number()
        if c == 0x7D:
            raise self.error("'}' can only be used to end an object", at)
        if c == 0x60:  # `
            return self.length_prefixed()
        raise self.error(f"Unexpected character '{self.shown(at)}'", at)

    def obj(self) -> dict[str, Any]:
        start = self.pos
        self.pos += 1
        out: dict[str, Any] = {}
        b = self.b
        while True:
            c = self.skip()
            if c is None:
                raise self.error("Need '}' for end of object", start)
            if c == 0x22:
                key = self.string()
            elif c in _IDENT_START:
                i = self.pos
                while i < self.n and b[i] in _IDENT:
                    i += 1
                key = b[self.pos : i].decode("ascii")
                self.pos = i
                if i >= self.n:
                    raise self.error("Need '}' for end of object", start)
                if b[i] > 32 and b[i] != 0x3A:
                    raise self.error(
                        f"To use character '{self.shown(i)}' in an attribute name, you must place the attribute"
                        " name in double-quotes",
                        i,
                    )
            elif c == 0x7D:
                self.pos += 1
                return out
            else:
                raise self.error("Expected string literal for object attribute name", self.pos)
            c = self.skip()
            if c is None:
                raise self.eof(" (expected ':' after an attribute name)")
            if c != 0x3A:
                raise self.error("Expected ':' delimiting object attribute value", self.pos)
            self.pos += 1
            out[key] = self.value()  # a repeated key: the last value wins, as in the agent's JsonObject
            self.separator(
                0x7D,
                "Need '}' for end of object",
                start,
                "After object field, expected ',' or '}}' but found '{}'... are you missing a comma?",
            )

    def array(self) -> list[Any]:
        start = self.pos
        self.pos += 1
        out: list[Any] = []
        while True:
            if self.skip() == 0x5D:
                self.pos += 1
                return out
            out.append(self.value())
            self.separator(
                0x5D,
                "Array has no terminating ']'",
                start,
                "Unexpected character [{}] in array... are you missing a comma?",
            )

    def separator(self, close: int, unclosed: str, start: int, missing_comma: str) -> None:
        """After a member of an object or array: a ``,`` (passed over), the closing ``close`` (left for the loop
        to see), or a line break, which the agent's parser takes for a comma. ``missing_comma`` is formatted with
        the character found instead."""
        c = self.skip()
        if c is None:
            raise self.error(unclosed, start)
        if c == close:
            return
        if c == 0x2C:
            self.pos += 1
        elif not self.preceding_line_break():
            raise self.error(missing_comma.format(self.shown(self.pos)), self.pos)

    def concatenation(self) -> str:
        parts = [self.string()]
        while self.skip() == 0x2B:  # +
            self.pos += 1
            if self.skip() != 0x22:
                if self.pos >= self.n:
                    raise self.eof(" (expected a string literal after +)")
                raise self.error("Expected string literal after + operator", self.pos)
            parts.append(self.string())
        return "".join(parts)

    def string(self) -> str:
        """A "..." literal; the scanner is at its opening quote."""
        return self.literal(1)

    def triple(self) -> str:
        """A triple-quoted literal, which may span lines; the scanner is at its first quote."""
        return self.literal(3)

    def literal(self, quotes: int) -> str:
        """A string literal between ``quotes`` double quotes (1 or 3); only a triple-quoted one may hold a line
        break."""
        b, n = self.b, self.n
        start = self.pos
        close = b'"' * quotes
        i = start + quotes
        while True:
            if i >= n:
                raise self.error("string literal not terminated", start)
            c = b[i]
            if c == 0x22 and b[i : i + quotes] == close:
                break
            if c == 0x5C:
                if i + 1 >= n:
                    raise self.error("incomplete backslash sequence", i)
                i += 2
                continue
            if quotes == 1 and c in b"\r\n":
                raise self.error("string literal not terminated before end of line", i)
            i += 1
        self.pos = i + quotes
        return self.escapes(start + quotes, i)

    def escapes(self, lo: int, hi: int) -> str:
        raw = self.b[lo:hi]
        s = raw.decode("utf-8", "replace")
        if "\\" not in s:
            return s
        out: list[str] = []
        i, n = 0, len(s)

        def at(k: int) -> int:  # byte offset of character k of s (for the error position)
            return lo + len(s[:k].encode("utf-8", "surrogatepass"))

        while i < n:
            c = s[i]
            if c != "\\":
                j = s.find("\\", i)
                j = n if j < 0 else j
                out.append(s[i:j])
                i = j
                continue
            if i + 1 >= n:
                raise self.error("No character after escape", at(i))
            e = s[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
            elif e == "u" and i + 6 <= n:
                digits = s[i + 2 : i + 6]
                if not all(d in _HEX for d in digits):
                    raise self.error(f"Invalid \\u escape [{digits}]: expected 4 hex digits", at(i))
                out.append(chr(int(digits, 16)))
                i += 6
            else:
                raise self.error(f"Unexpected backslash escape [{e}]", at(i + 1))
        text = "".join(out)
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def number(self) -> int | float:
        b, n = self.b, self.n
        start = self.pos
        i = start
        sign = 1
        buf = bytearray()
        while i < n and b[i] in _NUMBER_CHARS:
            if len(buf) >= MAX_NUMBER_CHARS:
                raise self.error(f"numeric literal too long (limit {MAX_NUMBER_CHARS} characters)", i)
            if b[i] == 0x2D and not buf:
                sign = -1  # a minus before any digit is the sign, never part of the literal (the agent's rule)
            else:
                buf.append(b[i])
            i += 1
        self.pos = i
        text = buf.decode("ascii")
        if (text.isdigit() and len(text) <= 18) or not text:
            return sign * int(text or "0")
        if not any(ch in text for ch in ".eE"):
            try:
                return sign * int(text)
            except ValueError:
                raise self.error(f"Could not parse number as long '{text}'", start) from None
        try:
            return sign * float(text)
        except ValueError:
            raise self.error(f"Could not parse number as float '{text}'", start) from None

    def length_prefixed(self) -> str:
        start = self.pos
        if self.b[start + 1 : start + 2] != b"s":
            raise self.error("unsupported back-tick format.  Only supports length prefixed string (`s)", start)
        if start + 6 > self.n:
            raise self.eof(" (in a length-prefixed string)")
        (length,) = struct.unpack(">i", self.b[start + 2 : start + 6])
        if length < 0 or start + 6 + length > self.n:
            raise self.eof(" (in a length-prefixed string)")
        raw = self.b[start + 6 : start + 6 + length]
        self.pos = start + 6 + length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error("length-prefixed string is not UTF-8", start + 6 + exc.start) from None
