"""A queued batch whose stored form cannot be decoded (a damaged compressed blob, attrs that are not JSON, a
blob that turned into text) is set aside by each sink that reaches it: its events are counted as dropped for
that sink, one notice names it, and everything queued after it arrives exactly once. Before, every later
upload failed with exit 69 ("IsalError ... batches kept") and that sink was stuck behind it for ever."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, append, assert_exactly_once, numbered
from tests.receiver import Receiver, config_text

QUIET = "batch_bytes = 4096\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
LINES = 3000
# Small reads make small batches: a few hundred lines each, so the queue holds about ten of them.
LOG = 'id = "app"\nmax_line_size = 1000\n'


def _file_sink(sid: str, path: Path) -> str:
    return f'[[sinks]]\nid = "{sid}"\ntype = "file"\npath = "{path}"\n'


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(x)["message"] for x in path.read_text().splitlines()]


def _batches(state: Path) -> list[tuple[int, int, int]]:
    """(id, first sn, events) of every queued batch, in sequence order."""
    with sqlite3.connect(state) as conn:
        return conn.execute("SELECT id, sn, n_events FROM queue ORDER BY sn").fetchall()


def _numbers(state: Path, batch_id: int) -> set[int]:
    """The line numbers a queued batch holds (read before it is damaged)."""
    with sqlite3.connect(state) as conn:
        codec, blob = conn.execute("SELECT codec, payload FROM queue WHERE id = ?", (batch_id,)).fetchone()
    text = (zlib.decompress(blob) if codec == "zlib" else blob).decode()
    return {int(line.split()[1]) for line in text.splitlines()}


def _sql(state: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(state)
    with conn:
        conn.execute(sql, args)
    conn.close()


def _flip(state: Path, batch_id: int) -> None:
    """Flip four bytes in the middle of a batch's stored blob, as a bad disk would."""
    with sqlite3.connect(state) as conn:
        (blob,) = conn.execute("SELECT payload FROM queue WHERE id = ?", (batch_id,)).fetchone()
    b = bytearray(blob)
    mid = len(b) // 2
    b[mid : mid + 4] = bytes(x ^ 0xFF for x in b[mid : mid + 4])
    _sql(state, "UPDATE queue SET payload = ? WHERE id = ?", bytes(b), batch_id)


