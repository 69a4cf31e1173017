"""An agent.json follows the Scalyr agent's own rules where shipctl's differ (tracker issue 11): import_vars
(per file, an empty variable gives the default, plain-text ``$NAME`` substitution before any type check),
relative log paths, global_monitor_sample_interval, compression_type/compression_level; ``config convert``
keeps variables as references and prints no secret; shipctl's own log path is decided in one place."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipctl.cli import app
from tests.conftest import Result
from tests.receiver import KEY


def cli(*args: str) -> Result:
    res = CliRunner().invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)


def check(conf: Path) -> dict[str, Any]:
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    assert "Traceback" not in r.stderr
    got = json.loads(r.stdout)
    got["stderr"] = r.stderr
    return got


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    for name in ("TEAM", "FOO", "FOOBAR", "BAR", "COLLECT", "SIZE", "COPY", "DC", "DB_PASSWORD", "WRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SCALYR_AGENT_LOG_PATH", raising=False)
    return tmp_path / "agent.json"


# --- import_vars ----------------------------------------------------------------------------------------


def test_an_empty_variable_gives_the_default(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf.write_text(
        '{ import_vars: [ { var: "TEAM", default: "web" }, "DC" ], server_attributes: { team: "$TEAM", dc: "[$DC]" },'
        " implicit_agent_log_collection: false }"
    )
    monkeypatch.setenv("TEAM", "")  # set, but empty: the agent uses the default
    got = check(conf)
    assert got["server_attributes"]["team"] == "web"
    assert got["server_attributes"]["dc"] == "[]"  # no default: empty
    monkeypatch.setenv("TEAM", "db")
    assert check(conf)["server_attributes"]["team"] == "db"


def test_each_file_substitutes_its_own_variables_only(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM", "web")
    monkeypatch.setenv("DC", "fra1")
    conf.write_text(
        '{ import_vars: ["TEAM"], implicit_agent_log_collection: false,'
        ' logs: [ { path: "/srv/main.log", attributes: { team: "$TEAM", dc: "$DC" } } ] }'
    )
    (conf.parent / "agent.d").mkdir()
    (conf.parent / "agent.d" / "a.json").write_text(
        '{ import_vars: ["DC"], logs: [ { path: "/srv/frag.log", attributes: { team: "$TEAM", dc: "$DC" } } ] }'
    )
    got = check(conf)
    attrs = {lg["path"]: lg["attributes"] for lg in got["logs"]}
    # As the agent: a variable another file imports is not substituted here, it stays as written.
    assert attrs["/srv/main.log"] == {"team": "web", "dc": "$DC"}
    assert attrs["/srv/frag.log"] == {"team": "$TEAM", "dc": "fra1"}
    assert {k: v for k, v in got["import_vars"].items() if k != "SCALYR_API_KEY"} == {"TEAM": "web", "DC": "fra1"}


def test_substitution_comes_before_type_checks(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECT", "false")
    monkeypatch.setenv("SIZE", "1000")
    monkeypatch.setenv("COPY", "false")
    conf.write_text(
        '{ import_vars: ["COLLECT", "SIZE", "COPY"], implicit_agent_log_collection: "$COLLECT",'
        ' max_line_size: "$SIZE", logs: [ { path: "/srv/a.log", copy_from_start: "$COPY" } ],'
        ' monitors: [ { module: "shell_monitor", command: "date", log_all_lines: "$COPY",'
        ' sample_interval: "$SIZE" } ] }'
    )
    got = check(conf)
    # "$COLLECT" read as a string would be true (any non-empty string but "false"/"f" is); substituted first it is
    # "false", as in the agent.
    assert got["agent"]["implicit_agent_log_collection"] is False
    assert [(lg["path"], lg["max_line_size"], lg["start_at"]) for lg in got["logs"]] == [("/srv/a.log", 1000, "end")]
    (mon,) = got["monitors"]
    assert (mon["log_all_lines"], mon["sample_interval"]) == (False, 1000.0)
    monkeypatch.setenv("SIZE", "lots")
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 78 and f"{conf}: max_line_size: expected an integer, got " in r.stderr


@pytest.mark.parametrize(
    ("import_vars", "value", "expected"),
    [
        # Plain text replacement in import_vars order: $FOO also matches inside $FOOBAR when FOO comes first.
        ('["FOO", "FOOBAR"]', "$FOOBAR", "fooBAR"),
        ('["FOOBAR", "FOO"]', "$FOOBAR", "foobar"),
        ('["FOO"]', "${FOO}/$FOO", "${FOO}/foo"),  # no ${NAME} form in the agent
        ('["FOO"]', "$$FOO $FOO1 pre$FOO", "$foo foo1 prefoo"),
        # A value holding "$BAR" is rewritten by BAR when BAR comes later, not when it came before.
        ('[ { var: "WRAP", default: "<$BAR>" }, "BAR"]', "$WRAP", "<bar>"),
        ('["BAR", { var: "WRAP", default: "<$BAR>" }]', "$WRAP", "<$BAR>"),
        # Listed twice: the last entry's value, at the first entry's place.
        ('[ { var: "DC", default: "a" }, "FOO", { var: "DC", default: "b" } ]', "$DC", "b"),
    ],
)
def test_dollar_names_are_replaced_as_plain_text_in_order(
    conf: Path, monkeypatch: pytest.MonkeyPatch, import_vars: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("FOO", "foo")
    monkeypatch.setenv("FOOBAR", "foobar")
    monkeypatch.setenv("BAR", "bar")
    conf.write_text(
        json.dumps({"server_attributes": {"x": value}, "implicit_agent_log_collection": False})[:-1]
        + f", import_vars: {import_vars} }}"
    )
    assert check(conf)["server_attributes"]["x"] == expected


def test_secrets_from_variables_are_masked(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "hunter2-0123456789"
    monkeypatch.setenv("DB_PASSWORD", password)
    monkeypatch.setenv("FOO", "plain-but-used-as-a-key")
    conf.write_text(
        '{ import_vars: ["DB_PASSWORD", "FOO", "SCALYR_API_KEY"], api_key: "$SCALYR_API_KEY",'
        " implicit_agent_log_collection: false,"
        ' monitors: [ { module: "url_monitor", url: "http://u:$DB_PASSWORD@127.0.0.1:1/",'
        '   request_headers: [ { header: "X-Note", value: "pw=$DB_PASSWORD" } ] } ],'
        ' logs: [ { path: "/srv/a.log", redaction_rules: [ { match_expression: "x(.)", replacement: "\\\\H1",'
        '   hash_salt: "$FOO" } ], attributes: { note: "$FOO" } } ] }'
    )
    got = check(conf)
    text = json.dumps(got)
    for secret in (password, "plain-but-used-as-a-key", KEY):
        assert secret not in text, secret
    assert got["import_vars"]["DB_PASSWORD"].startswith("****")
    assert got["import_vars"]["FOO"].startswith("****")  # used as a hash_salt: a secret everywhere
    # An error that shows a value masks it too.
    monkeypatch.setenv("FOO", password)
    conf.write_text('{ import_vars: ["DB_PASSWORD"], max_line_size: "$DB_PASSWORD" }')
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 78 and "max_line_size: expected an integer" in r.stderr
    assert password not in r.stderr and "****" in r.stderr


def test_convert_keeps_variables_and_prints_no_secret(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM", "db")
    conf.write_text(
        '{ import_vars: [ { var: "TEAM", default: "web" }, { var: "DB_PASSWORD", default: "s3cr3t-default" },'
        ' "SCALYR_API_KEY" ], api_key: "$SCALYR_API_KEY",'
        ' server_attributes: { team: "$TEAM", where: "team-$TEAM" }, implicit_agent_log_collection: false,'
        ' monitors: [ { module: "url_monitor", id: "db", url: "http://u:$DB_PASSWORD@127.0.0.1:1/" } ],'
        ' logs: [ { path: "/srv/a.log", redaction_rules: ['
        '   { match_expression: "a=(\\\\w+)", replacement: "a=\\\\H1", hash_salt: "salt-one" },'
        '   { match_expression: "b=(\\\\w+)", replacement: "b=\\\\H1", hash_salt: "salt-two" },'
        '   { match_expression: "c=(\\\\w+)", replacement: "c=\\\\H1", hash_salt: "salt-one" } ] } ] }'
    )
    r = cli("config", "convert", str(conf))
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    for secret in ("s3cr3t-default", "salt-one", "salt-two", KEY):
        assert secret not in out + r.stderr, secret
    assert 'team = "${TEAM}"' in out and 'where = "team-${TEAM}"' in out
    assert '{ var = "TEAM", default = "web" }' in out
    assert 'url = "http://u:${DB_PASSWORD}@127.0.0.1:1/"' in out and '{ var = "DB_PASSWORD" }' in out
    assert "# Note: import_vars: the default of DB_PASSWORD (a secret) is not printed; set $DB_PASSWORD" in out
    assert "# Note: import_vars: in TOML a variable set to an empty value reads as empty" in out
    salts = [line.split("hash_salt = ")[1].split('"')[1] for line in out.splitlines() if "hash_salt = " in line]
    assert salts == ["$SCALYR_HASH_SALT", "$SCALYR_HASH_SALT_2", "$SCALYR_HASH_SALT"]
    # Read back with the variables set, the TOML is the same config.
    toml = conf.parent / "converted.toml"
    toml.write_text(out)
    monkeypatch.setenv("DB_PASSWORD", "s3cr3t-default")
    monkeypatch.setenv("SCALYR_HASH_SALT", "salt-one")
    monkeypatch.setenv("SCALYR_HASH_SALT_2", "salt-two")
    a, b = check(conf), check(toml)
    for key in ("server_attributes", "logs", "monitors", "sinks"):
        assert a[key] == b[key], key
    assert a["server_attributes"]["team"] == "db"


# --- relative log paths -----------------------------------------------------------------------------------


def test_relative_log_paths_join_agent_log_path_as_the_agent_orders_it(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf.write_text('{ implicit_agent_log_collection: false, logs: [ { path: "main.log" }, { path: "/abs.log" } ] }')
    d = conf.parent / "agent.d"
    d.mkdir()
    # The agent checks a fragment's logs (joining relative paths to agent_log_path) before it merges that
    # fragment's other keys: agent_log_path set in 20-sets.json applies to the fragments after it only.
    (d / "10-before.json").write_text('{ logs: [ { path: "before.log" } ] }')
    (d / "20-sets.json").write_text('{ agent_log_path: "/srv/logs", logs: [ { path: "own.log" } ] }')
    (d / "30-after.json").write_text('{ logs: [ { path: "sub/after.log" }, { path: "../up.log" } ] }')
    paths = [os.path.normpath(lg["path"]) for lg in check(conf)["logs"]]
    default = "/var/log/scalyr-agent-2"
    assert paths == [
        f"{default}/main.log",
        "/abs.log",
        f"{default}/before.log",
        f"{default}/own.log",
        "/srv/logs/sub/after.log",
        "/srv/up.log",
    ]
    # Set in the main file (or by $SCALYR_AGENT_LOG_PATH when no file sets it), it applies to every file.
    (d / "20-sets.json").write_text('{ logs: [ { path: "own.log" } ] }')
    monkeypatch.setenv("SCALYR_AGENT_LOG_PATH", "/env/logs")
    paths = [os.path.normpath(lg["path"]) for lg in check(conf)["logs"]]
    assert paths[0] == "/env/logs/main.log" and paths[-1] == "/env/up.log"
    conf.write_text('{ agent_log_path: "/main/logs", implicit_agent_log_collection: false, logs: [ { path: "m" } ] }')
    paths = [os.path.normpath(lg["path"]) for lg in check(conf)["logs"]]
    assert paths == ["/main/logs/m", "/main/logs/before.log", "/main/logs/own.log", "/main/logs/sub/after.log",
                     "/main/up.log"]  # fmt: skip


# --- global_monitor_sample_interval ----------------------------------------------------------------------


def _intervals(conf: Path) -> dict[str, float]:
    """Each monitor's interval as status shows it (what the runner schedules by), once a run made the state."""
    r = cli("tail-once", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    r = cli("status", "--json", "-c", str(conf))
    assert r.exit_code == 0, r.stderr
    return {m["id"]: m["interval"] for m in json.loads(r.stdout)["monitors"]}


def test_global_monitor_sample_interval_applies_to_implicit_monitors(conf: Path) -> None:
    conf.write_text(
        "{ global_monitor_sample_interval: 90, implicit_agent_log_collection: false,"
        ' monitors: [ { module: "shell_monitor", id: "mine", command: "date" },'
        ' { module: "shell_monitor", id: "fast", command: "date", sample_interval: 5 } ] }'
    )
    intervals = _intervals(conf)
    assert intervals == {"mine": 90.0, "fast": 5.0, "system": 90.0, "agent": 90.0}
    conf.write_text("{ global_monitor_sample_interval: 0 }")
    r = cli("check-config", "-c", str(conf))
    assert r.exit_code == 78 and f"{conf}: global_monitor_sample_interval: expected a number above 0" in r.stderr


def test_toml_agent_monitor_sample_interval_is_every_monitors_default(tmp_path: Path) -> None:
    toml = tmp_path / "shipctl.toml"
    toml.write_text(
        '[agent]\nmonitor_sample_interval = 45\n[[monitors]]\ntype = "shell"\nid = "a"\ncommand = "date"\n'
        '[[monitors]]\ntype = "shell"\nid = "b"\ncommand = "date"\nsample_interval = 7\n'
        '[[sinks]]\ntype = "file"\npath = "out.jsonl"\n'
    )
    intervals = _intervals(toml)
    assert intervals == {"a": 45.0, "b": 7.0, "system": 45.0, "agent": 45.0}
    toml.write_text("[agent]\nmonitor_sample_interval = -1\n")
    r = cli("check-config", "-c", str(toml))
    assert r.exit_code == 78 and "agent.monitor_sample_interval: expected a number above 0" in r.stderr


# --- compression -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "compression", "level", "warning"),
    [
        ('compression_type: "deflate", compression_level: 3', "deflate", 3, None),
        ("compression_level: 0", None, 6, "compression_level: 0 is not a deflate level (1 to 9); level 6 is used,"),
        ('compression_type: "none", compression_level: 4', "none", None, None),
        (
            'compression_type: "zstandard", compression_level: 12',
            None,
            None,
            "compression_type: 'zstandard' is not implemented by shipctl; deflate (level 1, shipctl's default) is"
            " used instead; compression_level 12 (a zstandard level, 1 to 22) is not used",
        ),
        ('compression_type: "bz2"', None, None, "'bz2' is not implemented by shipctl; deflate (level 1"),
        ('compression_type: "lz4", compression_level: 16', None, None, "compression_level 16 (a lz4 level, 0 to 16)"),
    ],
)
def test_compression_type_and_level(
    conf: Path, body: str, compression: str | None, level: int | None, warning: str | None
) -> None:
    conf.write_text(f"{{ {body}, implicit_agent_log_collection: false }}")
    got = check(conf)
    (sink,) = got["sinks"]
    assert sink.get("compression") == compression
    assert sink.get("compression_level") == level
    warnings = [w for w in got["stderr"].splitlines() if "compression" in w]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"{conf}: " in warnings[0] and warning in warnings[0], warnings


