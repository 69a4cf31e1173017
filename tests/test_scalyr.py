"""The Scalyr addEvents sink: wire format, content escaping, sequence fields, options and their errors.

Checked against the loopback receiver (tests/receiver.py), which parses every request strictly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from shipctl.model import FMT_JSON, PendingBatch
from shipctl.state import State
from shipctl.state.queue import insert_batch
from tests.conftest import Env, assert_exactly_once, numbered
from tests.receiver import KEY, Receiver, config_text


def configure(env: Env, url: str, logs: str = "", agent: str = "", **sink: object) -> Path:
    log = env.logs / "app.log"
    body = f'{agent}\n[[logs]]\npath = "{log}"\n{logs}'
    env.write_config(config_text(url, body, **sink), sink=False)
    return log


def test_wire_format(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = configure(
        env,
        r.url,
        logs='attributes = { parser = "accessLog", team = "web" }\n',
        agent='[agent]\nserver_attributes = { serverHost = "web-1", region = "eu" }\n',
    )
    log.write_text(numbered(3000))
    env.ship()
    assert r.violations == [] and len(r.requests) == 1
    (q,) = r.requests
    assert q.path == "/addEvents" and q.encoding == "deflate" and q.wire_bytes < q.body_bytes / 3
    assert q.headers["Content-Type"] == "application/json" and q.headers["User-Agent"].startswith("shipctl/")
    assert KEY not in json.dumps(q.headers) + q.path
    assert r.session_infos == [{"serverHost": "web-1", "region": "eu"}]
    (sink,) = json.loads(env.cli("status", "--json").stdout)["sinks"]
    session = sink["stream"]  # the sink's own sequence stream, kept in the state file
    assert r.sessions == {session} and len(session) == 32
    ev = r.events[0]
    assert ev["si"] == session and ev["thread"] == str(log) and ev["log"] == "1"
    # The log's attributes come once per request in logs[]; server attributes only in sessionInfo.
    assert ev["attrs"] == {"parser": "accessLog", "team": "web", "logfile": str(log), "message": ev["message"]}
    assert_exactly_once(r.messages(), range(3000))
    sns = [e["sn"] for e in r.events]
    assert sns == list(range(sns[0], sns[0] + 3000))
    ts = [e["ts"] for e in r.events]
    assert ts == sorted(set(ts))
    (sink,) = json.loads(env.cli("status", "--json").stdout)["sinks"]
    assert sink["last_request_bytes"] == q.body_bytes and sink["last_status"] == "success"


def test_uncompressed_when_asked(env: Env, receiver: Receiver) -> None:
    log = configure(env, receiver.url, compression="none")
    log.write_text(numbered(10))
    env.ship()
    (q,) = receiver.requests
    assert q.encoding == "none" and "Content-Encoding" not in q.headers and q.wire_bytes == q.body_bytes
    assert_exactly_once(receiver.messages(), range(10))


def test_awkward_content_arrives_as_the_file_sink_would_show_it(env: Env, receiver: Receiver) -> None:
    log = configure(env, receiver.url, logs="max_line_size = 1000\n")
    lines = [
        b'quote " and backslash \\ and \\" both',
        b"tab\there, cr\rthere, bell \x07, escape \x1b[31m, nul \x00, unit \x1f, del \x7f",
        "non-ascii é ü 日本 \u2028 emoji \U0001f600".encode(),
        b"broken utf-8 \xff\xfe \xc3( end",
        b"",
        b"x" * 2500,  # cut into pieces of max_line_size
        b'{"json": [1, 2, {"a": null}]}',
    ]
    log.write_bytes(b"\n".join(lines) + b"\n")
    env.ship()
    expected = []
    for line in lines:
        text = line.decode("utf-8", "replace")
        expected += [text[i : i + 1000] for i in range(0, len(text), 1000)] or [""]
    assert receiver.violations == []
    assert receiver.messages() == expected


def test_grouped_sampled_and_monitor_events(env: Env, receiver: Receiver) -> None:
    r = receiver
    log = configure(
        env,
        r.url,
        logs="line_groupers = [{ start = '^Traceback', continue_through = '^\\s' }]\n"
        "sampling_rules = [{ match_expression = 'DEBUG', sampling_rate = 0.9999999 }]\n",
    )
    log.write_text("start\nTraceback (most recent call last):\n  File x\n  line 2\nDEBUG detail\nend\n")
    assert env.cli("run-monitor", "shell", "--command", "echo 42").exit_code == 0
    env.ship()
    assert r.violations == []
    by_msg = {e["message"]: e for e in r.events}
    assert "Traceback (most recent call last):\n  File x\n  line 2" in by_msg
    assert by_msg["DEBUG detail"]["attrs"]["sample_rate"] == 0.9999999
    assert by_msg["end"]["attrs"]["logfile"] == str(log)
    (metric,) = [e for e in r.events if e["thread"] == "shell"]
    assert metric["log"] is None and metric["attrs"]["monitor"] == "shell_monitor"
    assert "42" in metric["message"]


def _late_events(env: Env) -> None:
    """A source whose clock is behind: its events carry times before the log line queued ahead of them."""
    with State.open(env.state) as state, state.write() as conn:
        events = [{"m": f"late {i}", "t": 1_000 + i, "k": "event"} for i in range(3)]
        payload = json.dumps(events).encode()
        insert_batch(conn, PendingBatch("event", "clock-behind", 0, {}, FMT_JSON, payload, 3))


def test_events_keep_their_own_timestamps(env: Env, receiver: Receiver) -> None:
    log = configure(env, receiver.url)
    log.write_text("first\n")
    assert env.cli("tail-once").exit_code == 0
    _late_events(env)
    log.write_text("first\nsecond\n")
    env.ship()
    assert receiver.violations == []
    assert receiver.messages() == ["first", "late 0", "late 1", "late 2", "second"]
    ts = {e["attrs"]["message"]: int(e["ts"]) for e in receiver.events}
    assert [ts[f"late {i}"] for i in range(3)] == [1000, 1001, 1002]  # stamped by their source, not by us
    assert ts["second"] > ts["first"] > 1002


def test_enforce_monotonic_timestamps_keeps_them_increasing(env: Env, receiver: Receiver) -> None:
    receiver.monotonic_ts = True  # the receiver refuses a request whose ts do not increase
    log = configure(env, receiver.url, enforce_monotonic_timestamps=True)
    log.write_text("first\n")
    assert env.cli("tail-once").exit_code == 0
    _late_events(env)
    log.write_text("first\nsecond\n")
    env.ship()
    assert receiver.violations == []
    assert receiver.messages() == ["first", "late 0", "late 1", "late 2", "second"]
    ts = [e["ts"] for e in receiver.events]
    assert ts == sorted(set(ts))


def test_proxy_option_and_environment(env: Env, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    log = configure(env, "http://scalyr.invalid:8080", http_proxy=receiver.url)
    log.write_text("via proxy\n")
    env.ship()
    assert receiver.requests[-1].proxied and receiver.messages() == ["via proxy"]
    configure(env, "http://scalyr.invalid:8080")
    monkeypatch.setenv("HTTP_PROXY", receiver.url)
    log.write_text("via proxy\nfrom the environment\n")
    env.ship()
    assert receiver.requests[-1].proxied and receiver.messages()[-1] == "from the environment"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_is_verified_and_ca_bundle_trusts_a_private_ca(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    cert, key = env.tmp / "cert.pem", env.tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with Receiver(tls=(str(cert), str(key))) as r:
        log = configure(env, r.url, allow_http=False)
        log.write_text("secret line\n")
        assert env.cli("tail-once").exit_code == 0
        res = env.cli("upload")
        assert res.exit_code == 69 and "TLS error" in res.stderr and r.accepted == 0
        configure(env, r.url, allow_http=False, ca_bundle=str(cert))
        assert env.cli("upload", "--force").exit_code == 0
        assert r.messages() == ["secret line"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"server": "http://example.com"}, "sinks[0]: server: 'http://example.com' is plain http://"),
        ({"server": "ftp://example.com", "allow_http": False}, "sinks[0]: server: expected an https:// URL"),
        ({"compression": "bz2"}, "sinks[0].compression: expected one of 'deflate', 'none'"),
        ({"compression_level": 11}, "sinks[0].compression_level: expected a deflate level from 0 to 9"),
        ({"max_request_bytes": 1000}, "sinks[0].max_request_bytes: expected at least 65536"),
        ({"timeout": 3}, "sinks[0].timeout: unknown key"),
    ],
)
def test_config_mistakes_are_named(
    env: Env, monkeypatch: pytest.MonkeyPatch, options: dict[str, object], words: str
) -> None:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    allow = options.pop("allow_http", not str(options.get("server", "")).startswith("http://"))
    configure(env, str(options.pop("server", "https://agent.scalyr.com")), allow_http=allow, **options)
    res = env.cli("upload")
    assert res.exit_code == 78, res.stderr
    assert words in res.stderr and str(env.config) in res.stderr
    assert KEY not in res.stderr


def test_missing_or_empty_api_key(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    log = env.logs / "app.log"
    env.write_config(f'[[logs]]\npath = "{log}"\n[[sinks]]\ntype = "scalyr"\n', sink=False)
    res = env.cli("upload")
    assert res.exit_code == 78 and "sinks[0].api_key: missing required key" in res.stderr
    monkeypatch.setenv("SCALYR_API_KEY", "")
    configure(env, "https://agent.scalyr.com")
    res = env.cli("upload")
    assert res.exit_code == 78 and "api_key: expected a Write Logs API key" in res.stderr


def test_events_of_a_rules_batch_split_over_requests(env: Env, receiver: Receiver) -> None:
    # Any rule makes batches of JSON events (the slow path); one such batch spans several requests here.
    log = configure(env, receiver.url, logs="sampling_rules = [{ match_expression = 'nope', sampling_rate = 0 }]\n",
                    max_request_bytes=65_536)  # fmt: skip
    log.write_text(numbered(5000))
    env.ship()
    assert len(receiver.requests) > 5 and receiver.violations == []
    assert_exactly_once(receiver.messages(), range(5000))
    sns = [e["sn"] for e in receiver.events]
    assert sns == list(range(sns[0], sns[0] + 5000))


def test_coscale_events_arrive_with_their_own_times(env: Env, receiver: Receiver) -> None:
    """A CoScale script's events stamped -300 s and at an absolute time keep those times at the receiver."""
    script = Path(__file__).parent / "scripts" / "events_only.sh"
    configure(env, receiver.url, agent=f'[[monitors]]\ntype = "script"\nid = "events"\ncommand = "{script}"\n')
    before = time.time()
    r = env.proc("run")
    assert r.returncode in (0, 65), r.stderr  # the script has one bad line, on purpose
    ts = {e["attrs"]["message"]: int(e["ts"]) for e in receiver.events if "event" in e["attrs"]}
    assert ts["absolute times"] == 1458345600 * 10**9
    assert before - 301 <= ts["The event triggered"] / 1e9 <= time.time() - 299


