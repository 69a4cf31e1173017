"""Turn a chunk of file bytes into a batch payload: complete lines only, long lines cut, then (when the
log has rules) line grouping, sampling and redaction, in the Scalyr agent's order.

The caller reads from an offset that always sits on a boundary (end of a line, start of an open group or
the cut point of an over-long line) and moves it by ``consumed``. Nothing here keeps state between chunks:
whatever is not consumed is read again next time.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from shipctl.config import LineGrouper, LogConfig, RedactionRule
from shipctl.model import FMT_JSON, FMT_RAW


@dataclass
class Cut:
    payload: bytes = b""
    fmt: str = FMT_RAW
    n_events: int = 0
    consumed: int = 0
    lines: int = 0  # physical lines consumed
    lines_dropped: int = 0
    bytes_dropped: int = 0
    redactions: int = 0


def read_size(log: LogConfig, batch_bytes: int) -> int:
    # A chunk must be able to hold a whole maximum-size line plus its newline, or a long line never ends.
    return max(batch_bytes, log.max_line_size + 1)


class Pipeline:
    def __init__(self, log: LogConfig, *, rng: random.Random | None = None) -> None:
        self.log = log
        self.max = log.max_line_size
        self.rules = log.has_rules
        self.rng = rng or random.Random()
        self.redactors = [_redactor(r) for r in log.redaction_rules]

    def cut(self, chunk: bytes, *, at_eof: bool, flush: bool) -> Cut:
        """``at_eof``: nothing follows ``chunk`` in the file now. ``flush``: a trailing partial line or
        open group may be sent as it is (its wait is over, or the file is finished)."""
        end = chunk.rfind(b"\n") + 1
        body, rest = chunk[:end], chunk[end:]
        if not self.rules and (len(body) <= self.max or max(map(len, body.split(b"\n"))) <= self.max):
            # Fast path: the complete lines go to the queue as they are, untouched one by one.
            out = Cut(payload=body, n_events=body.count(b"\n"), consumed=end)
            out.lines = out.n_events
            if rest:
                if len(rest) > self.max:
                    pieces = len(rest) // self.max
                    out.payload += b"\n".join(rest[i * self.max : (i + 1) * self.max] for i in range(pieces)) + b"\n"
                    out.n_events += pieces
                    out.consumed += pieces * self.max
                elif at_eof and flush:
                    out.payload += rest + b"\n"
                    out.n_events += 1
                    out.lines += 1
                    out.consumed = len(chunk)
            return out
        return self._cut_lines(chunk, end, at_eof=at_eof, flush=flush)

    def _cut_lines(self, chunk: bytes, end: int, *, at_eof: bool, flush: bool) -> Cut:
        raw = chunk[:end].split(b"\n")[:-1]
        rest = chunk[end:]
        partial_is_line = bool(rest) and at_eof and flush and len(rest) <= self.max
        if partial_is_line:
            raw.append(rest)  # its wait is over: it is a line of its own now
        out = Cut(fmt=FMT_JSON)
        events: list[dict[str, object]] = []
        groupers = self.log.line_groupers
        texts = [r.decode("utf-8", "replace") + "\n" for r in raw] if groupers else None
        pos = 0  # where raw[i] starts in chunk
        i, n = 0, len(raw)
        while i < n:
            j, done = i + 1, True
            if texts is not None:
                grouper = next((g for g in groupers if g.start.search(texts[i])), None)
                if grouper is not None:
                    j, done = _extent(grouper, texts, i, end_of_data=at_eof and flush)
            size = sum(len(raw[k]) + 1 for k in range(i, j)) - 1  # joined length, without the last newline
            if j - i > 1 and size > self.max:
                # A group over the limit is cut at the limit, even mid-line; the rest is read afresh.
                piece = chunk[pos : pos + self.max]
                self._emit(events, out, piece, lines=piece.count(b"\n"))
                out.consumed = pos + self.max
                return self._finish(out, events)
            if not done and len(chunk) - pos <= self.max:
                break  # an open group: its start stays the offset until it completes or its wait ends
            if j - i == 1 and size > self.max:
                for k in range(0, size, self.max):
                    self._emit(events, out, raw[i][k : k + self.max], lines=0)
                out.lines += 1
            else:
                self._emit(events, out, b"\n".join(raw[i:j]), lines=j - i)
            pos = min(pos + size + 1, len(chunk))
            i = j
        out.consumed = pos
        if i == n and not partial_is_line and len(rest) > self.max:
            # An over-long unfinished line: send the pieces that cannot change any more.
            pieces = len(rest) // self.max
            for k in range(pieces):
                self._emit(events, out, rest[k * self.max : (k + 1) * self.max], lines=0)
            out.consumed = end + pieces * self.max
        return self._finish(out, events)

    def _finish(self, out: Cut, events: list[dict[str, object]]) -> Cut:
        out.n_events = len(events)
        out.payload = json.dumps(events, ensure_ascii=False, separators=(",", ":")).encode() if events else b""
        return out

    def _emit(self, events: list[dict[str, object]], out: Cut, data: bytes, *, lines: int) -> None:
        out.lines += lines
        message = data.decode("utf-8", "replace")
        attrs: dict[str, object] | None = None
        for rule in self.log.sampling_rules:
            if rule.match_expression.search(message):
                rate = rule.sampling_rate
                if rate < 1 and (rate <= 0 or self.rng.random() >= rate):
                    out.lines_dropped += max(lines, 1)
                    out.bytes_dropped += len(data)
                    return
                if rate != 1:
                    attrs = {"sample_rate": rate}
                break
        for redact in self.redactors:
            message, count = redact(message)
            out.redactions += count
        events.append({"m": message, "a": attrs} if attrs else {"m": message})


def _extent(g: LineGrouper, texts: list[str], i: int, *, end_of_data: bool) -> tuple[int, bool]:
    """Lines i..j-1 form the group started at i; ``done`` is False while more lines could still join."""
    n = len(texts)
    j = i + 1
    pat = g.pattern
    if g.mode == "continue_through":
        while j < n and pat.search(texts[j]):
            j += 1
        return j, j < n or end_of_data
    if g.mode == "continue_past":
        while j < n:
            joined = not pat.search(texts[j])
            j += 1
            if joined:
                return j, True
        return j, end_of_data
    if g.mode == "halt_before":
        while j < n and not pat.search(texts[j]):
            j += 1
        return j, j < n or end_of_data
    # halt_with
    while j < n:
        hit = pat.search(texts[j])
        j += 1
        if hit:
            return j, True
    return j, end_of_data


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
