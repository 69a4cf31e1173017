"""Command line: parse options, call a command function, render its result. The only typer importer.

Exit codes: 0 done; 1 unexpected error (traceback); 64 usage; 65 finished but some source failed;
69 upload failed (batches kept); 73 state file problem; 75 another run holds the lock; 78 config error.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any

import typer
import typer.core

from shipctl import __version__
from shipctl.errors import ShipctlError

EXIT_SOURCE_ERRORS = 65
EXIT_UPLOAD_FAILED = 69


class _Group(typer.core.TyperGroup):
    """Turn a ShipctlError into its message and exit code inside the app, so in-process runners
    (CliRunner in tests) see what a shell user sees; main() keeps the same handling as a fallback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ShipctlError as exc:
            if os.environ.get("SHIPCTL_DEBUG"):
                raise
            _err(f"shipctl: {exc.message}")
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="shipctl",
    help="Daemonless log and metrics shipper: run from cron or a systemd timer; state in one SQLite file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Config file (default $SHIPCTL_CONFIG or /etc/shipctl/shipctl.toml)."),
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for a concurrent run of this command to finish.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Print a summary on stderr.")]
MaxSecondsOpt = Annotated[
    float | None,
    typer.Option("--max-seconds", min=0, help="Stop cleanly after this long (default agent.max_seconds; 0: no limit)."),
]
MaxBytesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-bytes", min=0, help="Stop cleanly after reading this much (default agent.max_bytes; 0: no limit)."
    ),
]


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


def _finish(ctx: Any, command: str, started: float, code: int, summary: dict[str, Any]) -> None:
    ctx.state.record_run(command, started, code, summary)
    if code or any(v for v in summary.values() if isinstance(v, int | float | list)):
        # The tool's own log gets a line per run that did something; idle timer ticks stay silent.
        from shipctl.runtime import log

        log.info("%s: exit %d %s", command, code, " ".join(f"{k}={v}" for k, v in summary.items()))
    if code:
        raise typer.Exit(code)


