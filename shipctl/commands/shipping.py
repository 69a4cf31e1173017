"""The commands cron runs (``tail-once``, ``upload``, ``run``, ``run-monitor``): run one, report on stderr, give
its exit code.

Typer-free, so the console script can call them straight from argv (see shipctl/fastcli.py) as well as
through the typer app in shipctl/cli.py; both then print and exit alike. Everything a command needs for
its work is imported inside it, so a run that finds nothing to do loads no more than that takes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from shipctl.errors import EXIT_SOURCE_ERRORS, EXIT_UPLOAD_FAILED, ShipctlError


class Exit(Exception):
    """A command finished with a non-zero exit code. Raised, not returned, inside the state session so the
    session ends as for any failure (no maintenance step, damage checked), as it always has."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _json(obj: Any) -> None:
    from shipctl.render import to_json

    print(to_json(obj))


def _budget(cfg: Any, max_seconds: float | None, max_bytes: int | None) -> Any:
    from shipctl.runtime import Budget

    return Budget(
        max_seconds=cfg.agent.max_seconds if max_seconds is None else max_seconds,
        max_bytes=cfg.agent.max_bytes if max_bytes is None else max_bytes,
    )


def _self_metrics(ctx: Any) -> None:
    """The textfile for node_exporter and the snapshot the implicit shipctl monitor sends, when configured."""
    from shipctl.monitors.implicit import wanted

    if not wanted(ctx.config):
        return  # a plain run pays nothing more for self-metrics (not even importing them)
    from shipctl.commands.selfmetrics import after_run
    from shipctl.commands.status import status

    problem = after_run(ctx, status)
    if problem:
        _err(f"shipctl: {problem}")


def _finish(ctx: Any, command: str, started: float, code: int, summary: dict[str, Any]) -> int:
    """Record the run, write self-metrics, log a run that did something; 0, or raise Exit(code)."""
    ctx.state.record_run(command, started, code, summary)
    _self_metrics(ctx)
    if code or any(v for v in summary.values() if isinstance(v, int | float | list)):
        # The tool's own log gets a line per run that did something; idle timer ticks stay silent.
        from shipctl.runtime import log

        log.info("%s: exit %d %s", command, code, " ".join(f"{k}={v}" for k, v in summary.items()))
    if code:
        raise Exit(code)
    return 0


PROGRESS_MIN_BYTES = 1 << 20  # a smaller backlog is read before a bar could say anything


