"""Turn a chunk of file bytes into a batch payload: complete lines only, long lines cut, then (when the
log has rules) line grouping, sampling and redaction, in the Scalyr agent's order.

The caller reads from an offset that always sits on a boundary (end of a line, start of an open group or
the cut point of an over-long line) and moves it by ``consumed``. Nothing here keeps state between chunks:
whatever is not consumed is read again next time, so the result never depends on where chunks end.

Units. A chunk is split into units: complete lines, and the pieces of lines longer than
``max_line_size`` (as in the Scalyr agent, whose line reader hands such pieces on as lines). Pieces end on
a UTF-8 character boundary and, when the log has redaction rules, never inside a redaction match, so a
secret is not split in two halves that no rule recognises: a piece ends before a match that would straddle
its end, and a match longer than a piece is one piece of its own (longer than ``max_line_size`` as read,
short once replaced). A match that runs past the end of the chunk leaves its piece undecided: it is read
again with what follows (``Cut.open_match`` when nothing before it could be consumed; the caller then
uses ``cut_through``). A group never grows past ``max_line_size``: it ends before the unit that would make
it longer, and that unit is looked at afresh.

Speed. Without rules the complete lines are queued as read: rfind, find and count over the chunk, no
Python work per line. With rules, each pattern first runs once over the whole chunk's text with
re.MULTILINE: where it finds nothing, it finds nothing in any line or group of the chunk, and only the
lines near its hits are looked at one by one. Patterns whose meaning is not preserved over a whole text
(\\A, \\Z, negative lookaround, atomic groups, possessive quantifiers) always run line by line. Events are
queued as raw lines unless a group or a sample rate needs the JSON form.
"""

from __future__ import annotations

import json
import operator
import random
import re
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from functools import partial
from itertools import accumulate, compress, repeat, starmap
from json.encoder import encode_basestring_ascii as _enc  # type: ignore[attr-defined]
from typing import Any

from shipctl import regex
from shipctl.config import LineGrouper, LogConfig, RedactionRule
from shipctl.model import FMT_JSON, FMT_RAW
from shipctl.records import record
from shipctl.tail.files import LOOKAHEAD as LOOKAHEAD
from shipctl.tail.files import read_size as read_size  # re-exported: preview and the tests read it here

# How a unit ends: a cut inside a long line, a newline, or the end of a partial line sent as it is.
PIECE, LINE, LAST = 0, 1, 2


# A chunk as read: a bytearray when the follower reads into a buffer it reuses (Source.read_into).
Chunk = bytes | bytearray


@record
class Cut:
    # A view into the chunk where the lines go out as read (no copy of ~1 MiB per chunk): valid until the
    # caller reads into that chunk's buffer again.
    payload: bytes | bytearray | memoryview = b""
    fmt: str = FMT_RAW
    n_events: int = 0
    consumed: int = 0
    lines: int = 0  # physical lines consumed (a line counts when its end is consumed)
    lines_dropped: int = 0
    bytes_dropped: int = 0  # consumed bytes of dropped events, newlines included
    redactions: int = 0
    # A redaction match starts the undecided rest of the chunk and runs to its end: nothing can be sent
    # before more of it is known (see cut_through).
    open_match: bool = False


def _head(chunk: Chunk, end: int) -> bytes | memoryview:
    """The first ``end`` bytes: a view when the chunk is a reused read buffer (no copy of ~1 MiB per chunk),
    else bytes as before."""
    return memoryview(chunk)[:end] if type(chunk) is bytearray else chunk[:end]  # type: ignore[return-value]


_UNSAFE_WIDE = re.compile(r"\\[AZ]|\(\?<?!|\(\?>|[*+?}]\+")


@record(frozen=True)
class _Wide:
    """A per-line pattern made into one search over a whole chunk's text (re.MULTILINE).

    Every match the pattern has in a line (or group) is also a match of the whole text at the same place,
    or lies inside an earlier match of it; so the units that overlap the whole text's matches include
    every unit the pattern matches. Grouper patterns see a line with its newline: for ``$`` and ``\\B``
    to still hold after that newline, they search a text with every newline doubled. A leading ``^``
    becomes a newline before the text's lines, which the regex engine finds far faster."""

    pattern: re.Pattern[str]
    doubled: bool
    line_start: bool


