"""Defects found reviewing this session's additions (health, Scalyr monitors, ...), each pinned by the observable
outcome that was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Env, numbered

QUIET = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


@pytest.mark.parametrize("odd", ["x#y", "x?y", "x%41y"])
def test_check_probes_the_state_file_itself_whatever_its_directory_is_called(
    env: Env, monkeypatch: pytest.MonkeyPatch, odd: str
) -> None:
    """The read-only probe of ``status --check`` opened the state file through an SQLite URI without quoting the
    path: in a directory ``x#y`` it opened (and created, empty, 0644) ``x`` instead, so a corrupt state file was
    reported OK."""
    state = env.tmp / odd / "state.db"
    monkeypatch.setenv("SHIPCTL_STATE", str(state))
    (env.logs / "app.log").write_text(numbered(3))
    env.write_config(f'{QUIET}[[logs]]\npath = "{env.logs / "app.log"}"\n')
    assert env.cli("run").exit_code == 0
    r = env.cli("status", "--check")
    assert r.exit_code == 0 and r.stdout.startswith("SHIPCTL OK - "), r.stdout
    for p in state.parent.glob("state.db*"):
        p.unlink()
    state.write_bytes(b"this is not a database\n" * 400)
    r = env.cli("status", "--check")
    assert r.exit_code == 3, r.stdout
    assert r.stdout.startswith(f"SHIPCTL UNKNOWN - state file corrupt: {state}"), r.stdout
    assert not Path(env.tmp / "x").exists()  # nothing created beside it
