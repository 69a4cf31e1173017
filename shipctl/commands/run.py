"""``shipctl run``: tail-once, then the monitors that are due, then upload — the one-timer set-up.

Each step takes its own command's lock; a step whose lock is held (say a long manual ``tail-once``
catching up) is skipped and the others go on. A second ``run`` at the same time exits at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shipctl.commands.common import Budget, Context
from shipctl.commands.run_monitor import RunMonitorResult, monitors_of, run_monitors
from shipctl.commands.tail_once import Progress, TailResult, tail_once
from shipctl.commands.upload import UploadResult, upload
from shipctl.errors import LockHeld
from shipctl.state import lock


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
    # One run should fit its max_seconds (one timer interval): a backlog gets 60% of it for reading, and
    # upload what is left, never under 20%, so neither starves the other.
    limit = budget.max_seconds
    tail_budget = Budget(max_seconds=limit * 0.6, max_bytes=budget.max_bytes) if limit else budget
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
    if not ctx.config.sinks:
        result.skipped.append("upload: no [[sinks]] configured; batches stay queued")
    else:
        up_budget = Budget(max_seconds=max(limit - (time.monotonic() - t0), limit * 0.2) if limit else 0.0)
        try:
            with lock(path, "upload"):
                result.upload = upload(ctx, up_budget)
        except LockHeld as exc:
            result.skipped.append(f"upload: {exc}")
    result.elapsed = time.monotonic() - t0
    return result
