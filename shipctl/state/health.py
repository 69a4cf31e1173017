"""What health reporting keeps in the state file, as rows of ``meta`` (no migration needed):

- ongoing problems (``problem:<text>`` -> since/seen), so a problem that persists across runs is reported by the
  first run that meets it and by the run that sees it clear, not by every timer tick;
- the last self-metrics snapshot (``selfmetrics``), which the implicit ``shipctl`` monitor sends as metric events.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any

from shipctl.records import record

PROBLEM = "problem:"
SNAPSHOT = "selfmetrics"


@record(frozen=True)
class Problem:
    """A problem a run met: its text and when it was first and last met."""

    text: str
    since: float  # first run that met it
    seen: float  # latest run that met it
    last: str | None = None  # the latest wording, when the key masks details that vary (a monitor's durations)


@record
class Changes:
    """Problems met by this run next to the previous one's."""

    new: list[str] = field(default_factory=list)  # not met by the previous run: report it
    ongoing: list[str] = field(default_factory=list)  # reported before: stay quiet
    cleared: list[str] = field(default_factory=list)  # met before, gone now: say so once


def problems(conn: sqlite3.Connection) -> list[Problem]:
    rows = conn.execute(
        "SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key", (PROBLEM, PROBLEM[:-1] + ";")
    ).fetchall()
    out = []
    for key, value in rows:
        try:
            data = json.loads(value)
            last = data.get("last")
            text = key[len(PROBLEM) :]
            out.append(
                Problem(text, float(data["since"]), float(data["seen"]), last if isinstance(last, str) else None)
            )
        except (ValueError, KeyError, TypeError):
            continue  # a row this version cannot read is not worth failing a run for
    return out


def is_ongoing(conn: sqlite3.Connection, text: str) -> bool:
    return conn.execute("SELECT 1 FROM meta WHERE key = ?", (PROBLEM + text,)).fetchone() is not None


def update(
    conn: sqlite3.Connection,
    found: Iterable[str],
    owns: Callable[[str], bool],
    now: float,
    last: dict[str, str] | None = None,
) -> Changes:
    """Record this run's problems. ``owns(text)`` says which earlier problems this run was in a position to meet
    again (a tail-once run owns its logs' problems, not a monitor's): only those can clear. ``last`` maps a key
    to the wording this run met, kept for ``status`` when the key itself masks varying details."""
    known = {p.text: p for p in problems(conn)}
    changes = Changes()
    current = list(dict.fromkeys(found))
    for text in current:
        p = known.get(text)
        (changes.ongoing if p is not None else changes.new).append(text)
        since = p.since if p is not None else now
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (
                PROBLEM + text,
                json.dumps({"since": since, "seen": now, **({"last": last[text]} if last and text in last else {})}),
            ),
        )
    for text in known:
        if text not in current and owns(text):
            changes.cleared.append(text)
            conn.execute("DELETE FROM meta WHERE key = ?", (PROBLEM + text,))
    return changes


def save_snapshot(conn: sqlite3.Connection, snapshot: dict[str, Any]) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (SNAPSHOT, json.dumps(snapshot)))


def snapshot(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SNAPSHOT,)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def probe(path: str, timeout: float) -> tuple[str, str] | None:
    """Can the state file be read now? None when it can, else (what, detail) with what one of "missing", "locked",
    "corrupt", "unreadable". Read-only, with a short busy timeout: a monitoring check must answer within its own
    timeout, not wait the 30 s a run would for a lock."""
    import os
    from pathlib import Path

    if not os.path.exists(path):
        return ("missing", "does not exist")
    # A URI, for mode=ro; as_uri() percent-encodes the path, whose "#", "?" or "%" would otherwise end or change it.
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        return ("unreadable", str(exc))
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return ("locked", f"{text} (another process holds an exclusive lock on it)")
        return ("unreadable", text)
    except sqlite3.DatabaseError as exc:
        return ("corrupt", str(exc))
    finally:
        conn.close()
    return None
