"""The file sink's batch-at-a-time encoder and its writes, checked against the per-event encoding.

``encode_batch`` turns a plain-lines batch into its JSON lines with a few whole-payload operations (no
Python work per line); each line must be byte for byte what ``encode_lines`` (one event at a time, the
format README.md documents) gives, whatever the lines hold. End-to-end delivery, crash and kill -9 cases
are in test_basics.py, test_crash_and_locks.py and test_review.py.
"""

from __future__ import annotations

import errno
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipctl.model import FMT_JSON, FMT_RAW, Batch
from shipctl.sinks import jsonl
from shipctl.sinks.base import OK, Request, SendResult
from shipctl.sinks.jsonl import (
    FileSink,
    FileSinkOptions,
    StdoutSink,
    StdoutSinkOptions,
    encode_batch,
    encode_lines,
)
from tests.conftest import Env, assert_exactly_once, numbered

SESSION = "3f2a9c1e0b7d4c559e612d8f0a4b7c10"


def raw_batch(lines: list[bytes], *, sn: int = 1, source: str = "/var/log/app.log", attrs: dict | None = None) -> Batch:
    payload = b"".join(line + b"\n" for line in lines)
    return Batch(7, "log", source, "app", 1_764_000_000_000_000_000, attrs or {"serverHost": "h"}, FMT_RAW,
                 len(lines), len(payload), sn, payload)  # fmt: skip


def expected(b: Batch, first_sn: int) -> bytes:
    return "".join(line for sn, line in encode_lines([b], SESSION) if sn >= first_sn).encode()


def test_plain_ascii_lines() -> None:
    b = raw_batch([b'127.0.0.1 - - [30/Nov/2026:21:00:00 +0000] "GET / HTTP/1.1" 200 12', b'C:\\dir "x"', b""])
    out = encode_batch(b, 0, SESSION)
    assert out == expected(b, 0)
    objs = [json.loads(line) for line in out.decode().splitlines()]
    assert [o["sn"] for o in objs] == [1, 2, 3]
    assert [o["ts"] for o in objs] == [b.ts, b.ts + 1, b.ts + 2]
    assert objs[1] == {
        "ts": b.ts + 1,
        "kind": "log",
        "source": "/var/log/app.log",
        "message": 'C:\\dir "x"',
        "attrs": {"serverHost": "h"},
        "si": SESSION,
        "sn": 2,
    }
    assert list(objs[0]) == ["ts", "kind", "source", "message", "attrs", "si", "sn"]  # the documented order


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["caf\u00e9 \u2028 \U0001f600".encode()],  # non-ASCII: the json module's escaper, line by line
        [b"bad \xff\xfe utf-8"],  # invalid UTF-8 becomes U+FFFD, as Batch.messages decodes it
    ],
)
def test_escapes_and_odd_bytes(extra: list[bytes]) -> None:
    lines = [
        b'say "hi" \\ back \\n not a newline',  # quote and backslash
        b"tab\there\x01\x1f\x7f\x08\x0c\r",  # control characters and DEL (escaped as \u007f by the json module)
        b"100% done %s %d %%",  # a '%' in the line: the batch is one % format
        *extra,
        b"",
    ]
    b = raw_batch(lines, sn=41, source="/logs/50%-full/%d.log", attrs={"serverHost": "w%1", "n": 3, "q": '"'})
    out = encode_batch(b, 0, SESSION)
    assert out == expected(b, 0)
    assert out.isascii()
    assert [json.loads(line)["message"] for line in out.decode().splitlines()] == b.messages()


def test_a_batch_resumed_mid_way_starts_at_its_first_unsent_event() -> None:
    b = raw_batch([b"a", b"b", b"c", b"d"], sn=10)
    out = encode_batch(b, 12, SESSION)
    assert [json.loads(line)["message"] for line in out.decode().splitlines()] == ["c", "d"]
    assert out == expected(b, 12)
    assert encode_batch(b, 14, SESSION) == expected(b, 14)  # only the last one
    assert encode_batch(b, 99, SESSION) == b""  # everything already written
    assert encode_batch(raw_batch([]), 0, SESSION) == b""


