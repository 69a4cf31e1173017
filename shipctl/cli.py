"""Command line: parse options, call a command function, render its result. The only typer importer.

Exit codes: 0 done; 1 unexpected error (traceback); 64 usage; 65 finished but some source failed;
69 upload failed (batches kept); 73 state file problem; 75 another run holds the lock; 78 config error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
import typer.core

from shipctl import __version__
from shipctl.commands import shipping
from shipctl.commands.shipping import _err, _json
from shipctl.errors import EXIT_USAGE, ShipctlError
from shipctl.fastcli import OPTIONS

# click's UsageError, the base of every command-line mistake; typer vendors click and exports only this child.
_ClickUsageError: type[Exception] = typer.BadParameter.__mro__[1]


class _Group(typer.core.TyperGroup):
    """Turn a ShipctlError into its message and exit code inside the app, so in-process runners
    (CliRunner in tests) see what a shell user sees; main() keeps the same handling as a fallback."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _ClickUsageError as exc:
            exc.exit_code = EXIT_USAGE  # type: ignore[attr-defined]
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _ClickUsageError as exc:
            # click says 2 for a usage mistake; shipctl's documented code is 64 (EX_USAGE), for every one of
            # them: an unknown option or command, a missing argument, a value that does not parse.
            exc.exit_code = EXIT_USAGE  # type: ignore[attr-defined]
            raise
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
    add_completion=True,  # --install-completion / --show-completion [bash|zsh|fish]
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _option(dest: str, **extra: Any) -> Any:
    """The typer option of fastcli's declaration: the fast path and typer read the same flags."""
    o = OPTIONS[dest]
    return typer.Option(*o.flags, help=o.help, metavar=o.metavar, min=o.minimum, **extra)


def _size_option(text: str) -> int:
    try:
        return OPTIONS["max_bytes"].convert(text)  # type: ignore[misc]
    except ValueError as exc:  # "Invalid value for '--max-bytes': expected ..." (exit 64)
        raise typer.BadParameter(str(exc)) from None


ConfigOpt = Annotated[str | None, _option("config")]
WaitOpt = Annotated[bool, _option("wait")]
JsonOpt = Annotated[bool, _option("json_out")]
VerboseOpt = Annotated[bool, _option("verbose")]
MaxSecondsOpt = Annotated[float | None, _option("max_seconds")]
MaxBytesOpt = Annotated[int | None, _option("max_bytes", parser=_size_option)]


def _hot(fn: Callable[..., int], /, **kwargs: Any) -> None:
    """Run one of shipping's commands; its non-zero exit code becomes typer's. The hot commands below pass
    ``**locals()``: their parameters are the command function's, by name (fastcli's declaration)."""
    try:
        fn(**kwargs)
    except shipping.Exit as exc:
        raise typer.Exit(exc.code) from None