def _tail_progress(ctx: Any) -> Any:
    """A progress bar when stderr is a terminal and the known backlog is large."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from shipctl.tail.follower import pending_bytes

    total = sum(pending_bytes(ctx, lg) for lg in ctx.config.logs)
    if total < 64 << 20:
        return contextlib.nullcontext(None)
    from shipctl.render import progress

    return progress(total, "tail-once")


def _tail_summary(res: Any) -> str:
    text = f"tail-once: {res.lines} lines, {res.bytes} bytes, {res.batches} batches in {res.elapsed:.2f}s"
    return text + (f" (stopped: {res.stopped}; the rest follows next run)" if res.stopped else "")


@app.command("tail-once")
def tail_once_cmd(
    config: ConfigOpt = None,
    max_seconds: MaxSecondsOpt = None,
    max_bytes: MaxBytesOpt = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Read what is new in every configured log into the queue (complete lines only)."""
    from shipctl.commands.common import session
    from shipctl.tail.follower import tail_once

    started = time.time()
    with session(config, "tail-once", wait=wait) as ctx:
        with _tail_progress(ctx) as advance:
            res = tail_once(ctx, _budget(ctx.config, max_seconds, max_bytes), progress=advance)
        if json_out:
            _json(res)
        for e in res.errors:
            _err(f"shipctl: {e}")
        if verbose:
            _err(_tail_summary(res))
        code = EXIT_SOURCE_ERRORS if res.errors else 0
        _finish(
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


def _n(count: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith(("ch", "s")) else "s")
    return f"{count} {noun if count == 1 else plural}"


def _upload_lines(res: Any) -> list[str]:
    lines = []
    if res.skipped:
        return [f"upload: skipped {res.skipped}"]
    if res.dropped_batches:
        lines.append(
            f"upload: QUEUE OVER agent.max_queue_bytes: dropped the {res.dropped_batches} oldest batches"
            f" ({res.dropped_events} events) unsent to {res.sink}"
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
            f"upload: {_n(res.events, 'event')} in {_n(res.batches, 'batch')} ({res.bytes} bytes,"
            f" {_n(res.requests, 'request')}) to {res.sink}, {_n(res.remaining_batches, 'batch')} left"
        )
    if res.discarded_batches or res.discarded_events:
        lines.append(
            f"upload: {res.sink}: receiver discarded {res.discarded_events} events ({res.discarded_batches} batches)"
        )
    if res.request_limit:
        lines.append(
            f"upload: {res.sink}: receiver said requestTooLarge; requests are now at most {res.request_limit} bytes"
        )
    if res.failed:
        lines.append(f"upload: {res.sink}: failed: {res.failed}; batches kept for the next run")
    return lines


@app.command("upload")
def upload_cmd(
    config: ConfigOpt = None,
    max_seconds: MaxSecondsOpt = None,
    max_batches: Annotated[int, typer.Option("--max-batches", min=0, help="Send at most this many batches.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Ignore the backoff after failures.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; change nothing.")] = False,
    sink: Annotated[
        list[str] | None, typer.Option("--sink", help="Deliver to this sink id only (repeatable; default: all).")
    ] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Deliver the queue to every configured sink (each from its own cursor); a batch leaves the queue once
    every sink that takes it has it."""
    from shipctl.commands.common import session
    from shipctl.delivery import upload

    started = time.time()
    with session(config, None) as ctx:
        run = upload(
            ctx,
            _budget(ctx.config, max_seconds, 0),
            only=sink,
            max_batches=max_batches,
            force=force,
            dry_run=dry_run,
            wait=wait,
        )
        if dry_run:
            for res in run.sinks:
                for line in res.dry_run:
                    print(line)
            return
        if json_out:
            _json(run)
        code = 0
        for res in run.sinks:
            if verbose or res.failed or res.backing_off_until or res.dropped_batches or res.discarded_events:
                for line in _upload_lines(res):
                    _err(line)
            if res.failed and not res.backing_off_until:
                code = EXIT_UPLOAD_FAILED
        _finish(
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


def _print_events(res: Any) -> None:
    import json

    for r in res.results:
        if r.info:  # what the monitor worked from, e.g. a script's parsed -c output
            print(json.dumps({"kind": "config", "source": r.id, "config": r.info}))
        for e in r.events:
            print(
                json.dumps(
                    {
                        "ts": e.get("t"),
                        "kind": e.get("k"),
                        "source": r.id,
                        "message": e.get("m"),
                        "attrs": e.get("a", {}),
                    }
                )
            )


@app.command("run-monitor")
def run_monitor_cmd(
    targets: Annotated[
        list[str] | None, typer.Argument(help="Configured monitor ids, or one monitor type for an ad hoc run.")
    ] = None,
    config: ConfigOpt = None,
    command: Annotated[
        str | None, typer.Option("--command", help="Ad hoc: the command of a shell or script monitor.")
    ] = None,
    opt: Annotated[
        list[str] | None, typer.Option("--opt", help="Ad hoc: a monitor option as key=value (repeatable).")
    ] = None,
    due: Annotated[bool, typer.Option("--due", help="Run only the monitors whose interval has elapsed.")] = False,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print what would be queued (JSON lines); queue nothing.")
    ] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run monitors now: configured ones by id (all if none named), or a monitor type ad hoc."""
    from shipctl.commands.common import session
    from shipctl.config import load_config
    from shipctl.monitors import runner as rm

    started = time.time()
    targets = targets or []
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
                ctx.state.record_run(
                    "run-monitor",
                    started,
                    EXIT_SOURCE_ERRORS if res.errors else 0,
                    {"monitors": len(res.results), "errors": len(res.errors)},
                )
    if print_only:
        _print_events(res)
    elif json_out:
        _json(res)
    for e in res.errors:
        _err(f"shipctl: {e}")
    for w in res.warnings:
        _err(f"shipctl: warning: {w}")
    if res.errors:
        raise typer.Exit(EXIT_SOURCE_ERRORS)


@app.command("run")
def run_cmd(
    config: ConfigOpt = None,
    max_seconds: MaxSecondsOpt = None,
    max_bytes: MaxBytesOpt = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """tail-once, then the monitors that are due, then upload: the one-line crontab."""
    from shipctl import plugins
    from shipctl.commands.common import session
    from shipctl.commands.run import run

    started = time.time()
    with session(config, "run", wait=wait) as ctx:
        plugins.validate(ctx.config.monitors, ctx.config.sinks)
        with _tail_progress(ctx) as advance:
            res = run(ctx, _budget(ctx.config, max_seconds, max_bytes), progress=advance)
        if json_out:
            _json(res)
        errors = list(res.tail.errors) if res.tail else []
        errors += res.monitors.errors if res.monitors else []
        for e in errors:
            _err(f"shipctl: {e}")
        for s in res.skipped:
            if verbose or "no [[sinks]]" not in s:
                _err(f"shipctl: skipped {s}")
        up = res.upload
        if verbose:
            if res.tail:
                _err(_tail_summary(res.tail))
            if res.monitors:
                _err(f"run-monitor: {len(res.monitors.results)} ran, {len(res.monitors.not_due)} not due")
        # A timer tick during backoff stays quiet (cron would mail every minute); status shows it.
        code = EXIT_SOURCE_ERRORS if errors else 0
        for r in up.sinks if up is not None else []:
            if verbose or (r.failed and not r.backing_off_until) or r.dropped_batches:
                for line in _upload_lines(r):
                    _err(line)
            if r.failed and not r.backing_off_until:
                code = EXIT_UPLOAD_FAILED
        if len(res.skipped) == 3:
            code = 75
        _finish(
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


@app.command("status")
def status_cmd(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show recent problems and runs.")] = False,
    json_out: JsonOpt = False,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Also show a sparkline of this metric's recent history.")
    ] = None,
) -> None:
    """Where everything stands: files and offsets, queue, uploads, monitors, recent problems."""
    from shipctl.commands.status import status
    from shipctl.config import load_config

    res = status(load_config(config, env_optional=True), verbose=verbose, metric=metric)
    if json_out:
        _json(res.to_dict())
        return
    from shipctl import render

    render.status(res, verbose=verbose)


@app.command("check-config")
def check_config_cmd(config: ConfigOpt = None) -> None:
    """Validate the config and print it resolved (JSON), secrets masked."""
    from shipctl.commands.check_config import check_config
    from shipctl.config import load_config

    resolved = check_config(load_config(config))
    _json(resolved)
    for warning in resolved["warnings"]:
        _err(f"shipctl: warning: {warning}")


@app.command("preview")
def preview_cmd(
    file: Annotated[str, typer.Argument(help="The file to preview.")],
    config: ConfigOpt = None,
    log: Annotated[str | None, typer.Option("--log", help="Use the rules of this [[logs]] id.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many events (0 = all).")] = 0,
) -> None:
    """Show what would be sent for FILE after grouping, sampling and redaction; the state is untouched."""
    import json

    from shipctl.commands.preview import preview
    from shipctl.config import load_config

    res = preview(load_config(config), file, log, limit=limit)
    for e in res.events:
        print(json.dumps(e, ensure_ascii=False))
    stopped = " (stopped at --limit: counts cover the part read)" if limit and len(res.events) >= limit else ""
    _err(
        f"preview: {res.lines} lines -> {len(res.events)} events, {res.lines_dropped} dropped by sampling,"
        f" {res.redactions} redactions (log {res.log_id}){stopped}"
    )


state_app = typer.Typer(
    cls=_Group,
    help="Check the state file, or rebuild a damaged one (see README: recovering the state file).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(state_app, name="state")


@state_app.command("check")
def state_check_cmd(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Read-only: integrity, schema version, queued batches, sinks' cursors, and what recover could save.
    Exit 0 when sound (or not created yet), 73 when damaged."""
    from shipctl.commands.state_cmd import check
    from shipctl.config import load_config

    res = check(load_config(config, require=False, env_optional=True))
    if json_out:
        _json(res)
    else:
        from shipctl import render

        render.state_check(res)
    if res.exit_code:
        raise typer.Exit(res.exit_code)


@state_app.command("recover")
def state_recover_cmd(
    config: ConfigOpt = None,
    logs_from: Annotated[
        str | None,
        typer.Option(
            "--logs-from",
            help="Where logs whose offsets are lost resume: 'start' (read again: repeats what was shipped) or"
            " 'end' (skip what they hold now). Required only when offsets cannot be recovered.",
        ),
    ] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Move a damaged state file aside (state.db.damaged-<time>) and rebuild it from what can still be read:
    queued batches, file offsets, sinks' cursors, session and sequence numbers."""
    from shipctl.commands.state_cmd import recover
    from shipctl.config import load_config

    res = recover(load_config(config, require=False, env_optional=True), logs_from=logs_from, wait=wait)
    if json_out:
        _json(res)
    else:
        from shipctl import render

        render.state_recover(res)


def _version_flag(value: bool) -> None:
    if value:
        print(f"shipctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_flag, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Daemonless log and metrics shipper: run from cron or a systemd timer; state in one SQLite file."""


@app.command("version")
def version_cmd() -> None:
    """Print the version."""
    print(f"shipctl {__version__}")


def _enable_completion() -> None:
    """Shell completion (the scripts installed by the packages, or ``_SHIPCTL_COMPLETE=source_bash shipctl``
    for one's own): typer answers it only once its shell classes are registered, which ``add_completion=False``
    skips; registering them only when asked keeps the ordinary run from importing completion code."""
    if os.environ.get("_SHIPCTL_COMPLETE"):
        from typer._completion_classes import completion_init  # typer is pinned to one minor (pyproject)

        completion_init()


def main() -> None:
    _enable_completion()
    try:
        app()
    except ShipctlError as exc:
        if os.environ.get("SHIPCTL_DEBUG"):
            raise
        _err(f"shipctl: {exc.message}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("shipctl: interrupted")
        sys.exit(130)
