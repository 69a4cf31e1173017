"""The JSON form of queued events: orjson's escaping (the fast path) writes exactly what json's
encode_basestring_ascii path writes, for every text it is used on, and the pipeline falls back to json's
where it would not (non-ASCII, DEL)."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from shipctl.config import LogConfig, RedactionRule, SamplingRule
from shipctl.tail import pipeline
from shipctl.tail.pipeline import Pipeline

# Every ASCII character, control characters and DEL included, and some beyond ASCII.
_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x7F) | st.sampled_from("é€\U0001f600\ufffd"))
_RATES = st.sampled_from([0.1, 0.5, 1e-05, 0.3333333333333333, 0.999])


@settings(max_examples=400, deadline=None)
@given(msgs=st.lists(_TEXT, min_size=1, max_size=20), data=st.data())
def test_fast_json_is_byte_for_byte_json_s(msgs: list[str], data: st.DataObject) -> None:
    idx = data.draw(st.lists(st.integers(0, len(msgs) - 1), unique=True))
    rates = {k: data.draw(_RATES) for k in idx}
    slow = pipeline._json_events(msgs, rates)
    if all(map(pipeline._orjson_safe, msgs)):
        assert pipeline._json_events_fast(msgs, rates) == slow
    else:
        # Where orjson would write otherwise (UTF-8 instead of \\u escapes, DEL unescaped), the check says so.
        assert pipeline._json_events_fast(msgs, rates) != slow


def test_orjson_safe_excludes_what_orjson_writes_differently() -> None:
    assert pipeline._orjson_safe("".join(map(chr, range(0x7F))))
    assert not pipeline._orjson_safe("a\x7fb")
    assert not pipeline._orjson_safe("café")


def _log(replacement: str) -> LogConfig:
    return LogConfig(
        path="/x.log",
        sampling_rules=(SamplingRule(re.compile("/health"), 0.5),),
        redaction_rules=(RedactionRule(re.compile(r"secret=\w+"), replacement),),
    )


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(_TEXT.filter(lambda t: "\n" not in t), min_size=1, max_size=30),
    replacement=st.sampled_from(["secret=***", "secret=é", "secret=\x7f", 'secret="\\\\"']),
    seed=st.integers(0, 100),
)
def test_pipeline_payload_is_the_same_with_and_without_orjson(lines: list[str], replacement: str, seed: int) -> None:
    lines = [
        (line + " /health" if k % 2 else line) + (" secret=abc" if k % 3 == 0 else "") for k, line in enumerate(lines)
    ]
    chunk = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    log = _log(replacement)
    fast = Pipeline(log, rng=random.Random(seed)).cut(chunk, at_eof=True, flush=True)
    orig = pipeline._json_events_fast
    pipeline._json_events_fast = pipeline._json_events  # type: ignore[assignment]
    try:
        slow = Pipeline(log, rng=random.Random(seed)).cut(chunk, at_eof=True, flush=True)
    finally:
        pipeline._json_events_fast = orig  # type: ignore[assignment]
    assert fast == slow


def test_without_orjson_json_writes_the_same_bytes() -> None:
    msgs, rates = ['GET "/health" 200', "a\\b\tc", ""], {0: 0.1, 2: 0.5}
    expected = pipeline._json_events(msgs, rates)
    assert pipeline._json_events_fast(msgs, rates) == expected
    saved = pipeline._orjson
    pipeline._orjson = False  # as when the import failed
    try:
        assert pipeline._json_events_fast(msgs, rates) == expected
    finally:
        pipeline._orjson = saved
