"""Throughput of the syslog sink to a loopback rsyslogd (by hand).

    python benchmarks/bench_syslog.py [--mb 200] [--runs 3] [--tls] [--receiver file|discard|null]
                                      [--input imptcp|imtcp] [--workers N] [--batch N] [--request-bytes N]
                                      [--shipctl /path/to/venv] [--json]

Starts ``rsyslogd -n -f CONF -i PIDFILE`` (Debian ``rsyslog``; ``rsyslog-openssl`` for ``--tls``) on a free
127.0.0.1 port, its work files in a temp dir. The receiver is README.md's recommended one (syslog section):
plain TCP through ``imptcp`` (``--input imtcp`` for rsyslog's usual input, which needs about 1.4 times the CPU;
TLS always goes through imtcp), a ruleset queue that hands its worker 1024 messages at a time (``--batch``;
``--workers`` of them: more than one costs CPU and only helps with cores to spare), omfile writing
asynchronously.
``--receiver file`` (default) writes every message to a file per run (timestamp, host, app, msgid, structured
data, message: what a central syslog server does); ``discard`` drops them after parsing. ``null`` is no
syslog server at all: a thread of this script reads each connection to its end and closes it, which shows
the sink's own ceiling.

Each run, on a fresh state file: ``shipctl tail-once`` (not on the clock), then ``shipctl upload`` under
``/usr/bin/time -v``. MB/s of log = log file size / upload wall time; CPU-s per GB = the upload's user+sys
time per GB of log. The upload is done once rsyslogd has read and queued every message (the sink waits for
its close on each request); in ``file`` mode the run then waits until rsyslogd has written every line ("all
written": end-to-end MB/s), rsyslogd's CPU (from /proc) is counted to there, and the output is checked:
every line once (sequence numbers 1..N, no repeats). The median of ``--runs`` runs is printed last.

Measure a regular ``pip install .`` (``--shipctl`` a venv folder), not the editable dev install.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchutil import cpu_seconds, free_port, median, shipctl_command, timed

HERE = Path(__file__).parent


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """CA, server certificate for 127.0.0.1 and its key, by the openssl command."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=bench CA")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=bench")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


def start_rsyslog(
    d: Path, port: int, receiver: str, tls: bool, tcp_input: str, workers: int, batch: int
) -> subprocess.Popen[bytes]:
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.path.exists(binary):
        raise SystemExit("rsyslogd not found (Debian: apt-get install rsyslog rsyslog-openssl)")
    (d / "work").mkdir()
    glob = ""
    driver = ""
    if tls:
        ca, cert, key = make_certs(d)
        glob = (
            f' defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"'
            f' defaultNetstreamDriverKeyFile="{key}"'
        )
        driver = ' streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"'
    if receiver == "file":
        # README.md's recommended receiver (syslog section), with one file per run named by APP-NAME
        action = (
            f'template(name="path" type="string" string="{d}/out-%app-name%.log")\n'
            'template(name="line" type="string"'
            ' string="%timestamp:::date-rfc3339% %hostname% %app-name% %msgid% %structured-data% %msg%\\n")\n'
            'ruleset(name="ship" queue.type="LinkedList" queue.size="200000"'
            f' queue.dequeueBatchSize="{batch}"'
            f' queue.workerThreads="{workers}") {{\n'
            '  action(type="omfile" dynaFile="path" template="line" asyncWriting="on" ioBufferSize="1m")\n}\n'
        )
    else:
        # rsyslogd refuses to start without any action: one that never fires
        action = (
            'ruleset(name="ship") {\n'
            '  if $app-name == "-never-" then { action(type="omfile" file="/dev/null") }\n  stop\n}\n'
        )
    conf = d / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{d / "work"}" maxMessageSize="128k"{glob})\n'
        f'module(load="{tcp_input}")\n'
        f'input(type="{tcp_input}" address="127.0.0.1" port="{port}" ruleset="ship"{driver})\n' + action
    )
    with (d / "rsyslogd.log").open("wb") as fh:
        proc = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(d / "rsyslogd.pid")], stdout=fh, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    raise SystemExit(f"rsyslogd did not start: {(d / 'rsyslogd.log').read_text()}")


