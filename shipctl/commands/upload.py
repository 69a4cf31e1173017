"""``shipctl upload``: send queued batches, oldest first; a batch leaves the queue only once the sink
confirmed the request holding its last event. Failures back off across runs (state file), so a timer tick
during backoff is a no-op.

One request is in flight at a time (a later batch must never be accepted before an earlier one that is
still pending), but the next request is encoded while the current one is on the wire.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from shipctl import plugins
from shipctl.commands.common import Budget, Context, log
from shipctl.errors import ConfigError
from shipctl.sinks.base import DISCARD, OK, TOO_LARGE, Request, RequestSink, SendResult, as_request_sink
from shipctl.state import upload as upstate
from shipctl.state.queue import delete_batches, queue_stats, stored_bytes, stream_batches, trim

AHEAD = 2  # requests encoded ahead of the one on the wire


@dataclass
class UploadResult:
    sink: str = ""
    batches: int = 0
    events: int = 0
    bytes: int = 0
    discarded_batches: int = 0
    discarded_events: int = 0
    dropped_batches: int = 0  # oldest batches dropped because the queue exceeded agent.max_queue_bytes
    dropped_events: int = 0
    requests: int = 0
    request_limit: int | None = None  # set when a requestTooLarge reply made requests smaller this run
    remaining_batches: int = 0
    backing_off_until: float | None = None  # set when the run did nothing because of backoff
    failed: str | None = None  # the last failure's message
    stopped: str | None = None
    dry_run: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def upload(
    ctx: Context, budget: Budget, *, max_batches: int = 0, force: bool = False, dry_run: bool = False
) -> UploadResult:
    t0 = time.monotonic()
    if not ctx.config.sinks:
        raise ConfigError(f"{ctx.config.file}: no [[sinks]] configured: nowhere to upload to")
    sink_cfg = ctx.config.sinks[0]
    sink = as_request_sink(plugins.build_sink(sink_cfg, ctx.state.session))
    sink.bind(ctx.config.server_attributes)
    run = _Run(ctx, sink, sink_cfg.id, UploadResult(sink=sink_cfg.id))
    try:
        if dry_run:
            run.dry_run(max_batches)
        else:
            run.trim()  # even while backing off: that is when the queue grows
            st = upstate.load(ctx.state.conn, sink_cfg.id)
            # A changed sink config (new server, new key) is a fix worth trying at once, not after backoff.
            key = f"sink_config:{sink_cfg.id}"
            fingerprint = format(zlib.crc32(repr(sorted(sink_cfg.options.items())).encode()), "08x")
            previous = ctx.state.meta(key)
            if previous != fingerprint:
                with ctx.state.write():
                    ctx.state.set_meta(key, fingerprint)
            changed = previous is not None and previous != fingerprint
            if not force and not changed and st.next_attempt and st.next_attempt > time.time():
                run.result.backing_off_until = st.next_attempt
                run.result.failed = st.last_message
            else:
                run.send(budget, max_batches)
    finally:
        sink.close()
    result = run.result
    result.stopped = result.stopped or budget.stopped
    result.remaining_batches = queue_stats(ctx.state.conn).batches
    result.elapsed = time.monotonic() - t0
    return result


class _Run:
    def __init__(self, ctx: Context, sink: RequestSink, sink_id: str, result: UploadResult) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.sink = sink
        self.sink_id = sink_id
        self.result = result
        self.acked_key = upstate.acked_key(sink_id)
        self.limit_key = upstate.limit_key(sink_id)
        self.acked = int(self.state.meta(self.acked_key) or 0)
        self.configured_limit = sink.request_limit
        saved = (self.state.meta(self.limit_key) or "").split(":")
        if len(saved) == 2 and saved[0] == str(self.configured_limit) and saved[1].isdigit():
            sink.request_limit = min(int(saved[1]), self.configured_limit)  # a config change starts afresh

    def _requests(self, max_batches: int) -> Any:
        limit = max_batches - self.result.batches - self.result.discarded_batches if max_batches else 0
        batches = stream_batches(self.state.conn, window=self.sink.request_bytes, limit=limit)
        return self.sink.requests(batches, self.acked)

    # --- the run -------------------------------------------------------------------------------------
    def send(self, budget: Budget, max_batches: int) -> None:
        """Post requests one at a time. Meanwhile the next ones are encoded (this thread) and compressed
        (workers: zlib releases the GIL), at most ``AHEAD`` of them: work thrown away if a reply stops the
        run or shrinks the requests."""
        reqs = self._requests(max_batches)
        first = next(reqs, None)
        if first is None:
            return
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        with ThreadPoolExecutor(1 + AHEAD, thread_name_prefix="shipctl-upload") as pool:
            ready: deque[tuple[Request, Future[None]]] = deque([(first, pool.submit(self.sink.seal, first))])

            def refill() -> None:
                while len(ready) < AHEAD:
                    req = next(reqs, None)
                    if req is None:
                        return
                    ready.append((req, pool.submit(self.sink.seal, req)))

            while ready:
                if budget.exhausted():
                    break
                if max_batches and self.result.batches + self.result.discarded_batches >= max_batches:
                    self.result.stopped = f"batch limit of {max_batches} reached"
                    break
                cur, sealed = ready.popleft()
                sealed.result()
                posted = pool.submit(self.sink.post, cur)
                refill()
                res = posted.result()
                self.result.requests += 1
                if not self._record(cur, res):
                    break
                if res.outcome == TOO_LARGE:
                    # Smaller requests from the same point; what was encoded at the old size is dropped.
                    ready.clear()
                    reqs.close()
                    reqs = self._requests(max_batches)
                    refill()
        reqs.close()

    def _record(self, req: Request, res: SendResult) -> bool:
        """Book one reply in one transaction: delete what was delivered, move the acked sequence number,
        update counters and backoff. Returns whether the run goes on."""
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
                done = [s.batch_id for s in req.spans if s.complete]
                delete_batches(conn, done)
                self.acked = max(self.acked, req.last_sn)
                self.state.set_meta(self.acked_key, str(self.acked))
                st.consecutive_failures = 0
                st.next_attempt = None
                if res.outcome == OK:
                    st.last_success = now
                    st.bytes_uploaded += res.request_bytes or req.size
                    st.events_uploaded += req.events
                    st.batches_uploaded += len(done)
                    r.batches += len(done)
                    r.events += req.events
                    r.bytes += res.request_bytes or req.size
                else:
                    st.events_discarded += req.events
                    st.batches_discarded += len(done)
                    r.discarded_batches += len(done)
                    r.discarded_events += req.events
                    self.state.notice(
                        f"sink:{self.sink_id}",
                        "error",
                        f"receiver discarded {req.events} events (sn {req.spans[0].first_sn}..{req.last_sn}):"
                        f" {res.message}",
                    )
            elif res.outcome == TOO_LARGE and (new := self.sink.shrink()):
                r.request_limit = new
                self.state.set_meta(self.limit_key, f"{self.configured_limit}:{new}")
                self.state.notice(
                    f"sink:{self.sink_id}",
                    "warning",
                    f"request of {req.size} bytes refused as too large ({res.message}); requests now at most {new}",
                )
            else:
                st.consecutive_failures += 1
                st.next_attempt = now + upstate.backoff_seconds(st.consecutive_failures, res.retry_after)
                message = res.message or res.status
                if res.outcome == TOO_LARGE:
                    message += f" (already at the smallest request size, {self.sink.request_limit} bytes)"
                    st.last_message = message
                self.state.notice(f"sink:{self.sink_id}", "error", message)
                r.failed = message
                go_on = False
            upstate.save(conn, st)
        if not go_on:
            log.warning("upload to %s failed: %s", self.sink_id, r.failed)
        return go_on

    # --- queue size and dry run ----------------------------------------------------------------------
    def trim(self) -> None:
        limit = self.ctx.config.agent.max_queue_bytes
        if not limit or stored_bytes(self.state.conn) <= limit:
            return
        with self.state.write() as conn:
            gone = trim(conn, limit)
            if gone.batches:
                st = upstate.load(conn, self.sink_id)
                st.batches_dropped += gone.batches
                upstate.save(conn, st)
                self.state.notice(
                    f"sink:{self.sink_id}",
                    "error",
                    f"queue over agent.max_queue_bytes ({limit} bytes): dropped the {gone.batches} oldest batches"
                    f" ({gone.events} events, {gone.bytes} bytes) without sending them",
                )
        if gone.batches:
            self.result.dropped_batches = gone.batches
            self.result.dropped_events = gone.events
            log.error("upload %s: queue over max_queue_bytes, dropped %d oldest batches", self.sink_id, gone.batches)

    def dry_run(self, max_batches: int) -> None:
        """Show the first request as it would be sent (secrets masked); change nothing."""
        reqs = self._requests(max_batches)
        first = next(reqs, None)
        reqs.close()
        out = self.result.dry_run
        if first is None:
            out.append(f"nothing queued: no request would be sent to {self.sink_id}")
            return
        out.append(self.sink.show(first))
        q = queue_stats(self.state.conn)
        rest = q.events - first.events
        if rest > 0:
            out.append(f"... and {rest} more queued events ({q.batches} batches in all) in the requests after it")
        st = upstate.load(self.state.conn, self.sink_id)
        if st.next_attempt and st.next_attempt > time.time():
            out.append(f"(backing off after {st.consecutive_failures} failures: a plain upload would not send now)")
