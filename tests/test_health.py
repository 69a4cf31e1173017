"""Health (issue 14): ``status --check`` at every level from real states, thresholds from ``[agent.health]``,
perfdata as the monitoring-plugins guidelines write it; self-metrics read back through a real node_exporter and
sent by the implicit ``shipctl`` monitor; a persistent log problem reported once across runs."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Env, numbered
from tests.servers_node_exporter import NodeExporter, node_exporter  # noqa: F401 - a fixture

QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"

# monitoring-plugins guidelines: 'label'=value[UOM];[warn];[crit];[min];[max]
PERF = re.compile(
    r"""('[^'=]+'|[^'=\s]+)=(-?[\d.]+)(s|%|B|KB|MB|TB|c)?(?:;([\d.]*))?(?:;([\d.]*))?(?:;([\d.]*))?(?:;([\d.]*))?"""
)


def perfdata(first_line: str) -> dict[str, tuple[float, str, str, str]]:
    """label -> (value, uom, warn, crit); asserts the whole perfdata part parses."""
    assert first_line.count("|") == 1, first_line
    text = first_line.split("|", 1)[1].strip()
    out = {}
    pos = 0
    for m in PERF.finditer(text):
        assert text[pos : m.start()].strip() == "", f"unparsed perfdata: {text[pos : m.start()]!r}"
        pos = m.end()
        out[m[1].strip("'")] = (float(m[2]), m[3] or "", m[4] or "", m[5] or "")
    assert text[pos:].strip() == "", f"unparsed perfdata: {text[pos:]!r}"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(env: Env, *, health: str = "", agent: str = "", sink: str | None = None, extra: str = "") -> Path:
    log = env.logs / "app.log"
    if not log.exists():
        log.write_text(numbered(5))
    body = f'[agent]\n{QUIET}{agent}\n[agent.health]\n{health}\n[[logs]]\nid = "app"\npath = "{log}"\n{extra}\n'
    if sink is not None:
        env.write_config(body + sink, sink=False)
    else:
        env.write_config(body)
    return log


def check(env: Env) -> tuple[int, list[str]]:
    r = env.cli("status", "--check")
    assert r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines and lines[0].startswith("SHIPCTL "), r.stdout
    return r.exit_code, lines


# --- status --check: OK, WARNING, CRITICAL ------------------------------------------------------------------


def test_check_ok_after_a_good_run_with_parseable_perfdata(env: Env) -> None:
    setup(env)
    assert env.cli("run").exit_code == 0
    code, lines = check(env)
    assert code == 0 and lines[0].startswith("SHIPCTL OK - "), lines
    perf = perfdata(lines[0])
    assert perf["lag_file"][:4] == (0.0, "s", "900", "3600")
    assert perf["upload_failures_file"] == (0.0, "", "2", "10")
    assert perf["queue_bytes"] == (0.0, "B", str(256 << 20), str(1 << 30))
    assert perf["read_errors"][0] == 0 and perf["monitors_failing"][0] == 0
    assert 0 <= perf["last_success_age"][0] < 60 and perf["last_success_age"][1] == "s"
    as_json = json.loads(env.cli("status", "--check", "--json").stdout)
    assert as_json["level"] == "OK" and as_json["exit_code"] == 0


def test_check_backlog_warns_on_queue_bytes_and_is_critical_on_lag(env: Env) -> None:
    setup(env, health="queue_bytes_warning = 100\nlag_warning = 3600\nlag_critical = 7200")
    assert env.cli("tail-once").exit_code == 0  # queued, not delivered
    code, lines = check(env)
    assert code == 1 and lines[0].startswith("SHIPCTL WARNING - queue holds "), lines
    perf = perfdata(lines[0])
    assert perf["queue_bytes"][0] > 100 and perf["queue_bytes"][2] == "100"
    # Thresholds come from the config: the same state is CRITICAL once the lag level is below its age.
    setup(env, health="lag_warning = 0\nlag_critical = 0.001")
    time.sleep(0.01)
    code, lines = check(env)
    assert code == 2 and lines[0].startswith("SHIPCTL CRITICAL - sink file: oldest undelivered batch is"), lines
    assert "1 batch," in lines[0] and perfdata(lines[0])["lag_file"][0] > 0
    assert env.cli("upload").exit_code == 0
    code, lines = check(env)
    assert code == 0, lines


def test_check_sink_down_warning_then_critical_with_failures(env: Env) -> None:
    port = free_port()  # nothing listens there: the receiver is down
    sink = (
        f'[[sinks]]\nid = "central"\ntype = "scalyr"\napi_key = "0123456789abcdef-key"\n'
        f'server = "http://127.0.0.1:{port}"\nallow_http = true\nconnect_timeout = 2\n'
    )
    setup(env, health="upload_failures_warning = 0\nupload_failures_critical = 2", sink=sink)
    assert env.cli("tail-once").exit_code == 0
    assert env.cli("upload").exit_code == 69
    code, lines = check(env)
    assert code == 1, lines
    assert lines[0].startswith("SHIPCTL WARNING - sink central: 1 consecutive upload failure "), lines
    assert perfdata(lines[0])["upload_failures_central"][:4] == (1.0, "", "0", "2")
    for _ in range(2):
        env.cli("upload", "--force")
    code, lines = check(env)
    assert code == 2 and "sink central: 3 consecutive upload failures" in lines[0], lines
    assert "0123456789abcdef-key" not in "\n".join(lines)


def test_check_unreadable_file_and_failing_monitor_warn(env: Env) -> None:
    log = setup(env, extra='[[monitors]]\ntype = "shell"\nid = "broken"\ncommand = "/nonexistent/tool"\n')
    assert env.cli("run").exit_code == 65  # the monitor
    log.unlink()
    os.mkfifo(log)  # as root, a chmod would not stop the read: a FIFO is refused by every run
    env.cli("tail-once")
    code, lines = check(env)
    assert code == 1, lines
    assert any(f"WARNING: 1 log or file cannot be read: log app: {log}: not a regular file" in x for x in lines)
    assert any(x.startswith("WARNING: 1 monitor failing: broken: ") for x in lines), lines
    perf = perfdata(lines[0])
    assert perf["read_errors"][0] == 1 and perf["monitors_failing"][0] == 1
    setup(env, health="read_errors_critical = 0\nread_errors_warning = 0", extra="")
    code, lines = check(env)
    assert code == 2 and "cannot be read" in lines[0], lines


def test_check_last_successful_run_level_from_config(env: Env) -> None:
    setup(env, health="last_run_warning = 0.001")
    assert env.cli("run").exit_code == 0
    time.sleep(0.01)
    code, lines = check(env)
    assert code == 1 and lines[0].startswith("SHIPCTL WARNING - last successful run "), lines


# --- status --check: UNKNOWN ---------------------------------------------------------------------------------


def test_check_unknown_when_state_missing(env: Env) -> None:
    setup(env)
    code, lines = check(env)
    assert code == 3 and lines[0] == f"SHIPCTL UNKNOWN - state file missing: {env.state}: does not exist", lines


def test_check_unknown_when_state_corrupt(env: Env) -> None:
    setup(env)
    assert env.cli("run").exit_code == 0
    for p in env.state.parent.glob("state.db*"):
        p.unlink()
    env.state.write_bytes(b"this is not a database\n" * 400)
    code, lines = check(env)
    assert code == 3 and lines[0].startswith(f"SHIPCTL UNKNOWN - state file corrupt: {env.state}"), lines
    assert "state recover" in "\n".join(lines)


def test_check_unknown_when_state_lacks_part_of_its_schema(env: Env) -> None:
    """Past the read-only probe: a table dropped by hand is found by the state's own checks, still UNKNOWN."""
    setup(env)
    assert env.cli("run").exit_code == 0
    conn = sqlite3.connect(env.state)
    conn.execute("DROP TABLE upload_state")
    conn.commit()
    conn.close()
    code, lines = check(env)
    assert code == 3 and lines[0].startswith(f"SHIPCTL UNKNOWN - state file corrupt: {env.state}: "), lines
    assert "missing upload_state" in lines[0]


