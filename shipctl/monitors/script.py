"""The ``script`` monitor: operators' existing metric scripts, unchanged.

``format = "coscale"`` (the default) speaks the CoScale generic-script protocol: ``<script> -c`` prints a JSON
config (cached in the state file while the script keeps its size and mtime), ``<script> -d`` prints ``M`` and
``E`` lines every ``period`` seconds. ``format = "influx"`` runs the command as it is and reads InfluxDB line
protocol, as Telegraf's exec input does. The parsers live in script_parse.py; this module runs the processes.

Two hooks connect it to the state file, both called by run_monitor in the main thread (the worker thread that
runs ``sample()`` must not touch the connection): ``restore_state(conn)`` before the run reads the cached ``-c``
output, ``ScriptOutput.save_state(conn)`` stores the new one and the run record inside the transaction that
queues the events. ``ScriptMonitor.interval`` gives the due check the script's own period.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import time
from typing import Any

from shipctl.monitors.base import MonitorOutput
from shipctl.monitors.script_parse import (
    DEFAULT_PERIOD,
    ScriptConfig,
    parse_config,
    parse_data,
    parse_influx,
)
from shipctl.monitors.shell import run_command
from shipctl.records import record
from shipctl.schema import field as opt
from shipctl.schema import non_negative, one_of
from shipctl.state import scripts as scriptstate

DEFAULT_DATA_TIMEOUT = 60.0  # the protocol's "stopped after 1 minute"
INFLUX_TIMEOUT = 5.0  # Telegraf exec's default
MAX_SHOWN = 10  # bad lines named one by one per run; the rest are counted
TAIL = 400  # characters of stderr kept for status


def _config_timeout(v: float) -> str | None:
    # run_monitor abandons a monitor after DEFAULT_LIMIT + GRACE (65 s); -c plus a 60 s -d must fit in it.
    return None if 0 < v <= 4 else "expected a number above 0 and at most 4 (seconds)"


@record(frozen=True)
class ScriptOptions:
    """Options of the ``script`` monitor: a script whose output is parsed into metrics and events."""

    command: str = opt(doc="a script path, or a command with arguments (python /srv/x.py); run without a shell")
    format: str = opt("coscale", check=one_of("coscale", "influx"), doc="coscale: -c/-d protocol; influx: lines")
    period: float = opt(0.0, check=non_negative, doc="seconds between runs; 0 = the script's own (at least 60)")
    timeout: float = opt(0.0, check=non_negative, doc="seconds before -d is killed; 0 = its maxruntime, else 60")
    config_timeout: float = opt(1.0, check=_config_timeout, doc="seconds -c may take (the protocol says 1)")
    shell: bool = opt(False, doc="run through /bin/sh (the mode flag is appended to the command line)")
    sh_as_bash: bool = opt(True, doc="run #!/bin/sh scripts with bash: many rely on bash-isms dash rejects")


@record(frozen=True)
class Invocation:
    """How a script monitor's command is run, and the file that keys its ``-c`` cache."""

    argv: tuple[str, ...]  # what to run, before the mode flag
    script: str  # the file whose size and mtime key the -c cache
    how: str = ""  # why argv differs from the configured command, for --print


def _is_text_script(head: bytes) -> bool:
    return not head.startswith(b"\x7fELF")


def resolve(command: str, *, shell: bool, sh_as_bash: bool) -> Invocation:
    """What to execute for ``command``, and which file is "the script".

    The script is the command itself when it is a path to a text file; otherwise (``python /srv/x.py``) the
    first argument naming an existing file. A script without the executable bit, or without a ``#!`` line, is
    run through its interpreter (when it names none: bash, or /bin/sh with ``sh_as_bash`` off).
    """
    words = shlex.split(command)
    if not words:
        raise ValueError("empty command")
    prog = words[0]
    found = prog if "/" in prog else shutil.which(prog)
    file = found if found and os.path.isfile(found) else None
    head = b""
    if file:
        try:
            with open(file, "rb") as fh:
                head = fh.read(256)
        except OSError:
            head = b""
    if shell or not file or "/" not in prog or not _is_text_script(head):
        script = next((os.path.abspath(w) for w in words[1:] if os.path.isfile(w)), found or prog)
        return Invocation(tuple(words) if not shell else (command,), script)
    path = os.path.abspath(file)
    rest = tuple(words[1:])
    bash = shutil.which("bash") if sh_as_bash else None
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        interp, *more = line.split(None, 1) or [""]
        arg = more[0].strip() if more else ""  # Linux passes the rest of the line as one argument
        is_sh = os.path.basename(interp) == "sh" or (os.path.basename(interp) == "env" and arg == "sh")
        if bash and is_sh:
            return Invocation((bash, path, *rest), path, "#!/bin/sh script run with bash (sh_as_bash)")
        if os.access(path, os.X_OK):
            return Invocation((path, *rest), path)
        return Invocation((interp, *([arg] if arg else []), path, *rest), path, "not executable: run by its #! line")
    sh = bash or "/bin/sh"
    return Invocation((sh, path, *rest), path, f"no #! line: run with {sh}")


