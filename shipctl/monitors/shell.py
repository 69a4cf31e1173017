"""The ``shell`` monitor: run a command, emit its output (Scalyr's shell_monitor).

As the Scalyr agent does, the command runs through ``/bin/sh -c``, so pipes, redirections, globs and
``$VARIABLES`` work as written in agent.json. ``shell = false`` runs it without a shell instead: the command is
split into words the way a shell would, and ``|`` or ``>`` are then plain arguments.

A command that fails is data (its output and exit code); one that cannot run at all is the monitor's error (exit
65, shown by status): without a shell, a program that cannot be started; through the shell, its exit codes 127
(not found) and 126 (not executable).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time

from shipctl.monitors.base import GAUGE, MonitorOutput, Sample, as_value, shape_text
from shipctl.records import record
from shipctl.schema import field, non_empty, positive


@record(frozen=True)
class ShellOptions:
    """Options of the ``shell`` monitor: a command whose output is emitted (Scalyr's shell_monitor)."""

    command: str = field(check=non_empty, doc="the command line, run by /bin/sh -c (as the Scalyr agent does)")
    extract: str = field("", regex=True, doc="regex; its first group is kept from the output")
    log_all_lines: bool = False
    max_characters: int = field(200, check=positive)
    timeout: float = field(10.0, check=positive)
    shell: bool = field(True, doc="run through /bin/sh -c (pipes, redirections); false: split into words, no shell")


def run_command(argv: list[str] | str, *, shell: bool, timeout: float) -> tuple[int | None, str, str, float]:
    """Run a command in its own process group; kill the whole group on timeout.
    Returns (exit code or None on timeout, stdout, stderr, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        shell=shell,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        # Either the command itself hangs or something it left in the background holds our pipes open:
        # both end with the whole group killed, so no grandchild outlives the run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group (setsid) and keeps the pipes
            proc.kill()
            proc.wait()
            out, err = b"", b""
        code = None
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - started


class ShellMonitor:
    module = "shell_monitor"

    def __init__(self, options: ShellOptions) -> None:
        self.options = options
        self.extract = re.compile(options.extract) if options.extract else None

    def sample(self) -> MonitorOutput:
        o = self.options
        try:
            argv: list[str] | str = o.command if o.shell else shlex.split(o.command)
        except ValueError as exc:
            return MonitorOutput(error=f"cannot split command {o.command!r}: {exc}")
        if not argv:
            return MonitorOutput(error="empty command")
        try:
            code, stdout, stderr, took = run_command(argv, shell=o.shell, timeout=o.timeout)
        except OSError as exc:
            return MonitorOutput(error=f"cannot run {o.command!r}: {exc.strerror or exc}")
        output = f"{stderr}\n{stdout}" if stderr else stdout
        text, length = shape_text(output, self.extract, o.log_all_lines, o.max_characters)
        extra = {"exit_code": code if code is not None else -1, "duration": round(took, 3), "length": length}
        error = f"timed out after {o.timeout:g} s (process group killed)" if code is None else None
        if o.shell and code in (126, 127):
            # The shell's own answer for a command it could not find (127) or execute (126): the monitor cannot
            # do its job, as when a command without a shell fails to start. The output is still emitted.
            why = (stderr.strip().splitlines() or ["the shell could not run it"])[-1]
            error = f"cannot run {o.command!r}: {why} (exit {code})"
        sample = Sample("output", as_value(text), GAUGE, {"command": o.command}, extra=extra)
        return MonitorOutput(samples=[sample], error=error)
