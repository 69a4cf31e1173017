"""The ``file`` and ``stdout`` sinks: one JSON object per event per line.

Each line carries the state file's session id (``si``) and the event's sequence number (``sn``). Before
appending, the file sink reads its own last line and skips events it already holds, so an upload killed
between writing and dequeuing does not write them twice.

A batch of plain lines is encoded a piece at a time with a few whole-piece ``bytes`` operations
(``encode_pieces``), byte for byte what the per-event ``encode_lines`` gives (tests/test_file_sink.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import field as dc_field
from json.encoder import encode_basestring_ascii as enc  # type: ignore[attr-defined]

from shipctl.model import FMT_RAW, Batch
from shipctl.records import record
from shipctl.schema import field, non_empty, positive
from shipctl.sinks import digits
from shipctl.sinks.base import OK, RETRY, BatchSink, Request, SendResult
from shipctl.sinks.byteclass import PRINTABLE_ASCII

# Log bytes per send() (one write + fsync for the file sink). The upload pipeline holds a few sends' worth of
# inflated batches at once (the one being written, one read ahead, the one being inflated): 8 MiB made the
# file sink's `run` peak at ~80 MiB RSS; 1 MiB (one batch of tail-once's 1 MiB reads) keeps it near 38 MiB for
# ~0.15 CPU-s and ~0.3 s of extra fsyncs per 100 MB of log (an fsync costs ~3 ms + ~0.7 ms/MB).
REQUEST_BYTES = 1 << 20


@record(frozen=True)
class FileSinkOptions:
    """Options of the ``file`` sink: JSON lines appended to a local file."""

    path: str = field(check=non_empty)
    fsync: bool = True
    request_bytes: int = field(REQUEST_BYTES, check=positive)


@record(frozen=True)
class StdoutSinkOptions:
    """Options of the ``stdout`` sink: JSON lines on standard output."""

    request_bytes: int = field(REQUEST_BYTES, check=positive)


def encode_lines(batches: list[Batch], session: str) -> Iterator[tuple[int, str]]:
    """(sn, line) for every event, one event at a time: the reference for ``encode_batch`` and the shape the
    kafka sink's message values share; plain log batches are encoded without a dict per line."""
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


# What the json module writes (ensure_ascii) for the other ASCII bytes: short forms, else \u00XX (DEL too).
_ESCAPE = {c: b"\\u%04x" % c for c in [*range(0x20), 0x7F]} | {8: b"\\b", 9: b"\\t", 12: b"\\f", 13: b"\\r"}


def _escaped(lines: bytes) -> tuple[bytes, bytes]:
    """``lines`` (each ending in ``\\n``) as JSON string contents, still one per line, and the quote to put
    around each (empty when they come quoted). Whole-piece ``replace`` calls for ASCII (the usual case: no
    Python work per line); anything else through the json module's escaper line by line, which turns
    non-ASCII into \\u escapes exactly as ``encode_lines`` does."""
    if lines.isascii():
        odd = PRINTABLE_ASCII.outside(lines)  # usually empty
        if b"\\" in lines:
            lines = lines.replace(b"\\", b"\\\\")
        if b'"' in lines:
            lines = lines.replace(b'"', b'\\"')
        for c in set(odd):
            lines = lines.replace(bytes((c,)), _ESCAPE[c])
        return lines, b'"'
    msgs = lines.decode("utf-8", "replace").split("\n")
    del msgs[-1]  # empty: the piece ends with its last line's newline
    return ("\n".join(map(enc, msgs)) + "\n").encode(), b""


# Plain-lines batches are encoded this much of the payload at a time (cut at a newline): the few passes over
# each piece then stay in the CPU cache (measured: ~35% less CPU than whole 1 MiB batches; 32 KiB against
# 64 KiB: 0.21 against 0.27 CPU-s to encode 116 MB of access log, 16 KiB 0.23), and the buffers of one
# piece (~0.25 MB in all) stay under glibc's mmap threshold and are reused from its heap, whatever the batch
# size (256 KiB pieces: +6 MiB peak RSS; 32 KiB: ~0.7 MiB less than 64 KiB).
PIECE = 32 << 10


