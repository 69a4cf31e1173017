"""The ``otlp`` sink: logs, events and metrics to an OpenTelemetry collector over OTLP/HTTP.

``POST {endpoint}/v1/logs`` and ``{endpoint}/v1/metrics``, as protobuf (``opentelemetry-proto``, the ``otlp``
extra) or as the OTLP/JSON encoding (camelCase names, 64-bit integers as decimal strings, enums as numbers;
no extra needed), gzip-compressed by default.

What goes where:

- Resource attributes: the server attributes, ``serverHost`` as ``host.name``, and ``service.name`` from the
  ``service_name`` option. One scope, ``shipctl`` with its version.
- A log line is a LogRecord: ``body`` is the line, ``time_unix_nano`` the event's time (for a plain line: the
  read time plus its index, as in every sink), ``observed_time_unix_nano`` the time shipctl read or queued
  the batch, a severity when the log's attributes carry one (``severity``, ``level``, ``log.level``,
  ``loglevel``), attributes: ``log.file.path``, the log's own attributes, ``shipctl.session`` and
  ``shipctl.sn`` (the sink's sequence stream and the event's sequence number: a consumer drops repeats by them).
- An event (kind "event", a script's ``E`` line) is a LogRecord too, its name in ``event_name``, its source
  as ``shipctl.source``.
- A numeric sample is a Metric with one data point: a gauge, or for ``type = "counter"`` a cumulative
  monotonic Sum; dimensions (and the monitor id) are the data point's attributes; booleans as 0/1. The
  session and sequence number go in the Metric's ``metadata`` rather than the point's attributes: point
  attributes identify a time series, and a per-sample number there would make every sample a series of its
  own in any metric store downstream.
- A text sample (a shell monitor's answer) cannot be a gauge: it goes as a LogRecord to /v1/logs, its text as
  the body, ``shipctl.metric`` naming the metric, the dimensions as attributes.
- Not sent: a sample's extra fields (they do not identify a series, and OTLP points have nothing else) and a
  counter's computed rate (a cumulative Sum is what collectors derive rates from); attributes whose value is
  null (collectors refuse an empty value in JSON). No trace or span ids exist to send.

Replies: 200 (``partial_success`` rejections are counted in the reply message and noticed in ``status``);
400 (and 422) discards the request with the collector's reason (a google.rpc.Status, protobuf or JSON); 413
makes requests smaller; 429/502/503/504 and other 5xx back off, ``Retry-After`` honoured; 401/403/404/415 and
the like keep the data and back off (a setup problem, not bad data). A request holding logs and metrics is two
POSTs, logs first: when the second fails, the logs go again with the retry, under the same session and sn.

Speed: plain log lines (the bulk) are framed without an object per line: the whole batch is split once and
every record is assembled from per-line pieces by ``map``/slice assignment (the body, its framing looked up
per distinct line length, the low bytes or last digits of the time and sequence number sliced from tables,
the rest constant over a run of records), then joined once. The per-batch constant part of each record
(observed time, severity, attributes) is serialised once per batch (by ``opentelemetry-proto`` or ``json``);
everything that is not a plain line is built message by message. ``requests_in_flight`` (2) requests are
posted before the first reply is in, so the collector decodes one while the next is on its way; replies are
booked in order.
"""

from __future__ import annotations

import abc
import gzip
import json
import math
import re
import struct
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field as dc_field
from itertools import accumulate
from operator import add
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from shipctl import __version__
from shipctl.errors import ConfigError
from shipctl.model import FMT_RAW, Batch, Metric, metrics
from shipctl.records import record
from shipctl.schema import field, http_url, is_secret_key, mask, mask_fragments, one_of, positive, scrub
from shipctl.sinks import digits
from shipctl.sinks.base import DISCARD, OK, RETRY, TOO_LARGE, Request, SendResult, Sink, Span
from shipctl.sinks.http import check_header_values
from shipctl.sinks.scalyr import escape_lines

INSTALL_HINT = "pip install 'shipctl[otlp]'"
MIN_REQUEST_BYTES = 64 * 1024  # a 413 halves the request size down to this, then backs off instead
MAX_IN_FLIGHT = 8  # requests_in_flight: each one holds a compressed request in memory until its reply
MAX_REPLY_BYTES = 64 * 1024  # of a reply body read: an error page is not worth more
SHOW_CHARS = 64 * 1024  # of a request body, for upload --dry-run
SESSION_KEY = "shipctl.session"
SN_KEY = "shipctl.sn"
CUMULATIVE = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
# OTLP: "retryable" statuses; any other 4xx is not worth repeating as is (see _reply for what shipctl does).
RETRYABLE = (429, 502, 503, 504)

# Log attributes that say a line's severity, first found wins (keys compared in lower case).
SEVERITY_KEYS = ("severity", "level", "log.level", "loglevel", "log_level", "severity_text")
# Text severities to OpenTelemetry's SeverityNumber (the first of each range: TRACE 1, DEBUG 5, INFO 9, ...).
SEVERITIES = {
    "trace": 1,
    "debug": 5,
    "info": 9,
    "information": 9,
    "informational": 9,
    "notice": 10,
    "warn": 13,
    "warning": 13,
    "error": 17,
    "err": 17,
    "critical": 18,
    "crit": 18,
    "alert": 19,
    "emerg": 21,
    "emergency": 21,
    "fatal": 21,
    "panic": 21,
}
# Header names whose values are masked when shown (beyond the usual *_key / token / password names).
_SECRET_HEADER_WORDS = ("auth", "token", "secret", "key", "password", "cookie", "signature", "credential")


def is_secret_header(name: str) -> bool:
    low = name.lower()
    return is_secret_key(name) or any(w in low for w in _SECRET_HEADER_WORDS)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)


def _no_headers() -> Mapping[str, str]:
    return MappingProxyType({})


