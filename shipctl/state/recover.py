"""``shipctl state check`` and ``shipctl state recover``: look at a state file without changing it, and rebuild
a damaged one from what can still be read.

Reading a damaged file: each table is read in rowid order until the first error, then backwards from the end
until the first error, then every row in between is asked for by rowid (and every rowid its indexes still
know, which is how a queued batch that cannot be read is told apart from one that never was). Rows that
cannot be read are counted, never guessed at. A queued batch whose payload does not decode is counted as lost,
not shipped.

The rebuilt file keeps the session id, each sink's cursor and sequence stream, and the next sequence number,
so receivers that drop repeats (Scalyr's ``si``/``sn``) still do. When the next sequence number is lost, the
new file starts a new session and new streams instead: reusing numbers a receiver has already seen would make
it drop new events as repeats.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import field
from pathlib import Path
from typing import Any

from shipctl.humanize import plural
from shipctl.records import record
from shipctl.state.db import (
    PAGE_SIZE,
    State,
    _create_private,
    _wal_bytes,
    earlier_runs,
    missing_schema,
)
from shipctl.state.migrations import MIGRATIONS
from shipctl.state.queue import undecodable

PROBE_LIMIT = 1_000_000  # rowids probed one by one between the two readable ends of a damaged table
COMPANIONS = ("-wal", "-shm")
# Tables whose loss means file offsets are lost: the operator must choose where the logs start again.
OFFSET_TABLES = ("files", "seen_files")


@record
class TableReport:
    name: str
    present: bool = True
    rows: int = 0  # rows read
    unreadable: int = 0  # rows known to exist (from an index) that could not be read, or whose content is bad
    error: str | None = None  # the first error met while reading it

    @property
    def complete(self) -> bool:
        return self.present and not self.unreadable and self.error is None


@record
class Report:
    """What ``state check`` says about a state file (and what ``state recover`` starts from)."""

    path: str
    exists: bool = False
    size: int | None = None
    wal_size: int = 0
    earlier_runs: str | None = None  # what shows the file was in use before (for a missing or empty file)
    open_error: str | None = None
    integrity: list[str] = field(default_factory=list)  # ["ok"] or SQLite's findings
    schema_version: int | None = None
    known_version: int = len(MIGRATIONS)
    missing: list[str] = field(default_factory=list)  # tables or table.column the version promises
    session: str | None = None
    next_sn: int | None = None
    queue: dict[str, Any] = field(default_factory=dict)  # batches, events, bytes, first_sn, last_sn
    lost_batches: list[int] = field(default_factory=list)  # first sequence numbers of batches that cannot be read
    # Of those, the rows that read but whose attrs or payload do not decode (id, sn, last_sn, kind, source,
    # events, reason): the next upload sets them aside; recover leaves them out.
    undecodable: list[dict[str, Any]] = field(default_factory=list)
    sinks: list[dict[str, Any]] = field(default_factory=list)  # sink, acked_sn, stream
    tracked_files: int = 0
    tables: dict[str, TableReport] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.exists and self.size == 0 and not self.wal_size

    @property
    def damaged(self) -> bool:
        if not self.exists:
            return bool(self.wal_size)
        if self.empty:
            return self.earlier_runs is not None
        return bool(
            self.open_error
            or self.integrity != ["ok"]
            or self.missing
            or any(not t.complete for t in self.tables.values())
        )

    @property
    def only_undecodable(self) -> bool:
        """Damaged only in that some queued batches do not decode: SQLite finds the file sound, and uploads
        set those batches aside by themselves (recover is not needed for them)."""
        q = self.tables.get("queue")
        others = [t for n, t in self.tables.items() if n != "queue"]
        return bool(
            self.undecodable
            and self.exists
            and not self.open_error
            and self.integrity == ["ok"]
            and not self.missing
            and all(t.complete for t in others)
            and q is not None
            and q.error is None
            and q.unreadable == len(self.undecodable)
        )

    @property
    def offsets_lost(self) -> bool:
        """Whether some file offsets cannot be carried over (the operator must choose where logs resume)."""
        if not self.exists or self.empty or self.open_error:
            return True
        return any(not self.tables.get(t, TableReport(t, present=False)).complete for t in OFFSET_TABLES)

    @property
    def verdict(self) -> str:
        if not self.exists and not self.wal_size:
            return "no state file: nothing has run yet (or it was deleted to start over)"
        if self.empty and not self.earlier_runs:
            return "empty and never used: the next run initialises it"
        if not self.damaged:
            return "ok"
        if self.only_undecodable:
            return (
                f"DAMAGED: {plural(len(self.undecodable), 'queued batch')} cannot be decoded (their events are lost):"
                " the next"
                " 'shipctl upload' sets them aside, or 'shipctl state recover' rebuilds the file without them;"
                " a disk that damages data may be failing"
            )
        how = "shipctl state recover" + (" --logs-from start|end" if self.offsets_lost else "")
        return f"DAMAGED: rebuild it with '{how}'"


def ro_connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (SQLite's own descriptors: nothing of ours is opened and closed on the file)."""
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)
    conn.execute("PRAGMA busy_timeout = 5000")
    # A truncated file is shorter than its header says, which SQLite refuses outright unless the schema is
    # "writable": then it reads the pages that are there. Nothing is written through this connection.
    conn.execute("PRAGMA writable_schema = ON")
    return conn


