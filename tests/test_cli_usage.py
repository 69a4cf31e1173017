"""The command line as a person meets it: usage errors exit 64, help reads whole, sizes take units, -v and
--json mean the same everywhere, counts read right, shell completion works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shipctl.humanize import parse_size, plural, size
from tests.conftest import Env, numbered

NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
COMMANDS = ["tail-once", "upload", "run-monitor", "run", "status", "check-config", "preview", "version"]
SHIPCTL = Path(sys.executable).with_name("shipctl")  # the console script of this venv


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No such command 'nope'"),
        (["status", "--bogus"], "No such option: --bogus"),
        (["preview"], "Missing argument 'FILE'"),
        (["tail-once", "--max-seconds", "-1"], "Invalid value for '--max-seconds'"),
        (["tail-once", "--max-seconds", "soon"], "Invalid value for '--max-seconds'"),
        (["tail-once", "--max-bytes", "10Q"], "Invalid value for '--max-bytes': expected a number of bytes"),
        (["upload", "--max-batches", "x"], "Invalid value for '--max-batches'"),
        (["state", "nope"], "No such command 'nope'"),
        (["state", "check", "--bogus"], "No such option: --bogus"),
        (["check-config", "extra"], "Got unexpected extra argument(s) (extra)"),
    ],
)
def test_every_usage_error_exits_64_with_the_reason_on_stderr(env: Env, args: list[str], message: str) -> None:
    env.write_config("")
    r = env.cli(*args)
    assert r.exit_code == 64, (r.exit_code, r.stderr)
    assert message in r.stderr and r.stdout == ""


def test_usage_errors_exit_64_from_the_installed_command_too(env: Env) -> None:
    """The console script goes through typer's own main (sys.exit), not CliRunner."""
    p = subprocess.run([str(SHIPCTL), "status", "--bogus"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 64 and "No such option: --bogus" in p.stderr and p.stdout == ""
    p = subprocess.run([str(SHIPCTL), "tail-once", "--max-bytes", "1.5.M"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 64 and "--max-bytes" in p.stderr


def test_help_is_whole_with_named_metavars() -> None:
    """No summary cut with "...", no ``<str>``-style metavars, and "0 means no limit" where 0 means that."""
    from tests.conftest import Env as _Env  # noqa: F401  (the autouse fixture isolates HOME and state)

    top = subprocess.run([str(SHIPCTL), "--help"], capture_output=True, text=True, timeout=60, env=_wide())
    assert top.returncode == 0
    assert "..." not in top.stdout.split("Commands:")[1]
    group = subprocess.run([str(SHIPCTL), "state", "--help"], capture_output=True, text=True, timeout=60)
    assert "..." not in group.stdout.split("Commands:")[1]
    assert "--install-completion" in top.stdout and "--show-completion" in top.stdout
    texts = {}
    for cmd in [*COMMANDS, "state check", "state recover", "timers install", "config convert"]:
        p = subprocess.run([str(SHIPCTL), *cmd.split(), "--help"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert not re.search(r"^\s+(-\w, )?--[\w-]+ <", p.stdout, re.M), (cmd, p.stdout)
        assert "TEXT" not in p.stdout and "INTEGER" not in p.stdout, (cmd, p.stdout)
        texts[cmd] = " ".join(p.stdout.split())  # unwrapped
    for cmd in ("tail-once", "run"):
        assert "--max-seconds SECONDS" in texts[cmd] and "--max-bytes SIZE" in texts[cmd]
        assert texts[cmd].count("0 means no limit") == 2
    assert "--max-batches N Send at most this many batches (0 means no limit)" in texts["upload"]
    assert "--limit N Show at most this many events (0 means no limit)" in texts["preview"]
    assert "-c, --config PATH" in texts["status"] and "--metric NAME" in texts["status"]
    verbose = {cmd: re.search(r"-v, --verbose (.*?)\.", t) for cmd, t in texts.items()}
    helps = {m.group(1) for m in verbose.values() if m}
    assert len(helps) == 1  # -v says one thing, wherever it exists
    assert {cmd for cmd, m in verbose.items() if m} == {"tail-once", "upload", "run-monitor", "run", "status"}


def _wide() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "80"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("512K", 512 << 10),
        ("100M", 100 << 20),
        ("100m", 100 << 20),
        ("100MiB", 100 << 20),
        ("100MB", 100 << 20),
        ("2G", 2 << 30),
        ("1.5G", 3 << 29),
        (" 7 KiB ", 7 << 10),
        ("12B", 12),
        (42, 42),
    ],
)
def test_parse_size_reads_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "10Q", "-1", "1.5", "1e3", "10 M B", "0x10", True, -5])
def test_parse_size_refuses_what_is_not_a_size(text: str | int) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_size(text)


def test_sizes_and_counts_read_right() -> None:
    assert [size(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 30, None)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "-",
    ]
    assert [plural(n, w) for n, w in ((1, "redaction"), (0, "redaction"), (2, "batch"), (1, "batch"))] == [
        "1 redaction",
        "0 redactions",
        "2 batches",
        "1 batch",
    ]


def test_max_bytes_with_a_unit_bounds_the_run(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    (env.logs / "a.log").write_text(numbered(40_000))  # 2.8 MiB
    r = env.cli("tail-once", "--max-bytes", "1M", "-v")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    m = re.match(r"tail-once: (\d+) lines, ([\d.]+) MiB, \d batch(es)? in [\d.]+ s \(stopped: byte limit of ", r.stderr)
    assert m and float(m.group(2)) <= 2.0, r.stderr  # stopped at a batch boundary past 1 MiB
    assert "byte limit of 1048576 reached" in r.stderr
    r = env.cli("tail-once", "--max-bytes", "2GiB", "-v")
    assert r.exit_code == 0 and "stopped" not in r.stderr, r.stderr
    assert env.cli("upload").stderr == "" and len(env.messages()) == 40_000


def test_verbose_summaries_count_right_and_keep_stdout_empty(env: Env) -> None:
    env.write_config(
        NO_IMPLICIT
        + f'[[logs]]\npath = "{env.logs}/*.log"\n[[monitors]]\ntype = "shell"\nid = "one"\ncommand = "echo 1"\n'
    )
    (env.logs / "a.log").write_text("only line\n")
    r = env.cli("tail-once", "-v")
    assert r.exit_code == 0 and r.stdout == ""
    assert re.fullmatch(r"tail-once: 1 line, 10 B, 1 batch in [\d.]+ s\n", r.stderr), r.stderr
    r = env.cli("run-monitor", "-v")
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == "run-monitor: 1 monitor ran, 1 event queued, 0 errors\n"
    r = env.cli("upload", "-v")
    assert r.exit_code == 0 and r.stdout == ""
    assert re.fullmatch(
        r"upload: 2 events in 2 batches \([\d.]+ (B|KiB), 1 request\) to file, 0 batches left\n", r.stderr
    )


def test_run_monitor_json_uses_the_keys_of_print(env: Env) -> None:
    env.write_config(NO_IMPLICIT + '[[monitors]]\ntype = "shell"\nid = "one"\ncommand = "echo 7"\n')
    printed = [json.loads(line) for line in env.cli("run-monitor", "--print").stdout.splitlines()]
    r = env.cli("run-monitor", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    (mon,) = out["monitors"]
    assert mon["id"] == "one" and mon["error"] is None and out["queued"] is True
    assert (
        [set(e) for e in mon["events"]] == [set(e) for e in printed] == [{"ts", "kind", "source", "message", "attrs"}]
    )
    assert [e["source"] for e in mon["events"]] == [e["source"] for e in printed] == ["one"]
    assert mon["events"][0]["attrs"]["value"] == 7


def test_shell_completion_is_offered_and_completes_commands(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    # Run from bash, as a person would: typer finds the shell among the parent processes. "; exit" keeps bash
    # from exec'ing a lone command (then the parent would be pytest, and detection depends on what runs it).
    shown = subprocess.run(
        ["bash", "-c", f"'{SHIPCTL}' --show-completion; exit $?"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and "_SHIPCTL_COMPLETE=complete_bash" in shown.stdout, shown.stderr
    done = subprocess.run(
        [str(SHIPCTL)],
        capture_output=True,
        text=True,
        env={**env, "_SHIPCTL_COMPLETE": "complete_bash", "COMP_WORDS": "shipctl sta", "COMP_CWORD": "1"},
    )
    assert done.stdout.split() == ["status", "state"]
    done = subprocess.run(
        [str(SHIPCTL)],
        capture_output=True,
        text=True,
        env={**env, "_SHIPCTL_COMPLETE": "complete_bash", "COMP_WORDS": "shipctl upload --dry", "COMP_CWORD": "2"},
    )
    assert done.stdout.split() == ["--dry-run"]
    inst = subprocess.run(
        ["bash", "-c", f"'{SHIPCTL}' --install-completion; exit $?"], capture_output=True, text=True, env=env
    )
    assert inst.returncode == 0, inst.stderr
    assert "_SHIPCTL_COMPLETE" in (tmp_path / ".bash_completions" / "shipctl.sh").read_text()
    assert "shipctl.sh" in (tmp_path / ".bashrc").read_text()


def test_config_sizes_take_the_same_units(env: Env) -> None:
    env.write_config(
        '[agent]\nmax_bytes = "1M"\nbatch_bytes = "64KiB"\nmax_queue_bytes = "1.5G"\n'
        f'[[logs]]\npath = "{env.logs}/*.log"\n'
    )
    resolved = json.loads(env.cli("check-config").stdout)
    agent = resolved["agent"]
    assert (agent["max_bytes"], agent["batch_bytes"], agent["max_queue_bytes"]) == (1 << 20, 64 << 10, 3 << 29)
    (env.logs / "a.log").write_text(numbered(40_000))
    r = env.cli("tail-once", "-v")
    assert r.exit_code == 0 and "byte limit of 1048576 reached" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ['"lots"', '"10Q"', '"-1M"'])
def test_a_bad_config_size_names_the_file_and_key(env: Env, value: str) -> None:
    env.write_config(f"[agent]\nmax_queue_bytes = {value}\n")
    r = env.cli("check-config")
    assert r.exit_code == 78 and r.stdout == ""
    assert r.stderr.startswith(f"shipctl: {env.config}: agent.max_queue_bytes: expected a number of bytes"), r.stderr


def test_run_verbose_says_the_same_as_each_command(env: Env) -> None:
    env.write_config(
        NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/*.log"\n'
        '[[monitors]]\ntype = "shell"\nid = "one"\ncommand = "echo 1"\n'
    )
    (env.logs / "a.log").write_text("first\nsecond\n")
    r = env.cli("run", "-v")
    assert r.exit_code == 0 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert re.fullmatch(r"tail-once: 2 lines, 13 B, 1 batch in [\d.]+ s", lines[0]), lines
    assert lines[1] == "run-monitor: 1 monitor ran, 1 event queued, 0 errors"
    # upload runs alongside the readers: one request, or one per pass
    upload = r"upload: 3 events in 2 batches \([\d.]+ (B|KiB), (1 request|2 requests)\) to file, 0 batches left"
    assert re.fullmatch(upload, lines[2]), lines
