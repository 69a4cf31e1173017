"""A loopback Scalyr ``addEvents`` receiver for the tests and the upload benchmark.

A real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread). It inflates each body, checks the
format strictly (anything off is recorded in ``violations`` and answered ``error/client/badParam``),
stores events, and drops repeats the way the service does: per (session, si), an event whose ``sn`` is not
above the highest accepted is dropped. A dropped event that was never accepted is recorded in
``misordered``: the real service would have lost it, so a correct client never causes one.

Faults are queued with ``fail()`` (one per request, in order) or set for every request with
``fail_always()``: ``500``, ``429``, ``backoff`` (error/server/backoff), ``badParam``, ``tooLarge``,
``discard`` (discardBuffer), ``nonjson``, ``quote`` (a non-JSON page quoting the request, token and all),
``slow`` (reply after ``slow_seconds``), ``reset`` (close the
connection with a TCP reset, no reply). ``store=True`` stores the events before failing, as a server that
processed a request and then lost the reply.

``strict=False`` (the benchmark) keeps counts and sequence ranges only: it inflates every body and reads the
``sn`` heads and ``sd`` counts at C speed instead of parsing each event. ``defer=True`` answers each request
as soon as its body is in and does all that in ``check_deferred()`` later, as a server on another machine
would do it on its own CPU.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "sk-test-0123456789abcdefSECRET"  # what tests put in $SCALYR_API_KEY; must never be printed
FAULTS = ("500", "429", "backoff", "badParam", "tooLarge", "discard", "nonjson", "slow", "reset", "quote")
TOP_KEYS = {"token", "session", "sessionInfo", "events", "threads", "logs", "client_time"}
EVENT_KEYS = {"thread", "log", "ts", "attrs", "si", "sn", "sd", "sev"}
_SN = re.compile(rb'"sn":(\d+)')

_inflate = zlib.decompress
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:  # the receiver stands in for a server on another machine: keep its share of the 2 cores small
    from isal import isal_zlib

    _inflate = isal_zlib.decompress
    _INFLATE_ERRORS += (isal_zlib.error,)
except ImportError:
    pass


@dataclass
class Fault:
    kind: str
    store: bool = False


@dataclass
class Logged:
    """One request as the receiver saw it."""

    index: int
    encoding: str
    wire_bytes: int
    body_bytes: int = 0
    events: int = 0
    sns: list[int] = field(default_factory=list)
    fault: str | None = None
    reply: str = ""
    stored: bool = False
    done: bool = False
    proxied: bool = False
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    def __init__(
        self,
        token: str = KEY,
        *,
        max_request_bytes: int = 6_000_000,
        strict: bool = True,
        slow_seconds: float = 2.0,
        tls: tuple[str, str] | None = None,
        defer: bool = False,
    ) -> None:
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.strict = strict
        self.defer = defer  # benchmark: answer at once, check everything in check_deferred()
        self.deferred: list[tuple[Logged, bytes]] = []
        self.slow_seconds = slow_seconds
        self.last_body = b""
        self.delay = 0.0  # seconds to wait after storing, before replying (widens the in-flight window)
        # Check that ts increase within a request: what a client with enforce_monotonic_timestamps promises.
        self.monotonic_ts = False
        self.lock = threading.Lock()
        self.faults: list[Fault | None] = []
        self.always: Fault | None = None
        self.events: list[dict[str, Any]] = []
        self.highest: dict[tuple[str, str], int] = {}
        self.seen: set[tuple[str, str, int]] = set()
        self.repeats: list[tuple[str, str, int]] = []
        self.misordered: list[tuple[str, str, int]] = []
        self.violations: list[str] = []
        self.requests: list[Logged] = []
        self.ranges: list[tuple[int, int]] = []  # non-strict mode: accepted [first, last] sn runs
        self.accepted = 0
        self.active = 0
        self.sessions: set[str] = set()
        self.session_infos: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.receiver = self  # type: ignore[attr-defined]
        scheme = "http"
        if tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="receiver", daemon=True)

    # --- control ---------------------------------------------------------------------------------------
    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(self, kind: str, times: int = 1, *, store: bool = False) -> None:
        assert kind in FAULTS, kind
        store = store or kind == "slow"  # a slow server still processes the request
        with self.lock:
            self.faults.extend(Fault(kind, store) for _ in range(times))

    def schedule(self, kinds: list[str | None]) -> None:
        """Faults for the next requests in order; None lets a request through."""
        with self.lock:
            self.faults.extend(Fault(k, k == "slow") if k else None for k in kinds)

    def fail_always(self, kind: str | None, *, store: bool = False) -> None:
        assert kind is None or kind in FAULTS, kind
        self.always = Fault(kind, store or kind == "slow") if kind else None

    def wait_idle(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if not self.active:
                    return
            time.sleep(0.005)
        raise AssertionError("receiver still busy")

    def check_deferred(self) -> None:
        """Inflate, check and store the requests answered at once (``defer=True``), in arrival order."""
        for logged, raw in self.deferred:
            body = self._inflate(raw, logged.encoding)
            logged.body_bytes = len(body)
            if not self.strict and logged.index == 0:
                self._check(body)
            parsed = self._check(body) if self.strict else self._scan(body)
            if parsed is None:
                raise ValueError("bad token")
            self._store(parsed, logged)
        self.deferred.clear()

    def messages(self) -> list[str]:
        return [e["message"] for e in self.events]

    # --- one request -----------------------------------------------------------------------------------
    def handle(self, h: _Handler) -> None:
        with self.lock:
            self.active += 1
            fault = self.faults.pop(0) if self.faults else self.always
            logged = Logged(len(self.requests), h.headers.get("Content-Encoding", "none"), 0)
            logged.headers = dict(h.headers)
            logged.path = h.path
            self.requests.append(logged)
        try:
            self._handle(h, logged, fault)
        finally:
            with self.lock:
                self.active -= 1
                logged.done = True

    def _handle(self, h: _Handler, logged: Logged, fault: Fault | None) -> None:
        path = h.path
        if path.startswith("http://"):  # the absolute form a client uses through a proxy
            logged.proxied = True
            path = "/" + path.split("/", 3)[3]
        if path != "/addEvents":
            self._violation(f"POST to {h.path!r}, expected /addEvents")
            return h.reply(404, {"status": "error/client/badParam", "message": "no such endpoint"})
        if h.headers.get("Transfer-Encoding"):
            self._violation("chunked body; expected Content-Length")
            return h.reply(400, {"status": "error/client/badParam", "message": "chunked"})
        length = int(h.headers.get("Content-Length", 0))
        raw = h.rfile.read(length)
        logged.wire_bytes = len(raw)
        if len(raw) < length:  # the client went away mid-body (a kill): nothing to answer
            logged.reply = "truncated"
            h.close_connection = True
            return None
        if self.defer and not fault:
            with self.lock:
                self.deferred.append((logged, raw))
            logged.reply = "success"
            return h.reply(200, {"status": "success", "message": ""})
        if (h.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self._violation(f"Content-Type {h.headers.get('Content-Type')!r}")
        try:
            body = self._inflate(raw, logged.encoding)
        except ValueError as exc:
            self._violation(str(exc))
            return h.reply(400, {"status": "error/client/badParam", "message": str(exc)})
        logged.body_bytes = len(body)
        self.last_body = body
        if fault and fault.kind == "reset" and not fault.store:
            logged.fault = "reset"
            return h.reset()
        if len(body) > self.max_request_bytes:
            logged.reply = "requestTooLarge"
            return h.reply(413, {"status": "error/client/requestTooLarge", "message": f"{len(body)} bytes"})
        if fault and not fault.store:
            logged.fault = fault.kind
            return self._fault(h, fault, logged)
        try:
            if not self.strict and logged.index == 0:
                self._check(body)  # the benchmark still checks one request strictly
            parsed = self._check(body) if self.strict else self._scan(body)
        except ValueError as exc:
            self._violation(str(exc))
            logged.reply = "badParam"
            return h.reply(400, {"status": "error/client/badParam", "message": str(exc)})
        if parsed is None:
            logged.reply = "badParam"
            return h.reply(401, {"status": "error/client/badParam", "message": "Couldn't decode API token"})
        self._store(parsed, logged)
        if fault:
            logged.fault = fault.kind
            return self._fault(h, fault, logged)
        if self.delay:
            time.sleep(self.delay)
        logged.reply = "success"
        h.reply(200, {"status": "success", "bytesCharged": len(body), "message": ""})

    def _fault(self, h: _Handler, fault: Fault, logged: Logged) -> None:
        logged.reply = fault.kind
        k = fault.kind
        if k == "500":
            h.reply(500, b"<html><body>Internal Server Error</body></html>", content_type="text/html")
        elif k == "429":
            h.reply(429, {"status": "error/server/backoff", "message": "serverTooBusy"}, retry_after="1")
        elif k == "backoff":
            h.reply(200, {"status": "error/server/backoff", "message": "Server is overloaded, please back off"})
        elif k == "badParam":
            h.reply(401, {"status": "error/client/badParam", "message": "Couldn't decode API token ...hidden"})
        elif k == "tooLarge":
            h.reply(413, {"status": "error/client/requestTooLarge", "message": "request too large"})
        elif k == "discard":
            h.reply(200, {"status": "error/client/discardBuffer", "message": "data discarded"})
        elif k == "quote":  # a proxy's error page quoting the request: the token, cut wherever the page is cut
            h.reply(502, b"Bad gateway; request was: " + b"." * 29 + self.last_body[:300], content_type="text/plain")
        elif k == "nonjson":
            h.reply(200, b"<html>proxy says hello</html>", content_type="text/html")
        elif k == "slow":
            time.sleep(self.slow_seconds)
            h.reply(200, {"status": "success", "message": "late"})
        elif k == "reset":
            h.reset()

    def _violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    @staticmethod
    def _inflate(raw: bytes, encoding: str) -> bytes:
        if encoding == "deflate":
            try:
                return _inflate(raw)
            except _INFLATE_ERRORS as exc:
                raise ValueError(f"body is not a zlib stream: {exc}") from None
        if encoding in ("none", "identity"):
            return raw
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    # --- strict format check ---------------------------------------------------------------------------
    def _check(self, body: bytes) -> dict[str, Any] | None:
        def need(cond: bool, text: str) -> None:
            if not cond:
                raise ValueError(text)

        try:
            req = json.loads(body.decode("utf-8"), parse_constant=lambda c: need(False, f"{c} in JSON"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not UTF-8 JSON: {exc}") from None
        need(isinstance(req, dict), "body is not a JSON object")
        need(set(req) <= TOP_KEYS, f"unknown top-level keys {sorted(set(req) - TOP_KEYS)}")
        for key in ("token", "session", "events"):
            need(key in req, f"missing {key}")
        need(isinstance(req["token"], str), "token is not a string")
        if req["token"] != self.token:
            return None
        need(isinstance(req["session"], str) and bool(req["session"]), "session is not a non-empty string")
        info = req.get("sessionInfo", {})
        need(isinstance(info, dict), "sessionInfo is not an object")
        need(isinstance(info.get("serverHost", ""), str), "sessionInfo.serverHost is not a string")
        need(type(req.get("client_time", 0)) is int, "client_time is not an integer")
        threads: dict[str, str] = {}
        for t in req.get("threads", []):
            need(isinstance(t, dict) and set(t) == {"id", "name"}, f"bad thread {t!r}")
            need(isinstance(t["id"], str) and isinstance(t["name"], str), f"bad thread {t!r}")
            need(t["id"] not in threads, f"thread id {t['id']} declared twice")
            threads[t["id"]] = t["name"]
        logs: dict[str, dict[str, Any]] = {}
        for lg in req.get("logs", []):
            need(isinstance(lg, dict) and set(lg) == {"id", "attrs"}, f"bad log {lg!r}")
            need(isinstance(lg["id"], str) and isinstance(lg["attrs"], dict), f"bad log {lg!r}")
            need(lg["id"] not in logs, f"log id {lg['id']} declared twice")
            logs[lg["id"]] = lg["attrs"]
        events = req["events"]
        need(isinstance(events, list), "events is not a list")
        out = []
        prev_ts = -1
        si: str | None = None
        sn: int | None = None
        for n, e in enumerate(events):
            where = f"events[{n}]"
            need(isinstance(e, dict), f"{where} is not an object")
            need(set(e) <= EVENT_KEYS, f"{where}: unknown keys {sorted(set(e) - EVENT_KEYS)}")
            ts = e.get("ts")
            need(isinstance(ts, str) and ts.isdigit() and ts.isascii(), f"{where}.ts is not a string of digits")
            need(not self.monotonic_ts or int(ts) > prev_ts, f"{where}.ts {ts} not above the previous {prev_ts}")
            prev_ts = int(ts)
            attrs = e.get("attrs")
            need(isinstance(attrs, dict) and isinstance(attrs.get("message"), str), f"{where}.attrs.message")
            if "thread" in e:
                need(e["thread"] in threads, f"{where}.thread {e['thread']!r} not declared")
            if "log" in e:
                need(e["log"] in logs, f"{where}.log {e['log']!r} not declared")
            if "si" in e:
                need(isinstance(e["si"], str) and bool(e["si"]), f"{where}.si")
                si = e["si"]
            need(("sn" in e) != ("sd" in e), f"{where}: needs exactly one of sn, sd")
            if "sn" in e:
                need(type(e["sn"]) is int and e["sn"] >= 0, f"{where}.sn is not a non-negative integer")
                need(si is not None, f"{where}: sn before any si")
                sn = e["sn"]
            else:
                need(type(e["sd"]) is int and e["sd"] >= 1, f"{where}.sd is not a positive integer")
                need(sn is not None, f"{where}: sd before any sn")
                sn = (sn or 0) + e["sd"]
            full = {**logs.get(e.get("log", ""), {}), **attrs}
            out.append(
                {
                    "si": si,
                    "sn": sn,
                    "ts": int(ts),
                    "message": attrs["message"],
                    "attrs": full,
                    "thread": threads.get(e.get("thread", "")),
                    "log": e.get("log"),
                }
            )
        return {"session": req["session"], "info": info, "events": out}

    def _scan(self, body: bytes) -> dict[str, Any] | None:
        """Non-strict: the token, the session and the sn runs, without parsing each event."""
        head = body[:4096]
        m = re.search(rb'"token":"([^"]*)"', head)
        if not m or m.group(1).decode() != self.token:
            return None
        s = re.search(rb'"session":"([^"]*)"', head)
        if not s:
            raise ValueError("no session")
        runs = []
        pos = body.find(b'"sn":')
        while pos >= 0:
            m = _SN.match(body, pos)
            if not m:
                raise ValueError(f"bad sn at byte {pos}")
            nxt = body.find(b'"sn":', m.end())
            runs.append((int(m.group(1)), 1 + body.count(b'"sd":1', m.end(), nxt if nxt >= 0 else len(body))))
            pos = nxt
        return {"session": s.group(1).decode(), "runs": runs}

    def _store(self, parsed: dict[str, Any], logged: Logged) -> None:
        session = parsed["session"]
        with self.lock:
            self.sessions.add(session)
            logged.stored = True
            if "runs" in parsed:
                for first, count in parsed["runs"]:
                    self.ranges.append((first, first + count - 1))
                    self.accepted += count
                    logged.events += count
                return
            self.session_infos.append(parsed["info"])
            for e in parsed["events"]:
                key = (session, e["si"], e["sn"])
                logged.sns.append(e["sn"])
                logged.events += 1
                if e["sn"] <= self.highest.get((session, e["si"]), -1):
                    (self.repeats if key in self.seen else self.misordered).append(key)
                    continue
                self.highest[(session, e["si"])] = e["sn"]
                self.seen.add(key)
                self.accepted += 1
                self.events.append({**e, "session": session})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Reply headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        try:
            self.server.receiver.handle(self)  # type: ignore[attr-defined]
        except OSError:  # the client went away mid-request (a kill, a timeout): nothing was stored
            self.close_connection = True

    def reply(
        self, code: int, body: Any, *, content_type: str = "application/json", retry_after: str | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (a timeout, a kill)

    def reset(self) -> None:
        """Close with a TCP reset and no reply."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def config_text(url: str, body: str = "", **options: Any) -> str:
    """A shipctl config: ``body`` (agent, logs, ...) and a scalyr sink for ``url``, the API key imported
    from ``$SCALYR_API_KEY`` the way users set it."""
    sink = {"type": "scalyr", "api_key": "$SCALYR_API_KEY", "server": url, "allow_http": True, **options}
    lines = [f"{k} = {json.dumps(v)}" for k, v in sink.items()]
    return 'import_vars = ["SCALYR_API_KEY"]\n' + body + "\n[[sinks]]\n" + "\n".join(lines) + "\n"