def test_check_unknown_when_state_locked(env: Env) -> None:
    setup(env)
    assert env.cli("run").exit_code == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode = EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE')\n"
            "c.execute('INSERT INTO meta (key, value) VALUES (?, ?)', ('x', 'y'))\n"
            "print('held', flush=True); time.sleep(60)\n",
            str(env.state),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        code, lines = check(env)
        assert time.monotonic() - t0 < 10  # a check answers within its own timeout
        assert code == 3 and lines[0].startswith(f"SHIPCTL UNKNOWN - state file locked: {env.state}"), lines
    finally:
        holder.kill()
        holder.wait()


def test_check_unknown_on_config_error_and_health_keys_validated(env: Env) -> None:
    setup(env, health="lag_warnin = 5")
    code, lines = check(env)
    assert code == 3 and lines[0].startswith(f"SHIPCTL UNKNOWN - config error: {env.config}: agent.health.lag_warnin:")
    assert "unknown key" in lines[0]
    r = env.cli("check-config")
    assert r.exit_code == 78 and f"{env.config}: agent.health.lag_warnin: unknown key" in r.stderr
    setup(env, health="upload_failures_warning = 5\nupload_failures_critical = 1")
    r = env.cli("run")
    assert r.exit_code == 78
    assert f"{env.config}: agent.health: upload_failures_critical (1) is below upload_failures_warning (5)" in r.stderr
    setup(env, health='lag_warning = "soon"')
    r = env.cli("run")
    assert r.exit_code == 78 and "agent.health.lag_warning: expected a number" in r.stderr
    setup(env, agent='textfile = "metrics.txt"')
    r = env.cli("run")
    assert r.exit_code == 78 and "agent.textfile: expected a file path ending in .prom" in r.stderr


