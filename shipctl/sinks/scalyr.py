"""The Scalyr / DataSet ``addEvents`` sink.

Wire format (see the Scalyr agent): ``POST {server}/addEvents`` with a JSON body ``{token, session,
sessionInfo, client_time, threads, logs, events}``, deflated by default. Each event carries ``thread``,
``log`` (for log lines; the log's attributes are sent once per request in ``logs[]``), ``ts`` (nanoseconds
as a string, strictly increasing within a request) and ``attrs`` (``message`` plus per-event attributes).

Repeats: the first event of each run of consecutive events carries ``si`` (the sequence stream) and ``sn``
(the queue's sequence number, fixed at queue time), the others ``sd: 1``. Queue sequence numbers are global
to the state file and grow in queue order, and requests go out one at a time, oldest first, so a single
stream (``si`` = the state file's session id) only ever grows: the service drops any event it already
accepted, whatever run resends it.

Encoding is per request, not per line in Python: a plain-lines batch is escaped as one bytes object and
turned into events with list slicing and one ``join`` (see ``_raw_chunk``). ``requests`` is imported on
the first post, so a run with nothing to send never loads it.
"""

from __future__ import annotations

import json
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

from shipctl import __version__
from shipctl.model import FMT_RAW, Batch
from shipctl.schema import field, mask, one_of, positive, scrub
from shipctl.sinks.base import DISCARD, OK, RETRY, TOO_LARGE, Request, SendResult, Span

DEFAULT_SERVER = "https://agent.scalyr.com"
MIN_REQUEST_BYTES = 64 * 1024  # requestTooLarge halves the limit down to this, then backs off instead
READ_WINDOW = 4 << 20  # queued payload read from the state file at a time


def _level(value: int) -> str | None:
    return None if 0 <= value <= 9 else "expected a deflate level from 0 to 9"


def _min_request(value: int) -> str | None:
    return None if value >= MIN_REQUEST_BYTES else f"expected at least {MIN_REQUEST_BYTES}"


@dataclass(frozen=True)
class ScalyrOptions:
    api_key: str = field(secret=True, doc="a Write Logs key, usually $SCALYR_API_KEY through import_vars")
    server: str = field(DEFAULT_SERVER, aliases=("scalyr_server",))
    allow_http: bool = False  # plain http:// only for loopback testing
    compression: str = field("deflate", aliases=("compression_type",), check=one_of("deflate", "none"))
    # Level 1: about 4x faster than 6 here for a 20% bigger body (access logs: 15.4% vs 12.4% of the JSON).
    compression_level: int = field(1, check=_level)
    max_request_bytes: int = field(5_900_000, aliases=("max_allowed_request_size",), check=_min_request)
    verify_tls: bool = True
    ca_bundle: str | None = None
    https_proxy: str | None = None
    http_proxy: str | None = None
    connect_timeout: float = field(10.0, check=positive)
    read_timeout: float = field(60.0, check=positive)

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise ValueError("api_key: expected a Write Logs API key, got an empty string")
        url = urlsplit(self.server)
        if url.scheme not in ("https", "http") or not url.netloc:
            raise ValueError(f"server: expected an https:// URL such as {DEFAULT_SERVER!r}, got {self.server!r}")
        if url.scheme == "http" and not self.allow_http:
            raise ValueError(
                f"server: {self.server!r} is plain http:// and would send the API key unencrypted;"
                " use https:// (or set allow_http = true for a test receiver)"
            )


# --- encoding ------------------------------------------------------------------------------------------

_T = 10_000  # ts = prefix * _T + k; the 4-digit k of every event comes from this table
_SD = [b'%04d","sd":1,"attrs":{"message":"' % k for k in range(_T)]
_CLOSE = b'"}}'
# Bytes that need no escaping in a JSON string, but for quote and backslash (valid UTF-8 is ensured first).
_PLAIN = bytes(range(0x20, 0x100)) + b"\n"
_CTRL = {c: (b"\\u%04x" % c) for c in range(0x20)} | {9: b"\\t", 13: b"\\r", 12: b"\\f", 8: b"\\b"}


