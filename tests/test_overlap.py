"""Commands that overlap (cron ticks, a timer and an operator by hand) never lose or double a line.

Regression: opening and closing a descriptor of our own on state.db dropped the POSIX locks SQLite held
through a live connection in the same process (``run`` opens a second connection for its upload thread);
another process closing its connection then believed it was the last one and deleted the WAL under it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from tests.conftest import Env, append, assert_exactly_once, numbered

ROUNDS = 30
CHUNK = 2_000


def test_overlapping_commands_lose_and_duplicate_nothing(env: Env) -> None:
    log = env.logs / "grow.log"
    log.write_text(numbered(CHUNK, width=40))
    env.write_config(
        "[agent]\nbatch_bytes = 8192\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
        "implicit_agent_process_metrics_monitor = false\n"
        f'[[logs]]\npath = "{log}"\n'
        # A slow monitor keeps run's and run-monitor's connections alive across the others' opens and closes.
        '[[monitors]]\ntype = "shell"\nid = "slow"\ncommand = "sleep 0.3; echo 1"\nsample_interval = 1\n'
    )
    written = CHUNK
    stderr_all: list[str] = []
    for r in range(ROUNDS):
        order = ["run", "run-monitor", "tail-once", "upload", "status", "status"]
        order = order[r % 4 :] + order[: r % 4]  # each of the writers gets to start first
        procs: list[subprocess.Popen[str]] = []
        for cmd in order:
            procs.append(env.popen(cmd))
            append(log, numbered(CHUNK, start=written, width=40))  # the log grows while they run
            written += CHUNK
            time.sleep(0.04)
        for p in procs:
            _, err = p.communicate(timeout=60)
            stderr_all.append(err)
            assert p.returncode in (0, 75), (p.args, p.returncode, err)
    assert not [e for e in stderr_all if "malformed" in e or "Traceback" in e]
    final = env.proc("run")
    assert final.returncode == 0, final.stderr
    assert_exactly_once(env.messages(), range(written))
    assert env.messages("metric"), "the slow monitor never ran alongside the others"


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shipctl.state import State
    path, role, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if role == "long":
        first = State.open(path)
        second = State.open(path)  # what run's upload thread does while the main connection is live
        print("ready", flush=True)
    for i in range(n):
        if role == "long":
            with first.write() as conn:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"long{i}",))
            time.sleep(0.002)
        else:  # a short command: open, write, close, again and again
            s = State.open(path)
            with s.write() as conn:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"short{i}",))
            s.close()
    """
)


def test_a_second_connection_in_one_process_keeps_the_first_ones_locks(env: Env) -> None:
    """The mechanism itself, deterministically: a process with two live connections writes while others
    open, write and close. Every row of every process must be in the file afterwards."""
    env.state.parent.mkdir(parents=True)
    args = [sys.executable, "-c", WRITER, str(env.state)]
    long = subprocess.Popen([*args, "long", "600"], stdout=subprocess.PIPE, text=True)
    assert long.stdout is not None and long.stdout.readline().strip() == "ready"
    short = subprocess.run([*args, "short", "40"], capture_output=True, text=True, timeout=60)
    assert short.returncode == 0, short.stderr
    assert long.wait(60) == 0
    import sqlite3

    conn = sqlite3.connect(env.state)
    keys = {k for (k,) in conn.execute("SELECT key FROM meta")}
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len({k for k in keys if k.startswith("long")}) == 600
    assert len({k for k in keys if k.startswith("short")}) == 40, "rows of the short commands were lost"
