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


def runs_by_command(state: State) -> dict[str, dict[str, Any]]:
    """Per command: its latest run (started, ended, exit_code) and when its latest successful run ended."""
    return {
        r["command"]: r
        for r in rows(
            state,
            "SELECT r.command, r.started, r.ended, r.exit_code,"
            " (SELECT MAX(s.ended) FROM runs s WHERE s.command = r.command AND s.exit_code = 0) AS last_success"
            " FROM runs r WHERE r.id IN (SELECT MAX(id) FROM runs GROUP BY command) ORDER BY r.command",
        )
    }


def problems(state: State) -> list[dict[str, Any]]:
    """Problems that persist across runs (reported once; see shipctl/state/health.py)."""
    from shipctl.state import health

    return [{"problem": p.last or p.text, "since": p.since, "seen": p.seen} for p in health.problems(state.conn)]
