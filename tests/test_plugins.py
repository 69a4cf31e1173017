"""Python plugins: the Panoptes guide's tutorial plugin run unmodified from its descriptor, the JSON it documents,
the event shape, shipctl's own plugin API, what is checked (with errors naming the plugin), and where plugins
are found."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env
from tests.plugin_helpers import (
    TUTORIAL,
    configure,
    groups,
    metric_events,
    run_at,
    tutorial_files,
    upload,
    write,
)

T0 = 1_800_000_000.0


def _tutorial_config(env: Env, descriptor: Path, resources: Path, output: str = "panoptes") -> None:
    configure(
        env,
        f"""
        [[monitors]]
        type = "plugin"
        id = "tutorial"
        descriptor = "{descriptor}"
        resources = "{resources}"
        output = "{output}"
        """,
    )


def _as_documented(got: dict[str, Any], documented: dict[str, Any]) -> str:
    """The group with its creation timestamps replaced by the guide's (after checking they are Panoptes-shaped
    floats), serialised in order, so key order counts too."""
    for ts in (got["metrics_group_creation_timestamp"], got["resource"]["resource_creation_timestamp"]):
        assert isinstance(ts, float) and abs(ts - time.time()) < 3600
    assert round(got["metrics_group_creation_timestamp"], 3) == got["metrics_group_creation_timestamp"]
    got = json.loads(json.dumps(got))
    got["metrics_group_creation_timestamp"] = documented["metrics_group_creation_timestamp"]
    got["resource"]["resource_creation_timestamp"] = documented["resource"]["resource_creation_timestamp"]
    for mine, theirs in zip(got["metrics"], documented["metrics"], strict=False):
        assert round(mine["metric_creation_timestamp"], 3) == mine["metric_creation_timestamp"]
        mine["metric_creation_timestamp"] = theirs["metric_creation_timestamp"]
    return json.dumps(got, indent=4)


# --- the guide, stage by stage ------------------------------------------------------------------------------


def test_tutorial_skeleton_runs_against_the_filtered_resource_and_returns_an_empty_set(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage1_skeleton")
    _tutorial_config(env, descriptor, TUTORIAL / "localhost.json")
    r = env.cli("run-monitor", "tutorial")
    assert r.exit_code == 0 and r.stderr == ""
    upload(env)
    assert metric_events(env) == []  # "this plugin will produce an empty set"
    (mon,) = json.loads(env.cli("status", "--json").stdout)["monitors"]
    assert (mon["id"], mon["runs"], mon["errors"], mon["samples"]) == ("tutorial", 1, 0, 0)


def test_tutorial_empty_group_is_the_documented_json(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage2_empty_group")
    _tutorial_config(env, descriptor, TUTORIAL / "test_resources.json")
    assert env.cli("run-monitor", "tutorial").exit_code == 0
    upload(env)
    (got,) = groups(env)  # another_device is filtered out by resource_id = "tutorial_device"
    documented = json.loads((TUTORIAL / "empty_group.json").read_text())
    assert _as_documented(got, documented) == json.dumps(documented, indent=4)


def test_tutorial_dimension_counter_and_gauge_are_the_documented_json(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics")
    _tutorial_config(env, descriptor, TUTORIAL / "test_resources.json")
    assert env.cli("run-monitor", "tutorial").exit_code == 0
    upload(env)
    (event,) = metric_events(env)
    got = json.loads(str(event["message"]))
    documented = json.loads((TUTORIAL / "metrics.json").read_text())
    assert _as_documented(got, documented) == json.dumps(documented, indent=4)
    assert event["attrs"]["group_type"] == "example" and event["attrs"]["resource_id"] == "tutorial_device"


def test_tutorial_metrics_as_events(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics")
    _tutorial_config(env, descriptor, TUTORIAL / "localhost.json", output="events")
    assert env.cli("run-monitor", "tutorial").exit_code == 0
    upload(env)
    got = {e["attrs"]["metric"]: e["attrs"] for e in metric_events(env)}
    resource = {
        "resource_site": "local",
        "resource_class": "tutorial",
        "resource_subclass": "host",
        "resource_type": "generic",
        "resource_id": "tutorial_device",
        "resource_endpoint": "localhost",
    }
    common = {"monitor": "python_plugin", "group_type": "example", "cpu_no": "5", **resource}
    assert got["cpu_load"] == {
        "metric": "cpu_load",
        "value": 0.3,
        "metric_type": "gauge",
        **common,
        "serverHost": got["cpu_load"]["serverHost"],
    }
    assert got["context_switch_count"]["metric_type"] == "counter"
    assert got["context_switch_count"]["value"] == 50
    assert set(got) == {"cpu_load", "context_switch_count"}


def test_tutorial_with_its_rate_transform(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guide's last descriptor: [transforms] example = rate:example:context_switch_count, Module under
    # .../tutorial_plugin/tutorial_polling_plugin.py (not here: the file beside the descriptor is used).
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics", "tutorial_plugin_rate.panoptes-plugin")
    _tutorial_config(env, descriptor, TUTORIAL / "test_resources.json")
    run_at(env, T0, monkeypatch)
    run_at(env, T0 + 60, monkeypatch)
    upload(env)
    first, second = groups(env)
    documented = json.loads((TUTORIAL / "metrics.json").read_text())
    assert _as_documented(first, documented) == json.dumps(documented, indent=4)  # first sample: no rate yet
    assert [(m["metric_name"], m["metric_type"], m["metric_value"]) for m in second["metrics"]] == [
        ("context_switch_count", "gauge", 0.0),  # the counter stayed at 50: 0 per second, as a float
        ("cpu_load", "gauge", 0.3),
        ("context_switch_count", "counter", 50),
    ]


def test_tutorial_against_the_guides_localhost_json(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage2_empty_group")
    _tutorial_config(env, descriptor, TUTORIAL / "localhost.json")
    assert env.cli("run-monitor", "tutorial").exit_code == 0
    upload(env)
    (got,) = groups(env)
    assert got["resource"] == {
        "resource_site": "local",
        "resource_class": "tutorial",
        "resource_subclass": "host",
        "resource_type": "generic",
        "resource_id": "tutorial_device",
        "resource_endpoint": "localhost",
        "resource_metadata": {"_resource_ttl": "900"},
        "resource_creation_timestamp": 1512629517.03121,  # a string in the file, a float as Panoptes reads it
        "resource_plugin": "plugin_discovery_from_json_file",
    }


# --- the compatibility package -------------------------------------------------------------------------------


def test_yahoo_panoptes_is_importable_only_where_plugins_run(env: Env) -> None:
    plain = subprocess.run([sys.executable, "-c", "import yahoo_panoptes"], capture_output=True, text=True)
    assert plain.returncode == 1 and "No module named 'yahoo_panoptes'" in plain.stderr
    code = (
        "from shipctl.pyplugins.loader import enable_panoptes_compat\n"
        "assert enable_panoptes_compat()\n"
        "import yahoo_panoptes\n"
        "print(yahoo_panoptes.SHIPCTL_COMPAT)\n"
    )
    compat = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert compat.returncode == 0 and compat.stdout.strip() == "True", compat.stderr


def test_a_real_yahoo_panoptes_wins_over_the_compatibility_package(env: Env) -> None:
    real = write(env.tmp / "site" / "yahoo_panoptes" / "__init__.py", "WHICH = 'real'\n")
    write(
        env.tmp / "which.py",
        """
        import yahoo_panoptes
        from shipctl.pyplugins import MetricsGroup

        def poll(ctx):
            return [MetricsGroup("impl", 60, {"which": getattr(yahoo_panoptes, "WHICH", "compat")}).gauge("one", 1)]
        """,
    )
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "which"\nmodule = "{env.tmp}/which.py"\n')
    for pythonpath, expected in ((None, "compat"), (str(real.parent.parent), "real")):
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if pythonpath:
            environ["PYTHONPATH"] = pythonpath
        r = subprocess.run(
            [sys.executable, "-m", "shipctl", "run-monitor", "which", "--print", "-c", str(env.config)],
            capture_output=True,
            text=True,
            env=environ,
        )
        assert r.returncode == 0, r.stderr
        (ev,) = [json.loads(line) for line in r.stdout.splitlines()]
        assert ev["attrs"]["which"] == expected


# --- shipctl's own API, configured in TOML -------------------------------------------------------------------


def test_own_api_function_with_config_secrets_and_inline_resources(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_TOKEN", "s3cret-token-value")
    write(
        env.tmp / "plugins" / "ifaces.py",
        """
        from shipctl.pyplugins import MetricsGroup

        def poll(ctx):
            r = ctx.resource
            token = ctx.secrets.get_by_site("token", r.resource_site)
            g = MetricsGroup("interface", dimensions={"ifname": ctx.config["ifname"]})
            g.counter("bytes_in", 1000 + len(r.resource_id)).gauge("token_ok", int(token == "s3cret-token-value"))
            return [g, {"group_type": "plugin", "metrics": [{"name": "freq", "value": ctx.execute_frequency}]}]
        """,
    )
    env.write_config(
        """
        import_vars = ["ROUTER_TOKEN"]
        [agent]
        implicit_metric_monitor = false
        implicit_agent_process_metrics_monitor = false
        [[monitors]]
        type = "plugin"
        id = "ifaces"
        module = "plugins/ifaces.py"
        execute_frequency = 120
        config = { ifname = "eth0" }
        secrets = { "token:dc1" = "$ROUTER_TOKEN" }
        [[monitors.resources]]
        resource_site = "dc1"
        resource_class = "network"
        resource_subclass = "switch"
        resource_type = "x"
        resource_id = "sw1"
        resource_endpoint = "10.0.0.1"
        [[monitors.resources]]
        resource_site = "dc2"
        resource_class = "network"
        resource_subclass = "switch"
        resource_type = "x"
        resource_id = "sw22"
        resource_endpoint = "10.0.0.2"
        """
    )
    assert env.cli("run-monitor", "ifaces").exit_code == 0
    upload(env)
    got = sorted((e["attrs"]["resource_id"], e["attrs"]["metric"], e["attrs"]["value"]) for e in metric_events(env))
    assert got == [
        ("sw1", "bytes_in", 1003),
        ("sw1", "freq", 120.0),
        ("sw1", "token_ok", 1),
        ("sw22", "bytes_in", 1004),
        ("sw22", "freq", 120.0),
        ("sw22", "token_ok", 0),  # no secret for dc2 (and no default)
    ]
    assert all(e["attrs"]["ifname"] == "eth0" for e in metric_events(env) if e["attrs"]["group_type"] == "interface")
    check = env.cli("check-config")
    assert check.exit_code == 0 and "s3cret-token-value" not in check.stdout


def test_the_execute_frequency_is_the_schedule(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics")
    descriptor.write_text(descriptor.read_text().replace("execute_frequency = 60", "execute_frequency = 300"))
    _tutorial_config(env, descriptor, TUTORIAL / "localhost.json")
    ran = [t for t in (0, 60, 240, 300, 360, 600) if run_at(env, T0 + t, monkeypatch, due_only=True).results]
    assert ran == [0, 300, 600]
    st = {m["id"]: m for m in json.loads(env.cli("status", "--json").stdout)["monitors"]}
    assert st["tutorial"]["runs"] == 3


def test_plugins_found_by_name_in_plugin_dirs(env: Env) -> None:
    d = env.tmp / "etc" / "plugins"
    tutorial_files(d / "tutorial", "stage3_metrics")
    write(
        d / "uptime.py",
        """
        from shipctl.pyplugins import MetricsGroup

        class Uptime:
            def run(self, context):
                return [MetricsGroup("uptime").gauge("seconds", 42)]
        """,
    )
    configure(
        env,
        f"""
        [[monitors]]
        type = "plugin"
        id = "by_core_name"
        plugin = "Tutorial Plugin"
        plugin_dirs = ["{d}"]
        resources = "{TUTORIAL / "localhost.json"}"
        [[monitors]]
        type = "plugin"
        id = "by_file_name"
        plugin = "uptime"
        plugin_dirs = ["{d}"]
        """,
    )
    assert env.cli("run-monitor").exit_code == 0
    upload(env)
    assert {e["attrs"]["metric"] for e in metric_events(env, "by_core_name")} == {"cpu_load", "context_switch_count"}
    (up,) = metric_events(env, "by_file_name")
    assert up["attrs"]["value"] == 42 and up["attrs"]["group_type"] == "uptime"
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "x"\nplugin = "nope"\nplugin_dirs = ["{d}"]\n')
    r = env.cli("run-monitor", "x")  # the monitor's own problem: it fails alone (exit 65)
    assert r.exit_code == 65 and "monitors[0].plugin: no plugin 'nope' in plugin_dirs" in r.stderr
    r = env.cli("check-config")  # which check-config calls a config error
    assert r.exit_code == 78 and "monitors[0].plugin: no plugin 'nope' in plugin_dirs" in r.stderr


def test_the_example_plugins_run(env: Env) -> None:
    examples = env.tmp / "examples"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "plugins", examples)
    env.config, env.sink = examples / "shipctl.toml", examples / "out.jsonl"
    for _ in range(2):
        r = env.cli("run-monitor")
        assert r.exit_code == 0, r.stderr
    upload(env)
    assert [g["resource"]["resource_id"] for g in groups(env, "tutorial")] == ["tutorial_device"] * 2
    host = [e["attrs"] for e in metric_events(env, "host")]
    assert {a["metric"] for a in host} == {"load1", "load5", "load15", "context_switches", "plugin_runs"}
    assert [a["value"] for a in host if a["metric"] == "plugin_runs"] == [1, 2]
    rates = [a for a in host if a["metric"] == "context_switches" and a["metric_type"] == "gauge"]
    assert len(rates) == 1 and rates[0]["transform"] == "rate" and rates[0]["value"] > 0


# --- what is checked -----------------------------------------------------------------------------------------


BAD_GROUPS = [
    ("{'group_type': 'g', 'metrics': [{'name': '1abc', 'value': 1}]}", "metric name '1abc' must start with a letter"),
    (
        "{'group_type': 'g', 'metrics': [{'name': 'x', 'value': 'high'}]}",
        "metric 'x': value must be a number, got 'high'",
    ),
    ("{'group_type': 'g', 'metrics': [{'name': 'x', 'value': True}]}", "metric 'x': value must be a number, got True"),
    ("{'group_type': 'g', 'metrics': [{'name': 'x', 'value': float('nan')}]}", "metric 'x': value must be finite"),
    (
        "{'group_type': 'g', 'metrics': [{'name': 'x', 'value': 1}, {'name': 'x', 'value': 2}]}",
        "group 'g': gauge 'x' given twice",
    ),
    ("{'group_type': 'g', 'dimensions': {'resource_id': 'x'}}", "dimension name 'resource_id' is reserved"),
    ("{'group_type': 'g', 'dimensions': {'port': 7}}", "dimension 'port': value must be a non-empty string, got 7"),
    (
        "{'group_type': 'g', 'metrics': [{'name': 'x', 'value': 1, 'type': 'rate'}]}",
        "type must be 'gauge' or 'counter'",
    ),
    ("'not a group'", "expected a metrics group, got str"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_GROUPS)
def test_bad_groups_are_errors_naming_the_plugin_and_good_ones_still_ship(env: Env, bad: str, message: str) -> None:
    write(
        env.tmp / "bad.py",
        f"""
        from shipctl.pyplugins import MetricsGroup

        def poll(ctx):
            good = MetricsGroup("good").gauge("ok", 1)
            return [good, {bad}]
        """,
    )
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "badplug"\nmodule = "{env.tmp}/bad.py"\n')
    r = env.cli("run-monitor", "badplug")
    assert r.exit_code == 65
    assert f"monitor badplug: resource {socket.gethostname()}: plugin bad returned a bad group: " in r.stderr
    assert message in r.stderr
    upload(env)
    assert [e["attrs"]["metric"] for e in metric_events(env)] == ["ok"]


def test_a_bad_metric_fails_where_the_plugin_adds_it(env: Env) -> None:
    write(
        env.tmp / "bad.py",
        """
        from shipctl.pyplugins import MetricsGroup

        def poll(ctx):
            return [MetricsGroup("g").gauge("1abc", 1)]
        """,
    )
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "badplug"\nmodule = "{env.tmp}/bad.py"\n')
    r = env.cli("run-monitor", "badplug")
    assert r.exit_code == 65
    assert "plugin bad crashed: ValueError: group 'g': metric name '1abc' must start with a letter" in r.stderr
    assert r.stderr.rstrip().endswith("(bad.py:5)")  # the plugin's line, not shipctl's


def test_a_panoptes_plugin_breaking_panoptes_rules_crashes_with_its_own_error(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics")
    plugin = descriptor.parent / "tutorial_plugin.py"
    plugin.write_text(plugin.read_text().replace("'cpu_load'", "'context_switch_count'").replace(".GAUGE", ".COUNTER"))
    _tutorial_config(env, descriptor, TUTORIAL / "localhost.json")
    r = env.cli("run-monitor", "tutorial")
    assert r.exit_code == 65
    assert "monitor tutorial: resource tutorial_device: plugin Tutorial Plugin crashed: KeyError" in r.stderr
    assert 'Metric name "context_switch_count" (type "COUNTER")' in r.stderr and "tutorial_plugin.py:" in r.stderr


def _descriptor(env: Env, text: str, module: str | None = "tutorial_plugin.py") -> Path:
    d = env.tmp / "plugins"
    if module:
        tutorial_files(d, "stage3_metrics")
    path = d / "bad.panoptes-plugin"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ("[Core]\nName = x\n", "[Core] Module: missing"),
        (
            "[Core]\nModule = /nowhere/missing.py\n",
            "[Core] Module: /nowhere/missing.py not found, nor missing.py beside",
        ),
        (
            "[Core]\nModule = tutorial_plugin.py\n[main]\nexecute_frequency = often\n",
            "[main] execute_frequency: expected a whole",
        ),
        (
            '[Core]\nModule = tutorial_plugin.py\n[main]\nresource_filter = resource_id == "x"\n',
            "[main] resource_filter: invalid resource filter: expected a value in double quotes at column 14",
        ),
        (
            "[Core]\nModule = tutorial_plugin.py\n[transforms]\nx = rate:example\n",
            '[transforms].x: expected "rate:<group type>',
        ),
        ("[Core]\nModule = tutorial_plugin.py\n[transforms]\nx = sum:a:b\n", "unknown transform 'sum'"),
        ("[Core]\nModule = tutorial_plugin.py\n[main]\nx = 100%\n", "invalid descriptor: '%' must be followed by '%'"),
        ("Module = x\n", "invalid descriptor: File contains no section headers"),
    ],
)
def test_bad_descriptors_are_config_errors_naming_the_file(env: Env, descriptor: str, message: str) -> None:
    path = _descriptor(env, descriptor)
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "p"\ndescriptor = "{path}"\n')
    r = env.cli("check-config")
    assert r.exit_code == 78
    assert f"{path}: " in r.stderr and message in r.stderr


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("", "monitors[0]: expected exactly one of descriptor"),
        ('module = "a.py"\nplugin = "b"', "monitors[0]: expected exactly one of descriptor"),
        ('descriptor = "missing.panoptes-plugin"', "monitors[0].descriptor: "),
        ('module = "missing.py"', "monitors[0].module: "),
        (
            'module = "x.py"\nresource_filter = "resource_id = \\"a"',
            "monitors[0].resource_filter: invalid resource filter: unterminated",
        ),
        ('module = "x.py"\ntransforms = { a = "rate:g" }', "monitors[0].transforms.a: expected"),
        ('module = "x.py"\noutput = "xml"', "monitors[0].output: expected one of 'events', 'panoptes'"),
        ('module = "x.py"\nexecute_frequency = -1', "monitors[0].execute_frequency: expected a number of seconds"),
        ('module = "x.py"\nresources = 5', "monitors[0].resources: expected a JSON file path"),
    ],
)
def test_bad_plugin_tables_are_config_errors(env: Env, table: str, message: str) -> None:
    (env.tmp / "x.py").write_text("def poll(ctx):\n    return []\n")
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "p"\n{table}\n')
    r = env.cli("check-config")
    assert r.exit_code == 78 and f"{env.config}: {message}" in r.stderr, r.stderr
    r = env.cli("run-monitor", "p")  # a missing file fails that monitor alone (65); a mistake in the table is 78
    assert r.exit_code == (65 if "missing" in table else 78) and f"{env.config}: {message}" in r.stderr, r.stderr


def test_a_disabled_descriptor_is_a_warning_not_a_run(env: Env) -> None:
    descriptor = tutorial_files(env.tmp / "plugins", "stage3_metrics")
    descriptor.write_text(descriptor.read_text().replace("execute_frequency = 60", "execute_frequency = 0"))
    _tutorial_config(env, descriptor, TUTORIAL / "localhost.json")
    r = env.cli("run-monitor", "tutorial")
    assert r.exit_code == 0 and "execute_frequency is missing or 0" in r.stderr
    upload(env)
    assert metric_events(env) == []
