"""Before/after comparison of two installs, in one session, interleaved (run by hand, not in CI).

    python benchmarks/bench_compare.py --before /tmp/bench-before --after /tmp/bench-after [--runs 5] [--mb 500]
                                       [--fanout-runs 3] [--out results.json]

Each install is a venv with a regular (byte-compiled) ``pip install .`` of its tree. Every round runs
bench_tail.py, bench_upload.py and bench_upload.py --run once per install, alternating which install goes
first (ABBA...), so slow drift of the machine falls on both. Then bench_fanout.py ``--fanout-runs`` times for
the after install (one sink and two) and the before one (one sink only: it takes a single [[sinks]]).
Prints a table: median [min-max] per install, the after/before ratio of the medians (a change for the worse
over 5% is flagged) and the median [min-max] of the after/before ratios of each round (the two installs ran
back to back, so that one is the least affected by the machine getting faster or slower over the session).
Raw figures (the JSON lines of each script) go to ``--out``; ``--table FILE`` prints the table of one again.

The machine has 2 cores, so anything else running skews the figures. Before each script this waits (up to
``--settle`` seconds) until the CPU was at least 90% idle over one second, and it records how much CPU time
processes other than the benchmark used while the script ran (``others_cpu_s``: busy time from /proc/stat
minus the benchmark's own and its children's). A script during which others used more than ``--max-others``
seconds is run again (3 tries at most; the least disturbed is kept); the table's last line gives the worst.
Kernel work the benchmark causes (loopback TCP, writeback of the state file) counts as others too: ~0-0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchutil import median

HERE = Path(__file__).parent
DASH = "\u2013"  # en dash, for ranges in the table

# (label, bench, key, higher is better)
ROWS = [
    ("tail-once MB/s", "tail", "tail_mbs", True),
    ("tail-once CPU s", "tail", "tail_cpu_s", False),
    ("tail-once peak RSS MiB", "tail", "tail_rss_mib", False),
    ("no-op tail-once s (median of 5)", "tail", "noop_median_s", False),
    ("no-op tail-once peak RSS MiB", "tail", "noop_rss_mib", False),
    ("upload alone MB/s", "upload", "upload_mbs", True),
    ("upload alone s", "upload", "upload_s", False),
    ("upload alone CPU s", "upload", "upload_cpu_s", False),
    ("upload peak RSS MiB", "upload", "upload_rss_mib", False),
    ("tail-once then upload, end to end MB/s", "upload", "total_mbs", True),
    ("upload: shipctl CPU s (tail + upload)", "upload", "shipctl_cpu_s", False),
    ("run end to end MB/s", "run", "total_mbs", True),
    ("run peak RSS MiB", "run", "upload_rss_mib", False),
    ("run: shipctl CPU s", "run", "upload_cpu_s", False),
    ("fan-out (a) 1 sink: upload MB/s", "fanout", "a.mbs", True),
    ("fan-out (a) 1 sink: upload CPU s", "fanout", "a.cpu_s", False),
    ("fan-out (a) 1 sink: peak RSS MiB", "fanout", "a.rss_mib", False),
    ("fan-out (a) 1 sink: state reads / stored", "fanout", "a.reads_x_stored", False),
    ("fan-out (b) 2 sinks: upload MB/s", "fanout", "b.mbs", True),
    ("fan-out (b) 2 sinks: upload CPU s", "fanout", "b.cpu_s", False),
    ("fan-out (b) 2 sinks: peak RSS MiB", "fanout", "b.rss_mib", False),
    ("fan-out (b) 2 sinks: state reads / stored", "fanout", "b.reads_x_stored", False),
    ("fan-out: 2nd sink's extra reads / stored", "fanout", "second_sink_reads_x_stored", False),
]


TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, all cores."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / TICK, idle / TICK


def own_seconds() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def settle(limit: float) -> None:
    """Wait until the CPU was at least 90% idle over one second (at most ``limit`` seconds)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        b0, i0 = busy_seconds()
        time.sleep(1.0)
        b1, i1 = busy_seconds()
        if (i1 - i0) / max((b1 - b0) + (i1 - i0), 1e-9) >= 0.9:
            return
    print(f"# machine still busy after {limit:.0f} s; measuring anyway", file=sys.stderr)