def _wide(pattern: re.Pattern[str], *, grouper: bool) -> _Wide | None:
    """None where a miss over the whole text would not prove a miss in each line: anchors to the ends of
    the string, negative lookaround, atomic groups and possessive quantifiers."""
    src = pattern.pattern
    if _UNSAFE_WIDE.search(src):
        return None
    doubled = grouper and ("$" in src or "\\B" in src)
    line_start = src.startswith("^") and not pattern.flags & re.VERBOSE
    mod = regex.module_of(pattern)  # the same engine as the rule: a pattern on RE2 must not backtrack here
    try:
        compiled = mod.compile("\n" + src[1:] if line_start else src, pattern.flags | mod.MULTILINE)
    except Exception:  # re.error, or re2's
        line_start, compiled = False, mod.compile(src, pattern.flags | mod.MULTILINE)
    return _Wide(compiled, doubled, line_start)


_REGEX_SYNTAX = frozenset(".^$*+?{}[]\\|()#")


def _literal(pattern: re.Pattern[str]) -> str | None:
    """The text a pattern searches for when it is plain text (no regex syntax, no flag that changes what a
    character matches): then ``pattern.search(s)`` finds a match exactly when ``text in s``."""
    src = pattern.pattern
    if not isinstance(pattern, re.Pattern) or not src or not _REGEX_SYNTAX.isdisjoint(src):
        return None
    if pattern.flags & (re.IGNORECASE | re.VERBOSE | re.LOCALE):
        return None
    return src


