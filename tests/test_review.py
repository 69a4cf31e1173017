"""Defects found in review, each pinned by the observable outcome that was wrong."""

from __future__ import annotations

import gzip
import json
import resource
import shutil
import signal
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Env, append, assert_exactly_once, numbered
from tests.receiver import KEY, config_text


class _Echo(BaseHTTPRequestHandler):
    """An addEvents endpoint that answers every request with an error quoting the token it was sent, as
    misconfigured proxies and some error pages do."""

    shape = "html"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = zlib.decompress(raw) if self.headers.get("Content-Encoding") == "deflate" else raw
        token = json.loads(body)["token"]
        if self.shape == "html":
            code, ctype, out = 400, "text/html", f"<html>rejected token {token}</html>".encode()
        elif self.shape == "no-status":
            code, ctype, out = 400, "application/json", json.dumps({"error": f"bad token {token}"}).encode()
        else:
            status = f"error/client/badParam {token}"
            code, ctype, out = 401, "application/json", json.dumps({"status": status}).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=["html", "no-status", "status"])
def echo_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    handler = type("Echo", (_Echo,), {"shape": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_reply_quoting_the_api_key_does_not_print_or_store_it(env: Env, echo_url: str) -> None:
    """sinks/scalyr.py _reply: the non-JSON snippet, the "without a status" dump and the status word were
    not scrubbed, so the key reached stderr, status --json, shipctl.log and the state file."""
    log = env.logs / "app.log"
    log.write_text("x\n")
    env.write_config(config_text(echo_url, f'[[logs]]\npath = "{log}"\n'), sink=False)
    run = env.proc("run")
    assert run.returncode == 69, run.stderr
    assert "batches kept" in run.stderr
    status = env.proc("status", "--json")
    for text in (run.stdout, run.stderr, status.stdout, status.stderr):
        assert KEY not in text
    for path in env.state.parent.iterdir():
        assert KEY.encode() not in path.read_bytes(), path.name


def test_file_sink_dedup_survives_a_last_line_over_64_kib(env: Env) -> None:
    """sinks/jsonl.py _last_sn read only the last 64 KiB: when the file ends with a longer JSON line (a
    49,900-byte line of control bytes escapes to ~300 KB), an upload killed between writing and dequeuing
    wrote everything again on the next run."""
    log = env.logs / "app.log"
    log.write_bytes(numbered(5).encode() + b"\x01" * 40_000 + b"\n")
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    before = env.tmp / "before-upload.db"
    shutil.copy(env.state, before)  # the state as a kill after the sink's fsync, before the commit, leaves it
    assert env.cli("upload").exit_code == 0
    assert len(env.sink.read_text().splitlines()[-1]) > 65536
    shutil.copy(before, env.state)
    assert env.cli("upload").exit_code == 0
    msgs = env.messages()
    assert_exactly_once(msgs, range(5))
    assert len(msgs) == 6, len(msgs)


def _plain_log(env: Env) -> Path:
    log = env.logs / "app.log"
    body = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
    env.write_config(body + f'[[logs]]\npath = "{log}"\nline_completion_wait = 0\n')
    return log


def test_copytruncate_of_a_file_that_was_empty_at_the_last_run_loses_nothing(env: Env) -> None:
    """The record of a file that was empty when last seen has no content to recognise (fp_len 0); the path
    still holds the same inode after copytruncate, so the copy holding every line written since is never
    looked at. Silent loss: no error, nothing counted as skipped."""
    log = _plain_log(env)
    log.write_text("")
    env.ship()
    log.write_text(numbered(5))
    shutil.copy(log, env.logs / "app.log.1")  # logrotate copytruncate
    log.write_text("")
    append(log, numbered(3, start=5))
    env.ship()
    assert_exactly_once(env.messages(), range(8))


def test_compress_rotation_of_a_file_empty_at_the_last_run_is_not_an_error(env: Env) -> None:
    """logrotate `compress` (no delaycompress): rename, create, gzip the renamed file. The lines are found
    in app.log.1.gz, yet the run says "previous file replaced and not found among rotated files", exit 65."""
    log = _plain_log(env)
    log.write_text("")
    env.ship()
    log.write_text(numbered(5))
    log.rename(env.logs / "app.log.1")
    log.write_text("")
    with (env.logs / "app.log.1").open("rb") as src, gzip.open(env.logs / "app.log.1.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (env.logs / "app.log.1").unlink()
    res = env.cli("tail-once")
    assert_exactly_once(_shipped(env), range(5))
    assert res.exit_code == 0, res.stderr


def _shipped(env: Env) -> list[str]:
    assert env.cli("upload").exit_code == 0
    return env.messages()


def _disk_full() -> None:
    """In the child: files may not grow past 1 MB, and writing past that fails (EFBIG) instead of killing."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def _big_log(env: Env) -> Path:
    log = _plain_log(env)
    log.write_text(numbered(40_000))
    return log


def test_a_run_that_fills_the_disk_loses_and_repeats_nothing(env: Env) -> None:
    _big_log(env)
    full = env.proc("tail-once", preexec_fn=_disk_full)
    assert full.returncode != 0
    env.ship()
    assert_exactly_once(env.messages(), range(40_000))


def test_a_full_disk_is_one_line_not_a_traceback(env: Env) -> None:
    """Disk full (or "database is locked" past the busy timeout) is an operator condition, not a bug: one
    line naming the state file and a documented exit code, not a Python traceback every minute in cron mail."""
    _big_log(env)
    full = env.proc("tail-once", preexec_fn=_disk_full)
    assert "Traceback" not in full.stderr, full.stderr[-300:]
    assert full.returncode == 73 and len(full.stderr.strip().splitlines()) == 1


def test_check_config_masks_url_passwords_and_authorization_headers(env: Env) -> None:
    """commands/check_config.py showed a proxy password, a password in a URL and an Authorization header
    in clear (only keys named like a secret, and imported secrets, were masked)."""
    env.write_config(
        """
        [[monitors]]
        type = "url"
        id = "health"
        url = "http://probe:url-password-1@127.0.0.1:9/health"
        request_headers = [
            {header = "Authorization", value = "Bearer header-token-2"},
            {header = "X-Trace", value = "t1"},
        ]
        [[sinks]]
        type = "scalyr"
        api_key = "literal-key-0123456789"
        https_proxy = "http://proxyuser:proxy-password-3@127.0.0.1:3128"
        """,
        sink=False,
    )
    res = env.cli("check-config")
    assert res.exit_code == 0, res.stderr
    for secret in ("url-password", "header-token", "proxy-password", "literal-key"):
        assert secret not in res.stdout, secret
    shown = json.loads(res.stdout)
    assert shown["monitors"][0]["url"].startswith("http://probe:****") and shown["monitors"][0]["url"].endswith(
        "@127.0.0.1:9/health"
    )
    assert shown["monitors"][0]["request_headers"][1] == {"header": "X-Trace", "value": "t1"}


def test_plain_copy_of_a_file_that_was_empty_at_the_last_run_is_not_read_twice(env: Env) -> None:
    """logrotate `copy` (no truncate) leaves the same lines at the path and in app.log.1: read them once."""
    log = _plain_log(env)
    log.write_text("")
    env.ship()
    log.write_text(numbered(5))
    shutil.copy(log, env.logs / "app.log.1")
    append(log, numbered(2, start=5))
    env.ship()
    assert_exactly_once(env.messages(), range(7))
