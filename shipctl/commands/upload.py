"""``shipctl upload``: send queued batches, oldest first; a batch leaves the queue only once the sink
confirmed it. Failures back off across runs (state file), so a timer tick during backoff is a no-op."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shipctl import plugins
from shipctl.commands.common import Budget, Context, log
from shipctl.errors import ConfigError
from shipctl.sinks.base import DISCARD, OK
from shipctl.state import upload as upstate
from shipctl.state.queue import delete_batches, oldest_batches, queue_stats


@dataclass
class UploadResult:
    sink: str = ""
    batches: int = 0
    events: int = 0
    bytes: int = 0
    discarded_batches: int = 0
    requests: int = 0
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
    sink = plugins.build_sink(sink_cfg, ctx.state.session)
    conn = ctx.state.conn
    result = UploadResult(sink=sink_cfg.id)
    st = upstate.load(conn, sink_cfg.id)
    now = time.time()
    if not force and not dry_run and st.next_attempt and st.next_attempt > now:
        result.backing_off_until = st.next_attempt
        result.failed = st.last_message
        return result
    last_id = 0
    while not budget.exhausted():
        if max_batches and result.batches + result.discarded_batches >= max_batches:
            result.stopped = f"batch limit of {max_batches} reached"
            break
        limit = max_batches - result.batches - result.discarded_batches if max_batches else 1000
        batches = oldest_batches(conn, max_bytes=sink.request_bytes, max_batches=limit, after=last_id)
        if not batches:
            break
        if dry_run:
            result.dry_run.append(sink.describe(batches))
            last_id = batches[-1].id
            continue
        res = sink.send(batches)
        result.requests += 1
        st = upstate.load(conn, sink_cfg.id)
        st.last_attempt = time.time()
        st.last_status = res.status or res.outcome
        st.last_message = res.message
        st.last_request_bytes = res.request_bytes
        ids = [b.id for b in batches]
        events = sum(b.n_events for b in batches)
        with ctx.state.write() as wconn:
            if res.outcome == OK:
                delete_batches(wconn, ids)
                st.last_success = st.last_attempt
                st.consecutive_failures = 0
                st.next_attempt = None
                st.bytes_uploaded += res.request_bytes
                st.events_uploaded += events
                st.batches_uploaded += len(ids)
                result.batches += len(ids)
                result.events += events
                result.bytes += res.request_bytes
            elif res.outcome == DISCARD:
                delete_batches(wconn, ids)
                st.events_discarded += events
                st.batches_discarded += len(ids)
                result.discarded_batches += len(ids)
                ctx.state.notice(
                    f"sink:{sink_cfg.id}",
                    "error",
                    f"receiver discarded {len(ids)} batches ({events} events): {res.message}",
                )
            else:
                st.consecutive_failures += 1
                st.next_attempt = st.last_attempt + upstate.backoff_seconds(st.consecutive_failures, res.retry_after)
                ctx.state.notice(f"sink:{sink_cfg.id}", "error", res.message or res.status)
            upstate.save(wconn, st)
        if res.outcome not in (OK, DISCARD):
            result.failed = res.message or res.status
            log.warning("upload to %s failed: %s", sink_cfg.id, result.failed)
            break
    result.stopped = result.stopped or budget.stopped
    result.remaining_batches = queue_stats(conn).batches
    result.elapsed = time.monotonic() - t0
    return result