class _Units:
    """The units of one chunk: their bytes (without newline), decoded texts and how each ends, computed
    only when asked for; and the decoded text of them all for the whole-chunk searches (None when the
    chunk has pieces of long lines: then every pattern runs per unit)."""

    def __init__(
        self,
        data: Chunk,
        *,
        region: int = 0,
        partial: bool = False,
        raw: list[bytes] | None = None,
        terms: list[int] | None = None,
    ) -> None:
        self.data = data  # the chunk; units are laid out in it from offset 0
        self.terms = terms  # None: every unit is a line ending in a newline, but a LAST one when ``partial``
        self.partial = partial
        self._raw = raw
        self._texts: list[str] | None = None
        self.text: str | None = None
        self._variants: dict[tuple[bool, bool], str] = {}
        self._starts: list[int] | None = None
        self._offsets: list[int] | None = None
        self._asked = 0
        self.open_match = False  # see Cut.open_match
        if terms is None:
            self.region = region  # bytes of the chunk the units cover
            self.text = str(memoryview(data)[:region], "utf-8", "replace")  # no copy of the chunk first
            # Every rule looks at the lines' texts: split now, and count the units from that rather than with
            # a count of the bytes (decoding never makes or takes a newline, so the two agree).
            self._texts = self.text.split("\n")
            if not partial:
                self._texts.pop()
            self.n = len(self._texts)
        else:
            assert raw is not None
            self.n = len(raw)
            self.region = sum(map(len, raw)) + terms.count(LINE)

    @property
    def raw(self) -> list[bytes]:
        if self._raw is None:
            self._raw = self.data[: self.region].split(b"\n")
            if not self.partial:
                self._raw.pop()
        return self._raw

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            if self.text is not None:
                self._texts = self.text.split("\n")
                if not self.partial:
                    self._texts.pop()
            else:
                self._texts = [r.decode("utf-8", "replace") for r in self.raw]
        return self._texts

    def term(self, k: int) -> int:
        if self.terms is not None:
            return self.terms[k]
        return LAST if self.partial and k == self.n - 1 else LINE

    def _last_start(self) -> int:
        return self.data.rfind(b"\n", 0, self.region - (not self.partial)) + 1

    def text_of(self, k: int) -> str:
        if self._texts is None and k == self.n - 1 and self.text is not None:
            end = len(self.text) - (not self.partial)
            return self.text[self.text.rfind("\n", 0, end) + 1 : end]
        return self.texts[k]

    def gtext(self, k: int) -> str:
        """What a grouper pattern sees: the line with its newline, as the Scalyr agent matches it."""
        return self.text_of(k) + "\n" if self.term(k) == LINE else self.text_of(k)

    def raw_len(self, k: int) -> int:
        if self._raw is None and k == self.n - 1:
            return self.region - self._last_start() - (not self.partial)
        return len(self.raw[k])

    def offset(self, k: int) -> int:
        """Byte offset of unit k in the chunk."""
        if k == self.n:
            return self.region
        if k == 0:
            return 0
        if self._raw is None and self.terms is None and k == self.n - 1:
            return self._last_start()
        if self._offsets is None:
            self._asked += 1
            if self._asked < 4:  # usually only the stop point is asked for
                lines = k if self.terms is None else self.terms[:k].count(LINE)
                return sum(map(len, self.raw[:k])) + lines
            ends = [LINE] * self.n if self.terms is None else self.terms
            sizes = map(operator.add, map(len, self.raw), map(LINE.__eq__, ends))
            self._offsets = list(accumulate(sizes, initial=0))
        return self._offsets[k]

    def lines(self, i: int, j: int) -> int:
        return j - i if self.terms is None else j - i - self.terms[i:j].count(PIECE)

    def size(self, i: int, j: int) -> int:
        """Consumed bytes of units i..j-1, newlines included."""
        return self.offset(j) - self.offset(i)

    def join(self, i: int, j: int) -> str:
        texts = self.texts
        if self.terms is None:
            return "\n".join(texts[i:j])
        head = "".join(texts[k] + ("\n" if self.terms[k] == LINE else "") for k in range(i, j - 1))
        return head + texts[j - 1]

    def _text(self, w: _Wide) -> str:
        assert self.text is not None
        key = (w.doubled, w.line_start)
        if key not in self._variants:
            text = self.text.replace("\n", "\n\n") if w.doubled else self.text
            self._variants[key] = "\n" + text if w.line_start else text
        return self._variants[key]

    def any(self, w: _Wide | None) -> bool:
        """Whether the pattern could match some unit (True when the whole text cannot tell)."""
        if w is None or self.text is None:
            return True
        return w.pattern.search(self._text(w)) is not None

    def _unit_starts(self, doubled: bool) -> list[int]:
        if self._starts is None:
            self._starts = list(map(operator.add, accumulate(map(len, self.texts), initial=0), range(self.n + 1)))
        return list(map(operator.add, self._starts, range(self.n + 1))) if doubled else self._starts

    def hits(self, w: _Wide | None) -> set[int] | None:
        """Units the pattern could match (a superset); None: any of them."""
        if w is None or self.text is None:
            return None
        found: set[int] = set()
        if not self.n:
            return found
        limit = self.n // 16 + 16  # past this, looking at each unit costs little more than mapping the hits
        shift = w.line_start
        starts: list[int] = []
        text, last = self.text, self.n - 1
        at = seen = 0  # newlines in text[:at]: matches come in order, so each stretch is counted once
        for count, m in enumerate(w.pattern.finditer(self._text(w))):
            if w.doubled:
                if not starts:
                    starts = self._unit_starts(True)
                a = bisect_right(starts, max(0, m.start() - shift), 0, self.n) - 1
                b = bisect_right(starts, max(0, m.end() - shift), a, self.n) - 1
            else:
                # Unit k starts after the k-th newline: the unit of a position is the count of newlines before
                # it (one C count over the stretch since the last match, instead of a table of unit starts).
                p = max(0, m.start() - shift)
                seen += text.count("\n", at, p)
                a = min(seen, last)
                q = max(p, m.end() - shift)
                seen += text.count("\n", p, q)
                at = q
                b = min(seen, last)
            found.update(range(a, b + 1))
            if len(found) > limit or count > 2 * limit or (count >= 64 and a < 16 * count):
                return None  # dense from the start: do not map the rest
        return found


