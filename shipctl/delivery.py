"""Delivery (``upload``, and ``run``'s upload thread): the journal to every configured sink, each through its
own cursor.

Each sink runs in its own thread with its own connection and its own lock (``upload.<id>``), so a sink that
is down or slow never delays another, and two uploads of different sinks may run at once. Within a sink, one
request is in flight at a time while the next is encoded, unless the sink allows more (``Sink.in_flight``):
replies are then still booked in the order the requests were cut, so the cursor only moves over a prefix of
confirmed requests. The cursor moves once the request holding a batch's last event is confirmed; a batch
leaves the journal once every sink that takes it is past it. Failures back off per sink across runs (state
file), so a timer tick during backoff is a no-op for that sink.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import field
from typing import Any

from shipctl import malloc, plugins
from shipctl.config import Config, SinkConfig
from shipctl.errors import ConfigError, LockHeld, ShipctlError
from shipctl.humanize import plural, size
from shipctl.records import record
from shipctl.runtime import Budget, Context, log
from shipctl.sinks.base import DISCARD, OK, RETRY, TOO_LARGE, Request, SendResult, Sink
from shipctl.state import State, lock
from shipctl.state import upload as upstate
from shipctl.state.queue import (
    Damaged,
    Header,
    JournalReader,
    Trimmed,
    first_report,
    pending,
    releasable,
    release,
    stored_bytes,
    trim,
)

READ_CACHE_KIB = 512  # SQLite page cache of a sink's connection
# In ``run``: how long a sink waits for new batches before it looks again, doubling from the first to the
# last while it finds nothing. A sink that starts before tail-once's first commit (~10 ms later) or
# that caught up looks again soon: a fixed 50 ms left the file sink's delivery idle for the first ~40 ms of
# a backlog it then trailed to the end. A pass that finds nothing costs ~0.02 ms (measured).
FIRST_POLL_SECONDS = 0.004
POLL_SECONDS = 0.05
# A progress report: (sink id, events its cursor passed in this run, events queued for it in all).
Sent = Callable[[str, int, int], None]


@record
class UploadResult:
    """What one sink's delivery did in one run, for the summary and ``status``."""

    sink: str = ""
    batches: int = 0
    events: int = 0
    bytes: int = 0
    discarded_batches: int = 0
    discarded_events: int = 0
    dropped_batches: int = 0  # oldest batches dropped because the queue exceeded agent.max_queue_bytes
    dropped_events: int = 0
    # Batches that could not be decoded, which this sink's cursor moved past (their events are lost for it),
    # and the notices this run was the first to write about such batches (one per batch, whichever sink).
    damaged_batches: int = 0
    damaged_events: int = 0
    damaged: list[str] = field(default_factory=list)
    requests: int = 0
    request_limit: int | None = None  # set when a requestTooLarge reply made requests smaller this run
    remaining_batches: int = 0  # what this sink has still to deliver
    backing_off_until: float | None = None  # set when the run did nothing because of backoff
    failed: str | None = None  # the last failure's message
    stopped: str | None = None
    skipped: str | None = None  # another upload of this sink holds its lock
    dry_run: list[str] = field(default_factory=list)
    elapsed: float = 0.0


@record
class UploadRun:
    """One result per sink, in config order."""

    sinks: list[UploadResult] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.sinks)

    @property
    def damaged(self) -> list[str]:
        """What this run was the first to find undecodable in the queue: news for stderr (exit 65)."""
        return [n for r in self.sinks for n in r.damaged]


