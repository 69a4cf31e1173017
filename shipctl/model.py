"""Plain data passed between layers: events, batches. No I/O here."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import field
from typing import Any

from shipctl.records import record

# Batch payload formats. "raw": events are the lines of the payload, each ending in "\n" (the fast path
# for plain log lines, stored exactly as read). "json": a JSON array of {"m": message, "a": attrs?,
# "t": ts_ns?, "k": kind?} objects, for grouped/sampled lines and monitor output.
FMT_RAW = "raw"
FMT_JSON = "json"
KINDS = ("log", "metric", "event")


@record(frozen=True)
class Event:
    """One event as a sink sees it: a log line, or a metric sample."""

    ts: int
    kind: str
    source: str
    message: str
    attrs: dict[str, Any]
    sn: int = 0


@record
class PendingBatch:
    """A batch about to be queued."""

    kind: str
    source: str
    ts: int
    attrs: dict[str, Any]
    fmt: str
    payload: bytes | bytearray | memoryview  # a view into the follower's read buffer, valid until queued
    n_events: int
    log_id: str | None = None


@record
class Batch:
    """A queued batch as read back for upload."""

    id: int
    kind: str
    source: str
    log_id: str | None
    ts: int
    attrs: dict[str, Any]
    fmt: str
    n_events: int
    n_bytes: int
    sn: int
    payload: bytes = field(repr=False)

    def messages(self) -> list[str]:
        if self.fmt == FMT_RAW:
            return self.payload.decode("utf-8", "replace").split("\n")[:-1]
        return [e.get("m", "") for e in json.loads(self.payload)]

    def events(self) -> Iterator[Event]:
        """Each event with its timestamp (batch time + index keeps order unique) and sequence number."""
        if self.fmt == FMT_RAW:
            for i, msg in enumerate(self.messages()):
                yield Event(self.ts + i, self.kind, self.source, msg, self.attrs, self.sn + i)
            return
        for i, e in enumerate(json.loads(self.payload)):
            attrs = {**self.attrs, **e["a"]} if e.get("a") else self.attrs
            yield Event(e.get("t", self.ts + i), e.get("k", self.kind), self.source, e.get("m", ""), attrs, self.sn + i)


_z: Any = None


def _codec() -> Any:
    """ISA-L writes and reads the same zlib format as the stdlib, ~3.5x faster to compress at level 1 (865
    against 231 MB/s on 1 MiB of access log, ratio 6.2 against 5.7) and ~1.6x faster to inflate: queueing
    compressed is then faster than queueing raw, as SQLite writes ~6x fewer bytes (benchmarks/README.md).
    Imported on first use: a run with nothing to queue or send does not load it (+2 MiB)."""
    global _z
    if _z is None:
        try:
            from isal import isal_zlib

            _z = isal_zlib
        except ImportError:  # a dependency, but the stdlib reads and writes the same rows
            _z = zlib
    return _z


Buffer = bytes | bytearray | memoryview


def encode_payload(payload: Buffer, compress: bool) -> tuple[str, Buffer]:
    if compress:
        return "zlib", _codec().compress(payload, 1)
    return "none", payload


class Undecodable(ValueError):
    """A queued batch whose stored form cannot be turned back into its events (a damaged compressed blob,
    attributes that are not a JSON object, a size that does not match its header). The message says why."""


def decode_payload(codec: str, blob: bytes, size: int = 0) -> bytes:
    """Rows of either codec stay readable whatever ``compress_queue`` is now (older rows are "none").
    Raises ``Undecodable`` for a blob that does not inflate (zlib's checksum catches a flipped bit)."""
    if codec == "zlib":
        z = _codec()
        try:
            # The size it had when queued: one output buffer of the right size instead of a growing one (which
            # left the heap fragmented: +12 MiB peak RSS). Only a hint: capped, in case the header is damaged.
            return z.decompress(blob, bufsize=min(size, 64 << 20)) if size > 0 else z.decompress(blob)
        except (z.error, zlib.error, TypeError, ValueError) as exc:  # isal's error is not a zlib.error
            raise Undecodable(f"its payload does not inflate ({type(exc).__name__}: {exc})") from None
    if codec != "none":  # a damaged header: the blob would be handed on as if it were plain lines
        raise Undecodable(f"unknown payload codec {codec!r}")
    return blob


@record(frozen=True)
class Metric:
    """A typed metric sample as the metric sinks see it."""

    name: str
    value: int | float | bool | str
    type: str  # gauge, counter, text
    dims: dict[str, Any]  # identify the series
    fields: dict[str, Any]  # shown alongside, not part of the series
    ts: int  # ns
    sn: int
    rate: float | None = None
    unit: str = ""  # as the source gave it ("b/s", "%"), for sinks with a place for it (OTLP)
    description: str = ""  # help text
    tags: tuple[str, ...] = ()  # labels that say what the metric is (CoScale "tags"), not which series


_CORE = frozenset(("monitor", "metric", "value", "metric_type", "difference", "rate"))


def metrics(batch: Batch) -> Iterator[Metric]:
    """The metric samples of a monitor batch. Batches queued before events were typed (release 0.1) carry
    only the Scalyr-shaped attrs: there every attribute but the core ones counts as a dimension."""
    if batch.fmt == FMT_RAW:
        return
    for i, e in enumerate(json.loads(batch.payload)):
        if e.get("k", batch.kind) != "metric":
            continue
        ts, sn = e.get("t") or batch.ts + i, batch.sn + i
        for x in e.get("xs") or ():  # a Panoptes metrics group: several samples in one event
            yield Metric(x["n"], x["v"], x.get("t", "gauge"), x.get("d") or {}, {}, x.get("ts") or ts, sn)
        x = e.get("x")
        if x is not None:
            # "u" unit, "h" description (help), "tg" tags: absent when the source gave none.
            yield Metric(
                x["n"], x["v"], x.get("t", "gauge"), x.get("d") or {}, x.get("f") or {}, ts, sn, x.get("r"),
                x.get("u") or "", x.get("h") or "", tuple(x.get("tg") or ()),
            )  # fmt: skip
            continue
        a = e.get("a") or {}
        if "metric" in a and "value" in a:
            dims = {k: v for k, v in a.items() if k not in _CORE}
            kind = a.get("metric_type", "gauge")
            yield Metric(a["metric"], a["value"], kind, dims, {}, ts, sn, a.get("rate"))