class Pipeline:
    def __init__(self, log: LogConfig, *, rng: random.Random | None = None, prefilter: bool = True) -> None:
        """``prefilter=False`` runs every pattern on every unit (the reference the fast way is tested against)."""
        self.log = log
        self.max = log.max_line_size
        self.rules = log.has_rules
        self.rng = rng or random.Random()
        self.groupers = log.line_groupers
        self.sampling = log.sampling_rules
        self.redaction = log.redaction_rules
        self.redactors = [_redactor(r) for r in log.redaction_rules]
        on = prefilter
        self._wide_start = [_wide(g.start, grouper=True) if on else None for g in self.groupers]
        self._wide_cont = [_wide(g.pattern, grouper=True) if on else None for g in self.groupers]
        self._wide_sample = [_wide(r.match_expression, grouper=False) if on else None for r in self.sampling]
        self._wide_redact = [_wide(r.match_expression, grouper=False) if on else None for r in self.redaction]
        self._sample_literal = [_literal(r.match_expression) if on else None for r in self.sampling]

    def cut(self, chunk: Chunk, *, at_eof: bool, flush: bool) -> Cut:
        """``at_eof``: nothing follows ``chunk`` in the file now. ``flush``: a trailing partial line or
        open group may be sent as it is (its wait is over, or the file is finished)."""
        final = at_eof and flush
        end = chunk.rfind(b"\n") + 1
        if len(chunk) - end > self.max or self._has_long_line(chunk, end):
            units = self._pieces_units(chunk, end, final)
            out = self._process(units, final)
            out.open_match = units.open_match and not out.consumed
            return out
        partial = final and end < len(chunk)
        if not self.rules:
            # Fast path: the complete lines go to the queue as they are, untouched one by one.
            n = chunk.count(b"\n", 0, end) + partial
            payload = chunk + b"\n" if partial else _head(chunk, end)
            return Cut(payload=payload, n_events=n, consumed=len(chunk) if partial else end, lines=n)
        return self._process(_Units(chunk, region=len(chunk) if partial else end, partial=partial), final)

    def cut_through(self, chunk: Chunk, beyond: int, *, newline: bool) -> Cut:
        """The cut when ``cut`` gave ``open_match`` for a chunk that is a whole read: a redaction match runs
        past everything read at once. The match is taken to end where the chunk does and replaced there;
        the ``beyond`` bytes that follow the chunk up to the end of its line (and the newline, if the line
        has one yet) are consumed and not sent: where the match really ends cannot be told without them,
        and sending any of them could send the rest of the secret."""
        out = self.cut(chunk + b"\n" if newline else chunk, at_eof=True, flush=True)
        assert out.consumed == len(chunk) + newline, "a final cut consumes everything"
        out.consumed += beyond
        out.bytes_dropped += beyond
        return out

    def _has_long_line(self, chunk: Chunk, end: int) -> bool:
        if end <= self.max:
            return False
        # A line longer than max covers a whole aligned block of half that size: only blocks without a
        # newline need a closer look (a few find() calls per MiB instead of a split).
        block = (self.max + 1) // 2
        if end // block > 1000:
            return max(map(len, chunk[:end].split(b"\n"))) > self.max
        for b in range(0, end - block + 1, block):
            if chunk.find(b"\n", b, b + block) < 0:
                return max(map(len, chunk[:end].split(b"\n"))) > self.max
        return False

    # --- units -----------------------------------------------------------------------------------
    def _pieces_units(self, chunk: Chunk, end: int, final: bool) -> _Units:
        raw: list[bytes] = []
        terms: list[int] = []
        lines = chunk[:end].split(b"\n")
        lines.pop()
        for line in lines:
            if len(line) > self.max:
                prev = 0
                for k in self._piece_ends(line, complete=True)[0]:  # the whole line is known: all decided
                    raw.append(line[prev:k])
                    terms.append(PIECE)
                    prev = k
                line = line[prev:]
            raw.append(line)
            terms.append(LINE)
        rest = chunk[end:]
        open_match = False
        if rest:
            prev = 0
            ends, open_match = self._piece_ends(rest, complete=final)
            for k in ends:
                raw.append(rest[prev:k])
                terms.append(PIECE)
                prev = k
            if final:
                raw.append(rest[prev:])
                terms.append(LAST)
        units = _Units(chunk, raw=raw, terms=terms)
        units.open_match = open_match
        return units

    def _piece_ends(self, line: bytes, *, complete: bool) -> tuple[list[int], bool]:
        """Where to cut a long line: each piece at most max_line_size bytes (but a redaction match longer
        than that, kept whole), the last one holding the rest. When the line is not ``complete`` only pieces
        that more bytes cannot change are returned (at least one byte stays for the last piece, and with
        redaction rules a look past the cut is needed); the flag says a redaction match that starts the
        rest runs to the end of what is known."""
        ends: list[int] = []
        start, n = 0, len(line)
        while n - start > self.max:
            k = start + self.max
            b = k  # back off to the start of a UTF-8 character, unless this is not UTF-8 at all
            while b > k - 3 and b > start + 1 and line[b] & 0xC0 == 0x80:
                b -= 1
            if line[b] & 0xC0 != 0x80:
                k = b
            if self.redactors:
                if not complete and n < k + LOOKAHEAD:
                    break
                cut = self._clear_of_secrets(line, start, k, complete)
                if cut is None:
                    return ends, True
                if cut >= n:
                    break  # a match runs to the end of the line: the rest is the last piece
                k = cut
            ends.append(k)
            start = k
        return ends, False

    def _clear_of_secrets(self, line: bytes, start: int, k: int, complete: bool) -> int | None:
        """Where to end the piece that starts at ``start`` instead of at ``k`` so that no redaction match is
        cut: back at the start of a match that would straddle k (of the first of a run of overlapping
        matches); or, when such a run starts the piece (a secret longer than a piece), past k at its end, so
        that it is replaced whole. None: that run reaches the end of what is known of a line not ``complete``."""
        n = len(line)
        stop = min(n, k + LOOKAHEAD)
        while True:
            text = line[start:stop].decode("utf-8", "surrogateescape")
            c = len(line[start:k].decode("utf-8", "surrogateescape"))
            if text[:c].encode("utf-8", "surrogateescape") != line[start:k]:
                return k  # not UTF-8 around the cut: no match can be placed
            hits = [m for rule in self.redaction if (m := _straddling(rule.match_expression, text, c))]
            if not hits:
                return k  # (the usual case: a match inside the piece, or none, costs no list of spans)
            first = min(m.start() for m in hits)
            settled = len(self.redaction) == 1  # the matches of one rule never overlap
            if first > 0 and not settled:
                # Matches of different rules may: back off past those too (a few steps; a long run of them is
                # left to the merge below).
                for _ in range(8):
                    hits = [m for rule in self.redaction if (m := _straddling(rule.match_expression, text, first))]
                    if not hits:
                        settled = True
                        break
                    first = min(m.start() for m in hits)
                    if first == 0:
                        break
            if first > 0 and settled:
                return start + len(text[:first].encode("utf-8", "surrogateescape"))
            spans = sorted(
                m.span() for rule in self.redaction for m in rule.match_expression.finditer(text) if m.end() > m.start()
            )
            # Runs of matches that overlap: no cut may fall strictly inside one.
            first = last = -1
            for a, e in spans:
                if a >= c:
                    break
                if a < last:
                    last = max(last, e)
                else:
                    first, last = a, e
            if not first < c < last:
                return k
            if first > 0:
                return start + len(text[:first].encode("utf-8", "surrogateescape"))
            for a, e in spans:  # the run starts the piece: it ends where no later match overlaps it
                if a >= last:
                    break
                last = max(last, e)
            end = start + len(text[:last].encode("utf-8", "surrogateescape"))
            if end + LOOKAHEAD <= stop or (stop == n and complete):
                return end
            if stop == n:
                return None  # the match may go on in bytes not written or not read yet
            stop = min(n, start + 2 * (stop - start))  # look further for where the match ends

    # --- grouping, sampling, redaction -----------------------------------------------------------
    def _process(self, u: _Units, final: bool) -> Cut:
        if not self.rules:
            payload = b"\n".join(u.raw) + b"\n" if u.n else b""  # the pieces of long lines, one per line
            return Cut(payload=payload, n_events=u.n, consumed=u.offset(u.n), lines=u.lines(0, u.n))
        groups, stop = self._group(u, final)
        out = Cut(consumed=u.offset(stop), lines=u.lines(0, stop))
        msgs, event_of, units_of = self._messages(u, groups, stop)
        dropped, rates = self._sample(u, msgs, event_of)
        if dropped:
            if groups or u.terms is not None:
                for e in dropped:
                    i, j = units_of(e)
                    out.lines_dropped += u.lines(i, j)
                    out.bytes_dropped += u.size(i, j)
            else:  # one line per event, each with its newline but a partial last one
                out.lines_dropped = len(dropped)
                # ASCII text has as many characters as bytes: no split of the chunk into bytes lines for this.
                lines = msgs if u.text is not None and u.text.isascii() else u.raw
                out.bytes_dropped = sum(map(len, map(lines.__getitem__, dropped))) + len(dropped)
                out.bytes_dropped -= u.partial and u.n - 1 in dropped
            keep = bytearray(b"\x01") * len(msgs)
            deque(map(keep.__setitem__, dropped, repeat(0)), maxlen=0)  # keep[e] = 0 for each, in C
            kept_at: list[int] | None = list(compress(range(len(msgs)), keep))
            msgs = list(compress(msgs, keep))
        else:
            kept_at = None  # event e is msgs[e]
        changed = self._redact(u, msgs, event_of, kept_at, out)
        if not (groups or dropped or rates or changed) and u.terms is None:
            # Nothing to change: the lines go out exactly as read.
            out.payload = u.data[: out.consumed] + b"\n" if u.partial and stop == u.n else _head(u.data, out.consumed)
            out.n_events = stop
            return out
        out.n_events = len(msgs)
        if not msgs:
            return out
        if not (rates or groups):
            joined = "\n".join(msgs)
            if joined.count("\n") == len(msgs) - 1:  # unless a replacement wrote a newline
                out.payload = (joined + "\n").encode()
                return out
        out.fmt = FMT_JSON
        if rates and kept_at is not None:
            rates = {bisect_left(kept_at, e): rate for e, rate in rates.items()}
        # Redacted events are checked as one joined text: one C pass, not a Python call per event (a rule that
        # rewrites every line changes them all).
        plain = u.text is not None and _orjson_safe(u.text) and _orjson_safe("".join(map(msgs.__getitem__, changed)))
        out.payload = _json_events_fast(msgs, rates) if plain else _json_events(msgs, rates)
        return out

    def _group(self, u: _Units, final: bool) -> tuple[list[tuple[int, int]], int]:
        """Events of more than one unit, as (first, end) in order, and the first unit that must wait (the
        start of a group still open at the end of the chunk)."""
        if not self.groupers or not u.n:
            return [], u.n
        cands: set[int] | None = set()
        for g, wide_start, wide_cont in zip(self.groupers, self._wide_start, self._wide_cont, strict=True):
            if not u.any(wide_start):
                continue  # this grouper starts no group in this chunk
            if g.mode == "continue_through":
                # A group of two or more needs a second line that matches; else only the last line may
                # start a group that is still open.
                conts = u.hits(wide_cont)
                if conts is None:
                    cands = None
                    break
                assert cands is not None
                cands.update(k - 1 for k in conts if k)
                cands.add(u.n - 1)
            else:
                starts = u.hits(wide_start)
                if starts is None:
                    cands = None
                    break
                assert cands is not None
                cands |= starts
        groups: list[tuple[int, int]] = []
        after = 0  # units before this are decided
        for i in range(u.n) if cands is None else sorted(cands):
            if i < after:
                continue
            text = u.gtext(i)
            starter = next((g for g in self.groupers if g.start.search(text)), None)
            if starter is None:
                continue
            j, done = self._extent(starter, u, i, final)
            if not done:
                return groups, i
            if j - i > 1:
                groups.append((i, j))
            after = j
        return groups, u.n

    def _extent(self, g: LineGrouper, u: _Units, i: int, final: bool) -> tuple[int, bool]:
        """Units i..j-1 form the group started at i; ``done`` is False while more units could still join."""
        pat, mode = g.pattern, g.mode
        size = u.raw_len(i)
        j = i + 1
        while j < u.n:
            hit = pat.search(u.gtext(j)) is not None
            if mode == "continue_through":
                joins, last = hit, False
            elif mode == "continue_past":
                joins, last = True, not hit
            elif mode == "halt_before":
                joins, last = not hit, False
            else:  # halt_with
                joins, last = True, hit
            size += u.raw_len(j) + (u.term(j - 1) == LINE)
            if not joins or size > self.max:
                return j, True  # over the limit: the group ends here and unit j is looked at afresh
            j += 1
            if last:
                return j, True
        return j, final

    def _messages(
        self, u: _Units, groups: list[tuple[int, int]], stop: int
    ) -> tuple[list[str], Callable[[int], int], Callable[[int], tuple[int, int]]]:
        """Event texts, and the maps unit -> event and event -> units."""
        if not groups:
            return u.texts[:stop], _same, _alone
        msgs: list[str] = []
        firsts: list[int] = []  # event index of each group
        absorbed: list[int] = []  # units folded into earlier events, up to the end of each group
        prev = total = 0
        for i, j in groups:
            msgs += u.texts[prev:i]
            firsts.append(len(msgs))
            msgs.append(u.join(i, j))
            total += j - i - 1
            absorbed.append(total)
            prev = j
        msgs += u.texts[prev:stop]
        starts = [i for i, _ in groups]

        def event_of(k: int) -> int:
            g = bisect_right(starts, k) - 1
            if g < 0:
                return k
            if k < groups[g][1]:
                return firsts[g]
            return k - absorbed[g]

        def units_of(e: int) -> tuple[int, int]:
            g = bisect_right(firsts, e) - 1
            if g < 0:
                return e, e + 1
            if firsts[g] == e:
                return groups[g]
            k = e + absorbed[g]
            return k, k + 1

        return msgs, event_of, units_of

    def _events_hit(self, u: _Units, wide: _Wide | None, event_of: Callable[[int], int]) -> set[int] | None:
        hits = u.hits(wide)
        return hits if hits is None or event_of is _same else {event_of(k) for k in hits}

    def _sample(self, u: _Units, msgs: list[str], event_of: Callable[[int], int]) -> tuple[set[int], dict[int, float]]:
        """Events dropped, and the rate of those kept by a rule with a rate below 1. The first rule that
        matches an event decides; each rule runs on the events not decided yet that it may match."""
        dropped: set[int] = set()
        rates: dict[int, float] = {}
        decided: set[int] = set()
        n = len(msgs)
        for rule, wide, literal in zip(self.sampling, self._wide_sample, self._sample_literal, strict=True):
            hits = self._events_hit(u, wide, event_of)
            pat, rate = rule.match_expression, rule.sampling_rate
            if hits is None and literal is not None:
                # Dense hits (a /health rule matches ~1 line in 7): a substring test per event, in C, costs
                # ~60% of a regex search per event, which also makes a Match object for each hit.
                matched = list(compress(range(n), map(operator.contains, msgs, repeat(literal))))
            elif hits is None:
                matched = list(compress(range(n), map(pat.search, msgs)))
            else:
                matched = [e for e in sorted(hits) if e < n and pat.search(msgs[e])]
            if decided:
                matched = [e for e in matched if e not in decided]
            decided.update(matched)
            if rate <= 0:
                dropped.update(matched)
            elif rate < 1:
                # One draw per matched event, in order, as a loop would take them, but drawn and compared in C
                # (a /health rule matches ~1 line in 7 of an access log: a Python loop cost ~10% of the run).
                draws = list(starmap(self.rng.random, repeat((), len(matched))))
                below = float(rate).__gt__  # draw < rate: kept
                rates.update(dict.fromkeys(compress(matched, map(below, draws)), rate))
                dropped.update(compress(matched, map(operator.not_, map(below, draws))))
        return dropped, rates

    def _redact(
        self, u: _Units, msgs: list[str], event_of: Callable[[int], int], kept_at: list[int] | None, out: Cut
    ) -> set[int]:
        """Apply the rules in order to the kept events ``msgs`` (event kept_at[k] is msgs[k]); each rule
        runs on the events it may match and on those an earlier rule changed."""
        changed: set[int] = set()
        n = len(msgs)
        for redact, wide in zip(self.redactors, self._wide_redact, strict=True):
            hits = self._events_hit(u, wide, event_of)
            if hits is None:
                results = list(map(redact, msgs))
                counts = list(map(operator.itemgetter(1), results))
                msgs[:] = map(operator.itemgetter(0), results)
                out.redactions += sum(counts)
                changed.update(compress(range(n), counts))
                continue
            if kept_at is not None and hits:
                hits = {k for e in hits if (k := bisect_left(kept_at, e)) < n and kept_at[k] == e}
            for k in sorted(hits | changed):
                if k < n:
                    new, count = redact(msgs[k])
                    if count:
                        msgs[k] = new
                        changed.add(k)
                        out.redactions += count
        return changed


