"""A Scalyr user's agent.json runs unchanged (shipctl/agentjson.py): the same logs, attributes and monitor
metrics at a strict addEvents receiver as the equivalent shipctl TOML; ``config convert`` reads back to the
same resolved config; the agent's merge, type and error rules."""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from shipctl.cli import app
from shipctl.commands.check_config import _plain
from shipctl.commands.convert import convert
from shipctl.config import Config, load_config
from tests.conftest import Result
from tests.receiver import KEY, Receiver


def cli(*args: str) -> Result:
    res = CliRunner().invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"healthy 200\nsecond line\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


# An agent.json as a Scalyr user writes it: comments, unquoted keys, missing and trailing commas, doubled
# backslashes, a concatenated string, monitors by module name; the API key from the environment (import_vars).
AGENT_JSON = """\
// Scalyr Agent configuration
{
  import_vars: [ "SCALYR_API_KEY", { var: "TEAM", default: "web" } ],
  api_key: "$SCALYR_API_KEY",
  scalyr_server: "{url}",
  allow_http: true,           // a loopback receiver
  compression_type: "deflate"
  server_attributes: {
    serverHost: "web-1",
    team: "$TEAM",
  },
  implicit_metric_monitor: false,
  implicit_agent_process_metrics_monitor: false,
  implicit_agent_log_collection: false,
  /* the application log, with its groupers and rules */
  logs: [
    {
      path: "{logs}/app.log",
      copy_from_start: true,
      attributes: { parser: "appLog", dc: "fra" + "1" },
      lineGroupers: [
        { start: "^Traceback", continueThrough: "^\\\\s" },
        { start: "^BEGIN", haltWith: "^END" },
      ],
      sampling_rules: [
        { match_expression: "DEBUG", sampling_rate: 0 },
        { match_expression: "INFO", sampling_rate: 1 }
      ],
      redaction_rules: [
        { match_expression: "password=\\\\S+", replacement: "password=***" },
        { match_expression: "user=(\\\\w+)", replacement: "user=\\\\H1", hash_salt: "pepper" },
      ],
    },
  ],
  monitors: [
    { module: "scalyr_agent.builtin_monitors.shell_monitor", id: "answer", command: "echo 42",
      max_characters: "100" }
    { module: "url_monitor", id: "health", url: "{web}", log_all_lines: "true" },
  ]
}
"""

# agent.d: another log (relative to nothing: the agent reads paths as absolute or under agent_log_path), one
# more monitor by module name, and a server attribute merged in.
FRAGMENT = """\
{
  logs: [ { path: "{logs}/web-*.log", exclude: ["*-skip.log"], parser: "accessLog" } ]
  monitors: [
    { module: "scalyr_agent.builtin_monitors.linux_process_metrics", id: "me", pid: "$$" },
  ],
  server_attributes: { region: "eu" },
}
"""

# The same, as a shipctl user writes it.
TOML = """\
import_vars = ["SCALYR_API_KEY", {{ var = "TEAM", default = "web" }}]
server_attributes = {{ serverHost = "web-1", team = "$TEAM", region = "eu" }}

[agent]
implicit_metric_monitor = false
implicit_agent_process_metrics_monitor = false

[[logs]]
path = "{logs}/app.log"
attributes = {{ parser = "appLog", dc = "fra1" }}
line_groupers = [
  {{ start = '^Traceback', continue_through = '^\\s' }},
  {{ start = '^BEGIN', halt_with = '^END' }},
]
sampling_rules = [
  {{ match_expression = "DEBUG", sampling_rate = 0 }},
  {{ match_expression = "INFO", sampling_rate = 1 }},
]
redaction_rules = [
  {{ match_expression = 'password=\\S+', replacement = "password=***" }},
  {{ match_expression = 'user=(\\w+)', replacement = 'user=\\H1', hash_salt = "pepper" }},
]

[[logs]]
path = "{logs}/web-*.log"
exclude = ["*-skip.log"]
attributes = {{ parser = "accessLog" }}
start_at = "end"

[[monitors]]
type = "shell"
id = "answer"
command = "echo 42"
max_characters = 100

[[monitors]]
type = "url"
id = "health"
url = "{web}"
log_all_lines = true

[[monitors]]
type = "linux_process_metrics"
id = "me"
pid = "$$"

[[sinks]]
type = "scalyr"
api_key = "$SCALYR_API_KEY"
server = "{url}"
allow_http = true
compression = "deflate"
"""


