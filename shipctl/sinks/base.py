"""Destinations. A sink gets batches and says: delivered, retry later, or discarded by the receiver.
Sinks never touch the state file; the upload command does.

One interface, ``Sink``; ``BatchSink`` is a base class for sinks that send whole batches.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field
from typing import Any

from shipctl.model import KINDS, Batch
from shipctl.records import record

OK = "ok"
RETRY = "retry"
DISCARD = "discard"
TOO_LARGE = "too_large"  # the receiver refused the request for its size: send smaller ones


@record(frozen=True)
class SendResult:
    """A sink's answer for one request: what the receiver said, and what to do next."""

    outcome: str  # OK, RETRY, DISCARD or TOO_LARGE
    message: str = ""
    status: str = ""  # the receiver's status word, for status output
    request_bytes: int = 0  # uncompressed size of what was sent
    retry_after: float | None = None


@record(frozen=True)
class Span:
    """The events of one batch that a request carries: sequence numbers ``first_sn..last_sn``."""

    batch_id: int
    first_sn: int
    last_sn: int
    complete: bool  # the batch's last event is in this request: it can leave the queue once confirmed


@record
class Request:
    """One request, encoded and ready for ``post()``. ``payload`` belongs to the sink."""

    spans: list[Span]
    events: int
    size: int  # uncompressed bytes
    payload: Any = field(repr=False, default=None)

    @property
    def last_sn(self) -> int:
        return self.spans[-1].last_sn


def cut_to_deadline(connect: float, read: float, deadline: float | None) -> tuple[float, float]:
    """Connect and read timeouts cut to what is left until ``deadline`` (``time.monotonic()``; None: no cut)."""
    if deadline is None:
        return connect, read
    import time

    left = max(0.05, deadline - time.monotonic())
    return min(connect, left), min(read, left)


class Sink(abc.ABC):
    """The one interface the upload command drives. A sink cuts the batches routed to it into requests
    (``requests()``), splitting a batch that does not fit, and sends one at a time (``post()``); the upload
    command encodes the next request while the current one is in flight, and moves the sink's cursor once
    the request holding a batch's last event is confirmed. Sinks never touch the state file."""

    #: the kinds of event this sink can carry; a ``[[sinks]]`` entry without ``kinds`` takes all of them
    carries: tuple[str, ...] = KINDS
    #: the ``[[sinks]]`` id, set by the registry once built (for messages)
    sink_id: str = ""
    #: when the run's budget ends (``time.monotonic()``), set before each ``post()``; None: no limit. Every
    #: network wait of a post must end by then (``wait_limits``), so a silent receiver cannot outlast a run.
    deadline: float | None = None

    def wait_limits(self, connect: float, read: float) -> tuple[float, float]:
        """The connect and read timeouts, cut to what is left of the run's budget."""
        return cut_to_deadline(connect, read, self.deadline)

    #: requests posted before the reply to the first of them is in (``post()`` then runs in that many threads
    #: at once). Replies are booked in order, so the cursor only ever moves over a prefix of confirmed requests;
    #: a failure ends the run and what was posted after it goes again. 1: strictly one at a time.
    in_flight: int = 1

    #: how much queued payload to read from the state file at a time
    request_bytes: int
    #: requests encoded ahead of the one on the wire (the upload's memory is about this + 2 requests)
    ahead: int = 2
    #: the current cap on one request's uncompressed size (halved after TOO_LARGE, kept in the state file)
    request_limit: int

    def bind(self, server_attributes: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Called once before use with the config's server attributes (serverHost, ...)."""

    @abc.abstractmethod
    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        """Cut ``batches`` (oldest first) into requests; skip events with ``sn <= acked_sn`` (already
        confirmed by an earlier, partial request)."""

    def seal(self, request: Request) -> None:  # noqa: B027 - optional hook
        """Finish the request for the wire (compress it); runs in a worker thread, ahead of post()."""

    @abc.abstractmethod
    def post(self, request: Request) -> SendResult: ...

    @abc.abstractmethod
    def show(self, request: Request) -> str:
        """The request as it would be sent, for ``upload --dry-run``; secrets masked."""

    def shrink(self) -> int:
        """After TOO_LARGE: halve the request size limit; return the new limit, or 0 at the minimum."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """End of the run: release connections."""


class BatchSink(Sink):
    """A sink that takes whole batches, up to ``request_bytes`` of them per ``send()`` (file, stdout, and
    the metric sinks, whose requests are small next to a batch of log lines)."""

    request_bytes: int

    @abc.abstractmethod
    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        """Deliver ``batches``; events with a sequence number below ``first_sn`` were delivered already."""

    @abc.abstractmethod
    def describe(self, batches: list[Batch]) -> str:
        """What send() would do, for ``upload --dry-run``; secrets masked."""

    @property
    def request_limit(self) -> int:  # type: ignore[override]
        return self.request_bytes

    @request_limit.setter
    def request_limit(self, value: int) -> None:
        pass  # whole batches: a TOO_LARGE reply cannot be answered by cutting them smaller here

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        group: list[Batch] = []
        size = 0
        for b in batches:
            if group and size + b.n_bytes > self.request_bytes:
                yield self._request(group, size, acked_sn)
                group, size = [], 0
            group.append(b)
            size += b.n_bytes
            if self._full(size):
                # Full: yield it now rather than once the next batch is read and found not to fit, so that
                # one is not inflated and held while this request waits its turn (a batch of RSS per sink).
                yield self._request(group, size, acked_sn)
                group, size = [], 0
        if group:
            yield self._request(group, size, acked_sn)

    def _full(self, size: int) -> bool:
        """Whether a request of ``size`` bytes takes no more batches."""
        return size >= self.request_bytes

    @staticmethod
    def _request(group: list[Batch], size: int, acked_sn: int) -> Request:
        spans = [Span(b.id, max(b.sn, acked_sn + 1), b.sn + max(b.n_events, 1) - 1, True) for b in group]
        return Request(spans, sum(s.last_sn - s.first_sn + 1 for s in spans), size, group)

    def post(self, request: Request) -> SendResult:
        return self.send(request.payload, request.spans[0].first_sn)

    def show(self, request: Request) -> str:
        return self.describe(request.payload)
