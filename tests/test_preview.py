"""``shipctl preview``: prints what a log's rules would send (JSON lines on stdout, a summary on stderr)
and leaves the state file alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import Env, append

RULES = """
    [agent]
    server_attributes = {{ serverHost = "web-1" }}
    [[logs]]
    id = "app"
    path = "{logs}/*.log"
    attributes = {{ parser = "appLog" }}
    line_groupers = [{{ start = '^[^\\s]', continue_through = '^\\s+at' }}]
    sampling_rules = [
      {{ match_expression = "DEBUG", sampling_rate = 0 }},
      {{ match_expression = "SOMETIMES", sampling_rate = 1 }},
    ]
    redaction_rules = [{{ match_expression = "password=\\\\S+", replacement = "password=***" }}]
"""

CONTENT = """\
INFO start password=hunter2
DEBUG noisy
ERROR boom
    at a.b(C.java:1)
    at d.e(F.java:2)
SOMETIMES kept
INFO last, no newline yet"""

EXPECTED = [
    "INFO start password=***",
    "ERROR boom\n    at a.b(C.java:1)\n    at d.e(F.java:2)",
    "SOMETIMES kept",
    "INFO last, no newline yet",  # shown as it will be sent once its wait is over
]


def snapshot(directory: Path) -> dict[str, str]:
    return (
        {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()} if directory.exists() else {}
    )


@pytest.fixture
def app_log(env: Env) -> Path:
    env.write_config(RULES.format(logs=env.logs))
    log = env.logs / "app.log"
    log.write_text(CONTENT)
    return log


def test_preview_prints_the_events_and_creates_no_state(env: Env, app_log: Path) -> None:
    r = env.cli("preview", "--log", "app", str(app_log))
    assert r.exit_code == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["message"] for e in events] == EXPECTED
    assert all(e["attrs"] == {"serverHost": "web-1", "parser": "appLog"} for e in events)
    assert r.stderr == (
        f"preview: rules of [[logs]] entry 'app' (path {env.logs}/*.log; named by --log)\n"
        "preview: 7 lines -> 4 events, 1 line dropped by sampling, 1 redaction\n"
    )
    assert not env.state.parent.exists()


def test_preview_finds_the_log_from_the_path_alone(env: Env, app_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env.logs)
    r = env.cli("preview", "app.log")  # relative to the current directory; the config's glob is absolute
    assert r.exit_code == 0, r.stderr
    assert [json.loads(line)["message"] for line in r.stdout.splitlines()] == EXPECTED
    assert f"entry 'app' (path {env.logs}/*.log; the first entry whose path matches the file)" in r.stderr


def test_preview_leaves_an_existing_state_file_and_the_next_run_alone(env: Env, app_log: Path) -> None:
    env.ship()
    assert env.messages() == EXPECTED[:2]  # "SOMETIMES kept" may start a group; the partial line waits
    before = snapshot(env.state.parent)
    append(app_log, "\nINFO more password=x\nINFO final\n")
    for args in (("preview", str(app_log)), ("preview", "--log", "app", "--limit", "2", str(app_log))):
        r = env.cli(*args)
        assert r.exit_code == 0, r.stderr
    assert snapshot(env.state.parent) == before
    env.ship()
    assert env.messages() == [*EXPECTED, "INFO more password=***"]


def test_preview_limit_shows_the_first_events(env: Env, app_log: Path) -> None:
    r = env.cli("preview", "--limit", "2", str(app_log))
    assert [json.loads(line)["message"] for line in r.stdout.splitlines()] == EXPECTED[:2]


def test_preview_with_sampling_rates_shows_the_attribute(env: Env) -> None:
    env.write_config(f"""
        [[logs]]
        path = "{env.logs}/*.log"
        sampling_rules = [{{ match_expression = "x", sampling_rate = 0.999999 }}]
    """)
    (env.logs / "s.log").write_text("x 1\ny 2\n")
    r = env.cli("preview", str(env.logs / "s.log"))
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[1] == {"message": "y 2", "attrs": events[1]["attrs"]} and "sample_rate" not in events[1]["attrs"]
    assert events[0]["message"] == "x 1" and events[0]["attrs"]["sample_rate"] == 0.999999


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("preview", "{tmp}/elsewhere.log"), "{tmp}/elsewhere.log: no [[logs]] entry in {config} matches this file"),
        (("preview", "--log", "app", "{logs}/gone.log"), "{logs}/gone.log: cannot open: No such file or directory"),
        (("preview", "{logs}/gone.log"), "{logs}/gone.log: cannot open: No such file or directory"),
        (("preview", "--log", "nope", "{logs}/app.log"), "{config}: no [[logs]] entry with id 'nope' (known: app)"),
        (("preview", "--log", "app", "{logs}"), "{logs}: cannot read: Is a directory"),
    ],
)
def test_preview_errors_name_the_file(env: Env, app_log: Path, args: tuple[str, ...], message: str) -> None:
    fmt = {"tmp": env.tmp, "logs": env.logs, "config": env.config}
    (env.tmp / "elsewhere.log").write_text("x\n")
    r = env.cli(*(a.format(**fmt) for a in args))
    assert r.exit_code == 64 and r.stdout == ""
    assert r.stderr.startswith("shipctl: " + message.format(**fmt))
    assert not env.state.parent.exists()


def test_preview_star_stays_within_a_directory_as_in_tail_once(env: Env) -> None:
    """``logs/*.log`` does not claim ``logs/app/service.log`` (fnmatch's ``*`` would cross the ``/``): the
    preview shows the rules of the entry tail-once reads that file with."""
    env.write_config(f"""
        [[logs]]
        id = "top"
        path = "{env.logs}/*.log"
        redaction_rules = [{{ match_expression = "secret", replacement = "TOP" }}]
        [[logs]]
        id = "nested"
        path = "{env.logs}/app/**/*.log"
        redaction_rules = [{{ match_expression = "secret", replacement = "NESTED" }}]
    """)
    (env.logs / "app").mkdir()
    nested = env.logs / "app" / "service.log"
    nested.write_text("a secret\n")
    (env.logs / "top.log").write_text("top secret\n")
    r = env.cli("preview", str(nested))
    assert r.exit_code == 0, r.stderr
    assert [json.loads(line)["message"] for line in r.stdout.splitlines()] == ["a NESTED"]
    assert f"entry 'nested' (path {env.logs}/app/**/*.log; the first entry whose path matches" in r.stderr
    env.ship()  # tail-once agrees
    assert sorted(env.messages()) == ["a NESTED", "top TOP"]
    r = env.cli("preview", str(env.logs / "top.log"))
    assert r.stdout.splitlines() and json.loads(r.stdout.splitlines()[0])["message"] == "top TOP"


def test_preview_of_an_excluded_or_hidden_file_matches_no_entry(env: Env) -> None:
    env.write_config(f"""
        [[logs]]
        path = "{env.logs}/**/*.log"
        exclude = ["*/debug/*"]
    """)
    for rel in ("debug/x.log", ".hidden/y.log"):
        f = env.logs / rel
        f.parent.mkdir()
        f.write_text("x\n")
        r = env.cli("preview", str(f))
        assert r.exit_code == 64 and r.stdout == ""
        assert "no [[logs]] entry" in r.stderr and "--log ID" in r.stderr
