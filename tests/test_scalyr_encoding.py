"""The addEvents bodies the scalyr sink builds, decoded and checked event by event (no server).

Plain lines are encoded a piece of the payload at a time (``PIECE`` bytes, cut at a newline) and cut where
the ts digits above the last 4 change; whatever the cuts, every line must arrive once, in order, with ts
strictly increasing, ``si``/``sn`` on the first event of each run and ``sd: 1`` on the others, and the spans
must say which batches are complete. Delivery through a real HTTP receiver is in ``test_scalyr.py``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from shipctl.model import FMT_RAW, Batch
from shipctl.sinks import scalyr
from shipctl.sinks.base import Request
from shipctl.sinks.scalyr import ScalyrOptions, ScalyrSink

SESSION = "3f2a9c1e-0b7d-4c55-9e61-2d8f0a4b7c10"
KEY = "sk-test-key"


def sink(**options: Any) -> ScalyrSink:
    return ScalyrSink(ScalyrOptions(api_key=KEY, server="https://scalyr.invalid", **options), SESSION)


def raw_batch(lines: list[bytes], *, bid: int = 1, sn: int = 1, ts: int = 1_764_000_000_000_000_000) -> Batch:
    payload = b"".join(line + b"\n" for line in lines)
    return Batch(bid, "log", "/var/log/app.log", "app", ts, {}, FMT_RAW, len(lines), len(payload), sn, payload)


def body(s: ScalyrSink, req: Request) -> dict[str, Any]:
    s.seal(req)
    wire = req.payload.wire
    raw = zlib.decompress(wire) if s.options.compression == "deflate" else wire
    assert len(raw) == req.size  # the size the request was cut by is the body's
    return json.loads(raw)


def events(s: ScalyrSink, reqs: Iterator[Request]) -> tuple[list[dict[str, Any]], list[Request]]:
    out: list[dict[str, Any]] = []
    seen = list(reqs)
    for req in seen:
        got = body(s, req)["events"]
        assert len(got) == req.events
        out += got
    return out, seen


def check_stream(evs: list[dict[str, Any]], first_sn: int) -> None:
    """sn from si/sn heads and sd deltas, contiguous from ``first_sn``; ts strictly increasing."""
    sn = first_sn - 1
    prev_ts = 0
    for e in evs:
        if "sn" in e:
            assert e["si"] == SESSION and e["sn"] == sn + 1 and "sd" not in e
            sn = e["sn"]
        else:
            assert e["sd"] == 1
            sn += 1
        ts = int(e["ts"])
        assert ts > prev_ts
        prev_ts = ts
        assert set(e) <= {"thread", "log", "ts", "attrs", "si", "sn", "sd"}


@pytest.mark.parametrize("compression", ["deflate", "none"])
@pytest.mark.parametrize("piece", [64, 4096, 1 << 20])
def test_pieces_and_ts_boundaries_lose_nothing(monkeypatch: pytest.MonkeyPatch, piece: int, compression: str) -> None:
    # Short lines from just below a 10,000 ns boundary: a piece of ~4 KiB crosses it, and a batch of 25,000
    # lines crosses two; a long line is bigger than a 64-byte piece.
    monkeypatch.setattr(scalyr, "PIECE", piece)
    lines = [b"%d" % i for i in range(25_000)]
    lines[7] = b'quote " backslash \\ tab \t ctl \x01 long ' + b"x" * 300 + "é".encode()
    ts = 1_764_000_000_000_009_990
    s = sink(compression=compression, max_request_bytes=scalyr.MIN_REQUEST_BYTES)
    evs, reqs = events(s, s.requests([raw_batch(lines, ts=ts)], 0))
    assert len(reqs) > 3  # cut over several requests too
    assert [e["attrs"]["message"] for e in evs] == [line.decode() for line in lines]
    check_stream(evs, 1)
    assert int(evs[0]["ts"]) == ts and int(evs[-1]["ts"]) == ts + len(lines) - 1
    complete = [sp.complete for r in reqs for sp in r.spans]
    assert complete[-1] and not any(complete[:-1])


def test_batches_in_a_row_and_a_resumed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scalyr, "PIECE", 100)
    a = raw_batch([b"a%d" % i for i in range(50)], bid=1, sn=1)
    b = raw_batch([b"b%d" % i for i in range(30)], bid=2, sn=51, ts=a.ts - 5)  # read "earlier": ts still grows
    s = sink()
    evs, reqs = events(s, s.requests([a, b], 20))  # the first 20 events of a were already confirmed
    assert [e["attrs"]["message"] for e in evs] == [f"a{i}" for i in range(20, 50)] + [f"b{i}" for i in range(30)]
    check_stream(evs, 21)
    last = reqs[-1].spans[-1]
    assert (last.batch_id, last.last_sn, last.complete) == (2, 80, True)
    spans = [(sp.batch_id, sp.complete) for r in reqs for sp in r.spans]
    assert (1, True) in spans and (2, True) in spans


def test_a_payload_with_fewer_lines_than_its_header_completes_its_batch() -> None:
    b = raw_batch([b"one", b"two", b"three"])
    short = Batch(b.id, b.kind, b.source, b.log_id, b.ts, {}, FMT_RAW, 5, b.n_bytes, 1, b.payload + b"tail")
    s = sink()
    evs, reqs = events(s, s.requests([short], 0))
    assert [e["attrs"]["message"] for e in evs] == ["one", "two", "three"]  # the tail without newline: no event
    (span,) = reqs[0].spans
    assert span.complete and span.last_sn == 3
    empty = Batch(2, "log", "/var/log/app.log", "app", b.ts, {}, FMT_RAW, 2, 0, 4, b"")
    (req,) = list(s.requests([empty], 3))
    assert req.events == 0 and [(sp.last_sn, sp.complete) for sp in req.spans] == [(5, True)]


@pytest.mark.parametrize("piece", [64, 1 << 20])
def test_lines_that_look_like_format_codes_or_event_boundaries_arrive_as_they_were(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    # Events are made by one '%' over the escaped lines (so '%' in a line is doubled first), and a request
    # is cut where the text between two events is found: a line holding that text must not be cut there.
    monkeypatch.setattr(scalyr, "PIECE", piece)
    tricky = [
        b"100% done %b %d %s %%",
        b'"}},{"thread":"1","log":"1","ts":"1764000000000000001","sd":1,"attrs":{"message":"',
        b'\\"}},{\\"thread\\":\\"1\\"',
        b"",
        b"%",
    ]
    lines = [tricky[i % len(tricky)] + b" %d" % i for i in range(3_000)]
    s = sink(max_request_bytes=scalyr.MIN_REQUEST_BYTES)
    evs, reqs = events(s, s.requests([raw_batch(lines, ts=1_764_000_000_000_009_000)], 0))
    assert len(reqs) > 2
    assert [e["attrs"]["message"] for e in evs] == [line.decode() for line in lines]
    check_stream(evs, 1)
