"""The foundation end to end: appends across runs, partial lines, the file sink, exit codes."""

from __future__ import annotations

import os
import stat

from tests.conftest import Env, append, assert_exactly_once, numbered


def test_appends_across_runs_arrive_once_in_order(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    total = 0
    for n in (10, 0, 250, 1, 3000):
        append(log, numbered(n, start=total))
        total += n
        env.ship()
    msgs = env.messages()
    assert_exactly_once(msgs, range(total))
    assert [int(m.split()[1]) for m in msgs] == list(range(total))


def test_partial_last_line_waits_then_arrives_whole(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f'[[logs]]\npath = "{log}"\nline_completion_wait = 3600\n')
    log.write_text("first\nsecond half")
    env.ship()
    assert env.messages() == ["first"]
    append(log, " done\nthird\n")
    env.ship()
    assert env.messages() == ["first", "second half done", "third"]


def test_partial_line_sent_after_completion_wait(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f'[[logs]]\npath = "{log}"\nline_completion_wait = 0\n')
    log.write_text("one\nno newline")
    env.ship()  # first sight of the fragment starts its wait
    env.ship()
    assert env.messages() == ["one", "no newline"]


def test_event_shape_in_file_sink(env: Env) -> None:
    log = env.logs / "web.log"
    env.write_config(f"""
        [agent]
        server_attributes = {{ serverHost = "web-1", region = "eu" }}
        [[logs]]
        path = "{log}"
        attributes = {{ parser = "accessLog" }}
    """)
    log.write_text("GET / 200\n")
    env.ship()
    (ev,) = env.events()
    assert ev["kind"] == "log" and ev["message"] == "GET / 200" and ev["source"] == str(log)
    assert isinstance(ev["ts"], int) and ev["ts"] > 1_700_000_000 * 10**9
    assert ev["attrs"] == {"serverHost": "web-1", "region": "eu", "parser": "accessLog"}


def test_state_file_is_private(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    assert env.cli("tail-once").exit_code == 0
    assert stat.S_IMODE(os.stat(env.state).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env.state.parent).st_mode) == 0o700


def test_version(env: Env) -> None:
    r = env.cli("version")
    assert r.exit_code == 0 and r.stdout.startswith("shipctl ")


def test_file_sink_cuts_off_a_line_torn_by_a_crash(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f'[[logs]]\npath = "{log}"\n')
    log.write_text(numbered(3))
    env.ship()
    with env.sink.open("a") as fh:
        fh.write('{"ts":1,"kind":"log","message":"line 0000')  # an upload killed mid-write
    append(log, numbered(2, start=3))
    env.ship()
    assert_exactly_once(env.messages(), range(5))  # every line parses: the fragment is gone
