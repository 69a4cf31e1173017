"""Fan-out: one queue, delivered to one sink and then to two; state-file reads per sink (run by hand).

    python benchmarks/bench_fanout.py [--mb 500] [--second scalyr|file] [--one-sink] [--strace]
                                      [--shipctl /path/to/venv] [--json]

``shipctl tail-once`` queues the log once into a template state file; each case then starts from a copy of
it (so both cases upload the very same queue, from the page cache):

(a) ``shipctl upload`` to one addEvents sink (the loopback receiver of tests/receiver.py, as bench_upload.py);
(b) ``shipctl upload`` to that sink plus a second one: another loopback addEvents receiver (``--second
    scalyr``, the default) or a ``file`` sink (``--second file``, JSON lines to a file in the temp folder,
    fsync on: that sink's own encoding then bounds the wall time).

Each receiver must have had every line exactly once (sequence numbers 1..N), the file sink N lines.

What is measured, per case, of the ``shipctl upload`` process:

- wall time, and MB/s = log size / wall time;
- peak RSS and CPU time: ``ru_maxrss``, ``ru_utime + ru_stime`` from ``wait4()``, the counters
  ``/usr/bin/time -v`` reports (read by a small wrapper process that starts shipctl: a child forked
  straight from the benchmark, which holds the receivers' request bodies, would inherit its high-water mark);
- reads: ``/proc/<pid>/io`` read once the process has exited but before it is reaped (``waitid(WNOWAIT)``),
  so it holds the totals of every thread. ``rchar`` counts bytes returned by read()/pread() and friends:
  SQLite reads the state file (and its WAL) with ``pread64``, so this is the state-file traffic plus
  Python's start-up (modules, ~2-3 MB) and little else (socket replies are read with recv(), not counted).
  ``read_bytes`` (from the disk) stays ~0 here: the state file is in the page cache. A no-op upload (nothing
  queued) gives the start-up share, which is subtracted. The result is divided by the stored size of the
  queue (``SUM(LENGTH(payload))`` of the template): 1.0 = the queue was read once.

``--strace`` adds, for each case, an untimed run under ``strace -f -e trace=pread64,read,clone,clone3 -y``
that sums the bytes read from the state file (``*.db`` and ``*.db-wal``) per thread: the main thread, and
each thread it started (the per-sink delivery threads, in config order, with the worker threads they start
counted in theirs). That attributes the reads to a sink, which the process-wide counter cannot.

``--one-sink`` runs case (a) only: the previous release (a single consumer) rejects a second ``[[sinks]]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchutil import shipctl_command, timed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tests.receiver import KEY, Receiver, config_text  # noqa: E402


@dataclass
class Proc:
    wall: float
    rss_kib: int
    cpu: float  # user + system seconds, all threads
    io: dict[str, int]
    returncode: int
    stderr: str


# Runs in a small python of its own between the benchmark and shipctl: a child inherits the RSS high-water
# mark of the process it was forked from (recorded at exec), and the benchmark holds the receivers' bodies.
_WRAPPER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: /proc/<pid>/io holds its totals
wall = time.perf_counter() - t0
io = {k: int(v) for k, v in (line.split(":") for line in open(f"/proc/{p.pid}/io").read().splitlines())}
_, status, ru = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"wall": wall, "rss": ru.ru_maxrss, "cpu": ru.ru_utime + ru.ru_stime, "io": io}, fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str], env: dict[str, str], tmp: Path) -> Proc:
    """Run ``cmd``; its /proc/<pid>/io once it has exited (before it is reaped), rusage from wait4()."""
    report, out, err = tmp / "child.json", tmp / "child.out", tmp / "child.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        rc = subprocess.run([sys.executable, "-c", _WRAPPER, str(report), *cmd], env=env, stdout=fo, stderr=fe)
    r = json.loads(report.read_text()) if report.exists() else {"wall": 0.0, "rss": 0, "cpu": 0.0, "io": {}}
    return Proc(r["wall"], r["rss"], r["cpu"], r["io"], rc.returncode, err.read_text())


_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+)")
_FD_PATH = re.compile(r"^\d+<([^>]*)>")


@dataclass
class Traced:
    main: int = 0
    parent: dict[int, int] = field(default_factory=dict)  # tid -> the tid that started it
    started: list[int] = field(default_factory=list)  # threads started by the main thread, in order
    reads: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def owner(self, tid: int) -> int:
        """The thread started by the main thread that ``tid`` descends from (or the main thread)."""
        while tid in self.parent and self.parent[tid] != self.main:
            tid = self.parent[tid]
        return tid


def parse_strace(path: Path) -> Traced:
    t = Traced()
    pending: dict[int, tuple[str, str]] = {}  # tid -> (syscall, arguments so far) of an unfinished call
    for raw in path.read_text(errors="replace").splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        tid, rest = int(m.group(1)), m.group(2)
        if not t.main:
            t.main = tid
        c = _CALL.match(rest)
        r = _RESUMED.match(rest)
        if c:
            name, text = c.group(1), c.group(2)
            if text.endswith("<unfinished ...>"):
                pending[tid] = (name, text)
                continue
        elif r and tid in pending:
            name, before = pending.pop(tid)
            text = before.removesuffix("<unfinished ...>") + r.group(2)
        else:
            continue
        res = _RESULT.search(text)
        if not res or int(res.group(1)) < 0:
            continue
        value = int(res.group(1))
        if name in ("clone", "clone3"):
            t.parent[value] = tid
            if tid == t.main:
                t.started.append(value)
        elif name in ("pread64", "read"):
            fp = _FD_PATH.match(text)
            if fp:
                t.reads[tid][fp.group(1)] += value
    return t


def strace_reads(cmd: list[str], env: dict[str, str], tmp: Path) -> tuple[Traced, int]:
    trace = tmp / "strace.txt"
    subprocess.run(
        ["strace", "-f", "-qq", "-s", "0", "-y", "-e", "trace=pread64,read,clone,clone3", "-o", str(trace), *cmd],
        env=env,
        check=True,
        capture_output=True,
    )
    t = parse_strace(trace)
    return t, sum(sum(v.values()) for v in t.reads.values())


def state_reads_by_thread(t: Traced) -> dict[str, dict[str, int]]:
    """Bytes read from the state file (``db``) and from its WAL (``wal``: pages written since the last
    checkpoint, and the checkpoint copying them over) by the main thread and by each thread it started."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"db": 0, "wal": 0})
    names = {t.main: "main"} | {tid: f"thread {n}" for n, tid in enumerate(t.started, 1)}
    for tid, paths in t.reads.items():
        for p, v in paths.items():
            kind = "db" if p.endswith(".db") else "wal" if p.endswith(".db-wal") else None
            if kind:
                out[names.get(t.owner(tid), f"tid {tid}")][kind] += v
    return dict(out)


