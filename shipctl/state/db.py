"""Open the state file (WAL, busy timeout, 0600 in a 0700 directory), migrate it, and lock per command."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from shipctl.errors import LockHeld, StateError
from shipctl.state.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000
PAGE_SIZE = 32768


def default_state_path() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/shipctl/state.db")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "shipctl" / "state.db"


def resolve_state_path(configured: str | None) -> Path:
    """``$SHIPCTL_STATE`` wins over the config, which wins over the default."""
    env = os.environ.get("SHIPCTL_STATE")
    if env:
        return Path(env)
    if configured:
        return Path(configured)
    return default_state_path()


def _ensure_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateError(f"{directory}: cannot create state directory: {exc.strerror}") from None
    if not directory.is_dir():
        raise StateError(f"{directory}: cannot create state directory: a file is in the way")


def _create_private(path: Path) -> None:
    """Create the state file 0600 from its first byte, whatever the umask — only when it does not exist.

    Never open (and so never close) a descriptor of our own on an existing state file: POSIX record locks
    belong to the process, so closing *any* descriptor on the file drops every lock SQLite holds on it
    through a live connection (``run``'s upload thread opens a second state while the first is in use).
    Another process would then believe it is the last one and delete the WAL under us. ``O_EXCL`` means the
    descriptor we close is one on a file nobody else can have opened yet.
    """
    if os.path.lexists(path):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it between the check and the open: theirs has the right mode
    os.close(fd)


class State:
    """A connection in autocommit mode; writers open explicit ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> State:
        _ensure_dir(path.parent)
        try:
            _create_private(path)
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # Queue blobs are ~1 MiB: big pages mean far fewer overflow pages to write and
                # checkpoint (measured here: about 1.5x the throughput of the default 4 KiB).
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StateError(f"{path}: cannot switch the state file to WAL mode (got {mode})")
            # NORMAL in WAL keeps every commit across a process crash; a power cut may lose the last few
            # commits, but offsets and batches roll back together, so nothing is lost or doubled.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Re-state the cache in KiB: the default was sized in pages of the default 4 KiB, so with
            # 32 KiB pages it would hold 16 MiB of batches that pass through once (measured: +14 MiB RSS).
            conn.execute("PRAGMA cache_size = -2000")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot open state file: {exc}") from None
        except OSError as exc:
            raise StateError(f"{path}: cannot open state file: {exc.strerror}") from None
        state = cls(path, conn)
        state.migrate()
        return state

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock up front, so a read-then-write unit never
        fails half way with "database is locked" (the busy timeout applies to BEGIN instead)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            # Disk full, read-only file system, a lock held past the busy timeout: nothing was committed,
            # so nothing is lost or doubled; say so in one line.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise StateError(f"{self.path}: cannot write the state file: {exc}; nothing was committed") from None

    def migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == len(MIGRATIONS):
            return
        if version > len(MIGRATIONS):
            raise StateError(
                f"{self.path}: state file has schema version {version}, this shipctl knows up to "
                f"{len(MIGRATIONS)}; upgrade shipctl"
            )
        with self.write() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for n in range(version, len(MIGRATIONS)):
                MIGRATIONS[n](conn)
                conn.execute(f"PRAGMA user_version = {n + 1}")
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('session', ?), ('next_sn', '1')",
                (os.urandom(16).hex(),),
            )

    # --- small key/value helpers -------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def session(self) -> str:
        return self.meta("session") or ""

    def record_run(self, command: str, started: float, exit_code: int, summary: dict[str, object]) -> None:
        """Keep a short history of runs for ``status`` (the newest 500)."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO runs (command, started, ended, exit_code, summary) VALUES (?, ?, ?, ?, ?)",
                (command, started, time.time(), exit_code, json.dumps(summary)),
            )
            conn.execute("DELETE FROM runs WHERE id <= (SELECT MAX(id) FROM runs) - 500")

    def last_runs(self, limit: int = 10) -> list[tuple[str, float, float | None, int | None, dict[str, object]]]:
        rows = self.conn.execute(
            "SELECT command, started, ended, exit_code, summary FROM runs ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(c, s, e, x, json.loads(j or "{}")) for c, s, e, x, j in rows]

    def notices(self, limit: int = 20) -> list[tuple[float, str, str, str]]:
        return self.conn.execute(
            "SELECT ts, source, level, message FROM notices ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()

    def notice(self, source: str, level: str, message: str) -> None:
        """Record a warning or error for ``status`` (kept short: the newest 200)."""
        self.conn.execute(
            "INSERT INTO notices (ts, source, level, message) VALUES (?, ?, ?, ?)",
            (time.time(), source, level, message),
        )
        self.conn.execute("DELETE FROM notices WHERE id <= (SELECT MAX(id) FROM notices) - 200")


@contextlib.contextmanager
def lock(state_path: Path, kind: str, *, wait: bool = False) -> Iterator[None]:
    """Advisory lock per command kind (flock on a file beside the state file); released on exit or on
    process death, so a killed run never leaves a stale lock behind."""
    _ensure_dir(state_path.parent)
    lock_path = state_path.with_name(f"{state_path.name}.{kind}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"{lock_path}: cannot create lock file: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = ""
                with contextlib.suppress(OSError):
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                who = f" (pid {holder})" if holder else ""
                raise LockHeld(
                    f"another 'shipctl {kind}' is running{who} on {state_path}; exiting (use --wait to wait for it)"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