def test_two_scalyr_sinks_to_one_account_each_have_their_own_sequence_stream(env: Env, receiver: Receiver) -> None:
    """Sinks with cursors of their own must not share a stream: the service drops an event whose sn is not
    above the highest it accepted in that stream, so the slower sink's events would be lost."""
    (env.logs / "a.log").write_text(numbered(100))
    (env.logs / "b.log").write_text(numbered(100, start=100))
    second = f'[[sinks]]\nid = "sys"\ntype = "scalyr"\napi_key = "$SCALYR_API_KEY"\nserver = "{receiver.url}"\n'
    logs = f'[[logs]]\nid = "a"\npath = "{env.logs}/a.log"\n[[logs]]\nid = "b"\npath = "{env.logs}/b.log"\n'
    env.write_config(
        config_text(receiver.url, logs + second + 'allow_http = true\nsources = ["b"]\n', id="app", sources=["a"]),
        sink=False,
    )
    assert env.cli("tail-once").exit_code == 0
    assert env.cli("upload", "--sink", "sys").exit_code == 0  # b's later sequence numbers go first
    assert env.cli("upload", "--sink", "app").exit_code == 0
    assert receiver.misordered == [] and receiver.violations == []
    assert_exactly_once(receiver.messages(), range(200))
    assert len(receiver.sessions) == 2
