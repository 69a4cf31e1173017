"""The ``file`` and ``stdout`` sinks: one JSON object per event per line.

Each line carries the state file's session id (``si``) and the event's sequence number (``sn``). Before
appending, the file sink reads its own last line and skips events it already holds, so an upload killed
between writing and dequeuing does not write them twice.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as enc  # type: ignore[attr-defined]

from shipctl.model import FMT_RAW, Batch
from shipctl.schema import field, non_empty, positive
from shipctl.sinks.base import OK, RETRY, BatchSink, SendResult


@dataclass(frozen=True)
class FileSinkOptions:
    path: str = field(check=non_empty)
    fsync: bool = True
    request_bytes: int = field(8 << 20, check=positive)


@dataclass(frozen=True)
class StdoutSinkOptions:
    request_bytes: int = field(8 << 20, check=positive)


def encode_lines(batches: list[Batch], session: str) -> Iterator[tuple[int, str]]:
    """(sn, line) for every event; plain log batches are encoded without a dict per line."""
    for b in batches:
        if b.fmt == FMT_RAW:
            head = f'"kind":{enc(b.kind)},"source":{enc(b.source)},"message":'
            tail = f',"attrs":{json.dumps(b.attrs, separators=(",", ":"))},"si":"{session}","sn":'
            ts, sn = b.ts, b.sn
            for i, msg in enumerate(b.messages()):
                yield sn + i, f'{{"ts":{ts + i},{head}{enc(msg)}{tail}{sn + i}}}\n'
        else:
            for ev in b.events():
                obj = {
                    "ts": ev.ts,
                    "kind": ev.kind,
                    "source": ev.source,
                    "message": ev.message,
                    "attrs": ev.attrs,
                    "si": session,
                    "sn": ev.sn,
                }
                yield ev.sn, json.dumps(obj, separators=(",", ":")) + "\n"


class StdoutSink(BatchSink):
    def __init__(self, options: StdoutSinkOptions, session: str) -> None:
        self.request_bytes = options.request_bytes
        self.session = session

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        out = sys.stdout
        size = 0
        for sn, line in encode_lines(batches, self.session):
            if sn >= first_sn:
                out.write(line)
                size += len(line)
        out.flush()
        return SendResult(OK, status="success", request_bytes=size)

    def describe(self, batches: list[Batch]) -> str:
        return f"write {sum(b.n_events for b in batches)} events as JSON lines to standard output"


class FileSink(BatchSink):
    def __init__(self, options: FileSinkOptions, session: str) -> None:
        self.path = options.path
        self.fsync = options.fsync
        self.request_bytes = options.request_bytes
        self.session = session

    def _last_sn(self) -> int:
        """The highest sequence number of this session already in the file (0 if none)."""
        window = 65536
        while True:
            try:
                with open(self.path, "rb") as fh:
                    size = fh.seek(0, os.SEEK_END)
                    start = max(0, size - window)
                    fh.seek(start)
                    tail = fh.read().split(b"\n")
            except FileNotFoundError:
                return 0
            # The first piece is cut mid-line unless the window starts the file; widen it until a whole
            # line is in view (a line of escaped binary junk can be several hundred KB).
            lines = tail[1:] if start else tail
            if not start or any(line.strip() for line in lines[:-1]):
                break
            window *= 4
        for line in reversed(lines):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash mid-write; the one before it is whole
            if obj.get("si") == self.session:
                return int(obj.get("sn", 0))
            return 0
        return 0

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        try:
            directory = os.path.dirname(self.path) or "."
            os.makedirs(directory, exist_ok=True)
            self._drop_torn_tail()
            last = max(self._last_sn(), first_sn - 1)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            with os.fdopen(fd, "a", encoding="utf-8", newline="\n") as fh:
                size = 0
                for sn, line in encode_lines(batches, self.session):
                    if sn > last:
                        fh.write(line)
                        size += len(line)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        except OSError as exc:
            return SendResult(RETRY, f"{self.path}: {exc.strerror or exc}", status="error")
        return SendResult(OK, status="success", request_bytes=size)

    def _drop_torn_tail(self) -> None:
        """A crash mid-write can leave a last line without its "\n". Its events were never confirmed, so
        they are still queued and about to be written whole: cut the fragment off, leaving whole lines."""
        try:
            with open(self.path, "r+b") as fh:
                size = fh.seek(0, os.SEEK_END)
                end, pos = size, size
                while pos > 0:
                    step = min(pos, 65536)
                    pos -= step
                    fh.seek(pos)
                    cut = fh.read(step).rfind(b"\n")
                    if cut >= 0:
                        end = pos + cut + 1
                        break
                else:
                    end = 0
                if end < size:
                    fh.truncate(end)
        except FileNotFoundError:
            pass

    def describe(self, batches: list[Batch]) -> str:
        return f"append {sum(b.n_events for b in batches)} events as JSON lines to {self.path}"
