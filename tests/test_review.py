"""Defects found in review, each pinned by the observable outcome that was wrong."""

from __future__ import annotations

import json
import shutil
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import Env, assert_exactly_once, numbered
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
