"""`shipctl status`: what it shows people (tables) and machines (--json)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shipctl.cli import app
from tests.conftest import Env, numbered


def test_status_before_anything_ran(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    r = env.cli("status")
    assert r.exit_code == 0
    assert "not created yet" in r.stdout
    assert not env.state.exists()  # status never creates state


def test_status_json_counts_files_queue_and_upload(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text(numbered(100) + "partial")
    env.write_config(
        f'[[logs]]\nid = "app"\npath = "{log}"\n[[logs]]\nid = "none"\npath = "{env.logs}/nothing-*.log"\n'
    )
    assert env.cli("tail-once").exit_code == 0
    data = json.loads(env.cli("status", "--json").stdout)
    app, none = data["logs"]
    assert app["log_id"] == "app" and none["log_id"] == "none"
    (f,) = app["files"]
    assert f["path"] == str(log)
    assert f["lines_copied"] == 100
    assert f["bytes_copied"] == len(numbered(100))
    assert f["bytes_pending"] == len("partial")
    assert none["files"] == [] and none["error"] == "no matching readable file"
    assert data["queue"]["batches"] == 1 and data["queue"]["events"] == 100
    assert data["uploads"] == []

    assert env.cli("upload").exit_code == 0
    data = json.loads(env.cli("status", "--json").stdout)
    assert data["queue"]["batches"] == 0
    (up,) = data["uploads"]
    assert up["events_uploaded"] == 100 and up["last_status"] == "success" and up["consecutive_failures"] == 0


def test_status_table_keeps_long_paths_whole_outside_a_terminal(env: Env) -> None:
    deep = env.logs / ("a-very-long-directory-name-" * 6).rstrip("-") / ("nested-" * 8).rstrip("-")
    deep.mkdir(parents=True)
    log = deep / "service-with-a-long-name.log"
    log.write_text("one\n")
    env.write_config(
        f'[[logs]]\nid = "deep"\npath = "{env.logs}/**/*.log"\n[[logs]]\nid = "gone"\npath = "/nonexistent/x.log"\n'
    )
    assert env.cli("tail-once").exit_code == 0
    r = env.cli("status")
    assert r.exit_code == 0
    assert str(log) in r.stdout  # on one line, not cut with "…" nor folded
    assert "…" not in r.stdout
    assert "no matching readable file" in r.stdout
    assert "Queue: 1 batch, 1 event," in r.stdout


def test_status_verbose_lists_problems_and_runs(env: Env) -> None:
    env.write_config('[[monitors]]\ntype = "shell"\nid = "broken"\ncommand = "/nonexistent/tool --flag"\n')
    r = env.cli("run-monitor", "broken")
    assert r.exit_code == 65
    assert "monitor broken" in r.stderr and "/nonexistent/tool" in r.stderr
    v = env.cli("status", "-v")
    assert "monitor:broken" in v.stdout and "/nonexistent/tool" in v.stdout
    assert "run-monitor: exit 65" in v.stdout


def test_names_with_brackets_and_colons_are_shown_as_written(env: Env) -> None:
    log = env.logs / "y:smile:.log"
    log.write_text("hi\n")
    env.write_config(f"""
        [agent]
        implicit_metric_monitor = false
        implicit_agent_process_metrics_monitor = false
        [[logs]]
        id = "secret:smile: w[bold]x"
        path = "{log}"
        [[monitors]]
        type = "shell"
        id = "m[/]"
        command = "echo ok"
    """)
    assert env.cli("run").exit_code == 0
    r = env.cli("status")
    assert r.exit_code == 0, r.stderr
    assert "secret:smile: w[bold]x" in r.stdout and str(log) in r.stdout and "m[/]" in r.stdout


def test_a_missing_default_config_is_an_error(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import shipctl.config

    monkeypatch.setattr(shipctl.config, "DEFAULT_CONFIG", env.tmp / "etc" / "shipctl.toml")
    for cmd in ("run", "tail-once", "upload", "check-config"):
        r = CliRunner().invoke(app, [cmd])
        assert r.exit_code == 78, (cmd, r.stdout, r.stderr)
        assert "shipctl.toml: config file not found (write one, or give --config / $SHIPCTL_CONFIG)" in r.stderr
    assert not env.state.exists()
    # An ad hoc monitor needs no config at all.
    r = CliRunner().invoke(app, ["run-monitor", "shell", "--command", "echo 42", "--print"])
    assert r.exit_code == 0 and '"value": 42' in r.stdout