def check_receiver(recv: Receiver, lines: int) -> bool:
    recv.wait_idle()
    recv.check_deferred()
    runs = sorted(recv.ranges)
    ok = bool(runs) and runs[0][0] == 1 and runs[-1][1] == lines and recv.accepted == lines
    return ok and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(runs)) and not recv.violations


def check_file(path: Path, lines: int) -> bool:
    count = 0
    last = b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            count += chunk.count(b"\n")
            last = (last + chunk)[-4096:]
    return count == lines and last.rstrip(b"\n").endswith(f'"sn":{lines}}}'.encode())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--second", choices=("scalyr", "file"), default="scalyr", help="the second sink of case (b)")
    ap.add_argument("--one-sink", action="store_true", help="case (a) only (the previous release)")
    ap.add_argument("--strace", action="store_true", help="also count state-file reads per thread (untimed)")
    ap.add_argument("--shipctl", help="venv folder or shipctl console script to measure (default: beside python)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args()
    if args.strace and not shutil.which("strace"):
        raise SystemExit("--strace: strace not found (Debian: apt-get install strace)")
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    log = data / f"access-{args.mb}.log"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "gen_log.py"), str(log), str(args.mb)], check=True)
    size = log.stat().st_size
    with log.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    shipctl = shipctl_command(args.shipctl)
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-"))
    receivers: list[Receiver] = []
    try:
        body = (
            "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
            f'implicit_agent_process_metrics_monitor = false\n[[logs]]\npath = "{log}"\n'
        )

        def config(name: str, n_sinks: int) -> tuple[Path, list[Receiver], Path | None]:
            """A config with sink ``a`` (a fresh receiver) and, for 2 sinks, sink ``b``."""
            recvs = [Receiver(strict=False, defer=True).start()]
            receivers.extend(recvs)
            text = config_text(recvs[0].url, body, id="a")
            out = None
            if n_sinks == 2 and args.second == "scalyr":
                recvs.append(Receiver(strict=False, defer=True).start())
                receivers.append(recvs[1])
                text += (
                    f'\n[[sinks]]\ntype = "scalyr"\nid = "b"\napi_key = "$SCALYR_API_KEY"\n'
                    f'server = "{recvs[1].url}"\nallow_http = true\n'
                )
            elif n_sinks == 2:
                out = tmp / f"{name}.jsonl"
                text += f'\n[[sinks]]\ntype = "file"\nid = "b"\npath = "{out}"\n'
            cfg = tmp / f"{name}.toml"
            cfg.write_text(text)
            return cfg, recvs, out

        # The queue, once: tail-once into the template state file.
        template = tmp / "template.db"
        cfg, _, _ = config("tail", 1)
        env = {**os.environ, "SHIPCTL_STATE": str(template), "SCALYR_API_KEY": KEY}
        tail = timed([*shipctl, "tail-once", "-c", str(cfg)], env, capture=False)
        for suffix in ("-wal", "-shm"):
            if Path(f"{template}{suffix}").exists():
                raise SystemExit(f"{template}{suffix} left after tail-once: cannot copy the state file")
        with sqlite3.connect(template) as conn:
            batches, stored = conn.execute("SELECT COUNT(*), SUM(LENGTH(payload)) FROM queue").fetchone()
        print(f"log: {size / 1e6:.0f} MB, {lines} lines; shipctl {shipctl[0]}")
        print(
            f"tail-once: {tail.wall:.2f} s ({size / 1e6 / tail.wall:.0f} MB/s), peak RSS {tail.rss_mib:.1f} MiB;"
            f" queue: {batches} batches, {stored / 1e6:.1f} MB stored"
        )

        def fresh_state(name: str) -> dict[str, str]:
            db = tmp / f"{name}.db"
            shutil.copyfile(template, db)
            return {**os.environ, "SHIPCTL_STATE": str(db), "SCALYR_API_KEY": KEY}

        # Start-up share of rchar: an upload with nothing queued (the state file of case (a) afterwards).
        cases = [("a", 1)] if args.one_sink else [("a", 1), ("b", 2)]
        figures: dict[str, object] = {
            "bench": "fanout",
            "shipctl": shipctl[0],
            "mb": size / 1e6,
            "lines": lines,
            "batches": batches,
            "stored_bytes": stored,
            "second": args.second,
            "tail_s": tail.wall,
        }
        baseline = 0
        for name, n in cases:
            cfg, recvs, out = config(name, n)
            env = fresh_state(name)
            up = run_measured([*shipctl, "upload", "-c", str(cfg)], env, tmp)
            if up.returncode:
                raise SystemExit(f"upload ({name}) failed: {up.stderr}")
            ok = all(check_receiver(r, lines) for r in recvs) and (out is None or check_file(out, lines))
            if name == "a":
                noop = run_measured([*shipctl, "upload", "-c", str(cfg)], env, tmp)
                baseline = noop.io["rchar"]
                print(f"no-op upload (nothing queued): rchar {baseline / 1e6:.1f} MB (start-up), {noop.wall:.2f} s")
            state_rchar = up.io["rchar"] - baseline
            what = "1 addEvents sink" if n == 1 else f"addEvents sink + {args.second} sink"
            print(
                f"({name}) upload to {what}: {up.wall:.2f} s = {size / 1e6 / up.wall:.0f} MB/s,"
                f" CPU {up.cpu:.2f} s, peak RSS {up.rss_kib / 1024:.1f} MiB; rchar {up.io['rchar'] / 1e6:.1f} MB"
                f" (syscr {up.io['syscr']}, read_bytes {up.io['read_bytes'] / 1e6:.1f} MB);"
                f" minus start-up = {state_rchar / stored:.2f}x the stored queue"
                f" = {state_rchar / stored / n:.2f}x per sink; exactly once: {'yes' if ok else 'NO'}"
            )
            figures[name] = {
                "sinks": n,
                "wall_s": up.wall,
                "mbs": size / 1e6 / up.wall,
                "rss_mib": up.rss_kib / 1024,
                "cpu_s": up.cpu,
                "rchar": up.io["rchar"],
                "syscr": up.io["syscr"],
                "read_bytes": up.io["read_bytes"],
                "startup_rchar": baseline,
                "reads_x_stored": state_rchar / stored,
                "exactly_once": ok,
            }
            if not ok:
                raise SystemExit(f"case ({name}): not every line arrived exactly once")
            if args.strace:
                cfg, recvs, out = config(f"{name}-strace", n)
                traced, _ = strace_reads([*shipctl, "upload", "-c", str(cfg)], fresh_state(f"{name}-strace"), tmp)
                per = state_reads_by_thread(traced)
                total = sum(sum(v.values()) for v in per.values())
                shown = ", ".join(
                    f"{k} {v['db'] / stored:.2f}x + WAL {v['wal'] / stored:.2f}x" for k, v in sorted(per.items())
                )
                print(f"    strace, state file read by thread: {shown}; all {total / stored:.2f}x")
                figures[name]["strace_reads"] = per  # type: ignore[index]
        if not args.one_sink:
            a, b = figures["a"], figures["b"]
            extra = (b["rchar"] - a["rchar"]) / stored  # type: ignore[index]
            print(f"second sink: +{extra:.2f}x the stored queue read (rchar of (b) minus (a))")
            figures["second_sink_reads_x_stored"] = extra
        if args.json:
            print("JSON " + json.dumps(figures))
    finally:
        for r in receivers:
            r.stop()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
