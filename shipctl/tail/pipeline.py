"""Turn a chunk of file bytes into a batch payload: complete lines only, long lines cut, then (when the
log has rules) line grouping, sampling and redaction, in the Scalyr agent's order.

The caller reads from an offset that always sits on a boundary (end of a line, start of an open group or
the cut point of an over-long line) and moves it by ``consumed``. Nothing here keeps state between chunks:
whatever is not consumed is read again next time, so the result never depends on where chunks end.

Units. A chunk is split into units: complete lines, and the pieces of lines longer than
``max_line_size`` (as in the Scalyr agent, whose line reader hands such pieces on as lines). Pieces end on
a UTF-8 character boundary and, when the log has redaction rules, never inside a redaction match, so a
secret is not split in two halves that no rule recognises. A group never grows past ``max_line_size``:
it ends before the unit that would make it longer, and that unit is looked at afresh.

Speed. Without rules the complete lines are queued as read (bytes.rfind/split/count only). With rules,
each pattern first runs once over the whole chunk's text with re.MULTILINE: where it finds nothing, it
finds nothing in any line or group of the chunk, and only the lines near its hits are looked at one by
one. Patterns whose meaning is not preserved over a whole text (\\A, \\Z, negative lookaround, atomic
groups, possessive quantifiers) always run line by line.
"""

from __future__ import annotations

import hashlib
import json
import operator
import random
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

from shipctl.config import LineGrouper, LogConfig, RedactionRule
from shipctl.model import FMT_JSON, FMT_RAW

# How far past a cut point a long line is looked at for a redaction match the cut would split.
LOOKAHEAD = 1024

# How a unit ends: a cut inside a long line, a newline, or the end of a partial line sent as it is.
PIECE, LINE, LAST = 0, 1, 2


@dataclass
class Cut:
    payload: bytes = b""
    fmt: str = FMT_RAW
    n_events: int = 0
    consumed: int = 0
    lines: int = 0  # physical lines consumed (a line counts when its end is consumed)
    lines_dropped: int = 0
    bytes_dropped: int = 0  # consumed bytes of dropped events, newlines included
    redactions: int = 0


def read_size(log: LogConfig, batch_bytes: int) -> int:
    """Bytes to read at a time. A chunk must hold a group's first unit and the next one, which may be a
    piece that is only final once LOOKAHEAD bytes past it are known; otherwise a chunk could hold nothing
    that can be decided and the run would make no progress."""
    return max(batch_bytes, 2 * (log.max_line_size + 1) + LOOKAHEAD)


_UNSAFE_WIDE = re.compile(r"\\[AZ]|\(\?<?!|\(\?>|[*+?}]\+")


