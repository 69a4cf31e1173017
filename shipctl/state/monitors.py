"""Monitor schedule and outcome per configured monitor id."""

from __future__ import annotations

import sqlite3


def last_runs(conn: sqlite3.Connection) -> dict[str, float]:
    return {r[0]: r[1] for r in conn.execute("SELECT id, last_run FROM monitors WHERE last_run IS NOT NULL")}


def record(
    conn: sqlite3.Connection,
    monitor_id: str,
    mtype: str,
    started: float,
    duration: float,
    samples: int,
    error: str | None,
) -> None:
    conn.execute(
        "INSERT INTO monitors (id, type, last_run, last_duration, last_outcome, runs, samples, errors, last_error)"
        " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET type = excluded.type,"
        " last_run = excluded.last_run, last_duration = excluded.last_duration,"
        " last_outcome = excluded.last_outcome, runs = runs + 1, samples = samples + excluded.samples,"
        " errors = errors + excluded.errors, last_error = COALESCE(excluded.last_error, last_error)",
        (monitor_id, mtype, started, duration, "error" if error else "ok", samples, 1 if error else 0, error),
    )


def rows(conn: sqlite3.Connection) -> list[tuple]:  # type: ignore[type-arg]
    return conn.execute(
        "SELECT id, type, last_run, last_duration, last_outcome, runs, samples, errors, last_error"
        " FROM monitors ORDER BY id"
    ).fetchall()