# --- a persistent problem is reported once ---------------------------------------------------------------


def test_unreadable_log_reported_once_then_on_change_and_when_cleared(env: Env) -> None:
    log = setup(env)
    assert env.cli("run").exit_code == 0
    kept = log.rename(env.tmp / "app.log.kept")  # put back at the end: the same file, so no rotation event then
    os.mkfifo(log)
    first = env.cli("run")
    assert first.exit_code == 65 and f"shipctl: log app: {log}: not a regular file (a fifo)" in first.stderr
    for _ in range(3):  # what cron would mail every minute: nothing
        again = env.cli("run")
        assert (again.exit_code, again.stderr, again.stdout) == (0, "", "")
    assert env.cli("tail-once").exit_code == 0  # tail-once shares the memory of what was reported
    verbose = env.cli("run", "-v")
    assert verbose.exit_code == 0 and "(ongoing: reported before, see status)" in verbose.stderr
    # Still visible: in status (its own section and the JSON), in status --check.
    st = env.cli("status")
    assert "Ongoing problems" in st.stdout and "not a regular file (a fifo)" in st.stdout
    st = json.loads(env.cli("status", "--json").stdout)
    assert [p["problem"] for p in st["problems"]] == [f"log app: {log}: not a regular file (a fifo)"]
    fifo_notices = [n for n in st["notices"] if "not a regular file (a fifo)" in n["message"]]
    assert len(fifo_notices) == 1  # one notice, not one per run pushing the others out
    code, lines = check(env)
    assert code == 1 and "not a regular file (a fifo)" in lines[0]
    # A different problem at the same place is news: reported again.
    log.unlink()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(log))
    changed = env.cli("run")
    assert changed.exit_code == 65 and f"shipctl: log app: {log}: not a regular file (a socket)" in changed.stderr
    assert f"shipctl: resolved: log app: {log}: not a regular file (a fifo)" in changed.stderr
    assert env.cli("run").stderr == ""
    # Cleared: said once (exit 0), then quiet; check is OK again.
    sock.close()
    log.unlink()
    kept.rename(log)
    cleared = env.cli("run")
    assert cleared.exit_code == 0, cleared.stderr
    assert cleared.stderr == f"shipctl: resolved: log app: {log}: not a regular file (a socket)\n"
    quiet = env.cli("run")
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    code, lines = check(env)
    assert code == 0, lines
    assert json.loads(env.cli("status", "--json").stdout)["problems"] == []


