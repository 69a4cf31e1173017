"""tail-once throughput and no-op cost, measured on real subprocesses (run by hand, not in CI).

    python benchmarks/bench_tail.py [--mb 500] [--rules] [--shipctl /path/to/venv] [--json]

Prints MB/s and peak RSS of a tail-once over a fresh log, then wall time and peak RSS of a run with
nothing new. Uses a throwaway state file; the generated log is kept in benchmarks/data/ for reuse.
Peak RSS is "Maximum resident set size" of ``/usr/bin/time -v`` around each child. ``--shipctl`` picks
the install to measure (a venv folder or a console script; default: the one beside this python).
``--json`` adds one JSON line with the figures (for bench_compare.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchutil import shipctl_command, timed

HERE = Path(__file__).parent
# Typical rules: redactions that match a few lines, a sampling rule for health checks (1 line in 7).
RULES = """
redaction_rules = [
  { match_expression = 'password=[^& ]*', replacement = 'password=***' },
  { match_expression = 'Bearer [A-Za-z0-9._-]+', replacement = 'Bearer ***' },
]
sampling_rules = [{ match_expression = '/health', sampling_rate = 0.1 }]
line_groupers = [{ start = '^Traceback', continue_through = '^\\s' }]
"""


def _rules(heavy: bool) -> str:
    if not heavy:
        return RULES
    # Every line has a client IP: the worst case, one substitution per line.
    return RULES.replace(
        "'Bearer [A-Za-z0-9._-]+', replacement = 'Bearer ***'", r"'(10\.\d+)\.\d+\.\d+', replacement = '\1.x.x'"
    )


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (both from /usr/bin/time -v) of one child process."""
    t = timed(cmd, env, capture=False)
    return t.wall, t.rss_kib, t.cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rules", action="store_true", help="2 redaction rules, 1 sampling rule, 1 grouper")
    ap.add_argument("--heavy", action="store_true", help="with --rules: one redaction rewrites every line")
    ap.add_argument("--compress", action="store_true", help="agent.compress_queue = true")
    ap.add_argument("--shipctl", help="venv folder or shipctl console script to measure (default: beside python)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    log = data / f"access-{args.mb}.log"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "gen_log.py"), str(log), str(args.mb)], check=True)
    size = log.stat().st_size
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-"))
    try:
        cfg = tmp / "bench.toml"
        cfg.write_text(
            f"[agent]\nmax_seconds = 0\ncompress_queue = {'true' if args.compress else 'false'}\n"
            f'[[logs]]\npath = "{log}"\n' + (_rules(args.heavy) if args.rules else "")
        )
        env = {**os.environ, "SHIPCTL_STATE": str(tmp / "state.db")}
        shipctl = shipctl_command(args.shipctl)
        wall, rss, cpu = run([*shipctl, "tail-once", "-c", str(cfg)], env)
        label = (" with heavy rules" if args.heavy else " with rules") if args.rules else ""
        print(
            f"tail-once {size / 1e6:.0f} MB{label}: {wall:.2f} s, "
            f"{size / 1e6 / wall:.0f} MB/s, CPU {cpu:.2f} s, peak RSS {rss / 1024:.1f} MiB"
        )
        walls, rsss = [], []
        for _ in range(5):
            w, r, _ = run([*shipctl, "tail-once", "-c", str(cfg)], env)
            walls.append(w)
            rsss.append(r)
        print(
            f"no-op tail-once: best {min(walls):.3f} s, median {sorted(walls)[2]:.3f} s, "
            f"peak RSS {max(rsss) / 1024:.1f} MiB"
        )
        db = tmp / "state.db"
        print(f"state file after run: {db.stat().st_size / 1e6:.0f} MB")
        if args.json:
            figures = {
                "bench": "tail",
                "shipctl": shipctl[0],
                "mb": size / 1e6,
                "tail_s": wall,
                "tail_mbs": size / 1e6 / wall,
                "tail_rss_mib": rss / 1024,
                "tail_cpu_s": cpu,
                "noop_s": sorted(walls),
                "noop_rss_mib": max(rsss) / 1024,
            }
            print("JSON " + json.dumps(figures))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
