"""A monitor failing the same way run after run is reported once (exit 65), stays visible in status and
status --check, and says ``resolved:`` when it recovers; see shipctl/commands/problems.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env, numbered

QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def setup(env: Env) -> tuple[Path, Path]:
    """A shell monitor that fails with a message whose PID changes every run, until ``ok`` exists, and whose
    failure changes kind when ``other`` exists."""
    log = env.logs / "app.log"
    log.write_text(numbered(3))
    ok, other = env.tmp / "ok", env.tmp / "other"
    script = env.tmp / "probe.sh"
    script.write_text(
        f'if [ -e {ok} ]; then echo 1; exit 0; fi\nif [ -e {other} ]; then echo "disk gone" >&2; exit 126; fi\n'
        'echo "daemon pid $$ not answering after 0.$$ s" >&2; exit 127\n'
    )
    env.write_config(
        f'[agent]\n{QUIET}\n[[logs]]\nid = "app"\npath = "{log}"\n'
        f'[[monitors]]\ntype = "shell"\nid = "probe"\ncommand = "sh {script}"\nsample_interval = 0.001\n'
    )
    return ok, other


def test_failing_monitor_reported_once_then_on_change_and_when_resolved(env: Env) -> None:
    ok, other = setup(env)
    first = env.cli("run")
    assert first.exit_code == 65, first.stderr
    assert "shipctl: monitor probe: " in first.stderr and "not answering" in first.stderr
    for cmd in (("run",), ("run-monitor", "probe"), ("run",)):  # what cron would mail every minute: nothing
        again = env.cli(*cmd)
        assert (again.exit_code, again.stderr, again.stdout) == (0, "", ""), cmd
    verbose = env.cli("run", "-v")
    assert verbose.exit_code == 0 and "(ongoing: reported before, see status)" in verbose.stderr
    # By hand with --print nothing is remembered: the person running it sees the failure, and exit 65.
    printed = env.cli("run-monitor", "probe", "--print")
    assert printed.exit_code == 65 and "not answering" in printed.stderr
    # Still visible: status (Ongoing problems, with the latest wording), --json, status --check.
    st = env.cli("status")
    assert "Ongoing problems" in st.stdout and "monitor probe: " in st.stdout and "not answering" in st.stdout
    doc = json.loads(env.cli("status", "--json").stdout)
    problems = doc["problems"]
    assert len(problems) == 1 and problems[0]["problem"].startswith("monitor probe: ")
    # One notice for the lasting failure, not one per run pushing the others out of "Recent problems".
    assert len([n for n in doc["notices"] if n["source"] == "monitor:probe"]) == 1, doc["notices"]
    assert "#" not in problems[0]["problem"]  # the masked key is not what a person reads
    chk = env.cli("status", "--check")
    assert chk.exit_code == 1 and "monitors_failing=1" in chk.stdout
    # Another kind of failure is news; the previous one is resolved.
    other.touch()
    changed = env.cli("run")
    assert changed.exit_code == 65 and "shipctl: monitor probe: " in changed.stderr and "disk gone" in changed.stderr
    assert "shipctl: resolved: monitor probe: " in changed.stderr and "not answering" in changed.stderr
    assert env.cli("run").stderr == ""
    # Recovered: said once, exit 0, then quiet; nothing left in status.
    ok.touch()
    cleared = env.cli("run")
    assert cleared.exit_code == 0, cleared.stderr
    assert cleared.stderr.startswith("shipctl: resolved: monitor probe: ") and "disk gone" in cleared.stderr
    quiet = env.cli("run")
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    assert json.loads(env.cli("status", "--json").stdout)["problems"] == []
    assert env.cli("status", "--check").exit_code == 0


def test_tail_run_does_not_clear_a_monitor_problem(env: Env) -> None:
    setup(env)
    assert env.cli("run-monitor", "probe").exit_code == 65
    tail = env.cli("tail-once")
    assert (tail.exit_code, tail.stderr) == (0, "")
    problems = json.loads(env.cli("status", "--json").stdout)["problems"]
    assert [p["problem"].split(":")[0] for p in problems] == ["monitor probe"]