def _tail(text: str, limit: int = TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _one_line(text: str, limit: int = 200) -> str:
    return " | ".join(x.strip() for x in _tail(text, limit).splitlines() if x.strip())


@record
class ScriptOutput(MonitorOutput):
    """A monitor output that also carries what the state file should remember about this run."""

    info: dict[str, Any] | None = None  # the parsed config, shown by --print
    record: scriptstate.RunRecord | None = None
    new_config: tuple[str, str, scriptstate.Cached] | None = None  # (path, argv key, -c output) to cache

    def save_state(self, conn: sqlite3.Connection) -> None:
        if self.new_config is not None:
            path, argv, cached = self.new_config
            scriptstate.store_config(conn, path, argv, cached, time.time())
        if self.record is not None:
            scriptstate.record(conn, self.record)


@record
class _Step:
    """One execution of the script (-c, -d, or the influx command)."""

    name: str
    flag: str
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    killed: bool = False
    error: str | None = None


class ScriptMonitor:
    module = "script_monitor"
    wants_id = True

    def __init__(self, options: ScriptOptions, monitor_id: str = "script") -> None:
        self.options = options
        self.id = monitor_id
        self.cached: scriptstate.Cached | None = None
        self.inv: Invocation | None = None
        self.setup_error: str | None = None
        try:
            self.inv = resolve(options.command, shell=options.shell, sh_as_bash=options.sh_as_bash)
        except ValueError as exc:
            self.setup_error = f"cannot split command {options.command!r}: {exc}"

    @staticmethod
    def interval(conn: sqlite3.Connection, monitor_id: str, options: ScriptOptions) -> float | None:
        """The due check's interval: the configured ``period``, else the script's own from its last ``-c``."""
        if options.period > 0:
            return options.period
        if options.format == "influx":
            return None  # the monitor's sample_interval
        return scriptstate.period(conn, monitor_id) or DEFAULT_PERIOD

    @property
    def _argv_key(self) -> str:
        assert self.inv is not None
        return json.dumps(self.inv.argv)

    def restore_state(self, conn: sqlite3.Connection) -> None:
        if self.inv is not None and self.options.format == "coscale":
            self.cached = scriptstate.cached_config(conn, self.inv.script, self._argv_key)

    # --- running ------------------------------------------------------------------------------------------

    def _run(self, flag: str | None, timeout: float) -> _Step:
        assert self.inv is not None
        o = self.options
        name = f"{o.command} {flag}" if flag else o.command
        step = _Step(name, flag or "")
        # Exactly one flag: some scripts treat any argument other than -c as data mode.
        argv: list[str] | str
        if o.shell:
            argv = f"{o.command} {flag}" if flag else o.command
        else:
            argv = [*self.inv.argv, *([flag] if flag else [])]
        try:
            code, out, err, _took = run_command(argv, shell=o.shell, timeout=timeout)
        except OSError as exc:
            step.error = f"cannot run {name!r}: {exc.strerror or exc}"
            return step
        step.code, step.stdout, step.stderr = code, out, err
        if code is None:
            step.killed = True
            step.error = f"{name} did not finish within {timeout:g} s; killed with its process group"
        elif code != 0:
            step.error = f"{name} exited with {code}" + (f": {_one_line(err)}" if err.strip() else "")
        return step

    def _record(self, out: ScriptOutput, step: _Step | None, period: float | None, bad: int) -> None:
        out.record = scriptstate.RunRecord(
            monitor=self.id,
            command=self.options.command,
            path=self.inv.script if self.inv else "",
            period=period,
            ts=time.time(),
            step=step.flag if step else "",
            exit_code=step.code if step else None,
            killed=bool(step and step.killed),
            stderr_tail=_tail(step.stderr) if step else "",
            bad_lines=bad,
            error=out.error,
        )

    def _bad_lines(self, out: ScriptOutput, name: str, problems: list[tuple[int, str, str]]) -> None:
        for n, why, line in problems[:MAX_SHOWN]:
            shown = line if len(line) <= 120 else line[:117] + "..."
            out.warnings.append(f"{name} line {n}: {why}: {shown!r}")
        if len(problems) > MAX_SHOWN:
            out.warnings.append(f"{name}: {len(problems) - MAX_SHOWN} more bad lines not shown")

    def sample(self) -> MonitorOutput:
        out = ScriptOutput()
        if self.inv is None:
            out.error = self.setup_error
            self._record(out, None, None, 0)
            return out
        if self.options.format == "influx":
            return self._sample_influx(out)
        return self._sample_coscale(out)

    def _load_config(self, out: ScriptOutput) -> tuple[ScriptConfig | None, _Step | None, str]:
        """The parsed -c output: from the cache while the script file is unchanged, else by running -c."""
        assert self.inv is not None
        try:
            st = os.stat(self.inv.script)
        except OSError as exc:
            out.error = f"cannot run {self.options.command!r}: {self.inv.script}: {exc.strerror}"
            return None, None, ""
        c = self.cached
        if c is not None and (c.size, c.mtime_ns) == (st.st_size, st.st_mtime_ns):
            config, _warnings = parse_config(json.loads(c.config))  # its warnings were given when it was fetched
            return config, None, "cache"
        step = self._run("-c", self.options.config_timeout)
        if step.error:
            out.error = step.error
            return None, step, ""
        try:
            raw = json.loads(step.stdout)
        except json.JSONDecodeError as exc:
            start = step.stdout.strip()[:80]
            out.error = f"{step.name} printed no valid JSON ({exc.msg}, line {exc.lineno}): {start!r}"
            return None, step, ""
        if not isinstance(raw, dict):
            out.error = f"{step.name} printed JSON that is not an object: {step.stdout.strip()[:80]!r}"
            return None, step, ""
        config, warnings = parse_config(raw)
        out.warnings += [f"{step.name}: {w}" for w in warnings]
        text = json.dumps(raw, separators=(",", ":"))
        out.new_config = (self.inv.script, self._argv_key, scriptstate.Cached(st.st_size, st.st_mtime_ns, text))
        return config, step, "-c"

    def _sample_coscale(self, out: ScriptOutput) -> ScriptOutput:
        assert self.inv is not None
        o = self.options
        config, cstep, source = self._load_config(out)
        if config is None:
            self._record(out, cstep, None, 0)
            return out
        period = o.period or config.period
        timeout = o.timeout or (config.maxruntime / 1000 if config.maxruntime else DEFAULT_DATA_TIMEOUT)
        out.info = {
            "command": o.command,
            "argv": list(self.inv.argv),
            **({"note": self.inv.how} if self.inv.how else {}),
            "script": self.inv.script,
            "format": "coscale",
            "config_from": source,
            "period": period,
            "timeout": timeout,
            **config.describe(),
        }
        step = self._run("-d", timeout)
        out.error = step.error
        text = step.stdout
        if step.killed and not text.endswith("\n"):
            text = text.rpartition("\n")[0]  # the line it was writing when killed is cut short
        parsed = parse_data(text, config, time.time())
        out.samples, out.events = parsed.samples, parsed.events
        self._bad_lines(out, step.name, parsed.problems)
        self._record(out, step, period, len(parsed.problems))
        return out

    def _sample_influx(self, out: ScriptOutput) -> ScriptOutput:
        assert self.inv is not None
        o = self.options
        timeout = o.timeout or INFLUX_TIMEOUT
        out.info = {"command": o.command, "argv": list(self.inv.argv), "format": "influx", "timeout": timeout}
        step = self._run(None, timeout)
        out.error = step.error
        text = step.stdout
        if step.killed and not text.endswith("\n"):
            text = text.rpartition("\n")[0]
        samples, problems = parse_influx(text)
        out.samples = samples
        self._bad_lines(out, step.name, problems)
        self._record(out, step, o.period or None, len(problems))
        return out


__all__ = ["Invocation", "ScriptMonitor", "ScriptOptions", "ScriptOutput", "resolve"]
