"""Throughput of ``Pipeline.cut`` alone on 1 MiB chunks of ~130-byte lines (run by hand, not in CI).

    python benchmarks/bench_pipeline.py [--seconds 2] [--tail-once MB]

Cases: no rules (the queue-as-read path); the rules of bench_tail.py (2 redaction rules, 1 sampling rule,
1 grouper) on an access log where one redaction rule matches every line; and an application log with a
Java-trace grouper and secrets in about 1 line in 200 (rules that rarely match). Prints MB/s of the
fastest and of the median cut per case. ``--tail-once MB`` also times a whole ``shipctl tail-once`` (a
subprocess, fresh state file) over an application log of that size, without and with the app rules.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shipctl.config import LineGrouper, LogConfig, RedactionRule, SamplingRule
from shipctl.tail.pipeline import Pipeline

MiB = 1 << 20


def access_log(rng: random.Random) -> bytes:
    paths = ["/", "/api/v1/orders", "/api/v1/users/1234", "/static/app.js", "/health", "/login", "/search?q=x"]
    lines = []
    for n in range(10_000):
        lines.append(
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)} - - [22/Nov/2026:01:02:03 +0000] "
            f'"GET {rng.choice(paths)} HTTP/1.1" {rng.choice((200, 304, 404))} {rng.randrange(99999)} seq={n} '
            '"curl/8"\n'
        )
    return "".join(lines).encode()[:MiB]


def app_log(rng: random.Random) -> bytes:
    words = ["user", "request", "served", "cache", "miss", "hit", "order", "shipped", "queue", "retry", "done"]
    lines = []
    for n in range(10_000):
        level = rng.choice(["INFO", "INFO", "INFO", "WARN", "DEBUG"])
        text = " ".join(rng.choice(words) for _ in range(10))
        if n % 200 == 7:
            text += " password=hunter2&x=1"
        line = f"2026-11-22 01:19:31.{n % 1000:03d} {level} [worker-{n % 8}] {text} seq={n}"
        lines.append(line[:129].ljust(129) + "\n")
        if n % 500 == 3:
            lines += ["java.lang.IllegalStateException: boom\n", "    at a.b.C.d(C.java:1)\n", "    at e.f(G.java:2)\n"]
    return "".join(lines).encode()[:MiB]


def tail_rules() -> dict[str, object]:
    return {
        "redaction_rules": (
            RedactionRule(re.compile(r"password=[^& ]*"), "password=***"),
            RedactionRule(re.compile(r"(10\.\d+)\.\d+\.\d+"), r"\1.x.x"),
        ),
        "sampling_rules": (SamplingRule(re.compile("/health"), 0.1),),
        "line_groupers": (LineGrouper(re.compile("^Traceback"), "continue_through", re.compile(r"^\s")),),
    }


def app_rules() -> dict[str, object]:
    return {
        "redaction_rules": (
            RedactionRule(re.compile(r"password=[^& ]*"), "password=***"),
            RedactionRule(re.compile(r"userInfo=([^ ]+) [^ ]+"), r"userInfo=\1"),
        ),
        "sampling_rules": (SamplingRule(re.compile("FINE"), 0.0),),
        "line_groupers": (LineGrouper(re.compile(r"^[^\s]"), "continue_through", re.compile(r"^[\s]+at")),),
    }


def measure(log: LogConfig, chunk: bytes, seconds: float) -> tuple[float, float, int]:
    """MB/s of the fastest cut (the least disturbed by other work on the machine) and of the median one."""
    pipe = Pipeline(log, rng=random.Random(0))
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        cut = pipe.cut(chunk, at_eof=False, flush=False)
        times.append(time.perf_counter() - t0)
    times.sort()
    return cut.consumed / times[0] / 1e6, cut.consumed / times[len(times) // 2] / 1e6, cut.n_events


APP_RULES_TOML = r"""
redaction_rules = [
  { match_expression = 'password=[^& ]*', replacement = 'password=***' },
  { match_expression = 'userInfo=([^ ]+) [^ ]+', replacement = 'userInfo=\1' },
]
sampling_rules = [{ match_expression = 'FINE', sampling_rate = 0 }]
line_groupers = [{ start = '^[^\s]', continue_through = '^[\s]+at' }]
"""  # TOML literal strings: backslashes as in the regex


def tail_once(megabytes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="shipctl-bench-") as tmp:
        log = Path(tmp) / "app.log"
        rng = random.Random(7)
        with log.open("wb") as fh:
            for _ in range(megabytes):
                fh.write(app_log(rng))
        size = log.stat().st_size
        for rules in (False, True):
            cfg = Path(tmp) / "bench.toml"
            cfg.write_text(f'[agent]\nmax_seconds = 0\n[[logs]]\npath = "{log}"\n' + (APP_RULES_TOML if rules else ""))
            env = {**os.environ, "SHIPCTL_STATE": f"{tmp}/state-{rules}.db"}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "shipctl", "tail-once", "-c", str(cfg)], env=env, check=True)
            wall = time.perf_counter() - t0
            what = "with app rules" if rules else "no rules"
            print(f"tail-once {size / 1e6:.0f} MB app log, {what:14s}: {wall:.2f} s, {size / 1e6 / wall:.0f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--tail-once", type=int, default=0, metavar="MB")
    args = ap.parse_args()
    rng = random.Random(42)
    access, app = access_log(rng), app_log(rng)
    cases = [
        ("no rules, access log", LogConfig(path="/x"), access),
        ("no rules, app log", LogConfig(path="/x"), app),
        ("bench_tail rules, access log (every line redacted)", LogConfig(path="/x", **tail_rules()), access),  # type: ignore[arg-type]
        ("app rules, app log (rare matches, Java grouper)", LogConfig(path="/x", **app_rules()), app),  # type: ignore[arg-type]
    ]
    for name, log, chunk in cases:
        best, median = measure(log, chunk, args.seconds)[:2]
        print(f"{name:52s} best {best:7.1f} MB/s, median {median:7.1f} MB/s")
    if args.tail_once:
        tail_once(args.tail_once)


if __name__ == "__main__":
    main()
