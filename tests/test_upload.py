"""Upload that survives anything: faults, kill -9, backoff across runs, a bounded queue, dry runs.

Everything goes to the loopback addEvents receiver (tests/receiver.py), a real HTTP server that drops
repeats by (session, si, sn) as the service does and records any event it would have lost to ordering.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, append, assert_exactly_once, numbered
from tests.receiver import FAULTS, KEY, Receiver, config_text


def setup(env: Env, r: Receiver, agent: str = "", log_opts: str = "", **sink: object) -> Path:
    log = env.logs / "app.log"
    env.write_config(config_text(r.url, f'{agent}\n[[logs]]\npath = "{log}"\n{log_opts}', **sink), sink=False)
    return log


@contextlib.contextmanager
def db(env: Env) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(env.state, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def upload_row(env: Env) -> dict[str, object]:
    with db(env) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM upload_state").fetchone()
    return dict(row) if row else {}


def queued(env: Env) -> int:
    with db(env) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])


def assert_clean(r: Receiver) -> None:
    assert r.violations == [], r.violations[:5]
    assert r.misordered == [], f"{len(r.misordered)} events sent after a later one was accepted (lost)"


def test_100k_lines_arrive_exactly_once_through_every_fault(env: Env, receiver: Receiver) -> None:
    r = receiver
    r.slow_seconds = 1.0
    log = setup(env, r, max_request_bytes=200_000, read_timeout=0.4)
    log.write_text(numbered(100_000))
    assert env.cli("tail-once").exit_code == 0
    # Each fault after a few good requests; "store" variants processed the request and then lost the reply.
    plan: list[str | None] = []
    for kind in [k for k in FAULTS if k != "discard"] + ["500+store", "reset+store"]:
        plan += [None, None, kind]
    for kind in plan:
        if kind and kind.endswith("+store"):
            r.fail(kind.split("+")[0], store=True)
        else:
            r.schedule([kind])
    failures: list[str] = []
    for _ in range(len(plan) + 20):
        res = env.cli("upload", "--force")
        if res.exit_code == 0 and queued(env) == 0:
            break
        if res.exit_code:
            assert res.exit_code == 69, res.stderr
            failures.append(res.stderr)
    assert queued(env) == 0
    assert_clean(r)
    assert_exactly_once(r.messages(), range(100_000))
    # Every fault but requestTooLarge (which shrinks requests and carries on) failed one run, and said why. A
    # loaded machine may add read timeouts (0.4 s here) to the "slow" one: count those apart, not exactly.
    timeouts = [f for f in failures if "no reply from 127.0.0.1" in f]
    assert len(failures) - len(timeouts) == len(plan) // 3 - 2 and timeouts
    said = "\n".join(failures)
    for words in ("HTTP 500", "HTTP 429", "error/server/backoff", "API key may be wrong", "not JSON",
                  "no reply from 127.0.0.1", "failed"):  # fmt: skip
        assert words in said, words
    assert KEY not in said
    # Repeats came only from the requests the receiver stored and then failed to answer; all were dropped.
    stored_then_failed = {sn for q in r.requests if q.stored and q.reply != "success" for sn in q.sns}
    if len(timeouts) > 1:  # a loaded machine timed out on replies the receiver did send: those repeat too
        stored_then_failed |= {sn for q in r.requests if q.stored for sn in q.sns}
    assert r.repeats and {sn for _, _, sn in r.repeats} <= stored_then_failed
    # After requestTooLarge every request is at most half the configured size.
    big = next(q.index for q in r.requests if q.reply == "tooLarge")
    assert all(q.body_bytes <= 100_000 for q in r.requests[big + 1 :])


def _kill_uploads(env: Env, r: Receiver, most: int, seed: int) -> tuple[int, set[int]]:
    """Start uploads and kill -9 each a few requests in, up to ``most`` times or until the queue is empty.
    Returns the kills and the sequence numbers of the requests in flight at a kill (the only ones that may
    repeat: the killed run may have sent them without booking the reply)."""
    rng = random.Random(seed)
    in_flight: set[int] = set()
    kills = 0
    while kills < most and queued(env):
        before = len(r.requests)
        proc = env.popen("upload", "--force", "--max-seconds", "0")
        target = before + rng.randint(1, 3)
        deadline = time.monotonic() + 20
        while len(r.requests) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.04))
        kills += env.kill9(proc)
        r.wait_idle()
        mine = [q for q in r.requests[before:] if q.stored]
        if mine and proc.returncode == -signal.SIGKILL:
            in_flight |= set(mine[-1].sns)
    return kills, in_flight


def _finish_and_check(env: Env, r: Receiver, in_flight: set[int], lines: int) -> None:
    """A last upload empties the queue; every line arrived once, repeats only of requests in flight at a kill."""
    res = env.proc("upload", "--force", "--max-seconds", "0")
    assert res.returncode == 0, res.stderr
    assert queued(env) == 0
    assert_clean(r)
    assert_exactly_once(r.messages(), range(lines))
    stray = {sn for _, _, sn in r.repeats} - in_flight
    assert not stray, f"{len(stray)} repeats of requests that were not in flight at a kill: {sorted(stray)[:5]}"


def test_kill_9_at_random_moments_loses_nothing(env: Env, receiver: Receiver) -> None:
    r = receiver
    r.delay = 0.02  # between storing and replying: kills land on requests in flight
    log = setup(env, r, max_request_bytes=65_536)
    log.write_text(numbered(50_000, width=20))  # about 100 requests
    assert env.cli("tail-once").exit_code == 0
    kills, in_flight = _kill_uploads(env, r, 20, seed=20261122)
    assert kills >= 20, f"only {kills} kills before the queue ran dry"
    _finish_and_check(env, r, in_flight, 50_000)


def test_backoff_survives_runs_and_ends_after_success(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = setup(env, r)
    log.write_text(numbered(10))
    assert env.cli("tail-once").exit_code == 0
    r.fail_always("backoff")
    t0 = time.time()
    res = env.cli("upload")
    assert res.exit_code == 69
    assert "error/server/backoff" in res.stderr and "batches kept" in res.stderr
    row = upload_row(env)
    assert row["consecutive_failures"] == 1 and t0 + 5 < row["next_attempt"] < time.time() + 15  # type: ignore[operator]

    # The next timer tick (a new run) returns at once with one line and sends nothing.
    sent = len(r.requests)
    res = env.cli("upload")
    assert res.exit_code == 0 and len(r.requests) == sent
    assert res.stderr.count("\n") == 1 and "backing off until" in res.stderr and "--force" in res.stderr
    assert "backing off" in env.cli("status").stdout

    # --force tries anyway; another failure doubles the wait.
    assert env.cli("upload", "--force").exit_code == 69
    row = upload_row(env)
    assert row["consecutive_failures"] == 2 and row["next_attempt"] > time.time() + 15  # type: ignore[operator]

    r.fail_always(None)
    assert env.cli("upload").exit_code == 0 and len(r.requests) == sent + 1  # still backing off
    assert env.cli("upload", "--force").exit_code == 0
    row = upload_row(env)
    assert row["consecutive_failures"] == 0 and row["next_attempt"] is None and row["last_status"] == "success"
    assert "backing off" not in env.cli("status").stdout
    append(log, numbered(5, start=10))
    assert env.cli("tail-once").exit_code == 0
    assert env.cli("upload").exit_code == 0  # a plain tick sends again
    assert_clean(r)
    assert_exactly_once(r.messages(), range(15))


def test_changing_the_sink_config_ends_the_backoff(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = setup(env, r)
    log.write_text(numbered(10))
    assert env.cli("tail-once").exit_code == 0
    r.fail_always("backoff")
    assert env.cli("upload").exit_code == 69
    r.fail_always(None)
    sent = len(r.requests)
    assert env.cli("upload").exit_code == 0 and len(r.requests) == sent  # same config: still backing off
    setup(env, r, read_timeout=30)  # the operator edits the sink: try the new config at once
    assert env.cli("upload").exit_code == 0 and len(r.requests) == sent + 1
    assert upload_row(env)["consecutive_failures"] == 0
    assert_exactly_once(r.messages(), range(10))


def test_max_queue_bytes_drops_oldest_batches_loudly(env: Env, receiver: Receiver) -> None:
    r = receiver
    small = "max_line_size = 200\n"  # 4 KiB reads: many small batches
    log = setup(
        env, r, agent="[agent]\nbatch_bytes = 4096\nmax_queue_bytes = 20000\ncompress_queue = false\n", log_opts=small
    )
    log.write_text(numbered(900))
    assert env.cli("tail-once").exit_code == 0
    before = queued(env)
    r.fail_always("500")
    res = env.cli("upload")
    assert res.exit_code == 69
    assert re.search(r"QUEUE OVER agent.max_queue_bytes: dropped the \d+ oldest batches \(\d+ events\)", res.stderr)
    dropped = upload_row(env)["batches_dropped"]
    assert dropped and queued(env) == before - dropped
    with db(env) as conn:
        assert conn.execute("SELECT SUM(LENGTH(payload)) FROM queue").fetchone()[0] <= 20000
    status = env.cli("status").stdout
    assert f"DROPPED {dropped} oldest batches unsent" in status and "max_queue_bytes" in status
    # While backing off the queue is still kept in bounds.
    append(log, numbered(300, start=900))
    assert env.cli("tail-once").exit_code == 0
    res = env.cli("upload")
    assert res.exit_code == 0 and "backing off" in res.stderr and "dropped" in res.stderr
    r.fail_always(None)
    assert env.cli("upload", "--force").exit_code == 0
    nums = [int(m.split()[1]) for m in r.messages()]
    assert nums and nums == list(range(nums[0], 1200)) and nums[0] > 0  # the newest lines, in order, once
    assert_clean(r)


def test_dry_run_shows_the_request_masks_the_key_and_changes_nothing(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = setup(env, r)
    log.write_text('one "quoted"\ntwo\n')
    assert env.cli("tail-once").exit_code == 0
    snapshot = env.state.read_bytes()
    with db(env) as conn:
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    res = env.cli("upload", "--dry-run")
    assert res.exit_code == 0
    assert KEY not in res.stdout + res.stderr
    assert res.stdout.startswith(f"POST {r.url}/addEvents\n")
    body = json.loads(res.stdout[res.stdout.index("\n{") :])
    assert body["token"] == "****" + KEY[-4:]
    assert [e["attrs"]["message"] for e in body["events"]] == ['one "quoted"', "two"]
    assert r.requests == []
    assert queued(env) == 1 and upload_row(env) == {}
    with db(env) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == runs
    assert env.state.read_bytes() == snapshot


def test_dry_run_shows_the_start_of_a_large_request(env: Env, receiver: Receiver) -> None:
    log = setup(env, receiver)
    log.write_text(numbered(20_000))  # ~1.4 MB of lines: one request of about 2 MB of JSON
    assert env.cli("tail-once").exit_code == 0
    res = env.cli("upload", "--dry-run")
    assert res.exit_code == 0
    assert '"token":"****' in res.stdout and "line 000000 " in res.stdout
    assert len(res.stdout) < 80_000 and "more characters of this body not shown" in res.stdout
    assert receiver.requests == [] and queued(env) > 0


def test_api_key_is_never_printed(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = setup(env, r)
    log.write_text("x\n")
    r.fail_always("badParam")
    outputs = [env.cli("tail-once"), env.cli("upload", "-v")]
    assert outputs[-1].exit_code == 69 and "the API key may be wrong" in outputs[-1].stderr
    outputs += [env.cli("upload", "--force"), env.cli("upload", "--dry-run"), env.cli("check-config")]
    outputs += [env.cli("status"), env.cli("status", "-v"), env.cli("status", "--json")]
    env.write_config(config_text("http://127.0.0.1:9", f'[[logs]]\npath = "{log}"\n', connect_timeout=2), sink=False)
    outputs += [env.cli("upload", "--force")]  # connection refused
    assert "127.0.0.1:9" in outputs[-1].stderr
    env.write_config(config_text(r.url.replace("http:", "https:"), f'[[logs]]\npath = "{log}"\n'), sink=False)
    outputs += [env.cli("upload", "--force")]  # TLS to a plain HTTP server
    assert "TLS error" in outputs[-1].stderr
    for out in outputs:
        assert KEY not in out.stdout and KEY not in out.stderr
    for path in env.state.parent.iterdir():
        assert KEY.encode() not in path.read_bytes(), path


def test_a_run_with_nothing_to_send_does_not_import_requests(env: Env, receiver: Receiver) -> None:
    setup(env, receiver)
    for _ in range(2):  # an empty queue, then a backoff
        res = env.proc("upload", "-v")
        assert res.returncode == 0, res.stderr
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "shipctl", "upload", "-c", str(env.config)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0
        assert not re.search(r"\|\s+requests$", res.stderr, re.M)
        with db(env) as conn:
            backoff = "INSERT OR REPLACE INTO upload_state (sink, next_attempt) VALUES ('scalyr', ?)"
            conn.execute(backoff, (time.time() + 99,))
    assert receiver.requests == []


def test_request_too_large_halves_the_size_and_remembers_it(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    with Receiver(max_request_bytes=150_000) as r:
        log = setup(env, r, max_request_bytes=500_000)
        log.write_text(numbered(5000))
        env.ship()
        assert [q.reply for q in r.requests[:3]] == ["requestTooLarge", "requestTooLarge", "success"]
        assert max(q.body_bytes for q in r.requests if q.reply == "success") <= 125_000
        assert "requests now at most 125000" in env.cli("status").stdout
        seen = len(r.requests)
        append(log, numbered(5000, start=5000))
        env.ship()  # a later run starts at the smaller size
        assert all(q.reply == "success" for q in r.requests[seen:])
        assert_clean(r)
        assert_exactly_once(r.messages(), range(10_000))


def test_discard_buffer_drops_the_request_and_counts_it(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = setup(env, r, max_request_bytes=65_536)
    log.write_text(numbered(3000))
    assert env.cli("tail-once").exit_code == 0
    r.schedule([None, "discard"])
    res = env.cli("upload")
    assert res.exit_code == 0 and "receiver discarded" in res.stderr
    assert r.requests[1].reply == "discard" and queued(env) == 0
    discarded = upload_row(env)["events_discarded"]
    assert discarded and len(set(r.messages())) == 3000 - discarded  # type: ignore[operator]
    (sink,) = json.loads(env.cli("status", "--json").stdout)["sinks"]
    assert sink["events_discarded"] == discarded
    assert f"receiver discarded {discarded} events" in env.cli("status").stdout  # among the problems
    assert_clean(r)


def test_a_batch_split_over_requests_resumes_where_it_stopped(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = setup(env, r, max_request_bytes=65_536)
    log.write_text(numbered(12_000))  # one 1 MiB batch, about 15 requests
    assert env.cli("tail-once").exit_code == 0
    assert queued(env) == 1
    r.schedule([None, None, None, "500"])
    assert env.cli("upload").exit_code == 69
    assert queued(env) == 1 and len(r.messages()) > 0
    assert env.cli("upload", "--force").exit_code == 0
    assert r.repeats == []  # the resumed batch started after the last confirmed event
    assert_clean(r)
    assert_exactly_once(r.messages(), range(12_000))
    sns = [e["sn"] for e in r.events]
    assert sns == list(range(sns[0], sns[0] + 12_000))  # one sequence number per line, in line order


def test_max_batches_and_max_seconds_bound_a_run(env: Env, receiver: Receiver) -> None:
    log = setup(env, receiver, agent="[agent]\nbatch_bytes = 4096\n", log_opts="max_line_size = 200\n")
    log.write_text(numbered(1000))
    assert env.cli("tail-once").exit_code == 0
    total = queued(env)
    assert env.cli("upload", "--max-batches", "3").exit_code == 0
    assert queued(env) == total - 3
    assert env.cli("upload").exit_code == 0 and queued(env) == 0
    assert_exactly_once(receiver.messages(), range(1000))


def test_kill_9_during_a_fan_out_upload_loses_nothing_and_repeats_only_what_was_in_flight(
    env: Env, receiver: Receiver
) -> None:
    """Two sinks at once (addEvents and a file); killed at random moments, each gets every line, the receiver
    sees a repeat only of the request in flight at a kill (same si/sn), the file sink none at all."""
    r = receiver
    r.delay = 0.02
    log = env.logs / "app.log"
    archive = env.tmp / "archive.jsonl"
    archive_sink = f'[[sinks]]\nid = "archive"\ntype = "file"\npath = "{archive}"\nrequest_bytes = 65536\n'
    body = f'[[logs]]\npath = "{log}"\n{archive_sink}'
    env.write_config(config_text(r.url, body, max_request_bytes=65_536), sink=False)
    log.write_text(numbered(50_000, width=20))
    assert env.cli("tail-once").exit_code == 0
    kills, in_flight = _kill_uploads(env, r, 15, seed=20261130)
    assert kills >= 10, f"only {kills} kills before the queue ran dry"
    _finish_and_check(env, r, in_flight, 50_000)
    lines = [json.loads(x)["message"] for x in archive.read_text().splitlines()]
    assert_exactly_once(lines, range(50_000))
