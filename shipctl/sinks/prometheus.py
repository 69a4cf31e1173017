"""The ``prometheus_remote_write`` sink: typed metric samples as a remote-write 1.0 request.

Protobuf ``WriteRequest``, snappy-compressed (``cramjam``, the ``prometheus`` extra). Each sample is one
series: ``__name__`` from the metric name, labels from the server attributes and the sample's dimensions,
both sanitised to Prometheus' rules; a series' samples go in time order; counters go as their cumulative
value (Prometheus computes rates itself), booleans as 0/1. Text values have no place in a time series: they
are skipped and counted in the reply message. A 400 (out of order, duplicate, too old) discards the request
with the receiver's reason; 429 and 5xx back off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any

from shipctl.model import Batch, metrics
from shipctl.records import record
from shipctl.schema import field, http_url, positive
from shipctl.sinks.base import DISCARD, OK, BatchSink, SendResult
from shipctl.sinks.http import Poster, check_header_values, tag_text
from shipctl.sinks.promwire import encode_write_request, sanitize_label_name, sanitize_metric_name, snappy_compress

SeriesKey = tuple[tuple[str, str], ...]  # a series' sorted labels
MAX_SPLIT_POSTS = 256  # requests spent finding the refused samples of one refused request


@record(frozen=True)
class RemoteWriteOptions:
    """Options of the ``prometheus_remote_write`` sink: metrics to a remote-write endpoint."""

    url: str = field("http://127.0.0.1:9090/api/v1/write", check=http_url)
    username: str = ""  # basic auth
    password: str = field("", secret=True)
    bearer_token: str = field("", secret=True)
    headers: Mapping[str, str] = dc_field(default_factory=lambda: MappingProxyType({}))
    connect_timeout: float = field(10.0, check=positive)
    read_timeout: float = field(30.0, check=positive)
    request_bytes: int = field(1 << 20, check=positive)

    def __post_init__(self) -> None:
        check_header_values(
            {f"headers.{k}": v for k, v in self.headers.items()}
            | {"username": self.username, "password": self.password, "bearer_token": self.bearer_token}
        )


class RemoteWriteSink(BatchSink):
    carries = ("metric",)

    def __init__(self, options: RemoteWriteOptions, session: str) -> None:
        self.o = options
        self.session = session
        self.request_bytes = options.request_bytes
        self.poster = Poster(options.connect_timeout, options.read_timeout)
        self.labels: dict[str, str] = {}
        self._posts_left = MAX_SPLIT_POSTS

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        self.labels = {sanitize_label_name(str(k)): tag_text(v) for k, v in server_attributes.items()}

    def series(
        self, batches: list[Batch], first_sn: int
    ) -> tuple[dict[tuple[tuple[str, str], ...], list[tuple[int, float]]], int]:
        """The samples from ``first_sn`` on, by series; and how many text samples were skipped."""
        series: dict[SeriesKey, list[tuple[int, float]]] = {}
        skipped = 0
        for b in batches:
            for m in metrics(b):
                if m.sn < first_sn:
                    continue
                value = m.value
                if isinstance(value, str):
                    skipped += 1
                    continue
                value = float(value)
                labels = dict(self.labels)
                for k, v in m.dims.items():
                    labels[sanitize_label_name(str(k))] = tag_text(v)
                labels["__name__"] = sanitize_metric_name(m.name)
                key = tuple(sorted(labels.items()))
                series.setdefault(key, []).append((int(m.ts) // 1_000_000, value))
        return series, skipped

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        series, skipped = self.series(batches, first_sn)
        note = f"{skipped} text samples not sent (Prometheus stores numbers only)" if skipped else ""
        if not series:
            return SendResult(OK, note, status="success")
        items = list(series.items())
        body = encode_write_request((dict(k), v) for k, v in items)
        res = self._post(body, sum(map(len, series.values())), note)
        if res.outcome != DISCARD or sum(len(v) for _, v in items) == 1:
            return res
        # Prometheus refuses a whole request for one out-of-order, duplicate or too-old sample: halve what was
        # refused until the refused samples stand alone, so only they are discarded.
        self._posts_left = MAX_SPLIT_POSTS
        refused: list[str] = []
        kept, retry = self._halves(items, refused)
        if retry is not None:
            return retry  # the receiver went away meanwhile: all again later (it takes an identical sample twice)
        total = sum(len(v) for _, v in items)
        message = f"{total - kept} of {total} samples refused: {refused[0]}" + (f"; {note}" if note else "")
        return SendResult(OK if kept else DISCARD, message, "partial" if kept else "bad", len(body))

    def _halves(
        self, items: list[tuple[SeriesKey, list[tuple[int, float]]]], refused: list[str]
    ) -> tuple[int, SendResult | None]:
        """Send ``items`` in two halves (by series, or by samples within one series); returns the samples
        kept, or a non-DISCARD result that ends it."""
        if len(items) > 1:
            mid = len(items) // 2
            parts = [items[:mid], items[mid:]]
        else:
            (key, samples), mid = items[0], len(items[0][1]) // 2
            parts = [[(key, samples[:mid])], [(key, samples[mid:])]]
        kept = 0
        for part in parts:
            n = sum(len(v) for _, v in part)
            if self._posts_left <= 0:
                refused.append(f"{n} samples not tried one by one (over {MAX_SPLIT_POSTS} requests)")
                continue
            self._posts_left -= 1
            res = self._post(encode_write_request((dict(k), v) for k, v in part), n, "")
            if res.outcome == OK:
                kept += n
            elif res.outcome != DISCARD:
                return kept, res
            elif n == 1:
                refused.append(res.message)
            else:
                more, retry = self._halves(part, refused)
                kept += more
                if retry is not None:
                    return kept, retry
        return kept, None

    def _post(self, body: bytes, samples: int, note: str) -> SendResult:
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            **self.o.headers,
        }
        if self.o.bearer_token:
            headers["Authorization"] = f"Bearer {self.o.bearer_token}"
        auth = (self.o.username, self.o.password) if self.o.username else None
        reply = self.poster.post(self.o.url, snappy_compress(body), headers, auth, self.deadline)
        if isinstance(reply, SendResult):
            return reply
        if 200 <= reply.code < 300:
            return SendResult(OK, note, status="success", request_bytes=len(body))
        if reply.code == 400:
            # Out of order, duplicate or out-of-bounds samples: sending them again would fail the same way.
            return SendResult(DISCARD, f"Prometheus refused {samples} samples: {reply.text}", "bad", len(body))
        return self.poster.failed(reply, len(body), self.sink_id)

    def describe(self, batches: list[Batch]) -> str:
        series, skipped = self.series(batches, 0)
        body = encode_write_request((dict(k), v) for k, v in series.items())
        samples = sum(map(len, series.values()))
        return f"POST {self.o.url}: {samples} samples ({len(body)} bytes of protobuf before snappy), {skipped} skipped"

    def close(self) -> None:
        self.poster.close()
