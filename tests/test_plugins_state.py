"""What python plugins keep between runs, in the state file: rate transforms across runs (first sample, reset,
gap, float), the key/value store (surviving, expiring, untouched by --print), and the (plugin, resource) lock that
keeps an overrunning plugin from being started twice."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from shipctl.pyplugins import locks
from tests.conftest import Env
from tests.plugin_helpers import configure, metric_events, run_at, upload, write

T0 = 1_800_000_000.0
RESOURCES = """
[[monitors.resources]]
resource_site = "dc1"
resource_class = "network"
resource_subclass = "router"
resource_type = "x"
resource_id = "{}"
resource_endpoint = "10.0.0.1"
"""


def kv_rows(env: Env, plugin: str) -> list[tuple[str, str, str, float | None]]:
    with sqlite3.connect(env.state) as conn:
        return conn.execute(
            "SELECT space, key, value, expires FROM plugin_kv WHERE plugin = ? ORDER BY space, key", (plugin,)
        ).fetchall()


# --- rate transforms ----------------------------------------------------------------------------------------


def test_rates_across_runs_with_a_reset_a_float_and_a_gap(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    counters = env.tmp / "counters"
    counters.mkdir()
    write(
        env.tmp / "net.py",
        """
        from pathlib import Path
        from shipctl.pyplugins import MetricsGroup

        def poll(ctx):
            value = int((Path(ctx.config["counters"]) / ctx.resource.resource_id).read_text())
            g = MetricsGroup("net", 60, {"ifname": "eth0"})
            return [g.counter("bytes_in", value).counter("errors", 0)]
        """,
    )
    configure(
        env,
        f"""
        [[monitors]]
        type = "plugin"
        id = "net"
        module = "{env.tmp}/net.py"
        execute_frequency = 60
        transforms = {{ bytes = "rate:net:bytes_in" }}
        config = {{ counters = "{counters}" }}
        """
        + RESOURCES.format("r1")
        + RESOURCES.format("r2"),
    )
    steps = [  # (seconds after T0, r1's counter); r2's goes up 30 a minute throughout
        (0, 100),  # first sample: no rate
        (60, 160),  # 60 in 60 s
        (120, 40),  # went backwards (a reset): no rate, 40 is the new reference
        (180, 99),  # 59 in 60 s: 0.983..., kept as a float (Panoptes would say 0)
        (361, 200),  # 181 s > 3 x 60 s since the last sample: no rate
        (541, 380),  # exactly 3 x 60 s: a rate again
    ]
    for i, (t, v) in enumerate(steps):
        (counters / "r1").write_text(str(v))
        (counters / "r2").write_text(str(1000 + 30 * i))
        run_at(env, T0 + t, monkeypatch)
    upload(env)
    events = [e["attrs"] for e in metric_events(env, "net")]
    rates = {
        rid: [a["value"] for a in events if a["resource_id"] == rid and a.get("transform") == "rate"]
        for rid in ("r1", "r2")
    }
    assert rates["r1"] == [1.0, 59 / 60, 1.0]
    assert rates["r2"] == [0.5, 0.5, 0.5, 30 / 180]  # its own series: r1's reset and values do not matter
    assert all(
        a["metric"] == "bytes_in" and a["metric_type"] == "gauge" for a in events if a.get("transform") == "rate"
    )
    counters_seen = [a["value"] for a in events if a["resource_id"] == "r1" and a["metric"] == "bytes_in"]
    assert [v for v in counters_seen if isinstance(v, int)] == [v for _, v in steps]  # the counters themselves stay
    assert not [a for a in events if a["metric"] == "errors" and a["metric_type"] == "gauge"]  # not listed: no rate
    rows = [r for r in kv_rows(env, "net") if r[0] == "rate"]
    assert len(rows) == 2 and json.loads(rows[0][2]) == [380, T0 + 541]


# --- key/value store ----------------------------------------------------------------------------------------

KV_PLUGIN = """
from shipctl.pyplugins import MetricsGroup

def poll(ctx):
    runs = int(ctx.kv.get("runs") or 0) + 1
    ctx.kv.set("runs", str(runs), expire=300)
    ctx.kv.set_add("seen", ctx.resource.resource_id)
    g = MetricsGroup("kv").gauge("runs", runs).gauge("ttl", ctx.kv.ttl("runs"))
    return [g.gauge("members", len(ctx.kv.set_members("seen"))).gauge("seen_ttl", ctx.kv.ttl("seen"))]
