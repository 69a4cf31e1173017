"""``shipctl run`` with one ``file`` sink, two installs compared run by run (by hand, not in CI).

    cd /tmp && python /path/to/benchmarks/bench_file_sink.py --before /tmp/bench-before --after /tmp/bench-after
                                                            [--runs 5] [--log benchmarks/data/access-1000000.log]

Each round runs ``shipctl run`` (tail-once + the file sink's delivery thread, end to end) on a fresh state
file once per install, the order swapped every round (ABBA), under ``/usr/bin/time -v``; the output file must
hold every line of the log. Prints, per install, the median [min-max] of MB/s of log per wall second, CPU-s
(user + sys) per GB of log and peak RSS, the load average before each run, and the after/before ratio of
each back-to-back pair (the figure least affected by a shared machine's drift).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from benchutil import median, shipctl_command, timed

HERE = Path(__file__).parent
AGENT = "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))


def one_run(cmd: list[str], log: Path, lines: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-file-", dir="/tmp"))
    try:
        dest = tmp / "out.jsonl"
        cfg = tmp / "bench.toml"
        cfg.write_text(AGENT + f'[[logs]]\npath = "{log}"\n[[sinks]]\ntype = "file"\npath = "{dest}"\n')
        env = {**os.environ, "SHIPCTL_STATE": str(tmp / "state.db")}
        env.pop("SHIPCTL_CONFIG", None)
        load = os.getloadavg()[0]
        t = timed([*cmd, "run", "-c", str(cfg)], env)
        got = count_lines(dest)
        if got != lines:
            raise SystemExit(f"{cmd}: the file sink wrote {got} lines, not {lines}")
        gb = log.stat().st_size / 1e9
        return {"mbs": gb * 1000 / t.wall, "cpu_gb": t.cpu / gb, "rss": t.rss_mib, "load": load}
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--log", default=str(HERE / "data" / "access-1000000.log"))
    args = ap.parse_args()
    log = Path(args.log).resolve()
    lines = count_lines(log)
    cmds = {"before": shipctl_command(args.before), "after": shipctl_command(args.after)}
    res: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for i in range(args.runs):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for name in order:
            r = one_run(cmds[name], log, lines)
            res[name].append(r)
            print(
                f"round {i + 1} {name:6} {r['mbs']:6.1f} MB/s {r['cpu_gb']:5.2f} CPU-s/GB {r['rss']:5.1f} MiB"
                f" load {r['load']:.2f}",
                flush=True,
            )
    print()
    for key, label in (("mbs", "MB/s"), ("cpu_gb", "CPU-s/GB"), ("rss", "peak RSS MiB"), ("load", "load avg")):
        cols = []
        for name in ("before", "after"):
            xs = [r[key] for r in res[name]]
            cols.append(f"{name} {median(xs):7.2f} [{min(xs):.2f}-{max(xs):.2f}]")
        ratio = median([a[key] / b[key] for a, b in zip(res["after"], res["before"], strict=True)])
        print(f"{label:14} {cols[0]:32} {cols[1]:32} pairwise after/before {ratio:.2f}")


if __name__ == "__main__":
    main()
