"""Lasting problems are reported once: by the first run that meets one, again when it changes, and by the run
that sees it clear — not by every timer tick. A log that stays unreadable used to make every cron run exit 65
with the same line, so cron mailed it every minute; the problem now stays visible in ``status`` (its own
section, and the log's row) and in ``status --check`` (read_errors), and runs after the first stay quiet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shipctl.errors import EXIT_SOURCE_ERRORS
from shipctl.runtime import Context
from shipctl.state import health
from shipctl.tail.follower import TailResult


@dataclass
class Reported:
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
