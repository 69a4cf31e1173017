"""Monitors end to end: shell and url against real processes and a real loopback HTTP server, concurrency and
deadlines, metric history (Difference, rate, resets, gaps, pruning), scheduling at simulated times, status."""

from __future__ import annotations

import http.server
import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipctl import plugins
from shipctl.commands.common import session
from shipctl.monitors import runner as rm
from shipctl.monitors.base import COUNTER, MonitorOutput, Sample
from shipctl.schema import field
from tests.conftest import Env

NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def metric_events(env: Env, source: str | None = None) -> list[dict[str, Any]]:
    return [e for e in env.events() if e["kind"] == "metric" and (source is None or e["source"] == source)]


def printed(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_at(env: Env, now: float, *targets: str, due_only: bool = True) -> rm.RunMonitorResult:
    """One scheduled run at a simulated time, through the same function ``shipctl run`` uses."""
    with session(str(env.config), "run-monitor") as ctx:
        return rm.run_monitors(ctx, list(targets), due_only=due_only, now=now)


# --- a monitor registered the way a plugin package would register one ---------------------------------------


@dataclass(frozen=True)
class FileCounterOptions:
    path: str
    calc: str = ""


class FileCounter:
    """A counter whose value the test writes into a file."""

    module = "file_counter"

    def __init__(self, options: FileCounterOptions) -> None:
        self.options = options

    def sample(self) -> MonitorOutput:
        value = int(Path(self.options.path).read_text())
        return MonitorOutput(samples=[Sample("test.counter", value, COUNTER, {"src": "file"}, calc=self.options.calc)])


HANG = threading.Event()


@dataclass(frozen=True)
class HangOptions:
    timeout: float = field(0.2)


class Hang:
    """A monitor whose own timeout does not work: it blocks until the test releases it."""

    module = "hang"

    def __init__(self, options: HangOptions) -> None:
        self.options = options

    def sample(self) -> MonitorOutput:
        HANG.wait(60)
        return MonitorOutput()


@pytest.fixture(autouse=True)
def test_monitor_types() -> Iterator[None]:
    reg = plugins.registry()
    reg.monitor("file_counter", f"{__name__}:FileCounterOptions", f"{__name__}:FileCounter")
    reg.monitor("hang", f"{__name__}:HangOptions", f"{__name__}:Hang")
    yield
    HANG.set()
    for name in ("file_counter", "hang"):  # the registry is process-wide: later tests list the known types
        reg.monitors.pop(name, None)


# --- shell --------------------------------------------------------------------------------------------------


def test_shell_numeric_output_becomes_a_metric_event(env: Env) -> None:
    env.write_config(NO_IMPLICIT + '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n')
    r = env.cli("run-monitor", "answer")
    assert r.exit_code == 0, r.stderr
    env.ship()
    (ev,) = metric_events(env)
    assert ev["source"] == "answer"
    assert re.fullmatch(
        r'\[shell_monitor\(answer\)\] output 42 command="echo 42" duration=[0-9.]+ exit_code=0 length=2', ev["message"]
    )
    attrs = ev["attrs"]
    assert (attrs["monitor"], attrs["metric"], attrs["value"], attrs["metric_type"]) == (
        "shell_monitor",
        "output",
        42,
        "gauge",
    )
    assert attrs["command"] == "echo 42" and attrs["exit_code"] == 0 and attrs["length"] == 2


def test_shell_extract_all_lines_and_max_characters(env: Env) -> None:
    env.write_config(NO_IMPLICIT)
    r = env.cli(
        "run-monitor",
        "shell",
        "--command",
        "printf 'version: 6.18.44-generic\\nsecond line\\n'",
        "--opt",
        'extract="version: ([^-]+)"',
        "--print",
    )
    assert r.exit_code == 0, r.stderr
    (ev,) = printed(r.stdout)
    assert ev["attrs"]["value"] == "6.18.44"
    r = env.cli(
        "run-monitor",
        "shell",
        "--command",
        "printf 'abcdef\\nghij\\n'",
        "--opt",
        "log_all_lines=true",
        "--opt",
        "max_characters=8",
        "--print",
    )
    (ev,) = printed(r.stdout)
    assert ev["attrs"]["value"] == "abcdef\ng..." and ev["attrs"]["length"] == 11


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped by whoever inherited it


def test_shell_timeout_kills_the_whole_process_group(env: Env) -> None:
    pidfile = env.tmp / "grandchild.pid"
    env.write_config(
        NO_IMPLICIT
        + f"""
[[monitors]]
type = "shell"
id = "slow"
shell = true
timeout = 1
command = "sleep 60 & echo $! > {pidfile}; wait"
"""
    )
    r = env.cli("run-monitor", "slow")
    assert r.exit_code == 65
    assert "monitor slow: timed out after 1 s (process group killed)" in r.stderr
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), f"grandchild {grandchild} outlived the timeout"
    env.ship()
    (ev,) = metric_events(env, "slow")
    assert ev["attrs"]["exit_code"] == -1


