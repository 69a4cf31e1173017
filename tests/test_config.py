"""Config loading through the real CLI: every mistake is one line on stderr naming file, key path and what
was expected, exit 78, nothing on stdout; and the good paths (conf.d, $VAR, relative paths, serverHost)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipctl.cli import app
from tests.conftest import Env


def config_error(env: Env, *args: str) -> str:
    """Run the CLI, expect a config error, return the one stderr line without the "shipctl: " prefix."""
    r = env.cli(*(args or ("tail-once",)))
    assert r.exit_code == 78, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("shipctl: ") and "Traceback" not in r.stderr
    return lines[0].removeprefix("shipctl: ")


def log_table(env: Env, extra: str = "", name: str = "app.log") -> str:
    return f'[[logs]]\npath = "{env.logs}/{name}"\n{extra}\n'


# --- malformed configs: exit 78, one exact line ---------------------------------------------------------


def test_invalid_toml_names_the_line(env: Env) -> None:
    env.write_config('[agent]\nmax_seconds = 5\n[[logs]]\npath = "/var/log/a.log\n')
    assert config_error(env) == f"{env.config}: invalid TOML: Illegal character '\\n' (at line 4, column 23)"


def test_config_not_utf8(env: Env) -> None:
    env.config.write_bytes(b'[[logs]]\npath = "/var/log/\xff.log"\n')
    assert config_error(env) == f"{env.config}: invalid TOML: not UTF-8 (byte 26)"


def test_unknown_top_level_key(env: Env) -> None:
    env.write_config('colour = "red"\n' + log_table(env))
    assert config_error(env) == (
        f"{env.config}: colour: unknown key (expected one of: import_vars, agent, server_attributes, logs, monitors,"
        " sinks)"
    )


def test_unknown_key_inside_logs(env: Env) -> None:
    env.write_config(log_table(env) + log_table(env, "max_line_sise = 100", name="b.log"))
    msg = config_error(env)
    assert msg.startswith(f"{env.config}: logs[1].max_line_sise: unknown key (expected one of: ")
    assert "max_line_size" in msg and "start_at" in msg


def test_unknown_key_inside_agent(env: Env) -> None:
    env.write_config("[agent]\nmax_secs = 5\n" + log_table(env))
    msg = config_error(env)
    assert msg.startswith(f"{env.config}: agent.max_secs: unknown key (expected one of: ")
    assert "max_seconds" in msg


def test_string_for_max_line_size(env: Env) -> None:
    env.write_config(log_table(env, 'max_line_size = "10k"'))
    assert config_error(env) == f"{env.config}: logs[0].max_line_size: expected an integer, got '10k'"


def test_negative_agent_max_seconds(env: Env) -> None:
    env.write_config("[agent]\nmax_seconds = -1\n" + log_table(env))
    assert config_error(env) == f"{env.config}: agent.max_seconds: expected a number of 0 or more, got -1"


def test_bad_regex_in_sampling_rules(env: Env) -> None:
    env.write_config(log_table(env, 'sampling_rules = [{ match_expression = "a(b", sampling_rate = 0.5 }]'))
    assert config_error(env) == (
        f"{env.config}: logs[0].sampling_rules[0].match_expression: invalid regular expression 'a(b':"
        " missing ), unterminated subpattern at position 1"
    )


def test_bad_regex_in_redaction_rules(env: Env) -> None:
    env.write_config(
        log_table(
            env, "[[logs.redaction_rules]]\nmatch_expression = 'x'\n[[logs.redaction_rules]]\nmatch_expression = '*x'"
        )
    )
    assert config_error(env) == (
        f"{env.config}: logs[0].redaction_rules[1].match_expression: invalid regular expression '*x':"
        " nothing to repeat at position 0"
    )


def test_redaction_replacement_refers_to_missing_group(env: Env) -> None:
    env.write_config(log_table(env, "redaction_rules = [{ match_expression = 'key=(\\w+)', replacement = 'key=\\2' }]"))
    assert config_error(env) == (
        f"{env.config}: logs[0].redaction_rules[0].replacement: invalid replacement 'key=\\\\2':"
        " invalid group reference 2 at position 5"
    )


def test_redaction_hash_refers_to_missing_group(env: Env) -> None:
    env.write_config(log_table(env, "redaction_rules = [{ match_expression = 'key=\\w+', replacement = 'key=\\H1' }]"))
    assert config_error(env) == (
        f"{env.config}: logs[0].redaction_rules[0].replacement: \\H1: match_expression has no group 1 (it has 0)"
    )


@pytest.mark.parametrize(
    ("grouper", "key", "expected"),
    [
        ("{ start = '^(', continue_through = '^\\s' }", "start", "invalid regular expression '^(': missing ),"),
        ("{ start = '^\\S', halt_before = '[a' }", "halt_before", "invalid regular expression '[a': unterminated"),
    ],
)
def test_bad_regex_in_line_groupers(env: Env, grouper: str, key: str, expected: str) -> None:
    env.write_config(log_table(env, f"line_groupers = [{grouper}]"))
    assert config_error(env).startswith(f"{env.config}: logs[0].line_groupers[0].{key}: {expected}")


@pytest.mark.parametrize(
    ("rules", "count"),
    [("continue_through = '^\\s', halt_before = '^x'", 2), ("", 0)],
)
def test_grouper_needs_exactly_one_continuation(env: Env, rules: str, count: int) -> None:
    sep = ", " if rules else ""
    env.write_config(log_table(env, f"line_groupers = [{{ start = '^\\S'{sep}{rules} }}]"))
    assert config_error(env) == (
        f"{env.config}: logs[0].line_groupers[0]: expected exactly one of continue_through, continue_past,"
        f" halt_before, halt_with (got {count})"
    )


def test_grouper_camel_case_and_unknown_key(env: Env) -> None:
    env.write_config(log_table(env, "lineGroupers = [{ start = '^\\S', continueThrough = '^\\s', stop = 'x' }]"))
    assert config_error(env) == (
        f"{env.config}: logs[0].lineGroupers[0].stop: unknown key (expected start and one of continue_through,"
        " continue_past, halt_before, halt_with)"
    )


def test_sampling_rate_out_of_range(env: Env) -> None:
    # the third [[logs]], to pin the index in the key path
    rule = "sampling_rules = [{ match_expression = 'DEBUG', sampling_rate = 1.5 }]"
    env.write_config(log_table(env) + log_table(env, name="b.log") + log_table(env, rule, name="c.log"))
    assert config_error(env) == (
        f"{env.config}: logs[2].sampling_rules[0].sampling_rate: expected a number from 0 to 1, got 1.5"
    )


def test_start_at_bad_value(env: Env) -> None:
    env.write_config(log_table(env, 'start_at = "middle"'))
    assert config_error(env) == f"{env.config}: logs[0].start_at: expected one of 'beginning', 'end', got 'middle'"


@pytest.mark.parametrize(
    ("extra", "key", "glob"),
    [("", "path", "{logs}/app[0-9.log"), ('exclude = ["*.gz", "*[.old"]', "exclude[1]", "*[.old")],
)
def test_unclosed_bracket_in_glob(env: Env, extra: str, key: str, glob: str) -> None:
    path = f"{env.logs}/app[0-9.log" if key == "path" else f"{env.logs}/*.log"
    env.write_config(f'[[logs]]\npath = "{path}"\n{extra}\n')
    shown = glob.format(logs=env.logs)
    assert config_error(env) == (
        f"{env.config}: logs[0].{key}: unclosed '[' in glob {shown!r} (write [[] for a literal '[')"
    )


def test_glob_classes_that_are_closed_are_accepted(env: Env) -> None:
    (env.logs / "app1.log").write_text("one\n")
    (env.logs / "[x].log").write_text("two\n")
    env.write_config(log_table(env, name="app[0-9].log") + log_table(env, name="[[]x].log"))
    env.ship()
    assert sorted(env.messages()) == ["one", "two"]


def test_duplicate_log_ids(env: Env) -> None:
    env.write_config(log_table(env, 'id = "web"') + log_table(env, 'id = "web"', name="b.log"))
    assert config_error(env) == (
        f"{env.config}: logs[1].id: duplicate id 'web' (also logs[0]); give each entry its own id"
    )


def test_duplicate_log_id_across_conf_d_names_both_files(env: Env) -> None:
    env.write_config(log_table(env, 'id = "web"'))
    (env.tmp / "conf.d").mkdir()
    extra = env.tmp / "conf.d" / "web.toml"
    extra.write_text(log_table(env, 'id = "web"', name="b.log"))
    assert config_error(env) == (
        f"{extra}: logs[0].id: duplicate id 'web' (also {env.config}: logs[0]); give each entry its own id"
    )


def test_missing_path(env: Env) -> None:
    env.write_config('[[logs]]\nid = "web"\n')
    assert config_error(env) == f"{env.config}: logs[0].path: missing required key (a string)"


def test_logs_as_a_table_not_an_array(env: Env) -> None:
    env.write_config(f'[logs]\npath = "{env.logs}/app.log"\n')
    assert config_error(env) == f"{env.config}: logs: expected an array of tables ([[logs]]), got a table"


def test_toml_date_in_attributes(env: Env) -> None:
    env.write_config(log_table(env, "attributes = { since = 2024-01-02 }"))
    assert config_error(env) == (
        f"{env.config}: logs[0].attributes.since: expected a string, number or true/false,"
        " got datetime.date(2024, 1, 2)"
    )


def test_conf_d_may_not_add_sinks(env: Env) -> None:
    env.write_config(log_table(env))
    (env.tmp / "conf.d").mkdir()
    extra = env.tmp / "conf.d" / "20-sink.toml"
    extra.write_text('[[sinks]]\ntype = "stdout"\n')
    assert config_error(env) == (
        f"{extra}: sinks: not allowed in conf.d"
        " (expected one of: import_vars, agent, server_attributes, logs, monitors)"
    )


def test_conf_d_may_not_change_agent_settings(env: Env) -> None:
    env.write_config(log_table(env))
    (env.tmp / "conf.d").mkdir()
    extra = env.tmp / "conf.d" / "20-agent.toml"
    extra.write_text("[agent]\nmax_seconds = 1\n")
    assert config_error(env) == f"{extra}: agent.max_seconds: conf.d files may only set agent.server_attributes"


def test_missing_import_var(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPCTL_TEST_NOPE", raising=False)
    monkeypatch.setenv("SHIPCTL_TEST_SET", "x")
    env.write_config('import_vars = ["SHIPCTL_TEST_SET", "SHIPCTL_TEST_NOPE"]\n' + log_table(env))
    assert config_error(env) == (
        f"{env.config}: import_vars[1]: environment variable SHIPCTL_TEST_NOPE is not set"
        ' (set it, or write {var = "SHIPCTL_TEST_NOPE", default = "..."})'
    )


def test_import_var_with_a_bad_name(env: Env) -> None:
    env.write_config('import_vars = [{ var = "API-KEY" }]\n' + log_table(env))
    assert (
        config_error(env) == f"{env.config}: import_vars[0].var: expected an environment variable name, got 'API-KEY'"
    )


def test_unknown_monitor_type(env: Env) -> None:
    env.write_config(log_table(env) + '[[monitors]]\ntype = "shel"\ncommand = "true"\n')
    known = (
        "linux_process_metrics, linux_system_metrics, mysql, plugin, scalyr_monitor, script, shell, shipctl_metrics,"
        " url"
    )
    assert config_error(env, "run") == f"{env.config}: monitors[0].type: unknown monitor type 'shel' (known: {known})"


def test_unknown_sink_type(env: Env) -> None:
    env.write_config(log_table(env) + '[[sinks]]\ntype = "scalyer"\n', sink=False)
    msg = config_error(env, "check-config")
    assert msg.startswith(f"{env.config}: sinks[0].type: unknown sink type 'scalyer' (known: ")
    assert "file" in msg


def test_shell_monitor_missing_command(env: Env) -> None:
    env.write_config(log_table(env) + '[[monitors]]\ntype = "shell"\nid = "kver"\n')
    assert config_error(env, "run") == f"{env.config}: monitors[0].command: missing required key (a string)"


def test_file_sink_rejects_unknown_key(env: Env) -> None:
    env.write_config(log_table(env) + f'[[sinks]]\ntype = "file"\npath = "{env.sink}"\napi_key = "abc"\n', sink=False)
    msg = config_error(env, "upload")
    assert msg.startswith(f"{env.config}: sinks[0].api_key: unknown key (expected one of: ")


def test_real_entry_point_prints_one_line_and_exits_78(env: Env) -> None:
    env.write_config("[[logs]]\npath = 5\n")
    p = env.proc("tail-once")
    assert (p.returncode, p.stdout) == (78, "")
    assert p.stderr == f"shipctl: {env.config}: logs[0].path: expected a string, got 5\n"


def test_explicit_config_that_does_not_exist(env: Env) -> None:
    missing = env.tmp / "nope.toml"
    assert config_error(env, "tail-once", "-c", str(missing)) == f"{missing}: config file not found"


def test_shipctl_config_that_does_not_exist(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = env.tmp / "gone" / "shipctl.toml"
    monkeypatch.setenv("SHIPCTL_CONFIG", str(missing))
    r = CliRunner().invoke(app, ["status"])
    assert (r.exit_code, r.stdout, r.stderr) == (78, "", f"shipctl: {missing}: config file not found\n")


def test_imported_secret_is_masked_in_error_messages(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPCTL_TEST_KEY", "sk-live-0123456789abcdefWXYZ")
    env.write_config('import_vars = ["SHIPCTL_TEST_KEY"]\n' + log_table(env, 'start_at = "$SHIPCTL_TEST_KEY"'))
    assert config_error(env) == (f"{env.config}: logs[0].start_at: expected one of 'beginning', 'end', got '****WXYZ'")


def test_secret_key_value_is_masked_in_error_messages(env: Env) -> None:
    env.write_config(log_table(env, "redaction_rules = [{ match_expression = 'x', hash_salt = 1234567890123456 }]"))
    msg = config_error(env)
    assert msg == f"{env.config}: logs[0].redaction_rules[0].hash_salt: expected a string, got '****3456'"


# --- what a good config does -------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_file(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPCTL_STATE")
    elsewhere = env.tmp / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (env.logs / "app.log").write_text("hello\n")
    env.write_config('[agent]\nstate = "var/state.db"\n[[logs]]\npath = "logs/*.log"\n', sink=False)
    with env.config.open("a") as fh:
        fh.write('[[sinks]]\ntype = "file"\npath = "out/sink.jsonl"\n')
    env.ship()
    assert env.messages() == ["hello"]  # env.sink is tmp/out/sink.jsonl
    assert (env.tmp / "var" / "state.db").exists()
    assert not (elsewhere / "var").exists() and not (elsewhere / "out").exists()
    assert env.events()[0]["source"] == str(env.logs / "app.log")


def test_conf_d_adds_logs_and_server_attributes_in_sorted_order(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPCTL_TEST_TIER", raising=False)
    env.write_config('[agent]\nserver_attributes = { serverHost = "main", tier = "main" }\n')
    conf_d = env.tmp / "conf.d"
    (conf_d / "logs").mkdir(parents=True)
    (conf_d / "logs" / "x.log").write_text("from conf.d\n")
    # relative to the conf.d file's own directory
    (conf_d / "20-b.toml").write_text(
        'import_vars = [{ var = "SHIPCTL_TEST_TIER", default = "b" }]\n'
        'server_attributes = { tier = "$SHIPCTL_TEST_TIER" }\n[[logs]]\npath = "logs/x.log"\n'
    )
    (conf_d / "10-a.toml").write_text('[agent.server_attributes]\ntier = "a"\nrole = "web"\n')
    (conf_d / "notes.txt").write_text("not toml at all [[[")
    env.ship()
    (ev,) = env.events()
    assert ev["message"] == "from conf.d"
    assert ev["attrs"] == {"serverHost": "main", "tier": "b", "role": "web"}


def test_var_substitution_in_nested_tables_and_arrays(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPCTL_TEST_DC", "eu-west")
    monkeypatch.setenv("SHIPCTL_TEST_LOGDIR", str(env.logs))
    monkeypatch.delenv("SHIPCTL_TEST_ROLE", raising=False)
    env.write_config("""
        import_vars = ["SHIPCTL_TEST_DC", "SHIPCTL_TEST_LOGDIR", { var = "SHIPCTL_TEST_ROLE", default = "api" }]
        [agent.server_attributes]
        dc = "dc-$SHIPCTL_TEST_DC"
        [[logs]]
        path = "${SHIPCTL_TEST_LOGDIR}/*.log"
        exclude = ["*/skip-${SHIPCTL_TEST_ROLE}.log"]
        attributes = { role = "${SHIPCTL_TEST_ROLE}-$SHIPCTL_TEST_DC", literal = "$NOT_IMPORTED" }
        [[logs.redaction_rules]]
        match_expression = "${SHIPCTL_TEST_DC}"
        replacement = "[$SHIPCTL_TEST_ROLE]"
    """)
    (env.logs / "app.log").write_text("region eu-west up\n")
    (env.logs / "skip-api.log").write_text("excluded\n")
    env.ship()
    (ev,) = env.events()
    assert ev["message"] == "region [api] up"
    assert ev["source"] == str(env.logs / "app.log")
    assert ev["attrs"]["dc"] == "dc-eu-west"
    assert ev["attrs"]["role"] == "api-eu-west"
    assert ev["attrs"]["literal"] == "$NOT_IMPORTED"


def test_server_host_defaults_to_hostname(env: Env) -> None:
    env.write_config(log_table(env, 'attributes = { parser = "x" }'))
    (env.logs / "app.log").write_text("hi\n")
    env.ship()
    assert env.events()[0]["attrs"] == {"serverHost": socket.gethostname(), "parser": "x"}


def test_config_option_beats_shipctl_config(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    other = env.tmp / "other.toml"
    other.write_text("colour = 1\n")  # would fail if it were read
    monkeypatch.setenv("SHIPCTL_CONFIG", str(other))
    env.write_config(log_table(env))
    assert env.cli("check-config").exit_code == 0
    r = CliRunner().invoke(app, ["check-config"])
    assert r.exit_code == 78 and r.stderr.startswith(f"shipctl: {other}: colour: unknown key")


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from shipctl.config import config_path

    assert config_path(None) == (Path("/etc/shipctl/shipctl.toml"), False)
    monkeypatch.setenv("SHIPCTL_CONFIG", "rel.toml")
    monkeypatch.chdir(tmp_path)
    assert config_path(None) == (tmp_path / "rel.toml", True)
    assert config_path(str(tmp_path / "x.toml")) == (tmp_path / "x.toml", True)