def test_a_payload_without_its_last_newline_drops_the_fragment_like_messages() -> None:
    b = raw_batch([b"one", b"two"])
    b.payload += b"half"
    assert encode_batch(b, 0, SESSION) == expected(b, 0)
    assert len(encode_batch(b, 0, SESSION).splitlines()) == 2


def test_json_batches_go_event_by_event() -> None:
    events = [{"m": "x", "a": {"k": 1}, "t": 5, "k": "metric"}, {"m": 'caf\u00e9 "q" 100%'}]
    payload = json.dumps(events).encode()
    b = Batch(3, "event", "mon", None, 1_000, {"serverHost": "h"}, FMT_JSON, 2, len(payload), 7, payload)
    assert encode_batch(b, 0, SESSION) == expected(b, 0)
    assert encode_batch(b, 8, SESSION) == expected(b, 8)
    assert json.loads(encode_batch(b, 8, SESSION))["message"] == 'caf\u00e9 "q" 100%'


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda x: x.replace(b"\n", b"")), min_size=1, max_size=20),
    st.integers(0, 25),
)
def test_any_lines_match_the_per_event_encoding(lines: list[bytes], skip: int) -> None:
    b = raw_batch(lines, sn=1_000)
    assert encode_batch(b, 1_000 + skip, SESSION) == expected(b, 1_000 + skip)


def test_a_batch_is_encoded_a_piece_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces end at a newline; a line longer than a piece is a piece of its own; a piece of ASCII next to
    one that is not is escaped its own way; time stamps and sequence numbers run on across pieces."""
    monkeypatch.setattr(jsonl, "PIECE", 10)
    lines = [b"short", b"a line longer than ten bytes", b"x", b"caf\xc3\xa9", b"", b'q"%', b"y" * 25, b"z"]
    b = raw_batch(lines, sn=7)
    pieces = list(jsonl.encode_pieces(b, 0, SESSION))
    assert len(pieces) >= 5 and all(p.endswith(b"}\n") for p in pieces)
    assert b"".join(pieces) == expected(b, 0)
    for first in range(7, 16):
        assert encode_batch(b, first, SESSION) == expected(b, first)


@pytest.mark.parametrize("sn", [1, 9_990, 10_000, 19_995, 99_999_998, 1_234_567_890_123])
@pytest.mark.parametrize("ts_low", [0, 9_985, 9_999])
@pytest.mark.parametrize("piece", [8, 64, 1 << 16])
def test_numbers_across_multiples_of_ten_thousand(
    sn: int, ts_low: int, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time stamps and sequence numbers are written from tables of their last four digits; a run of them
    that crosses a multiple of 10,000 (or starts below it) must read as the plain numbers."""
    monkeypatch.setattr(jsonl, "PIECE", piece)
    b = raw_batch([b"line %d" % i for i in range(40)], sn=sn)
    b.ts = 1_764_000_000_000_000_000 + ts_low
    out = encode_batch(b, 0, SESSION)
    assert out == expected(b, 0)
    objs = [json.loads(line) for line in out.decode().splitlines()]
    assert [(o["ts"], o["sn"]) for o in objs] == [(b.ts + i, sn + i) for i in range(40)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=30).map(lambda x: x.replace(b"\n", b"")), min_size=1, max_size=30),
    st.integers(1, 64),
    st.integers(0, 35),
    st.integers(1, 10**13),
    st.integers(0, 10**19),
)
def test_any_piece_size_gives_the_same_lines(lines: list[bytes], piece: int, skip: int, sn: int, ts: int) -> None:
    b = raw_batch(lines, sn=sn)
    b.ts = ts
    saved = jsonl.PIECE
    jsonl.PIECE = piece
    try:
        assert encode_batch(b, sn + skip, SESSION) == expected(b, sn + skip)
    finally:
        jsonl.PIECE = saved


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=30).map(lambda x: x.replace("\n", "")), min_size=1, max_size=10))
def test_any_text_matches_the_per_event_encoding(lines: list[str]) -> None:
    b = raw_batch([line.encode("utf-8", "surrogatepass") for line in lines], sn=5)
    assert encode_batch(b, 0, SESSION) == expected(b, 0)


