"""Issue 12, the state file must always recover (items 6, 7, 8) and the files beside it (items 11, 12).

- Disk full: the WAL stays bounded and a run after space is freed goes on by itself; the lock file and the
  tool's own log failing to write give one line, never a traceback.
- Damage (corrupt queue pages, a dropped table, a truncated or emptied file): one line naming the recovery from
  every command; ``state check`` tells what is left; ``state recover`` moves the file aside and rebuilds it with
  the queue, offsets, cursors and sequence numbers that can be read, and asks where logs resume when offsets
  are lost (never re-ships silently).
- Size: the file gives a drained backlog's space back; status shows the size.
- Neighbours: no symlink in the state directory is followed, a directory others can write is refused, and
  shipctl.log is 0600 through rotation whatever the umask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, append, assert_exactly_once, numbered

QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _config(env: Env, *, batch_bytes: int = 65536, extra: str = "") -> None:
    env.write_config(f'[agent]\n{QUIET}batch_bytes = {batch_bytes}\n{extra}[[logs]]\npath = "{env.logs}/app.log"\n')


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    return lines[0]


def _lines(path: Path) -> int:
    """Lines in a file, counted without holding it (or parsing it) in memory."""
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _log_numbers(env: Env) -> list[int]:
    return [int(m.split()[1]) for m in env.messages() if m.startswith("line ")]


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small file system (tmpfs needs root; the sandbox and CI run tests as root)."""
    where.mkdir(mode=0o700, parents=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}); the RLIMIT_FSIZE test still covers the lock file")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def _fill(directory: Path) -> None:
    """Fill the file system holding ``directory`` to its last byte."""
    for name, chunk in (("filler", 1 << 16), ("filler2", 512)):
        with open(directory / name, "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * chunk)


# --- 6. disk full ---------------------------------------------------------------------------------------
def test_disk_full_bounds_the_wal_and_the_run_after_space_is_freed_recovers_by_itself(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the WAL grew into all the space (no checkpoint under 32 MiB), then nothing could be written,
    not even the checkpoint or the upload's bookkeeping: every later run exited 73, even after freeing space."""
    with _tmpfs(env.tmp / "small", "16m") as small:
        monkeypatch.setenv("SHIPCTL_STATE", str(small / "state.db"))
        total = 24_000  # 24 MiB in 1 KiB lines: more than the file system holds
        (env.logs / "app.log").write_text(numbered(total, width=1000))
        _config(env, batch_bytes=1 << 20)
        (small / "filler").write_bytes(b"\0" * (10 << 20))
        r = env.proc("run", timeout=60)
        assert r.returncode == 73, r.stderr
        assert "full" in _one_line(r.stderr)
        (small / "filler").unlink()
        codes = []
        for _ in range(10):
            r = env.proc("run", timeout=60)
            codes.append(r.returncode)
            assert r.returncode in (0, 73), r.stderr
            if r.returncode:
                _one_line(r.stderr)
            wal = small / "state.db-wal"
            assert not wal.exists() or wal.stat().st_size <= 6 << 20  # WAL_LIMIT plus one transaction
            if r.returncode == 0 and _lines(env.sink) >= total:
                break
        assert codes[-1] == 0, codes
        assert_exactly_once(env.messages(), range(total))


def test_lock_file_that_cannot_be_written_is_one_line_not_a_traceback(env: Env) -> None:
    """A file size limit of 0 makes every write fail (EFBIG), the lock file's pid first: that was a traceback."""
    (env.logs / "app.log").write_text(numbered(10))
    _config(env)
    assert env.cli("tail-once").exit_code == 0  # the state exists; the next run's lock file does not

    def no_writes() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    append(env.logs / "app.log", numbered(10, start=10))
    r = subprocess.run(
        [sys.executable, "-m", "shipctl", "tail-once", "-c", str(env.config)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=no_writes,
        env=os.environ.copy(),
    )
    assert r.returncode == 73, r.stderr
    assert "state.db: cannot" in _one_line(r.stderr)
    assert env.cli("tail-once").exit_code == 0  # and with the limit gone, on it goes: nothing lost or doubled
    env.ship()
    assert_exactly_once(env.messages(), range(20))


def test_full_disk_under_the_lock_file_and_the_log_gives_one_line(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC writing the lock file's pid, or shipctl.log, was a traceback (the log's: "--- Logging error ---"
    on stderr while the run went on)."""
    (env.logs / "app.log").write_text(numbered(50))
    with _tmpfs(env.tmp / "full", "1m") as full:
        # The tool's own log on a full file system, the state elsewhere: the run does its work, then says so.
        _config(env, extra=f'log_file = "{full}/shipctl.log"\n')
        _fill(full)
        r = env.proc("tail-once")
        assert r.returncode == 73, r.stderr
        assert f"{full}/shipctl.log: cannot write the log file" in _one_line(r.stderr)
        for filler in full.glob("filler*"):
            filler.unlink()
        env.ship()
        assert_exactly_once(env.messages(), range(50))
    with _tmpfs(env.tmp / "full2", "2m") as full:
        # The state on a file system that filled up after it was created: the lock file's pid cannot be written.
        monkeypatch.setenv("SHIPCTL_STATE", str(full / "state.db"))
        _config(env)
        assert env.proc("upload").returncode == 0  # creates the state file; no lock file of tail-once yet
        _fill(full)
        append(env.logs / "app.log", numbered(50, start=50))
        r = env.proc("tail-once")
        assert r.returncode == 73, r.stderr
        assert "state.db" in _one_line(r.stderr)


# --- 7. damage --------------------------------------------------------------------------------------------
def _queued(env: Env, lines: int = 40_000) -> None:
    """A state file with ~50 queued batches of 64 KiB."""
    (env.logs / "app.log").write_text(numbered(lines))
    _config(env, extra="compress_queue = false\n")  # the damage needs pages of raw lines to land in
    assert env.cli("tail-once").exit_code == 0


def _queue_leaf_pages(state: Path) -> list[int]:
    conn = sqlite3.connect(state)
    try:
        return [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'queue' AND pagetype = 'leaf'")]
    finally:
        conn.close()


def _damage(state: Path, kind: str) -> None:
    if kind == "queue_pages":
        pages = _queue_leaf_pages(state)
        assert len(pages) >= 3
        with open(state, "r+b") as fh:
            fh.seek((pages[len(pages) // 2] - 1) * 32768)
            fh.write(b"\xde\xad\xbe\xef" * 8192)
    elif kind == "dropped_table":
        conn = sqlite3.connect(state)
        conn.execute("DROP TABLE files")
        conn.commit()
        conn.close()
    elif kind == "truncated":
        os.truncate(state, state.stat().st_size // 2 + 1000)
    elif kind == "zero_bytes":
        os.truncate(state, 0)
    else:
        raise AssertionError(kind)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["queue_pages", "dropped_table", "truncated", "zero_bytes"])
def test_a_damaged_state_file_is_one_line_naming_the_recovery(env: Env, kind: str) -> None:
    """Before: tracebacks from run, upload and status, "cannot write: no such table", or (zero bytes) a silent
    start over that shipped every log again."""
    _queued(env)
    _damage(env.state, kind)
    for cmd in ("run", "tail-once", "status", "upload"):
        r = env.cli(cmd)
        if (cmd, kind) in (("upload", "dropped_table"), ("tail-once", "queue_pages")) and r.exit_code == 0:
            continue  # delivering needs no file offsets; appending to the queue never reads its middle
        assert r.exit_code == 73, (cmd, r.stdout, r.stderr)
        assert "shipctl state recover" in _one_line(r.stderr), (cmd, r.stderr)
    check = env.cli("state", "check", "--json")
    assert check.exit_code == 73, check.stderr
    result = json.loads(check.stdout)
    assert result["verdict"].startswith("DAMAGED") and not result["healthy"]
    assert result["offsets_lost"] == (kind in ("dropped_table", "zero_bytes"))
    report = result["report"]
    assert report["path"] == str(env.state)
    if kind == "zero_bytes":
        assert report["size"] == 0 and report["earlier_runs"]
    if kind == "dropped_table":
        assert report["missing"] == ["files"]
    if kind in ("queue_pages", "truncated"):
        assert report["lost_batches"] and report["queue"]["batches"]
    if kind == "zero_bytes":
        assert not env.messages()  # no silent start over that ships every log again


def test_recover_keeps_what_can_be_read_and_ships_nothing_twice(env: Env) -> None:
    """Corrupt queue pages: the readable batches, the offset, the sink's cursor and stream survive; the
    batches that cannot be read are reported lost, the rest arrives exactly once."""
    total = 40_000
    _queued(env, total)
    assert env.cli("upload", "--max-batches", "10").exit_code == 0
    before = env.events()
    delivered = _log_numbers(env)
    session = before[0]["si"]
    _damage(env.state, "queue_pages")
    assert env.cli("status").exit_code == 73

    r = env.cli("state", "recover", "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["done"] and res["lost_batches"] >= 1 and res["batches"] + res["lost_batches"] == 20  # 30 - 10 sent
    assert res["logs_from"] is None and res["tracked_files"] == 1 and res["cursors"] == {"file": len(delivered)}
    quarantined = Path(res["quarantined"])
    assert quarantined.parent == env.state.parent and quarantined.name.startswith("state.db.damaged-")
    assert oct(env.state.stat().st_mode & 0o777) == "0o600"
    assert env.cli("state", "check").exit_code == 0

    append(env.logs / "app.log", numbered(1000, start=total))
    env.ship()
    nums = _log_numbers(env)
    assert len(nums) == len(set(nums)), "a line was shipped twice"
    assert nums[: len(delivered)] == delivered
    missing = sorted(set(range(total + 1000)) - set(nums))
    assert missing and min(missing) >= len(delivered) and max(missing) < total  # only lines of the lost batches
    assert {e["si"] for e in env.events()} == {session}  # the receiver's dedup stream goes on
    status = json.loads(env.cli("status", "--json").stdout)
    assert any("state recover" in n["message"] for n in status["notices"])


@pytest.mark.parametrize(("kind", "choice"), [("dropped_table", "end"), ("zero_bytes", "end"), ("zero_bytes", "start")])
def test_lost_offsets_make_the_operator_choose_where_logs_resume(env: Env, kind: str, choice: str) -> None:
    total = 2000
    _queued(env, total)
    env.ship()
    _damage(env.state, kind)
    digest = _digest(env.state)
    r = env.cli("state", "recover")
    assert r.exit_code == 64
    line = _one_line(r.stderr)
    assert "--logs-from start" in line and "--logs-from end" in line and "nothing was changed" in line
    assert _digest(env.state) == digest and not list(env.state.parent.glob("*.damaged-*"))

    r = env.cli("state", "recover", "--logs-from", choice)
    assert r.exit_code == 0, r.stderr
    assert "Damaged file moved to" in r.stdout
    append(env.logs / "app.log", numbered(100, start=total))
    env.ship()
    if choice == "end":
        assert_exactly_once(env.messages(), range(total + 100))  # the new lines only, nothing twice
    else:
        nums = _log_numbers(env)  # what the operator asked for: every line again
        assert sorted(set(nums)) == list(range(total + 100)) and len(nums) == 2 * total + 100


def test_recover_a_damaged_file_of_an_older_schema_keeps_its_cursor(env: Env) -> None:
    """A file of release 0.1 (schema 4: the sink's cursor still in meta) that lost a table: the rebuilt file
    is migrated like any upgrade, so the cursor moves to upload_state and nothing is sent twice."""
    import shutil

    env.state.parent.mkdir(mode=0o700)
    shutil.copy(Path(__file__).parent / "data" / "state-0.1.0.db", env.state)
    env.write_config(f'[agent]\n{QUIET}[[logs]]\nid = "app"\npath = "{env.logs}/app.log"\n')
    conn = sqlite3.connect(env.state)
    conn.execute("DROP TABLE monitors")
    conn.commit()
    conn.close()
    assert env.cli("state", "check").exit_code == 73
    r = env.cli("state", "recover")
    assert r.exit_code == 0, r.stderr
    assert "Table monitors was missing" in r.stdout
    up = env.cli("upload", "--force")
    assert up.exit_code == 0, up.stderr
    assert_exactly_once(env.messages(), range(300, 600))


def test_an_empty_or_missing_state_file_without_earlier_runs_starts_normally(env: Env) -> None:
    """No false alarm: a file an administrator created empty, and a deliberate start over (file deleted)."""
    (env.logs / "app.log").write_text(numbered(10))
    _config(env)
    env.state.parent.mkdir(mode=0o700)
    env.state.touch(mode=0o600)
    env.ship()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{env.state}{suffix}").unlink(missing_ok=True)
    env.sink.unlink()
    env.ship()  # deleting the state is how an operator starts over on purpose
    assert_exactly_once(env.messages(), range(10))
    r = env.cli("state", "recover")
    assert r.exit_code == 0 and "nothing to recover" in r.stdout


def test_a_first_run_killed_while_creating_the_state_file_leaves_nothing_the_next_run_refuses(env: Env) -> None:
    """kill -9 of the very first run between its lock file and the state file's first page used to leave a
    0-byte state.db beside a lock file of a dead process: every later run then said "empty (0 bytes)", exit 73,
    until an operator acted. The file is now created whole under a temporary name and linked into place."""
    (env.logs / "app.log").write_text(numbered(10))
    _config(env)
    # The real CLI in a child that kills itself the moment SQLite would write a new file's first page.
    code = (
        "import os, signal, sqlite3, sys\n"
        "import shipctl.state.db as db\n"
        "real = sqlite3.connect\n"
        "def connect(path, *a, **k):\n"
        "    if os.path.exists(path) and os.path.getsize(path) == 0:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(path, *a, **k)\n"
        "db.sqlite3.connect = connect\n"
        "from shipctl.cli import main\n"
        f"sys.argv = ['shipctl', 'tail-once', '-c', {str(env.config)!r}]\n"
        "main()\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, child.stderr
    assert list(env.state.parent.glob("*.lock"))  # the lock file naming the dead process
    r = env.ship()
    assert r.exit_code == 0, r.stderr
    assert_exactly_once(env.messages(), range(10))
    assert not list(env.state.parent.glob(f".{env.state.name}.new-*"))  # cleaned up by the next creation
    conn = sqlite3.connect(env.state)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 32768
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    conn.close()
    assert env.state.stat().st_mode & 0o777 == 0o600


def test_state_check_on_a_sound_file_reports_and_changes_nothing(env: Env) -> None:
    _queued(env, 4000)
    assert env.cli("upload", "--max-batches", "1").exit_code == 0
    digest = _digest(env.state)
    r = env.cli("state", "check")
    assert r.exit_code == 0, r.stderr
    assert "Integrity:   ok" in r.stdout and "Verdict:     ok" in r.stdout and "Schema:      version" in r.stdout
    report = json.loads(env.cli("state", "check", "--json").stdout)["report"]
    assert report["queue"]["batches"] >= 2 and report["sinks"][0]["sink"] == "file"
    assert report["sinks"][0]["acked_sn"] > 0 and report["tracked_files"] == 1
    assert _digest(env.state) == digest


# --- 8. size ----------------------------------------------------------------------------------------------
def test_the_state_file_gives_back_a_drained_backlog(env: Env) -> None:
    """Before: the file kept the size of its biggest backlog (812 MB after a 1 GB catch-up)."""
    total = 50_000
    for start in range(0, total, 5000):  # 50 MiB in 1 KiB lines, written a piece at a time
        append(env.logs / "app.log", numbered(5000, start=start, width=1000))
    _config(env, batch_bytes=1 << 20, extra="compress_queue = false\n")  # numbered lines deflate ~100x
    assert env.cli("tail-once").exit_code == 0
    assert env.state.stat().st_size > 40 << 20
    assert env.cli("upload").exit_code == 0
    assert env.cli("tail-once").exit_code == 0
    wal = Path(f"{env.state}-wal")
    size = env.state.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    assert size < 4 << 20, size
    assert _lines(env.sink) == total
    status = json.loads(env.cli("status", "--json").stdout)
    assert status["state_bytes"] == env.state.stat().st_size and status["wal_bytes"] >= 0


def _old_format(path: Path, queued_bytes: int) -> None:
    """A state file as shipctl wrote it before auto_vacuum, with ``queued_bytes`` in its queue."""
    from shipctl.state.migrations import MIGRATIONS

    path.parent.mkdir(mode=0o700, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size = 32768")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for m in MIGRATIONS:
        m(conn)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    conn.execute("INSERT INTO meta VALUES ('session', 'abc'), ('next_sn', ?)", (str(queued_bytes // (1 << 20) + 1),))
    for sn in range(1, queued_bytes // (1 << 20) + 1):
        conn.execute(
            "INSERT INTO queue (kind, source, ts, attrs, fmt, codec, n_events, n_bytes, sn, created, payload)"
            " VALUES ('log', 'x', 1, '{}', 'raw', 'none', 1, ?, ?, 0, ?)",
            (1 << 20, sn, os.urandom(1 << 20)),
        )
    conn.execute("COMMIT")
    conn.close()


def _auto_vacuum(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    finally:
        conn.close()


def test_an_older_state_file_is_converted_once_its_queue_is_small(env: Env) -> None:
    """Converting needs a VACUUM, whose cost is the live data: done at once for a small queue, put off while a
    big one is queued (and done once it has drained)."""
    (env.logs / "app.log").write_text("")
    _config(env)
    _old_format(env.state, 40 << 20)
    assert env.cli("tail-once").exit_code == 0
    assert _auto_vacuum(env.state) == 0  # 40 MiB live: not now
    conn = sqlite3.connect(env.state)
    conn.execute("DELETE FROM queue WHERE sn > 2")
    conn.commit()
    conn.close()
    assert env.cli("tail-once").exit_code == 0
    assert _auto_vacuum(env.state) == 2
    assert env.state.stat().st_size < 4 << 20
    with sqlite3.connect(env.state) as conn:
        assert conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 2


# --- 11, 12. the files beside the state ---------------------------------------------------------------
def test_symlinked_lock_file_is_refused_and_its_target_untouched(env: Env) -> None:
    (env.logs / "app.log").write_text(numbered(5))
    _config(env)
    env.state.parent.mkdir(mode=0o700)
    victim = env.tmp / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    (env.state.parent / "state.db.tail-once.lock").symlink_to(victim)
    r = env.cli("tail-once")
    assert r.exit_code == 73
    assert "symbolic link" in _one_line(r.stderr)
    assert victim.read_text() == "precious\n" and victim.stat().st_mode & 0o777 == 0o644


def test_symlinked_shipctl_log_is_not_followed(env: Env) -> None:
    (env.logs / "app.log").write_text(numbered(5))
    _config(env)
    env.state.parent.mkdir(mode=0o700)
    victim = env.tmp / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    (env.state.parent / "shipctl.log").symlink_to(victim)
    r = env.proc("tail-once")  # a process of its own: the log handler is per process
    assert r.returncode == 73, r.stderr
    assert "shipctl.log: cannot write the log file: it is a symbolic link" in _one_line(r.stderr)
    assert victim.read_text() == "precious\n" and victim.stat().st_mode & 0o777 == 0o644
    (env.state.parent / "shipctl.log").unlink()
    env.ship()  # the run itself went through: its lines were queued
    assert_exactly_once(env.messages(), range(5))


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_a_state_directory_others_can_write_is_refused(env: Env, mode: int) -> None:
    (env.logs / "app.log").write_text(numbered(5))
    _config(env)
    env.state.parent.mkdir()
    env.state.parent.chmod(mode)
    r = env.cli("tail-once")
    assert r.exit_code == 73
    assert "writable by other users" in _one_line(r.stderr)
    assert list(env.state.parent.iterdir()) == []  # not even a lock file was made there


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_a_state_directory_of_another_user_is_refused(env: Env) -> None:
    (env.logs / "app.log").write_text(numbered(5))
    _config(env)
    env.state.parent.mkdir(mode=0o700)
    os.chown(env.state.parent, 65534, 65534)
    r = env.cli("tail-once")
    assert r.exit_code == 73
    assert "belongs to uid 65534" in _one_line(r.stderr)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_shipctl_log_stays_0600_through_rotation_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    from shipctl.logfile import LOG_MAX_BYTES, _LazyFileHandler

    path = tmp_path / "shipctl.log"
    (tmp_path / "shipctl.log.2").write_text("from an older shipctl\n")
    (tmp_path / "shipctl.log.2").chmod(0o644)
    old = os.umask(umask)
    handler = _LazyFileHandler(path)
    try:
        handler.setFormatter(logging.Formatter("%(message)s"))
        record = logging.LogRecord("shipctl", logging.INFO, __file__, 1, "x" * 1000, None, None)
        for _ in range(2 * LOG_MAX_BYTES // 1000 + 10):  # two rollovers
            handler.emit(record)
    finally:
        handler.close()
        os.umask(old)
    assert handler.failure is None
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert set(modes) >= {"shipctl.log", "shipctl.log.1", "shipctl.log.2", "shipctl.log.3"}
    assert set(modes.values()) == {0o600}, {k: oct(v) for k, v in modes.items()}
