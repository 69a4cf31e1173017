"""The syslog sink against a real rsyslogd (tests/servers_syslog.py), read back from the file it writes.

Each test gives its sink an ``app_name`` of its own and reads only those messages back. rsyslog parses the
structured data itself (mmpstrucdata), so the si/sn/attributes checked here are the receiver's reading.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipctl.sinks.syslog import sd_name
from tests.conftest import Env, assert_exactly_once, numbered
from tests.servers_syslog import Certs, Rsyslog, make_certs, start_rsyslog

QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
LOCAL0 = 16


@pytest.fixture(scope="module")
def syslog_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("syslog-certs"))


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, syslog_certs: Certs) -> Iterator[Rsyslog]:
    """One rsyslogd for the module: each test has an ``app_name`` of its own and reads back with ``read(app)``."""
    server = start_rsyslog(tmp_path_factory.mktemp("rsyslog"), syslog_certs)
    try:
        yield server
    finally:
        server.stop()


def _app() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _sink(sink_id: str, address: str, app: str, extra: str = "") -> str:
    return f'[[sinks]]\nid = "{sink_id}"\ntype = "syslog"\naddress = "{address}"\napp_name = "{app}"\n{extra}'


def _stamp(ts_ns: int) -> str:
    dt = datetime.datetime.fromtimestamp(ts_ns // 1000 / 1e6, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ns // 1000 % 1_000_000:06d}Z"


def _escaped(message: str) -> str:
    """A message as a stock rsyslog stores it: control characters as #ooo (escapeControlCharactersOnReceive)."""
    return "".join(f"#{ord(c):03o}" if ord(c) < 32 else c for c in message)


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _once(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats by (si, sn), as a consumer would."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for r in recs:
        seen.setdefault((r["si"], r["sn"]), r)
    return list(seen.values())


@contextlib.contextmanager
def _db(env: Env) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(env.state, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _queued(env: Env) -> int:
    with _db(env) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])


def _acked(env: Env, sink_id: str) -> int:
    with _db(env) as conn:
        row = conn.execute("SELECT acked_sn FROM upload_state WHERE sink = ?", (sink_id,)).fetchone()
    return int(row[0]) if row else 0


def _sink_status(env: Env, sink_id: str) -> dict[str, Any]:
    status = json.loads(env.proc("status", "--json").stdout)
    return next(s for s in status["sinks"] if s["sink"] == sink_id)


EVENTS_SCRIPT = """#!/bin/sh
if [ "$1" = "-c" ]; then echo '{"events": [{"id": 1, "name": "Deploy"}]}'; exit 0; fi
echo 'E1 0 0 "deploy of api done" "{"by":"ci","hosts":["a","b"],"level":"error"}" S'
"""


