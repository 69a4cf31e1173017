"""Open the state file (WAL, busy timeout, 0600 in a 0700 directory), migrate it, and lock per command.

Faults the state file must survive (issue 12):

- **Disk full.** The WAL is bounded (``wal_autocheckpoint`` and ``journal_size_limit`` at ``WAL_LIMIT``) and
  truncated at the end of a command, so it can no longer grow into all the free space and leave nothing for the
  checkpoint that would shrink it. A WAL left over by a run that hit a full disk is checkpointed first thing
  when the next run opens the state, so the space an operator frees goes to that, not to more queue.
- **Damage.** Every statement runs through ``_Connection``: an error that says the file is corrupt (or that a
  table of our schema is gone) becomes one line naming ``shipctl state check`` / ``shipctl state recover``, and
  is remembered per path (``damage``) so a command whose worker threads swallowed it still exits 73.
- **Emptiness.** A zero-byte state file beside traces of earlier runs (``shipctl.log``, or a lock file left by
  a process that is gone) has lost its offsets: refuse to start over silently. A missing file is a deliberate
  start over (deleting ``state.db`` with its ``-wal`` and ``-shm`` is how an operator asks for one), unless
  its ``-wal`` is still there.
- **Space.** New files use ``auto_vacuum = INCREMENTAL`` and ``maintain()`` hands freed pages back after a
  backlog drained; an older file is converted (one ``VACUUM``) once its live data is small.
- **Neighbours.** A state directory that another user can write is refused (a symlink planted there would
  make a run as root truncate or chmod any file); lock files are opened without following symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipctl.errors import LockHeld, StateError
from shipctl.state.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000
PAGE_SIZE = 32768
WAL_LIMIT = 4 << 20  # the WAL is checkpointed at this size and cut back to it when it restarts
FS_RESERVE = 2 * WAL_LIMIT  # the file may not grow into the last this many bytes of its file system ...
FS_RESERVE_SHARE = 4  # ... or the last quarter of it, if that is less (a tiny file system)
MAX_PAGES = 4294967294
SHORT_BUSY_MS = 200  # maintenance that finds the file busy leaves it to the next run
CONVERT_LIVE_LIMIT = 32 << 20  # an old file is VACUUMed into auto_vacuum mode once its live data is this small
VACUUM_MIN_FREE = 4 << 20  # give free pages back once there are this many bytes of them ...
VACUUM_MIN_SHARE = 4  # ... and they are at least a quarter of the file
VACUUM_STEP_PAGES = 2048  # while a big queue is still live, move at most this many pages per run

SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

RECOVER_HINT = "see 'shipctl state check', then 'shipctl state recover'"


class StateDamaged(StateError):
    """The state file is corrupt, truncated, empty or lacks part of its schema (exit 73, like any state problem)."""


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


OWN_LOG_NAME = "shipctl.log"


def own_log_path(state_path: Path, log_file: str | None = None) -> Path:
    """shipctl's own log: ``agent.log_file`` when configured, else shipctl.log beside the state file. The one
    place this is decided: the log handler (commands/common.py), the implicit log entry that ships it
    (config.py) and the "was this state in use" check below all ask here."""
    return Path(log_file) if log_file else state_path.with_name(OWN_LOG_NAME)


def _ensure_dir(directory: Path) -> None:
    if not directory.is_dir():
        try:
            directory.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateError(f"{directory}: cannot create state directory: {exc.strerror}") from None
        if not directory.is_dir():
            raise StateError(f"{directory}: cannot create state directory: a file is in the way")
    check_dir(directory)


def check_dir(directory: Path) -> None:
    """Refuse a state directory that another user can write: whoever can create names in it can plant a
    symlink where the state, a lock file or shipctl.log will be opened, and a run as root would truncate or chmod
    its target. Root's directories are fine for anyone (only root can write them)."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise StateError(f"{directory}: cannot use the state directory: {exc.strerror}") from None
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise StateError(
            f"{directory}: state directory belongs to uid {st.st_uid}, not to the user running shipctl (uid {me}):"
            f" refusing to use it (chown it, or point agent.state elsewhere)"
        )
    if st.st_mode & 0o022:
        raise StateError(
            f"{directory}: state directory is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}):"
            f" refusing to use it (chmod 700 it)"
        )


