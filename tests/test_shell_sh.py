"""The shell monitor runs its command through /bin/sh -c, as the Scalyr agent's shell_monitor does: pipes,
redirections, ``&&`` and variables work; ``shell = false`` runs the command without a shell."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Env

NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _shell(mid: str, command: str, extra: str = "") -> str:
    return f'[[monitors]]\ntype = "shell"\nid = "{mid}"\ncommand = {json.dumps(command)}\n{extra}'


def _values(env: Env) -> dict[str, dict[str, Any]]:
    env.ship()
    return {e["source"]: e["attrs"] for e in env.events() if e["kind"] == "metric"}


def test_pipes_redirections_and_variables_go_through_sh(env: Env) -> None:
    out = env.tmp / "written.txt"
    env.write_config(
        NO_IMPLICIT
        + _shell("pipe", "printf 'a\\nb\\nc\\n' | grep -v b | wc -l")
        # Written by one redirection and read back by the next command: both parts ran, in order.
        + _shell("redirect", f"echo 17 > {out} && cat < {out}")
        + _shell("stderr_to_stdout", "echo oops 1>&2; echo done")
        + _shell("swallowed", "ls /nonexistent-dir 2>/dev/null || echo missing")
        + _shell("variable", "N=5; echo $((N * 3))")
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr
    got = _values(env)
    assert got["pipe"]["value"] == 2
    assert got["redirect"]["value"] == 17 and out.read_text() == "17\n"
    # As the agent: the output is stderr, a newline, then stdout; only the first line is kept.
    assert got["stderr_to_stdout"]["value"] == "oops"
    assert got["swallowed"]["value"] == "missing"
    assert got["variable"]["value"] == 15
    assert all(a["exit_code"] == 0 for a in got.values())


def test_exit_status_of_a_pipeline_is_the_last_command(env: Env) -> None:
    env.write_config(NO_IMPLICIT + _shell("failing", "echo 3 | (cat; exit 4)"))
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr  # a command failing is data about the host, not a monitor error
    got = _values(env)["failing"]
    assert (got["value"], got["exit_code"]) == (3, 4)


def test_shell_false_runs_without_a_shell(env: Env) -> None:
    marker = env.tmp / "must-not-exist"
    env.write_config(
        NO_IMPLICIT
        + _shell("literal", f"echo a | wc -l > {marker}", "shell = false\n")
        + _shell("quoted", "printf '%s-%s' 'x y' z", "shell = false\n")
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr
    got = _values(env)
    # echo got "|", "wc", "-l", ">" and the path as arguments: nothing was piped or redirected.
    assert got["literal"]["value"] == f"a | wc -l > {marker}"
    assert not marker.exists()
    assert got["quoted"]["value"] == "x y-z"


def test_shell_must_be_a_boolean(env: Env) -> None:
    env.write_config(NO_IMPLICIT + _shell("x", "echo 1", 'shell = "no"\n'))
    r = env.cli("run-monitor")
    assert r.exit_code == 78
    assert "monitors[0].shell: expected true or false" in r.stderr


def test_a_number_beyond_64_bits_does_not_sink_the_run(env: Env) -> None:
    # SQLite integers are 64-bit: the metric history keeps such a value as a float instead of failing the
    # transaction that queues every monitor's samples.
    env.write_config(NO_IMPLICIT + _shell("big", "echo 99999999999999999999") + _shell("small", "echo 7"))
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr
    got = _values(env)
    assert got["big"]["value"] == 99999999999999999999 and got["small"]["value"] == 7
    r = env.cli("run-monitor")  # the next run compares with the stored value
    assert r.exit_code == 0, r.stderr


def test_a_command_the_shell_cannot_run_is_the_monitors_error(env: Env) -> None:
    script = env.tmp / "not-executable.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    env.write_config(
        NO_IMPLICIT
        + _shell("missing", "/nonexistent/tool --flag")
        + _shell("noexec", str(script))
        + _shell("fine", "echo 1")
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert "monitor missing: cannot run '/nonexistent/tool --flag': " in r.stderr
    assert "/nonexistent/tool: not found (exit 127)" in r.stderr
    assert f"monitor noexec: cannot run '{script}': " in r.stderr and "Permission denied (exit 126)" in r.stderr
    got = _values(env)
    assert got["missing"]["exit_code"] == 127  # the output is still emitted, as the agent does
    assert got["fine"]["value"] == 1
