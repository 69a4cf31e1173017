"""A no-op `shipctl run` (nothing new, no monitor due) by each given executable: wall time and peak RSS.

    python3 packaging/build.py --onefile                 # dist/ and build/pyi-dist/shipctl/shipctl
    python3 -m venv /tmp/pipvenv && /tmp/pipvenv/bin/pip install .
    python3 benchmarks/bench_package.py --runs 10 pip=/tmp/pipvenv/bin/shipctl \
        onedir=build/pyi-dist/shipctl/shipctl onefile=dist/shipctl-onefile

Each executable gets its own state directory: a config like the package's default (system metrics every
hour, a file sink) plus one small log, a first run that reads and ships everything, then --runs no-op runs,
interleaved across executables so that a busy neighbour slows all of them alike. Peak RSS is the child's
own (wait4's ru_maxrss), wall time is from fork to exit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

CONFIG = """\
[agent]
state = "state.db"
implicit_metric_monitor = false
implicit_agent_process_metrics_monitor = false

[[logs]]
id = "app"
path = "app.log"

[[monitors]]
type = "linux_system_metrics"
id = "system"
sample_interval = 3600

[[sinks]]
type = "file"
path = "out.jsonl"
"""


def one_run(exe: str, config: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS MiB, exit code) of one `exe run -c config`. CPU time (user +
    system) moves less than wall time when other jobs share the cores."""
    start = time.perf_counter()
    proc = subprocess.Popen([exe, "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("exes", nargs="+", help="label=path of a shipctl executable")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    targets = dict(e.split("=", 1) for e in args.exes)
    with tempfile.TemporaryDirectory() as tmp:
        configs = {}
        for label, exe in targets.items():
            d = Path(tmp) / label
            d.mkdir()
            (d / "shipctl.toml").write_text(CONFIG)
            (d / "app.log").write_text("".join(f"line {i} of a small log\n" for i in range(1000)))
            _wall, _cpu, _rss, code = one_run(exe, d / "shipctl.toml")
            if code or not (d / "out.jsonl").stat().st_size:
                raise SystemExit(f"{label}: the first run failed (exit {code})")
            configs[label] = d / "shipctl.toml"
        samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label in targets}
        for _ in range(args.runs):
            for label, exe in targets.items():
                wall, cpu, rss, code = one_run(exe, configs[label])
                if code:
                    raise SystemExit(f"{label}: a no-op run exited {code}")
                samples[label].append((wall, cpu, rss))
    first = samples[next(iter(targets))]
    base_wall, base_cpu = statistics.median(s[0] for s in first), statistics.median(s[1] for s in first)
    print(f"{'':10} {'wall med':>9} {'min':>6} {'max':>6} {'CPU med':>8} {'RSS MiB':>8} {'wall, CPU vs first':>19}")
    for label, runs in samples.items():
        walls = [s[0] for s in runs]
        wall, cpu = statistics.median(walls), statistics.median(s[1] for s in runs)
        rss = statistics.median(s[2] for s in runs)
        print(
            f"{label:10} {wall:9.3f} {min(walls):6.3f} {max(walls):6.3f} {cpu:8.3f} {rss:8.1f}"
            f" {wall / base_wall:9.2f}x {cpu / base_cpu:7.2f}x"
        )


if __name__ == "__main__":
    main()