@record(frozen=True)
class OtlpOptions:
    """Options of the ``otlp`` sink: logs, metrics and events over OTLP/HTTP."""

    endpoint: str = field("http://127.0.0.1:4318", check=http_url)  # /v1/logs and /v1/metrics are appended
    protocol: str = field("protobuf", check=one_of("protobuf", "json"))
    compression: str = field("gzip", check=one_of("gzip", "none"))
    # Sent with every request (an API key, a tenant id); values of secret-looking names are masked when shown.
    headers: Mapping[str, str] = dc_field(default_factory=_no_headers, metadata={"secret": True})
    service_name: str = "shipctl"
    connect_timeout: float = field(10.0, check=positive)
    read_timeout: float = field(30.0, check=positive)
    # Cap on one request's body before compression (logs and metrics of one request together).
    request_bytes: int = field(4 << 20, check=positive)
    # Requests posted before the first reply is in: a collector decodes one while the next is on its way
    # (replies are booked in order; the cursor never passes a request that was not confirmed). 1: one at a time.
    requests_in_flight: int = field(2, check=positive)

    def __post_init__(self) -> None:
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(
                f"endpoint: expected an http:// or https:// URL such as 'http://127.0.0.1:4318', got {self.endpoint!r}"
            )
        if url.path.rstrip("/").endswith(("/v1/logs", "/v1/metrics")):
            raise ValueError(
                f"endpoint: give the collector's base URL ({self.endpoint!r} ends with a signal path;"
                " /v1/logs and /v1/metrics are appended)"
            )
        if self.requests_in_flight > MAX_IN_FLIGHT:
            raise ValueError(f"requests_in_flight: expected 1 to {MAX_IN_FLIGHT}, got {self.requests_in_flight}")
        if self.request_bytes < MIN_REQUEST_BYTES:
            raise ValueError(f"request_bytes: expected at least {MIN_REQUEST_BYTES}, got {self.request_bytes}")
        for name, value in self.headers.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"headers: {name!r} is not a valid HTTP header name")
            try:
                check_header_values({f"headers.{name}": value})
            except ValueError:
                if not is_secret_header(name):
                    raise
                # The check quotes the value: not for a secret one.
                raise ValueError(
                    f"headers.{name}: only Latin-1 characters on one line can go in an HTTP header"
                ) from None
        if self.protocol == "protobuf" and not _have_proto():
            raise ValueError(
                "protocol: 'protobuf' needs the opentelemetry-proto package, which is not installed:"
                f' {INSTALL_HINT} (or protocol = "json", which needs nothing more)'
            )


def _have_proto() -> bool:
    """Whether opentelemetry-proto is importable, without importing it (config checks run on every upload)."""
    from importlib.util import find_spec

    try:
        return find_spec("opentelemetry.proto") is not None
    except (ImportError, ValueError):
        return False


_pb: Any = None


def _proto() -> Any:
    """The opentelemetry-proto modules, imported on first use (about 25 ms)."""
    global _pb
    if _pb is None:
        try:
            from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
            from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
            from opentelemetry.proto.common.v1 import common_pb2
            from opentelemetry.proto.logs.v1 import logs_pb2
            from opentelemetry.proto.metrics.v1 import metrics_pb2
            from opentelemetry.proto.resource.v1 import resource_pb2
        except ImportError as exc:
            raise ConfigError(
                f"the otlp sink's protocol 'protobuf' needs opentelemetry-proto ({exc}): {INSTALL_HINT}"
            ) from None

        class _Modules:
            common = common_pb2
            logs = logs_pb2
            metrics = metrics_pb2
            resource = resource_pb2
            logs_service = logs_service_pb2
            metrics_service = metrics_service_pb2

        _pb = _Modules
    return _pb


# --- values ------------------------------------------------------------------------------------------------

_INT64 = (-(1 << 63), (1 << 63) - 1)


def _clean(s: str) -> str:
    """Text that encodes as UTF-8 (a JSON payload may hold a lone surrogate; protobuf strings must be UTF-8)."""
    if s.isascii():
        return s
    return s.encode("utf-8", "replace").decode("utf-8")


def _pb_any(v: Any) -> Any:
    c = _proto().common
    if isinstance(v, str):
        return c.AnyValue(string_value=_clean(v))
    if isinstance(v, bool):
        return c.AnyValue(bool_value=v)
    if isinstance(v, int):
        return c.AnyValue(int_value=v) if _INT64[0] <= v <= _INT64[1] else c.AnyValue(string_value=str(v))
    if isinstance(v, float):
        return c.AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        return c.AnyValue(array_value=c.ArrayValue(values=[_pb_any(x) for x in v if x is not None]))
    if isinstance(v, dict):
        return c.AnyValue(kvlist_value=c.KeyValueList(values=_pb_kvs(v.items())))
    return c.AnyValue(string_value=_clean(str(v)))


def _pb_kvs(items: Iterable[tuple[Any, Any]]) -> list[Any]:
    c = _proto().common
    return [c.KeyValue(key=_clean(str(k)), value=_pb_any(v)) for k, v in items if v is not None]


def _js_double(v: float) -> Any:
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")  # the proto3 JSON spellings


def _js_any(v: Any) -> dict[str, Any]:
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)} if _INT64[0] <= v <= _INT64[1] else {"stringValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": _js_double(v)}
    if isinstance(v, list | tuple):
        return {"arrayValue": {"values": [_js_any(x) for x in v if x is not None]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": _js_kvs(v.items())}}
    return {"stringValue": str(v)}


def _js_kvs(items: Iterable[tuple[Any, Any]]) -> list[dict[str, Any]]:
    # A null is left out: an empty AnyValue is valid OTLP, but collectors refuse it in JSON (rotel: HTTP 400).
    return [{"key": str(k), "value": _js_any(v)} for k, v in items if v is not None]


def _dumps(obj: Any) -> bytes:
    # ASCII output: every character escaped that needs it, so the body is valid UTF-8 whatever the input held.
    return json.dumps(obj, separators=(",", ":")).encode()


def severity(attrs: Mapping[str, Any]) -> tuple[int, str] | None:
    """(SeverityNumber, SeverityText) when the attributes say a severity, else None."""
    for key, value in attrs.items():
        if str(key).lower() not in SEVERITY_KEYS:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, "") if 1 <= value <= 24 else None
        if isinstance(value, str) and value.strip():
            return SEVERITIES.get(value.strip().lower(), 0), value.strip()
    return None


# --- protobuf framing for the fast path --------------------------------------------------------------------

_Q = struct.Struct("<Q")


def _varint(v: int) -> bytes:
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_tables: tuple[list[bytes], list[bytes]] | None = None


def _varint_tables() -> tuple[list[bytes], list[bytes]]:
    """Varints of 0..16383, and the low 14 bits of any larger number as its first two varint bytes."""
    global _tables
    if _tables is None:
        small = [_varint(x) for x in range(1 << 14)]
        low = [bytes(((x & 0x7F) | 0x80, (x >> 7) | 0x80)) for x in range(1 << 14)]
        _tables = (small, low)
    return _tables


_ts_low: list[bytes] | None = None


def _ts_table() -> list[bytes]:
    """The fixed64 time field's tag and first two (low) bytes, for each of the 65,536 values of those bytes."""
    global _ts_low
    if _ts_low is None:
        _ts_low = [b"\x09" + x.to_bytes(2, "little") for x in range(1 << 16)]
    return _ts_low


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag byte already holding field number and wire type 2)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


