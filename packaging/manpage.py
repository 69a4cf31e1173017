"""Write shipctl(1) from the CLI's own --help texts (every command and subcommand), so the page cannot
drift from the program. Run by build.py: ``python packaging/manpage.py OUT.1``."""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any


def _roff(text: str) -> str:
    """Escape plain text for roff: backslashes, hyphens (so they stay ASCII minus signs), and a leading
    '.' or "'" that would otherwise be read as a request."""
    out = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def _commands(cmd: Any, ctx: Any, path: list[str]) -> list[tuple[list[str], str, str]]:
    """(path, short help, --help text) for ``cmd`` and, depth first, each of its subcommands."""
    found = [(path, cmd.get_short_help_str(limit=200), cmd.get_help(ctx))]
    for name in getattr(cmd, "list_commands", lambda _c: [])(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx, terminal_width=78, max_content_width=78)
        found += _commands(sub, sub_ctx, [*path, name])
    return found


def render() -> str:
    import typer.main

    from shipctl import __version__, cli

    root = typer.main.get_command(cli.app)
    ctx = root.context_class(root, info_name="shipctl", terminal_width=78, max_content_width=78)
    cmds = _commands(root, ctx, ["shipctl"])
    # SOURCE_DATE_EPOCH: a reproducible date for reproducible packages.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    day = datetime.datetime.fromtimestamp(epoch, datetime.UTC) if epoch else datetime.datetime.now(datetime.UTC)
    exits = (cli.__doc__ or "").split("Exit codes:", 1)[-1].strip()
    lines = [
        f'.TH SHIPCTL 1 "{day:%Y-%m-%d}" "shipctl {__version__}" "User Commands"',
        ".SH NAME",
        "shipctl \\- " + _roff(root.help.splitlines()[0] if root.help else ""),
        ".SH SYNOPSIS",
        ".B shipctl",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        "shipctl has no daemon: each command does its work and exits; cron or the shipctl.timer systemd unit"
        " runs \\fBshipctl run\\fR every minute. Everything a run needs to resume (file offsets, the queue,"
        " each sink's cursor, monitor schedules) is kept in one SQLite state file.",
        ".SH COMMANDS",
    ]
    for path, short, _help in cmds[1:]:
        lines += [".TP", f"\\fB{' '.join(path)}\\fR", _roff(short)]
    for path, _short, text in cmds:
        lines += [f'.SH "{" ".join(path).upper()}"', ".nf", _roff(text), ".fi"]
    lines += [
        ".SH EXIT STATUS",
        ".nf",
        _roff(" ".join(exits.split()).replace("; ", "\n")),
        ".fi",
        ".SH FILES",
        ".TP",
        "\\fI/etc/shipctl/shipctl.toml\\fR",
        "The configuration (\\fB\\-\\-config\\fR or \\fB$SHIPCTL_CONFIG\\fR name another); files in"
        " \\fI/etc/shipctl/conf.d/\\fR are merged into it.",
        ".TP",
        "\\fI/var/lib/shipctl/\\fR",
        "The state file (state.db), its lock files and shipctl's own log, owned by the shipctl user.",
        ".TP",
        "\\fI/etc/default/shipctl\\fR",
        "Environment for the systemd unit, e.g. SCALYR_API_KEY=... (mode 0600).",
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBSHIPCTL_CONFIG\\fR",
        "The config file when \\fB\\-\\-config\\fR is not given.",
        ".TP",
        "\\fBSHIPCTL_STATE\\fR",
        "The state file, over the config's agent.state.",
        ".TP",
        "\\fBSHIPCTL_DEBUG\\fR",
        "When set, errors show a traceback.",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBsystemd.timer\\fR(5), \\fBcron\\fR(8);"
        " /usr/share/doc/shipctl/README.md and /usr/share/doc/shipctl/examples/",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = render()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
