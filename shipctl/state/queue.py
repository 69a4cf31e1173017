"""Queued batches: insert (inside the caller's transaction), read in order, delete once delivered."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shipctl.humanize import plural
from shipctl.model import Batch, PendingBatch, Undecodable, decode_payload, encode_payload
from shipctl.records import record


def insert_batch(
    conn: sqlite3.Connection,
    batch: PendingBatch,
    *,
    compress: bool = False,
    encoded: tuple[str, bytes] | None = None,
) -> int:
    """Queue one batch. Call inside a write transaction: the sequence numbers it takes and the offset the
    caller moves must commit together with it. ``encoded``: the payload's stored form (codec, blob) when the
    caller already made it (the follower deflates the next chunk while the previous one commits)."""
    next_sn = int(conn.execute("SELECT value FROM meta WHERE key = 'next_sn'").fetchone()[0])
    conn.execute("UPDATE meta SET value = ? WHERE key = 'next_sn'", (str(next_sn + batch.n_events),))
    codec, blob = encoded if encoded is not None else encode_payload(batch.payload, compress)
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


# attrs and payload as bytes whatever their stored type: one flipped bit in a row's header turns a blob into
# text, and a text that is not UTF-8 makes sqlite3 fail the whole fetch ("Could not decode to UTF-8 column"),
# taking the good batches read with it. json.loads takes UTF-8 bytes as they are.
_COLUMNS = "id, kind, source, log_id, ts, CAST(attrs AS BLOB), fmt, codec, n_events, n_bytes, sn, CAST(payload AS BLOB)"


def _decode(attrs: bytes, codec: str, blob: bytes, n_bytes: int) -> tuple[dict[str, Any], bytes]:
    """A batch's attributes and payload from their stored form; raises ``Undecodable`` saying why not."""
    try:
        attributes = json.loads(attrs)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Undecodable(f"its attributes are not valid JSON ({exc})") from None
    if type(attributes) is not dict:
        raise Undecodable(f"its attributes are not a JSON object but {type(attributes).__name__}")
    payload = decode_payload(codec, blob, n_bytes)
    # Only a size check: an uncompressed blob has no checksum (a flipped bit there is shipped as it reads).
    if type(payload) is not bytes or len(payload) != n_bytes:
        got = f"{len(payload)} bytes" if isinstance(payload, bytes) else type(payload).__name__
        raise Undecodable(f"its payload is {got} where its header says {n_bytes} bytes")
    return attributes, payload


def undecodable(attrs: bytes | str, codec: str, blob: bytes | str, n_bytes: int) -> str | None:
    """Why a queue row's stored attrs and payload cannot be decoded, or None when they can: the test the upload
    applies, for ``state check`` and ``state recover``."""
    try:
        _decode(
            attrs.encode("utf-8", "surrogateescape") if isinstance(attrs, str) else attrs,
            codec,
            blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob,
            n_bytes,
        )
    except Undecodable as exc:
        return str(exc)
    return None


def _batch(row: tuple) -> Batch:  # type: ignore[type-arg]
    """A queue row as a batch; raises ``Undecodable`` (saying why) for a row whose stored form is damaged."""
    bid, kind, source, log_id, ts, attrs, fmt, codec, n_events, n_bytes, sn, blob = row
    attributes, payload = _decode(attrs, codec, blob, n_bytes)
    return Batch(bid, kind, source, log_id, ts, attributes, fmt, n_events, n_bytes, sn, payload)


@record(frozen=True)
class Damaged:
    """A queued batch that cannot be decoded (``reason``): set aside by each sink that reaches it, its events
    counted as lost for that sink; it leaves the queue once every sink that takes it has passed it."""

    id: int
    kind: str
    source: str  # the log id (logs) or the monitor id
    sn: int
    n_events: int
    reason: str

    @property
    def last_sn(self) -> int:
        return self.sn + max(self.n_events, 1) - 1

    def describe(self) -> str:
        return (
            f"queued batch {self.id} (sn {self.sn}..{self.last_sn}, {self.kind} source {self.source!r},"
            f" {plural(self.n_events, 'event')})"
        )


def _read(row: tuple) -> Batch | Damaged:  # type: ignore[type-arg]
    try:
        return _batch(row)
    except Undecodable as exc:
        bid, kind, source, log_id, _ts, _attrs, _fmt, _codec, n_events, _n_bytes, sn, _blob = row
        return Damaged(bid, kind, log_id or source, sn, n_events, str(exc))


# A sink's routing decision for a batch: takes(kind, source) where source is the log id (logs) or the monitor
# id (monitor output). Passed in from the commands: state/ knows nothing of the config.
Takes = Callable[[str, str], bool]


def takes_all(kind: str, source: str) -> bool:
    return True


@record(frozen=True)
class Header:
    """A queued batch without its payload: enough to route, count and delete it."""

    id: int
    kind: str
    source: str
    sn: int
    n_events: int
    n_bytes: int
    stored: int
    created: float

    @property
    def last_sn(self) -> int:
        return self.sn + max(self.n_events, 1) - 1


