"""Fidelity to the behaviour users know from the Scalyr agent, CoScale scripts and Panoptes (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Env, append, assert_exactly_once, numbered


def _two_entries(env: Env, *, first: bool = True, second: bool = True) -> None:
    """An entry for app.log, then a glob over the directory that matches app.log too (in that order)."""
    text = ""
    if first:
        text += f'[[logs]]\nid = "app"\npath = "{env.logs}/app.log"\nattributes = {{ parser = "app" }}\n'
    if second:
        text += f'[[logs]]\nid = "all"\npath = "{env.logs}/*.log"\nattributes = {{ parser = "all" }}\n'
    env.write_config(text)


def _by_parser(env: Env) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in env.events():
        if e["kind"] == "log":
            out.setdefault(str(e["attrs"]["parser"]), []).append(str(e["message"]))
    return out


def _status_files(env: Env) -> dict[tuple[str, str], dict[str, Any]]:
    r = env.cli("status", "--json")
    assert r.exit_code == 0, r.stderr
    return {(lg["log_id"], f["path"]): f for lg in json.loads(r.stdout)["logs"] for f in lg["files"]}


def test_a_file_matched_by_two_entries_is_shipped_once_by_the_first(env: Env) -> None:
    (env.logs / "app.log").write_text(numbered(50))
    (env.logs / "other.log").write_text(numbered(5, start=1000))
    _two_entries(env)
    env.ship()
    got = _by_parser(env)
    assert_exactly_once(got["app"], range(50))  # with the first entry's attributes
    assert_exactly_once(got["all"], range(1000, 1005))  # the rest of the glob is still the second's
    files = _status_files(env)
    shadowed = files[("all", str(env.logs / "app.log"))]
    assert shadowed["state"] == "shadowed" and "log 'app'" in shadowed["last_error"]
    assert files[("app", str(env.logs / "app.log"))]["lines_copied"] == 50
    # The table says it too, on the shadowed file's row.
    table = env.cli("status").stdout
    assert "shadowed" in table and "first matching" in table


def test_check_config_names_the_shadowed_file_and_the_entry_that_ships_it(env: Env) -> None:
    (env.logs / "app.log").write_text("x\n")
    (env.logs / "other.log").write_text("y\n")
    _two_entries(env)
    r = env.cli("check-config")
    assert r.exit_code == 0, r.stderr
    (w,) = [line for line in r.stderr.splitlines() if "app.log" in line]
    assert "logs[1]" in w and "'all'" in w and "'app'" in w and "first" in w
    data = json.loads(r.stdout)
    assert data["shadowed"] == [{"log": "all", "path": str(env.logs / "app.log"), "shipped_by": "app"}]


def test_upgrade_a_file_the_second_entry_already_tailed_is_not_sent_again(env: Env) -> None:
    """Before the fix both entries read app.log; the state then holds a record for each. Here the second
    entry alone read it first (the worst case: the first entry has no offset of its own to go on from)."""
    log = env.logs / "app.log"
    log.write_text(numbered(100))
    _two_entries(env, first=False)
    env.ship()
    _two_entries(env)  # the specific entry is added in front
    append(log, numbered(20, start=100))
    env.ship()
    got = _by_parser(env)
    assert_exactly_once(got["all"] + got["app"], range(120))
    assert len(got["app"]) == 20  # new lines go out under the entry that now ships the file
    # And back: the first entry removed, the glob takes the file over where the first entry left it.
    _two_entries(env, first=False)
    append(log, numbered(10, start=120))
    env.ship()
    got = _by_parser(env)
    assert_exactly_once(got["all"] + got["app"], range(130))


def test_a_symlink_to_a_file_an_earlier_entry_ships_is_the_same_file(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "real.log").write_text(numbered(10))
    (env.logs / "alias.log").symlink_to(other / "real.log")
    env.write_config(
        f'[[logs]]\nid = "real"\npath = "{other}/real.log"\nattributes = {{ parser = "real" }}\n'
        f'[[logs]]\nid = "links"\npath = "{env.logs}/*.log"\nattributes = {{ parser = "links" }}\n'
    )
    env.ship()
    got = _by_parser(env)
    assert_exactly_once(got["real"], range(10))
    assert "links" not in got


# --- globs as the agent reads them ------------------------------------------------------------------------

TREE = ("x.log", "a/y.log", "a/b/z.log", ".h/h.log", ".h/c/hc.log", ".dot.log", "a/.dot2.log", "d/w.txt")
PATTERNS = (
    "**", "**/*.log", "**/.dot2.log", "**/*", "a/**", "**/b/*.log", "**/**/*.log", "*/**/*.log", ".h/**",
    "**.log", "a**/*.log", "**/.h/*.log", "**/.*", "*.log", "*", "a/y.log", "[ax]*", "**/c/*",
)  # fmt: skip


def test_a_path_matches_a_glob_exactly_when_the_agents_glob_lists_it(tmp_path: Path) -> None:
    """``**`` is zero or more directories (the agent's glob.glob(recursive=True); its docs say "one or
    more", but a config that ships x.log with logs/**/*.log there must ship it here too)."""
    import glob

    from shipctl.tail.discover import discover

    root = tmp_path / "t"
    for name in TREE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    for pattern in PATTERNS:
        full = f"{root}/{pattern}"
        listed = sorted({p for p in glob.glob(full, recursive=True) if Path(p).is_file()})
        assert discover(full).paths == listed, pattern


_PARTS = ("*", "**", "?", "a", "b", ".h", "*.log", "[ab]*", "x.log", ".*", "**.log", "?.log", "c")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(_PARTS), min_size=1, max_size=4))
def test_generated_globs_match_what_the_agents_glob_lists(tmp_path: Path, parts: list[str]) -> None:
    import glob

    from shipctl.tail.discover import discover

    root = tmp_path / "g"
    if not root.exists():
        for name in (*TREE, "a/b/c/x.log", "b/.h/y.log", "c"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("x\n")
    full = f"{root}/" + "/".join(parts)
    # (glob lists "x.log/" for "x.log/**": a name no open() takes as the file, and the agent fails to read it)
    listed = sorted({p for p in glob.glob(full, recursive=True) if Path(p).is_file() and not p.endswith("/")})
    assert discover(full).paths == listed  # the walk tail-once does, too


def test_preview_picks_the_entry_tail_once_ships_the_file_under(env: Env) -> None:
    (env.logs / "sub").mkdir()
    top, deep = env.logs / "top.log", env.logs / "sub" / "deep.log"
    top.write_text("t\n")
    deep.write_text("d\n")
    env.write_config(
        f'[[logs]]\nid = "flat"\npath = "{env.logs}/*.log"\n'  # "*" stays within a directory name
        f'[[logs]]\nid = "tree"\npath = "{env.logs}/**/*.log"\n'  # "**" is zero or more directories
    )
    assert "entry 'tree'" in env.cli("preview", str(deep)).stderr
    assert "entry 'flat'" in env.cli("preview", str(top)).stderr
    env.write_config(f'[[logs]]\nid = "tree"\npath = "{env.logs}/**/*.log"\n')
    r = env.cli("preview", str(top))
    assert r.exit_code == 0 and "entry 'tree'" in r.stderr, r.stderr
    env.ship()
    assert sorted(env.messages()) == ["d", "t"]  # what tail-once ships under that glob


def test_conf_d_paths_are_normalised_and_the_old_name_is_not_sent_again(env: Env) -> None:
    conf_d = env.config.parent / "conf.d"
    conf_d.mkdir()
    log = env.logs / "app.log"
    log.write_text(numbered(30))
    rel = f"../{env.logs.name}/app.log"
    env.write_config("")
    # Before: the id (and the name shown) kept the "..": state holds the file under that id.
    (conf_d / "app.toml").write_text(f'[[logs]]\nid = "{conf_d}/{rel}"\npath = "{rel}"\n')
    env.ship()
    (conf_d / "app.toml").write_text(f'[[logs]]\npath = "{rel}"\n')
    r = env.cli("check-config")
    assert r.exit_code == 0, r.stderr
    (entry,) = json.loads(r.stdout)["logs"]
    assert entry["path"] == entry["id"] == str(log)
    append(log, numbered(5, start=30))
    env.ship()
    assert_exactly_once(env.messages(), range(35))
    assert {e["source"] for e in env.events()} == {str(log)}


# --- CoScale metadata kept on the events ---------------------------------------------------------------------

META_SCRIPT = r"""#!/bin/bash
if [ "$1" = "-c" ]; then cat <<'JSON'
{"metrics": [{"id": 1, "name": "queue depth", "description": "Jobs waiting in the queue", "unit": "jobs",
              "tags": "QUEUE, MYTAG2", "datatype": "GAUGE", "dimensions": [{"id": 1, "name": "queue"}]}],
 "events": [{"id": 1, "name": "job failed", "description": "A job exited non-zero",
             "attributeDescriptions": [{"name": "Exit code", "type": "integer", "unit": ""},
                                       {"name": "Host", "type": "string", "unit": ""},
                                       {"name": "Retried", "type": "boolean", "unit": ""},
                                       {"name": "Took", "type": "double", "unit": "s"}]}]}
JSON
exit 0; fi
echo 'M1 "1:mail" 7'
echo 'E1 0 0 "job 12 failed" "{"Exit code":"137","Host":42,"Retried":"true","Took":"3"}" S'
echo 'E1 0 0 "job 13 failed" "{"Exit code":"n/a"}" S'
"""


def test_coscale_metadata_and_attribute_types_reach_the_sinks(
    env: Env, tmp_path: Path, httpserver: Any, influxdb: Any
) -> None:
    import gzip

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from werkzeug import Response

    script = tmp_path / "queue.sh"
    script.write_text(META_SCRIPT)
    script.chmod(0o755)
    bodies: list[bytes] = []

    def handler(req: Any) -> Response:
        data = req.get_data()
        if req.path.endswith("/v1/metrics"):
            bodies.append(gzip.decompress(data) if req.headers.get("Content-Encoding") == "gzip" else data)
        return Response(b"", 200, content_type="application/x-protobuf")

    httpserver.expect_request("/v1/metrics", method="POST").respond_with_handler(handler)
    httpserver.expect_request("/v1/logs", method="POST").respond_with_handler(handler)
    db = influxdb.create_db()
    env.write_config(
        "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
        f'[[monitors]]\ntype = "script"\nid = "jobs"\ncommand = "{script}"\n'
        f'[[sinks]]\nid = "archive"\ntype = "file"\npath = "{env.sink}"\n'
        f'[[sinks]]\nid = "otel"\ntype = "otlp"\nendpoint = "{httpserver.url_for("")}"\n'
        f'[[sinks]]\nid = "tsdb"\ntype = "influxdb"\nurl = "{influxdb.url}"\ndatabase = "{db}"\n',
        sink=False,
    )
    r = env.cli("run-monitor", "jobs")
    assert r.exit_code == 0, r.stderr
    # The one bad value is named, and its event still goes out with the value as printed.
    assert "attribute 'Exit code' is declared integer, got 'n/a'" in r.stderr
    assert env.cli("upload").exit_code == 0

    # The file (and Scalyr) sink: as attributes of the metric and of the events.
    (m,) = [e for e in env.events() if e["kind"] == "metric"]
    assert (m["attrs"]["unit"], m["attrs"]["description"], m["attrs"]["tags"]) == (
        "jobs",
        "Jobs waiting in the queue",
        "QUEUE,MYTAG2",
    )
    first, second = [e["attrs"] for e in env.events() if e["kind"] == "event"]
    assert first["description"] == "A job exited non-zero"
    assert (first["Exit code"], first["Host"], first["Retried"], first["Took"]) == (137, "42", True, 3.0)
    assert second["Exit code"] == "n/a"

    # OTLP: the metric's own unit and description fields; the tags in its metadata.
    (metric,) = [
        mt
        for body in bodies
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics
        for sm in rm.scope_metrics
        for mt in sm.metrics
    ]
    assert (metric.name, metric.unit, metric.description) == ("queue depth", "jobs", "Jobs waiting in the queue")
    assert {kv.key: kv.value.string_value for kv in metric.metadata}["tags"] == "QUEUE,MYTAG2"

    # InfluxDB: the tags as a tag (unit stays the field it was), the series still keyed by its dimension.
    (row,) = influxdb.rows(db, 'SELECT * FROM "queue depth"')
    assert (row["tags"], row["queue"], row["value"], row["unit"]) == ("QUEUE,MYTAG2", "mail", 7, "jobs")


# --- Panoptes plugins dropped into plugins_dir ---------------------------------------------------------------

PLUGIN = """
from yahoo_panoptes.polling.polling_plugin import PanoptesPollingPlugin
from yahoo_panoptes.framework.metrics import (
    PanoptesMetric, PanoptesMetricDimension, PanoptesMetricsGroup, PanoptesMetricsGroupSet, PanoptesMetricType)


class Plugin(PanoptesPollingPlugin):
    def run(self, context):
        group = PanoptesMetricsGroup(context.data, "{group}", 60)
        group.add_dimension(PanoptesMetricDimension("host", "here"))
        group.add_metric(PanoptesMetric("{metric}", {value}, PanoptesMetricType.GAUGE))
        out = PanoptesMetricsGroupSet()
        out.add(group)
        return out
"""


def _descriptor(directory: Path, name: str, metric: str, value: float, *, frequency: int = 60) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(PLUGIN.format(group=name, metric=metric, value=value))
    path = directory / f"{name}.panoptes-plugin"
    path.write_text(
        f"[Core]\nName = {name}\nModule = {name}.py\n[Documentation]\nDescription = test\n"
        f'[main]\nexecute_frequency = {frequency}\nresource_filter = resource_endpoint = "localhost"\n'
    )
    return path


def test_plugins_dropped_into_plugins_dir_run_without_monitors_entries(env: Env) -> None:
    plugins = env.tmp / "plugins"
    _descriptor(plugins, "disk", "disk_free", 42.5)
    _descriptor(plugins / "net", "iface", "iface_up", 1)
    (plugins / "broken.panoptes-plugin").write_text("[Core\nName = broken\n")  # not INI
    (plugins / "nomodule.panoptes-plugin").write_text("[Core]\nName = nomodule\nModule = gone.py\n")
    (plugins / "disk.py.bak").write_text("not a descriptor")
    env.write_config(
        '[agent]\nplugins_dir = "plugins"\n'  # relative to the config file
        "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
    )
    r = env.cli("check-config")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["plugins_found"] == ["panoptes:broken", "panoptes:disk", "panoptes:net/iface", "panoptes:nomodule"]
    assert "broken.panoptes-plugin: invalid descriptor" in r.stderr and "gone.py not found" in r.stderr

    r = env.cli("run-monitor")
    assert r.exit_code == 65  # the broken two fail, each alone and named ...
    errors = [line for line in r.stderr.splitlines() if "cannot set up" in line]
    assert len(errors) == 2 and "panoptes:broken" in errors[0] and "panoptes:nomodule" in errors[1], r.stderr
    assert env.cli("upload").exit_code == 0
    got = {(e["source"], e["attrs"]["metric"], e["attrs"]["value"]) for e in env.events() if e["kind"] == "metric"}
    assert got == {("panoptes:disk", "disk_free", 42.5), ("panoptes:net/iface", "iface_up", 1)}  # ... the rest ran

    status = json.loads(env.cli("status", "--json").stdout)
    mons = {m["id"]: m for m in status["monitors"]}
    assert mons["panoptes:disk"]["runs"] == 1 and mons["panoptes:disk"]["interval"] == 60
    assert "invalid descriptor" in mons["panoptes:broken"]["last_error"]

    # A [[monitors]] entry naming a descriptor takes it over (its id, its options): the plugin runs once.
    env.write_config(
        '[agent]\nplugins_dir = "plugins"\n'
        "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
        '[[monitors]]\ntype = "plugin"\nid = "disk"\ndescriptor = "plugins/disk.panoptes-plugin"\n'
    )
    r = env.cli("check-config")
    assert "panoptes:disk" not in json.loads(r.stdout)["plugins_found"]
    assert "panoptes:net/iface" in json.loads(r.stdout)["plugins_found"]  # ids do not move when others change


def test_a_rotated_generation_the_first_entry_finished_is_not_shipped_by_a_glob_over_rotated_names(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text(numbered(40))
    env.write_config(
        f'[[logs]]\nid = "app"\npath = "{log}"\nattributes = {{ parser = "app" }}\n'
        f'[[logs]]\nid = "any"\npath = "{log}*"\nattributes = {{ parser = "any" }}\n'  # app.log.1 too
    )
    env.ship()
    append(log, numbered(10, start=40))
    log.rename(env.logs / "app.log.1")  # rotated: "app" finishes it, then reads the new file
    log.write_text(numbered(5, start=50))
    env.ship()
    append(env.logs / "app.log.1", numbered(3, start=55))  # written late, after the rename
    env.ship()
    got = _by_parser(env)
    assert_exactly_once(got["app"], range(58))
    assert "any" not in got
