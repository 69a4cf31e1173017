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

Encoding is per piece of a batch, not per line in Python: plain lines are escaped as one bytes object and
turned into events with one ``replace`` and one ``%`` that puts in every event's ts digits (``_raw_chunk``).
Requests go out over ``http.client`` (``httppost.Poster``), not ``requests``: ~10 MiB and ~0.1 s less per upload;
it is imported on the first post, so a run with nothing to send never loads it.
"""

from __future__ import annotations

import abc
import json
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import accumulate
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shipctl import __version__
from shipctl.model import FMT_RAW, Batch
from shipctl.records import record
from shipctl.schema import field, http_url, mask, mask_fragments, one_of, positive, scrub
from shipctl.sinks import digits
from shipctl.sinks.base import DISCARD, OK, RETRY, TOO_LARGE, Request, SendResult, Sink, Span
from shipctl.sinks.byteclass import NOT_CONTROL
from shipctl.sinks.deflate import Deflated, Segment, zlib_body

if TYPE_CHECKING:
    from shipctl.sinks.httppost import Poster

DEFAULT_SERVER = "https://agent.scalyr.com"
MIN_REQUEST_BYTES = 64 * 1024  # requestTooLarge halves the limit down to this, then backs off instead
# Queued payload read from the state file at a time: about one batch. Batches are inflated one at a time
# anyway; a wider window only held more compressed rows (measured: 4 MiB -> 1 MiB, -0.4 MiB peak RSS).
READ_WINDOW = 1 << 20
# Plain lines encoded and deflated at a time (see _raw_chunks): 64, 128 and 256 KiB cost the same CPU, each
# halving ~0.5-1 MiB less peak RSS; whole 1 MiB batches ~20% more CPU (cache misses) and ~5 MiB more RSS.
PIECE = 64 << 10


SHOW_CHARS = 64 * 1024  # of a request body, for upload --dry-run


def _level(value: int) -> str | None:
    return None if 0 <= value <= 9 else "expected a deflate level from 0 to 9"


def _min_request(value: int) -> str | None:
    return None if value >= MIN_REQUEST_BYTES else f"expected at least {MIN_REQUEST_BYTES}"


@record(frozen=True)
class ScalyrOptions:
    """The options of a ``scalyr`` sink (addEvents)."""

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
    # The agent's option: true bends every event's time to be increasing within the session (what the agent
    # did before 2.0); by default a monitor sample or script event keeps the time it was stamped with.
    enforce_monotonic_timestamps: bool = False

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise ValueError("api_key: expected a Write Logs API key, got an empty string")
        url = urlsplit(self.server)
        if url.scheme not in ("https", "http") or not url.netloc or http_url(self.server):
            raise ValueError(f"server: expected an https:// URL such as {DEFAULT_SERVER!r}, got {self.server!r}")
        for key in ("https_proxy", "http_proxy"):
            proxy = getattr(self, key)
            if proxy is not None and http_url(proxy if "://" in proxy else f"http://{proxy}"):
                raise ValueError(f"{key}: expected a proxy URL such as 'http://proxy.example:3128', got {proxy!r}")
        if url.scheme == "http" and not self.allow_http:
            raise ValueError(
                f"server: {self.server!r} is plain http:// and would send the API key unencrypted;"
                " use https:// (or set allow_http = true for a test receiver)"
            )


# --- encoding ------------------------------------------------------------------------------------------

_T = digits.RUN  # an event's ts is written as its leading digits once per piece, then 4 from a table
# After an event's last 4 ts digits, up to its message: "sd" (a delta of 1 from the sequence number before).
_SD_TAIL = b'","sd":1,"attrs":{"message":"'


def _sd() -> list[bytes]:
    """Every 4-digit k followed by ``_SD_TAIL`` (~0.8 MiB, built on first use)."""
    return digits.table(_SD_TAIL)


_CLOSE = b'"}}'
_CTRL = {c: (b"\\u%04x" % c) for c in range(0x20)} | {9: b"\\t", 13: b"\\r", 12: b"\\f", 8: b"\\b"}


def escape_lines(payload: bytes) -> bytes:
    """Lines (``\\n``-separated) made safe to stand between JSON quotes, all at C speed: invalid UTF-8
    becomes U+FFFD (as the other sinks decode it), quotes, backslashes and control characters are escaped."""
    if not payload.isascii():
        payload = payload.decode("utf-8", "replace").encode()
    ctrl = NOT_CONTROL.outside(payload)  # usually empty (valid UTF-8 is ensured above)
    if b"\\" in payload:
        payload = payload.replace(b"\\", b"\\\\")
    if b'"' in payload:
        payload = payload.replace(b'"', b'\\"')
    for c in set(ctrl) if ctrl else ():
        payload = payload.replace(bytes((c,)), _CTRL[c])
    return payload


class _Chunk(abc.ABC):
    """Consecutive events of one batch, encoded as byte pieces so that cutting at an event boundary and
    joining are list operations."""

    batch: Batch
    first_sn: int
    n: int
    size: int
    last_ts: int
    parts: list[bytes]

    @property
    def span(self) -> Span:
        last = self.first_sn + self.n - 1
        return Span(self.batch.id, self.first_sn, last, last == self.batch.sn + self.batch.n_events - 1)

    @abc.abstractmethod
    def fit(self, room: int) -> int:
        """How many leading events fit in ``room`` bytes."""

    @abc.abstractmethod
    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        """The first ``j`` events and the rest, as two chunks."""


class _RawChunk(_Chunk):
    """Plain lines as one run of events in one ``bytes`` (``parts``: the first event's head, the events, the
    closing of the last). Made by ``_raw_chunks`` at C speed; only a chunk cut at a request's size limit
    (once a request) is searched for its events' boundaries."""

    def __init__(self, batch: Batch, first_sn: int, ts0: int, n: int, parts: list[bytes], open_: bytes, si: bytes):
        self.batch, self.first_sn, self.ts0, self.n, self.parts = batch, first_sn, ts0, n, parts
        self.open, self.si = open_, si
        self.size = sum(map(len, parts))
        self.last_ts = ts0 + n - 1
        # Where an event ends and the next begins: a quote in a message is always escaped, so this (with the
        # unescaped quotes of '{"thread"') is found nowhere else.
        self.marker = _CLOSE + b"," + open_

    def _data(self) -> bytes:
        if len(self.parts) > 1:
            self.parts = [b"".join(self.parts)]
        return self.parts[0]

    def fit(self, room: int) -> int:
        data, marker = self._data(), self.marker
        # The first j events stand alone as the data up to the j-th marker, closed.
        end = data.rfind(marker, 0, max(0, room - len(_CLOSE)) + len(marker))
        return data.count(marker, 0, end) + 1 if end >= 0 else 0

    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        data, marker = self._data(), self.marker
        end = -1
        for _ in range(j):  # j is what fit() gave (or 1): cut once a request, not per event
            end = data.index(marker, end + 1)
        left = _RawChunk(self.batch, self.first_sn, self.ts0, j, [data[:end], _CLOSE], self.open, self.si)
        message = data.index(_SD_TAIL, end) + len(_SD_TAIL)
        sn, ts = self.first_sn + j, self.ts0 + j
        head = _raw_head(self.open, ts, self.si, sn)
        right = _RawChunk(self.batch, sn, ts, self.n - j, [head, data[message:]], self.open, self.si)
        return left, right