def lock_kind(sink_id: str) -> str:
    """The lock of one sink's upload; ids are free text, file names are not."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sink_id)
    return f"upload.{safe}" if safe == sink_id else f"upload.{safe}-{zlib.crc32(sink_id.encode()):08x}"


def select_sinks(config: Config, only: list[str] | None) -> list[SinkConfig]:
    if not config.sinks:
        raise ConfigError(f"{config.file}: no [[sinks]] configured: nowhere to upload to")
    if not only:
        return list(config.sinks)
    known = {s.id: s for s in config.sinks}
    for sid in only:
        if sid not in known:
            raise ShipctlError(f"no sink with id {sid!r} in {config.file} (configured: {', '.join(known)})", 64)
    return [known[sid] for sid in only]


def upload(
    ctx: Context,
    budget: Budget,
    *,
    only: list[str] | None = None,
    max_batches: int = 0,
    force: bool = False,
    dry_run: bool = False,
    wait: bool = False,
    readers_done: threading.Event | None = None,
    progress: Sent | None = None,
) -> UploadRun:
    """Deliver to the selected sinks (all by default) concurrently. ``readers_done`` (``run``): keep
    delivering what the readers queue until it is set, then make one last pass."""
    t0 = time.monotonic()
    chosen = select_sinks(ctx.config, only)
    plugins.validate((), ctx.config.sinks)  # a config mistake is exit 78 before anything is sent
    routes = {s.id: plugins.route(s) for s in ctx.config.sinks}
    out = UploadRun([UploadResult(sink=s.id) for s in chosen])
    if dry_run:
        for sink_cfg, res in zip(chosen, out.sinks, strict=True):
            _Run(ctx, sink_cfg, routes, res, dry=True).dry_run(max_batches)
    else:
        dropped = _trim(ctx, routes)  # even while backing off: that is when the queue grows
        _release(ctx, routes)  # a sink removed from the config holds nothing back any more
        for res in out.sinks:
            t = dropped.get(res.sink)
            if t:
                res.dropped_batches, res.dropped_events = t.batches, t.events
        errors: list[BaseException] = []
        workers = [
            threading.Thread(
                target=_deliver,
                args=(ctx.config, ctx.state.path, sink_cfg, routes, res, budget),
                kwargs={
                    "max_batches": max_batches,
                    "force": force,
                    "wait": wait,
                    "readers_done": readers_done,
                    # One sink and no tail-once beside it: the one case whose peak RSS has room for heap-kept
                    # buffers (see malloc.tune; two sinks so: 37.5 -> 42.4 MiB).
                    "alone": readers_done is None and len(chosen) == 1,
                    "errors": errors,
                    "progress": progress,
                },
                name=f"shipctl-upload-{sink_cfg.id}",
                daemon=True,
            )
            for sink_cfg, res in zip(chosen, out.sinks, strict=True)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
        if all(r.skipped for r in out.sinks):
            raise LockHeld("; ".join(r.skipped or "" for r in out.sinks))
    for res, sink_cfg in zip(out.sinks, chosen, strict=True):
        st = upstate.load(ctx.state.conn, sink_cfg.id)
        res.remaining_batches = pending(ctx.state.conn, st.acked_sn, routes[sink_cfg.id].takes).batches
        res.stopped = res.stopped or budget.stopped
    out.elapsed = time.monotonic() - t0
    return out


def _deliver(
    config: Config,
    path: Any,
    sink_cfg: SinkConfig,
    routes: dict[str, plugins.Route],
    res: UploadResult,
    budget: Budget,
    *,
    max_batches: int,
    force: bool,
    wait: bool,
    readers_done: threading.Event | None,
    errors: list[BaseException],
    progress: Sent | None = None,
    alone: bool = False,
) -> None:
    """One sink's thread: its lock, its own connection (sqlite3 connections stay in their thread), passes."""
    t0 = time.monotonic()
    try:
        with lock(path, lock_kind(sink_cfg.id), wait=wait), State.open(path) as state:
            # This connection reads each batch once per pass and writes a few small rows per reply: a page
            # cache of 512 KiB instead of 2 MiB holds what it reuses (the b-tree's inner pages) and costs
            # 1.5 MiB less peak RSS per sink (the rest only held blob pages that were never read again).
            state.conn.execute(f"PRAGMA cache_size = {-READ_CACHE_KIB}")
            run = _Run(Context(config, state), sink_cfg, routes, res, progress=progress, alone=alone)
            try:
                poll = FIRST_POLL_SECONDS
                while True:
                    last = readers_done is None or readers_done.is_set()  # this pass sees all they queued
                    before = res.batches + res.discarded_batches
                    if budget.exhausted():
                        break
                    try:
                        run.one_pass(budget, max_batches, force)
                    except ShipctlError:
                        raise
                    except Exception as exc:  # a sink's own defect or an input it chokes on: back off, say so
                        log.exception("upload to %s: unexpected error", sink_cfg.id)
                        run.failed(f"{type(exc).__name__}: {exc}")
                    if last or res.failed or res.backing_off_until or res.stopped:
                        break
                    if res.batches + res.discarded_batches == before:
                        readers_done.wait(poll)  # type: ignore[union-attr]
                        poll = min(poll * 2, POLL_SECONDS)
                    else:
                        poll = FIRST_POLL_SECONDS
            finally:
                run.sink.close()
    except LockHeld:
        res.skipped = f"another 'shipctl upload' is delivering to sink {sink_cfg.id!r} on {path}"
    except ShipctlError as exc:
        res.failed = str(exc)
    except BaseException as exc:  # re-raised in the calling thread
        errors.append(exc)
    res.elapsed = time.monotonic() - t0