# --- reading what can be read -------------------------------------------------------------------------
def _tables(conn: sqlite3.Connection) -> dict[str, tuple[list[str], bool, list[str]]]:
    """Table -> (columns, has rowid, its indexes), as far as the schema can be read."""
    out: dict[str, tuple[list[str], bool, list[str]]] = {}
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    indexes: dict[str, list[str]] = {}
    for kind, name, table, _sql in rows:
        if kind == "index":
            indexes.setdefault(table, []).append(name)
    for kind, name, _table, sql in rows:
        if kind != "table" or name.startswith("sqlite_"):
            continue
        with contextlib.suppress(sqlite3.Error):
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")').fetchall()]
            out[name] = (cols, "WITHOUT ROWID" not in (sql or "").upper(), indexes.get(name, []))
    return out


def _quote(cols: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in cols)


Row = tuple[Any, ...]


def read_table(
    conn: sqlite3.Connection,
    table: str,
    cols: list[str],
    *,
    rowid: bool,
    indexes: list[str],
    take: Callable[[Row], bool],
    as_bytes: tuple[str, ...] = (),
) -> TableReport:
    """Hand every readable row of ``table`` (the values of ``cols``) to ``take``, which returns False for a
    row whose content is bad. Never raises for damage: the report says what could not be read. Columns in
    ``as_bytes`` are read as blobs: a text that is not UTF-8 then reaches ``take`` instead of failing the read."""
    rep = TableReport(table)
    seen: set[Any] = set()

    def give(key: Any, row: Row) -> None:
        if key in seen:
            return
        seen.add(key)
        if take(row):
            rep.rows += 1
        else:
            rep.unreadable += 1

    def note(exc: sqlite3.Error) -> None:
        if rep.error is None:
            rep.error = str(exc)

    q = ", ".join(f'CAST("{c}" AS BLOB)' if c in as_bytes else f'"{c}"' for c in cols)
    if not rowid:  # WITHOUT ROWID: forward to the first error, then backwards to the first error
        pk = _pk(conn, table)
        for order in (", ".join(pk), ", ".join(f"{c} DESC" for c in pk)):
            try:
                for row in _rows(conn, f'SELECT {q} FROM "{table}" ORDER BY {order or "1"}'):
                    give(tuple(row), row)
            except sqlite3.Error as exc:
                note(exc)
                continue
            if rep.error is None:
                break
        return rep
    lo = hi = None
    try:
        for row in _rows(conn, f'SELECT rowid, {q} FROM "{table}" ORDER BY rowid'):
            lo = row[0]
            give(row[0], row[1:])
        return rep
    except sqlite3.Error as exc:
        note(exc)
    where = "" if lo is None else f" WHERE rowid > {int(lo)}"
    with contextlib.suppress(sqlite3.Error):
        for row in _rows(conn, f'SELECT rowid, {q} FROM "{table}"{where} ORDER BY rowid DESC'):
            hi = row[0]
            give(row[0], row[1:])
    known: set[int] = set()
    for index in indexes:  # rowids an index still holds: rows that existed
        with contextlib.suppress(sqlite3.Error):
            for (rid,) in _rows(conn, f'SELECT rowid FROM "{table}" INDEXED BY "{index}"'):
                known.add(rid)
    if hi is None:
        with contextlib.suppress(sqlite3.Error, TypeError):
            hi = int(conn.execute(f'SELECT MAX(rowid) FROM "{table}"').fetchone()[0]) + 1
    start = (lo if lo is not None else 0) + 1
    probe = set(range(start, hi)) if hi is not None and hi - start <= PROBE_LIMIT else set()
    probe |= {r for r in known if r >= start and (hi is None or r < hi)}
    for rid in sorted(probe - seen):
        try:
            row = conn.execute(f'SELECT rowid, {q} FROM "{table}" WHERE rowid = ?', (rid,)).fetchone()
        except sqlite3.Error as exc:
            note(exc)
            if rid in known:
                rep.unreadable += 1
            continue
        if row is not None:
            give(row[0], row[1:])
        elif rid in known:
            rep.unreadable += 1
    return rep