"""


def test_kv_store_survives_between_runs_and_expires(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    write(env.tmp / "kvp.py", KV_PLUGIN)
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "kvp"\nmodule = "{env.tmp}/kvp.py"\n' + RESOURCES.format("a"))

    def values(result: object) -> dict[str, float]:
        (r,) = result.results  # type: ignore[attr-defined]
        assert r.error is None, r.error
        return {e["a"]["metric"]: e["a"]["value"] for e in r.events}

    assert values(run_at(env, T0, monkeypatch))["runs"] == 1
    assert values(run_at(env, T0 + 60, monkeypatch)) == {"runs": 2, "ttl": 300, "members": 1, "seen_ttl": -1}
    # --print (queue=False) runs the plugin on the stored state but keeps nothing it wrote
    assert values(run_at(env, T0 + 120, monkeypatch, queue=False))["runs"] == 3
    assert values(run_at(env, T0 + 120, monkeypatch))["runs"] == 3
    assert ("kv", "runs", "3", T0 + 120 + 300) in kv_rows(env, "kvp")
    # 300 s after the last set() the key is gone (the set, without expiry, stays)
    assert values(run_at(env, T0 + 420, monkeypatch)) == {"runs": 1, "ttl": 300, "members": 1, "seen_ttl": -1}
    assert ("kv", "seen", '["a"]', None) in kv_rows(env, "kvp")


def test_a_panoptes_plugins_kv_keys_expire_after_a_week_by_default(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        env.tmp / "pan.py",
        """
        from yahoo_panoptes.polling.polling_plugin import PanoptesPollingPlugin
        from yahoo_panoptes.framework.metrics import PanoptesMetricsGroupSet, PanoptesMetricsGroup, PanoptesMetric, \\
            PanoptesMetricType

        class KvPlugin(PanoptesPollingPlugin):
            def run(self, context):
                context.kv.set("k", "v")
                old = context.kv.getset("g", "new")
                group = PanoptesMetricsGroup(context.data, "kv", 60)
                group.add_metric(PanoptesMetric("ttl", context.kv.ttl("k"), PanoptesMetricType.GAUGE))
                group.add_metric(PanoptesMetric("had_old", int(old is not None), PanoptesMetricType.GAUGE))
                group.add_metric(PanoptesMetric("keys", len(context.kv.find_keys("*")), PanoptesMetricType.GAUGE))
                result = PanoptesMetricsGroupSet()
                result.add(group)
                return result
        """,
    )
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "pan"\nmodule = "{env.tmp}/pan.py"\n' + RESOURCES.format("a"))
    run_at(env, T0, monkeypatch)
    (r,) = run_at(env, T0 + 60, monkeypatch).results
    assert {e["a"]["metric"]: e["a"]["value"] for e in r.events} == {"ttl": 604800, "had_old": 1, "keys": 2}


# --- one run at a time per (plugin, resource) ---------------------------------------------------------------

SLOW_PLUGIN = """
import os
import time
from pathlib import Path
from shipctl.pyplugins import MetricsGroup

def poll(ctx):
    d = Path(ctx.config["dir"])
    with open(d / "calls", "a") as fh:
        fh.write(f"{ctx.resource.resource_id} {os.getpid()}\\n")
    if ctx.resource.resource_id == "slow":
        give_up = time.monotonic() + 60
        while not (d / "release").exists() and time.monotonic() < give_up:
            time.sleep(0.02)
    return [MetricsGroup("t").gauge("ok", 1)]
"""


def _lock_free(env: Env, plugin: str, key: str) -> bool:
    held = locks.try_lock(env.state, plugin, key)
    if isinstance(held, locks.Busy):
        return False
    held.release()
    return True


def test_overlapping_runs_never_start_a_plugin_twice_on_a_resource(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    d = env.tmp / "slow"
    d.mkdir()
    write(env.tmp / "slowp.py", SLOW_PLUGIN)
    configure(
        env,
        f"""
        [[monitors]]
        type = "plugin"
        id = "slowp"
        module = "{env.tmp}/slowp.py"
        timeout = 0.5
        config = {{ dir = "{d}" }}
        """
        + RESOURCES.format("slow")
        + RESOURCES.format("fast"),
    )
    # Run 1: "slow" overruns the plugin's timeout; the run reports it and goes on, the plugin keeps running.
    (r1,) = run_at(env, T0, monkeypatch).results
    assert "resource slow: plugin slowp did not finish within 0.5 s" in (r1.error or "")
    # Run 2 in this process, and run 3 in another one, start while it still runs: both skip "slow" only.
    (r2,) = run_at(env, T0 + 60, monkeypatch).results
    assert r2.error is None
    assert any(
        w.startswith(f"resource slow: skipped, the plugin is still running on it (pid {os.getpid()}")
        for w in r2.warnings
    )
    p3 = env.proc("run-monitor", "slowp")
    assert p3.returncode == 0, p3.stderr
    assert (
        f"warning: monitor slowp: resource slow: skipped, the plugin is still running on it (pid {os.getpid()}"
        in p3.stderr
    )
    calls = (d / "calls").read_text().split()[::2]
    assert calls.count("slow") == 1 and calls.count("fast") == 3
    # Once it ends, the next run starts it again.
    (d / "release").write_text("")
    key = "plugin||site|dc1|class|network|subclass|router|type|x|id|slow|endpoint|10.0.0.1"
    give_up = time.monotonic() + 30
    while not _lock_free(env, "slowp", key) and time.monotonic() < give_up:
        time.sleep(0.02)
    (r4,) = run_at(env, T0 + 120, monkeypatch).results
    assert r4.error is None and not r4.warnings
    calls = (d / "calls").read_text().split()[::2]
    assert calls.count("slow") == 2 and calls.count("fast") == 4
    upload(env)
    ok = [e["attrs"]["resource_id"] for e in metric_events(env, "slowp")]
    assert sorted(ok) == ["fast"] * 4 + ["slow"]  # run 1's late result for "slow" is not queued


def test_locks_are_per_plugin_and_resource_in_a_private_directory(env: Env) -> None:
    env.state.parent.mkdir(mode=0o700)
    held = locks.try_lock(env.state, "p", "k")
    assert isinstance(held, locks.Held)
    assert isinstance(locks.try_lock(env.state, "p", "k"), locks.Busy)
    other = locks.try_lock(env.state, "p", "other")
    assert isinstance(other, locks.Held)
    another_plugin = locks.try_lock(env.state, "q", "k")
    assert isinstance(another_plugin, locks.Held)
    d = locks.lock_dir(env.state)
    assert d.parent == env.state.parent and d.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in d.iterdir()} == {0o600}
    for h in (held, other, another_plugin):
        h.release()
    assert isinstance(locks.try_lock(env.state, "p", "k"), locks.Held)