def escape_lines(payload: bytes) -> bytes:
    """Lines (``\\n``-separated) made safe to stand between JSON quotes, all at C speed: invalid UTF-8
    becomes U+FFFD (as the other sinks decode it), quotes, backslashes and control characters are escaped."""
    if not payload.isascii():
        payload = payload.decode("utf-8", "replace").encode()
    ctrl = payload.translate(None, _PLAIN)  # usually empty: nothing to allocate
    if b"\\" in payload:
        payload = payload.replace(b"\\", b"\\\\")
    if b'"' in payload:
        payload = payload.replace(b'"', b'\\"')
    for c in set(ctrl) if ctrl else ():
        payload = payload.replace(bytes((c,)), _CTRL[c])
    return payload


class _Chunk:
    """Consecutive events of one batch, encoded as byte pieces (``per`` pieces per event, then ``closing``)
    so that splitting at an event and joining are list operations. ``head(j)`` re-encodes the first pieces
    of event j as the first event of a run (with ``si``/``sn`` instead of ``sd``). ``unit``, when set, is
    the size of every event but the first without its last piece (the plain-lines case), which makes sizes
    arithmetic on the line lengths."""

    __slots__ = ("batch", "closing", "first_sn", "head", "last_ts", "n", "parts", "per", "size", "unit")

    def __init__(
        self,
        batch: Batch,
        first_sn: int,
        parts: list[bytes],
        per: int,
        closing: bytes,
        head: Callable[[int], list[bytes]],
        last_ts: int,
        *,
        size: int | None = None,
        unit: int = 0,
    ) -> None:
        self.batch = batch
        self.first_sn = first_sn
        self.parts = parts
        self.per = per
        self.closing = closing
        self.head = head
        self.n = (len(parts) - (1 if closing else 0)) // per
        self.size = sum(map(len, parts)) if size is None else size
        self.last_ts = last_ts
        self.unit = unit

    @property
    def span(self) -> Span:
        last = self.first_sn + self.n - 1
        return Span(self.batch.id, self.first_sn, last, last == self.batch.sn + self.batch.n_events - 1)

    def _first_extra(self) -> int:
        return len(self.parts[0]) + len(self.parts[1]) - self.unit

    def end(self, j: int) -> int:
        """Size of the first ``j`` events (without the closing)."""
        if self.unit:
            return sum(map(len, self.parts[2 : 3 * j : 3])) + j * self.unit + self._first_extra()
        return sum(map(len, self.parts[: self.per * j]))

    def fit(self, room: int) -> int:
        """How many leading events fit in ``room`` bytes (with the closing)."""
        target = room - len(self.closing)
        if self.unit:
            cum = list(accumulate(map(len, self.parts[2 : 3 * self.n : 3])))
            unit, extra = self.unit, self._first_extra()
            return bisect_right(range(1, self.n + 1), target, key=lambda j: cum[j - 1] + j * unit + extra)
        ends = list(accumulate(map(len, self.parts[: self.per * self.n])))[self.per - 1 :: self.per]
        return bisect_right(ends, target)

    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        per = self.per
        cut = self.end(j)
        left_parts = self.parts[: per * j]
        if self.closing:
            left_parts.append(self.closing)
        rep = self.head(j)
        old = sum(map(len, self.parts[per * j : per * j + len(rep)]))
        right_parts = rep + self.parts[per * j + len(rep) :]
        left = _Chunk(
            self.batch, self.first_sn, left_parts, per, self.closing, self.head, 0,
            size=cut + len(self.closing), unit=self.unit,
        )  # fmt: skip
        right = _Chunk(
            self.batch, self.first_sn + j, right_parts, per, self.closing, _shift(self.head, j), self.last_ts,
            size=self.size - cut - old + sum(map(len, rep)), unit=self.unit,
        )  # fmt: skip
        return left, right


def _shift(head: Callable[[int], list[bytes]], j: int) -> Callable[[int], list[bytes]]:
    return lambda k: head(k + j)