def _create_private(path: Path) -> None:
    """Create the state file 0600 whatever the umask, and whole — only when it does not exist.

    Whole: the file is made under a temporary name, given its first page (page size, incremental vacuum, WAL
    mode) and only then linked into place. A run killed while creating the file used to leave it empty (0
    bytes) beside its lock file, which the next run could not tell from a used state file that lost its
    content (``_check_not_emptied``) and so refused for ever; now an empty state file never comes from us.

    Never open (and so never close) a descriptor of our own on an existing state file: POSIX record locks
    belong to the process, so closing *any* descriptor on the file drops every lock SQLite holds on it
    through a live connection (``run``'s upload thread opens a second state while the first is in use).
    Another process would then believe it is the last one and delete the WAL under us. The descriptors closed
    here are on the temporary file, which nobody else opens; ``link`` never replaces a file another process
    created in the meantime (theirs is as good as ours).
    """
    if os.path.lexists(path):
        return
    _remove_stale_creations(path)
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):  # a pid reused after a kill -9
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # Queue blobs are ~1 MiB: big pages mean far fewer overflow pages to write and
            # checkpoint (measured here: about 1.5x the throughput of the default 4 KiB).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            # Only before the first table: a backlog's pages can then be given back (maintain()).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")  # writes the first page; closing folds the WAL back
        finally:
            conn.close()
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _remove_stale_creations(path: Path) -> None:
    """Temporary files of ``_create_private`` left by processes that were killed while creating the state."""
    prefix = f".{path.name}.new-"
    for name in glob.glob(glob.escape(str(path.with_name(prefix))) + "*"):
        pid = os.path.basename(name)[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(name)


# --- damage ---------------------------------------------------------------------------------------------
_DAMAGED: dict[str, str] = {}  # state path -> the one-line message, once any connection in this process met it


def damage(path: Path) -> str | None:
    """The damage any connection of this process found in the state file at ``path`` (None: none found)."""
    return _DAMAGED.get(str(path))


def forget_damage(path: Path) -> None:
    """A new command (or a rebuilt file) starts with a clean slate (matters where one process runs several)."""
    _DAMAGED.pop(str(path), None)


def damaged_message(path: Path, detail: str) -> str:
    return f"{path}: the state file is damaged ({detail}); stopped, nothing more was changed: {RECOVER_HINT}"


def empty_message(path: Path, what: str, evidence: str) -> str:
    return (
        f"{path}: the state file is {what} but earlier runs used it ({evidence}): the file offsets are lost;"
        " to start again choose 'shipctl state recover --logs-from start' (read every log again from its start)"
        " or '--logs-from end' (skip what the logs hold now)"
    )


_EXPECTED: dict[int, dict[str, set[str]]] = {}


def expected_schema(version: int = len(MIGRATIONS)) -> dict[str, set[str]]:
    """Table -> columns after the first ``version`` migrations (built once in memory, only when needed)."""
    if version not in _EXPECTED:
        mem = sqlite3.connect(":memory:", isolation_level=None)
        try:
            for m in MIGRATIONS[:version]:
                m(mem)
            _EXPECTED[version] = _schema(mem)
        finally:
            mem.close()
    return _EXPECTED[version]


def _schema(conn: sqlite3.Connection) -> dict[str, set[str]]:
    run = sqlite3.Connection.execute  # past _Connection: this runs while classifying an error
    tables = [r[0] for r in run(conn, "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
    return {t: {r[1] for r in run(conn, f'PRAGMA table_info("{t}")').fetchall()} for t in tables}


def missing_schema(conn: sqlite3.Connection, version: int) -> list[str]:
    """What the migrations up to ``version`` created that the file lacks: ``table`` or ``table.column``."""
    have = _schema(conn)
    out = []
    for table, cols in sorted(expected_schema(version).items()):
        if table not in have:
            out.append(table)
        else:
            out += [f"{table}.{c}" for c in sorted(cols - have[table])]
    return out


def full_message(path: Path, exc: Exception) -> str:
    return (
        f"{path}: cannot write the state file: {exc}; nothing was committed"
        " (free some space: the next run goes on from here)"
    )


def _truncate_wal(conn: sqlite3.Connection) -> bool:
    """Fold the WAL into the file and truncate it if nobody needs it right now (never waits long), to give
    back what a failed transaction wrote. Returns whether the WAL is now empty. Never raises."""
    run = sqlite3.Connection.execute  # past _Connection: this may run while an error is being reported
    if conn.in_transaction:
        return False
    try:
        run(conn, f"PRAGMA busy_timeout = {SHORT_BUSY_MS}")
        busy, _, _ = run(conn, "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy
    except sqlite3.Error:  # full, busy, read-only: the next run tries again
        return False
    finally:
        with contextlib.suppress(sqlite3.Error):
            run(conn, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)


class _Cursor(sqlite3.Cursor):
    """Turns the errors that mean a damaged file into one line (see ``_Connection``)."""

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            return super().execute(sql, parameters)  # type: ignore[return-value]
        except sqlite3.DatabaseError as exc:
            self.connection._failed(exc)  # type: ignore[attr-defined]
            raise

    def executemany(self, sql: str, seq: Any, /) -> _Cursor:
        try:
            return super().executemany(sql, seq)  # type: ignore[return-value]
        except sqlite3.DatabaseError as exc:
            self.connection._failed(exc)  # type: ignore[attr-defined]
            raise

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            self.connection._failed(exc)  # type: ignore[attr-defined]
            raise

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as exc:
            self.connection._failed(exc)  # type: ignore[attr-defined]
            raise

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            self.connection._failed(exc)  # type: ignore[attr-defined]
            raise

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            self.connection._failed(exc)  # type: ignore[attr-defined]
            raise


class _Connection(sqlite3.Connection):
    """A connection whose statements say in one line when the file is damaged. Corruption (SQLITE_CORRUPT,
    SQLITE_NOTADB) anywhere, or "no such table/column" where the file lacks part of the schema its version
    promises (a dropped table), raises StateDamaged instead of a traceback from wherever the query was."""

    state_path: Path = Path()

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq: Any, /) -> Any:
        return self.cursor().executemany(sql, seq)

    def _failed(self, exc: sqlite3.DatabaseError) -> None:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN) and not self.in_transaction:
            # A full disk, a file size limit or an I/O error outside a transaction (SQLite rolls a transaction
            # back by itself on some of these): one line, not a traceback. Inside one, State.write() says it.
            if code == SQLITE_FULL:
                _truncate_wal(self)
                raise StateError(full_message(self.state_path, exc)) from None
            raise StateError(f"{self.state_path}: cannot use the state file: {exc}") from None
        detail = None
        if _is_corrupt(exc):
            detail = str(exc)
        elif isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(("no such table", "no such column")):
            with contextlib.suppress(sqlite3.Error):
                version = sqlite3.Connection.execute(self, "PRAGMA user_version").fetchone()[0]
                missing = missing_schema(self, min(version, len(MIGRATIONS)))
                if missing:
                    detail = f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        if detail is None:
            return
        message = damaged_message(self.state_path, detail)
        _DAMAGED.setdefault(str(self.state_path), message)
        raise StateDamaged(message) from None


# --- earlier runs ---------------------------------------------------------------------------------------
_HELD: dict[str, bytes] = {}  # lock files this process holds -> what they said before we took them


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def earlier_runs(path: Path) -> str | None:
    """What shows that the state file at ``path`` was in use before, or None. ``shipctl.log`` beside it, or a
    lock file of this state naming a process that is gone (a live one may be creating the file right now);
    a lock file this process holds counts by what it said before we took it."""
    log_file = own_log_path(path)
    if os.path.lexists(log_file):
        return f"{log_file.name} is there"
    for name in sorted(glob.glob(glob.escape(str(path)) + ".*.lock")):
        if name in _HELD:
            said = _HELD[name]
        else:
            try:
                with open(name, "rb") as fh:  # a lock file, never the state file
                    said = fh.read(32)
            except OSError:
                continue
        try:
            pid = int(said.strip() or b"0")
        except ValueError:
            continue
        if pid and pid != os.getpid() and (name in _HELD or not _alive(pid)):
            return f"{os.path.basename(name)} was left by an earlier run"
    return None


def _wal_bytes(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0


def file_sizes(path: Path) -> tuple[int | None, int]:
    """Bytes of the state file (None when missing) and of its WAL: a stat each, no descriptor."""
    try:
        size: int | None = os.stat(path).st_size
    except OSError:
        size = None
    return size, _wal_bytes(path)


def _check_not_emptied(path: Path) -> None:
    """Refuse to start over silently on a state file that lost its content (see the module docstring)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        if _wal_bytes(path):
            raise StateDamaged(damaged_message(path, "the file is missing but its -wal is still there")) from None
        return
    except OSError:
        return  # sqlite says what is wrong
    if size:
        return
    if _wal_bytes(path):
        raise StateDamaged(damaged_message(path, "the file is empty but its -wal is not"))
    evidence = earlier_runs(path)
    if evidence is None:
        return  # never used (or created empty by an administrator): initialise it
    # Another process may be creating it this very moment: sqlite writes its first page within milliseconds.
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            if os.stat(path).st_size:
                return
    raise StateDamaged(empty_message(path, "empty (0 bytes)", evidence))


class State:
    """A connection in autocommit mode; writers open explicit ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._page_size = 0

    @classmethod
    def open(cls, path: Path) -> State:
        _ensure_dir(path.parent)
        _check_not_emptied(path)
        conn: _Connection | None = None
        try:
            _create_private(path)
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=_Connection)  # type: ignore[assignment]
            conn.state_path = path
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # Empty all the same (created by an administrator, or by an earlier release killed while it
                # created the file): set up as _create_private does.
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StateError(f"{path}: cannot switch the state file to WAL mode (got {mode})")
            # NORMAL in WAL keeps every commit across a process crash; a power cut may lose the last few
            # commits, but offsets and batches roll back together, so nothing is lost or doubled.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Re-state the cache in KiB: the default was sized in pages of the default 4 KiB, so with
            # 32 KiB pages it would hold 16 MiB of batches that pass through once (measured: +14 MiB RSS).
            # 1 MiB holds every b-tree page a run touches; the batches' pages pass through once.
            conn.execute("PRAGMA cache_size = -1024")
            # The default checkpoints every 1000 pages (32 MiB here): a small file system filled with WAL
            # before the first checkpoint, and then had no room left for the checkpoint itself.
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, WAL_LIMIT // page)}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        except StateError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if _is_corrupt(exc):
                message = damaged_message(path, str(exc))
                _DAMAGED.setdefault(str(path), message)
                raise StateDamaged(message) from None
            raise StateError(f"{path}: cannot open state file: {exc}") from None
        except OSError as exc:
            if conn is not None:
                conn.close()
            raise StateError(f"{path}: cannot open state file: {exc.strerror}") from None
        state = cls(path, conn)
        try:
            if _wal_bytes(path) > WAL_LIMIT:
                # Left over by a run that hit a full disk (or a reader that held it): fold it back into the file
                # before this run writes anything, so freed space goes to that and not to more WAL.
                state.checkpoint()
            state.migrate()
        except BaseException:
            conn.close()
            raise
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
            self._limit_growth()
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
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == SQLITE_FULL:
                _truncate_wal(self.conn)  # give back what the failed transaction wrote to the WAL
                raise StateError(full_message(self.path, exc)) from None
            raise StateError(f"{self.path}: cannot write the state file: {exc}; nothing was committed") from None

    def _room(self) -> int:
        """Free bytes on the state file's file system (a stat, no descriptor)."""
        try:
            vfs = os.statvfs(self.path.parent)
        except OSError:
            return 0
        return vfs.f_bavail * vfs.f_frsize

    def _limit_growth(self) -> None:
        """Let the file grow only into the free space of its file system less a reserve. A transaction
        that would need more fails with "database or disk is full" and rolls back, while the space kept back
        lets the upload record deliveries and delete batches (which reuse pages) and the WAL be checkpointed.
        Without it a backlog filled a small file system to the last byte, and then nothing could be written,
        not even what would have freed space, so no run ever recovered."""
        try:
            vfs = os.statvfs(self.path.parent)
        except OSError:
            return
        if not self._page_size:
            self._page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        reserve = min(FS_RESERVE, vfs.f_blocks * vfs.f_frsize // FS_RESERVE_SHARE)
        room = max(0, vfs.f_bavail * vfs.f_frsize - reserve) // self._page_size
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {min(MAX_PAGES, pages + room)}")

    def checkpoint(self) -> bool:
        """Fold the WAL into the file and truncate it, if nobody needs it right now (never waits long).
        Returns whether the WAL is now empty."""
        return _truncate_wal(self.conn)

    def maintain(self) -> None:
        """After a command's work: give space back. Freed pages go back to the file system once there are
        enough of them (all of them when little is live, else a bounded step per run), an old file is
        converted to incremental auto-vacuum once its live data is small, and the WAL is truncated. Busy or
        full: left to the next run. Damage found on the way is still reported."""
        conn = self.conn
        if conn.in_transaction:
            return
        page, pages, free, auto = (
            conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_size", "page_count", "freelist_count", "auto_vacuum")
        )
        live = (pages - free) * page
        try:
            conn.execute(f"PRAGMA busy_timeout = {SHORT_BUSY_MS}")
            if auto == 0 and live <= CONVERT_LIVE_LIMIT and self._room() > 2 * live + FS_RESERVE:
                # VACUUM cannot run inside the migration transaction; its cost is the live data, so wait until a
                # backlog has drained rather than copying a big queue.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")
            elif auto == 2 and free * page >= VACUUM_MIN_FREE and free * VACUUM_MIN_SHARE >= pages:
                step = 0 if live <= 2 * VACUUM_STEP_PAGES * page else VACUUM_STEP_PAGES
                # executescript steps the pragma to its end (execute would free a single page).
                conn.executescript(f"PRAGMA incremental_vacuum({step});")
        except StateDamaged:
            raise
        except (sqlite3.OperationalError, StateError):
            pass
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if _wal_bytes(self.path) > WAL_LIMIT // 4:
            self.checkpoint()

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

    def notices(self, limit: int = 20, *, info: bool | None = None) -> list[tuple[float, str, str, str]]:
        """The newest notices; ``info`` True: only info-level ones, False: only warnings and errors."""
        where = "" if info is None else "WHERE level = 'info'" if info else "WHERE level != 'info'"
        return self.conn.execute(
            f"SELECT ts, source, level, message FROM notices {where} ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()

    def notice(self, source: str, level: str, message: str) -> None:
        """Record a warning or error for ``status`` (kept short: the newest 200)."""
        self.conn.execute(
            "INSERT INTO notices (ts, source, level, message) VALUES (?, ?, ?, ?)",
            (time.time(), source, level, message),
        )
        self.conn.execute("DELETE FROM notices WHERE id <= (SELECT MAX(id) FROM notices) - 200")


def lock_path(state_path: Path, kind: str) -> Path:
    return state_path.with_name(f"{state_path.name}.{kind}.lock")


def _open_lock(path: Path) -> int:
    """The lock file, opened without following a symlink, and only if it is a plain file of its own (a hard
    link to another file would have it truncated)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"{path}: lock file is a symbolic link: refusing to follow it (remove it)") from None
        raise StateError(f"{path}: cannot create lock file: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "linked to another name (hard link)"
        raise StateError(f"{path}: lock file is {what}: refusing to use it (remove it)")
    return fd


@contextlib.contextmanager
def lock(state_path: Path, kind: str, *, wait: bool = False) -> Iterator[None]:
    """Advisory lock per command kind (flock on a file beside the state file); released on exit or on
    process death, so a killed run never leaves a stale lock behind."""
    _ensure_dir(state_path.parent)
    path = lock_path(state_path, kind)
    fd = _open_lock(path)
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
        before = b""
        with contextlib.suppress(OSError):
            before = os.pread(fd, 32, 0)
        # The pid is for people (and the "another run" message); the flock is the lock. On a full disk the
        # write fails, the lock still holds, and the state write says what is wrong in one line.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[str(path)] = before
        try:
            yield
        finally:
            _HELD.pop(str(path), None)
    finally:
        os.close(fd)
