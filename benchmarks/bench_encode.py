"""CPU to read, encode and compress a journal for the addEvents sink, in process, two installs compared.

    cd /tmp && python /path/to/benchmarks/bench_encode.py --before /tmp/bench-before --after /tmp/bench-after
                                                          [--rounds 4] [--log benchmarks/data/access-1000000.log]

``shipctl tail-once`` (the "after" install) queues the log into a fresh state file. Then, round by round with
the order swapped every round, each install's python opens that file read-only and builds every addEvents
request of it as ``upload`` would (``ScalyrSink.requests`` over ``read_batches``, each request sealed:
inflated, escaped, framed, deflated), three times, and reports its least process CPU time. No HTTP, no state
writes, no start-up: the figure the sink's encoder changes move. Prints each install's median [min-max] and
the after/before ratio of each back-to-back pair.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchutil import median

HERE = Path(__file__).parent
AGENT = "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"

ENCODE = """
import sqlite3, sys, time
from shipctl.sinks.scalyr import ScalyrOptions, ScalyrSink
from shipctl.state.queue import read_batches

conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
ids = [r[0] for r in conn.execute("select id from queue order by sn")]
best = float("inf")
for _ in range(3):
    t = time.process_time()
    sink = ScalyrSink(ScalyrOptions(api_key="k", server="https://scalyr.invalid"), session="s")
    for request in sink.requests(read_batches(conn, ids), 0):
        sink.seal(request)
    best = min(best, time.process_time() - t)
print(best)
"""


def python_of(venv: str) -> str:
    return str(Path(venv) / "bin" / "python")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="a venv with shipctl installed")
    ap.add_argument("--after", required=True, help="a venv with shipctl installed")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--log", default=str(HERE / "data" / "access-1000000.log"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    try:
        state = tmp / "state.db"
        (tmp / "c.toml").write_text(
            AGENT + f'[[logs]]\npath = "{args.log}"\n\n[[sinks]]\ntype = "file"\npath = "{tmp}/out.jsonl"\n'
        )
        env = {**os.environ, "SHIPCTL_STATE": str(state)}
        cmd = [python_of(args.after), "-m", "shipctl", "tail-once", "-c", str(tmp / "c.toml")]
        subprocess.run(cmd, env=env, check=True, cwd=tmp)
        mb = Path(args.log).stat().st_size / 1e6
        got: dict[str, list[float]] = {"before": [], "after": []}
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for name in order:
                venv = args.before if name == "before" else args.after
                out = subprocess.run(
                    [python_of(venv), "-c", ENCODE, str(state)], check=True, capture_output=True, text=True, cwd=tmp
                )
                got[name].append(float(out.stdout))
                print(f"round {r + 1} {name:6} {got[name][-1]:.3f} CPU-s for {mb:.1f} MB of log", flush=True)
        pairs = [a / b for a, b in zip(got["after"], got["before"], strict=True)]
        for name, xs in got.items():
            print(f"{name:6} {median(xs):.3f} [{min(xs):.3f}-{max(xs):.3f}] CPU-s")
        print(f"pairwise after/before {median(pairs):.2f} [{min(pairs):.2f}-{max(pairs):.2f}]")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
