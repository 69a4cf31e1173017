"""The console script's entry point, and the one declaration of the options of the hot commands.

cron starts ``shipctl run`` (or ``tail-once``, ``upload``) every minute on every server, and most of those
runs find nothing to do. Importing typer and building its app costs more than such a run's actual work, so
:func:`main` parses the argv of those commands itself when it is certain to read it the way typer would:
each option in the long form (``--name``, ``--name=value``, ``--name value``) or as its documented short
flag on its own (``-c PATH``, ``-v``), each value accepted by the same conversion and range check. Anything
else (``--help``, an unknown or abbreviated option, combined short flags, a value that does not parse, any
other command, shell completion) goes to the typer app in :mod:`shipctl.cli`, which owns every usage
message, so both paths give the same result for the same argv. cli.py builds the typer options of these
commands from :data:`OPTIONS` (and a test checks the two agree), so an option is declared once.

This module imports nothing beyond the standard library's already-loaded modules: the commands it calls
import what their work needs.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any


class Opt:
    """One command-line option: its flags, how its value converts, and its help."""

    __slots__ = ("convert", "dest", "flags", "help", "metavar", "minimum", "multiple")

    def __init__(
        self,
        dest: str,
        flags: tuple[str, ...],
        help: str,
        *,
        convert: Callable[[str], Any] | None = None,
        metavar: str | None = None,
        minimum: float | None = None,
        multiple: bool = False,
    ) -> None:
        self.dest = dest  # the command function's parameter
        self.flags = flags  # the long name first, then the short one if any
        self.help = help
        self.convert = convert  # None: a flag without a value (True when given)
        self.metavar = metavar
        self.minimum = minimum  # inclusive lower bound of a number, as typer's min=
        self.multiple = multiple  # repeatable: every value given, in order

    @property
    def is_flag(self) -> bool:
        return self.convert is None


def _size(text: str) -> int:
    from shipctl.humanize import parse_size

    return parse_size(text)


# -v means one thing everywhere: say more about what was done. Run commands then print their summary on
# stderr (stdout stays data); status, whose output is the report itself, adds recent runs and all problems.
VERBOSE_HELP = "More detail: what the run did, on stderr (status: also recent runs and every problem)."

OPTIONS: dict[str, Opt] = {
    o.dest: o
    for o in (
        Opt(
            "config",
            ("--config", "-c"),
            "Config file (default $SHIPCTL_CONFIG or /etc/shipctl/shipctl.toml).",
            convert=str,
            metavar="PATH",
        ),
        Opt(
            "max_seconds",
            ("--max-seconds",),
            "Stop cleanly after this many seconds (default agent.max_seconds; 0 means no limit).",
            convert=float,
            metavar="SECONDS",
            minimum=0,
        ),
        Opt(
            "max_bytes",
            ("--max-bytes",),
            "Stop cleanly after reading this much: bytes, or 512K, 100M, 2G (KiB/MiB/GiB also; powers of 1024)"
            " (default agent.max_bytes; 0 means no limit).",
            convert=_size,
            metavar="SIZE",
        ),
        Opt("wait", ("--wait",), "Wait for a concurrent run of this command to finish."),
        Opt("json_out", ("--json",), "Print the result as JSON on stdout."),
        Opt("verbose", ("--verbose", "-v"), VERBOSE_HELP),
        Opt(
            "max_batches",
            ("--max-batches",),
            "Send at most this many batches (0 means no limit).",
            convert=int,
            metavar="N",
            minimum=0,
        ),
        Opt("force", ("--force",), "Ignore the backoff after failures."),
        Opt("dry_run", ("--dry-run",), "Show what would be sent; change nothing."),
        Opt(
            "sink",
            ("--sink",),
            "Deliver to this sink id only (repeatable; default: all).",
            convert=str,
            metavar="ID",
            multiple=True,
        ),
        Opt(
            "command",
            ("--command",),
            "Ad hoc: the command of a shell or script monitor.",
            convert=str,
            metavar="COMMAND",
        ),
        Opt(
            "opt",
            ("--opt",),
            "Ad hoc: a monitor option as key=value (repeatable).",
            convert=str,
            metavar="KEY=VALUE",
            multiple=True,
        ),
        Opt("due", ("--due",), "Run only the monitors whose interval has elapsed."),
        Opt("print_only", ("--print",), "Print what would be queued (JSON lines); queue nothing."),
    )
}

# The parameter that takes a command's arguments (every word that is not an option), for commands with one.
ARGUMENTS = {"run-monitor": "targets"}

# The hot commands: their parameters (of the functions in shipctl.commands.shipping) and defaults.
COMMANDS: dict[str, dict[str, Any]] = {
    "tail-once": {"config": None, "max_seconds": None, "max_bytes": None, "wait": False, "json_out": False,
                  "verbose": False},
    "upload": {"config": None, "max_seconds": None, "max_batches": 0, "force": False, "dry_run": False,
               "sink": None, "wait": False, "json_out": False, "verbose": False},
    "run": {"config": None, "max_seconds": None, "max_bytes": None, "wait": False, "json_out": False,
            "verbose": False},
    "run-monitor": {"targets": None, "config": None, "command": None, "opt": None, "due": False,
                    "print_only": False, "wait": False, "json_out": False, "verbose": False},
}  # fmt: skip


def parse(argv: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """``(command, keyword arguments)`` when ``argv`` is a hot command that typer would accept and read the
    same way; None for anything that typer must see (it then gives the usual result or usage error)."""
    if not argv or argv[0] not in COMMANDS:
        return None
    command = argv[0]
    kwargs = dict(COMMANDS[command])
    positional = ARGUMENTS.get(command)
    by_flag = {f: OPTIONS[d] for d in kwargs if d != positional for f in OPTIONS[d].flags}
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if positional and arg and not arg.startswith("-"):
            # typer reads words between options as the command's arguments too, in order.
            kwargs[positional] = [*(kwargs[positional] or ()), arg]
            continue
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = by_flag.get(name)
        if opt is None or (eq and opt.is_flag):
            return None  # an argument, --help, --, -vc, -cPATH, --wait=x...: typer reads or rejects it
        if opt.is_flag:
            kwargs[opt.dest] = True
            continue
        if eq:
            text = inline
        elif i < len(argv):
            text = argv[i]
            i += 1
        else:
            return None  # "requires an argument"
        try:
            value = opt.convert(text)  # type: ignore[misc]
        except ValueError:
            return None  # typer says why
        if opt.minimum is not None and value < opt.minimum:
            return None
        if opt.multiple:
            kwargs[opt.dest] = [*(kwargs[opt.dest] or ()), value]
        else:
            kwargs[opt.dest] = value  # the last one wins, as in typer
    return command, kwargs


def _completing() -> bool:
    # click's shell completion sets _<PROG>_COMPLETE; the program name follows argv[0], so look for any.
    return any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ)


def run_hot(command: str, kwargs: dict[str, Any]) -> int:
    """Run a parsed hot command; its exit code, or the code and one line of a ShipctlError, as typer's path."""
    from shipctl.commands import shipping
    from shipctl.errors import ShipctlError

    try:
        return shipping.COMMANDS[command](**kwargs)
    except shipping.Exit as exc:
        return exc.code
    except ShipctlError as exc:
        if os.environ.get("SHIPCTL_DEBUG"):
            raise
        print(f"shipctl: {exc.message}", file=sys.stderr)
        return exc.exit_code