def _release(ctx: Context, routes: dict[str, plugins.Route]) -> None:
    """Once per upload, over the whole journal: what a sink removed from the config was holding back."""
    ids = list(routes)
    sinks = {s: (c, routes[s].takes) for s, c in upstate.cursors(ctx.state.conn, ids).items()}
    if releasable(ctx.state.conn, sinks)[0]:  # read first: most runs have nothing to release here
        with ctx.state.write() as conn:
            cursors = upstate.cursors(conn, ids)
            _report_unrouted(ctx.state, release(conn, {s: (cursors[s], routes[s].takes) for s in ids}))


def _report_unrouted(state: State, nobody: list[Header]) -> None:
    """Events that no sink takes leave the journal: never silently (check-config warns of them too)."""
    by: dict[tuple[str, str], int] = {}
    for h in nobody:
        by[(h.kind, h.source)] = by.get((h.kind, h.source), 0) + h.n_events
    for (kind, source), n in by.items():
        state.notice(
            "queue", "warning", f"{n} {kind} events of {source!r} reached no sink (no [[sinks]] entry takes them)"
        )
        log.warning("%d %s events of %r reached no sink", n, kind, source)


def _trim(ctx: Context, routes: dict[str, plugins.Route]) -> dict[str, Trimmed]:
    limit = ctx.config.agent.max_queue_bytes
    if not limit or stored_bytes(ctx.state.conn) <= limit:
        return {}
    with ctx.state.write() as conn:
        ids = list(routes)
        cursors = upstate.cursors(conn, ids)
        gone = trim(conn, limit, {s: (cursors[s], routes[s].takes) for s in ids})
        total = gone.get("")
        if not total or not total.batches:
            return {}
        for sid in ids:
            t = gone.get(sid)
            if t:
                st = upstate.load(conn, sid)
                st.batches_dropped += t.batches
                st.events_dropped += t.events
                upstate.save(conn, st)
        ctx.state.notice(
            "queue",
            "error",
            f"queue over agent.max_queue_bytes ({size(limit)}): dropped the {plural(total.batches, 'oldest batch')}"
            f" ({plural(total.events, 'event')}, {size(total.bytes)}); undelivered to: "
            + (", ".join(f"{s} ({plural(t.events, 'event')})" for s, t in gone.items() if s) or "no sink"),
        )
    log.error("upload: queue over max_queue_bytes, dropped %d oldest batches", total.batches)
    return gone


