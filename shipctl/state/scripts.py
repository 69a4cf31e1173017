"""Generic scripts: the cached ``-c`` output per script file, and what each script monitor's last run said."""

from __future__ import annotations

import sqlite3
from typing import Any

from shipctl.records import record


@record(frozen=True)
class Cached:
    """A script's ``-c`` output, cached while the script's size and mtime stay the same."""

    size: int
    mtime_ns: int
    config: str  # the JSON the script printed


@record(frozen=True)
class RunRecord:
    """One run of a script monitor, for status."""

    monitor: str
    command: str
    path: str
    period: float | None
    ts: float
    step: str  # "-c", "-d" or "" (a script run without protocol flags, such as format = "influx")
    exit_code: int | None  # None: it did not get to run, or was killed
    killed: bool
    stderr_tail: str
    bad_lines: int
    error: str | None


def cached_config(conn: sqlite3.Connection, path: str, argv: str) -> Cached | None:
    row = conn.execute(
        "SELECT size, mtime_ns, config FROM script_configs WHERE path = ? AND argv = ?", (path, argv)
    ).fetchone()
    return Cached(*row) if row else None


def store_config(conn: sqlite3.Connection, path: str, argv: str, cached: Cached, ts: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO script_configs (path, argv, size, mtime_ns, config, fetched) VALUES (?, ?, ?, ?, ?, ?)",
        (path, argv, cached.size, cached.mtime_ns, cached.config, ts),
    )


def record(conn: sqlite3.Connection, r: RunRecord) -> None:
    conn.execute(
        "INSERT INTO scripts (monitor, command, path, period, last_run, last_step, last_exit, killed, stderr_tail,"
        " bad_lines, bad_lines_total, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (monitor) DO UPDATE SET command = excluded.command, path = excluded.path,"
        " period = COALESCE(excluded.period, period), last_run = excluded.last_run, last_step = excluded.last_step,"
        " last_exit = excluded.last_exit, killed = excluded.killed, stderr_tail = excluded.stderr_tail,"
        " bad_lines = excluded.bad_lines, bad_lines_total = bad_lines_total + excluded.bad_lines,"
        " last_error = excluded.last_error",
        (
            r.monitor,
            r.command,
            r.path,
            r.period,
            r.ts,
            r.step,
            r.exit_code,
            int(r.killed),
            r.stderr_tail,
            r.bad_lines,
            r.bad_lines,
            r.error,
        ),
    )


def period(conn: sqlite3.Connection, monitor_id: str) -> float | None:
    row = conn.execute("SELECT period FROM scripts WHERE monitor = ?", (monitor_id,)).fetchone()
    return row[0] if row else None


_COLUMNS = (
    "monitor",
    "command",
    "path",
    "period",
    "last_run",
    "last_step",
    "last_exit",
    "killed",
    "stderr_tail",
    "bad_lines",
    "bad_lines_total",
    "last_error",
)


def rows(conn: sqlite3.Connection, monitor_ids: set[str]) -> list[dict[str, Any]]:
    """The records of the given (configured) script monitors."""
    if not monitor_ids:
        return []
    marks = ",".join("?" * len(monitor_ids))
    cur = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM scripts WHERE monitor IN ({marks}) ORDER BY monitor", sorted(monitor_ids)
    )
    return [dict(zip(_COLUMNS, row, strict=True)) for row in cur]