def _wide(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """The pattern for a search over a whole chunk's text, or None where a miss over the whole text would
    not prove a miss in each line (anchors to the string's ends, negative lookaround, no backtracking)."""
    if _UNSAFE_WIDE.search(pattern.pattern):
        return None
    return re.compile(pattern.pattern, pattern.flags | re.MULTILINE)


class _Units:
    """The units of one chunk: bytes (without newline), decoded text, how each ends, and the chunk's
    decoded text for the whole-chunk searches (None when it has pieces: then everything runs per unit)."""

    def __init__(self, data: bytes, raw: list[bytes], texts: list[str], terms: list[int] | None, partial: bool):
        self.data = data  # the chunk: units are laid out in it from offset 0
        self.raw = raw
        self.texts = texts
        self.terms = terms  # None: all LINE, except the last which is LAST when ``partial``
        self.partial = partial
        self.n = len(raw)
        self.text: str | None = None
        self._starts: list[int] | None = None
        self._text2: str | None = None

    def term(self, k: int) -> int:
        if self.terms is not None:
            return self.terms[k]
        return LAST if self.partial and k == self.n - 1 else LINE

    def gtext(self, k: int) -> str:
        """What a grouper pattern sees: the line with its newline, as the Scalyr agent matches it."""
        return self.texts[k] + "\n" if self.term(k) == LINE else self.texts[k]

    def offset(self, k: int) -> int:
        """Byte offset of unit k in the chunk."""
        if self.terms is None:
            return sum(map(len, self.raw[:k])) + k - (self.partial and k == self.n)
        return sum(map(len, self.raw[:k])) + self.terms[:k].count(LINE)

    def lines(self, i: int, j: int) -> int:
        return j - i if self.terms is None else j - i - self.terms[i:j].count(PIECE)

    def size(self, i: int, j: int) -> int:
        """Consumed bytes of units i..j-1, newlines included."""
        return self.offset(j) - self.offset(i)

    def join(self, i: int, j: int) -> str:
        if self.terms is None:
            return "\n".join(self.texts[i:j])
        return "".join(self.texts[k] + ("\n" if self.terms[k] == LINE else "") for k in range(i, j - 1)) + self.texts[
            j - 1
        ]

    def any(self, wide: re.Pattern[str] | None, *, grouper: bool) -> bool:
        """Whether the pattern could match some unit (True when that cannot be told from the whole text)."""
        if wide is None or self.text is None:
            return True
        return wide.search(self._doubled() if grouper else self.text) is not None

    def _doubled(self) -> str:
        assert self.text is not None
        if self._text2 is None:
            self._text2 = self.text.replace("\n", "\n\n")
        return self._text2

    def hits(self, wide: re.Pattern[str] | None, *, grouper: bool) -> set[int] | None:
        """Units a per-unit search of the pattern could match (a superset); None: any of them.

        Every match of a unit is also a match of the whole text at the same place, or lies inside an
        earlier match of the whole text; so the units that overlap a match of the whole text cover them.
        Grouper patterns see each line with its newline: over a text with every newline doubled, a line
        and its newline are followed by a newline as well, so ``$`` after it still holds."""
        if wide is None or self.text is None:
            return None
        if self._starts is None:
            self._starts = list(map(operator.add, accumulate(map(len, self.texts), initial=0), range(self.n + 1)))
        if grouper:
            text, starts = self._doubled(), list(map(operator.add, self._starts, range(self.n + 1)))
        else:
            text, starts = self.text, self._starts
        found: set[int] = set()
        limit = self.n // 4 + 16  # past this, looking at each unit is as cheap as mapping the hits
        for count, m in enumerate(wide.finditer(text)):
            a = bisect_right(starts, m.start(), 0, self.n) - 1
            b = bisect_right(starts, m.end(), a, self.n) - 1
            found.update(range(a, b + 1))
            if len(found) > limit or count > 2 * limit:
                return None
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
        wide = _wide if prefilter else (lambda _p: None)
        self._wide_start = [wide(g.start) for g in self.groupers]
        self._wide_cont = [wide(g.pattern) for g in self.groupers]
        self._wide_sample = [wide(r.match_expression) for r in self.sampling]
        self._wide_redact = [wide(r.match_expression) for r in self.redaction]

    def cut(self, chunk: bytes, *, at_eof: bool, flush: bool) -> Cut:
        """``at_eof``: nothing follows ``chunk`` in the file now. ``flush``: a trailing partial line or
        open group may be sent as it is (its wait is over, or the file is finished)."""
        final = at_eof and flush
        end = chunk.rfind(b"\n") + 1
        body, rest = chunk[:end], chunk[end:]
        lines: list[bytes] | None = None
        long = False
        if self.rules or len(body) > self.max:
            lines = body.split(b"\n")
            lines.pop()
            long = len(body) > self.max and max(map(len, lines)) > self.max
        if long or len(rest) > self.max:
            if lines is None:
                lines = body.split(b"\n")
                lines.pop()
            return self._process(self._pieces_units(chunk, lines, rest, final), final)
        if not self.rules:
            # Fast path: the complete lines go to the queue as they are, untouched one by one.
            out = Cut(payload=body, n_events=body.count(b"\n"), consumed=end)
            if final and rest:
                out.payload = chunk + b"\n"
                out.n_events += 1
                out.consumed = len(chunk)
            out.lines = out.n_events
            return out
        assert lines is not None
        text = body.decode("utf-8", "replace")
        texts = text.split("\n")
        texts.pop()
        if final and rest:
            lines.append(rest)
            texts.append(rest.decode("utf-8", "replace"))
            text += texts[-1]
        units = _Units(chunk, lines, texts, None, bool(final and rest))
        units.text = text
        return self._process(units, final)

    # --- units -----------------------------------------------------------------------------------
    def _pieces_units(self, chunk: bytes, lines: list[bytes], rest: bytes, final: bool) -> _Units:
        raw: list[bytes] = []
        terms: list[int] = []
        for line in lines:
            if len(line) > self.max:
                prev = 0
                for k in self._piece_ends(line, complete=True):
                    raw.append(line[prev:k])
                    terms.append(PIECE)
                    prev = k
                line = line[prev:]
            raw.append(line)
            terms.append(LINE)
        if rest:
            prev = 0
            for k in self._piece_ends(rest, complete=final):
                raw.append(rest[prev:k])
                terms.append(PIECE)
                prev = k
            if final:
                raw.append(rest[prev:])
                terms.append(LAST)
        texts = [r.decode("utf-8", "replace") for r in raw]
        return _Units(chunk, raw, texts, terms, False)

    def _piece_ends(self, line: bytes, *, complete: bool) -> list[int]:
        """Where to cut a long line: each piece at most max_line_size bytes, the last one holding the rest.
        When the line is not ``complete`` only pieces that more bytes cannot change are returned (at least
        one byte stays for the last piece, and with redaction rules a look past the cut is needed)."""
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
                k = self._clear_of_secrets(line, start, k, min(n, k + LOOKAHEAD))
            ends.append(k)
            start = k
        return ends

    def _clear_of_secrets(self, line: bytes, start: int, k: int, stop: int) -> int:
        """Move cut point k back to the start of a redaction match that would straddle it (unless that
        match starts the piece: a secret longer than a piece cannot be kept whole)."""
        text = line[start:stop].decode("utf-8", "surrogateescape")
        c = len(line[start:k].decode("utf-8", "surrogateescape"))
        if text[:c].encode("utf-8", "surrogateescape") != line[start:k]:
            return k
        best = c
        for rule in self.redaction:
            for m in rule.match_expression.finditer(text):
                if m.start() >= c:
                    break
                if m.end() > c:
                    best = min(best, m.start())
                    break
        if 0 < best < c:
            return start + len(text[:best].encode("utf-8", "surrogateescape"))
        return k

    # --- grouping, sampling, redaction -----------------------------------------------------------
    def _process(self, u: _Units, final: bool) -> Cut:
        if not self.rules:
            payload = b"\n".join(u.raw) + b"\n" if u.n else b""
            return Cut(payload=payload, n_events=u.n, consumed=u.offset(u.n), lines=u.lines(0, u.n))
        groups, stop = self._group(u, final)
        out = Cut(consumed=u.offset(stop), lines=u.lines(0, stop))
        msgs, event_of, units_of = self._messages(u, groups, stop)
        dropped, rates = self._sample(u, msgs, event_of)
        changed = self._redact(u, msgs, event_of, dropped, out)
        for e in sorted(dropped):
            i, j = units_of(e)
            out.lines_dropped += u.lines(i, j)
            out.bytes_dropped += u.size(i, j)
        if not (groups or dropped or changed) and u.terms is None:
            # Nothing to change: the lines go out exactly as read.
            out.payload = u.data[: out.consumed] + (b"\n" if u.partial and stop == u.n else b"")
            out.n_events = stop
            return out
        kept = [m for e, m in enumerate(msgs) if e not in dropped] if dropped else msgs
        out.n_events = len(kept)
        if not kept:
            return out
        joined = "\n".join(kept)
        if not rates and joined.count("\n") == len(kept) - 1:
            out.payload = (joined + "\n").encode()
            return out
        out.fmt = FMT_JSON
        events = [
            {"m": m, "a": {"sample_rate": rates[e]}} if e in rates else {"m": m}
            for e, m in enumerate(msgs)
            if e not in dropped
        ]
        out.payload = json.dumps(events, ensure_ascii=False, separators=(",", ":")).encode()
        return out

    def _group(self, u: _Units, final: bool) -> tuple[list[tuple[int, int]], int]:
        """Events of more than one unit, as (first, end) in order, and the first unit that must wait (the
        start of a group still open at the end of the chunk)."""
        if not self.groupers or not u.n:
            return [], u.n
        cands: set[int] | None = set()
        for g, wide_start, wide_cont in zip(self.groupers, self._wide_start, self._wide_cont, strict=True):
            if not u.any(wide_start, grouper=True):
                continue  # this grouper starts no group in this chunk
            if g.mode == "continue_through":
                # A group of two or more needs a second line that matches; else only the last line may
                # start a group that is still open.
                conts = u.hits(wide_cont, grouper=True)
                if conts is None:
                    cands = None
                    break
                assert cands is not None
                cands.update(k - 1 for k in conts if k)
                cands.add(u.n - 1)
            else:
                starts = u.hits(wide_start, grouper=True)
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
            g = next((g for g in self.groupers if g.start.search(text)), None)
            if g is None:
                continue
            j, done = self._extent(g, u, i, final)
            if not done:
                return groups, i
            if j - i > 1:
                groups.append((i, j))
            after = j
        return groups, u.n

    def _extent(self, g: LineGrouper, u: _Units, i: int, final: bool) -> tuple[int, bool]:
        """Units i..j-1 form the group started at i; ``done`` is False while more units could still join."""
        pat, mode = g.pattern, g.mode
        size = len(u.raw[i])
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
            size += len(u.raw[j]) + (u.term(j - 1) == LINE)
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

    def _events_hit(self, u: _Units, wide: re.Pattern[str] | None, event_of: Callable[[int], int]) -> set[int] | None:
        hits = u.hits(wide, grouper=False)
        return hits if hits is None or event_of is _same else {event_of(k) for k in hits}

    def _sample(
        self, u: _Units, msgs: list[str], event_of: Callable[[int], int]
    ) -> tuple[set[int], dict[int, float]]:
        dropped: set[int] = set()
        rates: dict[int, float] = {}
        rules = []
        for rule, wide in zip(self.sampling, self._wide_sample, strict=True):
            hits = self._events_hit(u, wide, event_of)
            if hits is None or hits:
                rules.append((rule.match_expression, rule.sampling_rate, hits))
        if not rules:
            return dropped, rates
        todo: range | list[int]
        if any(h is None for _, _, h in rules):
            todo = range(len(msgs))
        else:
            todo = sorted(set().union(*(h for _, _, h in rules if h is not None)))
        n = len(msgs)
        for e in todo:
            if e >= n:
                continue
            msg = msgs[e]
            for pat, rate, hits in rules:
                if (hits is None or e in hits) and pat.search(msg):
                    if rate <= 0 or (rate < 1 and self.rng.random() >= rate):
                        dropped.add(e)
                    elif rate < 1:
                        rates[e] = rate
                    break
        return dropped, rates

    def _redact(
        self, u: _Units, msgs: list[str], event_of: Callable[[int], int], dropped: set[int], out: Cut
    ) -> set[int]:
        changed: set[int] = set()
        n = len(msgs)
        for redact, wide in zip(self.redactors, self._wide_redact, strict=True):
            hits = self._events_hit(u, wide, event_of)
            todo = range(n) if hits is None else sorted((hits | changed) - dropped)
            for e in todo:
                if e >= n or e in dropped:
                    continue
                new, count = redact(msgs[e])
                if count:
                    msgs[e] = new
                    changed.add(e)
                    out.redactions += count
        return changed


def _same(k: int) -> int:
    return k


def _alone(e: int) -> tuple[int, int]:
    return e, e + 1


_HASH_REF = re.compile(r"\\H(\d+)")


def _redactor(rule: RedactionRule) -> Callable[[str], tuple[str, int]]:
    pattern, template, salt = rule.match_expression, rule.replacement, rule.hash_salt
    if not _HASH_REF.search(template):
        return lambda text: pattern.subn(template, text)
    parts = _HASH_REF.split(template)  # literal, group number, literal, group number, ...

    def replace(m: re.Match[str]) -> str:
        out = []
        for k, part in enumerate(parts):
            if k % 2:
                value = m.group(int(part)) or ""
                out.append(hashlib.md5((value + salt).encode(), usedforsecurity=False).hexdigest())
            elif part:
                out.append(m.expand(part))
        return "".join(out)

    return lambda text: pattern.subn(replace, text)
