"""Every figure of issue 13 for one or two installs, side by side, in one run (by hand, not in CI).

    python benchmarks/bench_all.py --before /tmp/bench-before --after /tmp/bench-after [--runs 3]
                                   [--lines 1000000] [--noop 10] [--backlog-mb 0] [--out results.json]
                                   [--agent /tmp/agent]   # a venv with scalyr-agent-2==2.2.8
                                   [--only tail,rules,run,file,backlog]

Each install is a venv with a regular (byte-compiled) ``pip install .``; run this from outside the checkout
(``cd /tmp``). Per round, each install in turn (ABBA: the order alternates, so slow drift of a shared machine
falls on both) runs these real subprocesses on fresh state files, each under ``/usr/bin/time -v`` (peak RSS
is the child's ``ru_maxrss``, CPU its user + system time, all threads):

- ``tail-once`` of the access log into the journal, no rules; then ``upload`` of that journal to a loopback
  addEvents receiver (tests/receiver.py in this process: it answers at once, and after the clock stops
  inflates every request and checks each line arrived exactly once); the state file's size after the drain;
- ``tail-once`` with 2 redactions + 1 sampling rule + 1 grouper;
- ``run`` (tail-once, monitors, upload) end to end to the receiver, then ``--noop`` runs with nothing new;
- ``run`` with a ``file`` sink instead, end to end (and how many bytes it wrote per byte of log);
- with ``--backlog-mb N``: tail-once + upload of an N MB backlog (the log repeated) for the state file size
  after it drained and the peak RSS at that backlog.

With ``--agent``, the Scalyr agent runs on the same log to the same kind of receiver (``bench_agent.py``) and its
end-to-end rate (beside `run`), CPU per GB and peak RSS fill a last column.
``--only`` runs some of these steps (comma-separated: ``tail`` is tail-once + upload, ``rules``, ``run`` with
its no-op runs, ``file``, ``backlog``); the table then shows only their rows.

Prints one table: median [min-max] over the rounds per install, the goal, and after/before of the medians.
Throughputs are MB of log (10^6 bytes) per wall second. The machine is shared: quote the load average
(printed) and trust the ratios more than the absolute figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_tail import RULES
from benchutil import Timed, median, shipctl_command, timed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tests.receiver import KEY, Receiver, config_text  # noqa: E402

DASH = "\u2013"
AGENT = "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"

# (key, label, goal, higher is better)
ROWS: list[tuple[str, str, str, bool]] = [
    ("tail_mbs", "`tail-once` into the journal, no rules: MB/s", "≥ 400", True),
    ("tail_rss", "`tail-once`, no rules: peak RSS MiB", "≤ 32", False),
    ("rules_mbs", "`tail-once` with 2 redactions + 1 sampling + 1 grouper: MB/s", "≥ 100", True),
    ("tail_cpu", "`tail-once`, no rules: CPU s (user + sys)", "", False),
    ("rules_cpu", "`tail-once` with rules: CPU s (user + sys)", "", False),
    ("upload_mbs", "`upload` alone to addEvents: MB/s of log", "≥ 200", True),
    ("upload_rss", "`upload` alone: peak RSS MiB", "≤ 40", False),
    ("two_mbs", "`tail-once` then `upload`, end to end: MB/s", "≥ 130", True),
    ("run_mbs", "`run`, end to end: MB/s", "≥ 180", True),
    ("file_mbs", "file sink (`run`), end to end: MB/s", "≥ 150", True),
    ("file_ratio", "file sink: bytes written / bytes of log", "", False),
    ("cpu_per_gb", "CPU-seconds per GB shipped to addEvents (tail-once + upload)", "≤ 5", False),
    ("peak_rss", "peak RSS of any command MiB", "≤ 40", False),
    ("noop_s", "no-op `run`: wall s (median)", "≤ 0.060", False),
    ("noop_rss", "no-op `run`: peak RSS MiB", "≤ 18", False),
    ("state_mb", "state file after the backlog drained: MB", "≤ 16", False),
    ("backlog_state_mb", "state file after the --backlog-mb backlog drained: MB", "≤ 16", False),
    ("backlog_rss", "peak RSS of tail-once/upload at the --backlog-mb backlog MiB", "≤ 40", False),
]


def make_log(lines: int) -> Path:
    """benchmarks/data/access-<lines>.log: the first ``lines`` lines of gen_log.py's access log."""
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    log = data / f"access-{lines}.log"
    if log.exists():
        return log
    sys.path.insert(0, str(HERE))
    import gen_log

    big = data / f"access-gen-{lines}.log"
    gen_log.main(str(big), max(1, lines * 120 // 1_000_000 + 1))
    with big.open("rb") as src, log.open("wb") as dst:
        for line in itertools.islice(src, lines):
            dst.write(line)
    big.unlink()
    return log


def repeated(log: Path, mb: int) -> Path:
    """A log of about ``mb`` MB: ``log`` repeated (the receiver counts sequence numbers, not content)."""
    out = log.with_name(f"{log.stem}-x{mb}MB.log")
    if not out.exists():
        data = log.read_bytes()
        with out.open("wb") as fh:
            for _ in range(max(1, round(mb * 1e6 / len(data)))):
                fh.write(data)
    return out


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))