_RUN = digits.RUN  # the JSON fast path writes a number as its leading digits and its last four (from a table)
_JSON_TS_TAIL = b'","body":{"stringValue":"'  # what follows a record's time
_JSON_SN_TAIL = b'"}}]},'  # what follows its sequence number: the end of the record


def _digit_tables() -> tuple[tuple[list[bytes], list[bytes]], tuple[list[bytes], list[bytes]]]:
    """For times and for sequence numbers: (the last four digits of a number of 10,000 or more, a number under
    10,000 in full), each followed by what comes after it in a record."""
    ts, sn = _JSON_TS_TAIL, _JSON_SN_TAIL
    return (digits.table(ts), digits.table(ts, padded=False)), (digits.table(sn), digits.table(sn, padded=False))


def _digits(first: int, m: int, tables: tuple[list[bytes], list[bytes]]) -> tuple[bytes, list[bytes]]:
    """``first .. first + m - 1`` (none crossing a multiple of 10,000) as their shared leading digits and
    each one's tail from ``tables``."""
    low = first % _RUN
    if first < _RUN:
        return b"", tables[1][low : low + m]
    return b"%d" % (first // _RUN), tables[0][low : low + m]


# --- chunks: consecutive events of one batch, encoded, cut at event boundaries --------------------------------


class _Chunk(abc.ABC):
    """Events ``first_sn .. first_sn + n - 1`` of one batch as encoded pieces: log records and metrics. Joining
    a chunk's pieces gives its records; cutting at an event boundary is list slicing."""

    batch: Batch
    first_sn: int
    n: int  # events covered (some may have produced no record)
    logs: list[bytes]
    metrics: list[bytes]
    n_logs: int
    n_metrics: int
    size: int

    @property
    def span(self) -> Span:
        last = self.first_sn + self.n - 1
        return Span(self.batch.id, self.first_sn, last, last == self.batch.sn + max(self.batch.n_events, 1) - 1)

    @abc.abstractmethod
    def fit(self, room: int) -> int:
        """How many leading events fit in ``room`` bytes."""

    @abc.abstractmethod
    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        """The first ``j`` events and the rest."""


class _LineChunk(_Chunk):
    """Plain lines: ``stride`` pieces per record, one record per event."""

    def __init__(
        self,
        batch: Batch,
        first_sn: int,
        n: int,
        parts: list[bytes],
        stride: int,
        records: int,
        size: int = -1,
        sizes: list[int] | None = None,
    ) -> None:
        self.batch, self.first_sn, self.n, self.logs, self.stride = batch, first_sn, n, parts, stride
        self.metrics = []
        self.n_logs, self.n_metrics = records, 0
        self.size = sum(map(len, parts)) if size < 0 else size
        self.sizes = sizes  # each record's bytes, when the encoding knew them without measuring

    def fit(self, room: int) -> int:
        if self.sizes is not None:
            ends = list(accumulate(self.sizes))
        else:
            ends = list(accumulate(map(len, self.logs)))[self.stride - 1 :: self.stride]  # size up to each record
        return min(bisect_right(ends, room), self.n)

    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        r = min(j, self.n_logs)
        k = r * self.stride
        sizes, left_size, right_sizes, left_sizes = self.sizes, -1, None, None
        if sizes is not None:
            left_sizes, right_sizes = sizes[:r], sizes[r:]
            left_size = sum(left_sizes)
        left = _LineChunk(self.batch, self.first_sn, j, self.logs[:k], self.stride, r, left_size, left_sizes)
        right = _LineChunk(
            self.batch,
            self.first_sn + j,
            self.n - j,
            self.logs[k:],
            self.stride,
            self.n_logs - r,
            self.size - left_size if sizes is not None else -1,
            right_sizes,
        )
        return left, right


class _EventChunk(_Chunk):
    """Anything else: one piece per record or metric, each with the sequence number of its event."""

    def __init__(self, batch: Batch, first_sn: int, n: int, entries: list[tuple[int, bool, bytes]]) -> None:
        self.batch, self.first_sn, self.n, self.entries = batch, first_sn, n, entries
        self.logs = [p for _, is_metric, p in entries if not is_metric]
        self.metrics = [p for _, is_metric, p in entries if is_metric]
        self.n_logs, self.n_metrics = len(self.logs), len(self.metrics)
        self.size = sum(len(p) for _, _, p in entries)

    def fit(self, room: int) -> int:
        size, best = 0, 0
        for i, (sn, _, piece) in enumerate(self.entries):
            size += len(piece)
            if size > room:
                break
            # Only after the last piece of an event: its pieces (a Panoptes group's samples) never part.
            if i + 1 == len(self.entries) or self.entries[i + 1][0] != sn:
                best = sn - self.first_sn + 1
        else:
            best = self.n
        return best

    def split(self, j: int) -> tuple[_Chunk, _Chunk]:
        cut = self.first_sn + j
        k = next((i for i, e in enumerate(self.entries) if e[0] >= cut), len(self.entries))
        return (
            _EventChunk(self.batch, self.first_sn, j, self.entries[:k]),
            _EventChunk(self.batch, cut, self.n - j, self.entries[k:]),
        )


@record
class _Payload:
    """The encoded log records and metric points of one request."""

    logs: list[bytes]
    metrics: list[bytes]
    n_logs: int
    n_metrics: int
    log_body: bytes | None = None  # the wire forms, made by seal()
    metric_body: bytes | None = None
    log_size: int = 0
    metric_size: int = 0


class _Builder:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.logs: list[bytes] = []
        self.metrics: list[bytes] = []
        self.n_logs = 0
        self.n_metrics = 0
        self.size = 0
        self.events = 0

    def add(self, chunk: _Chunk) -> None:
        self.spans.append(chunk.span)
        self.logs += chunk.logs
        self.metrics += chunk.metrics
        self.n_logs += chunk.n_logs
        self.n_metrics += chunk.n_metrics
        self.size += chunk.size
        self.events += chunk.n


# --- the two encodings -------------------------------------------------------------------------------------


class _Encoding(abc.ABC):
    """One wire encoding: records and metrics as pieces, and the request around them."""

    content_type: str
    # Extra bytes of the request around the records (resource, scope, framing): counted against the limit.
    overhead: int

    def __init__(self, resource: list[tuple[str, Any]]) -> None:
        self.resource = resource

    @abc.abstractmethod
    def lines(
        self, batch: Batch, start: int, const: list[tuple[str, Any]], sev: tuple[int, str] | None
    ) -> tuple[list[bytes], int, int, int, list[int] | None]:
        """Plain lines of ``batch`` from index ``start``: (pieces, pieces per record, records, bytes, and each
        record's bytes if known)."""

    @abc.abstractmethod
    def record(self, rec: _Rec) -> bytes: ...

    @abc.abstractmethod
    def metric(self, point: _Point) -> bytes: ...

    @abc.abstractmethod
    def body(self, signal: str, pieces: list[bytes], size: int) -> bytes:
        """The request around ``pieces`` (``size`` bytes together)."""

    @abc.abstractmethod
    def render(self, signal: str, body: bytes) -> str:
        """A body as text, for --dry-run."""


@record(frozen=True)
class _Rec:
    """One log record's fields, before encoding."""

    ts: int
    observed: int
    body: str
    attrs: list[tuple[str, Any]]
    sev: tuple[int, str] | None = None
    event_name: str = ""


@record(frozen=True)
class _Point:
    """One metric point's fields, before encoding."""

    name: str
    value: int | float
    counter: bool
    ts: int
    attrs: list[tuple[str, Any]]
    meta: list[tuple[str, Any]]
    unit: str = ""
    description: str = ""


def _split_lines(payload: bytes, start: int, n: int) -> list[bytes]:
    lines = payload.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line
    return lines[start : start + n] if start or len(lines) > n else lines


class _Proto(_Encoding):
    content_type = "application/x-protobuf"

    def __init__(self, resource: list[tuple[str, Any]]) -> None:
        super().__init__(resource)
        pb = _proto()
        self.pb = pb
        res = pb.resource.Resource(attributes=_pb_kvs(resource)).SerializeToString()
        scope = pb.common.InstrumentationScope(name="shipctl", version=__version__).SerializeToString()
        self.resource_field = _field(0x0A, res)
        self.scope_field = _field(0x0A, scope)
        self.overhead = len(self.resource_field) + len(self.scope_field) + 12
        self._frames: dict[int, tuple[dict[int, bytes], dict[int, int]]] = {}

    def lines(
        self, batch: Batch, start: int, const: list[tuple[str, Any]], sev: tuple[int, str] | None
    ) -> tuple[list[bytes], int, int, int, list[int] | None]:
        payload = batch.payload
        if not payload.isascii():
            payload = payload.decode("utf-8", "replace").encode()  # protobuf strings must be valid UTF-8
        lines = _split_lines(payload, start, batch.n_events - start)
        n = len(lines)
        if not n:
            return [], 6, 0, 0, []
        rec = self.pb.logs.LogRecord(observed_time_unix_nano=batch.ts, attributes=_pb_kvs(const))
        if sev:
            rec.severity_number, rec.severity_text = sev
        tail = rec.SerializeToString()  # fields in any order make one message: the per-line fields go first
        small, low = _varint_tables()
        ts_low = _ts_table()
        sn0, ts0 = batch.sn + start, batch.ts + start
        lens = list(map(len, lines))
        # Six pieces per record: [0x12 len 0x2a len 0x0a len] [line] [0x09, the time's two low bytes] [its six
        # high bytes, the constant attributes and the sn key] [sn varint, low bytes] [sn varint, high bytes].
        # Times and sequence numbers are consecutive: within a run where the time's high bytes and the sn's
        # varint length and high bytes stay the same, those are constant pieces and the low ones come from
        # tables by slicing, so no number is packed per record.
        parts: list[bytes] = [b""] * (6 * n)
        parts[1::6] = lines
        sizes: list[int] = []  # each record's bytes, from its line's length: nothing measured again
        i = 0
        while i < n:
            sn, ts = sn0 + i, ts0 + i
            if sn < 1 << 14:
                end = min(n, i + ((1 << 7) - sn if sn < 1 << 7 else (1 << 14) - sn))
            else:
                end = min(n, i + (1 << 14) - (sn & 0x3FFF))
            end = min(end, i + (1 << 16) - (ts & 0xFFFF))
            m = end - i
            if sn < 1 << 14:
                lows, high = small[sn : sn + m], b""
            else:
                lows, high = low[sn & 0x3FFF : (sn & 0x3FFF) + m], _varint(sn >> 14)
            vlen = len(lows[0]) + len(high)
            # KeyValue { key (1), value (2): AnyValue { int_value (3): the varint } }
            sn_kv = _field(0x0A, SN_KEY.encode()) + b"\x12" + _varint(1 + vlen) + b"\x18"
            mid = _Q.pack(ts)[2:] + tail + b"\x32" + _varint(len(sn_kv) + vlen) + sn_kv
            heads, totals = self._framing(3 + len(mid) + vlen, set(lens[i:end]))
            run = lens[i:end]
            parts[6 * i : 6 * end : 6] = map(heads.__getitem__, run)
            parts[6 * i + 2 : 6 * end : 6] = ts_low[ts & 0xFFFF : (ts & 0xFFFF) + m]
            parts[6 * i + 3 : 6 * end : 6] = [mid] * m
            parts[6 * i + 4 : 6 * end : 6] = lows
            parts[6 * i + 5 : 6 * end : 6] = [high] * m
            sizes += map(totals.__getitem__, run)
            i = end
        return parts, 6, n, sum(sizes), sizes

    def _framing(self, fixed: int, lengths: set[int]) -> tuple[dict[int, bytes], dict[int, int]]:
        """By line length: the record's opening (its field tag and length, then the body's AnyValue framing),
        and the whole record's bytes. ``fixed`` is what a record holds besides its body."""
        heads, totals = self._frames.setdefault(fixed, ({}, {}))
        for ln in lengths - heads.keys():
            inner = 1 + len(_varint(ln)) + ln
            body = b"\x2a" + _varint(inner) + b"\x0a" + _varint(ln)
            size = fixed + len(body) + ln
            heads[ln] = b"\x12" + _varint(size) + body
            totals[ln] = 1 + len(_varint(size)) + size
        return heads, totals

    def record(self, rec: _Rec) -> bytes:
        r = self.pb.logs.LogRecord(
            time_unix_nano=rec.ts,
            observed_time_unix_nano=rec.observed,
            body=_pb_any(rec.body),
            attributes=_pb_kvs(rec.attrs),
        )
        if rec.sev:
            r.severity_number, r.severity_text = rec.sev
        if rec.event_name:
            r.event_name = _clean(rec.event_name)
        return _field(0x12, r.SerializeToString())

    def metric(self, point: _Point) -> bytes:
        m = self.pb.metrics
        dp = m.NumberDataPoint(time_unix_nano=point.ts, attributes=_pb_kvs(point.attrs))
        if isinstance(point.value, int):
            dp.as_int = point.value
        else:
            dp.as_double = point.value
        metric = m.Metric(
            name=_clean(point.name),
            metadata=_pb_kvs(point.meta),
            unit=_clean(point.unit),
            description=_clean(point.description),
        )
        if point.counter:
            metric.sum.data_points.append(dp)
            metric.sum.is_monotonic = True
            metric.sum.aggregation_temporality = CUMULATIVE
        else:
            metric.gauge.data_points.append(dp)
        return _field(0x12, metric.SerializeToString())

    def body(self, signal: str, pieces: list[bytes], size: int) -> bytes:
        # Export*ServiceRequest { resource_* (1) { resource (1), scope_* (2) { scope (1), records (2)... } } }
        scope_len = len(self.scope_field) + size
        scope_head = b"\x12" + _varint(scope_len)
        outer = len(self.resource_field) + len(scope_head) + scope_len
        return b"".join([b"\x0a", _varint(outer), self.resource_field, scope_head, self.scope_field, *pieces])

    def render(self, signal: str, body: bytes) -> str:
        """A body as OTLP/JSON text, for --dry-run."""
        from google.protobuf import json_format  # type: ignore[import-untyped]

        cls = (
            self.pb.logs_service.ExportLogsServiceRequest
            if signal == "logs"
            else self.pb.metrics_service.ExportMetricsServiceRequest
        )
        return json_format.MessageToJson(cls.FromString(body), indent=None)


class _Json(_Encoding):
    content_type = "application/json"

    def __init__(self, resource: list[tuple[str, Any]]) -> None:
        super().__init__(resource)
        res = _dumps({"attributes": _js_kvs(resource)})
        scope = _dumps({"name": "shipctl", "version": __version__})
        self.heads = {
            "logs": b'{"resourceLogs":[{"resource":%b,"scopeLogs":[{"scope":%b,"logRecords":[' % (res, scope),
            "metrics": b'{"resourceMetrics":[{"resource":%b,"scopeMetrics":[{"scope":%b,"metrics":[' % (res, scope),
        }
        self.overhead = len(self.heads["metrics"]) + 8

    def lines(
        self, batch: Batch, start: int, const: list[tuple[str, Any]], sev: tuple[int, str] | None
    ) -> tuple[list[bytes], int, int, int, list[int] | None]:
        lines = _split_lines(escape_lines(batch.payload), start, batch.n_events - start)
        n = len(lines)
        if not n:
            return [], 5, 0, 0, []
        sn0, ts0 = batch.sn + start, batch.ts + start
        mid = b'"},"observedTimeUnixNano":"%d",' % batch.ts
        if sev:
            mid += b'"severityNumber":%d,"severityText":%b,' % (sev[0], _dumps(sev[1]))
        # The attribute list, left open for the sequence number.
        attrs = b"".join(_dumps(kv) + b"," for kv in _js_kvs(const))
        mid += b'"attributes":[%b{"key":"%b","value":{"intValue":"' % (attrs, SN_KEY.encode())
        ts_tables, sn_tables = _digit_tables()
        # Five pieces per record: [open, leading digits of the time] [its last four digits, body open] [escaped
        # line] [constant part, leading digits of the sn] [its last four digits, close]. Times and sequence
        # numbers are consecutive: within a run where neither crosses a multiple of 10,000 the leading digits
        # are constant and the last four come from tables by slicing, so no number is formatted per record.
        parts: list[bytes] = [b""] * (5 * n)
        parts[2::5] = lines
        sizes: list[int] = []  # each record's bytes, from its line's length: nothing measured again
        i = 0
        while i < n:
            ts, sn = ts0 + i, sn0 + i
            end = min(n, i + _RUN - ts % _RUN, i + _RUN - sn % _RUN)
            m = end - i
            ts_lead, ts_tail = _digits(ts, m, ts_tables)
            sn_lead, sn_tail = _digits(sn, m, sn_tables)
            head, body = b'{"timeUnixNano":"' + ts_lead, mid + sn_lead
            parts[5 * i : 5 * end : 5] = [head] * m
            parts[5 * i + 1 : 5 * end : 5] = ts_tail
            parts[5 * i + 3 : 5 * end : 5] = [body] * m
            parts[5 * i + 4 : 5 * end : 5] = sn_tail
            fixed = len(head) + len(body)
            run: Iterable[int] = map(len, lines[i:end])
            # Under 10,000 a number has no leading digits and its tail varies in length: measure those.
            if ts_lead:
                fixed += len(ts_tail[0])
            else:
                run = map(add, run, map(len, ts_tail))
            if sn_lead:
                fixed += len(sn_tail[0])
            else:
                run = map(add, run, map(len, sn_tail))
            sizes += map(fixed.__add__, run)
            i = end
        return parts, 5, n, sum(sizes), sizes

    def record(self, rec: _Rec) -> bytes:
        obj: dict[str, Any] = {
            "timeUnixNano": str(rec.ts),
            "observedTimeUnixNano": str(rec.observed),
            "body": _js_any(rec.body),
            "attributes": _js_kvs(rec.attrs),
        }
        if rec.sev:
            obj["severityNumber"], obj["severityText"] = rec.sev
        if rec.event_name:
            obj["eventName"] = rec.event_name
        return _dumps(obj) + b","

    def metric(self, point: _Point) -> bytes:
        v = point.value
        dp: dict[str, Any] = {"timeUnixNano": str(point.ts)}
        if point.attrs:
            dp["attributes"] = _js_kvs(point.attrs)
        if isinstance(v, int):
            dp["asInt"] = str(v)
        else:
            dp["asDouble"] = _js_double(v)
        obj: dict[str, Any] = {"name": point.name, "metadata": _js_kvs(point.meta)}
        if point.unit:
            obj["unit"] = point.unit
        if point.description:
            obj["description"] = point.description
        if point.counter:
            obj["sum"] = {"dataPoints": [dp], "aggregationTemporality": CUMULATIVE, "isMonotonic": True}
        else:
            obj["gauge"] = {"dataPoints": [dp]}
        return _dumps(obj) + b","

    def body(self, signal: str, pieces: list[bytes], size: int) -> bytes:
        if not pieces:
            return self.heads[signal] + b"]}]}]}"
        last = pieces[-1]
        return b"".join([self.heads[signal], *pieces[:-1], last[:-1], b"]}]}]}"])  # without the last comma

    def render(self, signal: str, body: bytes) -> str:
        return body.decode("utf-8", "replace")


# --- the sink ----------------------------------------------------------------------------------------------


class OtlpSink(Sink):
    carries = ("log", "metric", "event")

    def __init__(self, options: OtlpOptions, session: str) -> None:
        self.o = options
        self.session = session
        self.request_bytes = options.request_bytes
        self.request_limit = options.request_bytes
        self.in_flight = options.requests_in_flight
        base = options.endpoint.rstrip("/")
        self.urls = {"logs": f"{base}/v1/logs", "metrics": f"{base}/v1/metrics"}
        self.host = urlsplit(options.endpoint).netloc
        self.server: dict[str, Any] = {}
        self._enc: _Encoding | None = None
        self._http: Any = None
        self._http_lock = threading.Lock()

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        self.server = dict(server_attributes)
        self._enc = None

    @property
    def enc(self) -> _Encoding:
        if self._enc is None:
            resource: list[tuple[str, Any]] = [("service.name", self.o.service_name)]
            for k, v in self.server.items():
                resource.append(("host.name" if k == "serverHost" else str(k), v))
            self._enc = _Proto(resource) if self.o.protocol == "protobuf" else _Json(resource)
        return self._enc

    # --- encoding ----------------------------------------------------------------------------------------
    def _own_attrs(self, attrs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """A batch's or event's attributes less the server attributes (those are the resource's)."""
        server = self.server
        return [(str(k), v) for k, v in attrs.items() if k not in server or server[k] != v]

    def _chunk(self, batch: Batch, start: int) -> _Chunk:
        n = max(batch.n_events, 1) - start
        first = batch.sn + start
        if batch.fmt == FMT_RAW:
            where = ("log.file.path" if batch.kind == "log" else "shipctl.source", batch.source)
            const = [where, *self._own_attrs(batch.attrs), (SESSION_KEY, self.session)]
            parts, stride, records, size, sizes = self.enc.lines(batch, start, const, severity(batch.attrs))
            return _LineChunk(batch, first, n, parts, stride, records, size, sizes)
        return _EventChunk(batch, first, n, self._entries(batch, first))

    def _entries(self, batch: Batch, first: int) -> list[tuple[int, bool, bytes]]:
        enc = self.enc
        samples: dict[int, list[Metric]] = {}
        events = [ev for ev in batch.events() if ev.sn >= first]
        if any(ev.kind == "metric" for ev in events):
            for m in metrics(batch):
                if m.sn >= first:
                    samples.setdefault(m.sn, []).append(m)
        out: list[tuple[int, bool, bytes]] = []
        for ev in events:
            session = [(SESSION_KEY, self.session), (SN_KEY, ev.sn)]
            if ev.kind == "metric" and ev.sn in samples:
                for m in samples[ev.sn]:
                    dims = [(str(k), v) for k, v in m.dims.items()]
                    value = m.value
                    if isinstance(value, str):  # no gauge holds text: the answer goes as a log record
                        rec = _Rec(int(m.ts), batch.ts, value, [("shipctl.metric", m.name), *dims, *session])
                        out.append((ev.sn, False, enc.record(rec)))
                        continue
                    if isinstance(value, bool):
                        value = int(value)
                    elif isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
                        value = float(value)
                    meta = [("tags", ",".join(m.tags))] if m.tags else []
                    point = _Point(
                        m.name, value, m.type == "counter", int(m.ts), dims, [*meta, *session], m.unit, m.description
                    )
                    out.append((ev.sn, True, enc.metric(point)))
                continue
            attrs = [(k, v) for k, v in self._own_attrs(ev.attrs) if not (k == "message" and v == ev.message)]
            where = ("log.file.path" if ev.kind == "log" else "shipctl.source", ev.source)
            name = str(ev.attrs.get("event", "")) if ev.kind == "event" else ""
            rec = _Rec(ev.ts, batch.ts, ev.message, [where, *attrs, *session], severity(ev.attrs), name)
            out.append((ev.sn, False, enc.record(rec)))
        return out

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        limit = max(self.request_limit - self.enc.overhead, 1)
        b = _Builder()
        for batch in batches:
            last = batch.sn + max(batch.n_events, 1) - 1
            if last <= acked_sn:  # every event already confirmed: only the queue row is left to delete
                b.spans.append(Span(batch.id, last, last, True))
                continue
            chunk = self._chunk(batch, max(0, acked_sn + 1 - batch.sn))
            while True:
                room = limit - b.size
                if chunk.size <= room:
                    b.add(chunk)
                    break
                j = chunk.fit(room)
                if j == 0 and b.events:
                    yield self._finish(b)
                    b = _Builder()
                    continue
                j = max(j, 1)  # one event bigger than a whole request goes alone; the collector may refuse it
                if j >= chunk.n:
                    b.add(chunk)
                    break
                left, chunk = chunk.split(j)
                b.add(left)
                yield self._finish(b)
                b = _Builder()
        if b.spans:
            yield self._finish(b)

    @staticmethod
    def _finish(b: _Builder) -> Request:
        return Request(b.spans, b.events, b.size, _Payload(b.logs, b.metrics, b.n_logs, b.n_metrics))

    def shrink(self) -> int:
        new = max(MIN_REQUEST_BYTES, self.request_limit // 2)
        if new >= self.request_limit:
            return 0
        self.request_limit = new
        return new

    def seal(self, request: Request) -> None:
        """Join and compress (in a worker thread: zlib and ISA-L release the GIL)."""
        p: _Payload = request.payload
        if p.log_body is not None or p.metric_body is not None:
            return
        metric_bytes = sum(map(len, p.metrics))  # a few; the log pieces add up to the rest of the request
        if p.n_logs:
            raw = self.enc.body("logs", p.logs, request.size - metric_bytes)
            p.log_size = len(raw)
            p.log_body = self._compress(raw)
        if p.n_metrics:
            raw = self.enc.body("metrics", p.metrics, metric_bytes)
            p.metric_size = len(raw)
            p.metric_body = self._compress(raw)
        p.logs, p.metrics = [], []  # only the wire forms are needed from here on

    def _compress(self, raw: bytes) -> bytes:
        if self.o.compression != "gzip":
            return raw
        try:
            from isal import igzip

            return igzip.compress(raw, 1)
        except ImportError:  # pragma: no cover - isal is a dependency; plain zlib if a build lacks it
            return gzip.compress(raw, 1)

    # --- sending -----------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {**self.o.headers, "Content-Type": self.enc.content_type, "User-Agent": f"shipctl/{__version__}"}
        if self.o.compression == "gzip":
            h["Content-Encoding"] = "gzip"
        return h

    def _client(self) -> Any:
        with self._http_lock:  # posts run in several threads at once (requests_in_flight): one session
            if self._http is None:
                import requests  # lazily: a run with nothing to send must not pay for it

                self._http = requests.Session()
            return self._http

    def post(self, request: Request) -> SendResult:
        self.seal(request)
        p: _Payload = request.payload
        results: list[SendResult] = []
        for signal, body, count, size in (
            ("logs", p.log_body, p.n_logs, p.log_size),
            ("metrics", p.metric_body, p.n_metrics, p.metric_size),
        ):
            if body is None:
                continue
            res = self._post(signal, body, count, size)
            if res.outcome in (RETRY, TOO_LARGE):
                # Logs already accepted in this request go again with it: the same session and sn, droppable.
                return res
            results.append(res)
        if not results:
            return SendResult(OK, "nothing to send", status="success")
        size = sum(r.request_bytes for r in results)
        message = "; ".join(r.message for r in results if r.message)
        if all(r.outcome == DISCARD for r in results):
            return SendResult(DISCARD, message, status="bad", request_bytes=size)
        partial = any(r.outcome == DISCARD or r.status == "partial" for r in results)
        return SendResult(OK, message, status="partial" if partial else "success", request_bytes=size)

    def _post(self, signal: str, body: bytes, count: int, size: int) -> SendResult:
        import requests

        url = self.urls[signal]
        connect, read = self.wait_limits(self.o.connect_timeout, self.o.read_timeout)  # within the run's budget
        try:
            resp = self._client().post(
                url,
                data=body,
                headers=self._headers(),
                timeout=(connect, read),
                allow_redirects=False,
                stream=True,
            )
            try:
                content = _bounded(resp)
            finally:
                resp.close()  # after a whole body, the connection goes back to the pool; else it is dropped
        except requests.exceptions.ConnectTimeout:
            return self._fail(f"no connection to {self.host} within {connect:g} s", "timeout")
        except requests.exceptions.ReadTimeout:
            return self._fail(f"no reply from {self.host} within {read:g} s", "timeout")
        except requests.exceptions.RequestException as exc:
            return self._fail(f"cannot reach {self.host}: {_reason(exc)}", "error")
        except Exception as exc:  # urllib3 errors while reading the reply body
            return self._fail(f"reply from {self.host} broken off: {type(exc).__name__}", "error")
        return self._reply(signal, resp.status_code, resp.headers, content, count, size)

    def _fail(self, message: str, status: str) -> SendResult:
        return SendResult(RETRY, self._scrub(message), status=status)

    def _scrub(self, text: str) -> str:
        """A reply may quote the request's headers (error pages, proxies): mask their values, or pieces of them."""
        for v in self.o.headers.values():
            if len(v) >= 4:
                text = mask_fragments(text.replace(v, mask(v)), v)
        return scrub(text)

    def _reply(
        self, signal: str, code: int, headers: Mapping[str, str], content: bytes, count: int, size: int
    ) -> SendResult:
        what = f"{count} log records" if signal == "logs" else f"{count} data points"
        ctype = headers.get("Content-Type", "")
        if 200 <= code < 300:
            return self._accepted(signal, ctype, content, count, size)
        reason = self._scrub(_reason_text(ctype, content)) or "no reason given"
        after = _retry_after(headers.get("Retry-After"))
        status = f"http {code}"
        if code in (400, 422):
            # The collector could not take this data (malformed, or refused by a processor): as is, it never will.
            return SendResult(DISCARD, f"collector refused {what} (HTTP {code}): {reason}", "bad", size)
        if code == 413:
            return SendResult(TOO_LARGE, f"HTTP 413: {reason}", status=status, request_bytes=size)
        if code in (401, 403):
            text = f"sink {self.sink_id!r}: the collector refused the credentials (HTTP {code}): {reason} (see headers)"
            return SendResult(RETRY, text, status=status, request_bytes=size)
        if code == 404:
            text = f"no OTLP receiver at {self.urls[signal]} (HTTP 404: {reason}); check the endpoint"
            return SendResult(RETRY, text, status=status, request_bytes=size)
        if code in RETRYABLE or code >= 500:
            busy = " (collector busy)" if code in (429, 503) else ""
            return SendResult(
                RETRY, f"HTTP {code}{busy}: {reason}", status=status, request_bytes=size, retry_after=after
            )
        # 405, 415, ...: the data is not the problem, the setup is (wrong URL, protocol the collector lacks).
        return SendResult(RETRY, f"HTTP {code} from {self.urls[signal]}: {reason}", status=status, request_bytes=size)

    def _accepted(self, signal: str, ctype: str, content: bytes, count: int, size: int) -> SendResult:
        """A 2xx: read ``partial_success``. An empty body is a full success (OTLP allows it)."""
        rejected, message, note = 0, "", ""
        if content.strip():
            try:
                if "json" in ctype or (self.o.protocol == "json" and "protobuf" not in ctype):
                    doc = json.loads(content)
                    part = (
                        (doc.get("partialSuccess") or doc.get("partial_success") or {}) if isinstance(doc, dict) else {}
                    )
                    key = "rejectedLogRecords" if signal == "logs" else "rejectedDataPoints"
                    rejected = int(part.get(key) or part.get(_snake(key)) or 0)
                    message = str(part.get("errorMessage") or part.get("error_message") or "")
                else:
                    pb = _proto()
                    if signal == "logs":
                        reply = pb.logs_service.ExportLogsServiceResponse.FromString(content)
                        rejected = reply.partial_success.rejected_log_records
                    else:
                        reply = pb.metrics_service.ExportMetricsServiceResponse.FromString(content)
                        rejected = reply.partial_success.rejected_data_points
                    message = reply.partial_success.error_message
            except Exception:  # not an OTLP reply: it said 2xx, which is all OTLP requires
                snippet = content[:80].decode("utf-8", "replace").strip().replace("\n", " ")
                note = f"the {signal} reply was not an OTLP response: {snippet!r}"
        message = self._scrub(message)[:300]
        if rejected:
            what = "log records" if signal == "logs" else "data points"
            text = f"collector rejected {rejected} of {count} {what}" + (f": {message}" if message else "")
            return SendResult(OK, text, status="partial", request_bytes=size)
        if message:
            note = f"collector warning about {signal}: {message}"
        return SendResult(OK, note, status="success", request_bytes=size)

    def show(self, request: Request) -> str:
        self.seal(request)
        p: _Payload = request.payload
        out = []
        span = f"sn {request.spans[0].first_sn}..{request.last_sn}" if request.spans else "no events"
        for signal, body, count, size in (
            ("logs", p.log_body, p.n_logs, p.log_size),
            ("metrics", p.metric_body, p.n_metrics, p.metric_size),
        ):
            if body is None:
                continue
            what = "log records" if signal == "logs" else "metrics"
            enc = (
                f"{self.o.protocol}, gzip: {len(body)} bytes on the wire"
                if self.o.compression == "gzip"
                else self.o.protocol
            )
            out.append(
                f"POST {self.urls[signal]} ({count} {what} from {request.events} events, {span}; {size} bytes, {enc})"
            )
            for k, v in self._headers().items():
                out.append(f"{k}: {mask(v) if is_secret_header(k) else v}")
            raw = gzip.decompress(body) if self.o.compression == "gzip" else body
            text = self.enc.render(signal, raw)
            if len(text) > SHOW_CHARS:
                text = text[:SHOW_CHARS] + f"\n... ({len(text) - SHOW_CHARS} more characters of this body not shown)"
            out.append(self._scrub(text))
        return "\n".join(out) if out else f"nothing to send for {request.events} events ({span})"

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


# --- replies -----------------------------------------------------------------------------------------------


def _bounded(resp: Any) -> bytes:
    """At most MAX_REPLY_BYTES of a reply body: an error page is not worth more."""
    got: list[bytes] = []
    size = 0
    for piece in resp.iter_content(16384):
        got.append(piece)
        size += len(piece)
        if size >= MAX_REPLY_BYTES:
            break
    return b"".join(got)[:MAX_REPLY_BYTES]


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


def _retry_after(raw: str | None) -> float | None:
    """Retry-After in seconds, or as an HTTP date; capped at an hour."""
    if not raw:
        return None
    try:
        return min(3600.0, max(0.0, float(raw)))
    except ValueError:
        pass
    try:
        import time
        from email.utils import parsedate_to_datetime  # an HTTP date: rare, and 15 ms to import

        return min(3600.0, max(0.0, parsedate_to_datetime(raw).timestamp() - time.time()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _reason_text(ctype: str, content: bytes) -> str:
    """The message of an OTLP error reply: a google.rpc.Status (protobuf or JSON), else the text itself."""
    if not content.strip():
        return ""
    if "protobuf" in ctype:
        message = _status_message(content)
        if message is not None:
            return message[:300]
    if "json" in ctype or content.lstrip()[:1] == b"{":
        try:
            doc = json.loads(content)
            if isinstance(doc, dict) and doc.get("message"):
                return str(doc["message"])[:300]
        except ValueError:
            pass
    return content[:300].decode("utf-8", "replace").strip().replace("\n", " ")


def _status_message(data: bytes) -> str | None:
    """Field 2 (message) of a serialised google.rpc.Status, or None if ``data`` is not one."""
    i, n, message = 0, len(data), ""
    try:
        while i < n:
            key, i = _read_varint(data, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _read_varint(data, i)
            elif wire == 2:
                length, i = _read_varint(data, i)
                if i + length > n:
                    return None
                if number == 2:
                    message = data[i : i + length].decode("utf-8", "replace")
                i += length
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                return None
    except IndexError:
        return None
    return message if i == n else None


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, without the pool and retry wrapping."""
    from shipctl.sinks.scalyr import _reason as innermost

    return innermost(exc)