def encode_pieces(b: Batch, first_sn: int, session: str) -> Iterator[bytes]:
    """The JSON lines of one batch's events from ``first_sn`` on, a piece at a time: byte for byte what
    ``encode_lines`` gives. A plain-lines batch costs no Python work per line: each piece is escaped as a
    whole, every newline becomes the end of one object and the start of the next (a ``%b`` each for the
    sequence number and the next time stamp), and one ``%`` fills in all the numbers at C speed (with the
    rest, half the CPU or less of a generator of f-strings, and a few writes per batch, not one per line)."""
    if b.fmt != FMT_RAW:
        yield "".join(line for sn, line in encode_lines([b], session) if sn >= first_sn).encode()
        return
    payload = b.payload
    end = payload.rfind(b"\n") + 1  # what follows the last newline is not a line (``Batch.messages`` drops it)
    start = max(0, first_sn - b.sn)
    # Past the first ``start`` lines (a batch resumed after a crash): where the rest begins.
    pos = min(end, len(payload) - len(payload.split(b"\n", start)[-1])) if start else 0
    attrs = json.dumps(b.attrs, separators=(",", ":"))
    head = f'"kind":{enc(b.kind)},"source":{enc(b.source)},"message":'.encode().replace(b"%", b"%%")
    tail = f',"attrs":{attrs},"si":"{session}","sn":'.encode().replace(b"%", b"%%")
    ts, sn = b.ts + start, b.sn + start
    while pos < end:
        cut = payload.rfind(b"\n", pos, pos + PIECE) + 1
        if cut <= pos:  # a line longer than a piece: the piece is that line
            cut = payload.find(b"\n", pos + PIECE) + 1
        lines, quote = _escaped(payload[pos:cut])
        if b"%" in lines:
            lines = lines.replace(b"%", b"%%")
        # Each newline but the last becomes the end of one object and the start of the next: the lines are
        # counted from how much that replace added (a count of them cost as much as the replace). The digits
        # come from the table unless a count crosses a multiple of 10,000 within the piece or is below 10,000
        # (the first sequence numbers of a state file: the table's entries keep their leading zeros).
        (t_high, t_low), (s_high, s_low) = divmod(ts, 10_000), divmod(sn, 10_000)
        t_lead, s_lead = b"%d" % t_high, b"%d" % s_high
        opening, closing = b'{"ts":' + t_lead + b"%b," + head + quote, quote + tail + s_lead + b"%b}\n"
        sep = closing + opening
        body = lines[:-1].replace(b"\n", sep)
        n = (len(body) - len(lines) + 1) // (len(sep) - 1) + 1
        numbers: list[object] = [0] * (2 * n)  # each line's time stamp, then its sequence number
        if t_low + n <= 10_000 and s_low + n <= 10_000 and t_high > 0 and s_high > 0:
            table = digits.table()
            numbers[0::2], numbers[1::2] = table[t_low : t_low + n], table[s_low : s_low + n]
        else:
            opening, closing = b'{"ts":%d,' + head + quote, quote + tail + b"%d}\n"
            body = lines[:-1].replace(b"\n", closing + opening)
            numbers[0::2], numbers[1::2] = range(ts, ts + n), range(sn, sn + n)
        yield b"".join((opening, body, closing)) % tuple(numbers)
        ts, sn, pos = ts + n, sn + n, cut


def encode_batch(b: Batch, first_sn: int, session: str) -> bytes:
    """``encode_pieces`` as one ``bytes``."""
    return b"".join(encode_pieces(b, first_sn, session))


class StdoutSink(BatchSink):
    ahead = 1  # encoded in post() (seal() does nothing): one request read ahead of the one being written

    def __init__(self, options: StdoutSinkOptions, session: str) -> None:
        self.request_bytes = options.request_bytes
        self.session = session

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        out = sys.stdout
        size = 0
        for b in batches:
            for data in encode_pieces(b, first_sn, self.session):
                out.write(data.decode())  # ASCII but for the session id: a copy, no decoding work
                size += len(data)
        out.flush()
        return SendResult(OK, status="success", request_bytes=size)

    def describe(self, batches: list[Batch]) -> str:
        return f"write {sum(b.n_events for b in batches)} events as JSON lines to standard output"


# Encoded pieces are written this much at a time (one writev). Each write lets go of the GIL, and in `run`
# tail-once's thread takes it then, while the delivery is what the run waits for: a write per ~85 KB piece
# handed it over ~30 times per 1 MiB request. Measured on a `run` of 116 MB: +5% MB/s, -4% CPU, same peak
# RSS (512 KiB: the same speed for +0.6 MiB).
WRITE_BYTES = 256 << 10