# --- shipctl's own log ------------------------------------------------------------------------------------


def test_own_log_path_is_one_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log handler and the implicit log entry that ships the log both ask state.db.own_log_path."""
    from shipctl.config import load_config
    from shipctl.state import db

    elsewhere = tmp_path / "elsewhere" / "own.log"
    elsewhere.parent.mkdir()
    monkeypatch.setattr(db, "own_log_path", lambda state_path, log_file=None: elsewhere)
    conf = tmp_path / "shipctl.toml"
    (tmp_path / "app.log").write_text("one line\n")
    conf.write_text(
        "[agent]\nimplicit_agent_log_collection = true\nimplicit_metric_monitor = false\n"
        'implicit_agent_process_metrics_monitor = false\n[[logs]]\npath = "app.log"\n'
        '[[sinks]]\ntype = "file"\npath = "out.jsonl"\n'
    )
    own = [lg for lg in load_config(conf).logs if lg.id == "shipctl.log"]
    assert [lg.path for lg in own] == [str(elsewhere)]
    r = cli("tail-once", "-c", str(conf))  # a run that read something logs a line to shipctl's own log
    assert r.exit_code == 0, r.stderr
    assert elsewhere.exists() and elsewhere.read_text()
    assert not (tmp_path / "state" / "shipctl.log").exists()


# --- rename_logfile ---------------------------------------------------------------------------------------


def test_rename_logfile_reaches_the_receiver(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.receiver import Receiver

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    logs = conf.parent / "logs" / "nginx"
    logs.mkdir(parents=True)
    for name in ("access.log", "error.log", "other.txt", "mine.log"):
        (logs / name).write_text(f"a line of {name}\n")
    with Receiver() as r:
        conf.write_text(
            json.dumps(
                {
                    "scalyr_server": r.url,
                    "allow_http": True,
                    "implicit_agent_log_collection": False,
                    "implicit_metric_monitor": False,
                    "implicit_agent_process_metrics_monitor": False,
                    "logs": [
                        # A template over the path: $PATH<n> counts from the first directory (the root is none).
                        {
                            "path": f"{logs}/*.log",
                            "exclude": ["*/mine.log"],
                            "copy_from_start": True,
                            "rename_logfile": "/web/$PATH4/$BASENAME_NO_EXT",
                        },
                        # A regex; rename_no_original present (whatever its value): no original_file.
                        {
                            "path": f"{logs}/*.txt",
                            "copy_from_start": True,
                            "rename_no_original": False,
                            "rename_logfile": {"match": "^.*/(\\w+)\\.txt$", "replacement": "/txt/\\1"},
                        },
                        # The log's own logfile attribute wins; original_file still tells the path.
                        {
                            "path": f"{logs}/mine.log",
                            "copy_from_start": True,
                            "attributes": {"logfile": "/mine"},
                            "rename_logfile": "/renamed/$BASENAME",
                        },
                    ],
                }
            )
        )
        for cmd in ("tail-once", "upload"):
            res = cli(cmd, "-c", str(conf))
            assert res.exit_code == 0, res.stderr
        assert r.violations == []
        got = {e["attrs"]["message"]: e["attrs"] for e in r.events}
    parts = str(logs).strip("/").split("/")
    assert len(parts) >= 4  # tmp_path is deep enough for $PATH4 to be a directory of it
    assert got["a line of access.log"]["logfile"] == f"/web/{parts[3]}/access"
    assert got["a line of access.log"]["original_file"] == str(logs / "access.log")
    assert got["a line of error.log"]["logfile"] == f"/web/{parts[3]}/error"
    assert got["a line of other.txt"]["logfile"] == "/txt/other"
    assert "original_file" not in got["a line of other.txt"]
    assert got["a line of mine.log"]["logfile"] == "/mine"
    assert got["a line of mine.log"]["original_file"] == str(logs / "mine.log")


@pytest.mark.parametrize(
    ("rename", "warning"),
    [
        ('"/x/$PATH9000"', None),  # valid, but no such component: the path is sent, warned in the run
        ('"/x/$HOST"', "rename_logfile: unknown placeholder $HOST"),
        ('"/x/$"', "rename_logfile: invalid $ placeholder"),
        ('{ match: "(" , replacement: "x" }', "rename_logfile: invalid regular expression '('"),
        ('{ match: "a" }', "rename_logfile: expected both match and replacement"),
        ("[1]", "rename_logfile: expected a string or {match, replacement}, got"),
    ],
)
def test_rename_logfile_the_agent_could_not_use_is_ignored(conf: Path, rename: str, warning: str | None) -> None:
    conf.write_text(
        f'{{ implicit_agent_log_collection: false, logs: [ {{ path: "/srv/a.log", rename_logfile: {rename} }} ] }}'
    )
    got = check(conf)
    (lg,) = got["logs"]
    if warning is None:
        assert lg["rename_logfile"] == "/x/$PATH9000"
        assert "rename_logfile" not in got["stderr"]
    else:
        assert lg["rename_logfile"] is None
        assert f"{conf}: logs[0].{warning}" in got["stderr"], got["stderr"]


def test_rename_logfile_in_toml(tmp_path: Path) -> None:
    toml = tmp_path / "shipctl.toml"
    base = '[[sinks]]\ntype = "file"\npath = "out.jsonl"\n[[logs]]\npath = "/srv/a.log"\n'
    toml.write_text(base + 'rename_logfile = { match = "^/srv/(.*)", replacement = "/app/\\\\1" }\n')
    (lg,) = check(toml)["logs"]
    assert lg["rename_logfile"]["replacement"] == "/app/\\1"
    # The template's placeholders are not import_vars references (no warning, not substituted); others are.
    toml.write_text(
        'import_vars = [{ var = "APP", default = "shop" }]\n' + base + 'rename_logfile = "/$APP/$PATH1/$BASENAME"\n'
    )
    got = check(toml)
    assert got["logs"][0]["rename_logfile"] == "/shop/$PATH1/$BASENAME"
    assert "import_vars" not in got["stderr"]
    for bad, message in (
        ('rename_logfile = "/x/$HOST"', "logs[0].rename_logfile: unknown placeholder $HOST"),
        ('rename_logfile = { match = "(", replacement = "x" }', "logs[0].rename_logfile.match: invalid regular"),
        ('rename_logfile = { match = "a", replacement = "\\\\2" }', "logs[0].rename_logfile: invalid replacement"),
        ("rename_logfile = 3", "logs[0].rename_logfile: expected "),
    ):
        toml.write_text(base + bad + "\n")
        r = cli("check-config", "-c", str(toml))
        assert r.exit_code == 78 and message in r.stderr, (bad, r.stderr)


def test_json_fragment_of_a_toml_config_substitutes_its_own_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "frag-secret-0123456789"
    monkeypatch.setenv("DB_PASSWORD", password)
    monkeypatch.setenv("TEAM", "")
    toml = tmp_path / "shipctl.toml"
    toml.write_text('import_vars = [{ var = "DC", default = "fra1" }]\n[[sinks]]\ntype = "file"\npath = "o.jsonl"\n')
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "app.json").write_text(
        '{ import_vars: [ "DB_PASSWORD", { var: "TEAM", default: "web" } ],'
        ' logs: [ { path: "/srv/app.log", attributes: { team: "$TEAM", dc: "$DC", note: "pw $DB_PASSWORD" } } ] }'
    )
    got = check(toml)
    (lg,) = got["logs"]
    # Its own variables by the agent's rules (empty TEAM: the default); a $NAME left then reads the TOML's.
    assert (lg["attributes"]["team"], lg["attributes"]["dc"]) == ("web", "fra1")
    assert password not in json.dumps(got) and lg["attributes"]["note"].startswith("pw ****")


def test_convert_never_prints_a_secret_it_cannot_write_as_a_reference(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "chained-secret-0123456789"
    monkeypatch.setenv("BAR", password)
    # WRAP's value holds "$BAR", rewritten by BAR listed after it: no ${NAME} form reads back to that.
    conf.write_text(
        '{ import_vars: [ { var: "WRAP", default: "<$BAR>" }, "BAR" ], server_attributes: { db_password: "$WRAP" },'
        " implicit_agent_log_collection: false }"
    )
    r = cli("config", "convert", str(conf))
    assert r.exit_code == 0, r.stderr
    assert password not in r.stdout + r.stderr
    assert r.stdout.startswith("# Note: a secret variable's value is shown masked")


def test_own_monitor_entry_keeps_id_and_interval_out_of_its_config(conf: Path) -> None:
    from shipctl.config import load_config

    conf.write_text(
        '{ additional_monitor_module_paths: "/opt/a:/opt/b", global_monitor_sample_interval: 20, monitors: ['
        ' { module: "acme.spool_monitor", id: "spool", sample_interval: 60, spool_dir: "/var/spool/acme" },'
        ' { module: "acme.other", limit: 5 } ] }'
    )
    spool, other = load_config(conf).monitors
    assert (spool.type, spool.id, spool.sample_interval) == ("scalyr_monitor", "spool", 60.0)
    assert dict(spool.options) == {
        "module": "acme.spool_monitor",
        "module_paths": ["/opt/a", "/opt/b"],
        "config": {"spool_dir": "/var/spool/acme"},  # the scalyr_monitor type sets id and sample_interval itself
    }
    assert (other.id, other.sample_interval, dict(other.options)["config"]) == ("other", 20.0, {"limit": 5})


def test_convert_prints_no_password_written_in_a_monitor(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf.write_text(
        "{ implicit_agent_log_collection: false, monitors: ["
        ' { module: "scalyr_agent.builtin_monitors.mysql_monitor", id: "db-1", database_socket: "default",'
        '   database_username: "scalyr", database_password: "written-pw-0123" },'
        ' { module: "acme.queue_monitor", id: "q", api_token: "tok-0123456789", queue: "jobs" } ] }'
    )
    r = cli("config", "convert", str(conf))
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "written-pw-0123" not in out and "tok-0123456789" not in out
    assert 'database_password = "$DB_1_DATABASE_PASSWORD"' in out
    assert "# database_password: the value written in agent.json is not printed; set $DB_1_DATABASE_PASSWORD" in out
    assert 'config = { api_token = "$Q_CONFIG_API_TOKEN", queue = "jobs" }' in out
    toml = conf.parent / "converted.toml"
    toml.write_text(out)
    monkeypatch.setenv("DB_1_DATABASE_PASSWORD", "written-pw-0123")
    monkeypatch.setenv("Q_CONFIG_API_TOKEN", "tok-0123456789")
    from shipctl.config import load_config

    a, b = load_config(conf).monitors, load_config(toml).monitors
    assert [(m.type, m.id, dict(m.options)) for m in a] == [(m.type, m.id, dict(m.options)) for m in b]
