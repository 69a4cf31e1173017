"""The batch-at-a-time encoders of the kafka sink, checked against the per-event encoding they replace.

The kafka sink builds the JSON value of every plain line of a batch with slicing, one join and one split
(no Python work per line); each value must be byte for byte what ``encode_lines`` (the file sink's JSON line,
one event at a time) gives, whatever the lines hold. Delivery to a real broker is in ``test_kafka.py``.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from shipctl.model import FMT_RAW, Batch
from shipctl.sinks.jsonl import encode_lines
from shipctl.sinks.kafka import _raw_values

SESSION = "3f2a9c1e-0b7d-4c55-9e61-2d8f0a4b7c10"


def raw_batch(lines: list[bytes], *, sn: int = 1, source: str = "/var/log/app.log", attrs: dict | None = None) -> Batch:
    payload = b"".join(line + b"\n" for line in lines)
    return Batch(7, "log", source, "app", 1_764_000_000_000_000_000, attrs or {}, FMT_RAW, len(lines), len(payload),
                 sn, payload)  # fmt: skip


def expected(b: Batch, first_sn: int) -> tuple[list[bytes], int]:
    pairs = [(sn, line) for sn, line in encode_lines([b], SESSION) if sn >= first_sn]
    return [line[:-1].encode() for _, line in pairs], (pairs[0][0] if pairs else max(first_sn, b.sn))


def test_plain_ascii_lines_are_the_file_sinks_json() -> None:
    b = raw_batch([b'127.0.0.1 - - [30/Nov/2026:21:00:00 +0000] "GET / HTTP/1.1" 200 12', b'C:\\dir "x"', b""])
    values, first = _raw_values(b, 0, SESSION)
    assert (values, first) == expected(b, 0)
    assert json.loads(values[0])["message"].startswith("127.0.0.1")
    assert [json.loads(v)["sn"] for v in values] == [1, 2, 3]
    assert json.loads(values[1])["message"] == 'C:\\dir "x"'  # the batch-wide escaping of printable ASCII


def test_escapes_and_odd_bytes_match() -> None:
    lines = [
        b'say "hi" \\ back',  # quote and backslash: the escaping path
        b"tab\there\x01\x1f\x7f",  # control characters and DEL (escaped as \u007f by the json module)
        "caf\u00e9 \u2028 \U0001f600".encode(),  # non-ASCII, as \u escapes
        b"bad \xff\xfe utf-8",  # invalid UTF-8 becomes U+FFFD, as the other sinks decode it
        b"100% done %s %d",  # a '%' in the line
    ]
    b = raw_batch(lines, sn=41, source="/logs/50%-full/%d.log", attrs={"serverHost": "w%1", "n": 3})
    assert _raw_values(b, 0, SESSION) == expected(b, 0)


def test_a_batch_resumed_mid_way_starts_at_its_first_unsent_event() -> None:
    b = raw_batch([b"a", b"b", b"c", b"d"], sn=10)
    values, first = _raw_values(b, 12, SESSION)
    assert first == 12
    assert [json.loads(v)["message"] for v in values] == ["c", "d"]
    assert (values, first) == expected(b, 12)
    assert _raw_values(b, 99, SESSION)[0] == []  # everything already confirmed


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda x: x.replace(b"\n", b"")), min_size=1, max_size=20))
def test_any_lines_match_the_per_event_encoding(lines: list[bytes]) -> None:
    b = raw_batch(lines, sn=1_000)
    assert _raw_values(b, 0, SESSION) == expected(b, 0)


def test_a_request_posted_again_is_encoded_again_from_its_batches() -> None:
    """post() lets each message go once librdkafka has copied it; a second post() of the same request (none
    today: a RETRY ends the sink's run) must not find it empty and confirm a request that sent nothing."""
    from shipctl.sinks.base import Request, Span
    from shipctl.sinks.kafka import KafkaOptions, KafkaSink

    sink = KafkaSink(KafkaOptions(brokers=("127.0.0.1:9",), topic="t"), SESSION)
    b = raw_batch([b"one", b"two", b"three"], sn=5)
    req = Request([Span(b.id, 6, 7, True)], 2, b.n_bytes, [b])
    sink.seal(req)
    first = [(t, k, list(v), f) for t, k, v, f in req.payload.groups]
    assert [json.loads(v)["message"] for v in first[0][2]] == ["two", "three"] and first[0][3] == 6
    req.payload.groups, req.payload.consumed = [], True  # what _transmit leaves behind
    sink.seal(req)
    assert [(t, k, list(v), f) for t, k, v, f in req.payload.groups] == first
