"""``status`` on terminals of different widths: the columns that matter most stay, the others are named in a
line under the table, every line fits, and paths break only after a ``/``."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Env
from tests.tty import FORCING, run_in_pty

NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
LOG_COLUMNS = [
    "log",
    "path",
    "copied",
    "lines",
    "pending",
    "skipped",
    "dropped",
    "redactions",
    "rotations",
    "last checked",
    "problem",
]


SINK_COLUMNS = ["sink", "type", "pending", "oldest", "delivered", "last success", "last reply", "discarded", "dropped"]
MONITOR_COLUMNS = ["monitor", "type", "last run", "took", "outcome", "runs", "samples", "errors", "next due"]
MONITOR_COLUMNS += ["last error"]


@pytest.fixture
def shipped(env: Env) -> Env:
    deep = env.logs / "service-with-a-long-name" / "component"
    deep.mkdir(parents=True)
    (deep / "application-server.log").write_text("one\ntwo\n")
    (env.logs / "short.log").write_text("x\n")
    env.write_config(
        NO_IMPLICIT
        + f'[[logs]]\nid = "top"\npath = "{env.logs}/*.log"\n'
        + f'[[logs]]\nid = "deep"\npath = "{env.logs}/**/component/*.log"\n'
        + '[[monitors]]\ntype = "shell"\nid = "kernel"\ncommand = "uname -r"\n'
    )
    assert env.proc("run").returncode == 0
    return env


def table(screen: str, title: str) -> list[str]:
    lines = [line.rstrip() for line in screen.splitlines()]
    start = lines.index(title)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("└"))
    return lines[start + 1 : end + 1]


def header(rows: list[str]) -> list[str]:
    return [c.strip() for c in rows[1].strip("┃").split("┃")]


def column(rows: list[str], index: int) -> list[list[str]]:
    """The lines of one column, grouped per table row (a row's lines: until the next row starts)."""
    cells: list[list[str]] = []
    for line in rows[3:-1]:
        parts = [p.strip() for p in line.strip("│").split("│")]
        if parts[0]:  # the first column of a new row
            cells.append([])
        if parts[index]:
            cells[-1].append(parts[index])
    return cells


def test_status_at_80_columns_keeps_what_matters_and_says_what_is_hidden(shipped: Env) -> None:
    code, _out, screen = run_in_pty(shipped, "status", columns=80, stdout_tty=True)
    assert code == 0
    assert all(len(line) <= 80 for line in screen.splitlines()), screen
    logs = table(screen, "Logs")
    assert header(logs) == ["log", "path", "copied", "lines", "pending", "problem"]
    paths = column(logs, 1)
    whole = sorted("".join(lines) for lines in paths)
    assert whole == sorted(
        [f"{shipped.logs}/short.log", f"{shipped.logs}/service-with-a-long-name/component/application-server.log"]
    )
    for lines in paths:  # broken only after a "/", never inside a name
        assert all(line.endswith("/") for line in lines[:-1]), lines
    assert any(len(lines) > 1 for lines in paths)
    flat = " ".join(screen.split())  # the footer may wrap like any other line
    assert (
        "Logs: 5 columns hidden at 80 columns: dropped, skipped, last checked, redactions, rotations;"
        " widen the terminal or use --json" in flat
    )
    # The other tables: what is shown and what the footer names add up to every column, the key ones shown.
    for title, columns, key in (
        ("Sinks", SINK_COLUMNS, {"sink", "pending", "last reply", "oldest", "dropped"}),
        ("Monitors", MONITOR_COLUMNS, {"monitor", "outcome", "last error", "last run", "next due"}),
    ):
        shown = header(table(screen, title))
        m = re.search(
            rf"{title}: (\d) columns? hidden at 80 columns: ([a-z, ]+); widen the terminal or use --json", flat
        )
        assert m, (title, flat)
        named = m.group(2).split(", ")
        assert int(m.group(1)) == len(named) and sorted(shown + named) == sorted(columns), (shown, named)
        assert key <= set(shown), shown


def test_status_at_200_columns_shows_every_column_and_no_footer(shipped: Env) -> None:
    code, _out, screen = run_in_pty(shipped, "status", columns=200, stdout_tty=True)
    assert code == 0
    assert all(len(line) <= 200 for line in screen.splitlines()), [x for x in screen.splitlines() if len(x) > 200]
    logs = table(screen, "Logs")
    assert header(logs) == LOG_COLUMNS
    for lines in column(logs, 1):  # pytest's long tmp paths may still need two lines, broken after a "/"
        assert all(line.endswith("/") for line in lines[:-1]), lines
    assert "hidden" not in screen


def test_a_long_problem_wraps_at_words_and_keeps_its_column(env: Env) -> None:
    env.write_config(NO_IMPLICIT + f'[[logs]]\nid = "gone"\npath = "{env.logs}/nothing-here/*.log"\n')
    assert env.proc("tail-once").returncode == 0
    code, _out, screen = run_in_pty(env, "status", columns=80, stdout_tty=True)
    assert code == 0 and all(len(line) <= 80 for line in screen.splitlines())
    logs = table(screen, "Logs")
    i = header(logs).index("problem")
    (problem,) = column(logs, i)
    assert " ".join(problem) == "no matching readable file"


def test_status_in_a_pipe_has_every_column(shipped: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FORCING:  # a CI runner may force colours into pipes
        monkeypatch.delenv(name, raising=False)
    r = shipped.proc("status")
    assert r.returncode == 0
    rows = table(r.stdout, "Logs")
    assert header(rows) == LOG_COLUMNS and "hidden" not in r.stdout
    assert not re.search(r"\x1b\[", r.stdout)