def sink(tmp_path: Path, *, fsync: bool = True) -> FileSink:
    return FileSink(FileSinkOptions(path=str(tmp_path / "out" / "sink.jsonl"), fsync=fsync), SESSION)


def test_send_appends_each_batch_once_and_fsyncs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    fs = sink(tmp_path)
    a, b = raw_batch([b"a1", b"a2"], sn=1), raw_batch([b"b1", b'b"2'], sn=3)
    res = fs.send([a, b], 1)
    assert res.outcome == OK and len(synced) == 1
    path = Path(fs.path)
    assert path.read_bytes() == expected(a, 0) + expected(b, 0)
    assert res.request_bytes == path.stat().st_size
    assert path.stat().st_mode & 0o777 == 0o640
    # Sent again (killed after the write, before the cursor moved): nothing is written twice.
    c = raw_batch([b"c1"], sn=5)
    assert fs.send([b, c], 3).outcome == OK
    assert path.read_bytes() == expected(a, 0) + expected(b, 0) + expected(c, 0)
    assert len(synced) == 2


def test_send_cuts_a_torn_tail_and_writes_its_events_again(tmp_path: Path) -> None:
    fs = sink(tmp_path, fsync=False)
    a, b = raw_batch([b"a1", b"a2"], sn=1), raw_batch([b"b1", b"b2", b"b3"], sn=3)
    assert fs.send([a], 1).outcome == OK
    whole = Path(fs.path).read_bytes()
    torn = expected(b, 0)[:-30]  # killed mid-write: b1, b2 whole, b3 cut short
    with open(fs.path, "ab") as fh:
        fh.write(torn)
    assert fs.send([b], 3).outcome == OK  # b's cursor never moved: it comes again from its first event
    assert Path(fs.path).read_bytes() == whole + expected(b, 0)


def test_send_fails_as_retry_when_the_file_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("not a directory")
    res = sink(tmp_path).send([raw_batch([b"x"])], 1)
    assert res.outcome == "retry" and "out" in res.message