def test_monitors_of_one_run_execute_concurrently(env: Env) -> None:
    # Each waits for the other's mark: run one after the other, the first would give up and say "alone".
    def waiter(me: str, other: str) -> str:
        return (
            f'[[monitors]]\ntype = "shell"\nid = "{me}"\nshell = true\ntimeout = 10\n'
            f'command = "touch {env.tmp}/{me}; for i in $(seq 80); do [ -e {env.tmp}/{other} ] && echo met && exit 0;'
            f' sleep 0.05; done; echo alone"\n'
        )

    env.write_config(NO_IMPLICIT + waiter("a", "b") + waiter("b", "a"))
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr
    env.ship()
    assert sorted((e["source"], e["attrs"]["value"]) for e in metric_events(env)) == [("a", "met"), ("b", "met")]


def test_a_hanging_or_crashing_monitor_does_not_stop_the_others(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rm, "GRACE", 0.3)
    HANG.clear()
    env.write_config(
        NO_IMPLICIT
        + '[[monitors]]\ntype = "hang"\nid = "stuck"\n[[monitors]]\ntype = "shell"\nid = "ok"\ncommand = "echo fine"\n'
        + f'[[monitors]]\ntype = "file_counter"\nid = "broken"\npath = "{env.tmp}/missing"\n'
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert "monitor stuck: did not finish within 0.5 s; abandoned so the run could go on" in r.stderr
    assert "monitor broken: crashed: FileNotFoundError" in r.stderr
    assert not HANG.is_set()  # the run finished while the monitor was still stuck
    assert any(t.name == "monitor stuck" and t.daemon for t in threading.enumerate())
    HANG.set()
    env.ship()
    assert [e["attrs"]["value"] for e in metric_events(env)] == ["fine"]
    st = json.loads(env.cli("status", "--json").stdout)
    stuck = next(m for m in st["monitors"] if m["id"] == "stuck")
    assert stuck["errors"] == 1 and "abandoned" in stuck["last_error"]


# --- url ----------------------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ok":
            self._send(200, b"all good\nsecond line\n")
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, b"late\n")
        elif self.path == "/moved":
            self._send(302, b"see /ok\n", {"Location": "/ok"})
        else:
            self._send(404, b"no such page\n")

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(201, f"{self.command} {self.headers.get('X-Token')} {data.decode()}\n".encode())


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connecting is refused
    return port


