"""Sampling rules that are plain text test each event with a substring search where their hits are dense:
the same events are matched, dropped and kept as with the regex on every event."""

from __future__ import annotations

import random
import re

import pytest

from shipctl.config import LogConfig, SamplingRule
from shipctl.tail.pipeline import Pipeline, _literal


@pytest.mark.parametrize(
    ("pattern", "flags", "literal"),
    [
        ("/health", 0, "/health"),
        ("GET /a b", 0, "GET /a b"),
        ("a.b", 0, None),
        ("x|y", 0, None),
        ("^GET", 0, None),
        ("(?i)get", 0, None),
        (r"\d", 0, None),
        ("get", re.IGNORECASE, None),
        ("get #x", re.VERBOSE, None),
        ("", 0, None),
    ],
)
def test_only_plain_text_is_a_literal(pattern: str, flags: int, literal: str | None) -> None:
    assert _literal(re.compile(pattern, flags)) == literal


# Lines where some patterns would match as regexes but not as text, and the other way round.
WORDS = ["/health", "/HEALTH", "aXb", "a.b", "x", "y", "x|y", "GET", "get", "/healthz", "", "é/health"]


@pytest.mark.parametrize("pattern", ["/health", "a.b", "x|y", "(?i)/health", "GET", "/health", "é/h"])
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_dense_sampling_matches_as_the_regex_does(pattern: str, rate: float) -> None:
    rng = random.Random(pattern)
    lines = [" ".join(rng.choices(WORDS, k=3)) for _ in range(3000)]  # most lines hit: the dense path
    chunk = ("\n".join(lines) + "\n").encode()
    log = LogConfig(path="/x", sampling_rules=(SamplingRule(re.compile(pattern), rate),))
    fast = Pipeline(log, rng=random.Random(3)).cut(chunk, at_eof=False, flush=False)
    slow = Pipeline(log, rng=random.Random(3), prefilter=False).cut(chunk, at_eof=False, flush=False)
    assert fast == slow
    assert fast.lines == 3000