def bench(script: str, venv: str, *extra: str, wait: float, max_others: float) -> dict[str, object]:
    cmd = [sys.executable, str(HERE / script), "--shipctl", venv, "--json", *extra]
    tries: list[dict[str, object]] = []
    while len(tries) < 3:
        settle(wait)
        busy0, own0 = busy_seconds()[0], own_seconds()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        others = max(busy_seconds()[0] - busy0 - (own_seconds() - own0), 0.0)
        sys.stderr.write(proc.stdout)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr}{proc.stdout}")
        line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("JSON "))
        figures: dict[str, object] = json.loads(line[5:])
        figures["others_cpu_s"] = others
        if figures.get("bench") == "tail":
            figures["noop_median_s"] = median(figures["noop_s"])  # type: ignore[arg-type]
        tries.append(figures)
        if others <= max_others:
            break
        print(f"# other processes used {others:.2f} s of CPU meanwhile: again", file=sys.stderr)
    best = min(tries, key=lambda f: float(f["others_cpu_s"]))  # type: ignore[arg-type]
    best["tries"] = len(tries)
    return best


def get(figures: dict[str, object], key: str) -> float | None:
    value: object = figures
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)  # type: ignore[arg-type]


def cell(xs: list[float]) -> str:
    if not xs:
        return "—"
    m = median(xs)
    fmt = ".3f" if m < 10 else ".1f" if m < 100 else ".0f"
    return f"{m:{fmt}} [{min(xs):{fmt}}{DASH}{max(xs):{fmt}}]"


def table(results: dict[str, list[dict[str, object]]], mb: int) -> None:
    print(
        f"| figure ({mb} MB log) | before: median [range] | after: median [range] | after / before"
        " | round by round: median [range] |"
    )
    print("|---|---|---|---|---|")
    for label, name, key, higher in ROWS:
        cols = {}
        for which in ("before", "after"):
            xs = [get(f, key) for f in results[which] if f.get("bench") == name]
            cols[which] = [x for x in xs if x is not None]
        ratio = ""
        if cols["before"] and cols["after"]:
            r = median(cols["after"]) / median(cols["before"])
            worse = r < 0.95 if higher else r > 1.05
            ratio = f"{r:.2f}" + (" **worse by >5%**" if worse else "")
        # Rounds ran before and after back to back: their ratios cancel the machine's drift over the session.
        pairs = [a / b for a, b in zip(cols["after"], cols["before"], strict=False) if b]
        paired = f"{median(pairs):.2f} [{min(pairs):.2f}{DASH}{max(pairs):.2f}]" if pairs else ""
        print(f"| {label} | {cell(cols['before'])} | {cell(cols['after'])} | {ratio} | {paired} |")
    others = [float(f["others_cpu_s"]) for fs in results.values() for f in fs]  # type: ignore[arg-type]
    print(f"\nCPU used by other processes while a script ran: median {median(others):.2f} s, worst {max(others):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="venv of the previous release")
    ap.add_argument("--after", help="venv of the current tree")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--fanout-runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--second", choices=("scalyr", "file"), default="scalyr")
    ap.add_argument("--out", type=Path, help="write every run's figures here (JSON)")
    ap.add_argument("--settle", type=float, default=120.0, help="longest wait for an idle CPU before a script")
    ap.add_argument("--max-others", type=float, default=0.5, help="CPU s others may use before a script is rerun")
    ap.add_argument("--table", type=Path, metavar="JSON", help="only print the table of an earlier --out file")
    args = ap.parse_args()
    if args.table:
        table(json.loads(args.table.read_text()), args.mb)
        return
    if not (args.before and args.after):
        ap.error("--before and --after are required")
    mb = ("--mb", str(args.mb))
    results: dict[str, list[dict[str, object]]] = {"before": [], "after": []}
    venvs = {"before": args.before, "after": args.after}

    def one(script: str, which: str, *extra: str) -> None:
        figures = bench(script, venvs[which], *mb, *extra, wait=args.settle, max_others=args.max_others)
        results[which].append(figures)
        if args.out:  # as it goes: a long session may be cut short
            args.out.write_text(json.dumps(results, indent=1))

    for n in range(args.runs):
        for which in ["before", "after"] if n % 2 == 0 else ["after", "before"]:
            print(f"# round {n + 1}/{args.runs}: {which}", file=sys.stderr)
            one("bench_tail.py", which)
            one("bench_upload.py", which)
            one("bench_upload.py", which, "--run")
    for n in range(args.fanout_runs):
        for which in ["before", "after"] if n % 2 == 0 else ["after", "before"]:
            print(f"# fan-out {n + 1}/{args.fanout_runs}: {which}", file=sys.stderr)
            one("bench_fanout.py", which, "--second", args.second, *(["--one-sink"] if which == "before" else []))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    table(results, args.mb)


if __name__ == "__main__":
    main()
