"""Throughput of the otlp sink to a loopback OTLP/HTTP collector (rotel), by hand.

    python benchmarks/bench_otlp.py [--mb 200] [--runs 3] [--protocol protobuf|json] [--compression gzip|none]
                                    [--request-bytes N] [--in-flight N] [--shipctl VENV_OR_SCRIPT] [--rotel PATH]

Each run: a fresh state file, ``shipctl tail-once`` (not timed), then ``shipctl upload`` under
``/usr/bin/time -v``: its wall time gives MB/s of log delivered, its user+system time CPU-seconds per GB of
log. The collector is rotel (``pip install --pre rotel==0.0.1a15``; its ``rotel-agent`` binary is found in
the installed package) with the blackhole exporter and no batching: it decodes every request and throws it
away, on the same 2 cores as shipctl. After the clock stops, ``shipctl status --json`` must show every line delivered
and nothing pending or discarded. Prints each run and the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from benchutil import cpu_seconds, free_port, median, shipctl_command, timed

HERE = Path(__file__).parent


def rotel_binary(given: str | None, shipctl: list[str]) -> Path:
    """``--rotel``, else ``rotel-agent`` inside the rotel package of the venv that runs shipctl or this script."""
    if given:
        return Path(given)
    pythons = [Path(shipctl[0]).parent / "python", Path(sys.executable)]
    for py in pythons:
        if not py.exists():
            continue
        out = subprocess.run(
            [str(py), "-c", "import rotel, os; print(os.path.dirname(rotel.__file__))"], capture_output=True, text=True
        )
        if out.returncode == 0:
            binary = Path(out.stdout.strip()) / "rotel-agent"
            if binary.exists():
                return binary
    raise SystemExit("rotel-agent not found: pip install --pre rotel==0.0.1a15 (or pass --rotel PATH)")


def start_rotel(binary: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(binary),
        "start",
        "--exporter",
        "blackhole",
        # With its default batching (8192 items or 200 ms) rotel 0.0.1a15 held about one reply in four for
        # 0.5-1.2 s on this machine, which measured its batcher rather than the sink: export each request.
        "--disable-batching",
        "--otlp-http-endpoint",
        f"127.0.0.1:{port}",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{free_port()}",
        "--pid-file",
        str(tmp / "rotel.pid"),
        "--log-file",
        str(tmp / "rotel.log"),
    ]
    with (tmp / "rotel.out").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    http = requests.Session()
    http.trust_env = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if http.post(f"{url}/v1/logs", json={"resourceLogs": []}, timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"rotel did not start: {(tmp / 'rotel.out').read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--protocol", default="protobuf", choices=("protobuf", "json"))
    ap.add_argument("--compression", default="gzip", choices=("gzip", "none"))
    ap.add_argument("--request-bytes", type=int, default=0, help="the sink's request_bytes (default: its own)")
    ap.add_argument("--in-flight", type=int, default=0, help="the sink's requests_in_flight (default: its own)")
    ap.add_argument("--shipctl", default=None, help="a venv folder or a shipctl script (default: beside python)")
    ap.add_argument("--rotel", default=None, help="the rotel-agent binary")
    args = ap.parse_args()
    shipctl = shipctl_command(args.shipctl)
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    log = data / f"access-{args.mb}.log"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "gen_log.py"), str(log), str(args.mb)], check=True)
    size = log.stat().st_size
    with log.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    binary = rotel_binary(args.rotel, shipctl)
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-otlp-"))
    proc, url = start_rotel(binary, tmp)
    print(
        f"log: {size / 1e6:.0f} MB, {lines} lines ({size / lines:.0f} bytes/line); otlp {args.protocol}, "
        f"{args.compression}; collector: {binary} (blackhole exporter) at {url}; load before: {os.getloadavg()[0]:.2f}"
    )
    rates: list[float] = []
    cpus: list[float] = []
    try:
        for run in range(args.runs):
            work = tmp / f"run{run}"
            work.mkdir()
            cfg = work / "bench.toml"
            extra = f"request_bytes = {args.request_bytes}\n" if args.request_bytes else ""
            extra += f"requests_in_flight = {args.in_flight}\n" if args.in_flight else ""
            cfg.write_text(
                "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
                f'implicit_agent_process_metrics_monitor = false\n[[logs]]\npath = "{log}"\n'
                f'[[sinks]]\nid = "otel"\ntype = "otlp"\nendpoint = "{url}"\nprotocol = "{args.protocol}"\n'
                f'compression = "{args.compression}"\n{extra}'
            )
            env = {**os.environ, "SHIPCTL_STATE": str(work / "state.db"), "NO_PROXY": "127.0.0.1"}
            timed([*shipctl, "tail-once", "-c", str(cfg)], env)
            rotel_cpu = cpu_seconds(proc.pid)
            up = timed([*shipctl, "upload", "-c", str(cfg)], env)
            rotel_cpu = cpu_seconds(proc.pid) - rotel_cpu
            cpu = float(up.fields["User time (seconds)"]) + float(up.fields["System time (seconds)"])
            st = json.loads(timed([*shipctl, "status", "--json", "-c", str(cfg)], env).stdout)
            (sink,) = st["sinks"]
            if sink["events_uploaded"] != lines or sink["pending_events"] or sink["events_discarded"]:
                raise SystemExit(f"not every line delivered: {sink}")
            rate = size / 1e6 / up.wall
            rates.append(rate)
            cpus.append(cpu / (size / 1e9))
            print(
                f"run {run + 1}: upload {up.wall:.2f} s = {rate:.0f} MB/s; shipctl CPU {cpu:.2f} s"
                f" = {cpu / (size / 1e9):.1f} CPU-s/GB; collector CPU {rotel_cpu:.2f} s; peak RSS {up.rss_mib:.0f} MiB;"
                f" {sink['bytes_uploaded'] / 1e6:.0f} MB of OTLP before compression"
            )
            shutil.rmtree(work)
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"median of {len(rates)}: {median(rates):.0f} MB/s of log, {median(cpus):.1f} CPU-s per GB of log;"
        f" load after: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
