"""Upload progress and backoff per sink, kept across runs."""

from __future__ import annotations

import sqlite3

from shipctl.records import record


@record
class UploadState:
    """A sink's row: its cursor, counters and backoff."""

    sink: str
    last_attempt: float | None = None
    last_success: float | None = None
    consecutive_failures: int = 0
    next_attempt: float | None = None
    last_status: str | None = None
    last_message: str | None = None
    last_request_bytes: int | None = None
    bytes_uploaded: int = 0
    events_uploaded: int = 0
    batches_uploaded: int = 0
    events_discarded: int = 0
    batches_discarded: int = 0
    batches_dropped: int = 0
    acked_sn: int = 0  # the sink's cursor: every event up to this sequence number is done for it
    events_dropped: int = 0
    stream: str | None = None  # the sink's own sequence stream id (see stream_id)


_COLS = [
    "last_attempt",
    "last_success",
    "consecutive_failures",
    "next_attempt",
    "last_status",
    "last_message",
    "last_request_bytes",
    "bytes_uploaded",
    "events_uploaded",
    "batches_uploaded",
    "events_discarded",
    "batches_discarded",
    "batches_dropped",
    "acked_sn",
    "events_dropped",
    "stream",
]


def load(conn: sqlite3.Connection, sink: str) -> UploadState:
    row = conn.execute(f"SELECT {', '.join(_COLS)} FROM upload_state WHERE sink = ?", (sink,)).fetchone()
    return UploadState(sink, *row) if row else UploadState(sink)


def load_all(conn: sqlite3.Connection) -> list[UploadState]:
    rows = conn.execute(f"SELECT sink, {', '.join(_COLS)} FROM upload_state ORDER BY sink").fetchall()
    return [UploadState(*r) for r in rows]


def save(conn: sqlite3.Connection, st: UploadState) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO upload_state (sink, {', '.join(_COLS)}) VALUES ({', '.join('?' * (len(_COLS) + 1))})",
        [st.sink, *(getattr(st, c) for c in _COLS)],
    )


def backoff_seconds(failures: int, retry_after: float | None) -> float:
    """10 s after the first failure, doubling up to 10 minutes; a server's Retry-After wins if longer."""
    delay = min(600.0, 10.0 * 2 ** max(0, failures - 1))
    return max(delay, retry_after or 0.0)


def cursors(conn: sqlite3.Connection, sinks: list[str]) -> dict[str, int]:
    """Each configured sink's cursor; a sink that never ran starts before the oldest batch still queued."""
    found = dict(conn.execute("SELECT sink, acked_sn FROM upload_state").fetchall())
    return {s: int(found.get(s) or 0) for s in sinks}


# Small per-sink values kept in ``meta``:
def limit_key(sink: str) -> str:
    """``configured:current`` request size limit, once a requestTooLarge reply made it smaller."""
    return f"upload.{sink}.request_limit"


def stream_id(conn: sqlite3.Connection, sink: str, session: str) -> str:
    """The sink's sequence stream id: kept in its row, made on first use from the session and the sink id
    (32 hex digits, like the session). Call inside a write transaction."""
    st = load(conn, sink)
    if not st.stream:
        st.stream = make_stream(session, sink)
        save(conn, st)
    return st.stream


def make_stream(session: str, sink: str) -> str:
    import hashlib

    return hashlib.blake2b(f"{session}/{sink}".encode(), digest_size=16).hexdigest()