def _write_agent(root: Path, url: str, web: str, logs: Path) -> Path:
    conf = root / "agent.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    fill = {"{url}": url, "{web}": web, "{logs}": str(logs)}
    text = AGENT_JSON
    for k, v in fill.items():
        text = text.replace(k, v)
    conf.write_text(text)
    (root / "agent.d").mkdir()
    frag = FRAGMENT.replace("{logs}", str(logs))
    (root / "agent.d" / "50-web.json").write_text(frag)
    return conf


def _run(config: Path, state: Path, monkeypatch: pytest.MonkeyPatch, *cmds: str) -> None:
    monkeypatch.setenv("SHIPCTL_STATE", str(state))
    for cmd in cmds:
        r = cli(cmd, "-c", str(config))
        assert r.exit_code == 0, (cmd, r.stdout, r.stderr)


_VOLATILE = ("value", "duration", "rate", "difference", "length")


def _digest(r: Receiver) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Log events whole (message and every attribute), monitor events by what identifies them, and
    the session info."""
    assert r.violations == [] and r.misordered == []
    logs = sorted(json.dumps(e["attrs"], sort_keys=True) for e in r.events if e["log"] is not None)
    mons = []
    for e in r.events:
        if e["log"] is None:
            a = dict(e["attrs"])
            if a.get("monitor") == "linux_process_metrics":  # its numbers move between two runs
                a = {k: v for k, v in a.items() if k not in _VOLATILE and k != "message"}
            else:
                a = {k: v for k, v in a.items() if k not in ("duration",) and k != "message"}
            mons.append(json.dumps({"thread": e["thread"], **a}, sort_keys=True))
    infos = sorted({json.dumps(i, sort_keys=True) for i in r.session_infos})  # requests may be cut differently
    return logs, sorted(set(mons)), [json.loads(i) for i in infos]


def test_agent_json_ships_what_the_equivalent_toml_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web: str
) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("TEAM", raising=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    app_log = logs / "app.log"
    app_log.write_text(
        "start user=alice\n"
        "Traceback (most recent call last):\n  File x\n  line 2\n"
        "DEBUG noise\n"
        "INFO kept password=hunter2 done\n"
        "BEGIN\nmiddle\nEND\n"
        "tail user=bob\n"
    )
    (logs / "web-1.log").write_text("old line, before the first run\n")
    (logs / "web-1-skip.log").write_text("never\n")
    with Receiver() as rj, Receiver() as rt:
        agent = _write_agent(tmp_path / "scalyr", rj.url, web, logs)
        native = tmp_path / "native" / "shipctl.toml"
        native.parent.mkdir()
        native.write_text(TOML.format(url=rt.url, web=web, logs=logs))
        for config, state in ((agent, tmp_path / "sj" / "s.db"), (native, tmp_path / "st" / "s.db")):
            _run(config, state, monkeypatch, "run")
        with (logs / "web-1.log").open("a") as fh:
            fh.write('127.0.0.1 - - "GET / HTTP/1.1" 200 12\n')
        (logs / "web-2.log").write_text("a new file is read from its start\n")
        for config, state in ((agent, tmp_path / "sj" / "s.db"), (native, tmp_path / "st" / "s.db")):
            _run(config, state, monkeypatch, "tail-once", "upload")
        json_logs, json_mons, json_info = _digest(rj)
        toml_logs, toml_mons, toml_info = _digest(rt)
    assert json_logs == toml_logs
    assert json_mons == toml_mons
    assert json_info == toml_info == [{"serverHost": "web-1", "team": "web", "region": "eu"}]
    # And what that is, so that two equally wrong configs cannot pass.
    messages = [json.loads(x)["message"] for x in json_logs]
    assert "Traceback (most recent call last):\n  File x\n  line 2" in messages
    assert "BEGIN\nmiddle\nEND" in messages
    assert "INFO kept password=*** done" in messages and not any("DEBUG" in m for m in messages)
    assert not any("alice" in m or "bob" in m or "hunter2" in m for m in messages)
    hashed = [m for m in messages if m.startswith("start user=")]
    assert len(hashed) == 1 and len(hashed[0]) == len("start user=") + 32
    assert '127.0.0.1 - - "GET / HTTP/1.1" 200 12' in messages and "a new file is read from its start" in messages
    assert "old line, before the first run" not in messages and "never" not in messages
    app_events = [json.loads(x) for x in json_logs if json.loads(x)["logfile"] == str(app_log)]
    assert {(e["parser"], e["dc"]) for e in app_events} == {("appLog", "fra1")}
    web_events = [json.loads(x) for x in json_logs if "web-" in json.loads(x)["logfile"]]
    assert {e["parser"] for e in web_events} == {"accessLog"}
    mons = [json.loads(x) for x in json_mons]
    shell = [m for m in mons if m["thread"] == "answer"]
    url = [m for m in mons if m["thread"] == "health"]
    proc = {m["metric"] for m in mons if m["thread"] == "me"}
    assert [m["value"] for m in shell] == [42]
    assert [(m["value"], m["status"]) for m in url] == [("healthy 200\nsecond line", 200)]
    assert {"app.cpu", "app.threads", "app.mem.bytes"} <= proc


def _resolved(c: Config) -> dict[str, Any]:
    """All that a run uses of a config (not the names of the files it came from). Not check_config: the
    scalyr_monitor type is registered by another module, and this compares configs, not monitors."""
    return {
        "agent": _plain(c.agent, []),
        "server_attributes": _plain(c.server_attributes, []),
        "logs": [_plain(lg, []) for lg in c.logs],
        "monitors": [_plain([m.type, m.id, m.sample_interval, dict(m.options)], []) for m in c.monitors],
        "sinks": [_plain([s.type, s.id, s.kinds, s.sources, dict(s.options)], []) for s in c.sinks],
        "imported": dict(c.imported),
        "secrets": c.secret_values,
    }


def _same(a: Config, b: Config) -> None:
    assert _resolved(a) == _resolved(b)


def test_config_convert_reads_back_to_the_same_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web: str
) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    agent = _write_agent(tmp_path / "scalyr", "https://upload.example", web, tmp_path / "logs")
    text = agent.read_text().replace('api_key: "$SCALYR_API_KEY",', f'api_key: "{KEY}",')
    text = text.replace("implicit_agent_log_collection: false,", 'rename_me: 1, json_library: "json",')
    text = text.replace("copy_from_start: true,", 'copy_from_start: true, rename_logfile: "/renamed/$BASENAME",')
    agent.write_text(text)
    (agent.parent / "agent.d" / "90-own.json").write_text(
        '{ monitors: [ { module: "acme.monitors.queue_depth", queue: "jobs", limit: 5 } ], '
        'additional_monitor_module_paths: "/opt/acme:/opt/more" }'
    )
    r = cli("config", "convert", str(agent))
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert KEY not in out + r.stderr  # a key written in agent.json is not printed
    assert 'api_key = "$SCALYR_API_KEY"' in out
    assert "# " in out and "rename_me" in out and "json_library" in out
    assert 'rename_logfile = "/renamed/$BASENAME"' in out
    assert "pepper" not in out  # nor a hash_salt: it reads from a variable the user sets
    assert 'hash_salt = "$SCALYR_HASH_SALT"' in out
    assert "# hash_salt: the salt written in agent.json is not printed; set $SCALYR_HASH_SALT to it" in out
    converted = tmp_path / "converted.toml"
    converted.write_text(out)
    monkeypatch.setenv("SCALYR_HASH_SALT", "pepper")
    want, got = _resolved(load_config(agent)), _resolved(load_config(converted))
    # The same, but for the salt's variable (a secret now, where agent.json held it as written).
    assert got["imported"].pop("SCALYR_HASH_SALT") == "pepper"
    got["secrets"] = tuple(x for x in got["secrets"] if x != "pepper")
    assert want == got
    cfg = load_config(converted)
    (own,) = [m for m in cfg.monitors if m.type == "scalyr_monitor"]
    assert own.id == "queue_depth"
    assert dict(own.options) == {
        "module": "acme.monitors.queue_depth",
        "module_paths": ["/opt/acme", "/opt/more"],
        "config": {"queue": "jobs", "limit": 5},
    }
    assert cfg.agent.implicit_agent_log_collection is True
    assert [lg.id for lg in cfg.logs][-1] == "shipctl.log"


def test_check_config_on_agent_json_resolves_monitor_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    conf = tmp_path / "agent.json"
    conf.write_text(
        """{
      monitors: [
        { module: "shell_monitor", command: "uname -r", id: "kver", sample_interval: "60", log_path: "k.log" },
        { module: "scalyr_agent.builtin_monitors.shell_monitor", command: "true", emit_to_metric_log: true },
        { module: "scalyr_agent.builtin_monitors.shell_monitor", command: "false" },
        { module: "scalyr_agent.builtin_monitors.url_monitor", url: "http://127.0.0.1:1/", timeout: 3,
          request_headers: [ { header: "Accept", value: "text/plain" } ] },
        { module: "scalyr_agent.builtin_monitors.linux_system_metrics", network_interface_prefixes: ["eth"] },
        { module: "scalyr_agent.builtin_monitors.linux_process_metrics", id: "nginx", commandline: "nginx: master" },
      ],
      implicit_agent_log_collection: false,
    }"""
    )
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    mons = {m["id"]: m for m in got["monitors"]}
    assert list(mons) == ["kver", "shell", "shell_2", "url", "linux_system_metrics", "nginx"]
    assert mons["kver"] == {"type": "shell", "id": "kver", "sample_interval": 60.0, "command": "uname -r"}
    assert mons["url"]["request_headers"] == [{"header": "Accept", "value": "text/plain"}]
    assert mons["nginx"]["commandline"] == "nginx: master"
    assert got["sinks"][0]["api_key"] == "****" + KEY[-4:] and KEY not in r.stdout + r.stderr
    assert f"{conf}: monitors[0].log_path: shipctl queues monitor output itself" in r.stderr
    assert "monitors[1].emit_to_metric_log: not an option of shipctl's shell monitor; ignored" in r.stderr


def test_mysql_module_maps_to_its_type_with_the_agents_options(tmp_path: Path) -> None:
    conf = tmp_path / "agent.json"
    conf.write_text(
        '{ api_key: "k-0123456789abcdef", monitors: [ { module: "scalyr_agent.builtin_monitors.mysql_monitor",'
        ' database_socket: "default", database_username: "scalyr", database_password: "$PW", id: "db",'
        ' monitor_log_write_rate: 4000 } ], import_vars: [ { var: "PW", default: "s3cr3t-pass" } ] }'
    )
    cfg = load_config(conf)
    # The agent's common monitor keys shipctl has no use for are warned about, not passed to the monitor's options
    # (which reject unknown keys).
    assert any(
        "monitors[0].monitor_log_write_rate: not an option of shipctl's mysql monitor" in w for w in cfg.warnings
    )
    (mon,) = cfg.monitors
    assert (mon.type, mon.id) == ("mysql", "db")
    assert dict(mon.options) == {
        "database_socket": "default",
        "database_username": "scalyr",
        "database_password": "s3cr3t-pass",
    }
    assert cfg.sinks[0].options["api_key"] == "k-0123456789abcdef"


@pytest.mark.parametrize(
    ("body", "fragment", "message"),
    [
        ("{ logs: [ { path: 3 } ] }", None, None),  # a number is a string to the agent: accepted
        ('{ logs: [ { exclude: ["x"] } ] }', None, "logs[0].path: missing required key"),
        ('{ logs: [ { path: "/x", attributes: { ok: true } } ] }', None, "logs[0].attributes.ok: expected a string"),
        ('{ logs: [ { path: "/x", copy_from_start: "maybe" } ] }', None, None),  # any other string is true
        ('{ logs: [ { path: "/x", copy_from_start: [1] } ] }', None, "logs[0].copy_from_start: expected true or"),
        (
            '{ logs: [ { path: "/x", lineGroupers: [ { start: "a", haltWith: "b", haltBefore: "c" } ] } ] }',
            None,
            "logs[0].lineGroupers[0]: expected exactly one of",
        ),
        (
            '{ logs: [ { path: "/x", sampling_rules: [ { match_expression: "(" , sampling_rate: 1 } ] } ] }',
            None,
            "logs[0].sampling_rules[0].match_expression: invalid regular expression",
        ),
        (
            '{ logs: [ { path: "/x", sampling_rules: [ { match_expression: "a", sampling_rate: 2 } ] } ] }',
            None,
            "sampling_rate: expected a number from 0 to 1",
        ),
        ('{ monitors: [ { id: "x" } ] }', None, "monitors[0].module: missing required key"),
        ('{ monitors: [ "shell_monitor" ] }', None, "monitors[0]: expected an object"),
        ('{ monitors: [ { module: " " } ] }', None, "monitors[0].module: expected a module name"),
        ('{ api_key: { k: "sk-live-0123456789" } }', None, 'api_key: expected a string, got "****'),
        ('{ compression_type: "gzip" }', None, "compression_type: expected one of deflate, bz2"),
        ('{ max_line_size: "big" }', None, "max_line_size: expected an integer"),
        ("{ debug_level: 9 }", None, "debug_level: The debug level must be between 0 and 5"),
        ("{ server_attributes: { a: [] } }", None, "server_attributes.a: expected a string or number"),
        ("{ max_line_size: 1000 }", "{ max_line_size: 2000 }", "max_line_size: already set in"),
        ("{ }", '{ api_key: "k-0123456789abcdef" }', None),  # set once, in a fragment: fine
        ('{ import_vars: [ { var: "X" } ] }', None, "import_vars[0].default: missing required key"),
    ],
)
def test_agent_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, fragment: str | None, message: str | None
) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    conf = tmp_path / "agent.json"
    conf.write_text(body)
    if fragment is not None:
        monkeypatch.delenv("SCALYR_API_KEY")
        (tmp_path / "agent.d").mkdir()
        (tmp_path / "agent.d" / "a.json").write_text(fragment)
        if "api_key" not in fragment:
            conf.write_text(body[:-1] + ', api_key: "k-0123456789abcdef" }')
    r = cli("check-config", "-c", str(conf))
    if message is None:
        assert r.exit_code == 0, r.stderr
    else:
        assert r.exit_code == 78, r.stdout
        assert r.stderr.startswith(f"shipctl: {tmp_path}/") and message in r.stderr, r.stderr
        assert "0123456789" not in r.stderr  # a secret value is never shown
        assert "Traceback" not in r.stderr


def test_syntax_error_names_file_line_and_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    conf = tmp_path / "agent.json"
    conf.write_text('{\n  logs: [\n    { path: "/var/log/x.log" }\n    { path: "/y" } { path: "/z" }\n  ]\n}\n')
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 78
    assert r.stderr.strip() == (
        f"shipctl: {conf}: invalid JSON at line 4, column 20: Unexpected character [{{] in array... are you missing"
        " a comma?"
    )
    (tmp_path / "agent.d").mkdir()
    conf.write_text("{}")
    (tmp_path / "agent.d" / "bad.json").write_text("{ logs: [ { path: '/x' } ] }")
    r = cli("tail-once", "-c", str(conf))
    assert r.exit_code == 78
    assert f"{tmp_path}/agent.d/bad.json: invalid JSON at line 1, column 19: Unexpected character" in r.stderr


def test_missing_api_key_is_an_error_unless_the_environment_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCALYR_API_KEY", raising=False)
    conf = tmp_path / "agent.conf"  # recognised by content, not extension
    conf.write_text("// no key here\n{ implicit_agent_log_collection: false }\n")
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 78 and f"{conf}: api_key: missing required key" in r.stderr
    assert cli("tail-once", "-c", str(conf)).exit_code == 78
    r = cli("status", "--json", "-c", str(conf))  # status works in a shell without the key
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["config_files"] == [str(conf)]
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("SCALYR_SERVER", "upload.example")
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    (sink,) = json.loads(r.stdout)["sinks"]
    assert sink["api_key"] == "****" + KEY[-4:] and sink["server"] == "https://upload.example"


def test_unimplemented_and_unknown_keys_warn_once_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    conf = tmp_path / "agent.json"
    conf.write_text(
        '{ api_key: "$SCALYR_API_KEY", import_vars: ["SCALYR_API_KEY"], k8s_api_url: "https://k8s",'
        ' max_send_rate_enforcement: "unlimited", json_library: "auto", no_such_option: 1,'
        ' logs: [ { path: "/x", parse_format: "raw", ignore_stale_files: true } ],'
        ' journald_logs: [ { journald_unit: ".*" } ] }   trailing words'
    )
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("shipctl: warning:")]
    expected = [
        f"{conf}: k8s_api_url: an agent option shipctl does not implement",
        f"{conf}: no_such_option: unknown key; ignored (the agent ignores it too)",
        f"{conf}: logs[0].ignore_stale_files: an agent log option shipctl does not implement",
        f"{conf}: journald_logs: an agent option shipctl does not implement",
        f"{conf}: line 1, column {conf.read_text().index('trailing') + 1}: text after the closing '}}' is ignored",
    ]
    assert len(warnings) == len(expected), warnings
    for text in expected:
        assert sum(text in w for w in warnings) == 1, (text, warnings)
    assert "parse_format" not in r.stderr and "json_library" not in r.stderr  # the agent's defaults: no warning


def test_toml_conf_d_reads_json_fragments_and_warns_about_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "shipctl.toml"
    conf.write_text('[[sinks]]\ntype = "file"\npath = "out.jsonl"\n')
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "app.json").write_text(
        '// from the Scalyr agent\n{ logs: [ { path: "/srv/app.log", parser: "app", copy_from_start: true } ],'
        ' monitors: [ { module: "shell_monitor", command: "date" } ] }'
    )
    (tmp_path / "conf.d" / "old.toml.bak").write_text("")
    (tmp_path / "conf.d" / "notes.txt").write_text("")
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["files"] == [str(conf), str(tmp_path / "conf.d" / "app.json")]
    assert [(lg["path"], lg["attributes"], lg["start_at"]) for lg in got["logs"]] == [
        ("/srv/app.log", {"parser": "app"}, "beginning")
    ]
    assert [(m["type"], m["command"]) for m in got["monitors"]] == [("shell", "date")]
    for name in ("old.toml.bak", "notes.txt"):
        assert f"shipctl: warning: {tmp_path}/conf.d/{name}: not read" in r.stderr


def test_own_log_is_shipped_and_status_lists_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    conf = tmp_path / "agent.json"
    conf.write_text("{ implicit_metric_monitor: false, implicit_agent_process_metrics_monitor: false }")
    (tmp_path / "agent.d").mkdir()
    (tmp_path / "agent.d" / "logs.json").write_text(f'{{ logs: [ {{ path: "{tmp_path}/a.log" }} ] }}')
    # Nothing is uploaded here: status shows what the runs read, own log included.
    (tmp_path / "a.log").write_text("x\n")
    monkeypatch.setenv("SHIPCTL_STATE", str(tmp_path / "state" / "state.db"))
    # Run 1 skips a.log's history (no copy_from_start) and logs nothing; run 2 reads "y" and writes shipctl.log;
    # run 3 reads that line.
    for _ in range(3):
        r = cli("tail-once", "-c", str(conf))
        assert r.exit_code == 0, r.stderr
        (tmp_path / "a.log").open("a").write("y\n")
    r = cli("status", "--json", "-c", str(conf))
    st = json.loads(r.stdout)
    assert st["config_files"] == [str(conf), str(tmp_path / "agent.d" / "logs.json")]
    assert st["version"] and st["user"].endswith(f"(uid {os.geteuid()})")
    own = [lg for lg in st["logs"] if lg["log_id"] == "shipctl.log"]
    assert own and own[0]["path"] == str(tmp_path / "state" / "shipctl.log")
    assert own[0]["files"] and own[0]["files"][0]["lines_copied"] >= 1
    (tmp_path / "agent.d" / "old.json.bak").write_text("")
    text = cli("status", "-c", str(conf)).stdout
    assert str(tmp_path / "agent.d" / "logs.json") in text and "running as" in text
    assert f"Warning:    {tmp_path}/agent.d/old.json.bak: not read (only *.json files" in text.replace("\n", "")


def test_config_convert_refuses_what_is_not_an_agent_json(tmp_path: Path) -> None:
    toml = tmp_path / "shipctl.toml"
    toml.write_text("[agent]\n")
    r = cli("config", "convert", str(toml))
    assert r.exit_code == 78 and r.stdout == ""
    assert (
        r.stderr.strip()
        == f"shipctl: {toml}: not a Scalyr agent.json (expected a .json file, or one beginning with '{{')"
    )
    r = cli("config", "convert", str(tmp_path / "missing.json"))
    assert r.exit_code == 78 and "config file not found" in r.stderr
    bad = tmp_path / "agent.json"
    bad.write_text('{ api_key: "k-0123456789abcdef", logs: [ { path: "/x", lineGroupers: [ { start: "a" } ] } ] }')
    r = cli("config", "convert", str(bad))
    assert r.exit_code == 78 and r.stdout == ""
    assert "logs[0].lineGroupers[0]: expected exactly one of continueThrough" in r.stderr


def test_config_convert_refuses_an_integer_toml_cannot_hold(tmp_path: Path) -> None:
    """JSON numbers have no size limit; TOML's integers stop at 64 bits. The largest that fits is written;
    a larger one is refused, naming where it is, instead of printing a file no TOML reader accepts."""
    agent = tmp_path / "agent.json"
    body = '{ api_key: "k-0123456789abcdef", server_attributes: { account: %d },'
    body += ' logs: [ { path: "/var/log/a.log", attributes: { parser: "x", n: %d } } ] }'
    agent.write_text(body % (12, 2**63 - 1))
    r = cli("config", "convert", str(agent))
    assert r.exit_code == 0, r.stderr
    assert tomllib.loads(r.stdout)["logs"][0]["attributes"]["n"] == 2**63 - 1
    for account, n, where in ((2**63, 1, "server_attributes.account"), (12, -(2**63) - 1, "logs[0].attributes.n")):
        agent.write_text(body % (account, n))
        r = cli("config", "convert", str(agent))
        assert r.exit_code == 78 and r.stdout == ""
        assert f"{agent}: {where}: the integer " in r.stderr and "beyond TOML's 64-bit integers" in r.stderr


# The agent.json a package install leaves, filled in: implicit monitors and the agent's own log on.
STOCK = """\
// Configuration for the Scalyr Agent. For help: https://www.scalyr.com/help/scalyr-agent
{
  import_vars: ["SCALYR_API_KEY"],
  api_key: "$SCALYR_API_KEY",
  scalyr_server: "{url}", allow_http: true,
  server_attributes: {
     serverHost: "host-a"
  },
  // Log files to upload to Scalyr.
  logs: [
    {
      path: "{logs}/syslog",
      attributes: {parser: "systemLog"},
      copy_from_start: true
    }
  ],
  monitors: [
  ]
}
"""

STOCK_TOML = """\
import_vars = ["SCALYR_API_KEY"]
server_attributes = {{ serverHost = "host-a" }}