def state_size(db: Path) -> int:
    """The state file and its WAL (what the drain leaves on disk)."""
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def exactly_once(recv: Receiver, lines: int) -> bool:
    recv.wait_idle(60)
    recv.check_deferred()
    runs = sorted(recv.ranges)
    ok = bool(runs) and runs[0][0] == 1 and runs[-1][1] == lines and recv.accepted == lines
    return ok and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(runs)) and not recv.violations


class Install:
    def __init__(self, venv: str) -> None:
        self.cmd = shipctl_command(venv)

    def run(self, tmp: Path, args: list[str], cfg: str, *, check: bool = True) -> Timed:
        (tmp / "bench.toml").write_text(cfg)
        env = {**os.environ, "SHIPCTL_STATE": str(tmp / "state.db"), "SCALYR_API_KEY": KEY}
        env.pop("SHIPCTL_CONFIG", None)
        t = timed([*self.cmd, *args, "-c", str(tmp / "bench.toml")], env, check=False)
        if check and t.returncode:
            raise SystemExit(f"{self.cmd} {args} failed ({t.returncode}): {t.stderr[-2000:]}")
        return t


def with_tmp(fn: Callable[[Path], dict[str, float]]) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-all-", dir="/tmp"))
    try:
        return fn(tmp)
    finally:
        shutil.rmtree(tmp)


STEPS = ("tail", "rules", "run", "file", "backlog")


def one_round(
    inst: Install, log: Path, lines: int, noop: int, backlog: Path | None, only: frozenset[str] = frozenset(STEPS)
) -> dict[str, float]:
    mb = log.stat().st_size / 1e6
    logs = f'[[logs]]\npath = "{log}"\n'
    out: dict[str, float] = {}
    rss: list[float] = []

    def tail_upload(tmp: Path) -> dict[str, float]:
        with Receiver(strict=False, defer=True) as recv:
            cfg = config_text(recv.url, AGENT + logs)
            t0 = time.perf_counter()
            tail = inst.run(tmp, ["tail-once"], cfg)
            t1 = time.perf_counter()
            up = inst.run(tmp, ["upload"], cfg)
            t2 = time.perf_counter()
            if not exactly_once(recv, lines):
                raise SystemExit(f"{inst.cmd}: upload did not deliver every line exactly once")
        rss.extend((tail.rss_mib, up.rss_mib))
        return {
            "tail_mbs": mb / (t1 - t0),
            "tail_rss": tail.rss_mib,
            "tail_cpu": tail.cpu,
            "upload_mbs": mb / (t2 - t1),
            "upload_rss": up.rss_mib,
            "two_mbs": mb / (t2 - t0),
            "cpu_per_gb": (tail.cpu + up.cpu) / (mb / 1000),
            "state_mb": state_size(tmp / "state.db") / 1e6,
        }

    if "tail" in only:
        out.update(with_tmp(tail_upload))

    def rules(tmp: Path) -> dict[str, float]:
        t = inst.run(tmp, ["tail-once"], AGENT + logs + RULES)
        rss.append(t.rss_mib)
        return {"rules_mbs": mb / t.wall, "rules_cpu": t.cpu}

    if "rules" in only:
        out.update(with_tmp(rules))

    def run(tmp: Path) -> dict[str, float]:
        with Receiver(strict=False, defer=True) as recv:
            cfg = config_text(recv.url, AGENT + logs)
            t = inst.run(tmp, ["run"], cfg)
            if not exactly_once(recv, lines):
                raise SystemExit(f"{inst.cmd}: run did not deliver every line exactly once")
            walls, peaks = [], []
            for _ in range(noop):  # everything delivered, monitors off: start-up, config, state file, one look
                n = inst.run(tmp, ["run"], cfg)
                walls.append(n.wall)
                peaks.append(n.rss_mib)
        rss.extend([t.rss_mib, *peaks])
        res = {"run_mbs": mb / t.wall}
        if walls:
            res.update(noop_s=median(walls), noop_rss=max(peaks))
        return res

    if "run" in only:
        out.update(with_tmp(run))

    def file_sink(tmp: Path) -> dict[str, float]:
        dest = tmp / "out.jsonl"
        cfg = AGENT + logs + f'[[sinks]]\ntype = "file"\npath = "{dest}"\n'
        t = inst.run(tmp, ["run"], cfg)
        rss.append(t.rss_mib)
        if count_lines(dest) != lines:
            raise SystemExit(f"{inst.cmd}: the file sink wrote {count_lines(dest)} lines, not {lines}")
        return {"file_mbs": mb / t.wall, "file_ratio": dest.stat().st_size / log.stat().st_size}

    if "file" in only:
        out.update(with_tmp(file_sink))

    if backlog is not None and "backlog" in only:
        big_lines = count_lines(backlog)

        def drain(tmp: Path) -> dict[str, float]:
            with Receiver(strict=False, defer=True) as recv:
                cfg = config_text(recv.url, AGENT + f'[[logs]]\npath = "{backlog}"\n')
                tail = inst.run(tmp, ["tail-once"], cfg)
                up = inst.run(tmp, ["upload"], cfg)
                if not exactly_once(recv, big_lines):
                    raise SystemExit(f"{inst.cmd}: the backlog was not delivered exactly once")
            rss.extend((tail.rss_mib, up.rss_mib))
            return {
                "backlog_state_mb": state_size(tmp / "state.db") / 1e6,
                "backlog_rss": max(tail.rss_mib, up.rss_mib),
            }

        out.update(with_tmp(drain))
    if rss and only >= {"tail", "rules", "run", "file"}:  # "of any command": only when every command ran
        out["peak_rss"] = max(rss)
    return out


