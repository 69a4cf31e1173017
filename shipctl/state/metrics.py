"""Metric history: per (monitor, metric, dimensions) the last sample (for Difference and rate) and a ring of
the most recent RING samples (for ``status --metric``). Bounded: a series keeps at most RING points, and a
series not updated for STALE_SECONDS (or ten intervals of its monitor, if longer) is dropped.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from shipctl.records import record

RING = 60
STALE_SECONDS = 2 * 86400.0


@record(frozen=True)
class Prev:
    """The stored previous sample of one series."""

    id: int
    ts: float
    value: float | int
    epoch: str
    n: int  # samples stored so far; the ring slot of the next one is n % RING


@record(frozen=True)
class Point:
    """A new sample of a series, to store as its last one and in its ring."""

    key: tuple[str, str]  # (metric, dims JSON)
    kind: str
    epoch: str
    ts: float
    value: float | int


def load(conn: sqlite3.Connection, monitor_id: str) -> dict[tuple[str, str], Prev]:
    rows = conn.execute(
        "SELECT id, metric, dims, last_ts, last_value, epoch, n FROM metric_series WHERE monitor = ?", (monitor_id,)
    )
    return {(m, d): Prev(i, ts, v, e, n) for i, m, d, ts, v, e, n in rows}


def _storable(value: float | int) -> float | int:
    """SQLite integers are 64-bit: a larger one (MariaDB reports 2**64-1 for some unset counters) is kept as a
    float rather than failing the whole run's transaction."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def store(
    conn: sqlite3.Connection, monitor_id: str, points: list[Point], known: dict[tuple[str, str], Prev], interval: float
) -> None:
    """Write this run's samples of one monitor (inside the caller's transaction)."""
    latest = {p.key: Point(p.key, p.kind, p.epoch, p.ts, _storable(p.value)) for p in points}  # last one wins
    updates, ring = [], []
    for key, p in latest.items():
        prev = known.get(key)
        if prev is None:
            cur = conn.execute(
                "INSERT INTO metric_series (monitor, metric, dims, kind, epoch, last_ts, last_value, n)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (monitor_id, key[0], key[1], p.kind, p.epoch, p.ts, p.value),
            )
            ring.append((cur.lastrowid, 0, p.ts, p.value))
        else:
            updates.append((p.kind, p.epoch, p.ts, p.value, prev.id))
            ring.append((prev.id, prev.n % RING, p.ts, p.value))
    if updates:
        conn.executemany(
            "UPDATE metric_series SET kind = ?, epoch = ?, last_ts = ?, last_value = ?, n = n + 1 WHERE id = ?",
            updates,
        )
    if ring:
        conn.executemany("INSERT OR REPLACE INTO metric_points (series, slot, ts, value) VALUES (?, ?, ?, ?)", ring)
    if points:
        # Series this monitor stopped producing (a vanished interface, mount or process) age out.
        cutoff = points[0].ts - max(STALE_SECONDS, 10 * interval)
        _delete_series(conn, "monitor = ? AND last_ts < ?", (monitor_id, cutoff))


def prune(conn: sqlite3.Connection, now: float, keep_monitors: set[str] | None = None) -> None:
    """Drop series not updated for STALE_SECONDS of monitors no longer configured (or of any monitor)."""
    cutoff = now - STALE_SECONDS
    if keep_monitors:
        marks = ",".join("?" * len(keep_monitors))
        _delete_series(conn, f"last_ts < ? AND monitor NOT IN ({marks})", (cutoff, *sorted(keep_monitors)))
    else:
        _delete_series(conn, "last_ts < ?", (cutoff,))


def _delete_series(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> None:
    conn.execute(f"DELETE FROM metric_points WHERE series IN (SELECT id FROM metric_series WHERE {where})", params)
    conn.execute(f"DELETE FROM metric_series WHERE {where}", params)


def history(conn: sqlite3.Connection, metric: str) -> list[dict[str, Any]]:
    """Every series of ``metric`` with its stored points, oldest first."""
    out = []
    for sid, monitor, dims, kind in conn.execute(
        "SELECT id, monitor, dims, kind FROM metric_series WHERE metric = ? ORDER BY monitor, dims", (metric,)
    ).fetchall():
        points = conn.execute("SELECT ts, value FROM metric_points WHERE series = ? ORDER BY ts", (sid,)).fetchall()
        out.append({"monitor": monitor, "metric": metric, "dims": dims, "kind": kind, "points": points})
    return out


def metric_names(conn: sqlite3.Connection, limit: int = 50) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT metric FROM metric_series ORDER BY metric LIMIT ?", (limit,))]