def _status(env: Env) -> dict[str, Any]:
    r = env.cli("status", "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _notices_naming(env: Env, batch_id: int, sn: int) -> list[str]:
    ns = _status(env)["notices"]
    return [n["message"] for n in ns if f"queued batch {batch_id} (sn {sn}.." in n["message"]]


def test_a_damaged_blob_is_set_aside_for_every_sink_and_the_rest_arrives_once(env: Env, receiver: Receiver) -> None:
    log = env.logs / "app.log"
    log.write_text(numbered(LINES))
    a, b = env.tmp / "a.jsonl", env.tmp / "b.jsonl"
    body = f'[agent]\n{QUIET}[[logs]]\n{LOG}path = "{log}"\n'
    env.write_config(config_text(receiver.url, body) + _file_sink("a", a) + _file_sink("b", b), sink=False)
    assert env.cli("tail-once").exit_code == 0
    batches = _batches(env.state)
    assert len(batches) >= 5, batches
    bid, sn, n = batches[2]
    lost = _numbers(env.state, bid)
    assert len(lost) == n
    _flip(env.state, bid)

    # state check, before any upload: names the batch, says what the upload will do, exit 73 (damaged).
    check = env.cli("state", "check")
    assert check.exit_code == 73, check.stdout + check.stderr
    assert f"batch {bid} (sn {sn}..{sn + n - 1}, log source 'app', {n} events) CANNOT BE DECODED" in check.stdout
    assert "sets them aside" in check.stdout and "Traceback" not in check.stdout + check.stderr
    report = json.loads(env.cli("state", "check", "--json").stdout)["report"]
    (bad,) = report["undecodable"]
    assert (bad["id"], bad["sn"], bad["events"], bad["source"]) == (bid, sn, n, "app")
    assert "does not inflate" in bad["reason"]

    up = env.proc("upload")
    # 65: the run did its job but some input was bad and lost (as for a log that cannot be read), not 69:
    # nothing is kept for a retry, and the sinks did not fail.
    assert up.returncode == 65, up.stderr
    assert "Traceback" not in up.stderr and up.stdout == ""
    (line,) = [x for x in up.stderr.splitlines() if "cannot be decoded" in x]  # once, not once per sink
    assert f"queued batch {bid} (sn {sn}..{sn + n - 1}, log source 'app', {n} events)" in line
    assert "does not inflate" in line and "shipctl state check" in line
    tool_log = (env.state.parent / "shipctl.log").read_text()
    assert tool_log.count(f"queued batch {bid} (sn {sn}..") == 1, tool_log

    expected = set(range(LINES)) - lost
    for got in (_lines(a), _lines(b), receiver.messages()):
        nums = sorted(int(m.split()[1]) for m in got)
        assert nums == sorted(expected)  # every other batch, exactly once
    assert receiver.violations == []
    status = _status(env)
    sinks = {s["sink"]: s for s in status["sinks"]}
    assert set(sinks) == {"scalyr", "a", "b"}
    for s in sinks.values():
        # Lost, never sent: events_dropped (what `dropped` shows), not events_discarded (a receiver's refusal).
        assert s["events_dropped"] == n and s["events_discarded"] == 0 and s["batches_dropped"] == 0
        assert s["events_uploaded"] == LINES - n and s["pending_events"] == 0
    assert len(_notices_naming(env, bid, sn)) == 1
    assert status["queue"]["batches"] == 0  # released once every sink passed it
    human = env.cli("status")
    assert human.exit_code == 0 and f"queued batch {bid} (sn {sn}.." in human.stdout

    # A second upload has nothing to say; new lines arrive once; the batch is not reported again.
    again = env.proc("upload")
    assert again.returncode == 0 and again.stderr == "", again.stderr
    append(log, numbered(500, start=LINES))
    assert env.cli("tail-once").exit_code == 0
    last = env.proc("upload")
    assert last.returncode == 0 and last.stderr == "", last.stderr
    for got in (_lines(a), _lines(b), receiver.messages()):
        nums = sorted(int(m.split()[1]) for m in got)
        assert nums == sorted(expected | set(range(LINES, LINES + 500)))
    assert len(_notices_naming(env, bid, sn)) == 1
    assert all(s["events_dropped"] == n for s in _status(env)["sinks"])
    check = env.cli("state", "check")
    assert check.exit_code == 0 and "Verdict:     ok" in check.stdout, check.stdout


DAMAGE = {
    # attrs cut short: not JSON any more
    "attrs_cut": ("UPDATE queue SET attrs = substr(attrs, 1, length(attrs) - 3) WHERE id = ?", "not valid JSON"),
    # attrs that are JSON but not an object
    "attrs_not_object": ("UPDATE queue SET attrs = '[1, 2]' WHERE id = ?", "not a JSON object but list"),
    # a byte that is not UTF-8: sqlite3 would fail the whole read of the batches fetched with it
    "attrs_not_utf8": ("UPDATE queue SET attrs = CAST(X'7B22FF223A317D' AS TEXT) WHERE id = ?", "not valid JSON"),
    # an uncompressed blob (no checksum) that lost its end
    "payload_short": ("UPDATE queue SET payload = substr(payload, 1, 100) WHERE id = ?", "header says"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_other_damage_is_set_aside_too(env: Env, kind: str) -> None:
    sql, reason = DAMAGE[kind]
    log = env.logs / "app.log"
    log.write_text(numbered(LINES))
    compress = "false" if kind == "payload_short" else "true"
    env.write_config(f'[agent]\n{QUIET}compress_queue = {compress}\n[[logs]]\n{LOG}path = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    bid, sn, n = _batches(env.state)[1]
    lost = _numbers(env.state, bid)
    _sql(env.state, sql, bid)
    report = json.loads(env.cli("state", "check", "--json").stdout)["report"]
    assert [(u["id"], u["events"]) for u in report["undecodable"]] == [(bid, n)] and reason in report["undecodable"][0][
        "reason"
    ]

    up = env.cli("run" if kind == "attrs_cut" else "upload")  # run (tail-once, monitors, upload) says the same
    assert up.exit_code == 65, up.stderr
    (line,) = up.stderr.splitlines()
    assert line.startswith(f"shipctl: queued batch {bid} (sn {sn}..{sn + n - 1},") and reason in line
    nums = sorted(int(m.split()[1]) for m in env.messages())
    assert nums == sorted(set(range(LINES)) - lost)
    (sink,) = json.loads(env.cli("status", "--json").stdout)["sinks"]
    assert sink["events_dropped"] == n and sink["events_uploaded"] == LINES - n
    again = env.cli("upload")
    assert again.exit_code == 0 and again.stderr == ""
    assert env.cli("state", "check").exit_code == 0


def test_one_notice_per_batch_though_sinks_pass_it_in_different_runs(env: Env) -> None:
    """Sink c is down when a and b pass the damaged batch; it passes it once back, in a later run: counted
    for c too, but no second notice, and the batch leaves the queue only then."""
    log = env.logs / "app.log"
    log.write_text(numbered(LINES))
    a, b, c = env.tmp / "a.jsonl", env.tmp / "b.jsonl", env.tmp / "blocked" / "c.jsonl"
    (env.tmp / "blocked").write_text("a file where sink c wants its directory: c is down")
    env.write_config(
        f'[agent]\n{QUIET}[[logs]]\n{LOG}path = "{log}"\n'
        + _file_sink("a", a)
        + _file_sink("b", b)
        + _file_sink("c", c),
        sink=False,
    )
    assert env.cli("tail-once").exit_code == 0
    bid, sn, n = _batches(env.state)[0]  # the oldest: c's cursor sits right before it
    _flip(env.state, bid)

    first = env.proc("run")
    assert first.returncode == 69, first.stderr  # c failed: that wins over the notice's 65
    assert first.stderr.count("cannot be decoded") == 1 and "upload: c: failed" in first.stderr
    assert "Traceback" not in first.stderr
    with sqlite3.connect(env.state) as conn:
        assert conn.execute("SELECT COUNT(*) FROM queue WHERE id = ?", (bid,)).fetchone() == (1,)  # c holds it
    sinks = {s["sink"]: s for s in _status(env)["sinks"]}
    assert (sinks["a"]["events_dropped"], sinks["b"]["events_dropped"], sinks["c"]["events_dropped"]) == (n, n, 0)

    (env.tmp / "blocked").unlink()
    back = env.proc("upload", "--force")
    assert back.returncode == 0 and "cannot be decoded" not in back.stderr, back.stderr
    assert_exactly_once(_lines(c), range(n, LINES))
    for path in (a, b):
        assert_exactly_once(_lines(path), range(n, LINES))
    status = _status(env)
    assert all(s["events_dropped"] == n for s in status["sinks"])
    assert len(_notices_naming(env, bid, sn)) == 1
    assert status["queue"]["batches"] == 0


def test_a_blob_stored_as_text_is_read_as_the_bytes_it_holds(env: Env) -> None:
    """One flipped bit in a row's header turns a blob into text (here not UTF-8): sqlite3 failed the whole
    read ("Could not decode to UTF-8 column 'payload'") and the sink was stuck. The bytes are intact: sent."""
    log = env.logs / "app.log"
    log.write_text(numbered(LINES))
    env.write_config(f'[agent]\n{QUIET}[[logs]]\n{LOG}path = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    bid = _batches(env.state)[1][0]
    _sql(env.state, "UPDATE queue SET payload = CAST(payload AS TEXT) WHERE id = ?", bid)
    with sqlite3.connect(env.state) as conn:
        assert conn.execute("SELECT typeof(payload) FROM queue WHERE id = ?", (bid,)).fetchone() == ("text",)
    assert env.cli("state", "check").exit_code == 0
    up = env.cli("upload")
    assert up.exit_code == 0 and up.stderr == "", up.stderr
    assert_exactly_once(env.messages(), range(LINES))


def test_a_batch_met_but_not_passed_is_not_counted_until_the_cursor_passes_it(env: Env, receiver: Receiver) -> None:
    """The request around the damaged batch fails: the cursor stays before it, so nothing is counted or
    reported yet (a retry meets it again); the run that gets past it counts and reports it, once."""
    log = env.logs / "app.log"
    log.write_text(numbered(LINES))
    env.write_config(config_text(receiver.url, f'[agent]\n{QUIET}[[logs]]\n{LOG}path = "{log}"\n'), sink=False)
    assert env.cli("tail-once").exit_code == 0
    bid, sn, n = _batches(env.state)[1]
    lost = _numbers(env.state, bid)
    _flip(env.state, bid)
    receiver.fail("500")
    first = env.cli("upload")
    assert first.exit_code == 69 and "cannot be decoded" not in first.stderr, first.stderr
    (sink,) = json.loads(env.cli("status", "--json").stdout)["sinks"]
    assert sink["events_dropped"] == 0 and sink["acked_sn"] == 0
    assert _notices_naming(env, bid, sn) == []

    second = env.cli("upload", "--force")
    assert second.exit_code == 65 and second.stderr.count("cannot be decoded") == 1, second.stderr
    assert sorted(int(m.split()[1]) for m in receiver.messages()) == sorted(set(range(LINES)) - lost)
    assert receiver.violations == []
    (sink,) = json.loads(env.cli("status", "--json").stdout)["sinks"]
    assert sink["events_dropped"] == n and sink["pending_events"] == 0
    assert len(_notices_naming(env, bid, sn)) == 1
