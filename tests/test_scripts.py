"""Generic script monitors end to end: real scripts (tests/scripts/, examples/scripts/) run by the real CLI,
their output read back from the file sink, the state file and ``status``."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shipctl.commands.common import session
from shipctl.monitors import runner as rm
from tests.conftest import Env

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "scripts"
EXAMPLES = ROOT / "examples" / "scripts"
NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
PY = sys.executable


def monitor(mid: str, command: str, **opts: Any) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items())
    return f'[[monitors]]\ntype = "script"\nid = "{mid}"\ncommand = {json.dumps(command)}\n{extra}'


def configure(env: Env, *monitors: str) -> None:
    env.write_config(NO_IMPLICIT + "".join(monitors))


def shipped(env: Env, kind: str = "metric", source: str | None = None) -> list[dict[str, Any]]:
    env.ship()
    return [e for e in env.events() if e["kind"] == kind and (source is None or e["source"] == source)]


def run_at(env: Env, now: float, *targets: str) -> rm.RunMonitorResult:
    """One scheduled run at a simulated time, through the function ``shipctl run`` uses."""
    with session(str(env.config), "run-monitor") as ctx:
        return rm.run_monitors(ctx, list(targets), due_only=True, now=now)


def script_row(env: Env, mid: str) -> dict[str, Any]:
    st = json.loads(env.cli("status", "--json").stdout)
    return next(s for s in st["scripts"] if s["monitor"] == mid)


def copy_script(env: Env, name: str, mode: int = 0o755, *, python: bool = False) -> Path:
    dst = env.tmp / name
    text = (SCRIPTS / name).read_text()
    if python:  # the test's interpreter, not whatever python3 is on PATH
        text = f"#!{PY}\n" + text.split("\n", 1)[1]
    dst.write_text(text)
    dst.chmod(mode)
    return dst


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# --- the protocol as documented -----------------------------------------------------------------------------


def test_the_documented_example_becomes_metric_and_custom_events(env: Env) -> None:
    configure(env, monitor("spec", f"{SCRIPTS}/spec_example.sh {env.tmp}/none"))
    r = env.cli("run-monitor", "spec")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""  # GUAGE and DOUBLE are not worth a warning
    (m,) = shipped(env, "metric")  # metric 2 is a Difference: nothing on the first run
    assert m["message"] == (
        '[script_monitor(spec)] Incoming traffic on interface 8.5 groups="Networking/Traffic" interface="eth0"'
        ' unit="b/s"'
    )
    assert {k: v for k, v in m["attrs"].items() if k != "serverHost"} == {
        "monitor": "script_monitor",
        "metric": "Incoming traffic on interface",
        "value": 8.5,
        "metric_type": "gauge",
        "interface": "eth0",
        "unit": "b/s",
        "groups": "Networking/Traffic",
        "description": "Incoming traffic in bytes on network interface",  # kept, not dropped (issue 11)
        "tags": "NETWORK",
    }
    (ev,) = [e for e in env.events() if e["kind"] == "event"]
    a = ev["attrs"]
    assert ev["message"] == "The event triggered" and ev["source"] == "spec"
    assert (a["event"], a["message"], a["scope"], a["Exit code"]) == (
        "My custom event",
        "The event triggered",
        "server",
        137,
    )
    assert a["end"] - a["start"] == 300 and abs(a["end"] - time.time()) < 600
    assert ev["ts"] == a["start"] * 10**9


def test_difference_across_runs_uses_the_metric_history(env: Env) -> None:
    value = env.tmp / "value"
    configure(env, monitor("spec", f"{SCRIPTS}/spec_example.sh {value}"))
    t = 1_800_000_000.0
    for i, v in enumerate(("100", "130.5", "120")):
        value.write_text(v)
        run_at(env, t + 60 * i)
    got = [
        (e["attrs"]["value"], e["attrs"]["dimension2"], e["attrs"]["dimension3"])
        for e in shipped(env)
        if e["attrs"]["metric"] == "Second metric"
    ]
    # Metric 2 is DOUBLE with calctype Difference: the change since the previous run, which may be negative.
    assert got == [(30.5, "dimension2_value1", "dimension3_value1"), (-10.5, "dimension2_value1", "dimension3_value1")]


def test_counter_difference_with_two_dimensions_skips_a_reset(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    net_dev = env.tmp / "net_dev"
    monkeypatch.setenv("NET_DEV", str(net_dev))  # inherited by the script
    header = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|...\n"

    def counters(rx: int, tx: int) -> None:
        net_dev.write_text(header + f"  eth0: {rx} 10 0 0 0 0 0 0 {tx} 20 1 0 0 0 0 0\n")

    configure(env, monitor("traffic", f"{EXAMPLES}/net_traffic.sh"))
    t = 1_800_000_000.0
    for i, (rx, tx) in enumerate(((1000, 500), (1600, 800), (100, 900), (400, 950))):
        counters(rx, tx)
        run_at(env, t + 60 * i)
    got = [
        (e["attrs"]["direction"], e["attrs"]["value"])
        for e in shipped(env)
        if e["attrs"]["metric"] == "Network traffic" and e["attrs"]["interface"] == "eth0"
    ]
    # in: +600, then a reset (1600 -> 100) says nothing, then +300 from the new reference; out: +300 +100 +50
    assert got == [("in", 600), ("out", 300), ("out", 100), ("in", 300), ("out", 50)]
    assert all(e["attrs"]["metric_type"] == "counter" for e in env.events() if e["kind"] == "metric")


def test_the_period_from_c_schedules_the_script_and_config_overrides_it(env: Env) -> None:
    slow = env.tmp / "every2min.sh"
    slow.write_text(
        '#!/bin/bash\n[ "$1" = -c ] && echo \'{"period": 120, "metrics": [{"id": 1, "name": "x"}]}\' && exit\n'
        "echo M1 1\n"
    )
    slow.chmod(0o755)
    configure(env, monitor("own", str(slow)), monitor("forced", str(slow), period=60))
    t = 1_800_000_000.0
    ran = {tick: sorted(r.id for r in run_at(env, t + tick).results) for tick in (0, 60, 120, 180, 240)}
    assert ran == {
        0: ["forced", "own"],
        60: ["forced"],
        120: ["forced", "own"],
        180: ["forced"],
        240: ["forced", "own"],
    }
    st = {m["id"]: m for m in json.loads(env.cli("status", "--json").stdout)["monitors"]}
    assert (st["own"]["interval"], st["own"]["next_due"]) == (120, t + 360)
    assert (st["forced"]["interval"], st["forced"]["next_due"]) == (60, t + 300)


# --- what real scripts print --------------------------------------------------------------------------------


def test_real_world_quirks_in_config_and_data_lines(env: Env) -> None:
    # Not executable, pretty -c JSON, CRLF, lines shuffled, b'' values, nan, undeclared ids: see the script.
    script = copy_script(env, "quirky.py", 0o644, python=True)
    configure(env, monitor("quirky", str(script)))
    r = env.cli("run-monitor", "quirky")
    assert r.exit_code == 0, r.stderr  # bad lines are warnings: the good lines still count
    got = sorted(
        (e["attrs"]["metric"], e["attrs"]["value"], e["attrs"]["metric_type"], e["attrs"].get("service"))
        for e in shipped(env)
    )
    assert got == [
        ("Empty dims", 7, "gauge", None),
        ("Lines", 42, "count", None),  # COUNT, and b'42' from a naive Python 3 port
        ("Misspelled", 1, "gauge", "system-getty.slice\\x2dfoo@tty1.service"),  # leading zero: 01 is 1
        ("Misspelled", 2.5, "gauge", "a,b:c"),  # a comma splits dimensions only before "<id>:"
        ("Odd type", 3, "gauge", None),
        ("Plain", 100, "gauge", None),
    ]
    hosts = sorted(e["attrs"]["host"] for e in env.events() if e["attrs"].get("metric") == "Misspelled")
    assert hosts == ["db:5432", "web"]
    warn = f"shipctl: warning: monitor quirky: {script}"
    assert f"{warn} -c: metrics[4] (Odd type): unknown datatype 'FLOAT'; treated as a gauge" in r.stderr
    assert f"{warn} -c: metrics[4] (Odd type): unknown calctype 'Average'; treated as Instant" in r.stderr
    for why, line in (
        ("empty value", "M1"),
        ("empty value", "M4 b''"),
        ("value 'nan' is not a finite number", "M1 nan"),
        ("value 'inf' is not a finite number", "M1 inf"),
        ("value '12,5' is not a number", "M1 12,5"),
        ("metric id 99 was not declared by -c; dropped", "M99 1"),
        ("event id 1 was not declared by -c; dropped", 'E1 0 0 "undeclared event" "{ }" S'),
    ):
        assert re.search(rf"{re.escape(warn)} -d line \d+: {re.escape(why)}: {re.escape(repr(line))}\n", r.stderr)
    row = script_row(env, "quirky")
    assert (row["last_step"], row["last_exit"], row["bad_lines"], row["bad_lines_total"]) == ("-d", 0, 7, 7)
    env.cli("run-monitor", "quirky")
    assert script_row(env, "quirky")["bad_lines_total"] == 14
    notices = json.loads(env.cli("status", "--json", "--verbose").stdout)["notices"]
    assert sum("M99 1" in n["message"] for n in notices) == 2 and all(n["source"] == "monitor:quirky" for n in notices)


def test_events_only_script_with_every_time_and_attribute_shape(env: Env) -> None:
    configure(env, monitor("events", f"{SCRIPTS}/events_only.sh"))
    before = int(time.time())
    r = env.cli("run-monitor", "events")
    after = int(time.time()) + 1
    assert r.exit_code == 0, r.stderr
    assert "events_only.sh -d line 7: time 'soon' is not a number" in r.stderr
    evs = {e["message"]: e["attrs"] for e in shipped(env, "event")}
    assert len(evs) == 6
    std = {k: v for k, v in evs["The event triggered"].items() if k not in ("start", "end", "serverHost")}
    assert std == {"event": "Backup finished", "message": "The event triggered", "scope": "server", "Exit code": 137}
    a = evs["The event triggered"]
    assert before - 300 <= a["start"] <= after - 300 and a["end"] - a["start"] == 300  # -300 .. 0 (now)
    a = evs["absolute times"]
    assert (a["start"], a["end"], a["scope"]) == (1458345600, 1458345660, "application")  # "{ }": no attributes
    assert set(a) - {"serverHost"} == {"event", "message", "start", "end", "scope"}
    a = evs["no scope given"]  # an old script without the trailing S|A
    assert (a["event"], a["scope"], a["version"], a["hosts"]) == ("Deploy", "server", "1.2.3", ["a", "b"])
    a = evs["escaped attributes"]
    assert a["Exit code"] == 1 and a["end"] - a["start"] == 30
    assert evs['deploy of "api" done']["by"] == "ci"  # quotes inside the message
    assert evs["plain text attributes"]["attributes"] == "not json at all"  # kept, not lost
    assert script_row(env, "events")["bad_lines"] == 1


def test_sh_scripts_with_bashisms_run_with_bash_unless_told_not_to(env: Env) -> None:
    script = copy_script(env, "bashisms.sh")
    configure(env, monitor("compat", str(script)), monitor("strict", str(script), sh_as_bash=False))
    r = env.cli("run-monitor", "compat")
    assert r.exit_code == 0, r.stderr
    ((kind, value),) = [(e["attrs"]["kind"], e["attrs"]["value"]) for e in shipped(env)]
    assert (kind, value) == ("one_two_three", 3)
    if os.path.realpath("/bin/sh") == os.path.realpath(shutil.which("bash") or ""):
        pytest.skip("/bin/sh is bash here: the strict run would succeed too")
    r = env.cli("run-monitor", "strict")
    assert r.exit_code == 65
    assert re.search(rf"monitor strict: {re.escape(str(script))} -c exited with 2: .*unexpected", r.stderr)
    row = script_row(env, "strict")
    assert (row["last_step"], row["last_exit"]) == ("-c", 2) and "unexpected" in row["stderr_tail"]


def test_exactly_one_flag_and_no_shell(env: Env) -> None:
    # quirky.py exits 3 on anything but exactly "-d"; an argument with shell syntax stays one literal argument.
    value = env.tmp / "value"
    value.write_text("5")
    configure(env, monitor("spec", f"{SCRIPTS}/spec_example.sh '{value}; touch {env.tmp}/pwned'"))
    r = env.cli("run-monitor", "spec")
    assert r.exit_code == 0, r.stderr
    assert not (env.tmp / "pwned").exists()
    # Asked for, the command line goes through /bin/sh (the flag is appended to it): $(...) is expanded.
    (env.tmp / "which").write_text(str(value))
    configure(env, monitor("sh", f"{SCRIPTS}/spec_example.sh $(cat {env.tmp}/which)", shell=True))
    for v in ("5", "7.5"):
        value.write_text(v)
        assert env.cli("run-monitor", "sh").exit_code == 0
    assert [e["attrs"]["value"] for e in shipped(env, source="sh") if e["attrs"]["metric"] == "Second metric"] == [2.5]


# --- failures -----------------------------------------------------------------------------------------------


def test_a_hanging_script_is_killed_at_maxruntime_with_its_children(env: Env) -> None:
    pidfile = env.tmp / "child.pid"
    configure(env, monitor("hang", f"{SCRIPTS}/hang.sh {pidfile}"))
    r = env.cli("run-monitor", "hang")
    assert r.exit_code == 65
    assert f"monitor hang: {SCRIPTS}/hang.sh {pidfile} -d did not finish within 1 s; killed with its process group" in (
        r.stderr
    )
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"the script's child {child} outlived it"
    # The line it finished before hanging counts; the one cut short by the kill does not.
    assert [e["attrs"]["value"] for e in shipped(env)] == [1]
    row = script_row(env, "hang")
    assert (row["last_step"], row["last_exit"], row["killed"]) == ("-d", None, 1)
    st = json.loads(env.cli("status", "--json").stdout)
    (mon,) = st["monitors"]
    assert mon["errors"] == 1 and "killed with its process group" in mon["last_error"]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("exit", "-c exited with 2: cannot read /etc/myapp.conf: Permission denied"),
        ("nojson", "-c printed no valid JSON (Expecting value, line 1): 'Usage: bad_config.sh [options]'"),
        ("slow", "-c did not finish within 1 s; killed with its process group"),
    ],
)
def test_a_failing_c_is_an_error_and_d_never_runs(env: Env, how: str, message: str) -> None:
    mark = env.tmp / "data-mode-ran"
    command = f"{SCRIPTS}/bad_config.sh {how} {mark}"
    configure(env, monitor("bad", command))
    r = env.cli("run-monitor", "bad")
    assert r.exit_code == 65
    assert f"shipctl: monitor bad: {command} {message}\n" in r.stderr
    assert not mark.exists()
    assert shipped(env) == []
    row = script_row(env, "bad")
    assert row["last_step"] == "-c" and row["last_error"] == f"{command} {message}"
    assert row["last_exit"] == {"exit": 2, "nojson": 0, "slow": None}[how]
    text = env.cli("status").stdout
    assert "Scripts" in text and ("Permission denied" in text if how == "exit" else True)


def test_a_non_zero_data_run_keeps_its_lines_and_reports_stderr(env: Env) -> None:
    script = env.tmp / "partial.sh"
    script.write_text(
        '#!/bin/bash\n[ "$1" = -c ] && echo \'{"metrics": [{"id": 1, "name": "x"}]}\' && exit\n'
        'echo M1 4\necho "[i] lost the database connection" >&2\nexit 1\n'
    )
    script.chmod(0o755)
    configure(env, monitor("partial", str(script)))
    r = env.cli("run-monitor", "partial")
    assert r.exit_code == 65
    assert f"monitor partial: {script} -d exited with 1: [i] lost the database connection" in r.stderr
    assert [e["attrs"]["value"] for e in shipped(env)] == [4]
    assert script_row(env, "partial")["stderr_tail"] == "[i] lost the database connection"
    text = env.cli("status").stdout
    # Monitors and Scripts tables, recent and ongoing problems: shown as text each time, not eaten as rich markup.
    assert text.count("[i] lost the database connection") == 4


# --- the -c cache -------------------------------------------------------------------------------------------


def test_c_is_cached_by_path_size_mtime_and_rerun_when_the_script_changes(env: Env) -> None:
    script = env.tmp / "changing.sh"
    calls = env.tmp / "c-calls"

    def write(name: str) -> None:
        script.write_text(
            f'#!/bin/bash\nif [ "$1" = -c ]; then echo c >> {calls}\n'
            f'echo \'{{"metrics": [{{"id": 1, "name": "{name}"}}]}}\'; exit; fi\necho M1 1\n'
        )
        script.chmod(0o755)

    def metric_names() -> list[str]:
        return [e["attrs"]["metric"] for e in shipped(env)]

    write("version one")
    configure(env, monitor("changing", str(script)))
    for _ in range(2):
        assert env.cli("run-monitor", "changing").exit_code == 0
    assert calls.read_text() == "c\n"  # the second run used the cached config
    conn = sqlite3.connect(env.state)
    (row,) = conn.execute("SELECT path, size, mtime_ns, config FROM script_configs").fetchall()
    st = script.stat()
    assert row[:3] == (str(script), st.st_size, st.st_mtime_ns) and "version one" in row[3]
    write("version two")  # same size: only the mtime tells
    os.utime(script, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert script.stat().st_size == st.st_size
    assert env.cli("run-monitor", "changing").exit_code == 0
    assert calls.read_text() == "c\nc\n"
    assert metric_names() == ["version one", "version one", "version two"]
    (row,) = conn.execute("SELECT config FROM script_configs").fetchall()
    assert "version two" in row[0]


def test_print_runs_c_and_shows_the_parsed_config_without_touching_the_state(env: Env) -> None:
    env.write_config(NO_IMPLICIT)
    r = env.cli("run-monitor", "script", "--command", f"bash {SCRIPTS}/spec_example.sh", "--print")
    assert r.exit_code == 0, r.stderr
    config, metric, event = (json.loads(x) for x in r.stdout.splitlines())
    assert config["kind"] == "config" and config["source"] == "script"
    c = config["config"]
    assert (c["argv"], c["script"], c["config_from"], c["period"], c["timeout"]) == (
        ["bash", f"{SCRIPTS}/spec_example.sh"],
        f"{SCRIPTS}/spec_example.sh",
        "-c",
        60,
        5,
    )
    assert [(m["id"], m["name"], m["type"], m["calc"], m["dimensions"]) for m in c["metrics"]] == [
        ("1", "Incoming traffic on interface", "gauge", "instant", {"1": "interface"}),
        ("2", "Second metric", "gauge", "difference", {"2": "dimension2", "3": "dimension3"}),
    ]
    assert c["events"] == [
        {
            "id": "1",
            "name": "My custom event",
            "description": "Description for my custom event",
            "attributes": {"Exit code": "integer"},
        }
    ]
    assert (metric["kind"], metric["attrs"]["value"], event["kind"], event["attrs"]["Exit code"]) == (
        "metric",
        8.5,
        "event",
        137,
    )
    assert not env.state.exists()


def test_bad_options_name_the_key(env: Env) -> None:
    configure(env, monitor("s", "x.sh", config_timeout=30))
    r = env.cli("run-monitor", "s")
    assert r.exit_code == 78
    assert f"{env.config}: monitors[0].config_timeout: expected a number above 0 and at most 4 (seconds)" in r.stderr
    configure(env, monitor("s", "x.sh", format="prometheus"))
    assert "monitors[0].format: expected one of 'coscale', 'influx'" in env.cli("run-monitor", "s").stderr


def test_a_missing_script_is_an_error_naming_it(env: Env) -> None:
    configure(env, monitor("gone", f"{env.tmp}/nope.sh"))
    r = env.cli("run-monitor", "gone")
    assert r.exit_code == 65
    assert f"monitor gone: cannot run '{env.tmp}/nope.sh': {env.tmp}/nope.sh: No such file or directory" in r.stderr


# --- concurrency --------------------------------------------------------------------------------------------


def test_ten_scripts_due_in_one_run_execute_concurrently(env: Env) -> None:
    logs = [env.tmp / f"sleeper{i}.log" for i in range(10)]
    configure(env, *(monitor(f"s{i}", f"{SCRIPTS}/sleeper.sh {log}") for i, log in enumerate(logs)))
    r = env.cli("run", "--max-seconds", "0")
    assert r.exit_code == 0, r.stderr
    marks = [dict(line.split() for line in log.read_text().splitlines()) for log in logs]
    starts = [int(m["start"]) for m in marks]
    ends = [int(m["end"]) for m in marks]
    # Every script started before any of them ended: all ten ran at the same time, not one after another.
    assert max(starts) < min(ends)
    assert sorted(e["source"] for e in env.events() if e["kind"] == "metric") == sorted(f"s{i}" for i in range(10))


# --- Telegraf exec style ------------------------------------------------------------------------------------


def test_influx_line_protocol_scripts(env: Env) -> None:
    configure(env, monitor("tg", f"{SCRIPTS}/telegraf.sh", format="influx"))
    r = env.cli("run-monitor", "tg")
    assert r.exit_code == 0, r.stderr
    assert re.search(r"telegraf\.sh line 5: field 'temperature': 'cold' is not a number", r.stderr)
    by = {(e["attrs"]["metric"], e["attrs"].get("host", "")): e for e in shipped(env)}
    disk = by[("disk.used_percent", "")]
    assert (disk["attrs"]["value"], disk["attrs"]["path"], disk["attrs"]["fstype"], disk["ts"]) == (
        42.5,
        "/",
        "ext4",
        1_700_000_000_000_000_000,
    )
    assert by[("disk.inodes_free", "")]["attrs"]["value"] == 1000
    app = {k[0]: e["attrs"] for k, e in by.items() if k[1] == "web 1"}  # escaped space in a tag value
    assert app["app stats.requests"]["value"] == 17 and app["app stats.requests"]["env"] == "prod,eu"
    assert app["app stats.up"]["value"] == 1
    assert app["app stats.version"]["value"] == '1.2 "beta"'
    assert by[("cpu.usage_idle", "")]["ts"] == 1_700_000_000 * 10**9  # seconds, recognised by magnitude
    assert by[("crlf.value", "")]["attrs"]["value"] == 1


# --- the examples -------------------------------------------------------------------------------------------


def test_example_filesystem_check(env: Env) -> None:
    configure(env, monitor("fs", f"{EXAMPLES}/filesystem.sh /"))
    r = env.cli("run-monitor", "fs")
    assert r.exit_code == 0, r.stderr
    by = {e["attrs"]["metric"]: e["attrs"] for e in shipped(env)}
    assert set(by) == {"Filesystem used", "Filesystem free", "Filesystem inodes used"}
    used = by["Filesystem used"]
    assert used["mount"] == "/" and 0 <= used["value"] <= 100 and used["unit"] == "%"
    assert by["Filesystem free"]["value"] > 0 and by["Filesystem free"]["groups"] == "Filesystem/Usage"


def test_example_service_restart_event(env: Env) -> None:
    import subprocess

    pidfile, state = env.tmp / "svc.pid", env.tmp / "svc.state"
    procs = []

    def start_service() -> int:
        p = subprocess.Popen(["sleep", "60"])
        procs.append(p)
        pidfile.write_text(f"{p.pid}\n")
        return p.pid

    configure(env, monitor("svc", f"{PY} {EXAMPLES}/service_restart.py web {pidfile} {state}"))
    try:
        old = start_service()
        assert env.cli("run-monitor", "svc").exit_code == 0
        assert env.cli("run-monitor", "svc").exit_code == 0  # same process: no event
        procs[0].kill()
        new = start_service()
        r = env.cli("run-monitor", "svc")
        assert r.exit_code == 0, r.stderr
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [e["attrs"]["value"] for e in shipped(env, "metric")] == [1, 1, 1]
    (ev,) = [e for e in env.events() if e["kind"] == "event"]
    a = ev["attrs"]
    assert ev["message"] == f"web restarted (pid {old} -> {new})"
    assert (a["event"], a["Service"], a["Old PID"], a["New PID"], a["scope"]) == (
        "Service restarted",
        "web",
        old,
        new,
        "server",
    )
    assert a["start"] <= a["end"] and a["end"] - a["start"] < 3600  # absolute start: when the new process began