class NullReceiver:
    """Reads every connection to its end, then closes it: what the sink waits for, and nothing more."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.bytes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        with conn:
            while n := conn.recv_into(buf):
                self.bytes += n

    def close(self) -> None:
        self.sock.close()


def wait_written(path: Path, lines: int, timeout: float = 120) -> float:
    """Wait for rsyslogd to write all ``lines`` messages; returns time.perf_counter() when it had. Reads only
    what was added since the last look (rereading the whole file would take CPU from rsyslogd)."""
    deadline = time.monotonic() + timeout
    seen = pos = 0
    while seen < lines and time.monotonic() < deadline:
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            pos += len(chunk)
            seen += chunk.count(b"\n")
            if seen >= lines:
                break
        time.sleep(0.05)
    return time.perf_counter()


def check_output(path: Path, lines: int) -> bool:
    """Sequence numbers 1..N in rsyslogd's output, each once."""
    data = path.read_bytes() if path.exists() else b""
    sns = [int(x) for x in re.findall(rb' sn="(\d+)"', data)]
    return len(sns) == lines and len(set(sns)) == lines and min(sns) == 1 and max(sns) == lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tls", action="store_true", help="TLS (rsyslog's ossl driver, server certificate checked)")
    ap.add_argument("--receiver", choices=("file", "discard", "null"), default="file")
    ap.add_argument(
        "--input",
        choices=("imptcp", "imtcp"),
        default="imptcp",
        help="rsyslog's plain TCP input (default imptcp, as README.md recommends; TLS always uses imtcp)",
    )
    ap.add_argument("--workers", type=int, default=1, help="rsyslog ruleset queue.workerThreads (default 1)")
    ap.add_argument("--batch", type=int, default=1024, help="rsyslog ruleset queue.dequeueBatchSize (default 1024)")
    ap.add_argument("--request-bytes", type=int, default=0, help="the sink's request_bytes (default: its own)")
    ap.add_argument("--shipctl", help="venv folder or shipctl console script to measure (default: beside python)")
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
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-syslog-"))
    port = free_port()
    if args.receiver == "null" and args.tls:
        raise SystemExit("--receiver null speaks no TLS")
    null = NullReceiver(port) if args.receiver == "null" else None
    tcp_input = "imtcp" if args.tls else args.input  # imptcp speaks no TLS
    rs = None if null else start_rsyslog(tmp, port, args.receiver, args.tls, tcp_input, args.workers, args.batch)
    receiver_pid = os.getpid() if null else rs.pid  # type: ignore[union-attr]
    shipctl = shipctl_command(args.shipctl)
    results = []
    try:
        for i in range(args.runs):
            app = f"run{i}"
            state = tmp / f"state{i}.db"
            cfg = tmp / f"bench{i}.toml"
            tls = f'tls = true\nca_file = "{tmp / "ca.pem"}"\n' if args.tls else ""
            if args.request_bytes:
                tls += f"request_bytes = {args.request_bytes}\n"
            cfg.write_text(
                "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\n"
                "implicit_agent_process_metrics_monitor = false\n"
                f'[[logs]]\npath = "{log}"\n'
                f'[[sinks]]\nid = "central"\ntype = "syslog"\naddress = "127.0.0.1:{port}"\napp_name = "{app}"\n{tls}'
            )
            env = {**os.environ, "SHIPCTL_STATE": str(state)}
            timed([*shipctl, "tail-once", "-c", str(cfg)], env)
            load0 = os.getloadavg()[0]
            rs_cpu0 = cpu_seconds(receiver_pid)
            t0 = time.perf_counter()
            up = timed([*shipctl, "upload", "-c", str(cfg)], env, check=False)
            if up.returncode:
                raise SystemExit(f"upload failed ({up.returncode}): {up.stderr}")
            out = tmp / f"out-{app}.log"
            # The upload ends when rsyslogd has read (and queued) every message; end to end is until its
            # queue has written them all, and its CPU is counted to there.
            written = wait_written(out, lines) - t0 if args.receiver == "file" else up.wall
            rs_cpu = cpu_seconds(receiver_pid) - rs_cpu0
            cpu = float(up.fields["User time (seconds)"]) + float(up.fields["System time (seconds)"])
            ok = check_output(out, lines) if args.receiver == "file" else None
            r = {
                "mbs": size / 1e6 / up.wall,
                "wall_s": up.wall,
                "written_mbs": size / 1e6 / written,
                "cpu_s_per_gb": cpu / (size / 1e9),
                "receiver_cpu_s_per_gb": rs_cpu / (size / 1e9),
                "rss_mib": up.rss_mib,
                "user_s": float(up.fields["User time (seconds)"]),
                "sys_s": float(up.fields["System time (seconds)"]),
                "exactly_once": ok,
                "load": (load0 + os.getloadavg()[0]) / 2,  # other jobs on the machine (2 cores here)
            }
            results.append(r)
            checked = {None: "not checked", True: "every line once", False: "LINES MISSING OR REPEATED"}[ok]
            print(
                f"run {i + 1}: upload {up.wall:.2f} s = {r['mbs']:.1f} MB/s of log (all written: {written:.2f} s ="
                f" {r['written_mbs']:.1f} MB/s); shipctl {r['cpu_s_per_gb']:.1f}"
                f" CPU-s/GB (user {r['user_s']:.1f} s, sys {r['sys_s']:.1f} s), receiver"
                f" {r['receiver_cpu_s_per_gb']:.1f} CPU-s/GB; peak RSS {up.rss_mib:.1f} MiB;"
                f" {checked}; load average {r['load']:.1f}"
            )
            out.unlink(missing_ok=True)
    finally:
        if rs is not None:
            os.kill(rs.pid, signal.SIGTERM)
            rs.wait(30)
        if null is not None:
            null.close()
    how = f"{'TLS' if args.tls else 'TCP'}, receiver {args.receiver}"
    if args.receiver != "null":
        how += f" ({tcp_input}, {args.workers} queue worker(s), batch {args.batch})"
    print(f"log: {size / 1e6:.0f} MB, {lines} lines; syslog over {how}; {args.runs} runs")
    keys = ("mbs", "written_mbs", "cpu_s_per_gb", "receiver_cpu_s_per_gb", "rss_mib")
    mid = {k: median([r[k] for r in results]) for k in keys}
    print(
        f"median: {mid['mbs']:.1f} MB/s of log ({mid['written_mbs']:.1f} MB/s until all written),"
        f" shipctl {mid['cpu_s_per_gb']:.1f} CPU-s per GB,"
        f" receiver {mid['receiver_cpu_s_per_gb']:.1f} CPU-s per GB, peak RSS {mid['rss_mib']:.1f} MiB"
    )
    if args.json:
        info = {
            "bench": "syslog",
            "tls": args.tls,
            "receiver": args.receiver,
            "input": tcp_input if args.receiver != "null" else None,
            "batch": args.batch,
            "workers": args.workers,
        }
        print("JSON " + json.dumps({**info, **mid}))
    shutil.rmtree(tmp)
    if any(r["exactly_once"] is False for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
