"""Running shipctl on a real pseudo-terminal, for what only a terminal shows (progress bars, table widths)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

from tests.conftest import Env

# What would make rich draw otherwise than on a plain terminal of the given size.
FORCING = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "GITHUB_ACTIONS", "CI", "COLUMNS", "LINES")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_pty(
    env: Env, *args: str, columns: int = 120, timeout: float = 60, stdout_tty: bool = False
) -> tuple[int, str, str]:
    """Run shipctl with stderr on a pty (stdout on a pipe, as `shipctl ... > out` would, unless
    ``stdout_tty``): exit code, what reached the pipe, and everything drawn on the terminal with the escape
    codes taken out."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in FORCING}
    environ["TERM"] = "xterm-256color"
    p = subprocess.Popen(
        [sys.executable, "-m", "shipctl", *args, "-c", str(env.config)],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave,
        env=environ,
    )
    os.close(slave)
    drawn = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            drawn += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    out = p.stdout.read().decode() if p.stdout is not None else ""
    code = p.wait(timeout=timeout)
    return code, out, ANSI.sub("", drawn.decode(errors="replace"))


def frames(drawn: str) -> list[str]:
    """The lines as they were redrawn (rich rewrites a line after a carriage return)."""
    return [f for f in re.split(r"[\r\n]", drawn) if f.strip()]