def _write_all(fd: int, pieces: list[bytes]) -> None:
    """Write ``pieces`` in order with one ``writev`` (a regular file may take less than asked: disk full
    mid-write; the rest is then written piece by piece until it takes it all or fails)."""
    done = os.writev(fd, pieces)
    if done == sum(map(len, pieces)):
        return
    for data in pieces:
        view = memoryview(data)[min(done, len(data)) :]
        done = max(0, done - len(data))
        while view:
            view = view[os.write(fd, view) :]


class _Written:
    """One request's writes, for the request after it in the same pass to wait for: ``done`` is set once
    they are over, and ``ok`` says whether all its lines are in the file (its fsync may still be running)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


@record
class _FileRequest(Request):
    """A file sink request, chained to the one cut before it in the same pass (None: the first)."""

    after: _Written | None = None
    written: _Written = dc_field(default_factory=_Written)


class FileSink(BatchSink):
    # Two posts at once, so that one request is encoded and written while the one before it waits for its
    # fsync (the disk's time, ~2 ms + ~0.7 ms per MB, outside the GIL: a quarter of the wall time of a `run`
    # when they took turns). The writes still take turns in the order the requests were cut (``_Written``),
    # and the cursor moves only once each request's own fsync has returned (the upload books replies in
    # order, none after a failure), so the file and the guarantees are as with one at a time. Requests are
    # encoded in post() (seal() does nothing); one is read ahead of the posts, so that a post that ends
    # finds the next request inflated and waiting (see ``_full`` for what that costs in memory), and a post
    # lets go of its batches once written, before its fsync. A third post in flight: +1% MB/s for +2 MiB
    # peak RSS (measured once writes were batched, ``WRITE_BYTES``).
    in_flight = 2
    ahead = 1

    def __init__(self, options: FileSinkOptions, session: str) -> None:
        self.path = options.path
        self.fsync = options.fsync
        self.request_bytes = options.request_bytes
        self.session = session

    def requests(self, batches: Iterable[Batch], acked_sn: int) -> Iterator[Request]:
        self._before: _Written | None = None  # each pass starts a new chain (the last one's posts are over)
        yield from super().requests(batches, acked_sn)

    def _full(self, size: int) -> bool:
        # tail-once's batches are just under ``batch_bytes`` (1 MiB, cut at a newline), so a request of one
        # was never full: the next batch was read and inflated to find that it did not fit, and held while
        # this one waited its turn (1 MiB of RSS). Within 1/16 of the limit (more than a longest line) a
        # request is full: a small batch after it goes in the next one.
        return size >= self.request_bytes - (self.request_bytes >> 4)

    def _request(self, group: list[Batch], size: int, acked_sn: int) -> Request:  # type: ignore[override]
        req = BatchSink._request(group, size, acked_sn)
        out = _FileRequest(req.spans, req.events, req.size, req.payload, after=self._before)
        self._before = out.written
        return out

    def post(self, request: Request) -> SendResult:
        if not isinstance(request, _FileRequest):
            return super().post(request)
        try:
            if request.after is not None:
                request.after.done.wait()
                if not request.after.ok:
                    # Writing this one now would leave a gap in the file that a retry, which skips what the
                    # file already holds, could not see.
                    return SendResult(RETRY, f"{self.path}: not written: the request before it failed", status="error")
            return self.send(request.payload, request.spans[0].first_sn, written=request)
        finally:
            request.written.done.set()  # whatever happened: the next one never waits for ever

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

    def send(self, batches: list[Batch], first_sn: int, written: _FileRequest | None = None) -> SendResult:
        """Append ``batches`` from ``first_sn`` on and fsync them. ``written`` (from ``post``): told as soon
        as the lines are in the file, before the fsync, and its batches are let go then."""
        try:
            directory = os.path.dirname(self.path) or "."
            os.makedirs(directory, exist_ok=True)
            self._drop_torn_tail()
            last = max(self._last_sn(), first_sn - 1)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = 0
                # Pieces are written a few at a time (``WRITE_BYTES``), straight from the encoded bytes. If the
                # process dies mid-write, the next send cuts the torn last line off (``_drop_torn_tail``) and
                # writes the rest again from the highest whole line's sequence number.
                held: list[bytes] = []
                held_bytes = 0
                for b in batches:
                    for data in encode_pieces(b, last + 1, self.session):
                        held.append(data)
                        held_bytes += len(data)
                        size += len(data)
                        if held_bytes >= WRITE_BYTES:
                            _write_all(fd, held)
                            held.clear()
                            held_bytes = 0
                if held:
                    _write_all(fd, held)
                del held
                if written is not None:
                    written.payload = None  # no longer needed: a request waiting for the disk holds no batches
                    written.written.ok = True
                    written.written.done.set()
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
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