def _raw_chunk(batch: Batch, start: int, ts0: int, open_: bytes, si: bytes) -> _Chunk:
    """Plain lines: event i is ``glue + _SD[k] + line`` where glue closes the previous event and opens this
    one up to the first ts digits. ts = ts0 + i; its last 4 digits come from the table, so no per-line
    formatting happens in Python (the glue changes only every 10,000 ts values)."""
    escaped = escape_lines(batch.payload)
    lines = escaped.split(b"\n")
    lines.pop()  # the payload ends with "\n"
    if start:
        del lines[:start]
        line_bytes = sum(map(len, lines))
    else:
        line_bytes = len(escaped) - len(lines)
    n = len(lines)
    first_sn = batch.sn + start
    if not n:
        return _Chunk(batch, first_sn, [], 3, b"", lambda j: [], ts0)
    parts: list[bytes] = [b""] * (3 * n + 1)
    parts[2 : 3 * n : 3] = lines
    glue = _CLOSE + b"," + open_
    glues = set()
    size = line_bytes + n * len(_SD[0]) + len(_CLOSE)
    i = 0
    while i < n:
        v = ts0 + i
        k = v % _T
        end = min(n, i + _T - k)
        cnt = end - i
        g = glue + b"%d" % (v // _T)
        glues.add(len(g))
        size += cnt * len(g)
        parts[3 * i : 3 * end : 3] = [g] * cnt
        parts[3 * i + 1 : 3 * end + 1 : 3] = _SD[k : k + cnt]
        i = end
    parts[-1] = _CLOSE

    def head(j: int) -> list[bytes]:
        v = ts0 + j
        return [
            open_ + b"%d" % (v // _T),
            b'%04d","si":"%b","sn":%d,"attrs":{"message":"' % (v % _T, si, first_sn + j),
        ]

    first = head(0)
    size += len(first[0]) + len(first[1]) - len(parts[0]) - len(parts[1])
    parts[0:2] = first
    # Event sizes are arithmetic when every glue has the same length (ts keeps its digit count).
    unit = len(glue) + len(b"%d" % (ts0 // _T)) + len(_SD[0]) if len(glues) == 1 else 0
    return _Chunk(batch, first_sn, parts, 3, _CLOSE, head, ts0 + n - 1, size=size, unit=unit)


def _json_chunk(batch: Batch, start: int, floor: int, open_: bytes, si: bytes, extra: dict[str, Any] | None) -> _Chunk:
    """Grouped or sampled lines and monitor output: one JSON object per event (the slow path)."""
    if batch.fmt == FMT_RAW:
        evs: list[dict[str, Any]] = [{"m": m} for m in batch.messages()]
    else:
        evs = json.loads(batch.payload)
    ts_list: list[bytes] = []
    attrs_list: list[bytes] = []
    prev = floor
    for i in range(start, len(evs)):
        e = evs[i]
        ts = max(int(e.get("t") or batch.ts + i), prev + 1)
        prev = ts
        attrs: dict[str, Any] = {"message": e.get("m", "")}
        if extra:
            attrs.update(extra)
        if e.get("a"):
            attrs.update(e["a"])
        ts_list.append(b"%d" % ts)
        attrs_list.append(json.dumps(attrs, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))
    first_sn = batch.sn + start

    def event(j: int, seq: bytes) -> bytes:
        return b'%b%b",%b,"attrs":%b}' % (open_, ts_list[j], seq, attrs_list[j])

    def head(j: int) -> list[bytes]:  # the first event of a run: no comma before it, si/sn instead of sd
        return [event(j, b'"si":"%b","sn":%d' % (si, first_sn + j))]

    parts = [b"," + event(j, b'"sd":1') for j in range(1, len(ts_list))]
    if ts_list:
        parts[0:0] = head(0)
    return _Chunk(batch, first_sn, parts, 1, b"", head, prev)


class _Builder:
    """One request being filled: chunks of events plus the threads and logs they refer to."""

    def __init__(self, base: int) -> None:
        self.pieces: list[bytes] = []
        self.spans: list[Span] = []
        self.events = 0
        self.threads: dict[bytes, bytes] = {}
        self.logs: dict[bytes, bytes] = {}
        self.size = base

    def cost(self, decls: list[tuple[dict[bytes, bytes], bytes, bytes]]) -> int:
        """Bytes the declarations (thread, log) of a chunk would add, with commas."""
        return sum(len(d) + (1 if table else 0) for table, key, d in decls if key not in table)

    def add(self, chunk: _Chunk, decls: list[tuple[dict[bytes, bytes], bytes, bytes]]) -> None:
        self.size += self.cost(decls) + chunk.size + (1 if self.pieces else 0)
        for table, key, d in decls:
            table.setdefault(key, d)
        if self.pieces:
            self.pieces.append(b",")
        self.pieces.extend(chunk.parts)
        self.spans.append(chunk.span)
        self.events += chunk.n


@dataclass
class _Payload:
    events: bytes
    threads: bytes
    logs: bytes
    wire: bytes | None = None  # the body as sent (compressed), once sealed


class ScalyrSink:
    def __init__(self, options: ScalyrOptions, session: str) -> None:
        self.options = options
        self.session = session
        self.si = session.encode()
        self.url = options.server.rstrip("/") + "/addEvents"
        self.host = urlsplit(options.server).netloc
        self.request_limit = options.max_request_bytes
        self.request_bytes = READ_WINDOW
        self.server_attributes: dict[str, Any] = {}
        self._http: Any = None
        self._threads: dict[str, tuple[bytes, bytes]] = {}
        self._logs: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._last_ts = 0

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        self.server_attributes = dict(server_attributes)

    # --- requests ------------------------------------------------------------------------------------
    def _head(self, token: str, payload: _Payload, client_time: int) -> bytes:
        return b'{"token":%b,"session":%b,"sessionInfo":%b,"client_time":%d,"threads":[%b],"logs":[%b],"events":[' % (
            json.dumps(token).encode(),
            json.dumps(self.session).encode(),
            json.dumps(self.server_attributes, ensure_ascii=False, separators=(",", ":")).encode(),
            client_time,
            payload.threads,
            payload.logs,
        )

    def _thread(self, source: str) -> tuple[bytes, bytes]:
        got = self._threads.get(source)
        if got is None:
            tid = b"%d" % (len(self._threads) + 1)
            decl = json.dumps({"id": tid.decode(), "name": source}, ensure_ascii=False, separators=(",", ":")).encode()
            got = self._threads[source] = (tid, decl)
        return got

    def _log(self, batch: Batch, extra: dict[str, Any]) -> tuple[bytes, bytes]:
        key = (batch.source, json.dumps(extra, sort_keys=True))
        got = self._logs.get(key)
        if got is None:
            lid = b"%d" % (len(self._logs) + 1)
            attrs = {**extra, "logfile": batch.source}
            decl = json.dumps({"id": lid.decode(), "attrs": attrs}, ensure_ascii=False, separators=(",", ":"))
            got = self._logs[key] = (lid, decl.encode())
        return got

    def _extra(self, batch: Batch) -> dict[str, Any]:
        """The batch's attributes that are not server attributes (those go once, in sessionInfo)."""
        server = self.server_attributes
        return {k: v for k, v in batch.attrs.items() if k not in server or server[k] != v}

    def _chunk(self, batch: Batch, start: int) -> tuple[_Chunk, list[tuple[str, bytes, bytes]]]:
        """Events of ``batch`` from index ``start``, and the thread/log declarations they refer to."""
        tid, tdecl = self._thread(batch.source)
        extra = self._extra(batch)
        if batch.kind == "log":
            lid, ldecl = self._log(batch, extra)
            open_ = b'{"thread":"%b","log":"%b","ts":"' % (tid, lid)
            decls = [("threads", tid, tdecl), ("logs", lid, ldecl)]
            event_extra = None
        else:
            open_ = b'{"thread":"%b","ts":"' % tid
            decls = [("threads", tid, tdecl)]
            event_extra = extra
        ts0 = max(batch.ts + start, self._last_ts + 1)
        if batch.fmt == FMT_RAW and batch.kind == "log" and ts0 >= _T:
            chunk = _raw_chunk(batch, start, ts0, open_, self.si)
        else:
            chunk = _json_chunk(batch, start, self._last_ts, open_, self.si, event_extra)
        if chunk.n:
            self._last_ts = chunk.last_ts
        return chunk, decls

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        # Exact sizes: client_time has 10 digits until 2286.
        base = len(self._head(self.options.api_key, _Payload(b"", b"", b""), 10**9)) + len(b"]}")
        limit = self.request_limit
        b = _Builder(base)
        for batch in batches:
            last = batch.sn + batch.n_events - 1
            if last <= acked_sn:  # every event already confirmed: only the queue row is left to delete
                b.spans.append(Span(batch.id, last, last, True))
                continue
            chunk, named = self._chunk(batch, max(0, acked_sn + 1 - batch.sn))
            if not chunk.n:  # a payload with fewer events than its header says: nothing to send
                b.spans.append(Span(batch.id, last, last, True))
                continue
            while True:
                decls = [(b.threads if t == "threads" else b.logs, key, d) for t, key, d in named]
                room = limit - b.size - b.cost(decls) - (1 if b.pieces else 0)
                if chunk.size <= room:
                    b.add(chunk, decls)
                    break
                j = chunk.fit(room)
                if j == 0 and b.events:
                    yield self._finish(b)
                    b = _Builder(base)
                    continue
                j = max(j, 1)  # one event bigger than a whole request goes alone; the server may refuse it
                if j >= chunk.n:
                    b.add(chunk, decls)
                    break
                left, chunk = chunk.split(j)
                b.add(left, decls)
                yield self._finish(b)
                b = _Builder(base)
        if b.spans:
            yield self._finish(b)

    def _finish(self, b: _Builder) -> Request:
        payload = _Payload(b"".join(b.pieces), b",".join(b.threads.values()), b",".join(b.logs.values()))
        return Request(b.spans, b.events, b.size, payload)

    def shrink(self) -> int:
        new = max(MIN_REQUEST_BYTES, self.request_limit // 2)
        if new >= self.request_limit:
            return 0
        self.request_limit = new
        return new

    # --- sending -------------------------------------------------------------------------------------
    def _body(self, request: Request, token: str) -> list[bytes]:
        payload: _Payload = request.payload
        return [self._head(token, payload, int(time.time())), payload.events, b"]}"]

    def _encode(self, parts: list[bytes]) -> bytes:
        if self.options.compression == "none":
            return b"".join(parts)
        z = _deflater(self.options.compression_level)
        return b"".join([*(z.compress(p) for p in parts), z.flush()])

    def show(self, request: Request) -> str:
        parts = self._body(request, mask(self.options.api_key))
        wire = len(self._encode(parts))
        enc = self.options.compression
        if enc == "deflate":
            enc = f"deflate (level {self.options.compression_level})"
        head = [
            f"POST {self.url}",
            "Content-Type: application/json",
            f"Content-Encoding: {enc}; {request.size} bytes uncompressed, {wire} on the wire",
            f"{request.events} events in {len(request.spans)} batch parts (sn {request.spans[0].first_sn}"
            f"..{request.last_sn}); the API key is masked",
            "",
        ]
        return "\n".join(head) + b"".join(parts).decode("utf-8", "replace")

    def _client(self) -> Any:
        if self._http is None:
            import requests  # lazily: a run with nothing to send must not pay for it

            session = requests.Session()
            session.headers.update(
                {"User-Agent": f"shipctl/{__version__}", "Content-Type": "application/json", "Accept": "*/*"}
            )
            self._http = session
        return self._http

    def seal(self, request: Request) -> None:
        payload: _Payload = request.payload
        if payload.wire is None:
            payload.wire = self._encode(self._body(request, self.options.api_key))

    def post(self, request: Request) -> SendResult:
        o = self.options
        self.seal(request)
        data = request.payload.wire
        headers = {} if o.compression == "none" else {"Content-Encoding": "deflate"}
        proxies = {k: v for k, v in (("https", o.https_proxy), ("http", o.http_proxy)) if v}
        http = self._client()
        import requests

        try:
            resp = http.post(
                self.url,
                data=data,
                headers=headers,
                timeout=(o.connect_timeout, o.read_timeout),
                # Passed per request so they win over the environment's (requests merges them the other way).
                proxies=proxies or None,
                verify=o.ca_bundle or o.verify_tls,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            return self._fail(f"TLS error with {self.host}: {_reason(exc)} (see the ca_bundle option)", "tls")
        except requests.exceptions.ConnectTimeout:
            return self._fail(f"no connection to {self.host} within {o.connect_timeout:g} s", "timeout")
        except requests.exceptions.ReadTimeout:
            return self._fail(f"no reply from {self.host} within {o.read_timeout:g} s", "timeout")
        except requests.exceptions.RequestException as exc:
            return self._fail(f"request to {self.host} failed: {_reason(exc)}", "connection")
        return self._reply(resp.status_code, resp.content, resp.headers.get("Retry-After"), request.size)

    def _fail(self, message: str, status: str) -> SendResult:
        return SendResult(RETRY, self._scrub(message), status=status)

    def _scrub(self, text: str) -> str:
        key = self.options.api_key
        return scrub(text.replace(key, mask(key)) if key else text)

    def _reply(self, code: int, content: bytes, retry_after: str | None, size: int) -> SendResult:
        try:
            reply = json.loads(content)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except ValueError:
            snippet = content[:80].decode("utf-8", "replace").strip().replace("\n", " ")
            return self._retry(f"HTTP {code} with a reply that is not JSON: {snippet!r}", f"http {code}", size)
        status = str(reply.get("status", ""))
        message = self._scrub(str(reply.get("message", "")))[:300]
        text = f"{status}: {message}" if message else status or f"HTTP {code}"
        if code == 429:
            return self._retry(f"server too busy (HTTP 429): {text}", status or "serverTooBusy", size, retry_after)
        if "requestTooLarge" in status or code == 413:
            return SendResult(TOO_LARGE, text, status=status or "requestTooLarge", request_bytes=size)
        if "discardBuffer" in status:
            return SendResult(DISCARD, text, status=status, request_bytes=size)
        if code == 200 and status.startswith("success"):
            return SendResult(OK, message, status=status, request_bytes=size)
        if status.startswith("error/client/badParam"):
            text += " (the API key may be wrong or lack the Write Logs permission)"
        if not status:
            text = f"HTTP {code} without a status: {json.dumps(reply)[:120]}"
        return self._retry(text, status or f"http {code}", size, retry_after if code >= 500 else None)

    def _retry(self, text: str, status: str, size: int, retry_after: str | None = None) -> SendResult:
        after = None
        if retry_after:
            try:
                after = min(3600.0, max(0.0, float(retry_after)))
            except ValueError:
                after = None  # an HTTP date; the usual backoff applies
        return SendResult(RETRY, text, status=status, request_bytes=size, retry_after=after)


_isal: Any = None


def _deflater(level: int) -> Any:
    """A zlib-format compressor. Levels 1-3 use ISA-L when the ``isal`` package is installed: the same
    stream, 2-4x faster than zlib here (and level 1 gives a smaller body than zlib's level 1)."""
    global _isal
    if 1 <= level <= 3:
        if _isal is None:
            try:
                from isal import isal_zlib

                _isal = isal_zlib
            except ImportError:
                _isal = False
        if _isal:
            return _isal.compressobj(level)
    return zlib.compressobj(level)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, without the pool and retry wrapping."""
    seen: set[int] = set()
    cur: BaseException = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt = getattr(cur, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in cur.args if isinstance(a, BaseException)), None)
        if nxt is None:
            nxt = cur.__cause__ or cur.__context__
        if nxt is None:
            break
        cur = nxt
    text = str(cur) or type(cur).__name__
    if "): " in text and text.startswith("<"):
        text = text.split("): ", 1)[1]
    return text[:200]
