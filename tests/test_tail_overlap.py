"""tail-once deflates a chunk in a worker thread while it reads the next one into reused buffers and commits the
one before (shipctl/tail/follower.py, ``_read``): what is queued and the offsets saved must be exactly what a
strictly one-chunk-at-a-time run gives, also when the run stops or fails half way."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import pytest

from shipctl.tail import files as tailfiles
from tests.conftest import Env, assert_exactly_once, numbered

N_LINES = 20_000  # 1.4 MB of numbered lines: ~350 chunks of 4 KiB


def _config(env: Env, log: Path, extra: str = "") -> None:
    # A small max_line_size, else the read size would be twice its default whatever batch_bytes says.
    env.write_config(
        f'[agent]\nbatch_bytes = 4096\nmax_seconds = 0\n{extra}[[logs]]\npath = "{log}"\nmax_line_size = 1000\n'
    )


def _queued(env: Env) -> tuple[bytes, int, list[int]]:
    """The queued payloads in order, inflated and joined; the file's saved offset; each batch's sn."""
    with sqlite3.connect(env.state) as conn:
        rows = conn.execute("SELECT codec, payload, n_bytes, n_events, sn FROM queue ORDER BY id").fetchall()
        (offset,) = conn.execute("SELECT offset FROM files").fetchone()
    data = b""
    sns = []
    for codec, blob, n_bytes, _n_events, sn in rows:
        payload = zlib.decompress(blob) if codec == "zlib" else bytes(blob)
        assert len(payload) == n_bytes
        data += payload
        sns.append(sn)
    return data, offset, sns


@pytest.mark.parametrize("compress", ["true", "false"])
def test_every_chunk_is_queued_as_read_with_its_own_offset(env: Env, compress: str) -> None:
    log = env.logs / "app.log"
    text = numbered(N_LINES, width=40)
    log.write_text(text)
    _config(env, log, f"compress_queue = {compress}\n")
    assert env.cli("tail-once").exit_code == 0
    data, offset, sns = _queued(env)
    # A reused read buffer overwritten before its chunk was queued would show here as a wrong or doubled chunk.
    assert data == text.encode()
    assert offset == len(text)
    assert len(sns) > 100  # many chunks: the overlap was exercised
    with sqlite3.connect(env.state) as conn:
        counts = [n for (n,) in conn.execute("SELECT n_events FROM queue ORDER BY id")]
    assert all(b == a + n for a, b, n in zip(sns, sns[1:], counts, strict=False))  # sequence numbers back to back


def test_a_byte_limit_stop_commits_the_chunk_cut_ahead(env: Env) -> None:
    log = env.logs / "app.log"
    text = numbered(N_LINES, width=40)
    log.write_text(text)
    _config(env, log, "max_bytes = 100000\n")
    assert env.cli("tail-once").exit_code == 0
    data, offset, _ = _queued(env)
    assert 100_000 <= offset < len(text)
    assert len(data) == offset  # everything up to the saved offset is queued, nothing past it
    assert text.encode().startswith(data)
    _config(env, log)
    assert env.cli("tail-once").exit_code == 0
    assert env.cli("upload").exit_code == 0
    assert_exactly_once(env.messages(), range(N_LINES))


def test_a_read_failure_half_way_keeps_offset_and_queue_together(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    log = env.logs / "app.log"
    text = numbered(N_LINES, width=40)
    log.write_text(text)
    _config(env, log)
    real = tailfiles.Source.read_into
    calls = {"n": 0}

    def failing(self: tailfiles.Source, offset: int, buf: bytearray) -> bytes | bytearray:
        calls["n"] += 1
        if calls["n"] == 40:
            raise OSError(5, "Input/output error")
        return real(self, offset, buf)

    monkeypatch.setattr(tailfiles.Source, "read_into", failing)
    env.cli("tail-once")
    data, offset, _ = _queued(env)
    assert 0 < offset < len(text)
    assert len(data) == offset  # the chunk cut before the failing read was committed with its own offset
    monkeypatch.setattr(tailfiles.Source, "read_into", real)
    assert env.cli("tail-once").exit_code == 0
    assert env.cli("upload").exit_code == 0
    assert_exactly_once(env.messages(), range(N_LINES))


def test_read_into_returns_the_buffer_when_filled_and_a_copy_at_the_end(tmp_path: Path) -> None:
    f = tmp_path / "f.log"
    f.write_bytes(b"abcdefghij")
    buf = bytearray(4)
    with tailfiles.Source(str(f)) as src:
        assert src.read_into(0, buf) is buf and buf == b"abcd"
        tail = src.read_into(8, buf)
        assert tail == b"ij" and type(tail) is bytes  # a short read: not the buffer the next read overwrites
        assert src.read_into(10, buf) == b""
