from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shipctl.model import Batch

OK = "ok"
RETRY = "retry"
DISCARD = "discard"


@dataclass(frozen=True)
class SendResult:
    outcome: str  # OK, RETRY or DISCARD
    message: str = ""
    status: str = ""  # the receiver's status word, for status output
    request_bytes: int = 0
    retry_after: float | None = None


class Sink(Protocol):
    #: how much uncompressed payload to hand to one send() call
    request_bytes: int

    def send(self, batches: list[Batch]) -> SendResult: ...

    def describe(self, batches: list[Batch]) -> str:
        """What send() would do, for ``upload --dry-run``; secrets masked."""
        ...
