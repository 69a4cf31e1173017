"""Read-only queries for ``status``: rows as dicts through sqlite-utils (not on any hot path)."""

from __future__ import annotations

from typing import Any

from shipctl.state.db import State


def _db(state: State) -> Any:
    from sqlite_utils import Database

    # execute_plugins=False: other installed sqlite-utils plugins must not run inside our connection.
    return Database(state.conn, execute_plugins=False)


def rows(state: State, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return list(_db(state).query(sql, params))


def files(state: State) -> list[dict[str, Any]]:
    return rows(state, "SELECT * FROM files ORDER BY log_id, path")


def logs(state: State) -> dict[str, dict[str, Any]]:
    return {r["log_id"]: r for r in rows(state, "SELECT * FROM logs")}


def queue_by_source(state: State) -> list[dict[str, Any]]:
    return rows(
        state,
        "SELECT kind, source, COUNT(*) AS batches, SUM(n_events) AS events, SUM(n_bytes) AS bytes,"
        " MIN(created) AS oldest FROM queue GROUP BY kind, source ORDER BY kind, source",
    )


def monitors(state: State) -> list[dict[str, Any]]:
    return rows(state, "SELECT * FROM monitors ORDER BY id")


def uploads(state: State) -> list[dict[str, Any]]:
    return rows(state, "SELECT * FROM upload_state ORDER BY sink")


def schema_version(state: State) -> int:
    return int(state.conn.execute("PRAGMA user_version").fetchone()[0])
