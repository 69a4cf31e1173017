"""Lasting problems are reported once: by the first run that meets one, again when it changes, and by the run
that sees it clear — not by every timer tick. A log that stays unreadable used to make every cron run exit 65
with the same line, so cron mailed it every minute; the problem now stays visible in ``status`` (its own
section, and the log's row) and in ``status --check`` (read_errors), and runs after the first stay quiet.
"""

from __future__ import annotations

import time
from dataclasses import field
from typing import TYPE_CHECKING

from shipctl.errors import EXIT_SOURCE_ERRORS
from shipctl.records import record
from shipctl.runtime import Context
from shipctl.state import health
from shipctl.tail.follower import TailResult

if TYPE_CHECKING:
    from shipctl.monitors.runner import RunMonitorResult


@record
class Reported:
    """What a run met that it could not read, split by whether it is news."""

    new: list[str] = field(default_factory=list)  # print, and exit 65: the run met something it could not read
    ongoing: list[str] = field(default_factory=list)  # already reported by an earlier run: quiet
    cleared: list[str] = field(default_factory=list)  # print once, exit 0: good news also deserves one line

    @property
    def exit_code(self) -> int:
        return EXIT_SOURCE_ERRORS if self.new else 0


def settle_tail(ctx: Context, res: TailResult) -> Reported:
    """Compare this tail run's errors with the problems the state file knows, and record the new set."""
    configured = {lg.id for lg in ctx.config.logs}
    looked_at = {lg.log_id for lg in res.logs}

    def owns(text: str) -> bool:
        # A run stopped by its budget did not look at everything: what it did not meet may still be there.
        if not text.startswith("log "):
            return False
        log_id = next((i for i in configured | looked_at if text.startswith(f"log {i}: ")), None)
        if log_id is None:
            return True  # its log is no longer configured: nothing will ever clear it otherwise
        return not res.stopped and log_id in looked_at

    events = [e for e in res.errors if e not in res.lasting]
    if not res.lasting and not health.problems(ctx.state.conn):
        return Reported(events)  # the usual case: nothing to remember, no write transaction
    with ctx.state.write() as conn:
        changes = health.update(conn, res.lasting, owns, time.time())
    # An event (lines lost to a rotation, a file truncated in place) is news each time it happens.
    return Reported(events + changes.new, changes.ongoing, changes.cleared)


def settle_monitors(ctx: Context, res: RunMonitorResult) -> Reported:
    """As settle_tail, for the monitors that ran: a monitor failing the same way run after run is reported by the
    first run (exit 65), then stays quiet (``status`` shows it) until it changes or recovers (``resolved:``).
    Only the monitors that ran can clear their problems: one not due this run may still be failing."""
    from shipctl.monitors.runner import problem_key

    ran = {r.id for r in res.results}
    failing = {problem_key(r.id, r.error): f"monitor {r.id}: {r.error}" for r in res.results if r.error}

    def owns(text: str) -> bool:
        return any(text.startswith(f"monitor {i}: ") for i in ran)

    before = {p.text: p.last or p.text for p in health.problems(ctx.state.conn) if owns(p.text)}
    if not failing and not before:
        return Reported(list(res.setup_errors))  # nothing to remember: no write transaction
    with ctx.state.write() as conn:
        changes = health.update(conn, failing, owns, time.time(), last=failing)
    # agent.plugins_dir problems are reported once by the runner itself (see RunMonitorResult.setup_errors).
    return Reported(
        list(res.setup_errors) + [failing[k] for k in changes.new],
        [failing[k] for k in changes.ongoing],
        [before.get(k, k) for k in changes.cleared],
    )
