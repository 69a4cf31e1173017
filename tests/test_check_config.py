"""``shipctl check-config``: prints the resolved config as JSON on stdout, with every secret masked."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.conftest import Env

API_KEY = "sk-live-7f3a9c2e5b1d4f60QZ9K"  # only its last 4 characters may ever be printed
SALT = "pepper-0a1b2c3d4e5f-SALT"


def check(env: Env) -> dict[str, Any]:
    r = env.cli("check-config")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert r.stderr == ""
    return json.loads(r.stdout)


def test_good_config_prints_resolved_json(env: Env) -> None:
    conf_d = env.tmp / "conf.d"
    conf_d.mkdir()
    (conf_d / "web.toml").write_text('[[logs]]\npath = "web/*.log"\nid = "web"\n')
    env.write_config("""
        [agent]
        max_seconds = 20
        [[logs]]
        path = "logs/app.log"
        line_groupers = [{ start = '^\\S', continueThrough = '^\\s' }]
        sampling_rules = [{ match_expression = "DEBUG", sampling_rate = 0.25 }]
        [[monitors]]
        type = "shell"
        id = "kver"
        command = "uname -r"
    """)
    out = check(env)
    assert out["files"] == [str(env.config), str(conf_d / "web.toml")]
    assert out["state"] == str(env.state)
    assert out["agent"]["max_seconds"] == 20.0
    logs = out["logs"]
    assert [lg["path"] for lg in logs] == [str(env.logs / "app.log"), str(conf_d / "web" / "*.log")]
    assert [lg["id"] for lg in logs] == [str(env.logs / "app.log"), "web"]
    assert logs[0]["line_groupers"] == [{"start": "^\\S", "mode": "continue_through", "pattern": "^\\s"}]
    assert logs[0]["sampling_rules"] == [{"match_expression": "DEBUG", "sampling_rate": 0.25}]
    assert logs[0]["start_at"] == "beginning" and logs[0]["max_line_size"] == 49900
    assert out["monitors"] == [{"type": "shell", "id": "kver", "sample_interval": 30.0, "command": "uname -r"}]
    everything = {"kinds": ["log", "metric", "event"], "sources": []}  # the routing a sink gets by default
    assert out["sinks"] == [{"type": "file", "id": "file", **everything, "path": str(env.sink)}]
    assert out["server_attributes"] == {"serverHost": socket.gethostname()}


def test_check_config_error_is_exit_78(env: Env) -> None:
    env.write_config('[[logs]]\npath = "x.log"\nmax_line_size = 0\n')
    r = env.cli("check-config")
    assert (r.exit_code, r.stdout) == (78, "")
    assert r.stderr == f"shipctl: {env.config}: logs[0].max_line_size: expected a number from 1 to 16777216, got 0\n"


def test_imported_values_are_masked_everywhere(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPCTL_TEST_API_KEY", API_KEY)
    monkeypatch.setenv("SHIPCTL_TEST_SALT", SALT)
    env.write_config("""
        import_vars = ["SHIPCTL_TEST_API_KEY", { var = "SHIPCTL_TEST_SALT", default = "unused" }]
        [agent.server_attributes]
        origin = "key=$SHIPCTL_TEST_API_KEY"
        [[logs]]
        path = "logs/app.log"
        attributes = { tag = "${SHIPCTL_TEST_API_KEY}" }
        [[logs.redaction_rules]]
        match_expression = "${SHIPCTL_TEST_API_KEY}|secret=\\\\w+"
        replacement = "[$SHIPCTL_TEST_API_KEY]"
        hash_salt = "$SHIPCTL_TEST_SALT"
        [[monitors]]
        type = "shell"
        command = "echo $SHIPCTL_TEST_API_KEY"
    """)
    r = env.cli("check-config")
    assert r.exit_code == 0, r.stderr
    for secret in (API_KEY, SALT):
        assert secret not in r.stdout
        assert secret[:-4] not in r.stdout  # not even a prefix
    out = json.loads(r.stdout)
    (log,) = out["logs"]
    assert out["server_attributes"]["origin"] == "key=****QZ9K"
    assert log["attributes"] == {"tag": "****QZ9K"}
    (rule,) = log["redaction_rules"]
    assert rule == {"match_expression": "****QZ9K|secret=\\w+", "replacement": "[****QZ9K]", "hash_salt": "****SALT"}
    assert out["monitors"][0]["command"] == "echo ****QZ9K"
    assert out["import_vars"] == {"SHIPCTL_TEST_API_KEY": "****QZ9K", "SHIPCTL_TEST_SALT": "****SALT"}


def test_secret_keys_are_masked_whatever_their_value(env: Env) -> None:
    env.write_config("""
        [agent.server_attributes]
        api_token = "tok-abcdefghijklmnop1234"
        dbPassword = "hunter2"
        apiKey = 123456789012345
        [[logs]]
        path = "logs/app.log"
        redaction_rules = [{ match_expression = "x", hash_salt = "short" }, { match_expression = "y" }]
    """)
    out = check(env)
    attrs = out["server_attributes"]
    assert attrs["api_token"] == "****1234"
    assert attrs["dbPassword"] == "****"  # short: nothing of it shown
    assert attrs["apiKey"] == "****2345"
    rules = out["logs"][0]["redaction_rules"]
    assert [r["hash_salt"] for r in rules] == ["****", ""]
    assert "hunter2" not in json.dumps(out) and "abcdefghijklmnop" not in json.dumps(out)


def test_short_imported_value_is_fully_masked(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPCTL_TEST_PASSWORD", "9876543")
    env.write_config(
        'import_vars = ["SHIPCTL_TEST_PASSWORD"]\n[[logs]]\npath = "a.log"\n'
        'attributes = { pin = "$SHIPCTL_TEST_PASSWORD" }\n'
    )
    out = check(env)
    assert out["import_vars"] == {"SHIPCTL_TEST_PASSWORD": "****"}
    assert out["logs"][0]["attributes"] == {"pin": "****"}


def test_longer_secret_containing_a_shorter_one_is_masked_whole(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    short, long = "abcdefghijklmnop", "abcdefghijklmnop-and-the-rest-XY12"
    monkeypatch.setenv("SHIPCTL_TEST_A_KEY", short)
    monkeypatch.setenv("SHIPCTL_TEST_B_KEY", long)
    env.write_config("""
        import_vars = ["SHIPCTL_TEST_A_KEY", "SHIPCTL_TEST_B_KEY"]
        [[logs]]
        path = "a.log"
        attributes = { both = "$SHIPCTL_TEST_B_KEY" }
    """)
    r = env.cli("check-config")
    assert r.exit_code == 0 and "and-the-rest" not in r.stdout
    assert json.loads(r.stdout)["logs"][0]["attributes"] == {"both": "****XY12"}


def test_plain_imported_values_are_shown_and_secret_uses_are_masked(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPCTL_TEST_ENV", "staging")
    monkeypatch.setenv("SHIPCTL_TEST_SALT_SRC", "pepper-1234567890")  # innocent name, used as a secret
    env.write_config("""
        import_vars = ["SHIPCTL_TEST_ENV", "SHIPCTL_TEST_SALT_SRC"]
        [agent]
        server_attributes = { env = "$SHIPCTL_TEST_ENV", note = "$SHIPCTL_TEST_SALT_SRC" }
        [[logs]]
        path = "a.log"
        redaction_rules = [{ match_expression = "x", hash_salt = "$SHIPCTL_TEST_SALT_SRC" }]
    """)
    r = env.cli("check-config")
    assert r.exit_code == 0 and "pepper-1234567890" not in r.stdout
    out = json.loads(r.stdout)
    assert out["server_attributes"]["env"] == "staging"
    assert out["import_vars"]["SHIPCTL_TEST_ENV"] == "staging"
    assert out["server_attributes"]["note"] == "****7890"


def test_a_variable_that_was_not_imported_is_a_warning(env: Env) -> None:
    env.write_config('[agent]\nserver_attributes = { env = "$ENVIRONMNT" }\n[[logs]]\npath = "a.log"\n')
    r = env.cli("check-config")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["server_attributes"]["env"] == "$ENVIRONMNT"
    assert f"shipctl: warning: {env.config}: agent.server_attributes.env: $ENVIRONMNT is not in import_vars" in r.stderr
