"""Monitors written for the Scalyr agent's plugin API, run unmodified (``type = "scalyr_monitor"``): the monitors
in tests/scalyr_monitors/ import ``scalyr_agent`` and nothing of shipctl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from shipctl.scalyrapi.config import (
    ArrayOfStrings,
    BadMonitorConfiguration,
    JsonArray,
    JsonObject,
    MonitorConfig,
    convert_config_param,
)
from tests.conftest import Env
from tests.servers import InfluxDB

MONITORS = Path(__file__).resolve().parent / "scalyr_monitors"
NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def _monitor(mid: str, module: str, config: dict[str, Any] | None = None, **extra: Any) -> str:
    lines = [
        "[[monitors]]",
        'type = "scalyr_monitor"',
        f'id = "{mid}"',
        f'module = "{module}"',
        f"module_paths = [{json.dumps(str(MONITORS))}]",
    ]
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    if config is not None:
        lines.append(f"config = {_toml(config)}")
    return "\n".join(lines) + "\n"


def _metrics(env: Env, source: str) -> list[dict[str, Any]]:
    return [e for e in env.events() if e["kind"] == "metric" and e["source"] == source]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    (root / "pending").mkdir(parents=True)
    (root / "failed").mkdir()
    for i, size in enumerate((100, 250, 4000)):
        (root / "pending" / f"msg{i}.eml").write_bytes(b"x" * size)
    (root / "pending" / "lock.tmp").write_bytes(b"x" * 7)  # not matched by the pattern
    (root / "failed" / "bad.eml").write_bytes(b"y" * 33)
    return root


def test_a_third_party_monitor_runs_unmodified(env: Env, spool: Path) -> None:
    stats = env.tmp / "stats"
    stats.write_text("requests 1200\nversion 4.2.1\nuptime 9\n")
    env.write_config(
        NO_IMPLICIT
        + _monitor(
            "spool",
            "acme.spool_monitor",
            {"spool_dir": str(spool), "pattern": "*.eml", "states": "pending, failed", "stats_file": str(stats)},
        )
    )
    r = env.cli("run-monitor", "spool")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    env.ship()
    got = {(e["attrs"]["metric"], e["attrs"].get("state")): e for e in _metrics(env, "spool")}
    files = got[("acme.spool.files", "pending")]
    # The agent's monitor line: [module(id)] metric value extra_fields sorted.
    assert files["message"] == '[spool_monitor(spool)] acme.spool.files 3 env="prod" state="pending"'
    assert files["attrs"]["monitor"] == "spool_monitor" and files["attrs"]["metric_type"] == "gauge"
    assert got[("acme.spool.bytes", "pending")]["attrs"]["value"] == 4350
    assert got[("acme.spool.files", "failed")]["attrs"]["value"] == 1
    assert got[("acme.spool.bytes", "failed")]["attrs"]["value"] == 33
    assert got[("acme.app.requests", None)]["attrs"]["metric_type"] == "counter"  # declared cumulative
    assert got[("acme.app.version", None)]["attrs"]["value"] == "4.2.1"
    load = got[("acme.host.load1", None)]["attrs"]["value"]
    assert isinstance(load, float) and load >= 0
    assert len(got) == 7

    # The next run: the counter has a difference and a rate; a new file shows up.
    stats.write_text("requests 1500\nversion 4.2.1\n")
    (spool / "failed" / "worse.eml").write_bytes(b"z" * 10)
    r = env.cli("run-monitor", "spool")
    assert r.exit_code == 0, r.stderr
    env.ship()
    last = {(e["attrs"]["metric"], e["attrs"].get("state")): e["attrs"] for e in _metrics(env, "spool")[7:]}
    assert last[("acme.app.requests", None)]["difference"] == 300
    assert last[("acme.app.requests", None)]["rate"] > 0
    assert last[("acme.spool.files", "failed")]["value"] == 2


def test_extra_fields_are_dimensions_at_a_metric_store(env: Env, spool: Path, influxdb: InfluxDB) -> None:
    db = influxdb.create_db()
    env.write_config(
        NO_IMPLICIT
        + _monitor("spool", "acme.spool_monitor", {"spool_dir": str(spool), "pattern": "*.eml"})
        + f'[[sinks]]\ntype = "influxdb"\nurl = "{influxdb.url}"\ndatabase = "{db}"\n',
        sink=False,
    )
    assert env.cli("run-monitor", "spool").exit_code == 0
    r = env.cli("upload")
    assert r.exit_code == 0, r.stderr
    rows = influxdb.rows(db, 'SELECT * FROM "acme.spool.files" GROUP BY *')
    assert {(row["state"], row["env"], row["monitor"], row["value"]) for row in rows} == {
        ("pending", "prod", "spool", 3),
        ("failed", "prod", "spool", 1),
    }


def test_options_from_the_environment_and_missing_state_warns_once(
    env: Env, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SPOOL_ENV", "staging")  # the option's env_name, used when the config omits it
    env.write_config(
        NO_IMPLICIT + _monitor("spool", "acme.spool_monitor", {"spool_dir": str(spool), "states": "pending, retry"})
    )
    r = env.cli("run-monitor", "spool")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count("spool state directory") == 1
    assert f"shipctl: warning: monitor spool: spool state directory {spool / 'retry'} is missing" in r.stderr
    env.ship()
    states = {e["attrs"]["state"]: e["attrs"]["env"] for e in _metrics(env, "spool") if "state" in e["attrs"]}
    assert states == {"pending": "staging"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, 'bad configuration: Missing required field "spool_dir"'),
        ({"spool_dir": "relative/dir"}, "bad configuration: spool_dir must be an absolute path, got relative/dir"),
        (
            {"spool_dir": "/x", "max_files": 0},
            'bad configuration: Value of 0 in field "max_files" is invalid; minimum is 1',
        ),
        (
            {"spool_dir": "/x", "max_files": "lots"},
            'bad configuration: Could not parse value lots for field "max_files" as numeric type int',
        ),
        (
            {"spool_dir": "/x", "max_files": 2.5},
            'bad configuration: Prohibited conversion of config param "max_files" from float to int',
        ),
    ],
)
def test_bad_monitor_configuration_fails_that_monitor(env: Env, config: dict[str, Any], message: str) -> None:
    env.write_config(
        NO_IMPLICIT
        + _monitor("spool", "acme.spool_monitor", config)
        + '[[monitors]]\ntype = "shell"\nid = "other"\ncommand = "echo 5"\n'
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert f"shipctl: monitor spool: {message}" in r.stderr
    env.ship()
    assert _metrics(env, "spool") == []
    assert [e["attrs"]["value"] for e in _metrics(env, "other")] == [5]


def test_what_goes_wrong_is_reported_per_monitor_and_the_others_go_on(env: Env, spool: Path) -> None:
    marker = env.tmp / "stopped"
    env.write_config(
        NO_IMPLICIT
        + _monitor("gone", "nosuch_monitor")
        + _monitor("empty", "no_monitor_here")
        + _monitor("windows", "windows_only_monitor")
        + _monitor("server", "server_monitor")
        + _monitor("raises", "faulty_monitors", {"mode": "raise", "stop_marker": str(marker)})
        + _monitor("badvalue", "faulty_monitors", {"mode": "bad_value"})
        + _monitor("logs", "faulty_monitors", {"mode": "log_error"})
        + _monitor("exc", "faulty_monitors", {"mode": "exception"})
        + _monitor("spool", "acme.spool_monitor", {"spool_dir": str(spool), "states": "pending"})
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    err = r.stderr
    assert "monitor gone: cannot import nosuch_monitor: No module named 'nosuch_monitor'" in err
    assert "monitor empty: no_monitor_here defines no ScalyrMonitor subclass" in err
    assert "monitor windows: windows_only_monitor is not supported on this system: needs the Windows event log" in err
    assert (
        "monitor server: ListeningMonitor overrides run() and not gather_sample(): it is a long-running monitor" in err
    )
    assert "monitor raises: gather_sample failed: RuntimeError: the sensor is unplugged (faulty_monitors.py:" in err
    assert (
        "monitor badvalue: gather_sample failed: UnsupportedValueType: metric 'faulty.list' has a value of type list"
        in err
    )
    assert "monitor logs: logged: sensor t1 answered garbage [error_code=badSensor]" in err
    assert "shipctl: warning: monitor logs: careful" in err
    assert "monitor exc: logged: lookup failed: KeyError: 'missing' (faulty_monitors.py:" in err
    assert marker.read_text() == "stopped"  # stop() ran after the failed sample
    env.ship()
    # Values emitted before a failure are kept; the healthy monitor delivered everything.
    assert [e["attrs"]["metric"] for e in _metrics(env, "raises")] == ["faulty.before"]
    assert {e["attrs"]["metric"] for e in _metrics(env, "spool")} >= {"acme.spool.files", "acme.host.load1"}
    status = env.cli("status", "--json")
    assert status.exit_code == 0, status.stderr
    text = status.stdout
    for needle in ("No module named 'nosuch_monitor'", "the sensor is unplugged", "answered garbage"):
        assert needle in text


def test_a_hanging_gather_sample_is_abandoned_at_its_timeout(
    env: Env, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shipctl.monitors.runner as rm

    monkeypatch.setattr(rm, "GRACE", 0.3)
    env.write_config(
        NO_IMPLICIT
        + _monitor("stuck", "faulty_monitors", {"mode": "hang"}, timeout=1)
        + _monitor("spool", "acme.spool_monitor", {"spool_dir": str(spool), "states": "pending"})
    )
    started = time.monotonic()
    r = env.cli("run-monitor")
    assert time.monotonic() - started < 10
    assert r.exit_code == 65
    assert "monitor stuck: did not finish within 1.3 s; abandoned so the run could go on" in r.stderr
    env.ship()
    assert {e["attrs"]["metric"] for e in _metrics(env, "spool")} >= {"acme.spool.files"}


def test_a_monitor_keeping_its_place_in_a_checkpoint_across_runs(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWTH_HOST", "web-7")
    logs = env.tmp / "app"
    (logs / "deep").mkdir(parents=True)
    (logs / "a.log").write_text("1\n2\n3\n")
    (logs / "deep" / "b.log").write_text("x\n")
    checkpoint = env.tmp / "growth.json"
    env.write_config(
        NO_IMPLICIT
        + _monitor("growth", "growth_monitor", {"paths": str(logs / "**" / "*.log"), "checkpoint": str(checkpoint)})
    )

    def sample() -> dict[str, Any]:
        r = env.cli("run-monitor", "growth")
        assert r.exit_code == 0, r.stderr
        env.ship()
        return {(e["attrs"]["metric"], e["attrs"].get("file")): e["attrs"] for e in _metrics(env, "growth")}

    first = sample()
    assert first[("growth.lines", "a.log")]["value"] == 3 and first[("growth.lines", "b.log")]["value"] == 1
    assert first[("growth.lines", "a.log")]["host"] == "web-7"
    assert json.loads(checkpoint.read_text())["total"] == 4
    with (logs / "a.log").open("a") as fh:
        fh.write("4\n5\n")
    second = sample()
    assert second[("growth.lines", "a.log")]["value"] == 2 and second[("growth.lines", "b.log")]["value"] == 0
    assert second[("growth.total_lines", None)]["value"] == 6
    assert second[("growth.total_lines", None)]["difference"] == 2  # declared cumulative: a counter


def test_an_imported_secret_the_monitor_repeats_is_masked(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-Pa55word-0042"
    monkeypatch.setenv("ACME_DB_PASSWORD", secret)
    env.write_config(
        'import_vars = ["ACME_DB_PASSWORD"]\n'
        + NO_IMPLICIT
        + _monitor("leaky", "faulty_monitors", {"mode": "leak", "password": "$ACME_DB_PASSWORD"})
    )
    r = env.cli("run-monitor", "leaky")
    assert r.exit_code == 65
    assert "monitor leaky: gather_sample failed: RuntimeError: login refused for password ****0042" in r.stderr
    assert "warning: monitor leaky: logging in as admin with ****0042" in r.stderr
    status = env.cli("status", "--json")
    log = env.state.with_name("shipctl.log")
    for text in (r.stderr, status.stdout, env.state.read_bytes().decode("latin-1"), log.read_text()):
        assert secret not in text


def test_odd_names_values_and_log_lines(env: Env) -> None:
    env.write_config(NO_IMPLICIT + _monitor("odd", "faulty_monitors", {"mode": "odd_values"}))
    r = env.cli("run-monitor", "odd")
    assert r.exit_code == 0, r.stderr
    assert "monitor odd: metric faulty.nan: value nan is not a finite number; dropped" in r.stderr
    assert 'monitor odd: invalid metric name "9 bad name!" reported as "sa_9_bad_name_"' in r.stderr
    assert 'monitor odd: invalid extra field name "bad key" reported as "bad_key"' in r.stderr
    env.ship()
    got = {e["attrs"]["metric"]: e for e in _metrics(env, "odd")}
    assert set(got) == {"faulty.before", "sa_9_bad_name_", "faulty.override", "faulty.huge"}
    assert got["faulty.huge"]["attrs"]["value"] == float(2**64 - 1)  # beyond 64 bits: a float, as sinks need
    assert got["sa_9_bad_name_"]["attrs"]["bad_key"] == "x" and got["sa_9_bad_name_"]["attrs"]["ok"] is True
    assert got["faulty.override"]["attrs"]["monitor"] == "faulty_monitors"  # the core attribute stays
    assert 'monitor="other-instance"' in got["faulty.override"]["message"]
    # info(..., emit_to_metric_log=True) is a line of the monitor's log, queued as a log event.
    logs = [e for e in env.events() if e["kind"] == "log" and e["source"] == "odd"]
    assert [e["message"] for e in logs] == ["[faulty_monitors(odd)] checked 3 sensors"]


def test_config_keys_the_entry_itself_sets_are_refused(env: Env) -> None:
    env.write_config(NO_IMPLICIT + _monitor("spool", "acme.spool_monitor", {"spool_dir": "/x", "id": "other"}))
    r = env.cli("run-monitor", "spool")
    assert r.exit_code == 78
    assert f"{env.config}: monitors[0].config.id: set by the monitor's id, not inside config" in r.stderr
    env.write_config(NO_IMPLICIT + _monitor("spool", "acme spool"))
    r = env.cli("run-monitor", "spool")
    assert r.exit_code == 78
    assert "monitors[0].module: expected a dotted module name" in r.stderr


def test_module_paths_relative_to_the_config_and_joined_with_colons(env: Env, spool: Path) -> None:
    own = env.tmp / "mymonitors"
    own.mkdir()
    (own / "tmp_count_monitor.py").write_text(
        textwrap.dedent(
            """\
            import os

            from scalyr_agent import ScalyrMonitor


            class TmpCountMonitor(ScalyrMonitor):
                def _initialize(self):
                    self.__dir = self._config.get("path", required_field=True)
                    self.__scale = self._config.get("scale", default=1.0, convert_to=float, max_value=10)

                def gather_sample(self):
                    n = len(os.listdir(self.__dir))
                    self._logger.emit_value("tmp.entries", n * self.__scale, extra_fields={"dir": self.__dir})
                    self._logger.emit_value("tmp.interval", self._sample_interval_secs)
            """
        )
    )
    env.write_config(
        NO_IMPLICIT
        + "[[monitors]]\n"
        + 'type = "scalyr_monitor"\nid = "count"\nmodule = "tmp_count_monitor"\nsample_interval = 120\n'
        + f"module_paths = {json.dumps('/nonexistent' + os.pathsep + 'mymonitors')}\n"
        + f"config = {{ path = {json.dumps(str(spool / 'pending'))}, scale = 2 }}\n"
    )
    r = env.cli("run-monitor", "count")
    assert r.exit_code == 0, r.stderr
    env.ship()
    got = {e["attrs"]["metric"]: e["attrs"]["value"] for e in _metrics(env, "count")}
    assert got == {"tmp.entries": 8.0, "tmp.interval": 120.0}  # 4 entries, scale converted from the int 2


def test_ad_hoc_print(env: Env, spool: Path) -> None:
    env.write_config(NO_IMPLICIT)
    r = env.cli(
        "run-monitor",
        "scalyr_monitor",
        "--opt",
        "module=acme.spool_monitor",
        "--opt",
        f"module_paths=[{json.dumps(str(MONITORS))}]",
        "--opt",
        f"config={{ spool_dir = {json.dumps(str(spool))}, states = 'failed' }}",
        "--print",
    )
    assert r.exit_code == 0, r.stderr
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert {(p["attrs"]["metric"], p["attrs"].get("state")) for p in printed} >= {("acme.spool.files", "failed")}


def test_a_real_scalyr_agent_package_wins_over_the_shim(tmp_path: Path) -> None:
    """When ``scalyr_agent`` is importable (here: from module_paths), shipctl does not put its own on the path:
    the monitor subclasses the real base class, and shipctl still drives it (its own logger is passed in)."""
    real = tmp_path / "agent"
    (real / "scalyr_agent").mkdir(parents=True)
    (real / "scalyr_agent" / "__init__.py").write_text(
        textwrap.dedent(
            """\
            REAL = True


            class ScalyrMonitor:
                def __init__(self, monitor_config, logger, sample_interval_secs=None, global_config=None):
                    self._config = dict(monitor_config)
                    self._logger = logger
                    self._initialize()

                def _initialize(self):
                    pass

                def gather_sample(self):
                    pass

                def stop(self, wait_on_join=True, join_timeout=5):
                    pass
            """
        )
    )
    (real / "scalyr_agent" / "scalyr_monitor.py").write_text("from scalyr_agent import ScalyrMonitor\n")
    (real / "which_monitor.py").write_text(
        textwrap.dedent(
            """\
            import scalyr_agent
            from scalyr_agent import ScalyrMonitor


            class WhichMonitor(ScalyrMonitor):
                def gather_sample(self):
                    shim = hasattr(scalyr_agent, "SHIPCTL_COMPAT")
                    self._logger.emit_value("which.real", getattr(scalyr_agent, "REAL", False), {"shim": shim})
            """
        )
    )
    cfg = tmp_path / "shipctl.toml"
    cfg.write_text(
        NO_IMPLICIT
        + '[[monitors]]\ntype = "scalyr_monitor"\nid = "which"\nmodule = "which_monitor"\n'
        + f"module_paths = [{json.dumps(str(real))}]\n"
    )
    # A process of its own: the real package must not stay in this test process's sys.modules.
    r = subprocess.run(
        [sys.executable, "-m", "shipctl", "run-monitor", "which", "--print", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert r.returncode == 0, r.stderr
    (ev,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert ev["attrs"]["value"] is True and ev["attrs"]["shim"] is False


# --- the config rules, without a run ------------------------------------------------------------------------


def test_convert_config_param_follows_the_agent() -> None:
    assert convert_config_param("f", "TRUE", bool) is True
    assert convert_config_param("f", "yes", bool) is False  # only "true" is true, as in the agent
    assert convert_config_param("f", 3, float) == 3.0
    assert convert_config_param("f", "12", int) == 12
    assert convert_config_param("f", 7, str) == "7"
    assert convert_config_param("f", '["a", "b"]', JsonArray) == ["a", "b"]
    assert convert_config_param("f", '{"a": 1}', JsonObject) == {"a": 1}
    assert convert_config_param("f", "a, 'b' ,c", ArrayOfStrings) == ["a", "b", "c"]
    assert convert_config_param("f", ["x", "y"], ArrayOfStrings) == ["x", "y"]
    for value, to in ((1.5, int), (1, bool), ({"a": 1}, int), (["a", 1], ArrayOfStrings), ("{", JsonObject)):
        with pytest.raises(Exception) as info:
            convert_config_param("f", value, to)
        assert type(info.value).__name__ == "BadConfiguration"


def test_monitor_config_get(monkeypatch: pytest.MonkeyPatch) -> None:
    config = MonitorConfig({"module": "m", "n": "5", "table": {"k": [1, 2]}, "empty": None})
    assert config.get("n", convert_to=int, min_value=1, max_value=9) == 5
    assert isinstance(config.get("table"), JsonObject) and isinstance(config["table"]["k"], JsonArray)
    assert config.get("absent", default="d") == "d"
    monkeypatch.setenv("SCALYR_ABSENT", "from-env")  # any field falls back to SCALYR_<FIELD>, as in the agent
    assert config.get("absent", default="d") == "from-env"
    with pytest.raises(BadMonitorConfiguration, match='Missing required field "needed"'):
        config.get("needed", required_field=True)
    with pytest.raises(BadMonitorConfiguration, match="maximum is 4"):
        config.get("n", convert_to=int, max_value=4)
    assert "n" in config and len(config) == 4 and sorted(config.keys()) == ["empty", "module", "n", "table"]
