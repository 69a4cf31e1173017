"""Queued batches: insert (inside the caller's transaction), read in order, delete once delivered."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from shipctl.model import Batch, PendingBatch, decode_payload, encode_payload


def insert_batch(conn: sqlite3.Connection, batch: PendingBatch, *, compress: bool = False) -> int:
    """Queue one batch. Call inside a write transaction: the sequence numbers it takes and the offset the
    caller moves must commit together with it."""
    next_sn = int(conn.execute("SELECT value FROM meta WHERE key = 'next_sn'").fetchone()[0])
    conn.execute("UPDATE meta SET value = ? WHERE key = 'next_sn'", (str(next_sn + batch.n_events),))
    codec, blob = encode_payload(batch.payload, compress)
    cur = conn.execute(
        "INSERT INTO queue (kind, source, log_id, ts, attrs, fmt, codec, n_events, n_bytes, sn, created,"
        " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            batch.kind,
            batch.source,
            batch.log_id,
            batch.ts,
            json.dumps(batch.attrs, separators=(",", ":")),
            batch.fmt,
            codec,
            batch.n_events,
            len(batch.payload),
            next_sn,
            time.time(),
            blob,
        ),
    )
    return int(cur.lastrowid or 0)


_COLUMNS = "id, kind, source, log_id, ts, attrs, fmt, codec, n_events, n_bytes, sn, payload"


def _batch(row: tuple) -> Batch:  # type: ignore[type-arg]
    bid, kind, source, log_id, ts, attrs, fmt, codec, n_events, n_bytes, sn, blob = row
    return Batch(
        bid, kind, source, log_id, ts, json.loads(attrs), fmt, n_events, n_bytes, sn, decode_payload(codec, blob)
    )


def oldest_batches(conn: sqlite3.Connection, *, max_bytes: int, max_batches: int = 1000, after: int = 0) -> list[Batch]:
    """The oldest batches (with id above ``after``), at least one, up to ``max_bytes`` of payload."""
    out: list[Batch] = []
    total = 0
    rows = conn.execute(f"SELECT {_COLUMNS} FROM queue WHERE id > ? ORDER BY id LIMIT ?", (after, max_batches))
    try:
        for row in rows:
            if out and total + row[9] > max_bytes:
                break
            out.append(_batch(row))
            total += row[9]
    finally:
        rows.close()  # end the read at once: an open statement would pin the WAL snapshot
    return out


def delete_batches(conn: sqlite3.Connection, ids: list[int]) -> None:
    # SQLite here is built with secure_delete on: every freed page would be zeroed through the WAL, a
    # second write of everything uploaded (measured: 40x slower deletes). The freed pages hold lines
    # from log files that are on disk anyway, in a 0600 file, and the next batches reuse them.
    conn.execute("PRAGMA secure_delete = FAST")
    conn.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])


@dataclass(frozen=True)
class QueueStats:
    batches: int
    events: int
    bytes: int
    stored_bytes: int
    oldest: float | None


def queue_stats(conn: sqlite3.Connection) -> QueueStats:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(n_events), 0), COALESCE(SUM(n_bytes), 0),"
        " COALESCE(SUM(LENGTH(payload)), 0), MIN(created) FROM queue"
    ).fetchone()
    return QueueStats(*row)


def stream_batches(conn: sqlite3.Connection, *, window: int, limit: int = 0) -> Iterator[Batch]:
    """Queued batches oldest first, read ``window`` bytes at a time, at most ``limit`` (0: all). Batches
    queued meanwhile are included; the cursor is the batch id, so each is seen once."""
    after = 0
    seen = 0
    while not limit or seen < limit:
        batches = oldest_batches(
            conn, max_bytes=window, max_batches=min(64, limit - seen) if limit else 64, after=after
        )
        if not batches:
            return
        seen += len(batches)
        after = batches[-1].id
        yield from batches


@dataclass(frozen=True)
class Trimmed:
    batches: int = 0
    events: int = 0
    bytes: int = 0


def trim(conn: sqlite3.Connection, max_stored_bytes: int) -> Trimmed:
    """Drop the oldest batches until the queue's stored size is at most ``max_stored_bytes``. Call inside a
    write transaction. Sizes are what the blobs take in the file (after queue compression)."""
    total = conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM queue").fetchone()[0]
    if total <= max_stored_bytes:
        return Trimmed()
    ids: list[int] = []
    events = size = 0
    rows = conn.execute("SELECT id, n_events, LENGTH(payload) FROM queue ORDER BY id")
    try:
        for bid, n_events, stored in rows:
            if total - size <= max_stored_bytes:
                break
            ids.append(bid)
            events += n_events
            size += stored
    finally:
        rows.close()
    delete_batches(conn, ids)
    return Trimmed(len(ids), events, size)


def stored_bytes(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM queue").fetchone()[0])
