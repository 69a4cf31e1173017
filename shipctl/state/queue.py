"""Queued batches: insert (inside the caller's transaction), read in order, delete once delivered."""

from __future__ import annotations

import json
import sqlite3
import time
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