class _DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module until an attribute of it is asked for, then loads the real one
    (which replaces it there) and hands over that attribute, then and for every later one."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def _defer_inspect() -> None:
    """``dataclasses`` imports ``inspect`` (which imports ``ast``, ``dis``, ``tokenize``: ~0.7 MiB of the 18 MiB
    of a no-op run, issue 13) for one use: the generated docstring of a dataclass that has none. Every dataclass
    a hot command creates has a docstring (a test checks an idle run loads no ``ast``), so ``inspect`` is loaded
    only by code that uses it, when it does."""
    if "inspect" not in sys.modules:
        sys.modules["inspect"] = _DeferredModule("inspect")


# True from the start of a hot command until end_startup(): the cyclic garbage collector is off meanwhile.
_starting = False


def _start_up() -> None:
    """Turn the cyclic garbage collector off while a hot command starts. Start-up (imports, ~50 dataclasses,
    the config) allocates tens of thousands of objects that live until exit, and the collector would walk them
    again and again as they pile up (~3 ms of a no-op run's ~65, issue 13); they hold no garbage worth finding.
    """
    global _starting
    if gc.isenabled():  # an embedder that turned it off keeps it off
        gc.disable()
        _starting = True


def end_startup() -> None:
    """The command's work begins (its state file is open): collect garbage as usual again. What start-up made
    is moved to the collector's permanent generation first, so that collections do not walk it (that only
    moved the cost to the first one). Does nothing outside a hot command started by :func:`main`."""
    global _starting
    if _starting:
        _starting = False
        gc.freeze()
        gc.enable()


def main() -> None:
    """The ``shipctl`` console script: a hot command directly, anything else through the typer app."""
    parsed = None if _completing() else parse(sys.argv[1:])
    if parsed is None:
        from shipctl.cli import main as typer_main

        typer_main()
        return
    _defer_inspect()
    _start_up()
    try:
        code = run_hot(*parsed)
    except KeyboardInterrupt:
        sys.exit(130)  # typer's answer to Ctrl-C inside a command: exit 130, nothing printed
    except EOFError:
        print(file=sys.stderr)
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        # stdout went away (e.g. `shipctl run --json | head -c1`): exit 1 without a second error at
        # interpreter shutdown, as typer does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    finally:
        end_startup()  # a command that ended before its work began (say a config error)
    # Nothing is left to collect that matters (the state file is closed, the log handlers are flushed and
    # closed at exit as usual): freezing spares the interpreter's collections at exit a walk over every object
    # of the run (~3 ms of a no-op run, issue 13).
    gc.freeze()
    sys.exit(code)