def _straddling(pattern: re.Pattern[str], text: str, c: int) -> re.Match[str] | None:
    """The match of ``pattern`` in ``text`` that starts before ``c`` and ends after it, if any."""
    for m in pattern.finditer(text):
        if m.start() >= c:
            return None
        if m.end() > c:
            return m
    return None


def _json_events(msgs: list[str], rates: dict[int, float]) -> bytes:
    """The JSON array of {"m": message, "a": attrs?} objects, without a dict per event (map over a C
    function: no Python call per event)."""
    items = list(map(_enc, msgs))
    attrs: dict[float, str] = {}
    for k, rate in rates.items():
        if rate not in attrs:  # json.dumps once per rate, not once per sampled event
            attrs[rate] = ',"a":{"sample_rate":' + json.dumps(rate) + "}"
        items[k] += attrs[rate]
    return ('[{"m":' + '},{"m":'.join(items) + "}]").encode()


def _orjson_safe(text: str) -> bool:
    """Whether orjson writes this text as json's ensure_ascii escaper does: ASCII only (orjson writes other
    characters as UTF-8, not as \\u escapes) and no DEL (the one ASCII character json escapes and orjson
    does not). isascii is O(1) on str; the DEL check is one memchr."""
    return text.isascii() and "\x7f" not in text