@app.command("tail-once", short_help="Read what is new in the logs into the queue.")
def tail_once_cmd(
    config: ConfigOpt = None,
    max_seconds: MaxSecondsOpt = None,
    max_bytes: MaxBytesOpt = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Read what is new in every configured log into the queue (complete lines only)."""
    _hot(shipping.tail_once_command, **locals())


@app.command("upload", short_help="Deliver the queue to every sink.")
def upload_cmd(
    config: ConfigOpt = None,
    max_seconds: MaxSecondsOpt = None,
    max_batches: Annotated[int, _option("max_batches")] = 0,
    force: Annotated[bool, _option("force")] = False,
    dry_run: Annotated[bool, _option("dry_run")] = False,
    sink: Annotated[list[str] | None, _option("sink")] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Deliver the queue to every configured sink (each from its own cursor); a batch leaves the queue once
    every sink that takes it has it."""
    _hot(shipping.upload_command, **locals())


@app.command("run-monitor", short_help="Run monitors now (configured, or one type ad hoc).")
def run_monitor_cmd(
    targets: Annotated[
        list[str] | None,
        typer.Argument(metavar="[MONITOR]...", help="Configured monitor ids, or one monitor type for an ad hoc run."),
    ] = None,
    config: ConfigOpt = None,
    command: Annotated[str | None, _option("command")] = None,
    opt: Annotated[list[str] | None, _option("opt")] = None,
    due: Annotated[bool, _option("due")] = False,
    print_only: Annotated[bool, _option("print_only")] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run monitors now: configured ones by id (all if none named), or a monitor type ad hoc."""
    _hot(shipping.run_monitor_command, **locals())


@app.command("run", short_help="tail-once, due monitors and upload: the one-line crontab.")
def run_cmd(
    config: ConfigOpt = None,
    max_seconds: MaxSecondsOpt = None,
    max_bytes: MaxBytesOpt = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """tail-once, then the monitors that are due, then upload: the one-line crontab."""
    _hot(shipping.run_command, **locals())


@app.command("status", short_help="Where everything stands (--json for machines).")
def status_cmd(
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            metavar="NAME",
            help="Show only a sparkline of this metric's recent history (exit 64 when it has none).",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Monitoring-plugin output and exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) against the"
            " [agent.health] levels, for Nagios/Icinga/NRPE/check_by_ssh or a systemd OnFailure= hook.",
        ),
    ] = False,
) -> None:
    """Where everything stands: files and offsets, queue, uploads, monitors, recent problems."""
    if check:
        from shipctl.commands.health import check as health_check
        from shipctl.commands.status import status as gather

        outcome = health_check(config, gather)
        if json_out:
            _json(outcome.to_dict())
        else:
            print("\n".join(outcome.lines()))
        raise typer.Exit(outcome.code)
    from shipctl.commands.status import status
    from shipctl.config import load_config

    res = status(load_config(config, env_optional=True), verbose=verbose, metric=metric)
    if json_out:
        _json(res.to_dict())
    if metric and not res.metric_history:
        known = ", ".join(res.known_metrics) or "none yet"
        raise ShipctlError(f"no history for metric {metric!r} (metrics with history: {known})", EXIT_USAGE)
    if json_out:
        return
    from shipctl import render

    if metric:  # just the sparkline: a quick look, or a line for a script or a tmux pane
        render.metric(res)
        return
    render.status(res, verbose=verbose)


@app.command("check-config", short_help="Validate the config; print it resolved, secrets masked.")
def check_config_cmd(config: ConfigOpt = None) -> None:
    """Validate the config and print it resolved (JSON), secrets masked."""
    from shipctl.commands.check_config import check_config
    from shipctl.config import load_config

    resolved = check_config(load_config(config))
    _json(resolved)
    for warning in resolved["warnings"]:
        _err(f"shipctl: warning: {warning}")


@app.command("preview", short_help="What a log's rules would send for FILE; no state touched.")
def preview_cmd(
    file: Annotated[str, typer.Argument(metavar="FILE", help="The file to preview.")],
    config: ConfigOpt = None,
    log: Annotated[
        str | None,
        typer.Option(
            "--log", metavar="ID", help="Use the rules of this [[logs]] id (default: the entry tail-once uses)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, metavar="N", help="Show at most this many events (0 means no limit).")
    ] = 0,
) -> None:
    """Show what would be sent for FILE after grouping, sampling and redaction; the state is untouched."""
    import json

    from shipctl.commands.preview import preview
    from shipctl.config import load_config

    res = preview(load_config(config), file, log, limit=limit)
    for e in res.events:
        print(json.dumps(e, ensure_ascii=False))
    from shipctl.humanize import plural

    stopped = " (stopped at --limit: counts cover the part read)" if limit and len(res.events) >= limit else ""
    why = "named by --log" if res.chosen_by == "--log" else "the first entry whose path matches the file"
    _err(f"preview: rules of [[logs]] entry {res.log_id!r} (path {res.log_path}; {why})")
    _err(
        f"preview: {plural(res.lines, 'line')} -> {plural(len(res.events), 'event')},"
        f" {plural(res.lines_dropped, 'line')} dropped by sampling, {plural(res.redactions, 'redaction')}{stopped}"
    )


def _subcommands(name: str, *, help: str, short_help: str) -> typer.Typer:
    """A group of subcommands (``shipctl NAME ...``) added to the app, shown and parsed like the top level."""
    group = typer.Typer(cls=_Group, help=help, short_help=short_help, no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(group, name=name)
    return group


state_app = _subcommands(
    "state",
    help="Check the state file, or rebuild a damaged one (see README: recovering the state file).",
    short_help="Check or recover the state file.",
)


@state_app.command("check", short_help="Is the state file sound? (read-only; exit 73 when damaged)")
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


@state_app.command("recover", short_help="Set a damaged state file aside and rebuild it.")
def state_recover_cmd(
    config: ConfigOpt = None,
    logs_from: Annotated[
        str | None,
        typer.Option(
            "--logs-from",
            metavar="start|end",
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


timers_app = _subcommands(
    "timers",
    help="Run shipctl on a schedule: sandboxed systemd units, or an /etc/cron.d file without systemd.",
    short_help="Install the systemd timer (or a cron file) that runs shipctl.",
)


@timers_app.command("install")
def timers_install_cmd(
    every: Annotated[
        str,
        typer.Option(
            "--every",
            metavar="INTERVAL",
            help="How often: 5s-30s dividing a minute, 1m-30m dividing an hour, or 1h-24h.",
        ),
    ] = "1m",
    user: Annotated[
        str, typer.Option("--user", metavar="USER", help="The user shipctl runs as (not root).")
    ] = "shipctl",
    config: Annotated[
        str, typer.Option("--config", "-c", metavar="PATH", help="The config file the runs use.")
    ] = "/etc/shipctl/shipctl.toml",
    exec_path: Annotated[
        str, typer.Option("--exec", metavar="PATH", help="The shipctl binary the runs start.")
    ] = "/usr/bin/shipctl",
    print_only: Annotated[bool, typer.Option("--print", help="Print the files on stdout; write nothing.")] = False,
    cron: Annotated[bool, typer.Option("--cron", help="Write /etc/cron.d/shipctl instead (no systemd).")] = False,
    root: Annotated[
        str,
        typer.Option(
            "--root", metavar="DIR", help="Install under this directory (an image): systemctl --root enable, no start."
        ),
    ] = "/",
) -> None:
    """Write shipctl.service and shipctl.timer (or /etc/cron.d/shipctl with --cron) and enable them.
    Exit 69 when systemd is not running (use --cron), 67 when the user does not exist."""
    from shipctl.commands import timers

    spec = timers.Spec(timers.parse_every(every), user, config, exec_path)
    res = timers.install(spec, root=root, cron=cron, print_only=print_only)
    if print_only:
        print("\n".join(f"# ==> {f.path} <==\n{f.text}" for f in res.files), end="")
        return
    for note in res.notes:
        _err(f"shipctl: note: {note}")
    for f in res.files:
        _err(f"shipctl: wrote {f.path}" + ("" if root == "/" else f" under {root}"))
    for argv in res.commands:
        _err(f"shipctl: ran {' '.join(argv)}")


@timers_app.command("uninstall")
def timers_uninstall_cmd(
    print_only: Annotated[bool, typer.Option("--print", help="Say what would be removed; change nothing.")] = False,
    cron: Annotated[bool, typer.Option("--cron", help="Remove /etc/cron.d/shipctl instead.")] = False,
    root: Annotated[
        str, typer.Option("--root", metavar="DIR", help="Uninstall from this directory (an image): systemctl --root.")
    ] = "/",
) -> None:
    """Disable and remove what `timers install` wrote (units in /etc/systemd/system, or /etc/cron.d/shipctl with
    --cron); never the packaged units in /usr/lib/systemd/system, nor the state. Exit 69 when systemd is not
    running (use --cron)."""
    from shipctl.commands import timers

    res = timers.uninstall(root=root, cron=cron, print_only=print_only)
    under = "" if root == "/" else f" under {root}"
    if print_only:
        for path in res.removed:
            print(f"would remove {path}{under}")
        for argv in res.commands:
            print(f"would run {' '.join(argv)}")
    for note in res.notes:
        _err(f"shipctl: note: {note}")
    if print_only:
        return
    for argv in res.commands:
        _err(f"shipctl: ran {' '.join(argv)}")
    for path in res.removed:
        _err(f"shipctl: removed {path}{under}")


config_app = _subcommands(
    "config",
    help="Work with config files: convert a Scalyr agent.json to shipctl's TOML.",
    short_help="Convert a Scalyr agent.json to TOML.",
)


@config_app.command("convert")
def config_convert_cmd(
    file: Annotated[
        str, typer.Argument(metavar="AGENT_JSON", help="The agent.json to convert (its agent.d/*.json are merged in).")
    ],
) -> None:
    """Print the shipctl TOML equivalent to a Scalyr agent.json; keys without an equivalent become comments."""
    from shipctl.commands.convert import convert

    res = convert(file)
    sys.stdout.write(res.toml)
    for warning in res.warnings:
        _err(f"shipctl: warning: {warning}")


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


def main() -> None:
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
