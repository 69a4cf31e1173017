"""CPU seconds of the tail pipeline alone (``Pipeline.cut``) over the access log, in-process (run by hand).

(bench_pipeline.py gives MB/s of single cuts over generated 1 MiB chunks; this one gives the CPU of a whole
pass over the access log of bench_all.py, which shared-machine load disturbs less.)

    /path/to/venv/bin/python benchmarks/bench_cut_cpu.py [--rules] [--lines 1000000] [--repeat 3]

Cuts the log chunk by chunk as tail-once does (read size from the config defaults, each chunk in a reused
bytearray), without the state file: what the rules cost, measured as the process's CPU time (user + sys,
best of ``--repeat``), which another job on the machine disturbs far less than wall time. Run it with the
python of the install to measure, from outside the checkout (``cd /tmp``) so that install is imported.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tomllib
from pathlib import Path

from bench_tail import RULES

from shipctl.config import LogConfig, RedactionRule, SamplingRule, load_config
from shipctl.tail.pipeline import Pipeline, read_size

HERE = Path(__file__).parent


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", action="store_true", help="the rules of bench_tail.py --rules")
    ap.add_argument("--lines", type=int, default=1_000_000, help="benchmarks/data/access-<lines>.log")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    log_path = HERE / "data" / f"access-{args.lines}.log"
    if not log_path.exists():
        raise SystemExit(f"{log_path} not found: bench_all.py --lines {args.lines} makes it")
    cfg_path = Path(f"/tmp/bench-cut-cpu-{args.rules:d}.toml")
    cfg_path.write_text(f'[[logs]]\npath = "{log_path}"\n' + (RULES if args.rules else ""))
    tomllib.loads(cfg_path.read_text())  # fail here, not inside shipctl, on a broken RULES
    cfg = load_config(cfg_path)
    log: LogConfig = cfg.logs[0]
    assert all(isinstance(r, RedactionRule) for r in log.redaction_rules)
    assert all(isinstance(r, SamplingRule) for r in log.sampling_rules)
    size = read_size(log, cfg.agent.batch_bytes)
    data = log_path.read_bytes()
    best = float("inf")
    events = 0
    for _ in range(args.repeat):
        pipe = Pipeline(log, rng=random.Random(1))
        buf = bytearray(size)
        start, offset, events = _cpu(), 0, 0
        while offset < len(data):
            piece = data[offset : offset + size]
            if len(piece) == size:
                buf[:] = piece
                chunk: bytes | bytearray = buf
            else:
                chunk = piece
            cut = pipe.cut(chunk, at_eof=len(chunk) < size, flush=False)
            offset += cut.consumed
            events += cut.n_events
        best = min(best, _cpu() - start)
    label = "with rules" if args.rules else "no rules"
    print(f"{sys.executable}: Pipeline.cut {label}: {best:.3f} CPU s for {len(data) / 1e6:.0f} MB, {events} events")


if __name__ == "__main__":
    main()