def _rows(conn: sqlite3.Connection, sql: str) -> Iterator[Row]:
    yield from conn.execute(sql)  # a row at a time: queue rows carry ~1 MiB each


def _pk(conn: sqlite3.Connection, table: str) -> list[str]:
    info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    return [f'"{r[1]}"' for r in sorted(info, key=lambda r: r[5]) if r[5]]


def _payload_ok(codec: str, blob: bytes, n_bytes: int, attrs: bytes | str = b"{}") -> bool:
    """The test the upload applies (``queue.undecodable``): a batch it would set aside is not kept."""
    return undecodable(attrs, codec, blob, n_bytes) is None


# --- check ----------------------------------------------------------------------------------------------
def check(path: Path, *, integrity: bool = True) -> Report:
    """Everything ``state check`` shows, read-only: the queue is read as recover would read it."""
    rep = Report(str(path))
    try:
        rep.size = os.stat(path).st_size
        rep.exists = True
    except FileNotFoundError:
        pass
    rep.wal_size = _wal_bytes(path)
    if not rep.exists or rep.size == 0:
        rep.earlier_runs = earlier_runs(path)
        if not rep.exists or not rep.wal_size:
            return rep
    try:
        conn = ro_connect(path)
    except sqlite3.Error as exc:
        rep.open_error = str(exc)
        return rep
    try:
        _inspect(conn, rep, integrity=integrity)
    finally:
        conn.close()
    return rep


def _inspect(conn: sqlite3.Connection, rep: Report, *, integrity: bool) -> None:
    try:
        rep.schema_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = _tables(conn)
    except sqlite3.Error as exc:
        rep.open_error = str(exc)
        return
    if integrity:
        try:
            found = [line for (r,) in conn.execute("PRAGMA integrity_check(20)").fetchall() for line in r.splitlines()]
            rep.integrity = [line for line in found if not line.startswith("*** in database")] or ["ok"]
        except sqlite3.Error as exc:
            rep.integrity = [str(exc)]
    else:
        rep.integrity = ["ok"]
    with contextlib.suppress(sqlite3.Error):
        rep.missing = missing_schema(conn, min(rep.schema_version, len(MIGRATIONS)))
    meta: dict[str, str] = {}
    queue: list[Row] = []
    sinks: list[Row] = []

    queue_cols = ["sn", "n_events", "n_bytes", "codec", "payload", "attrs", "id", "kind", "source", "log_id"]
    queue_cols = [c for c in queue_cols if c in tables.get("queue", ([], True, []))[0]]

    def take_batch(row: Row) -> bool:  # payloads are read (one at a time) to tell which batches recover keeps
        r = dict(zip(queue_cols, row, strict=True))
        why = undecodable(r.get("attrs", b"{}"), r["codec"], r["payload"], r["n_bytes"])
        if why is not None:
            n, sn = int(r["n_events"]), int(r["sn"])
            source = r.get("log_id") or r.get("source")
            where = {"id": r.get("id"), "sn": sn, "last_sn": sn + max(n, 1) - 1, "kind": r.get("kind")}
            rep.undecodable.append({**where, "source": source, "events": n, "reason": why})
            return False
        queue.append((r["sn"], r["n_events"], r["n_bytes"]))
        return True

    wanted: dict[str, tuple[list[str], Callable[[Row], bool]]] = {
        "meta": (["key", "value"], lambda r: bool(meta.__setitem__(r[0], r[1])) or True),
        "queue": (queue_cols, take_batch),
        "upload_state": (["sink", "acked_sn", "stream"], lambda r: bool(sinks.append(r)) or True),
    }
    for name, (cols, _rowid, indexes) in tables.items():
        select, take = wanted.get(name, (cols, lambda r: True))
        select = [c for c in select if c in cols]
        as_bytes = ("payload", "attrs") if name == "queue" else ()  # judged by take_batch, as the upload would
        rep.tables[name] = read_table(conn, name, select, rowid=_rowid, indexes=indexes, take=take, as_bytes=as_bytes)
    for name in set(OFFSET_TABLES) - set(tables):
        rep.tables[name] = TableReport(name, present=False)
    rep.session = meta.get("session")
    with contextlib.suppress(TypeError, ValueError):
        rep.next_sn = int(meta["next_sn"]) if "next_sn" in meta else None
    if "queue" in tables:
        rep.queue = {
            "batches": len(queue),
            "events": sum(r[1] for r in queue),
            "bytes": sum(r[2] for r in queue),
            "first_sn": min((r[0] for r in queue), default=None),
            "last_sn": max((r[0] + max(r[1], 1) - 1 for r in queue), default=None),
        }
        rep.lost_batches = _lost_batches(conn, {r[0] for r in queue})
        rep.undecodable.sort(key=lambda b: b["sn"])
    have = [c for c in ("sink", "acked_sn", "stream") if c in tables.get("upload_state", ([], True, []))[0]]
    cursors = {str(row[0]): dict(zip(have, row, strict=True)) for row in sinks}
    for key, value in meta.items():  # before schema 5 a sink's cursor lived in meta
        if key.startswith("upload.") and key.endswith(".acked_sn"):
            cursors.setdefault(key[7:-9], {"sink": key[7:-9]})["acked_sn"] = value
    rep.sinks = [
        {"sink": k, "acked_sn": v.get("acked_sn"), "stream": v.get("stream")} for k, v in sorted(cursors.items())
    ]
    rep.tracked_files = rep.tables["files"].rows if "files" in rep.tables else 0


