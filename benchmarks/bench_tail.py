"""tail-once throughput and no-op cost, measured on real subprocesses (run by hand, not in CI).

    python benchmarks/bench_tail.py [--mb 500] [--rules]

Prints MB/s and peak RSS of a tail-once over a fresh log, then wall time and peak RSS of a run with
nothing new. Uses a throwaway state file; the generated log is kept in benchmarks/data/ for reuse.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall seconds and peak RSS (KiB) of one child process, both measured by a small wrapper process so
    neither the wrapper's start-up nor an earlier child's peak is counted."""
    wrapper = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); p = subprocess.run(sys.argv[1:]);"
        "w = time.perf_counter() - t;"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, w, file=sys.stderr); sys.exit(p.returncode)"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed: {proc.stderr}")
    rss, wall = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss), proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--rules", action="store_true", help="2 redaction rules, 1 sampling rule, 1 grouper")
    ap.add_argument("--heavy", action="store_true", help="with --rules: one redaction rewrites every line")
    ap.add_argument("--compress", action="store_true", help="agent.compress_queue = true")
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
        script = Path(sys.executable).parent / "shipctl"  # the console script, as cron runs it
        shipctl = [str(script)] if script.exists() else [sys.executable, "-m", "shipctl"]
        wall, rss, _ = run([*shipctl, "tail-once", "-c", str(cfg)], env)
        label = (" with heavy rules" if args.heavy else " with rules") if args.rules else ""
        print(
            f"tail-once {size / 1e6:.0f} MB{label}: {wall:.2f} s, "
            f"{size / 1e6 / wall:.0f} MB/s, peak RSS {rss / 1024:.1f} MiB"
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
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