_orjson: Any = None  # the module once imported; False: not installed


def _json_events_fast(msgs: list[str], rates: dict[int, float]) -> bytes:
    """``_json_events`` for messages that pass ``_orjson_safe``, byte for byte the same: orjson escapes a
    chunk's messages ~10x faster than one encode_basestring_ascii call per message and joins them in the
    same pass (json's escaping was ~40% of Pipeline.cut with a sampling rule). Imported here: only logs
    whose rules need the JSON form pay for loading it; without it (a dependency, but an install could lack
    it) json writes the same bytes."""
    global _orjson
    if _orjson is None:
        try:
            import orjson

            _orjson = orjson
        except ImportError:
            _orjson = False
    if _orjson is False:
        return _json_events(msgs, rates)
    orjson = _orjson
    events = [{"m": m} for m in msgs]
    attrs: dict[float, Any] = {}  # orjson.Fragment
    for k, rate in rates.items():
        if rate not in attrs:  # the same text as _json_events writes: json.dumps of the rate
            attrs[rate] = orjson.Fragment(('{"sample_rate":' + json.dumps(rate) + "}").encode())
        events[k]["a"] = attrs[rate]
    return orjson.dumps(events)


def _same(k: int) -> int:
    return k


def _alone(e: int) -> tuple[int, int]:
    return e, e + 1


