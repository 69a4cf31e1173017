"""Throughput of the syslog sink to a loopback rsyslogd (by hand).

    python benchmarks/bench_syslog.py [--mb 200] [--runs 3] [--tls] [--receiver file|discard|null]
                                      [--request-bytes N] [--shipctl /path/to/venv] [--json]

Starts ``rsyslogd -n -f CONF -i PIDFILE`` (Debian ``rsyslog``; ``rsyslog-openssl`` for ``--tls``) on a free
127.0.0.1 port with imtcp, its work files in a temp dir. ``--receiver file`` (default) writes every message
to a file per run (timestamp, host, app, msgid, structured data, message: what a central syslog server
does); ``discard`` drops them after parsing. ``null`` is no syslog server at all: a thread of this script
reads each connection to its end and closes it, which shows the sink's own ceiling (rsyslogd needs about a
core per 45-50 MB/s of ~120-byte lines here: on 2 cores it, not the sink, sets the pace).

Each run, on a fresh state file: ``shipctl tail-once`` (not on the clock), then ``shipctl upload`` under
``/usr/bin/time -v``. MB/s of log = log file size / upload wall time; CPU-s per GB = the upload's user+sys
time per GB of log; rsyslogd's CPU over the same time is read from /proc. The upload is done only once
rsyslogd has read every message (the sink waits for its close on each request). In ``file`` mode the
output is then checked: every line once (sequence numbers 1..N, no repeats). The median of ``--runs`` runs
is printed last.

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


def start_rsyslog(d: Path, port: int, receiver: str, tls: bool) -> subprocess.Popen[bytes]:
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
        action = (
            f'template(name="path" type="string" string="{d}/out-%app-name%.log")\n'
            'template(name="line" type="string"'
            ' string="%timestamp:::date-rfc3339% %hostname% %app-name% %msgid% %structured-data% %msg%\\n")\n'
            'ruleset(name="ship" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="4096") {\n'
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
        'module(load="imtcp")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="ship"{driver})\n' + action
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


def check_output(path: Path, lines: int, timeout: float = 120) -> bool:
    """Wait for rsyslogd to write all ``lines`` messages, then check sequence numbers 1..N, each once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size and path.read_bytes().count(b"\n") >= lines:
            break
        time.sleep(0.2)
    data = path.read_bytes() if path.exists() else b""
    sns = [int(x) for x in re.findall(rb' sn="(\d+)"', data)]
    return len(sns) == lines and len(set(sns)) == lines and min(sns) == 1 and max(sns) == lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tls", action="store_true", help="TLS (rsyslog's ossl driver, server certificate checked)")
    ap.add_argument("--receiver", choices=("file", "discard", "null"), default="file")
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
    rs = None if null else start_rsyslog(tmp, port, args.receiver, args.tls)
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
            up = timed([*shipctl, "upload", "-c", str(cfg)], env, check=False)
            rs_cpu = cpu_seconds(receiver_pid) - rs_cpu0
            if up.returncode:
                raise SystemExit(f"upload failed ({up.returncode}): {up.stderr}")
            cpu = float(up.fields["User time (seconds)"]) + float(up.fields["System time (seconds)"])
            ok = check_output(tmp / f"out-{app}.log", lines) if args.receiver == "file" else None
            r = {
                "mbs": size / 1e6 / up.wall,
                "wall_s": up.wall,
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
                f"run {i + 1}: upload {up.wall:.2f} s = {r['mbs']:.1f} MB/s of log; shipctl {r['cpu_s_per_gb']:.1f}"
                f" CPU-s/GB (user {r['user_s']:.1f} s, sys {r['sys_s']:.1f} s), receiver"
                f" {r['receiver_cpu_s_per_gb']:.1f} CPU-s/GB; peak RSS {up.rss_mib:.1f} MiB;"
                f" {checked}; load average {r['load']:.1f}"
            )
            (tmp / f"out-{app}.log").unlink(missing_ok=True)
    finally:
        if rs is not None:
            os.kill(rs.pid, signal.SIGTERM)
            rs.wait(30)
        if null is not None:
            null.close()
    how = f"{'TLS' if args.tls else 'TCP'}, receiver {args.receiver}"
    print(f"log: {size / 1e6:.0f} MB, {lines} lines; syslog over {how}; {args.runs} runs")
    mid = {k: median([r[k] for r in results]) for k in ("mbs", "cpu_s_per_gb", "receiver_cpu_s_per_gb", "rss_mib")}
    print(
        f"median: {mid['mbs']:.1f} MB/s of log, shipctl {mid['cpu_s_per_gb']:.1f} CPU-s per GB,"
        f" receiver {mid['receiver_cpu_s_per_gb']:.1f} CPU-s per GB, peak RSS {mid['rss_mib']:.1f} MiB"
    )
    if args.json:
        print("JSON " + json.dumps({"bench": "syslog", "tls": args.tls, "receiver": args.receiver, **mid}))
    shutil.rmtree(tmp)
    if any(r["exactly_once"] is False for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
