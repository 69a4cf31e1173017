"""An agent.json's own ScalyrMonitor (named by ``module``, found through ``additional_monitor_module_paths``) runs
through ``shipctl run`` unmodified, and its metrics reach a strict addEvents receiver (tracker issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipctl.cli import app
from tests.receiver import KEY, Receiver

MONITORS = Path(__file__).parent / "scalyr_monitors"


def test_agent_json_runs_a_scalyr_monitor_by_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("SPOOL_STATES", "")  # empty: the import_vars default applies, as in the agent
    spool = tmp_path / "spool"
    for state in ("pending", "failed"):
        (spool / state).mkdir(parents=True)
    for i, size in enumerate((100, 250, 4000)):
        (spool / "pending" / f"msg{i}.eml").write_bytes(b"x" * size)
    (spool / "failed" / "bad.eml").write_bytes(b"y" * 33)
    stats = tmp_path / "stats"
    stats.write_text("requests 1200\nversion 4.2.1\n")
    conf = tmp_path / "etc" / "agent.json"
    (conf.parent / "agent.d").mkdir(parents=True)
    with Receiver() as r:
        conf.write_text(
            "// as a Scalyr user has it\n{\n"
            '  import_vars: [ "SCALYR_API_KEY", { var: "SPOOL_STATES", default: "pending, failed" } ],\n'
            f'  api_key: "$SCALYR_API_KEY", scalyr_server: "{r.url}", allow_http: true,\n'
            f'  additional_monitor_module_paths: "{MONITORS}",\n'
            "  implicit_metric_monitor: false, implicit_agent_process_metrics_monitor: false,\n"
            "  implicit_agent_log_collection: false,\n"
            "}\n"
        )
        (conf.parent / "agent.d" / "spool.json").write_text(
            "{\n"
            '  import_vars: [ { var: "SPOOL_STATES", default: "pending, failed" } ],\n'
            "  monitors: [ {\n"
            '    module: "acme.spool_monitor", id: "spool", sample_interval: 60,\n'
            f'    spool_dir: "{spool}", pattern: "*.eml", states: "$SPOOL_STATES", stats_file: "{stats}"\n'
            "  } ]\n"
            "}\n"
        )
        res = CliRunner().invoke(app, ["run", "-c", str(conf)])
        assert res.exit_code == 0, res.stderr
        assert r.violations == [] and r.misordered == []
        events = [e for e in r.events if e["thread"] == "spool" or e["attrs"].get("monitor") == "spool_monitor"]
        infos = r.session_infos
    got = {(e["attrs"]["metric"], e["attrs"].get("state")): e["attrs"] for e in events}
    assert got[("acme.spool.files", "pending")]["value"] == 3
    assert got[("acme.spool.bytes", "pending")]["value"] == 4350
    assert got[("acme.spool.files", "failed")]["value"] == 1
    assert got[("acme.app.requests", None)]["metric_type"] == "counter"  # declared cumulative by the module
    assert got[("acme.app.version", None)]["value"] == "4.2.1"
    assert got[("acme.spool.files", "pending")]["message"].startswith("[spool_monitor(spool)] acme.spool.files 3 ")
    assert infos and all(json.dumps(i).find(KEY) < 0 for i in infos)