# An escaped backslash, or \Hn: group n replaced by md5_hex(group + hash_salt).
_HASH_REF = re.compile(r"\\(?:\\|H(\d+))")


@record(frozen=True)
class _Hash:
    group: int


@record(frozen=True)
class _Expand:
    template: str  # expanded by re on each match (where re's template reader is not at hand)


_Part = str | int | _Hash | _Expand  # literal text, a group's text, a group's salted hash


def _template(pattern: re.Pattern[str], template: str) -> list[_Part]:
    """The replacement as literal text and group references, read once: re would read the template again
    for every line, in Python, which costs more than the search itself."""
    parts: list[_Part] = []
    last = 0
    for m in _HASH_REF.finditer(template):
        if m.group(1) is not None:
            parts += _parse_template(pattern, template[last : m.start()])
            parts.append(_Hash(int(m.group(1))))
            last = m.end()
    parts += _parse_template(pattern, template[last:])
    return [p for p in parts if p != "" and p is not None]


def _parse_template(pattern: re.Pattern[str], template: str) -> list[_Part]:
    if not isinstance(pattern, re.Pattern):  # on RE2: re reads the template against the same groups
        pattern = re.compile(pattern.pattern)  # compiling never backtracks; only matching does
    try:
        parsed = re._parser.parse_template(template, pattern)  # type: ignore[attr-defined]
    except Exception:  # a Python whose private reader differs: let re expand it each time
        return [_Expand(template)] if "\\" in template else [template]
    if isinstance(parsed, tuple):  # 3.11: (group slots, literals with None in those slots)
        groups, literals = parsed
        out: list[_Part] = list(literals)
        for index, group in groups:
            out[index] = group
        return out
    return list(parsed)  # 3.12+: literal, group, literal, ...