class _Run:
    """One sink's delivery over one connection."""

    def __init__(
        self,
        ctx: Context,
        sink_cfg: SinkConfig,
        routes: dict[str, plugins.Route],
        res: UploadResult,
        *,
        dry: bool = False,
        progress: Sent | None = None,
        alone: bool = False,
    ) -> None:
        self.ctx = ctx
        self.progress = progress
        self.alone = alone  # the only thing moving data in this process (see malloc.tune)
        self.state = ctx.state
        self.sink_cfg = sink_cfg
        self.sink_id = sink_cfg.id
        self.routes = routes
        self.takes = routes[sink_cfg.id].takes
        self.result = res
        if dry:  # change nothing, not even the sink's row
            stream = upstate.load(self.state.conn, self.sink_id).stream or upstate.make_stream(
                ctx.state.session, self.sink_id
            )
        else:
            # Read first: the id is made on the sink's first run; later ones (most of them no-op timer ticks)
            # need not take the write lock, which the readers of ``run`` may hold at that moment (issue 13).
            stream = upstate.load(self.state.conn, self.sink_id).stream
            if not stream:
                with self.state.write() as conn:
                    stream = upstate.stream_id(conn, self.sink_id, ctx.state.session)
        self.sink: Sink = plugins.build_sink(sink_cfg, stream)
        self.sink.bind(ctx.config.server_attributes)
        self.limit_key = upstate.limit_key(self.sink_id)
        self.acked = upstate.load(self.state.conn, self.sink_id).acked_sn
        self.damaged: dict[int, Damaged] = {}  # undecodable batches met ahead of the cursor, by sequence number
        self.started_at = self.acked  # where this run's progress counts from
        self.configured_limit = self.sink.request_limit
        saved = (self.state.meta(self.limit_key) or "").split(":")
        if len(saved) == 2 and saved[0] == str(self.configured_limit) and saved[1].isdigit():
            self.sink.request_limit = min(int(saved[1]), self.configured_limit)  # a config change starts afresh

    def report(self) -> None:
        """Tell the progress bar how far the cursor is, out of what is queued now (it grows during ``run``)."""
        if self.progress is not None:
            head = int(self.state.meta("next_sn") or 1) - 1
            self.progress(self.sink_id, self.acked - self.started_at, head - self.started_at)

    def one_pass(self, budget: Budget, max_batches: int, force: bool) -> None:
        st = upstate.load(self.state.conn, self.sink_id)
        # A changed sink config (new server, new key) is a fix worth trying at once, not after backoff.
        key = f"sink_config:{self.sink_id}"
        fingerprint = format(zlib.crc32(repr(sorted(self.sink_cfg.options.items())).encode()), "08x")
        previous = self.state.meta(key)
        if previous != fingerprint:
            with self.state.write():
                self.state.set_meta(key, fingerprint)
        changed = previous is not None and previous != fingerprint
        if not force and not changed and st.next_attempt and st.next_attempt > time.time():
            self.result.backing_off_until = st.next_attempt
            self.result.failed = st.last_message
            return
        self.report()
        self.send(budget, max_batches)

    def _reader(self, max_batches: int) -> JournalReader:
        limit = max_batches - self.result.batches - self.result.discarded_batches if max_batches else 0
        return JournalReader(
            self.state.conn, self.acked, self.takes, window=self.sink.request_bytes, limit=limit, damaged=self.damaged
        )

    # --- the run -------------------------------------------------------------------------------------
    def send(self, budget: Budget, max_batches: int) -> None:
        """Post requests, ``sink.in_flight`` at a time (one unless the sink says otherwise). Meanwhile the next
        ones are encoded (this thread) and compressed (workers: zlib releases the GIL), at most ``sink.ahead``
        of them: work thrown away if a reply stops the run or shrinks the requests. Replies are booked in the
        order the requests were cut: after a failure, whatever was posted behind it is not booked even if it
        was accepted (it goes again with the retry, under the same sequence numbers), so the cursor never
        passes an unconfirmed request. When every request of the pass is confirmed, the cursor moves past
        the batches after them that are not routed to this sink."""
        reader = self._reader(max_batches)
        reqs = self.sink.requests(reader, self.acked)
        first = next(reqs, None)
        if first is None:
            self._advance(reader.passed)
            return
        malloc.tune(heap=self.alone)  # a request to send: a run that moves data
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        depth = max(1, self.sink.in_flight)
        finished = False
        ahead = self.sink.ahead
        # A sink without a seal() of its own (file, stdout, metrics) gets no worker for it: handing a request
        # to a worker wakes that thread while this one holds the GIL, and on a busy machine this one can then
        # wait for a core with the GIL in hand (py-spy --gil, file sink `run`: ~6% of the GIL-held samples).
        done: Future[None] = Future()
        done.set_result(None)
        no_seal = type(self.sink).seal is Sink.seal
        with ThreadPoolExecutor(depth + ahead, thread_name_prefix=f"shipctl-{self.sink_id}") as pool:

            def seal(req: Request) -> Future[None]:
                return done if no_seal else pool.submit(self.sink.seal, req)

            ready: deque[tuple[Request, Future[None]]] = deque([(first, seal(first))])
            del first  # alive in ``ready`` only: once posted and booked, its batches leave memory (~1 MiB)
            flying: deque[tuple[Request, Future[SendResult]]] = deque()

            def refill() -> None:
                while len(ready) < ahead:
                    req = next(reqs, None)
                    if req is None:
                        return
                    ready.append((req, seal(req)))

            while True:
                stop = False
                while ready and len(flying) < depth:
                    if budget.exhausted():
                        stop = True
                        break
                    if max_batches and self.result.batches + self.result.discarded_batches >= max_batches:
                        self.result.stopped = f"batch limit of {max_batches} reached"
                        stop = True
                        break
                    cur, sealed = ready.popleft()
                    sealed.result()
                    self.sink.deadline = budget.deadline()  # every wait of the post ends with the run's budget
                    flying.append((cur, pool.submit(self.sink.post, cur)))
                    refill()
                if not flying:
                    finished = not stop and not ready
                    break
                cur, posted = flying.popleft()
                res = posted.result()
                self.result.requests += 1
                if not self._record(cur, res):
                    break  # what flies behind it is not booked (the pool waits for it on the way out)
                if res.outcome == TOO_LARGE:
                    # Smaller requests from the same point; what was encoded or posted at the old size is
                    # dropped (a later request the receiver took anyway goes again, smaller).
                    for _, later in flying:
                        later.result()
                    flying.clear()
                    ready.clear()
                    reqs.close()
                    reader = self._reader(max_batches)
                    reqs = self.sink.requests(reader, self.acked)
                    refill()
        reqs.close()
        if finished:
            self._advance(reader.passed)

    def _advance(self, passed: int) -> None:
        """Move the cursor over batches this sink does not take (nothing of its own is pending before)."""
        if passed <= self.acked:
            return
        with self.state.write() as conn:
            st = upstate.load(conn, self.sink_id)
            old = st.acked_sn
            st.acked_sn = self.acked = max(st.acked_sn, passed)
            self._set_aside(conn, st, old)
            upstate.save(conn, st)
            self._release(conn, old, st.acked_sn)
        self.report()

    def _release(self, conn: Any, old: int, new: int) -> None:
        """Release what this sink just passed and every other sink is done with. Only that range: a batch
        is looked at when the last sink to pass it moves, so no scan covers the whole backlog."""
        if new <= old:
            return
        ids = list(self.routes)
        cursors = upstate.cursors(conn, ids)
        nobody = release(conn, {s: (cursors[s], self.routes[s].takes) for s in ids}, after=old, upto=new)
        _report_unrouted(self.state, nobody)

    def _set_aside(self, conn: Any, st: upstate.UploadState, old: int) -> None:
        """Book the undecodable batches the cursor just moved past (``old`` to ``st.acked_sn``), in the
        transaction that moves it: their events count as dropped for this sink (lost, never sent: what
        ``events_dropped`` means, unlike ``events_discarded``, which a receiver refused), once per sink since
        the cursor passes a batch once; the first sink to pass one writes the notice. One that is met but
        not passed (the run stopped before) stays queued and is met again by the next run."""
        if not self.damaged:
            return
        for d in [d for d in self.damaged.values() if d.last_sn <= st.acked_sn]:
            del self.damaged[d.sn]
            if d.last_sn <= old:
                continue
            events = d.last_sn - max(d.sn, old + 1) + 1  # a batch split before it was damaged: the rest
            st.events_dropped += events
            self.result.damaged_batches += 1
            self.result.damaged_events += events
            if first_report(conn, d):
                message = (
                    f"{d.describe()} cannot be decoded: {d.reason}; set aside: its events are lost to every sink"
                    " that takes it (counted as dropped); the disk may be failing: run 'shipctl state check'"
                )
                self.state.notice("queue", "error", message)
                self.result.damaged.append(message)
                log.error("upload: %s", message)

    def _record(self, req: Request, res: SendResult) -> bool:
        """Book one reply in one transaction: move the cursor, release what every sink is done with, update
        counters and backoff. Returns whether the run goes on."""
        r = self.result
        now = time.time()
        go_on = True
        with self.state.write() as conn:
            st = upstate.load(conn, self.sink_id)
            st.last_attempt = now
            st.last_status = res.status or res.outcome
            st.last_message = res.message
            st.last_request_bytes = res.request_bytes or req.size
            if res.outcome in (OK, DISCARD):
                done = sum(1 for s in req.spans if s.complete)
                old = st.acked_sn
                self.acked = st.acked_sn = max(st.acked_sn, req.last_sn)
                st.consecutive_failures = 0
                st.next_attempt = None
                self._set_aside(conn, st, old)
                if res.outcome == OK:
                    if res.status == "partial":  # the receiver kept part of it and said what it refused
                        self.state.notice(f"sink:{self.sink_id}", "warning", res.message)
                    st.last_success = now
                    st.bytes_uploaded += res.request_bytes or req.size
                    st.events_uploaded += req.events
                    st.batches_uploaded += done
                    r.batches += done
                    r.events += req.events
                    r.bytes += res.request_bytes or req.size
                else:
                    st.events_discarded += req.events
                    st.batches_discarded += done
                    r.discarded_batches += done
                    r.discarded_events += req.events
                    self.state.notice(
                        f"sink:{self.sink_id}",
                        "error",
                        f"receiver discarded {plural(req.events, 'event')} (sn {req.spans[0].first_sn}..{req.last_sn}):"
                        f" {res.message}",
                    )
                upstate.save(conn, st)
                self._release(conn, old, st.acked_sn)
            elif res.outcome == TOO_LARGE and (new := self.sink.shrink()):
                r.request_limit = new
                self.state.set_meta(self.limit_key, f"{self.configured_limit}:{new}")
                self.state.notice(
                    f"sink:{self.sink_id}",
                    "warning",
                    # The exact limit too: a value to copy into the sink's max_request_bytes.
                    f"request of {size(req.size)} refused as too large ({res.message}); requests now at most"
                    f" {new} bytes ({size(new)})",
                )
                upstate.save(conn, st)
            else:
                st.consecutive_failures += 1
                st.next_attempt = now + upstate.backoff_seconds(st.consecutive_failures, res.retry_after)
                message = res.message or res.status
                if res.outcome == TOO_LARGE:
                    message += f" (already at the smallest request size, {size(self.sink.request_limit)})"
                    st.last_message = message
                self.state.notice(f"sink:{self.sink_id}", "error", message)
                r.failed = message
                go_on = False
                upstate.save(conn, st)
        if not go_on:
            log.warning("upload to %s failed: %s", self.sink_id, r.failed)
        else:
            self.report()
        return go_on

    def failed(self, message: str) -> None:
        """Book a failure that is not a receiver's reply (an exception in the sink): back off like one."""
        self._record(Request([], 0, 0), SendResult(RETRY, f"sink {self.sink_id!r} failed: {message}", status="error"))

    # --- dry run ---------------------------------------------------------------------------------------
    def dry_run(self, max_batches: int) -> None:
        """Show the first request as it would be sent (secrets masked); change nothing."""
        reqs = self.sink.requests(self._reader(max_batches), self.acked)
        first = next(reqs, None)
        reqs.close()
        out = self.result.dry_run
        if first is None:
            out.append(f"nothing queued for {self.sink_id}: no request would be sent")
            return
        out.append(self.sink.show(first))
        q = pending(self.state.conn, self.acked, self.takes)
        rest = q.events - first.events
        if rest > 0:
            out.append(
                f"... and {plural(rest, 'more queued event')} ({plural(q.batches, 'batch')} in all) in the requests"
                " after it"
            )
        st = upstate.load(self.state.conn, self.sink_id)
        if st.next_attempt and st.next_attempt > time.time():
            out.append(
                f"(backing off after {plural(st.consecutive_failures, 'failure')}: a plain upload would not send now)"
            )
