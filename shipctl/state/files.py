"""Tracked files of each [[logs]] entry: identity, offset and counters."""

from __future__ import annotations

import sqlite3
import time

from shipctl import records
from shipctl.records import record


@record
class FileRecord:
    """A followed file's row: where it is, how it is recognised, how far it was read."""

    log_id: str
    path: str  # the glob match this record follows
    real_path: str  # where the file being read is now (a rotated sibling while it is finished)
    dev: int
    ino: int
    fp_len: int  # bytes covered by the fingerprint (less than the full size for short files)
    fp_hash: str
    offset: int
    tail_len: int = 0
    tail_hash: str = ""
    size: int = 0
    mtime_ns: int = 0
    pending_since: float | None = None
    gen_since: float = 0.0  # rotated generations changed after this time are unseen
    # active: reading real_path. rotated: the file was rotated away and read to its end; the next file at
    # path (or a generation rotated after it) comes next. gone: vanished, not found among rotated files.
    # late: a record of its own for lines written to a finished rotated file (dropped once read).
    # shadowed: an earlier [[logs]] entry matches the same file and ships it; this record does not move.
    state: str = "active"
    bytes_copied: int = 0
    lines_copied: int = 0
    bytes_skipped: int = 0
    lines_dropped: int = 0
    bytes_dropped: int = 0
    redactions: int = 0
    rotations: int = 0
    first_seen: float = 0.0
    last_checked: float = 0.0
    last_error: str | None = None
    id: int | None = None


_FIELDS = [f.name for f in records.fields(FileRecord) if f.name != "id"]


def records(conn: sqlite3.Connection, log_id: str | None = None) -> list[FileRecord]:
    cols = ", ".join(["id", *_FIELDS])
    if log_id is None:
        rows = conn.execute(f"SELECT {cols} FROM files ORDER BY log_id, path").fetchall()
    else:
        rows = conn.execute(f"SELECT {cols} FROM files WHERE log_id = ? ORDER BY path", (log_id,)).fetchall()
    return [FileRecord(**dict(zip(_FIELDS, row[1:], strict=True)), id=row[0]) for row in rows]


def save(conn: sqlite3.Connection, rec: FileRecord) -> None:
    values = [getattr(rec, f) for f in _FIELDS]
    if rec.id is None:
        cur = conn.execute(f"INSERT INTO files ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})", values)
        rec.id = cur.lastrowid
    else:
        conn.execute(f"UPDATE files SET {', '.join(f + ' = ?' for f in _FIELDS)} WHERE id = ?", [*values, rec.id])


def delete(conn: sqlite3.Connection, rec: FileRecord) -> None:
    conn.execute("DELETE FROM files WHERE id = ?", (rec.id,))


def mark_seen(conn: sqlite3.Connection, log_id: str, fp_len: int, fp_hash: str, size: int, tail_hash: str) -> None:
    """Remember a rotated-away file that was read to its end (hashes only); keep the newest 200 per log.
    An empty file is not worth remembering: every empty file would look like it."""
    if size == 0:
        return
    row = (log_id, fp_len, fp_hash, size, tail_hash)
    if conn.execute(
        "SELECT 1 FROM seen_files WHERE log_id = ? AND fp_len = ? AND fp_hash = ? AND size = ? AND tail_hash = ?", row
    ).fetchone():
        return
    conn.execute(
        "INSERT INTO seen_files (log_id, fp_len, fp_hash, size, tail_hash, finished) VALUES (?, ?, ?, ?, ?, ?)",
        (*row, time.time()),
    )
    conn.execute(
        "DELETE FROM seen_files WHERE log_id = ? AND id NOT IN"
        " (SELECT id FROM seen_files WHERE log_id = ? ORDER BY id DESC LIMIT 200)",
        (log_id, log_id),
    )


def seen(conn: sqlite3.Connection, log_id: str) -> list[tuple[int, str, int, str]]:
    return conn.execute(
        "SELECT fp_len, fp_hash, size, tail_hash FROM seen_files WHERE log_id = ?", (log_id,)
    ).fetchall()


def last_finished(conn: sqlite3.Connection, log_id: str) -> float | None:
    row = conn.execute("SELECT MAX(finished) FROM seen_files WHERE log_id = ?", (log_id,)).fetchone()
    return row[0] if row else None


def log_initialized(conn: sqlite3.Connection, log_id: str) -> bool:
    return conn.execute("SELECT 1 FROM logs WHERE log_id = ?", (log_id,)).fetchone() is not None


def mark_checked(conn: sqlite3.Connection, ids: list[int], when: float) -> None:
    conn.executemany("UPDATE files SET last_checked = ? WHERE id = ?", [(when, i) for i in ids])


def touch_log(conn: sqlite3.Connection, log_id: str, matched: int, error: str | None) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO logs (log_id, initialized, last_checked, matched, last_error) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (log_id) DO UPDATE SET last_checked = excluded.last_checked,"
        " matched = excluded.matched, last_error = excluded.last_error",
        (log_id, now, now, matched, error),
    )


def log_rows(conn: sqlite3.Connection) -> dict[str, tuple[float | None, int, str | None]]:
    return {
        r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT log_id, last_checked, matched, last_error FROM logs")
    }
