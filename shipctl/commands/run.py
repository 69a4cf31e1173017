"""``shipctl run``: tail-once, the monitors that are due, and upload — the one-timer set-up.

Upload runs in a thread alongside tail-once and the monitors (they take different locks and SQLite
serialises their writes), sending batches as they are committed, so a backlog reaches the receiver at
the pace of the slower of the two instead of their sum. Each step takes its own command's lock; a step
whose lock is held (say a long manual ``tail-once`` catching up) is skipped and the others go on. A
second ``run`` at the same time exits at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import field
from typing import TYPE_CHECKING

from shipctl.delivery import Sent, UploadRun, upload
from shipctl.errors import ConfigError, LockHeld
from shipctl.monitors.implicit import effective_monitors
from shipctl.records import record
from shipctl.runtime import Budget, Context
from shipctl.state import State, lock
from shipctl.tail.follower import Progress, TailResult, tail_once

if TYPE_CHECKING:
    from shipctl.monitors.runner import RunMonitorResult


@record
class RunResult:
    """What one ``shipctl run`` did: each step's result, and the steps skipped (lock held)."""

    tail: TailResult | None = None
    monitors: RunMonitorResult | None = None
    upload: UploadRun | None = None
    skipped: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def run(ctx: Context, budget: Budget, *, progress: Progress | None = None, sent: Sent | None = None) -> RunResult:
    t0 = time.monotonic()
    fired = time.time()  # the schedule counts from the timer tick, not from when tail-once finished
    result = RunResult()
    path = ctx.state.path
    limit = budget.max_seconds
    uploader = _Uploader(ctx, limit, sent) if ctx.config.sinks else None
    if uploader is None:
        raise ConfigError(f"{ctx.config.file}: no [[sinks]] configured: run has nowhere to deliver to")
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
        # runner.monitors_of(), without loading the runner when there is no monitor. An empty plugins_dir may
        # still have a problem to clear.
        if effective_monitors(ctx.config) or ctx.config.agent.plugins_dir:
            from shipctl.monitors.runner import run_monitors

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
    """Delivers to every sink while the readers queue, then once more after they are done."""

    def __init__(self, ctx: Context, limit: float, sent: Sent | None = None) -> None:
        super().__init__(name="shipctl-upload", daemon=True)
        self.ctx = ctx
        self.limit = limit
        self.sent = sent
        self.readers_done = threading.Event()
        self.result: UploadRun | None = None
        self.skipped: str | None = None
        self.error: BaseException | None = None

    def finish(self) -> UploadRun | None:
        self.readers_done.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.result

    def run(self) -> None:
        try:
            with State.open(self.ctx.state.path) as state:  # sqlite3 connections stay in their thread
                budget = Budget(max_seconds=self.limit)
                self.result = upload(
                    Context(self.ctx.config, state), budget, readers_done=self.readers_done, progress=self.sent
                )
        except LockHeld as exc:
            self.skipped = str(exc)
        except BaseException as exc:  # re-raised in the main thread by finish()
            self.error = exc
