"""The state file: migrations, permissions, newer-schema refusal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shipctl.errors import StateError
from shipctl.state import State
from shipctl.state.migrations import MIGRATIONS, m001_initial
from tests.conftest import Env


def test_blank_database_gets_every_migration(tmp_path: Path) -> None:
    with State.open(tmp_path / "s" / "state.db") as st:
        assert st.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in st.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"files", "queue", "meta", "upload_state", "monitors", "runs", "notices"} <= tables
        assert len(st.session) == 32
        session = st.session
    with State.open(tmp_path / "s" / "state.db") as st:  # reopening keeps the session id
        assert st.session == session


def test_upgrade_from_the_first_schema_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    m001_initial(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('session', 'abc'), ('next_sn', '42')")
    conn.execute(
        "INSERT INTO queue (kind, source, ts, attrs, fmt, codec, n_events, n_bytes, sn, created, payload)"
        " VALUES ('log', '/x.log', 1, '{}', 'raw', 'none', 1, 6, 41, 0, X'68656C6C6F0A')"
    )
    conn.execute("COMMIT")
    conn.close()
    with State.open(path) as st:
        assert st.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert st.session == "abc"
        assert st.meta("next_sn") == "42"
        assert st.conn.execute("SELECT source, sn, payload FROM queue").fetchall() == [("/x.log", 41, b"hello\n")]


def test_state_file_from_a_newer_shipctl_is_refused(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    env.state.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(env.state)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(StateError):
        State.open(env.state)
    r = env.cli("tail-once")
    assert r.exit_code == 73
    assert "upgrade shipctl" in r.stderr


def test_unwritable_state_directory_is_a_clear_error(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("SHIPCTL_STATE", str(blocker / "state.db"))
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    r = env.cli("tail-once")
    assert r.exit_code == 73
    assert str(blocker) in r.stderr