@pytest.mark.parametrize("tcp_input", ["tcp", "imtcp"])
def test_logs_and_events_round_trip(env: Env, rsyslog: Rsyslog, tcp_input: str) -> None:
    """Through imptcp (the receiver README.md recommends) and imtcp alike."""
    app = _app()
    address = rsyslog.address(tcp_input)
    log = env.logs / "app.log"
    script = env.tmp / "events.sh"
    script.write_text(EVENTS_SCRIPT)
    script.chmod(0o755)
    long_line = "long " + "é" * 3000  # 6005 bytes: over max_message_bytes
    lines = [
        "plain line",
        'quotes "x", a ] bracket and a \\ backslash',
        "ünïcödé ✓",
        "tab\there",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        long_line,
        "after the long one",
    ]
    log.write_text("\n".join(lines) + "\n")
    plain = env.logs / "plain.log"  # no rules: plain lines, encoded by the sink's fast path
    plain.write_text('one\ntwo "2" ]\\\nthree\tand ü\n')
    env.write_config(
        f'[agent]\n{QUIET}server_attributes = {{ serverHost = "web-1", region = "eu west" }}\n'
        f'[[logs]]\npath = "{log}"\nline_groupers = [{{ start = "^Traceback", continueThrough = "^\\\\s" }}]\n'
        'attributes = { severity = "warning", "odd key=]" = "v\\"a]l\\\\ue" }\n'
        f'[[logs]]\npath = "{plain}"\nattributes = {{ level = "DEBUG", n = 3, on = true }}\n'
        f'[[monitors]]\ntype = "script"\nid = "deploys"\ncommand = "{script}"\n'
        '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n'
        f'[[sinks]]\nid = "archive"\ntype = "file"\npath = "{env.sink}"\n'
        + _sink("central", address, app, "max_message_bytes = 2048\n"),
        sink=False,
    )
    assert env.proc("tail-once").returncode == 0
    dry = env.proc("upload", "--dry-run", "--sink", "central")
    assert dry.returncode == 0, dry.stderr
    assert f"syslog over TCP to {address}" in dry.stdout and "plain line" in dry.stdout
    assert rsyslog.read(app) == []  # a dry run sends nothing

    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    archived = [e for e in env.events() if e["kind"] in ("log", "event")]
    assert len(archived) == 11 and len([e for e in env.events() if e["kind"] == "metric"]) == 1
    recs = rsyslog.wait_for(app, lambda rs: len(rs) >= len(archived))
    assert len(recs) == len(archived), rsyslog.log_tail()  # metrics are not the syslog sink's to carry
    by_sn = {rec["sn"]: rec for rec in recs}
    assert len({rec["si"] for rec in recs}) == 1 and recs[0]["si"]

    for ev in archived:
        rec = by_sn[ev["sn"]]
        attrs: dict[str, Any] = ev["attrs"]  # type: ignore[assignment]
        assert (rec["host"], rec["app"], rec["procid"], rec["msgid"]) == ("web-1", app, "-", ev["kind"])
        assert rec["ts"] == _stamp(int(ev["ts"]))  # the event's own time, to the microsecond, in UTC
        assert rec["meta"]["source"] == ev["source"]
        expected = {sd_name(k): _text(v) for k, v in {"region": "eu west", **attrs}.items() if k != "serverHost"}
        assert rec["attrs"] == expected
        if ev["message"] != long_line:
            assert rec["msg"] == _escaped(str(ev["message"])) and "truncated" not in rec["meta"]

    logs = [by_sn[e["sn"]] for e in archived if e["kind"] == "log" and e["source"] == str(log)]
    assert {rec["pri"] for rec in logs} == {LOCAL0 * 8 + 4}  # severity = "warning" on the log
    plain_logs = [by_sn[e["sn"]] for e in archived if e["source"] == str(plain)]
    assert [rec["msg"] for rec in plain_logs] == ["one", 'two "2" ]\\', "three#011and ü"]
    assert {rec["pri"] for rec in plain_logs} == {LOCAL0 * 8 + 7}  # level = "DEBUG"
    assert plain_logs[0]["attrs"] == {"region": "eu west", "level": "DEBUG", "n": "3", "on": "true"}
    assert logs[0]["attrs"]["odd_key__"] == 'v"a]l\\ue'  # escaped on the wire, intact as rsyslog parsed it
    assert '\\"a\\]l\\\\ue' in logs[0]["sd"]
    (group,) = [rec for rec in logs if rec["msg"].startswith("Traceback")]
    traceback = 'Traceback (most recent call last):#012  File "x.py", line 1'
    assert group["msg"] == traceback  # the newline was sent; a stock rsyslog stores it as #012
    (cut,) = [rec for rec in logs if rec["msg"].startswith("long ")]
    assert cut["meta"]["truncated"] == str(len(long_line.encode()))
    whole = f"<{cut['pri']}>1 {cut['ts']} web-1 {app} - log {cut['sd']} {cut['msg']}"
    assert len(whole.encode()) <= 2048 and cut["msg"].endswith("é")  # cut on a character boundary
    assert logs[-1]["msg"] == "after the long one"  # and the next message intact

    (event,) = [by_sn[e["sn"]] for e in archived if e["kind"] == "event"]
    assert event["pri"] == LOCAL0 * 8 + 3  # its "level" attribute says error
    assert event["msg"] == "deploy of api done" and event["attrs"]["hosts"] == '["a","b"]'
    st = _sink_status(env, "central")
    assert st["pending_events"] == 0 and st["events_uploaded"] == 11


