"""Helpers shared by the benchmark scripts: which shipctl to run, timing a child with /usr/bin/time -v, a free
loopback port, and a receiver process's CPU time.

Not a benchmark itself. The scripts import it as ``benchutil`` (they run as ``python benchmarks/x.py``, so
this folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TIME = "/usr/bin/time"


def shipctl_command(where: str | None) -> list[str]:
    """The command that runs shipctl. ``where``: a console script, a venv folder (its ``bin/shipctl``), or
    None for the console script beside the python running the benchmark (``python -m shipctl`` if none).
    Measure a regular ``pip install .`` (byte-compiled), not an editable one."""
    if where:
        p = Path(where)
        if p.is_dir():
            p = p / "bin" / "shipctl"
        if not p.exists():
            raise SystemExit(f"no shipctl at {p}")
        return [str(p)]
    script = Path(sys.executable).parent / "shipctl"  # the console script, as cron runs it
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipctl"]


@dataclass
class Timed:
    wall: float  # seconds, perf_counter around the child (includes /usr/bin/time's own ~1 ms)
    rss_kib: int  # "Maximum resident set size" of /usr/bin/time -v (the child's ru_maxrss)
    returncode: int
    stdout: str = ""
    stderr: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # every line of /usr/bin/time -v

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def cpu(self) -> float:
        """User + system seconds of the child, all threads (less sensitive than wall time to other load)."""
        return float(self.fields.get("User time (seconds)", 0)) + float(self.fields.get("System time (seconds)", 0))


def timed(cmd: list[str], env: dict[str, str] | None = None, *, capture: bool = True, check: bool = True) -> Timed:
    """Run ``cmd`` under ``/usr/bin/time -v`` (its report goes to a file, not mixed with stderr)."""
    if not os.path.exists(TIME):
        raise SystemExit(f"{TIME} not found (Debian: apt-get install time)")
    fd, report = tempfile.mkstemp(prefix="shipctl-bench-time-")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([TIME, "-v", "-o", report, *cmd], env=env, capture_output=capture, text=True)
        wall = time.perf_counter() - t0
        fields: dict[str, str] = {}
        for line in Path(report).read_text().splitlines():
            key, sep, value = line.strip().rpartition(": ")
            if sep:
                fields[key] = value
    finally:
        os.unlink(report)
    if check and proc.returncode:
        raise SystemExit(f"{cmd} failed ({proc.returncode}): {proc.stderr}")
    rss = int(fields.get("Maximum resident set size (kbytes)", "0"))
    return Timed(wall, rss, proc.returncode, proc.stdout or "", proc.stderr or "", fields)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (all its threads), from /proc: a receiver's share of the work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
