"""The ``influxdb`` sink: typed metric samples as InfluxDB line protocol.

InfluxDB 1.x: ``POST {url}/write?db=DB&precision=ns``; 2.x/3.x (``org`` and ``bucket`` set):
``POST {url}/api/v2/write?org=O&bucket=B&precision=ns`` with ``Authorization: Token``. The measurement is the
metric name, tags are the server attributes and the sample's dimensions, the value is a field of its own
type (``value``, or ``text`` for a text answer, since a field keeps one type per measurement; a counter's
rate goes alongside as ``rate``), extra fields are fields, the timestamp is the
sample's own in nanoseconds. A ``partial write`` (some points refused, e.g. a field type conflict) keeps the
rest written and says which were dropped; a request InfluxDB cannot parse at all is discarded with its reason.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from shipctl.model import Batch, metrics
from shipctl.records import record
from shipctl.schema import field, http_url, one_of, positive
from shipctl.sinks.base import DISCARD, OK, RETRY, BatchSink, SendResult
from shipctl.sinks.http import Poster, Reply, check_header_values, tag_text
from shipctl.sinks.lineproto import encode_point


@record(frozen=True)
class InfluxOptions:
    """Options of the ``influxdb`` sink: metrics in line protocol to InfluxDB (1.x, or 2.x/3.x with org and bucket)."""

    url: str = field("http://127.0.0.1:8086", check=http_url)
    database: str = "shipctl"  # 1.x
    org: str = ""  # 2.x / 3.x: org and bucket select /api/v2/write
    bucket: str = ""
    token: str = field("", secret=True)
    username: str = ""  # 1.x authentication
    password: str = field("", secret=True)
    retention_policy: str = ""
    create_database: bool = True  # 1.x: create the database on "database not found"
    compression: str = field("gzip", check=one_of("gzip", "none"))
    connect_timeout: float = field(10.0, check=positive)
    read_timeout: float = field(30.0, check=positive)
    request_bytes: int = field(1 << 20, check=positive)

    def __post_init__(self) -> None:
        check_header_values({"token": self.token, "username": self.username, "password": self.password})


class InfluxSink(BatchSink):
    carries = ("metric",)

    def __init__(self, options: InfluxOptions, session: str) -> None:
        self.o = options
        self.session = session
        self.request_bytes = options.request_bytes
        self.poster = Poster(options.connect_timeout, options.read_timeout)
        self.tags: dict[str, str] = {}
        base = options.url.rstrip("/")
        if options.org or options.bucket:
            self.write_url = f"{base}/api/v2/write?" + urlencode(
                {"org": options.org, "bucket": options.bucket, "precision": "ns"}
            )
        else:
            params = {"db": options.database, "precision": "ns"}
            if options.retention_policy:
                params["rp"] = options.retention_policy
            self.write_url = f"{base}/write?" + urlencode(params)
        self.base = base

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        self.tags = {str(k): tag_text(v) for k, v in server_attributes.items()}

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "text/plain; charset=utf-8"}
        if self.o.compression == "gzip":
            h["Content-Encoding"] = "gzip"
        if self.o.token:
            h["Authorization"] = f"Token {self.o.token}"
        return h

    def _auth(self) -> Any:
        return (self.o.username, self.o.password) if self.o.username else None

    def encode(self, batches: list[Batch], first_sn: int) -> tuple[bytes, int, list[str]]:
        """Line protocol for the samples from ``first_sn`` on; returns (body, points, problems)."""
        lines: list[bytes] = []
        problems: list[str] = []
        for b in batches:
            for m in metrics(b):
                if m.sn < first_sn:
                    continue
                fields: dict[str, Any] = {}
                for k, v in m.fields.items():
                    if isinstance(v, int | float | str | bool):
                        fields[str(k)] = v
                if isinstance(m.value, float) and not math.isfinite(m.value):
                    problems.append(f"{m.name}: {m.value} cannot be stored in InfluxDB")
                    continue
                # A field keeps one type per measurement in InfluxDB: text answers get a field of their own.
                fields["text" if isinstance(m.value, str) else "value"] = m.value
                if m.rate is not None and math.isfinite(m.rate):
                    fields["rate"] = float(m.rate)
                tags = {**self.tags, **{str(k): tag_text(v) for k, v in m.dims.items()}}
                if m.tags:  # what the metric is (CoScale "NETWORK"): one value per metric, so no new series
                    tags.setdefault("tags", ",".join(m.tags))
                try:
                    lines.append(encode_point(m.name, tags, fields, int(m.ts)))
                except (ValueError, TypeError) as exc:
                    problems.append(f"{m.name}: {exc}")
        return b"\n".join(lines) + (b"\n" if lines else b""), len(lines), problems

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        body, points, problems = self.encode(batches, first_sn)
        note = f"; {len(problems)} samples not writable: {'; '.join(problems[:3])}" if problems else ""
        if not points:
            return SendResult(OK, f"no points to write{note}", status="success")
        wire = gzip.compress(body, 1) if self.o.compression == "gzip" else body
        reply = self.poster.post(self.write_url, wire, self._headers(), self._auth(), self.deadline)
        if isinstance(reply, SendResult):
            return reply
        if reply.code == 404 and "database not found" in reply.text and self.o.create_database:
            created = self._create_database()
            if isinstance(created, SendResult):
                return created
            reply = self.poster.post(self.write_url, wire, self._headers(), self._auth(), self.deadline)
            if isinstance(reply, SendResult):
                return reply
        return self._outcome(reply, len(body), points, note)

    def _create_database(self) -> Reply | SendResult:
        q = f'CREATE DATABASE "{self.o.database}"'
        url = f"{self.base}/query?q={quote(q)}"
        reply = self.poster.post(url, b"", {}, self._auth(), self.deadline)
        if isinstance(reply, Reply) and reply.code >= 300:
            return self.poster.failed(reply, 0, self.sink_id)
        return reply

    def _outcome(self, reply: Reply, size: int, points: int, note: str) -> SendResult:
        if 200 <= reply.code < 300:
            return SendResult(OK, note.lstrip("; "), status="success", request_bytes=size)
        if reply.code == 400 and "partial write" in reply.text:
            # InfluxDB kept the points it could write; the message names what it dropped and why.
            return SendResult(OK, f"partial write of {points} points: {reply.text}{note}", "partial", size)
        if reply.code in (400, 422):  # (413 is a proxy's size limit: backing off is the safer answer)
            return SendResult(
                DISCARD, f"InfluxDB refused {points} points (HTTP {reply.code}): {reply.text}", "bad", size
            )
        if reply.code == 404:
            return SendResult(RETRY, f"HTTP 404: {reply.text}", status="http 404", request_bytes=size)
        return self.poster.failed(reply, size, self.sink_id)

    def describe(self, batches: list[Batch]) -> str:
        body, points, _ = self.encode(batches, 0)
        shown = body[:65536].decode("utf-8", "replace")
        return f"POST {self.write_url} ({points} points)\n{shown}"

    def close(self) -> None:
        self.poster.close()
