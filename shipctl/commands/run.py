"""``shipctl run``: tail-once, the monitors that are due, and upload — the one-timer set-up.

Upload runs in a thread alongside tail-once and the monitors (they take different locks and SQLite
serialises their writes), sending batches as they are committed, so a backlog reaches the receiver at
the pace of the slower of the two instead of their sum. Each step takes its own command's lock; a step
whose lock is held (say a long manual ``tail-once`` catching up) is skipped and the others go on. A
second ``run`` at the same time exits at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

from shipctl.commands.common import Budget, Context
from shipctl.commands.run_monitor import RunMonitorResult, monitors_of, run_monitors
from shipctl.commands.tail_once import Progress, TailResult, tail_once
from shipctl.commands.upload import UploadResult, upload
from shipctl.errors import LockHeld
from shipctl.state import State, lock

# How long the upload thread waits for new batches before it looks again.
POLL_SECONDS = 0.05


@dataclass
class RunResult:
    tail: TailResult | None = None
    monitors: RunMonitorResult | None = None
    upload: UploadResult | None = None
    skipped: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def run(ctx: Context, budget: Budget, *, progress: Progress | None = None) -> RunResult:
    t0 = time.monotonic()
    fired = time.time()  # the schedule counts from the timer tick, not from when tail-once finished
    result = RunResult()
    path = ctx.state.path
    limit = budget.max_seconds
    uploader = _Uploader(ctx, limit) if ctx.config.sinks else None
    if uploader is None:
        result.skipped.append("upload: no [[sinks]] configured; batches stay queued")
    else:
        uploader.start()
    try:
        # A backlog gets 80% of the run's time for reading, so the upload has time to send what was read.
        tail_budget = Budget(max_seconds=limit * 0.8, max_bytes=budget.max_bytes) if limit else budget
        try:
            with lock(path, "tail-once"):
                result.tail = tail_once(ctx, tail_budget, progress=progress)
        except LockHeld as exc:
            result.skipped.append(f"tail-once: {exc}")
        if monitors_of(ctx.config):
            try:
                with lock(path, "run-monitor"):
                    result.monitors = run_monitors(ctx, [], due_only=True, scheduled_at=fired)
            except LockHeld as exc:
                result.skipped.append(f"run-monitor: {exc}")
    finally:
        if uploader is not None:
            result.upload = uploader.finish()
            if uploader.skipped:
                result.skipped.append(f"upload: {uploader.skipped}")
    result.elapsed = time.monotonic() - t0
    return result


class _Uploader(threading.Thread):
    """Upload passes until the readers are done and a pass has seen everything they queued."""

    def __init__(self, ctx: Context, limit: float) -> None:
        super().__init__(name="shipctl-upload", daemon=True)
        self.ctx = ctx
        self.deadline = time.monotonic() + limit if limit else None
        self.readers_done = threading.Event()
        self.result: UploadResult | None = None
        self.skipped: str | None = None
        self.error: BaseException | None = None

    def finish(self) -> UploadResult | None:
        self.readers_done.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.result

    def run(self) -> None:
        try:
            with lock(self.ctx.state.path, "upload"), State.open(self.ctx.state.path) as state:
                self._passes(Context(self.ctx.config, state))  # sqlite3 connections stay in their thread
        except LockHeld as exc:
            self.skipped = str(exc)
        except BaseException as exc:  # re-raised in the main thread by finish()
            self.error = exc

    def _passes(self, ctx: Context) -> None:
        while True:
            last = self.readers_done.is_set()  # this pass then sees everything the readers queued
            left = self.deadline - time.monotonic() if self.deadline is not None else 0.0
            if self.deadline is not None and left <= 0:
                break
            res = upload(ctx, Budget(max_seconds=max(left, 0.001) if self.deadline is not None else 0.0))
            self.result = res if self.result is None else _merge(self.result, res)
            if last or res.failed or res.backing_off_until or res.stopped:
                break
            if not res.batches:
                self.readers_done.wait(POLL_SECONDS)


def _merge(a: UploadResult, b: UploadResult) -> UploadResult:
    """Totals of two passes; the state at the end (failure, backoff, what is left) from the later one."""
    summed = (
        "batches",
        "events",
        "bytes",
        "discarded_batches",
        "discarded_events",
        "dropped_batches",
        "dropped_events",
        "requests",
        "elapsed",
    )
    return dataclasses.replace(
        b, **{k: getattr(a, k) + getattr(b, k) for k in summed}, request_limit=b.request_limit or a.request_limit
    )