def test_upload_writes_and_fsyncs_a_batch_at_a_time(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default request is one tail-once batch (1 MiB): the upload pipeline holds a few of them inflated at
    once, so 8 MiB requests made the file sink's ``run`` peak at ~80 MiB RSS. Each is on disk (fsync) before
    the cursor moves; what lands in the file is every line once, in order, as ``encode_lines`` writes it."""
    log = env.logs / "app.log"
    log.write_text(numbered(40_000, width=70))  # ~3.2 MB: four batches
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    sends: list[int] = []
    synced: list[int] = []
    real_send, real_fsync = FileSink.send, os.fsync

    def send(self: FileSink, batches: list[Batch], first_sn: int, written: object = None) -> SendResult:
        sends.append(sum(b.n_bytes for b in batches))
        return real_send(self, batches, first_sn, written)  # type: ignore[arg-type]

    monkeypatch.setattr(FileSink, "send", send)
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    assert env.cli("upload").exit_code == 0
    assert len(sends) >= 4 and max(sends) <= 1 << 20, sends
    assert len(synced) >= len(sends)  # (SQLite syncs its own files too)
    assert_exactly_once(env.messages(), range(40_000))
    assert [o["sn"] for o in env.events()] == list(range(1, 40_001))


def test_stdout_sink_writes_the_same_lines(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = raw_batch([b"a1", "caf\u00e9".encode()], sn=1), raw_batch([b'b"1', b"b2"], sn=3)
    res = StdoutSink(StdoutSinkOptions(), SESSION).send([a, b], 2)
    out = capsys.readouterr().out
    assert out == (expected(a, 2) + expected(b, 2)).decode()
    assert res.outcome == OK and res.request_bytes == len(out)


def test_a_full_request_is_cut_before_the_next_batch_is_read(tmp_path: Path) -> None:
    """Peak RSS (issue 13): a request that reached ``request_bytes`` is handed over at once, not after the
    batch that would not fit in it was read (and inflated), which the generator would hold meanwhile."""
    fs = sink(tmp_path)
    fs.request_bytes = 10
    read: list[int] = []

    def journal() -> Iterator[Batch]:
        for sn in (1, 3, 5):
            read.append(sn)
            yield raw_batch([b"1234", b"5678"], sn=sn)  # 10 bytes each: one request each

    reqs = fs.requests(journal(), 0)
    first = next(reqs)
    assert [s.first_sn for s in first.spans] == [1] and read == [1]
    assert [[s.first_sn for s in r.spans] for r in reqs] == [[3], [5]]
    # Encoded in post(), two posts at once and one request read ahead of them.
    assert (fs.ahead, fs.in_flight) == (1, 2)


def test_a_request_of_one_tail_once_batch_is_full(tmp_path: Path) -> None:
    """tail-once's batches are just under 1 MiB (cut at a newline): a request of one is handed over without
    reading (and inflating) the next batch to see that it does not fit, which the generator then held."""
    fs = sink(tmp_path)
    read: list[int] = []
    line = b"x" * 99

    def journal() -> Iterator[Batch]:
        for sn in (1, 10_001):
            read.append(sn)
            yield raw_batch([line] * 10_000, sn=sn)  # 1,000,000 bytes: 48,576 short of 1 MiB

    reqs = fs.requests(journal(), 0)
    first = next(reqs)
    assert [s.first_sn for s in first.spans] == [1] and read == [1]
    fs.request_bytes = 1_100_000  # with room for more than 1/16 of the limit, the next batch is looked at
    reqs = fs.requests(journal(), 0)
    first = next(reqs)
    assert [s.first_sn for s in first.spans] == [1] and read == [1, 1, 10_001]


def _chain(fs: FileSink, batches: list[Batch]) -> list[Request]:
    fs.request_bytes = 1  # a request per batch
    return list(fs.requests(iter(batches), 0))


def test_posts_in_flight_at_once_write_in_order_and_fsync_before_they_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posts run at once (``in_flight``): whichever thread starts first, a request's lines go into the file
    only after those of the requests cut before it, and each post answers only after an fsync that covers
    its lines."""
    fs = sink(tmp_path)
    path = Path(fs.path)
    batches = [raw_batch([b"a1", b"a2"], sn=1), raw_batch([b"b1", b"b2"], sn=3), raw_batch([b"c1"], sn=5)]
    reqs = _chain(fs, batches)
    synced_sizes: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (real(fd), synced_sizes.append(path.stat().st_size))[0])
    with ThreadPoolExecutor(3) as pool:
        later = [pool.submit(fs.post, reqs[2]), pool.submit(fs.post, reqs[1])]  # started first: they wait
        time.sleep(0.05)
        assert not path.exists() or path.stat().st_size == 0
        first = pool.submit(fs.post, reqs[0])
        results = [first.result(), later[1].result(), later[0].result()]
    assert [r.outcome for r in results] == [OK, OK, OK]
    assert path.read_bytes() == b"".join(expected(b, 0) for b in batches)
    assert [r.request_bytes for r in results] == [len(expected(b, 0)) for b in batches]
    assert len(synced_sizes) == 3 and min(synced_sizes) >= len(expected(batches[0], 0))
    assert all(r.payload is None for r in reqs)  # let go once written, before the fsync