def fmt(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def cell(xs: list[float]) -> str:
    if not xs:
        return "—"
    return f"{fmt(median(xs))} [{fmt(min(xs))}{DASH}{fmt(max(xs))}]" if len(xs) > 1 else fmt(xs[0])


def table(results: dict[str, list[dict[str, float]]]) -> None:
    names = [w for w in ("before", "after") if results.get(w)]
    agent = results.get("agent") or []
    head = " | ".join(f"{w}: median [range]" for w in names)
    print(
        f"| figure | {head} | goal |"
        + (" after / before |" if len(names) == 2 else "")
        + (" Scalyr agent 2.2.8 |" if agent else "")
    )
    print("|---|" + "---|" * len(names) + "---|" + ("---|" if len(names) == 2 else "") + ("---|" if agent else ""))
    for key, label, goal, higher in ROWS:
        cols = {w: [r[key] for r in results[w] if key in r] for w in names}
        if not any(cols.values()):
            continue
        line = f"| {label} | " + " | ".join(cell(cols[w]) for w in names) + f" | {goal} |"
        if len(names) == 2:
            b, a = cols["before"], cols["after"]
            ratio = median(a) / median(b) if a and b and median(b) else None
            # Shown so that > 1 is better: speed-up for throughputs, shrink factor for sizes and times.
            better = None if ratio is None else (ratio if higher else 1 / ratio if ratio else float("inf"))
            line += f" {'' if better is None else f'{better:.2f}x'} |"
        if agent:  # a daemon: only its end-to-end rate, CPU per GB and peak RSS mean something
            line += f" {cell([r[key] for r in agent if key in r])} |"
        print(line)
    if len(names) == 2:
        print("\n(last column: how many times better `after` is, for throughputs after/before, else before/after)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="venv of the install to compare against")
    ap.add_argument("--after", help="venv of this tree's install")
    ap.add_argument("--runs", type=int, default=3, help="rounds (each install once per round)")
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines of the access log (~116 bytes each)")
    ap.add_argument("--noop", type=int, default=10, help="no-op runs after each `run`")
    ap.add_argument("--backlog-mb", type=int, default=0, help="also drain a backlog this big (the log repeated)")
    ap.add_argument("--out", type=Path, help="write every round's figures here (JSON)")
    ap.add_argument("--table", type=Path, metavar="JSON", help="only print the table of an earlier --out file")
    ap.add_argument("--agent", help="venv with scalyr-agent-2==2.2.8: its figures in a column (bench_agent.py)")
    ap.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps to run, of: {', '.join(STEPS)}")
    args = ap.parse_args()
    only = frozenset(args.only.split(","))
    if not only <= set(STEPS):
        ap.error(f"--only: unknown step(s) {', '.join(sorted(only - set(STEPS)))}; known: {', '.join(STEPS)}")
    if args.table:
        table(json.loads(args.table.read_text()))
        return
    venvs = {k: v for k, v in (("before", args.before), ("after", args.after)) if v}
    if not venvs:
        ap.error("--before and/or --after is required")
    installs = {k: Install(v) for k, v in venvs.items()}
    log = make_log(args.lines)
    backlog = repeated(log, args.backlog_mb) if args.backlog_mb else None
    print(f"# log {log}: {log.stat().st_size / 1e6:.1f} MB, {args.lines} lines", file=sys.stderr)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in installs}
    loads = [os.getloadavg()[0]]
    for n in range(args.runs):
        order = list(installs) if n % 2 == 0 else list(reversed(installs))
        for which in order:
            t0 = time.monotonic()
            results[which].append(one_round(installs[which], log, args.lines, args.noop, backlog, only))
            loads.append(os.getloadavg()[0])
            print(
                f"# round {n + 1}/{args.runs} {which}: {time.monotonic() - t0:.0f} s, load {loads[-1]:.2f}",
                file=sys.stderr,
            )
            if args.out:  # as it goes: a long session may be cut short
                args.out.write_text(json.dumps(results, indent=1))
    if args.agent:
        from bench_agent import measure

        got = measure(args.agent, log, args.lines, args.runs)
        results["agent"] = [{k: v[i] for k, v in got.items()} for i in range(args.runs)]
        loads.append(os.getloadavg()[0])
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))
    table(results)
    print(f"\n1-minute load average during the run: {min(loads):.2f}{DASH}{max(loads):.2f} (2 cores)")


if __name__ == "__main__":
    main()