def _raw_head(open_: bytes, ts: int, si: bytes, sn: int) -> bytes:
    """The opening of the first event of a chunk: all its ts digits, si and sn."""
    return b'%b%d","si":"%b","sn":%d,"attrs":{"message":"' % (open_, ts, si, sn)


def _raw_chunk(batch: Batch, escaped: bytes, first_sn: int, v: int, open_: bytes, si: bytes) -> _RawChunk:
    """Escaped plain lines (``%`` doubled) as one chunk, ts from ``v`` up. Every newline but the last becomes
    the close of one event and the opening of the next up to its ts digits, and a ``%b`` there: one
    ``replace``, then one ``%`` puts in each event's last 4 ts digits (and ``sd``) from a table, as the
    file sink does (measured: half the CPU of splitting the lines and interleaving them with the table)."""
    k = v % _T
    glue = b"%b,%b%d%%b" % (_CLOSE, open_.replace(b"%", b"%%"), v // _T)
    body = escaped[:-1].replace(b"\n", glue)
    n = (len(body) - len(escaped) + 1) // (len(glue) - 1) + 1  # from what the replace added: no count
    if k + n <= _T:
        args: Iterable[object] = _sd()[k + 1 : k + n]
    else:  # once per 10,000 events: whole ts digits for this piece
        glue = b"%b,%b%%d%b" % (_CLOSE, open_.replace(b"%", b"%%"), _SD_TAIL)
        body = escaped[:-1].replace(b"\n", glue)
        args = range(v + 1, v + n)
    parts = [_raw_head(open_, v, si, first_sn), body % tuple(args), _CLOSE]
    return _RawChunk(batch, first_sn, v, n, parts, open_, si)


def _raw_chunks(batch: Batch, start: int, ts0: int, open_: bytes, si: bytes) -> Iterator[_Chunk]:
    """The plain lines of ``batch`` from event ``start`` on, ts from ``ts0`` up, as chunks made one at a time
    as they are consumed: each from at most ``PIECE`` bytes of the payload (cut at a newline). A piece's
    escaped copy and its events stay in the CPU cache until they are deflated, and only one piece's worth
    of them is alive at once rather than a whole batch's. Lines are not counted ahead (a pass over the
    payload: ~1 s of CPU per GB); a payload whose lines disagree with its header is sent as its lines say,
    its last chunk completing the batch."""
    payload = batch.payload
    if start:
        rest = payload.split(b"\n", start)
        payload = rest[start] if len(rest) > start else b""
    pos, i, size = 0, 0, len(payload)
    while pos < size:
        end = payload.rfind(b"\n", pos, pos + PIECE) + 1 or payload.find(b"\n", pos + PIECE) + 1
        if not end:  # a line without its newline (a damaged payload's tail) is not an event
            break
        escaped = escape_lines(payload[pos:end])
        if b"%" in escaped:
            escaped = escaped.replace(b"%", b"%%")
        pos = end
        chunk = _raw_chunk(batch, escaped, batch.sn + start + i, ts0 + i, open_, si)
        i += chunk.n
        if (pos == size or payload.find(b"\n", pos) < 0) and start + i != batch.n_events:
            chunk.batch = replace(batch, n_events=start + i)  # its span completes the batch
        yield chunk


class _JsonChunk(_Chunk):
    """One piece per event: a JSON object, after a comma but for the first."""

    def __init__(
        self,
        batch: Batch,
        first_sn: int,
        ts: list[bytes],
        attrs: list[bytes],
        open_: bytes,
        si: bytes,
        parts: list[bytes] | None = None,
    ) -> None:
        self.batch, self.first_sn, self.ts, self.attrs, self.open, self.si = batch, first_sn, ts, attrs, open_, si
        self.n = len(ts)
        if parts is None:
            parts = [self.head(0)] if ts else []
            parts += [b"," + self.event(j, b'"sd":1') for j in range(1, self.n)]
        self.parts = parts
        self.size = sum(map(len, parts))
        self.last_ts = max(map(int, ts)) if ts else 0

    def event(self, j: int, seq: bytes) -> bytes:
        return b'%b%b",%b,"attrs":%b}' % (self.open, self.ts[j], seq, self.attrs[j])

    def head(self, j: int) -> bytes:
        return self.event(j, b'"si":"%b","sn":%d' % (self.si, self.first_sn + j))

    def fit(self, room: int) -> int:
        return bisect_right(list(accumulate(map(len, self.parts))), room)

    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        left = _JsonChunk(self.batch, self.first_sn, self.ts[:j], self.attrs[:j], self.open, self.si, self.parts[:j])
        rest = self.parts[j:]
        right = _JsonChunk(self.batch, self.first_sn + j, self.ts[j:], self.attrs[j:], self.open, self.si, rest)
        rest[0] = right.head(0)
        right.size = sum(map(len, rest))
        return left, right


def _json_chunk(
    batch: Batch, start: int, floor: int, open_: bytes, si: bytes, extra: dict[str, Any] | None, own_time: bool
) -> _Chunk:
    """Grouped or sampled lines and monitor output: one JSON object per event (the slow path). An event that
    carries its own time (a sample stamped by its script, a plugin's reading) keeps it unless ``own_time`` is
    off (``enforce_monotonic_timestamps``); the others get read-time stamps kept increasing."""
    if batch.fmt == FMT_RAW:
        evs: list[dict[str, Any]] = [{"m": m} for m in batch.messages()]
    else:
        evs = json.loads(batch.payload)
    ts_list: list[bytes] = []
    attrs_list: list[bytes] = []
    prev = floor
    for i in range(start, len(evs)):
        e = evs[i]
        t = e.get("t")
        ts = int(t) if t and own_time else max(int(t or batch.ts + i), prev + 1)
        prev = max(prev, ts)
        attrs: dict[str, Any] = {"message": e.get("m", "")}
        if extra:
            attrs.update(extra)
        if e.get("a"):
            attrs.update(e["a"])
        ts_list.append(b"%d" % ts)
        attrs_list.append(json.dumps(attrs, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))
    return _JsonChunk(batch, batch.sn + start, ts_list, attrs_list, open_, si)


class _Builder:
    """One request being filled: chunks of events plus the threads and logs they refer to. With compression
    the events are deflated as they come (``segment``), so a request waiting for its turn holds ~1/6 of its
    size, and its JSON is never joined into one buffer."""

    def __init__(self, base: int, segment: Segment | None = None) -> None:
        self.pieces: list[bytes] = []
        self.segment = segment
        self.chunks = 0
        self.spans: list[Span] = []
        self.events = 0
        self.threads: dict[bytes, bytes] = {}
        self.logs: dict[bytes, bytes] = {}
        self.size = base

    def cost(self, decls: list[tuple[dict[bytes, bytes], bytes, bytes]]) -> int:
        """Bytes the declarations (thread, log) of a chunk would add, with commas."""
        return sum(len(d) + (1 if table else 0) for table, key, d in decls if key not in table)

    def add(self, chunk: _Chunk, decls: list[tuple[dict[bytes, bytes], bytes, bytes]]) -> None:
        self.size += self.cost(decls) + chunk.size + (1 if self.chunks else 0)
        for table, key, d in decls:
            table.setdefault(key, d)
        # Joined (and deflated) while the chunk's pieces are still in the CPU cache.
        data = b"".join([b",", *chunk.parts] if self.chunks else chunk.parts)
        if self.segment is not None:
            self.segment.add(data)
        else:
            self.pieces.append(data)
        self.chunks += 1
        self.spans.append(chunk.span)
        self.events += chunk.n


@record
class _Payload:
    """One addEvents request body in its parts, compressed once sealed."""

    events: bytes | Deflated  # the events' JSON, deflated on the way when the body is compressed
    threads: bytes
    logs: bytes
    wire: bytes | None = None  # the body as sent (compressed), once sealed


class ScalyrSink(Sink):
    # One request encoded ahead is enough: encoding one (~20 ms for 6 MB of JSON) is much shorter than a
    # round trip to the service, and each one more alive costs ~1.5 MiB of peak RSS (measured: -3 MiB from 2).
    ahead = 1

    def __init__(self, options: ScalyrOptions, session: str) -> None:
        self.options = options
        self.session = session
        self.si = session.encode()
        self.url = options.server.rstrip("/") + "/addEvents"
        self.host = urlsplit(options.server).netloc
        self.request_limit = options.max_request_bytes
        self.request_bytes = READ_WINDOW
        self.server_attributes: dict[str, Any] = {}
        self._http: Poster | None = None
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
            attrs = dict(extra)
            # As the agent: the file's path, unless the log's attributes name it (logfile, or the legacy
            # filename) or rename_logfile did (shipctl/logrename.py puts logfile in the batch's attributes).
            if "logfile" not in attrs and "filename" not in attrs:
                attrs["logfile"] = batch.source
            decl = json.dumps({"id": lid.decode(), "attrs": attrs}, ensure_ascii=False, separators=(",", ":"))
            got = self._logs[key] = (lid, decl.encode())
        return got

    def _extra(self, batch: Batch) -> dict[str, Any]:
        """The batch's attributes that are not server attributes (those go once, in sessionInfo)."""
        server = self.server_attributes
        return {k: v for k, v in batch.attrs.items() if k not in server or server[k] != v}

    def _chunks(self, batch: Batch, start: int) -> tuple[Iterator[_Chunk], list[tuple[str, bytes, bytes]]]:
        """Events of ``batch`` from index ``start``, made as they are consumed (each moves ``_last_ts``), and
        the thread/log declarations they refer to."""
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
            return _raw_chunks(batch, start, ts0, open_, self.si), decls
        own = not self.options.enforce_monotonic_timestamps
        chunk = _json_chunk(batch, start, self._last_ts, open_, self.si, event_extra, own)
        return iter((chunk,) if chunk.n else ()), decls

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        # Exact sizes: client_time has 10 digits until 2286.
        base = len(self._head(self.options.api_key, _Payload(b"", b"", b""), 10**9)) + len(b"]}")
        limit = self.request_limit
        b = self._builder(base)
        for batch in batches:
            last = batch.sn + batch.n_events - 1
            if last <= acked_sn:  # every event already confirmed: only the queue row is left to delete
                b.spans.append(Span(batch.id, last, last, True))
                batch = None  # type: ignore[assignment]  # see below
                continue
            chunks, named = self._chunks(batch, max(0, acked_sn + 1 - batch.sn))
            sent = False
            for chunk in chunks:
                sent = True
                self._last_ts = max(self._last_ts, chunk.last_ts)
                while True:
                    decls = [(b.threads if t == "threads" else b.logs, key, d) for t, key, d in named]
                    room = limit - b.size - b.cost(decls) - (1 if b.chunks else 0)
                    if chunk.size <= room:
                        b.add(chunk, decls)
                        break
                    j = chunk.fit(room)
                    if j == 0 and b.events:
                        yield self._finish(b)
                        b = self._builder(base)
                        continue
                    j = max(j, 1)  # one event bigger than a whole request goes alone; the server may refuse it
                    if j >= chunk.n:
                        b.add(chunk, decls)
                        break
                    left, chunk = chunk.split(j)
                    b.add(left, decls)
                    yield self._finish(b)
                    b = self._builder(base)
            if not sent:  # a payload with fewer events than its header says: nothing to send
                b.spans.append(Span(batch.id, last, last, True))
            # Not alive while the reader inflates the next batch: the loop's names would hold this one's
            # payload (and its chunks' references to it) until they are bound again (measured: -1 MiB RSS).
            batch = chunks = chunk = left = None  # type: ignore[assignment]
        if b.spans:
            yield self._finish(b)

    def _builder(self, base: int) -> _Builder:
        o = self.options
        return _Builder(base, None if o.compression == "none" else Segment(o.compression_level))

    def _finish(self, b: _Builder) -> Request:
        events = b"".join(b.pieces) if b.segment is None else Deflated.of(b.segment)
        payload = _Payload(events, b",".join(b.threads.values()), b",".join(b.logs.values()))
        return Request(b.spans, b.events, b.size, payload)

    def shrink(self) -> int:
        new = max(MIN_REQUEST_BYTES, self.request_limit // 2)
        if new >= self.request_limit:
            return 0
        self.request_limit = new
        return new

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # --- sending -------------------------------------------------------------------------------------
    def _encode(self, request: Request, token: str) -> bytes:
        """The body as sent: only its head (client time, declarations) is made now; the events were deflated
        while the request was filled."""
        payload: _Payload = request.payload
        head = self._head(token, payload, int(time.time()))
        if isinstance(payload.events, Deflated):
            return zlib_body(self.options.compression_level, head, payload.events, b"]}")
        return b"".join((head, payload.events, b"]}"))

    def show(self, request: Request) -> str:
        payload: _Payload = request.payload
        token = mask(self.options.api_key)
        wire = len(self._encode(request, token))
        events = payload.events.inflate() if isinstance(payload.events, Deflated) else payload.events
        parts = [self._head(token, payload, int(time.time())), events, b"]}"]
        enc = self.options.compression
        if enc == "deflate":
            enc = f"deflate (level {self.options.compression_level})"
        head = [
            f"POST {self.url}",
            "Content-Type: application/json",
            f"Content-Encoding: {enc}; {request.size} bytes uncompressed, {wire} on the wire",
            f"{request.events} events from {len(request.spans)} queued batches (sn {request.spans[0].first_sn}"
            f"..{request.last_sn}); the API key is masked",
            "",
        ]
        body = b"".join(parts).decode("utf-8", "replace")
        if len(body) > SHOW_CHARS:  # a full request is ~6 MB: show its start, which holds every field
            body = body[:SHOW_CHARS] + f"\n... ({len(body) - SHOW_CHARS} more characters of this body not shown)"
        return "\n".join(head) + body

    def _client(self) -> Poster:
        if self._http is None:
            # Imported on the first post (http.client, ssl: ~5 MiB): a run with nothing to send never loads it.
            from shipctl.sinks.httppost import Poster

            o = self.options
            proxies = {k: v for k, v in (("https", o.https_proxy), ("http", o.http_proxy)) if v}
            self._http = Poster(
                self.url,
                proxies=proxies,  # the options win over the environment's
                verify=o.ca_bundle or o.verify_tls,
                user_agent=f"shipctl/{__version__}",
            )
        return self._http

    def seal(self, request: Request) -> None:
        payload: _Payload = request.payload
        if payload.wire is None:
            payload.wire = self._encode(request, self.options.api_key)
            payload.events = b""  # only the wire form is needed from here on

    def post(self, request: Request) -> SendResult:
        o = self.options
        self.seal(request)
        data = request.payload.wire
        headers = {"Content-Type": "application/json"}
        if o.compression != "none":
            headers["Content-Encoding"] = "deflate"
        connect, read = self.wait_limits(o.connect_timeout, o.read_timeout)
        client = self._client()
        from shipctl.sinks.httppost import PostError

        try:
            reply = client.post(data, headers, (connect, read))
        except PostError as exc:
            if exc.kind == "tls":
                return self._fail(f"TLS error with {self.host}: {exc.reason} (see the ca_bundle option)", "tls")
            if exc.kind == "connect":
                return self._fail(f"no connection to {self.host} within {connect:g} s", "timeout")
            if exc.kind == "read":
                return self._fail(f"no reply from {self.host} within {read:g} s", "timeout")
            return self._fail(f"request to {self.host} failed: {exc.reason}", "connection")
        res = self._reply(reply.status, reply.content, reply.retry_after, request.size)
        # A reply may quote the request, token included (error pages, proxies): mask it wherever it went.
        return replace(res, message=self._scrub(res.message), status=self._scrub(res.status))

    def _fail(self, message: str, status: str) -> SendResult:
        return SendResult(RETRY, self._scrub(message), status=status)

    def _scrub(self, text: str) -> str:
        key = self.options.api_key
        return scrub(mask_fragments(text.replace(key, mask(key)), key) if key else text)

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


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, without the pool and retry wrapping (the OTLP sink
    posts with requests and uses it)."""
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
