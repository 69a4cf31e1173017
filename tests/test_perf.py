"""Issue 13 (performance): what was changed for speed keeps every guarantee."""

from __future__ import annotations

import json
import random
import sqlite3
import zlib

import pytest

from tests.conftest import Env, append, numbered

QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _config(env: Env, agent: str = "") -> None:
    env.write_config(f'[agent]\n{QUIET}batch_bytes = 8192\n{agent}[[logs]]\npath = "{env.logs}/app.log"\n')


def _codecs(env: Env) -> list[tuple[str, int, int]]:
    conn = sqlite3.connect(env.state)
    try:
        return conn.execute("SELECT codec, n_bytes, LENGTH(payload) FROM queue ORDER BY sn").fetchall()
    finally:
        conn.close()


def _sent(env: Env) -> list[str]:
    return [json.loads(line)["message"] for line in env.sink.read_text().splitlines()]


def test_the_journal_is_deflated_by_default_and_stays_exact(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text(numbered(2000))
    _config(env)
    assert env.cli("tail-once").exit_code == 0
    rows = _codecs(env)
    assert rows and {c for c, _, _ in rows} == {"zlib"}
    # Each row is its lines deflated: several times smaller, and the stdlib inflates it (older shipctl can read).
    assert sum(n for _, n, _ in rows) == log.stat().st_size
    assert sum(s for _, _, s in rows) * 4 < log.stat().st_size
    conn = sqlite3.connect(env.state)
    blob = conn.execute("SELECT payload FROM queue ORDER BY sn LIMIT 1").fetchone()[0]
    conn.close()
    assert zlib.decompress(blob).startswith(b"line 000000 ")
    assert env.cli("upload").exit_code == 0
    assert _sent(env) == numbered(2000).splitlines()


def test_raw_rows_queued_before_stay_readable_beside_deflated_ones(env: Env) -> None:
    """A state file written with compress_queue = false (every release before this one) upgrades in place:
    its raw rows are delivered, in order, together with the deflated rows queued after them."""
    log = env.logs / "app.log"
    log.write_text(numbered(500))
    _config(env, "compress_queue = false\n")
    assert env.cli("tail-once").exit_code == 0
    append(log, numbered(500, start=500))
    _config(env)
    assert env.cli("tail-once").exit_code == 0
    codecs = [c for c, _, _ in _codecs(env)]
    assert "none" in codecs and "zlib" in codecs and codecs.index("zlib") > codecs.index("none")
    assert env.cli("upload").exit_code == 0
    assert _sent(env) == numbered(1000).splitlines()
    assert _codecs(env) == []


def test_a_corrupt_deflated_row_is_reported_not_shipped(env: Env) -> None:
    """A deflated payload that no longer inflates is reported in one line naming it (exit 65: set aside, its
    events lost; tests/test_damaged_batch.py has the rest), with no traceback, and nothing made up from it
    is sent."""
    (env.logs / "app.log").write_text(numbered(300))
    _config(env)
    assert env.cli("tail-once").exit_code == 0
    conn = sqlite3.connect(env.state)
    conn.execute("UPDATE queue SET payload = X'789c0000dead' WHERE sn = (SELECT MIN(sn) FROM queue)")
    conn.commit()
    conn.close()
    r = env.cli("upload")
    assert r.exit_code == 65, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr and "queued batch 1 (sn 1..300," in r.stderr
    assert "does not inflate" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not env.sink.exists() or "line 000000" not in env.sink.read_text()


@pytest.mark.parametrize("level", range(10))
def test_a_body_deflated_in_pieces_is_one_zlib_stream(level: int) -> None:
    """The addEvents body is its head, events deflated while the request filled, and its tail: any zlib
    reader must see exactly their concatenation, with a right checksum (zlib.decompress checks it)."""
    from shipctl.sinks.deflate import Deflated, Segment, adler32, adler32_combine, zlib_body

    rng = random.Random(level)
    pieces = [bytes(rng.choice(b'ab"\\{}, \n\xc3\xa9') for _ in range(rng.randrange(0, 70_000))) for _ in range(5)]
    seg = Segment(level)
    for p in pieces:
        seg.add(p)
    middle = Deflated.of(seg)
    assert middle.inflate() == b"".join(pieces)
    head, tail = b'{"token":"k","events":[', b"]}"
    body = zlib_body(level, head, middle, tail)
    assert zlib.decompress(body) == head + b"".join(pieces) + tail
    assert body[:2] == zlib.compress(b"x", level)[:2]  # the header zlib itself writes for that level
    a, b = pieces[0], pieces[1]
    assert adler32_combine(adler32(a), adler32(b), len(b)) == zlib.adler32(a + b)
    empty = Segment(level)
    assert zlib.decompress(zlib_body(level, head, Deflated.of(empty), tail)) == head + tail