def test_tls_client_certificate_and_refusals(env: Env, rsyslog: Rsyslog, syslog_certs: Certs) -> None:
    c = syslog_certs
    apps = {name: _app() for name in ("mutual", "anon", "nocert", "unknown_ca")}
    log = env.logs / "app.log"
    log.write_text(numbered(50))
    tls = f'tls = true\nca_file = "{c.ca}"\n'
    env.write_config(
        f'[agent]\n{QUIET}[[logs]]\npath = "{log}"\n'
        + _sink("mutual", rsyslog.address("tls"), apps["mutual"], f'{tls}cert_file = "{c.client_cert}"\n'
                f'key_file = "{c.client_key}"\n')
        + _sink("anon", rsyslog.address("anon"), apps["anon"], "tls = true\nverify = false\n")
        + _sink("nocert", rsyslog.address("tls"), apps["nocert"], tls)
        + _sink("unknown_ca", rsyslog.address("anon"), apps["unknown_ca"], "tls = true\n"),
        sink=False,
    )  # fmt: skip
    r = env.proc("run")
    assert r.returncode == 69, r.stderr
    for name in ("mutual", "anon"):
        recs = rsyslog.wait_for(apps[name], lambda rs: len(rs) >= 50)
        assert_exactly_once([rec["msg"] for rec in recs], range(50))
    assert "Traceback" not in r.stderr
    nocert = _sink_status(env, "nocert")["last_message"]
    assert "if the receiver wants a client certificate: set cert_file and key_file" in nocert, nocert
    unknown = _sink_status(env, "unknown_ca")["last_message"]
    assert unknown.startswith(f"TLS: the certificate of {rsyslog.address('anon')} was refused"), unknown
    assert "nocert" in r.stderr and "unknown_ca" in r.stderr
    time.sleep(0.3)
    assert rsyslog.read(apps["nocert"]) == [] and rsyslog.read(apps["unknown_ca"]) == []
    assert _sink_status(env, "nocert")["pending_events"] == 50  # kept for when the config is fixed


def test_receiver_down_for_a_run_then_back(env: Env, tmp_path: Path, syslog_certs: Certs) -> None:
    server = start_rsyslog(tmp_path / "rsyslog", syslog_certs)
    try:
        app = _app()
        log = env.logs / "app.log"
        log.write_text(numbered(3000))
        env.write_config(
            f'[agent]\n{QUIET}[[logs]]\npath = "{log}"\n' + _sink("central", server.address(), app), sink=False
        )
        server.stop()
        r = env.proc("run")
        assert r.returncode == 69
        assert f"central: failed: cannot reach {server.address()}: connection refused" in r.stderr, r.stderr
        st = _sink_status(env, "central")
        assert st["pending_events"] == 3000 and st["last_status"] == "refused"
        server.start()  # same port
        log.write_text(log.read_text() + numbered(1000, start=3000))
        r = env.proc("run")  # within the backoff: the sink waits, nothing is lost
        assert r.returncode == 0 and _sink_status(env, "central")["next_attempt"]
        time.sleep(0.2)
        assert server.read(app) == []
        r = env.proc("upload", "--force")
        assert r.returncode == 0, r.stderr
        recs = server.wait_for(app, lambda rs: len(rs) >= 4000)
        assert_exactly_once([rec["msg"] for rec in _once(recs)], range(4000))
        assert len(recs) == 4000  # nothing was in flight when it went down: not even a repeat
        assert _queued(env) == 0
    finally:
        server.stop()