_HEADER = "id, kind, COALESCE(log_id, source), sn, n_events, n_bytes, LENGTH(payload), created"


def headers_after(conn: sqlite3.Connection, acked: int, limit: int = 256) -> list[Header]:
    """The oldest batches with an event above sequence number ``acked``, in sequence order. Sequence numbers
    are taken in the transaction that queues a batch, so they never go back (row ids may be reused)."""
    rows = conn.execute(
        f"SELECT {_HEADER} FROM queue WHERE sn >= COALESCE((SELECT MAX(sn) FROM queue WHERE sn <= ?), 0)"
        " ORDER BY sn LIMIT ?",
        (acked + 1, limit + 1),
    ).fetchall()
    return [h for h in map(_make_row, rows) if h.last_sn > acked][:limit]


def _make_row(row: tuple) -> Header:  # type: ignore[type-arg]
    return Header(*row)


def read_batches(conn: sqlite3.Connection, ids: list[int]) -> Iterator[Batch | Damaged]:
    """The batches ``ids`` in that order (those still queued), each decoded only when it is asked for: the
    stored rows (compressed) are read at once, but one decoded payload at a time is alive, not a whole read
    window's (-3 MiB peak RSS on upload). A batch that cannot be decoded comes back as ``Damaged`` in its
    place, so the others are not held up by it."""
    if not ids:
        return
    rows = conn.execute(f"SELECT {_COLUMNS} FROM queue WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
    by_id = {r[0]: r for r in rows}
    del rows
    for i in ids:
        row = by_id.pop(i, None)  # its blob is freed once decoded
        if row is not None:
            yield _read(row)


class JournalReader:
    """One sink's pass over the journal from its cursor: the batches it takes, oldest first, read ``window``
    bytes at a time (each batch is read from the file once per pass). ``passed`` is the last sequence number
    of the last batch looked at, taken or not: once everything the pass yielded is confirmed, the cursor may
    move there (batches not routed to the sink just move its cursor). A batch that cannot be decoded is not
    yielded but passed like one not routed to the sink, and kept in ``damaged`` (by sequence number): the
    caller counts it as lost once the sink's cursor moves past it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        acked: int,
        takes: Takes,
        *,
        window: int,
        limit: int = 0,
        damaged: dict[int, Damaged] | None = None,
    ) -> None:
        self.conn = conn
        self.passed = acked
        self.takes = takes
        self.window = window
        self.limit = limit
        self.taken = 0
        self.damaged: dict[int, Damaged] = {} if damaged is None else damaged

    def __iter__(self) -> Iterator[Batch]:
        heads: list[Header] = []
        while not self.limit or self.taken < self.limit:
            # Headers are read 64 at a time and used up before reading more: a window holds only a few
            # ~1 MiB batches, and reading the headers again for each window cost 8% more reads per sink.
            heads = [h for h in heads if h.last_sn > self.passed] or headers_after(self.conn, self.passed, 64)
            if not heads:
                return
            group: list[int] = []
            size = 0
            for h in heads:
                if not self.takes(h.kind, h.source):
                    if not group:
                        self.passed = h.last_sn  # nothing of ours before it is pending in this group
                        continue
                    break  # yield the group first, so ``passed`` never runs ahead of what was yielded
                if group and (size + h.n_bytes > self.window or (self.limit and self.taken + len(group) >= self.limit)):
                    break
                group.append(h.id)
                size += h.n_bytes
            if not group:
                continue
            got = 0
            for b in read_batches(self.conn, group):
                got += 1
                if type(b) is Damaged:
                    self.damaged[b.sn] = b
                    self.passed = b.last_sn
                    continue
                self.taken += 1
                self.passed = b.sn + max(b.n_events, 1) - 1
                yield b
                del b  # not alive while the next one is inflated
            if got < len(group):  # released meanwhile by another sink's thread? read afresh
                heads = []


_DAMAGED_KEY = "queue.damaged."  # meta: the batches already reported as undecodable, by sequence number


def first_report(conn: sqlite3.Connection, batch: Damaged) -> bool:
    """Whether ``batch`` is reported for the first time: remembered in ``meta`` by its sequence number (never
    reused), so one notice is written per batch however many sinks pass it, in whatever runs, even at once.
    Call inside the write transaction that moves a cursor past it. Forgets batches no longer queued."""
    conn.execute(
        f"DELETE FROM meta WHERE key LIKE '{_DAMAGED_KEY}%'"
        f" AND CAST(substr(key, {len(_DAMAGED_KEY) + 1}) AS INTEGER) NOT IN (SELECT sn FROM queue)"
    )
    cur = conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (f"{_DAMAGED_KEY}{batch.sn}", batch.reason)
    )
    return cur.rowcount == 1


def stream_batches(conn: sqlite3.Connection, *, window: int, limit: int = 0) -> Iterator[Batch]:
    """Every queued batch oldest first (for ``status`` and dry runs)."""
    yield from JournalReader(conn, 0, takes_all, window=window, limit=limit)


def delete_batches(conn: sqlite3.Connection, ids: list[int]) -> None:
    # SQLite here is built with secure_delete on: every freed page would be zeroed through the WAL, a
    # second write of everything uploaded (measured: 40x slower deletes). The freed pages hold lines
    # from log files that are on disk anyway, in a 0600 file, and the next batches reuse them.
    conn.execute("PRAGMA secure_delete = FAST")
    conn.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])


def _done_by_all(h: Header, sinks: Mapping[str, tuple[int, Takes]]) -> bool:
    return all(h.last_sn <= cursor or not takes(h.kind, h.source) for cursor, takes in sinks.values())


def releasable(
    conn: sqlite3.Connection, sinks: Mapping[str, tuple[int, Takes]], *, after: int = 0, upto: int | None = None
) -> tuple[list[int], list[Header]]:
    """The batches every configured sink is done with (its cursor is past them, or it does not take them),
    among those with events in ``(after, upto]`` (a sink that moved its cursor over that range need look no
    further: what it passed before was looked at then). ``sinks``: sink id -> (cursor, takes). Headers only:
    no payload is read. Also returns the headers of those no sink takes at all (to be reported)."""
    if not sinks:
        return [], []
    top = max(c for c, _ in sinks.values())
    upto = top if upto is None else min(upto, top)
    rows = conn.execute(
        f"SELECT {_HEADER} FROM queue WHERE sn >= COALESCE((SELECT MAX(sn) FROM queue WHERE sn <= ?), 0)"
        " AND sn <= ? ORDER BY sn",
        (after + 1, upto),
    ).fetchall()
    ids: list[int] = []
    nobody: list[Header] = []
    for h in map(_make_row, rows):
        if h.last_sn > after and _done_by_all(h, sinks):
            ids.append(h.id)
            if not any(takes(h.kind, h.source) for _, takes in sinks.values()):
                nobody.append(h)
    return ids, nobody


def release(
    conn: sqlite3.Connection, sinks: Mapping[str, tuple[int, Takes]], *, after: int = 0, upto: int | None = None
) -> list[Header]:
    """Delete what ``releasable`` finds. Call inside a write transaction; returns the headers of the batches
    that went without any sink taking them."""
    ids, nobody = releasable(conn, sinks, after=after, upto=upto)
    delete_batches(conn, ids)
    return nobody


@record(frozen=True)
class QueueStats:
    """The journal's size, for ``status``."""

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


@record
class Trimmed:
    """What ``agent.max_queue_bytes`` dropped, in all or for one sink."""

    batches: int = 0
    events: int = 0
    bytes: int = 0


def trim(conn: sqlite3.Connection, max_stored_bytes: int, sinks: Mapping[str, tuple[int, Takes]]) -> dict[str, Trimmed]:
    """Drop the oldest batches until the queue's stored size is at most ``max_stored_bytes``. Call inside a
    write transaction. Sizes are what the blobs take in the file (after queue compression). Returns, per sink
    (and under "" for all), what was dropped that the sink takes and had not delivered yet."""
    total = conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM queue").fetchone()[0]
    if total <= max_stored_bytes:
        return {}
    out: dict[str, Trimmed] = {"": Trimmed()}
    ids: list[int] = []
    size = 0
    rows = conn.execute(f"SELECT {_HEADER} FROM queue ORDER BY sn").fetchall()
    for h in map(_make_row, rows):
        if total - size <= max_stored_bytes:
            break
        ids.append(h.id)
        size += h.stored
        counts = [("", 0)] + [
            (s, cursor) for s, (cursor, takes) in sinks.items() if h.last_sn > cursor and takes(h.kind, h.source)
        ]
        for key, cursor in counts:
            t = out.setdefault(key, Trimmed())
            t.batches += 1
            t.events += h.last_sn - max(h.sn, cursor + 1) + 1  # a sink inside a split batch had the rest
            t.bytes += h.stored
    delete_batches(conn, ids)
    return out


@record
class Pending:
    """What a sink still has to deliver."""

    batches: int = 0
    events: int = 0
    bytes: int = 0
    oldest: float | None = None  # when the oldest undelivered batch was queued


def pending(conn: sqlite3.Connection, acked: int, takes: Takes) -> Pending:
    """What a sink has still to deliver from its cursor (headers only: no payload is read)."""
    out = Pending()
    rows = conn.execute(
        f"SELECT {_HEADER} FROM queue WHERE sn >= COALESCE((SELECT MAX(sn) FROM queue WHERE sn <= ?), 0)",
        (acked + 1,),
    ).fetchall()
    for h in map(_make_row, rows):
        if h.last_sn > acked and takes(h.kind, h.source):
            out.batches += 1
            out.events += h.last_sn - max(h.sn, acked + 1) + 1
            out.bytes += h.n_bytes
            out.oldest = h.created if out.oldest is None else min(out.oldest, h.created)
    return out


def stored_bytes(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM queue").fetchone()[0])