def test_url_monitor_200_404_timeout_refused(env: Env, server: str) -> None:
    port = _closed_port()
    env.write_config(
        NO_IMPLICIT
        + f"""
[[monitors]]
type = "url"
id = "ok"
url = "{server}/ok"
[[monitors]]
type = "url"
id = "missing"
url = "{server}/missing"
[[monitors]]
type = "url"
id = "slow"
url = "{server}/slow"
timeout = 0.5
[[monitors]]
type = "url"
id = "down"
url = "http://127.0.0.1:{port}/"
timeout = 2
"""
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr  # an unreachable URL is data, not a failed run
    env.ship()
    by = {e["source"]: e for e in metric_events(env)}
    ok = by["ok"]
    assert ok["attrs"]["value"] == "all good" and ok["attrs"]["status"] == 200
    assert ok["attrs"]["length"] == len("all good\nsecond line\n")
    assert ok["message"].startswith('[url_monitor(ok)] response "all good" duration=')
    assert ok["message"].endswith(f' length=21 request_method="GET" status=200 url="{server}/ok"')
    assert (by["missing"]["attrs"]["value"], by["missing"]["attrs"]["status"]) == ("no such page", 404)
    for mid, kind in (("slow", "timeout"), ("down", "refused")):
        a = by[mid]["attrs"]
        assert (a["value"], a["status"], a["length"], a["error"]) == ("failed", 0, 0, kind), a
        assert by[mid]["message"].startswith(f'[url_monitor({mid})] response "failed" ')


def test_url_monitor_ad_hoc_post_with_headers_and_no_redirects(env: Env, server: str) -> None:
    env.write_config(NO_IMPLICIT)
    r = env.cli(
        "run-monitor",
        "url",
        "--opt",
        f'url="{server}/echo"',
        "--opt",
        'request_method="POST"',
        "--opt",
        'request_headers=[{header = "X-Token", value = "t1"}]',
        "--opt",
        'request_data="hello"',
        "--print",
    )
    assert r.exit_code == 0, r.stderr
    (ev,) = printed(r.stdout)
    assert ev["attrs"]["value"] == "POST t1 hello" and ev["attrs"]["status"] == 201
    r = env.cli("run-monitor", "url", "--opt", f"url={server}/moved", "--print")
    (ev,) = printed(r.stdout)
    assert (ev["attrs"]["status"], ev["attrs"]["value"]) == (302, "see /ok")


def test_url_monitor_rejects_a_bad_url_naming_the_key(env: Env) -> None:
    env.write_config(NO_IMPLICIT + '[[monitors]]\ntype = "url"\nid = "bad"\nurl = "ftp://example.org/"\n')
    r = env.cli("run-monitor", "bad")
    assert r.exit_code == 78
    assert f"{env.config}: monitors[0].url: expected an http:// or https:// URL with a host" in r.stderr


# --- metric history -----------------------------------------------------------------------------------------


def _counter_config(env: Env, interval: int = 60, calc: str = "") -> Path:
    value = env.tmp / "counter"
    extra = f'calc = "{calc}"\n' if calc else ""
    env.write_config(
        NO_IMPLICIT
        + f'[[monitors]]\ntype = "file_counter"\nid = "c"\nsample_interval = {interval}\npath = "{value}"\n{extra}'
    )
    return value


def test_difference_and_rate_across_runs_with_a_reset_and_a_gap(env: Env) -> None:
    value = _counter_config(env)
    t = 1_800_000_000.0
    for now, v in ((t, 100), (t + 60, 160), (t + 120, 40), (t + 180, 100), (t + 180 + 400, 130)):
        value.write_text(str(v))
        run_at(env, now)
    env.ship()
    got = [(e["attrs"]["value"], e["attrs"].get("difference"), e["attrs"].get("rate")) for e in metric_events(env)]
    assert got == [
        (100, None, None),  # first sample: nothing to compare with
        (160, 60, 1.0),  # 60 more in 60 s
        (40, None, None),  # went backwards: a reset, nothing for this interval
        (100, 60, 1.0),  # from the new reference
        (130, 30, None),  # 400 s > 3 x 60 s since the last sample: a difference but no rate
    ]
    assert all(e["attrs"]["metric_type"] == "counter" for e in metric_events(env))
    assert all("difference" not in e["message"] for e in metric_events(env))  # the Scalyr line stays as it was


def test_difference_calc_emits_the_difference_and_nothing_first(env: Env) -> None:
    value = _counter_config(env, calc="difference")
    t = 1_800_000_000.0
    for now, v in ((t, 10), (t + 60, 25), (t + 120, 5), (t + 180, 7)):
        value.write_text(str(v))
        run_at(env, now)
    env.ship()
    assert [e["attrs"]["value"] for e in metric_events(env)] == [15, 2]


def test_print_uses_the_history_without_changing_it(env: Env) -> None:
    value = _counter_config(env)
    value.write_text("100")
    run_at(env, 1_800_000_000.0)
    value.write_text("130")
    for _ in range(2):  # twice: the first --print must not have become the reference
        (ev,) = printed(env.cli("run-monitor", "c", "--print").stdout)
        assert ev["attrs"]["value"] == 130 and ev["attrs"]["difference"] == 30


def test_history_stays_bounded_and_stale_series_go(env: Env) -> None:
    from shipctl.state.metrics import RING, STALE_SECONDS

    value = _counter_config(env, interval=1)
    t = 1_800_000_000.0
    for i in range(RING + 15):
        value.write_text(str(i))
        run_at(env, t + i)
    st = json.loads(env.cli("status", "--json", "--metric", "test.counter").stdout)
    (series,) = st["metric_history"]
    assert len(series["points"]) == RING
    assert [p[1] for p in series["points"]] == list(range(15, RING + 15))  # the newest RING, in order
    # The monitor is removed from the config; once its series is stale, a run by another monitor drops it.
    env.write_config(NO_IMPLICIT + '[[monitors]]\ntype = "shell"\nid = "other"\ncommand = "echo 1"\n')
    run_at(env, t + RING + STALE_SECONDS - 60)
    assert json.loads(env.cli("status", "--json", "--metric", "test.counter").stdout)["metric_history"]
    run_at(env, t + RING + 15 + STALE_SECONDS + 60)
    assert not json.loads(env.cli("status", "--json", "--metric", "test.counter").stdout)["metric_history"]


def test_status_shows_a_sparkline_of_a_metric(env: Env) -> None:
    value = _counter_config(env)
    t = 1_800_000_000.0
    for i, v in enumerate((0, 60, 180, 360, 600)):
        value.write_text(str(v))
        run_at(env, t + 60 * i)
    r = env.cli("status", "--metric", "test.counter")
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "c src=file" in x)
    assert "▁▃▆█" in line and "last rate/s 4" in line and "5 samples" in line
    assert r.stdout.splitlines()[0] == "History of test.counter:"  # only the sparkline, not the whole status
    assert "Logs" not in r.stdout and "Monitors" not in r.stdout
    r = env.cli("status", "--metric", "no.such.metric")
    assert r.exit_code == 64 and r.stdout == ""
    assert r.stderr == "shipctl: no history for metric 'no.such.metric' (metrics with history: test.counter)\n"
    r = env.cli("status", "--json", "--metric", "no.such.metric")  # machines get the data, and the same code
    assert r.exit_code == 64 and json.loads(r.stdout)["known_metrics"] == ["test.counter"]


