"""Destinations. A sink gets batches and says: delivered, retry later, or discarded by the receiver.
Sinks never touch the state file; the upload command does.

Two shapes of sink:

- a plain ``Sink`` takes a list of whole batches per ``send()`` (the file and stdout sinks);
- a ``RequestSink`` cuts the queued batches into requests itself (``requests()``), splitting a batch that
  does not fit, and sends one at a time (``post()``). The upload command then encodes the next request
  while the current one is in flight, and deletes a batch once the request holding its last event is
  confirmed. ``as_request_sink()`` adapts a plain sink, so the upload command has one path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shipctl.model import Batch

OK = "ok"
RETRY = "retry"
DISCARD = "discard"
TOO_LARGE = "too_large"  # the receiver refused the request for its size: send smaller ones


@dataclass(frozen=True)
class SendResult:
    outcome: str  # OK, RETRY, DISCARD or TOO_LARGE
    message: str = ""
    status: str = ""  # the receiver's status word, for status output
    request_bytes: int = 0  # uncompressed size of what was sent
    retry_after: float | None = None


@dataclass(frozen=True)
class Span:
    """The events of one batch that a request carries: sequence numbers ``first_sn..last_sn``."""

    batch_id: int
    first_sn: int
    last_sn: int
    complete: bool  # the batch's last event is in this request: it can leave the queue once confirmed


@dataclass
class Request:
    """One request, encoded and ready for ``post()``. ``payload`` belongs to the sink."""

    spans: list[Span]
    events: int
    size: int  # uncompressed bytes
    payload: Any = field(repr=False, default=None)

    @property
    def last_sn(self) -> int:
        return self.spans[-1].last_sn


class Sink(Protocol):
    #: how much uncompressed payload to hand to one send() call
    request_bytes: int

    def send(self, batches: list[Batch]) -> SendResult: ...

    def describe(self, batches: list[Batch]) -> str:
        """What send() would do, for ``upload --dry-run``; secrets masked."""
        ...


@runtime_checkable
class RequestSink(Protocol):
    #: how much queued payload to read from the state file at a time
    request_bytes: int
    #: the current cap on one request's uncompressed size (halved after TOO_LARGE, kept in the state file)
    request_limit: int

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        """Called once before use with the config's server attributes (serverHost, ...)."""
        ...

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        """Cut ``batches`` (oldest first) into requests; skip events with ``sn <= acked_sn`` (already
        confirmed by an earlier, partial request)."""
        ...

    def seal(self, request: Request) -> None:
        """Finish the request for the wire (compress it); runs in a worker thread, ahead of post()."""
        ...

    def post(self, request: Request) -> SendResult: ...

    def show(self, request: Request) -> str:
        """The request as it would be sent, for ``upload --dry-run``; secrets masked."""
        ...

    def shrink(self) -> int:
        """After TOO_LARGE: halve the request size limit; return the new limit, or 0 at the minimum."""
        ...

    def close(self) -> None:
        """End of the run: release connections."""
        ...


class _Adapter:
    """A plain Sink seen as a RequestSink: whole batches, up to ``request_bytes`` each send()."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.request_bytes = sink.request_bytes
        self.request_limit = sink.request_bytes

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        pass

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        group: list[Batch] = []
        size = 0
        for b in batches:
            if group and size + b.n_bytes > self.request_bytes:
                yield self._request(group, size)
                group, size = [], 0
            group.append(b)
            size += b.n_bytes
        if group:
            yield self._request(group, size)

    @staticmethod
    def _request(group: list[Batch], size: int) -> Request:
        spans = [Span(b.id, b.sn, b.sn + max(b.n_events, 1) - 1, True) for b in group]
        return Request(spans, sum(b.n_events for b in group), size, group)

    def seal(self, request: Request) -> None:
        pass

    def post(self, request: Request) -> SendResult:
        return self.sink.send(request.payload)

    def show(self, request: Request) -> str:
        return self.sink.describe(request.payload)

    def shrink(self) -> int:
        return 0

    def close(self) -> None:
        pass


def as_request_sink(sink: Any) -> RequestSink:
    if isinstance(sink, RequestSink):
        return sink
    return _Adapter(sink)  # type: ignore[return-value]