def test_kill_9_during_upload_loses_nothing_and_repeats_only_the_request_in_flight(env: Env, rsyslog: Rsyslog) -> None:
    app = _app()
    log = env.logs / "app.log"
    log.write_text(numbered(50_000, width=40))  # 32 KiB batches (short lines allowed), one per request: ~80 requests
    env.write_config(
        f'[agent]\n{QUIET}batch_bytes = 32768\n[[logs]]\npath = "{log}"\nmax_line_size = 1000\n'
        + _sink("central", rsyslog.address(), app, "request_bytes = 32768\n"),
        sink=False,
    )
    assert env.proc("tail-once").returncode == 0
    with _db(env) as conn:
        batches = conn.execute("SELECT sn, n_events FROM queue ORDER BY sn").fetchall()
    rng = random.Random(20261130)
    allowed: set[int] = set()  # the request after the cursor at each kill: the one that may have been in flight
    kills = 0
    while kills < 8 and _queued(env):
        before = rsyslog.count(app)
        proc = env.popen("upload", "--force", "--max-seconds", "0")
        deadline = time.monotonic() + 20
        while rsyslog.count(app) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.01))
        kills += env.kill9(proc)
        acked = _acked(env, "central")
        for sn, n in batches:
            if sn <= acked + 1 < sn + n:
                allowed |= set(range(acked + 1, sn + n))
    assert kills >= 6, f"only {kills} kills before the queue ran dry"
    r = env.proc("upload", "--force", "--max-seconds", "0")
    assert r.returncode == 0, r.stderr
    assert _queued(env) == 0
    recs = rsyslog.wait_for(app, lambda rs: len(_once(rs)) >= 50_000)
    assert_exactly_once([rec["msg"] for rec in _once(recs)], range(50_000))
    counts: dict[int, int] = {}
    for rec in recs:
        counts[rec["sn"]] = counts.get(rec["sn"], 0) + 1
    repeats = {sn for sn, n in counts.items() if n > 1}
    assert len({rec["si"] for rec in recs}) == 1  # one sequence stream: repeats carry the same si and sn
    assert repeats <= allowed, f"{len(repeats - allowed)} repeats outside the requests in flight"


class _Peer:
    """A TCP server that is no syslog receiver: ``answer`` bytes back after reading, or silence forever."""

    def __init__(self, answer: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = answer
        self.received = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            first = conn.recv(65536)
            self.received += len(first)
            if self.answer is not None:
                conn.sendall(self.answer)
                conn.close()
                return
            while chunk := conn.recv(65536):  # reads everything, never closes
                self.received += len(chunk)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


def test_peers_that_are_no_syslog_receiver_are_reported(env: Env) -> None:
    http, silent = _Peer(b"HTTP/1.1 400 Bad Request\r\n\r\n"), _Peer(None)
    try:
        log = env.logs / "app.log"
        log.write_text(numbered(20))
        env.write_config(
            f'[agent]\n{QUIET}[[logs]]\npath = "{log}"\n'
            + _sink("http", http.address, "a")
            + _sink("silent", silent.address, "b", "send_timeout = 1\n")
            + _sink("fire_and_forget", silent.address, "c", 'confirm = "written"\n'),
            sink=False,
        )
        r = env.proc("run")
        assert r.returncode == 69 and "Traceback" not in r.stderr
        st = _sink_status(env, "http")
        assert st["last_status"] == "bad reply" and st["pending_events"] == 20
        assert "answered b'HTTP/1.1 400 Bad Request" in st["last_message"]
        assert "which a syslog receiver never does" in st["last_message"]
        st = _sink_status(env, "silent")
        assert st["last_status"] == "timeout" and st["pending_events"] == 20
        assert "did not close the connection within 1 s, so delivery is unconfirmed" in st["last_message"]
        st = _sink_status(env, "fire_and_forget")
        assert st["pending_events"] == 0 and st["last_status"] == "success"
        assert silent.received > 0
    finally:
        http.close()
        silent.close()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('address = "127.0.0.1:notaport"', "address: expected a port from 1 to 65535"),
        ('address = "127.0.0.1:514"\nfacility = "local9"', "facility: expected one of"),
        ('address = "127.0.0.1:514"\napp_name = "my app"', "app_name: expected 1 to 48 printable ASCII"),
        ('address = "127.0.0.1:514"\nca_file = "/x.pem"', "ca_file: only used with tls = true"),
        ('address = "127.0.0.1:6514"\ntls = true\nca_file = "/nonexistent/ca.pem"', "ca_file: cannot read"),
        ('address = "127.0.0.1:6514"\ntls = true\ncert_file = "/nonexistent/c.pem"', "cert_file: cannot read"),
        ('address = "127.0.0.1:514"\nkinds = ["metric"]', "a syslog sink carries only 'log', 'event', not 'metric'"),
        ('address = "127.0.0.1:514"\nmax_message_bytes = 100', "max_message_bytes: expected at least 480"),
    ],
)
def test_config_mistakes_are_named(env: Env, options: str, expected: str) -> None:
    env.write_config(f'[agent]\n{QUIET}[[sinks]]\ntype = "syslog"\n{options}\n', sink=False)
    r = env.proc("check-config")
    assert r.returncode == 78, r.stderr
    assert "sinks[0]" in r.stderr and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
