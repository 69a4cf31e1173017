"""The journal with per-sink cursors: fan-out, a sink down and back, routing, the 0.1 state file upgrade."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from tests.conftest import Env, append, assert_exactly_once, numbered

DATA = Path(__file__).parent / "data"
QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _lines(path: Path, kind: str = "log") -> list[str]:
    if not path.exists():
        return []
    return [json.loads(x)["message"] for x in path.read_text().splitlines() if json.loads(x)["kind"] == kind]


def _queued(env: Env) -> int:
    return sqlite3.connect(env.state).execute("SELECT COUNT(*) FROM queue").fetchone()[0]


def test_fan_out_to_three_sinks_one_down_for_several_runs_then_back(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text(numbered(1000))
    a, b, c = env.tmp / "a.jsonl", env.tmp / "b.jsonl", env.tmp / "blocked" / "c.jsonl"
    (env.tmp / "blocked").write_text("a file where sink c wants its directory: c is down")
    env.write_config(
        f'[agent]\nbatch_bytes = 8192\n{QUIET}[[logs]]\nid = "app"\npath = "{log}"\n'
        f'[[sinks]]\nid = "a"\ntype = "file"\npath = "{a}"\n'
        f'[[sinks]]\nid = "b"\ntype = "file"\npath = "{b}"\n'
        f'[[sinks]]\nid = "c"\ntype = "file"\npath = "{c}"\n',
        sink=False,
    )
    written = 1000
    for run in range(3):
        r = env.proc("run")
        if run == 0:  # c fails; later runs find it backing off, which a timer tick keeps quiet
            assert r.returncode == 69 and "upload: c: failed" in r.stderr, r.stderr
        else:
            assert r.returncode == 0 and r.stderr == "", r.stderr
        # ... and never delayed a and b: each has everything so far, once.
        assert_exactly_once(_lines(a), range(written))
        assert_exactly_once(_lines(b), range(written))
        append(log, numbered(500, start=written))
        written += 500
    assert env.proc("tail-once").returncode == 0
    assert _queued(env) > 0  # c holds the journal back
    status = json.loads(env.proc("status", "--json").stdout)
    sinks = {s["sink"]: s for s in status["sinks"]}
    assert sinks["c"]["pending_events"] == written and sinks["c"]["consecutive_failures"] >= 1
    assert sinks["a"]["pending_events"] == 500 and sinks["a"]["consecutive_failures"] == 0
    # c comes back: it catches up from its own cursor, exactly once; the others get only what is new.
    (env.tmp / "blocked").unlink()
    up = env.proc("upload", "--force")
    assert up.returncode == 0, up.stderr
    for path in (a, b, c):
        assert_exactly_once(_lines(path), range(written))
    assert _queued(env) == 0  # every sink is past every batch: the journal is empty


def test_upload_one_sink_and_a_second_upload_of_the_same_sink_exits_75(env: Env) -> None:
    from shipctl.state import lock

    log = env.logs / "app.log"
    log.write_text(numbered(200))
    a, b = env.tmp / "a.jsonl", env.tmp / "b.jsonl"
    env.write_config(
        f'[[logs]]\nid = "app"\npath = "{log}"\n'
        f'[[sinks]]\nid = "a"\ntype = "file"\npath = "{a}"\n[[sinks]]\nid = "b"\ntype = "file"\npath = "{b}"\n',
        sink=False,
    )
    assert env.proc("tail-once").returncode == 0
    r = env.proc("upload", "--sink", "a")
    assert r.returncode == 0, r.stderr
    assert_exactly_once(_lines(a), range(200))
    assert not b.exists()
    assert _queued(env) > 0  # b has not taken it yet
    with lock(env.state, "upload.b"):
        busy = env.proc("upload", "--sink", "b")
        both = env.proc("upload")  # a has nothing new, b is busy elsewhere: a goes on
    assert busy.returncode == 75 and "another 'shipctl upload' is delivering to sink 'b'" in busy.stderr
    assert both.returncode == 0, both.stderr
    assert env.proc("upload").returncode == 0
    assert_exactly_once(_lines(b), range(200))
    assert _queued(env) == 0
    bad = env.proc("upload", "--sink", "nope")
    assert bad.returncode == 64 and "no sink with id 'nope'" in bad.stderr


def test_routing_by_kind_and_source(env: Env) -> None:
    (env.logs / "web.log").write_text(numbered(50))
    (env.logs / "db.log").write_text(numbered(30, start=1000))
    logs_out, metrics_out, db_out = env.tmp / "logs.jsonl", env.tmp / "metrics.jsonl", env.tmp / "db.jsonl"
    env.write_config(
        f"[agent]\n{QUIET}"
        f'[[logs]]\nid = "web"\npath = "{env.logs}/web.log"\n[[logs]]\nid = "db"\npath = "{env.logs}/db.log"\n'
        '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n'
        f'[[sinks]]\nid = "logs"\ntype = "file"\npath = "{logs_out}"\nkinds = ["log"]\n'
        f'[[sinks]]\nid = "metrics"\ntype = "file"\npath = "{metrics_out}"\nkinds = ["metric"]\n'
        f'[[sinks]]\nid = "dbonly"\ntype = "file"\npath = "{db_out}"\nsources = ["d*"]\n',
        sink=False,
    )
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    assert sorted(_lines(logs_out)) == sorted(numbered(50).splitlines() + numbered(30, start=1000).splitlines())
    assert _lines(metrics_out) == [] and len(_lines(metrics_out, "metric")) == 1
    assert sorted(_lines(db_out)) == numbered(30, start=1000).splitlines() and not _lines(db_out, "metric")
    assert _queued(env) == 0  # batches a sink does not take just move its cursor


def test_check_config_names_events_that_reach_no_sink(env: Env) -> None:
    env.write_config(
        f"[agent]\n{QUIET}"
        f'[[logs]]\nid = "web"\npath = "{env.logs}/web.log"\n'
        '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n'
        f'[[sinks]]\ntype = "file"\npath = "{env.sink}"\nkinds = ["log"]\n',
        sink=False,
    )
    r = env.proc("check-config")
    assert r.returncode == 78
    assert "metric events of 'answer' reach no sink" in r.stderr
    env.write_config(f'[[logs]]\nid = "web"\npath = "{env.logs}/web.log"\n', sink=False)
    r = env.proc("run")
    assert r.returncode == 78 and "no [[sinks]] configured" in r.stderr
    env.write_config(
        f'[[sinks]]\ntype = "influxdb"\nkinds = ["log"]\n[[logs]]\npath = "{env.logs}/x.log"\n', sink=False
    )
    r = env.proc("check-config")
    assert r.returncode == 78 and "sinks[0].kinds[0]: a influxdb sink carries only 'metric', not 'log'" in r.stderr


def test_state_file_of_release_0_1_upgrades_in_place(env: Env) -> None:
    """tests/data/state-0.1.0.db was written by release 0.1: 300 lines delivered to sink "file", 300 more
    queued, and the sink backing off after a failure."""
    env.state.parent.mkdir(parents=True)
    shutil.copy(DATA / "state-0.1.0.db", env.state)
    env.write_config(f'[agent]\n{QUIET}[[logs]]\nid = "app"\npath = "{env.logs}/app.log"\n')
    status = json.loads(env.proc("status", "--json").stdout)  # opening it migrates it
    (sink,) = status["sinks"]
    assert sink["sink"] == "file" and sink["acked_sn"] == 300 and sink["consecutive_failures"] == 1
    assert sink["pending_events"] == 300 and sink["next_attempt"] and "File exists" in sink["last_message"]
    assert not env.sink.exists()
    up = env.proc("upload", "--force")
    assert up.returncode == 0, up.stderr
    assert_exactly_once(env.messages(), range(300, 600))  # nothing re-sent, nothing lost
    conn = sqlite3.connect(env.state)
    assert conn.execute("SELECT acked_sn FROM upload_state WHERE sink = 'file'").fetchone()[0] == 600
    assert conn.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'upload.%.acked_sn'").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 0


def test_a_removed_sink_stops_holding_the_journal_and_an_added_one_starts_at_the_oldest_batch(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text(numbered(100))
    a, c = env.tmp / "a.jsonl", env.tmp / "blocked" / "c.jsonl"
    (env.tmp / "blocked").write_text("c is down")
    sink_a = f'[[sinks]]\nid = "a"\ntype = "file"\npath = "{a}"\n'
    logs = f'[agent]\n{QUIET}[[logs]]\nid = "app"\npath = "{log}"\n'
    env.write_config(logs + sink_a + f'[[sinks]]\nid = "c"\ntype = "file"\npath = "{c}"\n', sink=False)
    assert env.proc("run").returncode == 69
    assert _queued(env) > 0  # held for c
    env.write_config(logs + sink_a, sink=False)  # c removed
    assert env.proc("run").returncode == 0
    assert _queued(env) == 0
    # A sink added now starts at the oldest batch still queued: what came after it was added, not the past.
    append(log, numbered(50, start=100))
    assert env.proc("tail-once").returncode == 0
    late = env.tmp / "late.jsonl"
    env.write_config(logs + sink_a + f'[[sinks]]\nid = "late"\ntype = "file"\npath = "{late}"\n', sink=False)
    assert env.proc("upload").returncode == 0
    assert_exactly_once(_lines(a), range(150))
    assert_exactly_once(_lines(late), range(100, 150))


def test_events_no_sink_takes_are_warned_of_and_reported_not_lost_silently(env: Env) -> None:
    script = Path(__file__).parent / "scripts" / "events_only.sh"
    env.write_config(
        f'[agent]\n{QUIET}[[monitors]]\ntype = "script"\nid = "ev"\ncommand = "{script}"\n'
        f'[[sinks]]\ntype = "influxdb"\nurl = "http://127.0.0.1:9"\n',
        sink=False,
    )
    r = env.proc("check-config")
    assert r.returncode == 0 and "event events of 'ev' reach no sink" in r.stderr, r.stderr
    env.proc("run")
    status = json.loads(env.proc("status", "--json").stdout)
    assert any("6 event events of 'ev' reached no sink" in str(n) for n in status["notices"]), status["notices"]
