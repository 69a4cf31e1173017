"""The ``linux_process_metrics`` monitor: metrics of one process (or several, summed) from /proc/<pid>.

The process is chosen each run, by ``pid`` (``"$$"`` = shipctl itself) or by a ``commandline`` regex searched
in the command line as ``ps ax`` shows it; when several match, the oldest is watched, or all of them summed
with ``aggregate_multiple_processes``. Every metric carries ``app=<monitor id>``. Counters carry the
process identity as their epoch, so a restarted process starts a new series instead of a bogus difference.
"""

from __future__ import annotations

import hashlib
import os
import re

from shipctl.monitors.base import COUNTER, GAUGE, MonitorOutput, Sample
from shipctl.records import record
from shipctl.schema import field

PROC = "/proc"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _check_pid(value: int | str) -> str | None:
    if isinstance(value, int):
        return None if value > 0 else "expected a process id above 0"
    return None if value in ("", "$$") or value.isdigit() else 'expected a process id or "$$" (shipctl itself)'


@record(frozen=True)
class ProcessOptions:
    """Options of the ``linux_process_metrics`` monitor."""

    commandline: str = field("", regex=True, doc="regex searched in the process command line (as ps ax shows it)")
    pid: int | str = field("", check=_check_pid, doc='process id, or "$$" for shipctl itself')
    aggregate_multiple_processes: bool = field(False, doc="sum over every matching process, not just the oldest")
    include_child_processes: bool = field(False, doc="add the descendants of the matching processes")

    def __post_init__(self) -> None:
        if not self.commandline and self.pid == "":
            raise ValueError("expected commandline (a regular expression) or pid")


@record
class ProcStat:
    """The fields of /proc/PID/stat (and friends) the process metrics are made from."""

    pid: int
    ppid: int
    sid: int
    utime: int
    stime: int
    majflt: int
    nice: int
    threads: int
    starttime: int
    blkio: int


def read_stat(pid: int, proc: str = PROC) -> ProcStat:
    with open(f"{proc}/{pid}/stat", "rb") as fh:
        raw = fh.read().decode("ascii", "replace")
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    f = raw[raw.rindex(")") + 2 :].split()
    blkio = int(f[39]) if len(f) > 39 else 0
    return ProcStat(
        pid, int(f[1]), int(f[3]), int(f[11]), int(f[12]), int(f[9]), int(f[16]), int(f[17]), int(f[19]), blkio
    )


def command_line(pid: int, proc: str = PROC) -> str:
    with open(f"{proc}/{pid}/cmdline", "rb") as fh:
        raw = fh.read()
    if raw:
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    with open(f"{proc}/{pid}/comm", "rb") as fh:  # a kernel thread: ps shows [name]
        return "[" + fh.read().decode("utf-8", "replace").strip() + "]"


def _pids(proc: str) -> list[int]:
    return [int(n) for n in os.listdir(proc) if n.isdigit()]


