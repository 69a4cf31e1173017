"""The C-level shortcuts of the rules path (shipctl/tail/pipeline.py) decide exactly what the plain per-line
code would: which sampled lines are kept (the same draws of the same generator, in the same order) and how many
bytes the dropped ones held, and which units a whole-chunk search hit."""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_right

import pytest

from shipctl.config import LogConfig, SamplingRule
from shipctl.tail.pipeline import Pipeline, _Units, _Wide, _wide


def _lines(n: int, text: str) -> list[str]:
    return [f"{i} GET /health {text}" if i % 3 == 0 else f"{i} GET /index {text}" for i in range(n)]


@pytest.mark.parametrize("text", ["ok", "h\u00e9llo w\u00f6rld"])  # ASCII, and lines with more bytes than characters
def test_sampling_keeps_what_one_draw_per_matched_line_keeps(text: str) -> None:
    rate = 0.3
    lines = _lines(3000, text)
    log = LogConfig(path="/x", sampling_rules=(SamplingRule(re.compile("/health"), rate),))
    chunk = "".join(line + "\n" for line in lines).encode()
    cut = Pipeline(log, rng=random.Random(7)).cut(chunk, at_eof=True, flush=False)
    # The reference: a loop over the matched lines in order, one draw each.
    rng = random.Random(7)
    kept, rates, dropped = [], {}, []
    for line in lines:
        if "/health" in line:
            if rng.random() < rate:
                rates[len(kept)] = rate
            else:
                dropped.append(line)
                continue
        kept.append(line)
    events = json.loads(cut.payload)
    assert [e["m"] for e in events] == kept
    assert {k: e["a"]["sample_rate"] for k, e in enumerate(events) if "a" in e} == rates
    assert cut.lines_dropped == len(dropped)
    assert cut.bytes_dropped == sum(len(line.encode()) + 1 for line in dropped)
    assert cut.consumed == len(chunk)


def _hits_by_table(u: _Units, w: _Wide) -> set[int] | None:
    """The units of each match by a table of unit starts, as hits() found them before it counted newlines."""
    starts = u._unit_starts(w.doubled)
    found: set[int] = set()
    limit = u.n // 16 + 16
    for count, m in enumerate(w.pattern.finditer(u._text(w))):
        a = bisect_right(starts, max(0, m.start() - w.line_start), 0, u.n) - 1
        b = bisect_right(starts, max(0, m.end() - w.line_start), a, u.n) - 1
        found.update(range(a, b + 1))
        if len(found) > limit or count > 2 * limit or (count >= 64 and a < 16 * count):
            return None
    return found


@pytest.mark.parametrize("pattern", ["b", "^b", "a\\nb", "^$", "b$", "x*", "\\n", "^a.*\\n.*b", "ab|^b|a$"])
def test_units_of_matches_by_counting_newlines(pattern: str) -> None:
    rng = random.Random(pattern)
    for _ in range(300):
        lines = ["".join(rng.choice("ab  x") for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(1, 40))]
        partial = rng.random() < 0.3
        data = ("\n".join(lines) + ("" if partial else "\n")).encode()
        u = _Units(data, region=len(data), partial=partial)
        w = _wide(re.compile(pattern), grouper=False)
        assert w is not None and not w.doubled
        assert u.hits(w) == _hits_by_table(u, w), (pattern, data)
