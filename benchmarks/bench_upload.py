"""End-to-end throughput: tail-once + upload of a big log to the loopback addEvents receiver (by hand).

    python benchmarks/bench_upload.py [--mb 500] [--level 1] [--compression deflate|none] [--inline-check]
                                      [--run] [--shipctl /path/to/venv] [--json]

Runs ``shipctl tail-once`` then ``shipctl upload`` as real subprocesses on a fresh state file, against the
receiver of tests/receiver.py in this process. The receiver stands in for a server on another machine: it
answers each request once its body is in, and after the clock stops inflates every request and counts its
events from the ``sn``/``sd`` fields (the first request is also parsed and checked strictly). Every line
must have arrived exactly once (sequence numbers 1..N, no overlap). ``--inline-check`` does that work
before answering each request instead, on the clock, taking CPU from shipctl on a 2-core machine.

Each child runs under ``/usr/bin/time -v``: its peak RSS is that report's "Maximum resident set size".
``--shipctl`` picks the install to measure (a venv folder or a console script; default: the one beside this
python); the receiver always runs in this python. ``--json`` adds one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import shipctl_command, timed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tests.receiver import KEY, Receiver, config_text  # noqa: E402


def child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--level", type=int, default=None, help="compression_level (default: the sink's)")
    ap.add_argument("--compression", default="deflate")
    ap.add_argument("--inline-check", action="store_true", help="check each request before answering it")
    ap.add_argument("--run", action="store_true", help="one `shipctl run` (upload overlaps tail-once)")
    ap.add_argument("--shipctl", help="venv folder or shipctl console script to measure (default: beside python)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--noop", type=int, default=0, metavar="N", help="then N runs of the same command, nothing new")
    args = ap.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    log = data / f"access-{args.mb}.log"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "gen_log.py"), str(log), str(args.mb)], check=True)
    size = log.stat().st_size
    with log.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-"))
    recv = Receiver(strict=False, defer=not args.inline_check).start()
    try:
        sink: dict[str, object] = {"compression": args.compression}
        if args.level is not None:
            sink["compression_level"] = args.level
        cfg = tmp / "bench.toml"
        cfg.write_text(
            config_text(
                recv.url,
                f"[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
                f'implicit_agent_process_metrics_monitor = false\n[[logs]]\npath = "{log}"\n',
                **sink,
            )
        )
        env = {**os.environ, "SHIPCTL_STATE": str(tmp / "state.db"), "SCALYR_API_KEY": KEY}
        shipctl = shipctl_command(args.shipctl)
        cpu0, recv_cpu0 = child_cpu(), time.process_time()
        t0 = time.perf_counter()
        tail_rss = tail_cpu = 0.0
        if args.run:
            t_tail = 0.0
            up = timed([*shipctl, "run", "-v", "-c", str(cfg)], env, check=False)
        else:
            tail = timed([*shipctl, "tail-once", "-c", str(cfg)], env, capture=False)
            tail_rss, tail_cpu = tail.rss_mib, tail.cpu
            t_tail = time.perf_counter() - t0
            up = timed([*shipctl, "upload", "-v", "-c", str(cfg)], env, check=False)
        if up.returncode:
            raise SystemExit(f"upload failed: {up.stderr}")
        t_total = time.perf_counter() - t0
        client_cpu, recv_cpu = child_cpu() - cpu0, time.process_time() - recv_cpu0
        recv.wait_idle()
        t1 = time.process_time()
        recv.check_deferred()
        check_cpu = time.process_time() - t1

        runs = sorted(recv.ranges)
        ok = bool(runs) and runs[0][0] == 1 and runs[-1][1] == lines and recv.accepted == lines
        ok = ok and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(runs))
        first = recv.requests[0]
        wire = sum(q.wire_bytes for q in recv.requests)
        body = sum(q.body_bytes for q in recv.requests)
        level = args.level if args.level is not None else "default"
        print(f"log: {size / 1e6:.0f} MB, {lines} lines; compression {args.compression} (level {level})")
        if args.run:
            print("shipctl run: upload alongside tail-once")
        else:
            print(f"tail-once: {t_tail:.2f} s ({size / 1e6 / t_tail:.0f} MB/s), peak RSS {tail_rss:.1f} MiB")
            print(
                f"upload:    {t_total - t_tail:.2f} s ({size / 1e6 / (t_total - t_tail):.0f} MB/s),"
                f" CPU {up.cpu:.2f} s, peak RSS {up.rss_mib:.1f} MiB"
            )
        rss = f", peak RSS {up.rss_mib:.1f} MiB" if args.run else ""
        print(f"end to end: {t_total:.2f} s = {size / 1e6 / t_total:.0f} MB/s{rss}")
        print(
            f"requests: {len(recv.requests)}, {body / 1e6:.0f} MB of JSON, {wire / 1e6:.0f} MB on the wire"
            f" ({wire / max(body, 1):.1%}); first request {first.body_bytes} bytes"
        )
        print(f"cpu: shipctl {client_cpu:.1f} s; receiver {recv_cpu:.1f} s on the clock, {check_cpu:.1f} s after it")
        print(f"every line exactly once: {'yes' if ok else 'NO'}; violations: {recv.violations[:3] or 'none'}")
        noop: list[float] = []
        noop_rss = 0.0
        for _ in range(args.noop):  # everything is delivered: start-up, config, state file, one look
            t = timed([*shipctl, "run" if args.run else "upload", "-c", str(cfg)], env)
            noop.append(t.wall)
            noop_rss = max(noop_rss, t.rss_mib)
        if noop:
            noop.sort()
            print(
                f"no-op {'run' if args.run else 'upload'} (nothing new): best {noop[0]:.3f} s,"
                f" median {noop[len(noop) // 2]:.3f} s, peak RSS {noop_rss:.1f} MiB"
            )
        if args.json:
            figures = {
                "bench": "run" if args.run else "upload",
                "shipctl": shipctl[0],
                "mb": size / 1e6,
                "tail_s": t_tail,
                "upload_s": t_total - t_tail,
                "total_s": t_total,
                "total_mbs": size / 1e6 / t_total,
                "upload_mbs": size / 1e6 / (t_total - t_tail),
                "tail_rss_mib": tail_rss,
                "tail_cpu_s": tail_cpu,
                "upload_cpu_s": up.cpu,
                "upload_rss_mib": up.rss_mib,
                "shipctl_cpu_s": client_cpu,
                "requests": len(recv.requests),
                "exactly_once": ok,
                "noop_s": noop,
                "noop_rss_mib": noop_rss,
            }
            print("JSON " + json.dumps(figures))
        if not ok:
            raise SystemExit(1)
    finally:
        recv.stop()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