class ProcessMetrics:
    module = "linux_process_metrics"
    wants_id = True  # the factory gets the monitor id: every metric is tagged app=<id>

    def __init__(self, options: ProcessOptions, monitor_id: str = "", proc: str = PROC) -> None:
        self.options = options
        self.app = monitor_id
        self.proc = proc
        self.pattern = re.compile(options.commandline) if options.commandline else None

    def find(self) -> list[ProcStat]:
        """The processes to report, oldest first."""
        o = self.options
        own = os.getpid()
        if o.pid != "":
            pid = own if o.pid == "$$" else int(o.pid)
            try:
                chosen = [read_stat(pid, self.proc)]
            except (OSError, ValueError, IndexError):
                return []
        else:
            assert self.pattern is not None
            chosen = []
            for pid in _pids(self.proc):
                if pid == own:
                    continue  # shipctl's own command line would match patterns like "python"
                try:
                    if self.pattern.search(command_line(pid, self.proc)):
                        st = read_stat(pid, self.proc)
                        # Not a command another monitor of this run executes right now (in a session of its own).
                        if st.ppid != own or st.sid != pid:
                            chosen.append(st)
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile, or not ours to read
            chosen.sort(key=lambda p: (p.starttime, p.pid))
            if chosen and not o.aggregate_multiple_processes:
                chosen = chosen[:1]
        if chosen and o.include_child_processes:
            chosen += self._descendants({p.pid for p in chosen})
        return chosen

    def _descendants(self, roots: set[int]) -> list[ProcStat]:
        stats = {}
        for pid in _pids(self.proc):
            try:
                stats[pid] = read_stat(pid, self.proc)
            except (OSError, ValueError, IndexError):
                continue
        found: list[ProcStat] = []
        frontier = set(roots)
        while frontier:
            kids = [st for st in stats.values() if st.ppid in frontier and st.pid not in roots]
            frontier = {k.pid for k in kids}
            roots |= frontier
            found += kids
        return found

    def sample(self) -> MonitorOutput:
        out = MonitorOutput()
        procs = self.find()
        if not procs:
            what = f"pid {self.options.pid}" if self.options.pid != "" else f"commandline {self.options.commandline!r}"
            out.warnings.append(f"no running process matches {what}")
            return out
        with open(f"{self.proc}/uptime", "rb") as fh:
            uptime_s = float(fh.read().split()[0])
        epoch = ",".join(f"{p.pid}:{p.starttime}" for p in procs)
        if len(epoch) > 64:
            epoch = hashlib.sha1(epoch.encode()).hexdigest()[:16]
        mem = {"vmsize": 0, "peak_vmsize": 0, "resident": 0, "peak_resident": 0}
        io = {"rchar": 0, "wchar": 0, "syscr": 0, "syscw": 0}
        fds = 0
        have_io = have_fds = have_mem = False
        for p in procs:
            have_mem |= self._status(p.pid, mem)
            try:
                have_io |= self._io(p.pid, io)
            except PermissionError:
                out.warnings.append(f"no permission to read {self.proc}/{p.pid}/io (run as its user or root)")
            except OSError:
                pass
            try:
                fds += len(os.listdir(f"{self.proc}/{p.pid}/fd"))
                have_fds = True
            except PermissionError:
                out.warnings.append(f"no permission to list {self.proc}/{p.pid}/fd (run as its user or root)")
            except OSError:
                pass

        app = {"app": self.app}
        s = out.samples

        def counter(name: str, value: int, kind: str | None = None) -> None:
            s.append(Sample(name, value, COUNTER, {**app, "type": kind} if kind else app, epoch=epoch))

        def gauge(name: str, value: int, kind: str | None = None) -> None:
            s.append(Sample(name, value, GAUGE, {**app, "type": kind} if kind else app))

        # CPU in 1/100 s and uptime in ms, as the Scalyr agent reports them.
        counter("app.cpu", sum(p.utime for p in procs) * 100 // CLK_TCK, "user")
        counter("app.cpu", sum(p.stime for p in procs) * 100 // CLK_TCK, "system")
        oldest = min(p.starttime for p in procs)
        counter("app.uptime", max(0, int(uptime_s * 1000) - oldest * 1000 // CLK_TCK))
        gauge("app.nice", procs[0].nice)
        gauge("app.threads", sum(p.threads for p in procs))
        counter("app.mem.majflt", sum(p.majflt for p in procs))
        counter("app.io.wait", sum(p.blkio for p in procs) * 100 // CLK_TCK)
        if have_mem:
            for kind, value in mem.items():
                gauge("app.mem.bytes", value, kind)
        if have_io:
            counter("app.disk.bytes", io["rchar"], "read")
            counter("app.disk.bytes", io["wchar"], "write")
            counter("app.disk.requests", io["syscr"], "read")
            counter("app.disk.requests", io["syscw"], "write")
        if have_fds:
            gauge("app.io.fds", fds, "open")
        return out

    def _status(self, pid: int, mem: dict[str, int]) -> bool:
        names = {"VmSize": "vmsize", "VmPeak": "peak_vmsize", "VmRSS": "resident", "VmHWM": "peak_resident"}
        try:
            with open(f"{self.proc}/{pid}/status", "rb") as fh:
                text = fh.read().decode("ascii", "replace")
        except OSError:
            return False
        found = False
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in names:
                mem[names[key]] += int(rest.split()[0]) * 1024
                found = True
        return found

    def _io(self, pid: int, io: dict[str, int]) -> bool:
        with open(f"{self.proc}/{pid}/io", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in io:
                io[key] += int(rest)
        return True
