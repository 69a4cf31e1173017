"""Invariants under kill -9 and concurrency: nothing lost or duplicated, one writer per command kind."""

from __future__ import annotations

import random
import time
from pathlib import Path

from shipctl.state import lock
from tests.conftest import Env, append, assert_exactly_once, numbered

N_LINES = 100_000  # ~7 MB of numbered lines


def _big_log(env: Env, batch_bytes: int = 65536) -> Path:
    log = env.logs / "big.log"
    log.write_text(numbered(N_LINES))
    env.write_config(f'[agent]\nbatch_bytes = {batch_bytes}\nmax_seconds = 0\n[[logs]]\npath = "{log}"\n')
    return log


def _wait_for_lock_holder(env: Env, pid: int, kind: str) -> bool:
    """True once process ``pid`` holds the command lock (it writes its pid there), i.e. it is reading."""
    lock_file = env.state.with_name(f"{env.state.name}.{kind}.lock")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if lock_file.read_text() == str(pid):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    return False


def test_kill_9_during_tail_once_loses_and_duplicates_nothing(env: Env) -> None:
    # Small batches mean hundreds of commits per run, so a kill lands between or inside them.
    log = env.logs / "big.log"
    log.write_text(numbered(N_LINES, width=20))
    env.write_config(f'[agent]\nbatch_bytes = 4096\nmax_seconds = 0\n[[logs]]\npath = "{log}"\n')
    rng = random.Random(1234)
    kills = 0
    appended = N_LINES
    for _ in range(25):
        proc = env.popen("tail-once")
        if _wait_for_lock_holder(env, proc.pid, "tail-once"):
            time.sleep(rng.uniform(0.0, 0.04))
        kills += env.kill9(proc)
        append(log, numbered(30_000, start=appended, width=20))  # the file keeps growing between crashes
        appended += 30_000
    assert kills >= 20, f"only {kills} runs were still busy when killed; give them more to read"
    final = env.proc("tail-once")
    assert final.returncode == 0, final.stderr
    up = env.proc("upload")
    assert up.returncode == 0, up.stderr
    assert_exactly_once(env.messages(), range(appended))


def test_second_concurrent_tail_once_exits_75(env: Env) -> None:
    _big_log(env)
    with lock(env.state, "tail-once"):  # exactly what a running tail-once holds
        busy = env.proc("tail-once")
    assert busy.returncode == 75
    assert "another 'shipctl tail-once' is running" in busy.stderr
    assert busy.stdout == ""
    assert env.proc("tail-once").returncode == 0


def test_two_racing_tail_once_runs_never_duplicate(env: Env) -> None:
    log = _big_log(env, batch_bytes=16384)
    a, b = env.popen("tail-once"), env.popen("tail-once")
    codes = sorted([a.wait(), b.wait()])
    assert codes in ([0, 0], [0, 75]), codes
    if 75 in codes:
        stderr = a.stderr.read() if a.returncode == 75 else b.stderr.read()  # type: ignore[union-attr]
        assert "another 'shipctl tail-once' is running" in stderr
    assert env.proc("tail-once").returncode == 0
    assert env.proc("upload").returncode == 0
    assert_exactly_once(env.messages(), range(N_LINES))
    del log


def test_wait_flag_waits_for_the_lock(env: Env) -> None:
    _big_log(env)
    import threading

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock(env.state, "tail-once"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    proc = env.popen("tail-once", "--wait")
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the lock
    release.set()
    t.join()
    assert proc.wait(60) == 0
    assert env.proc("upload").returncode == 0
    assert_exactly_once(env.messages(), range(N_LINES))


def test_different_command_kinds_run_side_by_side(env: Env) -> None:
    _big_log(env)
    with lock(env.state, "upload.file"):
        r = env.proc("tail-once")
    assert r.returncode == 0, r.stderr


def test_run_uploads_alongside_tail_once_and_survives_kill_9(env: Env) -> None:
    """`shipctl run` sends batches while tail-once is still reading; killed at any moment, nothing is lost
    and the file sink holds each line once."""
    log = env.logs / "big.log"
    log.write_text(numbered(N_LINES, width=20))
    env.write_config(
        "[agent]\nbatch_bytes = 4096\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
        f'implicit_agent_process_metrics_monitor = false\n[[logs]]\npath = "{log}"\n'
    )
    rng = random.Random(99)
    appended = N_LINES
    for _ in range(10):
        proc = env.popen("run")
        if _wait_for_lock_holder(env, proc.pid, "upload.file"):
            time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        append(log, numbered(20_000, start=appended, width=20))
        appended += 20_000
    final = env.proc("run")
    assert final.returncode == 0, final.stderr
    assert_exactly_once(env.messages(), range(appended))
    assert env.proc("status", "--json").returncode == 0