def _progress(ctx: Any, *, read: bool, upload: bool) -> Any:
    """Progress bars on stderr when it is a terminal (never under cron): bytes tail-once reads when the
    backlog (new files included) is worth a bar, and events delivered per sink. Yields a render.Bars or None."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    total = 0
    if read:
        from shipctl.tail.follower import backlog_bytes

        total = sum(backlog_bytes(ctx, lg) for lg in ctx.config.logs)
    if total < PROGRESS_MIN_BYTES and not upload:
        return contextlib.nullcontext(None)
    from shipctl.render import progress

    return progress(total if total >= PROGRESS_MIN_BYTES else None)


def _tail_summary(res: Any) -> str:
    from shipctl.humanize import plural, size

    text = (
        f"tail-once: {plural(res.lines, 'line')}, {size(res.bytes)}, {_n(res.batches, 'batch')} in {res.elapsed:.2f} s"
    )
    return text + (f" (stopped: {res.stopped}; the rest follows next run)" if res.stopped else "")


def tail_once_command(
    config: str | None = None,
    max_seconds: float | None = None,
    max_bytes: int | None = None,
    wait: bool = False,
    json_out: bool = False,
    verbose: bool = False,
) -> int:
    """Read what is new in every configured log into the queue (complete lines only)."""
    from shipctl.commands.common import session
    from shipctl.tail.follower import tail_once

    started = time.time()
    with session(config, "tail-once", wait=wait) as ctx:
        with _progress(ctx, read=True, upload=False) as bars:
            res = tail_once(ctx, _budget(ctx.config, max_seconds, max_bytes), progress=bars and bars.read)
        if json_out:
            _json(res)
        reported = _report_tail(ctx, res, verbose)
        if verbose:
            _err(_tail_summary(res))
        code = reported.exit_code
        return _finish(
            ctx,
            "tail-once",
            started,
            code,
            {
                "lines": res.lines,
                "bytes": res.bytes,
                "batches": res.batches,
                "stopped": res.stopped,
                "errors": len(res.errors),
            },
        )


def _report_tail(ctx: Any, res: Any, verbose: bool) -> Any:
    """Print the log problems this run is the first to meet (and those that cleared); exit 65 only for new ones."""
    from shipctl.commands.problems import settle_tail

    reported = settle_tail(ctx, res)
    _report_lines(reported, verbose)
    return reported


def _report_lines(reported: Any, verbose: bool) -> None:
    for e in reported.new:
        _err(f"shipctl: {e}")
    for e in reported.ongoing if verbose else []:
        _err(f"shipctl: {e} (ongoing: reported before, see status)")
    for e in reported.cleared:
        _err(f"shipctl: resolved: {e}")


def _n(count: int, noun: str) -> str:
    from shipctl.humanize import plural

    return plural(count, noun)


def _size(n: int) -> str:
    from shipctl.humanize import size

    return size(n)


def _upload_lines(res: Any) -> list[str]:
    lines = []
    if res.skipped:
        return [f"upload: skipped {res.skipped}"]
    if res.dropped_batches:
        lines.append(
            f"upload: QUEUE OVER agent.max_queue_bytes: dropped the {_n(res.dropped_batches, 'oldest batch')}"
            f" ({_n(res.dropped_events, 'event')}) unsent to {res.sink}"
        )
    if res.backing_off_until:
        from shipctl.render import when

        return [
            *lines,
            f"upload: {res.sink}: backing off until {when(res.backing_off_until)} after failures"
            f" (last: {res.failed}); use --force to try now",
        ]
    if res.batches or not res.failed:
        lines.append(
            f"upload: {_n(res.events, 'event')} in {_n(res.batches, 'batch')} ({_size(res.bytes)},"
            f" {_n(res.requests, 'request')}) to {res.sink}, {_n(res.remaining_batches, 'batch')} left"
        )
    if res.discarded_batches or res.discarded_events:
        lines.append(
            f"upload: {res.sink}: receiver discarded {_n(res.discarded_events, 'event')}"
            f" ({_n(res.discarded_batches, 'batch')})"
        )
    if res.damaged_batches:
        lines.append(
            f"upload: {res.sink}: set aside {_n(res.damaged_batches, 'undecodable batch')}"
            f" ({_n(res.damaged_events, 'event')} lost, see status)"
        )
    if res.request_limit:
        lines.append(
            f"upload: {res.sink}: receiver said requestTooLarge; requests are now at most"
            f" {res.request_limit} bytes ({_size(res.request_limit)})"
        )
    if res.failed:
        lines.append(f"upload: {res.sink}: failed: {res.failed}; batches kept for the next run")
    return lines


def upload_command(
    config: str | None = None,
    max_seconds: float | None = None,
    max_batches: int = 0,
    force: bool = False,
    dry_run: bool = False,
    sink: list[str] | None = None,
    wait: bool = False,
    json_out: bool = False,
    verbose: bool = False,
) -> int:
    """Deliver the queue to every configured sink (each from its own cursor); a batch leaves the queue once
    every sink that takes it has it."""
    from shipctl.commands.common import session
    from shipctl.delivery import upload

    started = time.time()
    with session(config, None) as ctx:
        with _progress(ctx, read=False, upload=not dry_run) as bars:
            run = upload(
                ctx,
                _budget(ctx.config, max_seconds, 0),
                only=sink,
                max_batches=max_batches,
                force=force,
                dry_run=dry_run,
                wait=wait,
                progress=bars and bars.sent,
            )
        if dry_run:
            for res in run.sinks:
                for line in res.dry_run:
                    print(line)
            return 0
        if json_out:
            _json(run)
        code = 0
        # An undecodable batch set aside: news once (like a log that cannot be read), then quiet; see status.
        for notice in run.damaged:
            _err(f"shipctl: {notice}")
            code = EXIT_SOURCE_ERRORS
        for res in run.sinks:
            if verbose or res.failed or res.backing_off_until or res.dropped_batches or res.discarded_events:
                for line in _upload_lines(res):
                    _err(line)
            if res.failed and not res.backing_off_until:
                code = EXIT_UPLOAD_FAILED
        return _finish(
            ctx,
            "upload",
            started,
            code,
            {
                "events": sum(r.events for r in run.sinks),
                "batches": sum(r.batches for r in run.sinks),
                "failed": [r.sink for r in run.sinks if r.failed and not r.backing_off_until],
                "backoff": [r.sink for r in run.sinks if r.backing_off_until],
            },
        )


def _monitor_summary(res: Any, *, printed: bool = False) -> str:
    """The -v line of run-monitor (and of run's monitors)."""
    events = sum(len(r.events) for r in res.results)
    due = f", {len(res.not_due)} not due" if res.not_due else ""
    return (
        f"run-monitor: {_n(len(res.results), 'monitor')} ran{due}, {_n(events, 'event')}"
        f" {'printed' if printed else 'queued'}, {_n(len(res.errors), 'error')}"
    )


def run_command(
    config: str | None = None,
    max_seconds: float | None = None,
    max_bytes: int | None = None,
    wait: bool = False,
    json_out: bool = False,
    verbose: bool = False,
) -> int:
    """tail-once, then the monitors that are due, then upload: the one-line crontab."""
    from shipctl import plugins
    from shipctl.commands.common import session
    from shipctl.commands.run import run

    started = time.time()
    with session(config, "run", wait=wait) as ctx:
        plugins.validate(ctx.config.monitors, ctx.config.sinks)
        with _progress(ctx, read=True, upload=True) as bars:
            res = run(
                ctx,
                _budget(ctx.config, max_seconds, max_bytes),
                progress=bars and bars.read,
                sent=bars and bars.sent,
            )
        if json_out:
            _json(res)
        errors = list(res.tail.errors) if res.tail else []
        # A log problem already reported by an earlier run stays quiet (status shows it); see commands/problems.py.
        fresh = _report_tail(ctx, res.tail, verbose).new if res.tail else []
        errors += res.monitors.errors if res.monitors else []
        if res.monitors:
            # A monitor failing the same way run after run is reported once; see commands/problems.py.
            from shipctl.commands.problems import settle_monitors

            monitors_reported = settle_monitors(ctx, res.monitors)
            _report_lines(monitors_reported, verbose)
            fresh = fresh + monitors_reported.new
        for s in res.skipped:
            if verbose or "no [[sinks]]" not in s:
                _err(f"shipctl: skipped {s}")
        up = res.upload
        if verbose:
            if res.tail:
                _err(_tail_summary(res.tail))
            if res.monitors:
                _err(_monitor_summary(res.monitors))
        # A timer tick during backoff stays quiet (cron would mail every minute); status shows it.
        code = EXIT_SOURCE_ERRORS if fresh else 0
        for notice in up.damaged if up is not None else []:  # an undecodable batch set aside, first met now
            _err(f"shipctl: {notice}")
            code = EXIT_SOURCE_ERRORS
        for r in up.sinks if up is not None else []:
            if verbose or (r.failed and not r.backing_off_until) or r.dropped_batches:
                for line in _upload_lines(r):
                    _err(line)
            if r.failed and not r.backing_off_until:
                code = EXIT_UPLOAD_FAILED
        if len(res.skipped) == 3:
            code = 75
        return _finish(
            ctx,
            "run",
            started,
            code,
            {
                "lines": res.tail.lines if res.tail else None,
                "monitors": len(res.monitors.results) if res.monitors else 0,
                "uploaded_events": sum(r.events for r in up.sinks) if up else None,
                "errors": len(errors),
                "skipped": res.skipped,
            },
        )


def _event_dict(source: str, e: dict[str, Any]) -> dict[str, Any]:
    """A monitor's event as ``--print`` and ``--json`` show it (one set of keys for both)."""
    return {"ts": e.get("t"), "kind": e.get("k"), "source": source, "message": e.get("m"), "attrs": e.get("a", {})}


def _print_events(res: Any) -> None:
    import json

    for r in res.results:
        if r.info:  # what the monitor worked from, e.g. a script's parsed -c output
            print(json.dumps({"kind": "config", "source": r.id, "config": r.info}))
        for e in r.events:
            print(json.dumps(_event_dict(r.id, e)))


def _monitor_json(res: Any) -> dict[str, Any]:
    """``run-monitor --json``: each monitor's outcome, its events with the keys ``--print`` uses."""
    return {
        "queued": res.queued,
        "not_due": res.not_due,
        "monitors": [
            {
                "id": r.id,
                "type": r.type,
                "started": r.started,
                "duration": r.duration,
                "samples": r.samples,
                "error": r.error,
                "warnings": r.warnings,
                "config": r.info,
                "events": [_event_dict(r.id, e) for e in r.events],
            }
            for r in res.results
        ],
    }


def run_monitor_command(
    targets: list[str] | None = None,
    config: str | None = None,
    command: str | None = None,
    opt: list[str] | None = None,
    due: bool = False,
    print_only: bool = False,
    wait: bool = False,
    json_out: bool = False,
    verbose: bool = False,
) -> int:
    """Run monitors now: configured ones by id (all if none named), or a monitor type ad hoc."""
    from shipctl import fastcli
    from shipctl.commands.common import session
    from shipctl.config import load_config
    from shipctl.monitors import runner as rm

    started = time.time()
    targets = targets or []
    reported = None
    cfg = load_config(config, require=False)  # an ad hoc run needs no config file
    configured = {m.id for m in rm.monitors_of(cfg)}
    adhoc = command is not None or bool(opt) or (len(targets) == 1 and targets[0] not in configured)
    if adhoc:
        from shipctl import plugins

        known_types = plugins.registry(with_entry_points=True).monitors
        if len(targets) == 1 and targets[0] not in known_types and command is None and not opt:
            ids = ", ".join(sorted(configured)) or "none"
            raise ShipctlError(
                f"no monitor with id {targets[0]!r} in {cfg.file} (configured: {ids}), and no monitor type of "
                f"that name (types: {', '.join(sorted(known_types))})",
                64,
            )
        if len(targets) != 1:
            raise ShipctlError(
                "an ad hoc run takes exactly one monitor type, e.g. run-monitor shell --command 'uname -r'", 64
            )
        options = dict(rm.parse_opt(o) for o in (opt or []))
        if command is not None:
            options["command"] = command
        mon = rm.adhoc_config(targets[0], options)
        if print_only:
            fastcli.end_startup()  # no state file to open: the work begins here
            res = rm.run_adhoc(None, mon, queue=False)
        else:
            with session(config, "run-monitor", wait=wait, config=cfg) as ctx:
                res = rm.run_adhoc(ctx, mon, queue=True)
    else:
        from shipctl import plugins

        if not cfg.files:
            load_config(config)  # no config file: the usual "not found" error
        plugins.validate(cfg.monitors, ())
        with session(config, "run-monitor", wait=wait, config=cfg) as ctx:
            res = rm.run_monitors(ctx, targets, due_only=due, queue=not print_only)
            if not print_only:
                # A monitor failing the same way run after run is reported once; see commands/problems.py.
                from shipctl.commands.problems import settle_monitors

                reported = settle_monitors(ctx, res)
                ctx.state.record_run(
                    "run-monitor",
                    started,
                    reported.exit_code,
                    {"monitors": len(res.results), "errors": len(res.errors)},
                )
                _self_metrics(ctx)
    if print_only:
        _print_events(res)
    elif json_out:
        _json(_monitor_json(res))
    if reported is None:
        # --print and ad hoc runs remember nothing: whoever runs them by hand sees every failure, and exit 65.
        for e in res.errors:
            _err(f"shipctl: {e}")
    else:
        _report_lines(reported, verbose)
    for w in res.warnings:
        _err(f"shipctl: warning: {w}")
    if verbose:
        _err(_monitor_summary(res, printed=print_only))
    if reported.exit_code if reported is not None else res.errors:
        raise Exit(EXIT_SOURCE_ERRORS)
    return 0


# The command functions by name, for shipctl.fastcli (their parameters are fastcli.COMMANDS' keys). Each
# returns 0 or raises Exit (or a ShipctlError).
COMMANDS: dict[str, Callable[..., int]] = {
    "tail-once": tail_once_command,
    "upload": upload_command,
    "run": run_command,
    "run-monitor": run_monitor_command,
}