# --- self-metrics ------------------------------------------------------------------------------------------


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, object], name: str, **labels: str) -> float:
    fam = fams[name]
    for s in fam.samples:  # type: ignore[attr-defined]
        if s.labels == labels:
            return float(s.value)
    raise AssertionError(f"no {name}{labels} in {[s.labels for s in fam.samples]}")  # type: ignore[attr-defined]


def test_textfile_read_back_through_node_exporter(env: Env, node_exporter: NodeExporter) -> None:  # noqa: F811
    prom = node_exporter.textfile_dir / "shipctl.prom"
    weird = 'app "quoted" \\ back\nslash'  # every character the exposition format escapes in a label value
    log = env.logs / "app.log"
    log.write_text(numbered(7))
    env.write_config(
        f'[agent]\n{QUIET}textfile = "{prom}"\n[[logs]]\nid = {json.dumps(weird)}\npath = "{log}"\n'
        f'[[sinks]]\nid = "down"\ntype = "scalyr"\napi_key = "0123456789abcdef-key"\n'
        f'server = "http://127.0.0.1:{free_port()}"\nallow_http = true\nconnect_timeout = 2\n'
        f'[[sinks]]\nid = "local"\ntype = "file"\npath = "{env.sink}"\n',
        sink=False,
    )
    r = env.cli("run")
    assert r.exit_code == 69, r.stderr  # the down sink failed; the local one delivered
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert [p.name for p in node_exporter.textfile_dir.iterdir()] == ["shipctl.prom"]  # no temp file left
    scraped = node_exporter.scrape()
    fams = families(scraped)
    assert value(fams, "node_textfile_scrape_error") == 0
    assert value(fams, "shipctl_log_lines_read", log=weird) == 7  # the parser drops _total from the family
    assert fams["shipctl_log_lines_read"].type == "counter"  # type: ignore[attr-defined]
    assert fams["shipctl_sink_lag_seconds"].type == "gauge"  # type: ignore[attr-defined]
    assert "oldest queued batch" in fams["shipctl_sink_lag_seconds"].documentation  # type: ignore[attr-defined]
    assert value(fams, "shipctl_log_bytes_read", log=weird) == len(numbered(7))
    assert value(fams, "shipctl_sink_events_sent", sink="local") == 7
    assert value(fams, "shipctl_sink_events_sent", sink="down") == 0
    assert value(fams, "shipctl_sink_backlog_events", sink="down") == 7
    assert value(fams, "shipctl_sink_backlog_events", sink="local") == 0
    assert value(fams, "shipctl_sink_consecutive_failures", sink="down") == 1
    assert value(fams, "shipctl_sink_lag_seconds", sink="down") > 0
    assert value(fams, "shipctl_queue_events") == 7
    assert value(fams, "shipctl_run_exit_code", command="run") == 69
    assert 0 < value(fams, "shipctl_run_duration_seconds", command="run") < 30
    # As the run left it before giving space back at its very end (WAL checkpoint): at least the pages it has.
    assert value(fams, "shipctl_state_file_bytes") >= 32768 and value(fams, "shipctl_state_wal_bytes") >= 0
    assert value(fams, "shipctl_log_read_errors", log=weird) == 0
    # The next run rewrites it: node_exporter serves the new figures.
    log.write_text(numbered(10))
    assert env.cli("tail-once").exit_code == 0
    fams = families(node_exporter.scrape())
    assert value(fams, "shipctl_log_lines_read", log=weird) == 10
    assert value(fams, "shipctl_run_exit_code", command="tail-once") == 0
    assert value(fams, "shipctl_run_last_success_timestamp_seconds", command="tail-once") > time.time() - 60


def test_textfile_that_cannot_be_written_is_reported_once_and_never_fails_the_run(env: Env) -> None:
    prom = env.tmp / "missing-dir" / "shipctl.prom"
    setup(env, agent=f'textfile = "{prom}"')
    first = env.cli("run")
    assert first.exit_code == 0
    assert f"shipctl: self-metrics: textfile {prom}: cannot write it: No such file" in first.stderr
    again = env.cli("run")
    assert (again.exit_code, again.stderr) == (0, "")
    code, lines = check(env)  # not a failure of shipping: OK, with the problem in the details
    assert code == 0 and any(x.startswith("ongoing since ") and "cannot write it" in x for x in lines), lines
    prom.parent.mkdir()
    assert env.cli("run").exit_code == 0 and prom.exists()