def test_a_post_after_a_failed_one_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the first of two requests in flight cannot be written, the second must not be: a retry skips
    what the file already holds, so its lines there would hide the first one's missing lines for ever."""
    fs = sink(tmp_path)
    a, b, c = raw_batch([b"a1"], sn=1), raw_batch([b"b1"], sn=2), raw_batch([b"c1"], sn=3)
    assert fs.send([a], 1).outcome == OK
    first, second = _chain(fs, [b, c])
    calls = {"n": 0}

    def failing_open(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    real_open = os.open  # the first os.open is the first request's (the second waits for it)
    monkeypatch.setattr(os, "open", failing_open)
    with ThreadPoolExecutor(2) as pool:
        later = pool.submit(fs.post, second)
        earlier = pool.submit(fs.post, first)
        r1, r2 = earlier.result(), later.result()
    monkeypatch.setattr(os, "open", real_open)
    assert r1.outcome == r2.outcome == "retry" and "space" in r1.message
    assert Path(fs.path).read_bytes() == expected(a, 0)  # nothing of c: b goes again first
    # The retry (a new pass) writes both, once.
    again = _chain(fs, [b, c])
    assert [fs.post(r).outcome for r in again] == [OK, OK]
    assert Path(fs.path).read_bytes() == expected(a, 0) + expected(b, 0) + expected(c, 0)


def test_upload_with_posts_in_flight_delivers_every_line_once(env: Env) -> None:
    """A backlog of many requests through ``upload`` (several posts at once): every line once, in order, and
    the cursor at the end."""
    log = env.logs / "app.log"
    log.write_text(numbered(60_000, width=70))  # ~4.8 MB: five or six requests
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    assert env.cli("upload").exit_code == 0
    assert [o["sn"] for o in env.events()] == list(range(1, 60_001))
    assert_exactly_once(env.messages(), range(60_000))
    assert env.cli("upload").exit_code == 0  # nothing new: nothing written again
    assert len(env.events()) == 60_000


def test_one_request_is_read_ahead_of_the_posts(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak RSS (issue 13): at most three requests are cut and not yet done (two posts and the one read
    ahead of them), and each post lets go of its batches once they are written (before its fsync)."""
    log = env.logs / "app.log"
    log.write_text(numbered(60_000, width=70))
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    made, done, held = [0], [0], []
    real_request, real_post = FileSink._request, FileSink.post

    def request(self: FileSink, group: list[Batch], size: int, acked_sn: int) -> Request:
        made[0] += 1
        held.append(made[0] - done[0])
        return real_request(self, group, size, acked_sn)

    def post(self: FileSink, req: Request) -> SendResult:
        try:
            return real_post(self, req)
        finally:
            done[0] += 1

    monkeypatch.setattr(FileSink, "_request", request)
    monkeypatch.setattr(FileSink, "post", post)
    assert env.cli("upload").exit_code == 0
    assert made[0] >= 5 and max(held) == 3, held
    assert [o["sn"] for o in env.events()] == list(range(1, 60_001))


def test_run_delivery_looks_again_soon_then_less_often(env: Env) -> None:
    """In ``run``, a sink that finds nothing new looks again after 4 ms, then twice as long each time up to
    50 ms, and soon again once it delivered something: a fixed 50 ms wait at the start left the delivery
    idle for most of it while tail-once had already committed its first batches."""
    from shipctl import delivery
    from shipctl.config import load_config
    from shipctl.runtime import Budget, Context
    from shipctl.state import State

    log = env.logs / "app.log"
    log.write_text(numbered(10, width=20))
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    waits: list[float] = []

    class Readers(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(round(timeout or 0, 3))
            if len(waits) == 3:  # tail-once commits a batch while the sink waits
                assert env.cli("tail-once").exit_code == 0
            if len(waits) == 9:
                self.set()
            return self.is_set()

    with State.open(env.state) as state:
        res = delivery.upload(Context(load_config(env.config), state), Budget(max_seconds=0), readers_done=Readers())
    assert res.sinks[0].events == 10
    assert waits == [0.004, 0.008, 0.016, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]


def test_no_worker_is_woken_for_a_seal_the_sink_does_not_have(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file sink has no seal() of its own: the upload hands only its posts to worker threads (each hand-over
    wakes a thread while the GIL is held), and still writes every line once."""
    from concurrent.futures import thread

    log = env.logs / "app.log"
    log.write_text(numbered(30_000, width=70))
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    handed: list[str] = []
    real = thread.ThreadPoolExecutor.submit

    def submit(self: thread.ThreadPoolExecutor, fn: Callable[..., object], /, *args: object) -> object:
        handed.append(getattr(fn, "__name__", ""))
        return real(self, fn, *args)

    monkeypatch.setattr(thread.ThreadPoolExecutor, "submit", submit)
    assert env.cli("upload").exit_code == 0
    assert "post" in handed and "seal" not in handed, handed
    assert [o["sn"] for o in env.events()] == list(range(1, 30_001))


def test_kill_9_with_requests_in_flight_loses_and_duplicates_nothing(env: Env) -> None:
    """Uploads killed at random moments while two requests are in flight (one written and syncing, the next
    being written, small requests so that many are): the file ends up with every line once, in order."""
    log = env.logs / "app.log"
    log.write_text(numbered(200_000, width=40))
    env.write_config(
        "[agent]\nbatch_bytes = 8192\nimplicit_metric_monitor = false\n"
        f'[[logs]]\npath = "{log}"\n[[sinks]]\ntype = "file"\npath = "{env.sink}"\nrequest_bytes = 16384\n',
        sink=False,
    )
    assert env.cli("tail-once").exit_code == 0
    rng = random.Random(20261201)
    kills = 0
    for _ in range(30):
        if kills == 8:
            break
        proc = env.popen("upload", "--max-seconds", "0")
        lock_file = env.state.with_name(f"{env.state.name}.upload.file.lock")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if lock_file.exists() and lock_file.read_text() == str(proc.pid):
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.08))
        kills += env.kill9(proc)
    final = env.proc("upload", "--max-seconds", "0")
    assert final.returncode == 0, final.stderr
    assert kills >= 3, kills
    assert [o["sn"] for o in env.events()] == list(range(1, 200_001))
    assert_exactly_once(env.messages(), range(200_000))