def _md5_hex(data: bytes) -> str:
    import hashlib  # only logs with \\H rules need it; importing it loads OpenSSL

    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _redactor(rule: RedactionRule) -> Callable[[str], tuple[str, int]]:
    """``pattern.subn`` with the replacement already read (a C-level partial: no Python call per line)."""
    pattern, salt = rule.match_expression, rule.hash_salt
    parts = _template(pattern, rule.replacement)
    if all(type(p) is str for p in parts):
        text = "".join(parts)  # type: ignore[arg-type]
        if "\\" not in text:
            return partial(pattern.subn, text)  # re's own fast path for literal text
        return partial(pattern.subn, lambda _m: text)
    if all(type(p) in (str, int) for p in parts):
        # Literal text and groups only: one str.format per match.
        fmt = "".join(p.replace("{", "{{").replace("}", "}}") if type(p) is str else f"{{{p}}}" for p in parts)  # type: ignore[union-attr]
        return partial(pattern.subn, lambda m: fmt.format(m.group(0), *m.groups("")))

    def replace(m: re.Match[str]) -> str:
        out = []
        for p in parts:
            if type(p) is str:
                out.append(p)
            elif type(p) is int:
                out.append(m.group(p) or "")
            elif isinstance(p, _Hash):
                value = m.group(p.group) or ""
                out.append(_md5_hex((value + salt).encode()))
            else:
                out.append(m.expand(p.template))  # type: ignore[union-attr]
        return "".join(out)

    return partial(pattern.subn, replace)
