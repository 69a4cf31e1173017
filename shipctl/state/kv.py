"""Per-plugin key/value store with expiry (what Panoptes kept in Redis), in the state file.

Rows are namespaced by plugin (the monitor id) and space: ``kv`` is the plugin's own store, ``rate`` holds the
previous counter samples of its rate transforms. A value is a string, or a JSON array of strings for a set.
Expiry is a unix time; a key is gone once the clock reaches it. A plugin's rows are read before its run and
the changed ones written back in the transaction that queues its events (shipctl/pyplugins/context.py).
"""

from __future__ import annotations

import sqlite3

from shipctl.records import record

KV = "kv"
RATE = "rate"


@record(frozen=True)
class Entry:
    """A plugin's stored key-value entry."""

    value: str
    expires: float | None
    is_set: bool


def load(conn: sqlite3.Connection, plugin: str, now: float) -> dict[tuple[str, str], Entry]:
    """Every live key of a plugin, by (space, key): read before its run, in the main thread."""
    rows = conn.execute(
        "SELECT space, key, value, expires, is_set FROM plugin_kv"
        " WHERE plugin = ? AND (expires IS NULL OR expires > ?)",
        (plugin, now),
    )
    return {(s, k): Entry(v, e, bool(i)) for s, k, v, e, i in rows}


def put(
    conn: sqlite3.Connection, plugin: str, space: str, key: str, value: str, expires: float | None, is_set: bool = False
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO plugin_kv (plugin, space, key, value, expires, is_set) VALUES (?, ?, ?, ?, ?, ?)",
        (plugin, space, key, value, expires, int(is_set)),
    )


def delete(conn: sqlite3.Connection, plugin: str, space: str, key: str) -> None:
    conn.execute("DELETE FROM plugin_kv WHERE plugin = ? AND space = ? AND key = ?", (plugin, space, key))


def purge(conn: sqlite3.Connection, plugin: str, now: float) -> int:
    """Delete the plugin's expired keys (after each of its runs, so the table stays bounded)."""
    return conn.execute("DELETE FROM plugin_kv WHERE plugin = ? AND expires <= ?", (plugin, now)).rowcount


def rows(conn: sqlite3.Connection, plugin: str) -> list[tuple[str, str, str, float | None]]:
    """(space, key, value, expires) of a plugin, expired ones included (tests and debugging)."""
    return conn.execute(
        "SELECT space, key, value, expires FROM plugin_kv WHERE plugin = ? ORDER BY space, key", (plugin,)
    ).fetchall()


def database_file(conn: sqlite3.Connection) -> str:
    """The path of the connection's main database ("" for an in-memory one)."""
    return next((f for _, name, f in conn.execute("PRAGMA database_list") if name == "main"), "") or ""