# --- scheduling ---------------------------------------------------------------------------------------------


def test_each_monitor_runs_exactly_when_due(env: Env) -> None:
    env.write_config(
        NO_IMPLICIT
        + '[[monitors]]\ntype = "shell"\nid = "every_min"\nsample_interval = 60\ncommand = "echo a"\n'
        + '[[monitors]]\ntype = "shell"\nid = "every_5min"\nsample_interval = 300\ncommand = "echo b"\n'
    )
    t = 1_800_000_000.0
    # A timer every minute with a little jitter, plus stray runs in between (a manual `shipctl run`).
    ticks = [0, 30, 61, 119.5, 180, 240, 299, 330, 360, 420, 480, 540, 600.5, 601, 659]
    ran = {tick: sorted(r.id for r in run_at(env, t + tick).results) for tick in ticks}
    expected_min = {0, 61, 119.5, 180, 240, 299, 360, 420, 480, 540, 600.5, 659}
    expected_5min = {0, 299, 600.5}
    assert {k for k, v in ran.items() if "every_min" in v} == expected_min
    assert {k for k, v in ran.items() if "every_5min" in v} == expected_5min
    st = {m["id"]: m for m in json.loads(env.cli("status", "--json").stdout)["monitors"]}
    assert st["every_min"]["runs"] == len(expected_min) and st["every_5min"]["runs"] == len(expected_5min)
    assert st["every_5min"]["last_run"] == t + 600.5 and st["every_5min"]["next_due"] == t + 900.5
    env.ship()
    assert len(metric_events(env, "every_min")) == len(expected_min)
    assert len(metric_events(env, "every_5min")) == len(expected_5min)


def test_run_monitor_due_runs_only_what_is_due(env: Env) -> None:
    env.write_config(
        NO_IMPLICIT + '[[monitors]]\ntype = "shell"\nid = "m"\nsample_interval = 300\ncommand = "echo x"\n'
    )
    assert env.cli("run-monitor", "--due").exit_code == 0
    assert env.cli("run-monitor", "--due").exit_code == 0
    assert env.cli("run-monitor", "m").exit_code == 0  # named: runs whatever the schedule
    env.ship()
    assert len(metric_events(env, "m")) == 2


# --- state file ---------------------------------------------------------------------------------------------


def test_upgrade_from_the_first_schema_keeps_monitor_rows(env: Env) -> None:
    from shipctl.state import State
    from shipctl.state.migrations import MIGRATIONS

    env.state.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(env.state)
    MIGRATIONS[0](conn)
    conn.execute("INSERT INTO monitors (id, type, last_run, runs) VALUES ('old', 'shell', 1.0, 7)")
    conn.execute("INSERT INTO meta (key, value) VALUES ('session', 'abc'), ('next_sn', '1')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with State.open(env.state) as state:
        assert state.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert state.conn.execute("SELECT runs FROM monitors WHERE id = 'old'").fetchone() == (7,)
        assert state.conn.execute("SELECT COUNT(*) FROM metric_series").fetchone() == (0,)
