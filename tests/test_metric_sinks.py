"""The influxdb and prometheus_remote_write sinks against the real receivers, queried back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.conftest import Env
from tests.servers import InfluxDB, Prometheus

ROOT = Path(__file__).parent.parent
QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _config(env: Env, sink: str) -> None:
    env.write_config(
        f'[agent]\n{QUIET}server_attributes = {{ serverHost = "web 1,a=b" }}\n'
        '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n'
        '[[monitors]]\ntype = "shell"\nid = "greeting"\ncommand = "echo \'say \\"hi\\", ok\'"\n'
        f'[[sinks]]\nid = "archive"\ntype = "file"\npath = "{env.sink}"\n' + sink,
        sink=False,
    )


def _metric_ts(env: Env, monitor_id: str) -> int:
    (ev,) = [e for e in env.events() if e["kind"] == "metric" and e["source"] == monitor_id]
    return int(ev["ts"])


def test_influxdb_round_trip(env: Env, influxdb: InfluxDB) -> None:
    db = f"shipctl_{uuid.uuid4().hex[:8]}"  # not created: the sink creates it on "database not found"
    _config(env, f'[[sinks]]\nid = "tsdb"\ntype = "influxdb"\nurl = "{influxdb.url}"\ndatabase = "{db}"\n')
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    rows = {row["monitor"]: row for row in influxdb.rows(db, 'SELECT * FROM "output" GROUP BY *')}
    assert rows["answer"]["value"] == 42 and rows["answer"]["text"] is None  # an integer stays an integer
    assert rows["greeting"]["text"] == 'say "hi", ok'  # text stays text, in a field of its own
    num = rows["answer"]
    assert num["serverHost"] == "web 1,a=b"  # escaped in the line protocol, intact at the receiver
    assert num["time"] == _metric_ts(env, "answer")  # the sample's own timestamp, to the nanosecond
    status = json.loads(env.proc("status", "--json").stdout)
    tsdb = next(s for s in status["sinks"] if s["sink"] == "tsdb")
    assert tsdb["events_uploaded"] == 2 and tsdb["pending_events"] == 0


def test_influxdb_down_backs_off_without_delaying_the_archive(env: Env) -> None:
    _config(env, '[[sinks]]\nid = "tsdb"\ntype = "influxdb"\nurl = "http://127.0.0.1:9"\nconnect_timeout = 2\n')
    r = env.proc("run")
    assert r.returncode == 69 and "upload: tsdb: failed: cannot reach 127.0.0.1:9" in r.stderr
    assert len(env.messages("metric")) == 2  # the file sink got both samples anyway


def test_prometheus_remote_write_round_trip(env: Env, prometheus: Prometheus) -> None:
    _config(env, f'[[sinks]]\nid = "prom"\ntype = "prometheus_remote_write"\nurl = "{prometheus.write_url}"\n')
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    ts = _metric_ts(env, "answer")
    at = f"{ts // 1_000_000 / 1000:.3f}"
    (series,) = prometheus.query('output{serverHost="web 1,a=b",monitor="answer"}', time=at)
    assert series["metric"]["__name__"] == "output"
    assert float(series["value"][1]) == 42.0
    assert round(float(series["value"][0]) * 1000) == ts // 1_000_000  # the sample's own time, in ms
    status = json.loads(env.proc("status", "--json").stdout)
    prom = next(s for s in status["sinks"] if s["sink"] == "prom")
    assert prom["pending_events"] == 0 and "1 text samples not sent" in (prom["last_message"] or "")


def _queue_samples(env: Env, samples: list[tuple[str, float, int]]) -> None:
    """Queue typed metric samples (name, value, ts_ns) as a monitor "m" would."""
    from shipctl.model import FMT_JSON, PendingBatch
    from shipctl.state import State
    from shipctl.state.queue import insert_batch

    events = [
        {"m": f"{n} {v}", "a": {}, "t": ts, "k": "metric", "x": {"n": n, "v": v, "t": "gauge", "d": {"monitor": "m"}}}
        for n, v, ts in samples
    ]
    with State.open(env.state) as state, state.write() as conn:
        insert_batch(
            conn, PendingBatch("metric", "m", samples[0][2], {}, FMT_JSON, json.dumps(events).encode(), len(events))
        )


def test_prometheus_refusing_some_samples_keeps_the_others(env: Env, prometheus: Prometheus) -> None:
    import time

    env.write_config(
        f'[agent]\n{QUIET}[[sinks]]\nid = "prom"\ntype = "prometheus_remote_write"\nurl = "{prometheus.write_url}"\n',
        sink=False,
    )
    now = time.time_ns() // 1_000_000 * 1_000_000
    name = f"t_{uuid.uuid4().hex[:8]}"
    _queue_samples(env, [(f"{name}_a", 1.0, now)])
    assert env.proc("upload").returncode == 0
    # a's first sample is now older than what Prometheus holds for a: out of order; a's next one and b are fine.
    later = now + 1_000_000_000
    old = now - 60_000_000_000
    _queue_samples(env, [(f"{name}_a", 2.0, old), (f"{name}_a", 4.0, later), (f"{name}_b", 3.0, now)])
    r = env.proc("upload")
    assert r.returncode == 0, r.stderr
    (b,) = prometheus.query(f"{name}_b", time=f"{now // 1_000_000 / 1000:.3f}")
    assert float(b["value"][1]) == 3.0
    (a,) = prometheus.query(f"{name}_a", time=f"{later // 1_000_000 / 1000:.3f}")
    assert float(a["value"][1]) == 4.0  # the same series' good sample was kept too
    status = json.loads(env.proc("status", "--json").stdout)
    (prom,) = status["sinks"]
    assert prom["pending_events"] == 0 and prom["last_message"].startswith("1 of 3 samples refused")
    assert any("out of order" in str(n) for n in status["notices"]), status["notices"]


def test_influxdb_gets_system_coscale_and_panoptes_metrics_with_their_dimensions(env: Env, influxdb: InfluxDB) -> None:
    from tests.plugin_helpers import TUTORIAL, tutorial_files

    db = influxdb.create_db()
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics")
    script = ROOT / "examples" / "scripts" / "filesystem.sh"
    env.write_config(
        f"[agent]\n{QUIET}"
        '[[monitors]]\ntype = "linux_system_metrics"\nid = "sys"\n'
        f'[[monitors]]\ntype = "script"\nid = "fs"\ncommand = "{script} /"\n'
        f'[[monitors]]\ntype = "plugin"\nid = "tutorial"\ndescriptor = "{descriptor}"\n'
        f'resources = "{TUTORIAL / "test_resources.json"}"\noutput = "panoptes"\n'
        f'[[sinks]]\nid = "archive"\ntype = "file"\npath = "{env.sink}"\n'
        f'[[sinks]]\nid = "tsdb"\ntype = "influxdb"\nurl = "{influxdb.url}"\ndatabase = "{db}"\n',
        sink=False,
    )
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    archived = [e for e in env.events() if e["kind"] == "metric"]

    # System metrics: the per-CPU-type series keep their dimension as a tag, values and times exact.
    (cpu,) = [e for e in archived if e["attrs"].get("metric") == "proc.stat.cpu" and e["attrs"].get("type") == "user"]
    rows = influxdb.rows(db, 'SELECT * FROM "proc.stat.cpu" WHERE "type" = \'user\'')
    assert [(row["value"], row["time"], row["monitor"]) for row in rows] == [(cpu["attrs"]["value"], cpu["ts"], "sys")]

    # The CoScale script: its metric name and the mount dimension.
    (fs,) = [e for e in archived if e["source"] == "fs" and e["attrs"].get("mount") == "/"][:1]
    rows = influxdb.rows(db, f'SELECT * FROM "{fs["attrs"]["metric"]}" WHERE "mount" = \'/\'')
    assert rows and rows[0]["value"] == fs["attrs"]["value"] and rows[0]["time"] == fs["ts"]

    # The Panoptes plugin: a metrics group becomes one point per metric, its dimension and resource as tags.
    (load,) = influxdb.rows(db, 'SELECT * FROM "cpu_load"')
    assert load["value"] == 0.3 and load["cpu_no"] == "5" and load["resource_id"] == "tutorial_device"
    (switches,) = influxdb.rows(db, 'SELECT * FROM "context_switch_count"')
    assert switches["value"] == 50 and switches["monitor"] == "tutorial"


def test_a_header_that_http_cannot_carry_is_a_config_error(env: Env) -> None:
    env.write_config(
        f"[agent]\n{QUIET}"
        '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n'
        '[[sinks]]\ntype = "prometheus_remote_write"\nheaders = { "X-Scope-OrgID" = "équipe€" }\n',
        sink=False,
    )
    for cmd in ("check-config", "run"):
        r = env.proc(cmd)
        assert r.returncode == 78, r.stderr
        assert "sinks[0]" in r.stderr and "headers.X-Scope-OrgID: only Latin-1 characters" in r.stderr
        assert "Traceback" not in r.stderr
