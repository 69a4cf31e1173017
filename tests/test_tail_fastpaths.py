"""The C-level shortcuts of the rules path (shipctl/tail/pipeline.py) decide exactly what the plain per-line
code would: which sampled lines are kept (the same draws of the same generator, in the same order) and how many
bytes the dropped ones held."""

from __future__ import annotations

import json
import random
import re

import pytest

from shipctl.config import LogConfig, SamplingRule
from shipctl.tail.pipeline import Pipeline


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