[agent]
implicit_agent_log_collection = true

[[logs]]
path = "{logs}/syslog"
attributes = {{ parser = "systemLog" }}

[[sinks]]
type = "scalyr"
api_key = "$SCALYR_API_KEY"
server = "{url}"
allow_http = true
"""


def test_stock_agent_json_with_implicit_monitors_and_own_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "syslog").write_text(
        "Nov 30 20:00:01 host-a CRON[1]: (root) CMD (true)\nNov 30 20:00:02 host-a sshd[2]: ok\n"
    )
    with Receiver() as rj, Receiver() as rt:
        agent = tmp_path / "scalyr" / "agent.json"
        agent.parent.mkdir()
        agent.write_text(STOCK.replace("{url}", rj.url).replace("{logs}", str(logs)))
        native = tmp_path / "native.toml"
        native.write_text(STOCK_TOML.format(url=rt.url, logs=logs))
        for _ in range(2):  # the second run also ships the own log the first one wrote
            for config, state in ((agent, tmp_path / "sj" / "s.db"), (native, tmp_path / "st" / "s.db")):
                _run(config, state, monkeypatch, "run")
        results = []
        for r in (rj, rt):
            assert r.violations == []
            own = [e for e in r.events if e["attrs"].get("parser") == "scalyrAgentLog"]
            logged = sorted(
                json.dumps(e["attrs"], sort_keys=True) for e in r.events if e["log"] is not None and e not in own
            )
            metrics = {
                (e["thread"], e["attrs"]["metric"], tuple(sorted(k for k in e["attrs"] if k not in _VOLATILE)))
                for e in r.events
                if e["log"] is None
            }
            results.append((logged, metrics, [e["message"].split(" INFO ", 1)[-1].split(" ")[0] for e in own]))
    (json_logs, json_metrics, json_own), (toml_logs, toml_metrics, toml_own) = results
    assert json_logs == toml_logs and len(json_logs) == 2
    assert json_metrics == toml_metrics
    threads = {t for t, _, _ in json_metrics}
    assert threads == {"system", "agent"}
    assert {m for t, m, _ in json_metrics if t == "system"} >= {
        "proc.stat.cpu",
        "proc.meminfo.memtotal",
        "sys.cpu.count",
    }
    assert json_own == toml_own == ["run:"]  # the first run's line in shipctl's own log, shipped by the second


_text = st.text(max_size=12)
_attr_values = _text | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attrs=st.dictionaries(_text, _attr_values, max_size=4),
    server=st.dictionaries(_text.filter(lambda k: k != "serverHost"), _text, max_size=3),
    # Not a directory ("/srv/" + "/" or ".."): a log path naming one is refused, with its own test.
    path=st.text(min_size=1, max_size=15).filter(
        lambda p: "\0" not in p and not set(p) & set("[]*?") and not os.path.isdir("/srv/" + p)
    ),
    command=st.text(min_size=1, max_size=15).filter(lambda c: c.strip()),
)
def test_convert_round_trips_any_values(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attrs: dict[str, Any],
    server: dict[str, str],
    path: str,
    command: str,
) -> None:
    # Whatever the strings hold (quotes, backslashes, control characters, DEL, $, non-ASCII), the TOML that
    # convert prints reads back to the config the agent.json gives.
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    conf = tmp_path / "rt" / "agent.json"
    conf.parent.mkdir(exist_ok=True)
    body = {
        "import_vars": ["SCALYR_API_KEY"],
        "api_key": "$SCALYR_API_KEY",
        "server_attributes": server,
        "logs": [{"path": "/srv/" + path, "attributes": attrs}],
        "monitors": [{"module": "shell_monitor", "command": command}],
    }
    conf.write_text(json.dumps(body))
    out = tmp_path / "rt" / "out.toml"
    out.write_text(convert(str(conf)).toml)
    _same(load_config(conf), load_config(out))
