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


def test_an_imported_secret_in_a_scalyr_monitors_stop_failure_is_masked(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error of gather_sample and the monitor's own log lines were scrubbed of imported secrets, but the warning
    made of an exception raised by ``stop()`` was shown as it was: on stderr, in status and in the tool's log."""
    from tests.test_scalyr_monitor import NO_IMPLICIT, _monitor

    secret = "s3cr3t-Pa55word-0042"
    monkeypatch.setenv("ACME_DB_PASSWORD", secret)
    env.write_config(
        'import_vars = ["ACME_DB_PASSWORD"]\n'
        + NO_IMPLICIT
        + _monitor("leaky", "faulty_monitors", {"mode": "leak_on_stop", "password": "$ACME_DB_PASSWORD"})
    )
    r = env.cli("run-monitor", "leaky")
    assert r.exit_code == 0, r.stderr
    assert "stop() failed: RuntimeError: could not log out with password ****0042" in r.stderr, r.stderr
    status = env.cli("status", "--json")
    log = env.state.with_name("shipctl.log")
    logged = log.read_text() if log.exists() else ""
    for text in (r.stderr, status.stdout, env.state.read_bytes().decode("latin-1"), logged):
        assert secret not in text


def test_a_size_too_large_for_a_float_is_a_usage_or_config_error(env: Env) -> None:
    """``--max-bytes 999...9K`` (hundreds of digits) overflowed to infinity and int() of it raised OverflowError:
    a traceback on the command line (exit 1), and the same from a size in the config."""
    huge = "9" * 400 + "K"
    (env.logs / "app.log").write_text(numbered(2))
    env.write_config(f'{QUIET}[[logs]]\npath = "{env.logs / "app.log"}"\n')
    r = env.cli("tail-once", "--max-bytes", huge)
    assert r.exit_code == 64, (r.exit_code, r.stderr)
    assert "Invalid value for '--max-bytes'" in r.stderr and "too large" in r.stderr, r.stderr
    env.write_config(f'[agent]\nmax_bytes = "{huge}"\n[[logs]]\npath = "{env.logs / "app.log"}"\n')
    r = env.cli("check-config")
    assert r.exit_code == 78, (r.exit_code, r.stderr)
    assert f"{env.config}: agent.max_bytes: expected a number of bytes" in r.stderr and "too large" in r.stderr


def test_one_age_and_size_for_status_and_the_check() -> None:
    """status (render) and status --check (commands/health) had each their own age, size and plural; they share
    humanize's now, with the check's rules kept: a negative span (clock set back) is 0s, sizes go up to TiB."""
    from shipctl import render
    from shipctl.humanize import age, plural, size

    assert render.ago is age
    assert [age(s) for s in (None, -5, 0, 119.9, 120, 7199, 7200, 172799, 172800)] == [
        "-",
        "0s",
        "0s",
        "119s",
        "2m",
        "119m",
        "2h",
        "47h",
        "2d",
    ]
    assert [size(n) for n in (1023, 5 << 30, 1 << 40, 3 << 50)] == ["1023 B", "5.0 GiB", "1.0 TiB", "3072.0 TiB"]
    assert plural(2, "log or file", "logs or files") == "2 logs or files"
    assert plural(3, "consecutive upload failure") == "3 consecutive upload failures"


def test_a_plugins_dir_that_runs_nothing_is_said_once_and_cleared(env: Env) -> None:
    """A missing ``agent.plugins_dir`` (or a descriptor whose id a [[monitors]] entry has) was found by the scan
    and thrown away: only check-config said it; every run exited 0 with no plugin run and nothing in status.
    Now it is a lasting problem: the first run says it (exit 65), later ones stay quiet, status shows it, and
    the run that finds it gone clears it."""
    import json

    plugins = env.tmp / "plugins"
    env.write_config(f'{QUIET}plugins_dir = "plugins"\n')
    r = env.cli("run-monitor")
    assert r.exit_code == 65, r.stderr
    assert f"shipctl: plugins_dir: {env.config}: agent.plugins_dir: {plugins}: not found" in r.stderr
    r = env.cli("run-monitor")
    assert (r.exit_code, r.stderr) == (0, "")  # said once, not by every timer tick
    problems = [p["problem"] for p in json.loads(env.cli("status", "--json").stdout)["problems"]]
    assert problems == [f"plugins_dir: {env.config}: agent.plugins_dir: {plugins}: not found"]
    plugins.mkdir()
    r = env.cli("run")  # no monitor at all to run: the problem still clears
    assert r.exit_code == 0, r.stderr
    assert json.loads(env.cli("status", "--json").stdout)["problems"] == []
    plugins.rmdir()
    r = env.cli("run")
    assert r.exit_code == 65 and "agent.plugins_dir" in r.stderr and "not found" in r.stderr, r.stderr