def _lost_batches(conn: sqlite3.Connection, readable: set[int]) -> list[int]:
    """Sequence numbers the queue's index still holds for batches whose row cannot be read."""
    out: list[int] = []
    with contextlib.suppress(sqlite3.Error):
        for (sn,) in _rows(conn, "SELECT sn FROM queue INDEXED BY queue_sn ORDER BY sn"):
            if sn not in readable:
                out.append(sn)
    return out


# --- recover --------------------------------------------------------------------------------------------
def quarantine(path: Path) -> Path:
    """Move the damaged file (and its -wal and -shm, under names SQLite pairs with it) aside, beside it, with a
    timestamp suffix. Returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while any(os.path.lexists(f"{target}{s}") for s in ("", *COMPANIONS)):
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    for suffix in COMPANIONS:  # companions first: a file never pairs with someone else's WAL
        if os.path.lexists(f"{path}{suffix}"):
            os.rename(f"{path}{suffix}", f"{target}{suffix}")
    if os.path.lexists(path):
        os.rename(path, target)
    return target


def unquarantine(target: Path, path: Path) -> None:
    """Put a quarantined file back (a recovery that failed half way leaves things as they were)."""
    if os.path.lexists(target):
        os.rename(target, path)
    for suffix in COMPANIONS:
        if os.path.lexists(f"{target}{suffix}"):
            os.rename(f"{target}{suffix}", f"{path}{suffix}")


@record
class Salvage:
    tables: dict[str, TableReport] = field(default_factory=dict)
    batches: int = 0
    events: int = 0
    lost_batches: list[int] = field(default_factory=list)
    new_session: bool = False  # the next sequence number was lost: new session and streams
    next_sn: int = 1
    cursors: dict[str, int] = field(default_factory=dict)


COMMIT_BYTES = 64 << 20


def rebuild(src_path: Path, dst_path: Path) -> Salvage:
    """Build a new state file at ``dst_path`` from every readable row of the (quarantined) file at
    ``src_path``. The new file starts at the damaged file's schema version, takes the rows, and is then
    migrated like any older file (a migration may move data, as m005 moved the sinks' cursors)."""
    out = Salvage()
    meta: dict[str, str] = {}
    try:
        src: sqlite3.Connection | None = ro_connect(src_path)
    except sqlite3.Error:
        src = None
    tables: dict[str, tuple[list[str], bool, list[str]]] = {}
    version = len(MIGRATIONS)
    if src is not None:
        with contextlib.suppress(sqlite3.Error):
            tables = _tables(src)
        with contextlib.suppress(sqlite3.Error, TypeError):
            found = int(src.execute("PRAGMA user_version").fetchone()[0])
            version = found if 0 < found < len(MIGRATIONS) else version
    dst = _create(dst_path, version)
    try:
        dst_tables = {r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()} - {
            "sqlite_sequence"
        }
        for name in dst_tables:
            out.tables[name] = TableReport(name, present=False)  # until read
        order = ["meta", "upload_state", "files", "seen_files", "logs"]
        for name in order + sorted(dst_tables - set(order)):
            if src is None or name not in tables or name not in dst_tables:
                continue
            src_cols, has_rowid, indexes = tables[name]
            dst_cols = [r[1] for r in dst.execute(f'PRAGMA table_info("{name}")').fetchall()]
            cols = [c for c in dst_cols if c in src_cols]
            out.tables[name] = _copy(src, dst, name, cols, has_rowid, indexes, out, meta)
        if src is not None and "queue" in tables:
            readable = {sn for (sn,) in dst.execute("SELECT sn FROM queue").fetchall()}
            out.lost_batches = _lost_batches(src, readable)
    finally:
        dst.close()
        if src is not None:
            src.close()
    with State.open(dst_path) as state:  # migrates what the damaged file's version lacked
        return _finish(state, out, meta)


def _create(path: Path, version: int) -> sqlite3.Connection:
    """A new state file (0600) with the schema of the first ``version`` migrations, as State.open makes one."""
    _create_private(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    for m in MIGRATIONS[:version]:
        m(conn)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    return conn


def _copy(
    src: sqlite3.Connection,
    dst: sqlite3.Connection,
    name: str,
    cols: list[str],
    has_rowid: bool,
    indexes: list[str],
    out: Salvage,
    meta: dict[str, str],
) -> TableReport:
    insert = f'INSERT OR REPLACE INTO "{name}" ({_quote(cols)}) VALUES ({", ".join("?" * len(cols))})'
    pending: list[Row] = []
    size = 0
    is_queue = name == "queue"
    at = {c: i for i, c in enumerate(cols)}

    def flush() -> None:
        nonlocal size
        if pending:
            dst.execute("BEGIN IMMEDIATE")
            dst.executemany(insert, pending)
            dst.execute("COMMIT")
            pending.clear()
            size = 0

    def take(row: Row) -> bool:
        nonlocal size
        if name == "meta":
            meta[str(row[at["key"]])] = row[at["value"]]
        if is_queue and {"codec", "payload", "n_bytes", "n_events"} <= at.keys():
            attrs = row[at["attrs"]] if "attrs" in at else b"{}"
            if not _payload_ok(row[at["codec"]], row[at["payload"]], row[at["n_bytes"]], attrs):
                return False
            out.batches += 1
            out.events += row[at["n_events"]]
            size += len(row[at["payload"]])
        pending.append(row)
        if size >= COMMIT_BYTES or len(pending) >= 5000:
            flush()
        return True

    # A payload stored as text (a flipped type bit) is judged, and kept if it decodes, as the blob it was.
    rep = read_table(src, name, cols, rowid=has_rowid, indexes=indexes, take=take, as_bytes=("payload",) * is_queue)
    flush()
    return rep


def _finish(dst: State, out: Salvage, meta: dict[str, str]) -> Salvage:
    """Make the sequence numbers consistent, logs rows for tracked files."""
    with dst.write() as conn:
        top = conn.execute("SELECT MAX(sn + MAX(n_events, 1)) FROM queue").fetchone()[0] or 1
        acked = conn.execute("SELECT MAX(acked_sn) FROM upload_state").fetchone()[0] or 0
        try:
            saved = int(meta["next_sn"])
        except (KeyError, TypeError, ValueError):
            saved = None
        if saved is None:
            out.new_session = True
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('session', ?)", (os.urandom(16).hex(),))
            conn.execute("UPDATE upload_state SET stream = NULL")
        out.next_sn = max(saved or 1, top, acked + 1)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_sn', ?)", (str(out.next_sn),))
        conn.execute(
            "INSERT OR IGNORE INTO logs (log_id, initialized) SELECT log_id, MIN(first_seen) FROM files GROUP BY log_id"
        )
        out.cursors = dict(conn.execute("SELECT sink, acked_sn FROM upload_state ORDER BY sink").fetchall())
    return out