def test_a_short_write_is_finished_piece_by_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces go out a few at a time in one writev; when the file takes less than asked (disk full mid-write,
    then space again), the rest follows in order and the lines are whole."""
    fs = sink(tmp_path, fsync=False)
    b = raw_batch([b"line %d" % i for i in range(3000)], sn=1)
    real = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        return real(fd, [buffers[0][:7]]) if len(calls) == 1 else real(fd, buffers)

    monkeypatch.setattr(jsonl, "PIECE", 1000)  # many pieces, several per writev
    monkeypatch.setattr(jsonl, "WRITE_BYTES", 100_000)
    monkeypatch.setattr(os, "writev", short_writev)
    assert fs.send([b], 1).outcome == OK
    assert Path(fs.path).read_bytes() == expected(b, 0)
    assert len(calls) > 3 and max(calls) > 1


def test_a_failed_write_leaves_whole_lines_for_the_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills after part of a request went out: the post fails (retry), and the retry cuts the torn
    line and writes each line once."""
    fs = sink(tmp_path, fsync=False)
    b = raw_batch([b"line %d" % i for i in range(3000)], sn=1)
    real = os.writev
    calls: list[int] = []

    def full_disk(fd: int, buffers: list[bytes]) -> int:
        calls.append(1)
        if len(calls) == 3:
            real(fd, [buffers[0][:11]])  # part of a line, then nothing more fits
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(jsonl, "PIECE", 1000)
    monkeypatch.setattr(jsonl, "WRITE_BYTES", 100_000)
    monkeypatch.setattr(os, "writev", full_disk)
    res = fs.send([b], 1)
    assert res.outcome == "retry" and "space" in res.message
    assert not Path(fs.path).read_bytes().endswith(b"\n")  # a torn line at the end
    monkeypatch.setattr(os, "writev", real)
    assert fs.send([b], 1).outcome == OK
    assert Path(fs.path).read_bytes() == expected(b, 0)