def test_implicit_shipctl_monitor_sends_the_textfile_figures_to_the_sinks(env: Env) -> None:
    prom = env.tmp / "shipctl.prom"
    setup(env, agent=f'textfile = "{prom}"\nimplicit_shipctl_monitor = true')
    assert env.cli("run").exit_code == 0  # its first run has no snapshot yet: nothing to send
    text = prom.read_text()
    assert env.cli("run-monitor", "shipctl").exit_code == 0
    assert env.cli("upload").exit_code == 0
    sent = {}
    for e in env.events():
        if e["kind"] == "metric" and e["attrs"]["monitor"] == "shipctl_metrics":  # type: ignore[index]
            attrs = e["attrs"]
            key = (attrs["metric"], attrs.get("sink") or attrs.get("log") or attrs.get("command") or "")  # type: ignore[union-attr]
            sent[key] = attrs["value"]  # type: ignore[index]
    fams = families(text)
    assert sent[("shipctl_sink_events_sent_total", "file")] == value(fams, "shipctl_sink_events_sent", sink="file")
    assert sent[("shipctl_log_lines_read_total", "app")] == 5 == value(fams, "shipctl_log_lines_read", log="app")
    assert sent[("shipctl_run_exit_code", "run")] == 0
    assert ("shipctl_queue_bytes", "") in sent
    # Configured by hand instead, with an interval of its own: the run leaves it a snapshot all the same.
    setup(env, extra='[[monitors]]\ntype = "shipctl_metrics"\nid = "self"\nsample_interval = 600\n')
    assert env.cli("run").exit_code == 0
    assert env.cli("run-monitor", "self").exit_code == 0 and env.cli("upload").exit_code == 0
    mine = [e for e in env.events() if e["kind"] == "metric" and e["source"] == "self"]
    assert any(e["attrs"]["metric"] == "shipctl_queue_bytes" for e in mine), mine  # type: ignore[index]
    # Off by default: a config without it has no such monitor.
    setup(env)
    st = json.loads(env.cli("status", "--json").stdout)
    assert "shipctl" not in {m["id"] for m in st["monitors"] if m["last_run"] is None}
    assert "shipctl" in {m["id"] for m in st["monitors"]}  # the state still remembers its earlier runs


def test_perfdata_labels_quoted_and_messages_kept_on_one_line(env: Env) -> None:
    """A sink id with a space, a quote or an equals sign still gives one parseable perfdata item per figure, and a
    "|" or a newline in a message never starts perfdata or another line."""
    env.write_config(
        f"[agent]\n{QUIET}[agent.health]\nupload_failures_warning = 0\n"
        f'[[sinks]]\nid = "my \'odd\'=sink"\ntype = "scalyr"\napi_key = "0123456789abcdef-key"\n'
        f'server = "http://127.0.0.1:{free_port()}/a|b"\nallow_http = true\nconnect_timeout = 2\n',
        sink=False,
    )
    log = env.logs / "app.log"
    log.write_text("one\n")
    fifo = env.logs / "pipe.log"
    os.mkfifo(fifo)
    with open(env.config, "a") as fh:
        fh.write(f'[[logs]]\npath = "{log}"\n[[logs]]\nid = "a|b\\nc"\npath = "{fifo}"\n')
    env.cli("run")
    code, lines = check(env)
    assert code == 1, lines
    perf = perfdata(lines[0])
    assert perf["lag_my _odd__sink"][1] == "s" and perf["upload_failures_my _odd__sink"][0] == 1
    assert "'lag_my _odd__sink'=" in lines[0] and perf["read_errors"][0] == 1
    assert any(x.startswith(f"WARNING: 1 log or file cannot be read: log a/b c: {fifo}: ") for x in lines), lines
