"""The ``shell`` monitor: run a command, emit its output (Scalyr's shell_monitor)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

from shipctl.monitors.base import GAUGE, MonitorOutput, Sample
from shipctl.schema import field, positive


@dataclass(frozen=True)
class ShellOptions:
    command: str = field(doc="the command; split like a shell would, but run without one")
    extract: str = field("", regex=True, doc="regex; its first group is kept from the output")
    log_all_lines: bool = False
    max_characters: int = field(200, check=positive)
    timeout: float = field(10.0, check=positive)
    shell: bool = field(False, doc="run through /bin/sh (pipes, globs); off by default")


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
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
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
        try:
            code, stdout, stderr, took = run_command(argv, shell=o.shell, timeout=o.timeout)
        except OSError as exc:
            return MonitorOutput(error=f"cannot run {o.command!r}: {exc.strerror or exc}")
        output = f"{stderr}\n{stdout}" if stderr else stdout
        if self.extract is not None:
            m = self.extract.search(output)
            output = (m.group(1) if m.groups() else m.group(0)) if m else ""
        if not o.log_all_lines:
            output = output.strip("\n").split("\n", 1)[0]
        else:
            output = output.rstrip("\n")
        length = len(output)
        if length > o.max_characters:
            output = output[: o.max_characters] + "..."
        value: float | int | str = output
        if re.fullmatch(r"-?\d+", output.strip()):
            value = int(output)
        elif re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", output.strip()):
            value = float(output)
        dims = {
            "command": o.command,
            "exit_code": code if code is not None else -1,
            "duration": round(took, 3),
            "length": length,
        }
        error = f"timed out after {o.timeout:g} s (process group killed)" if code is None else None
        return MonitorOutput(samples=[Sample("output", value, GAUGE, dims)], error=error)
