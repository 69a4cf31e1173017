"""A real rsyslog for the syslog sink's tests: ``start_rsyslog()`` and ``make_certs()`` (the fixtures are in
tests/test_syslog.py).

``rsyslogd -n -f CONF -i PIDFILE`` (Debian's ``rsyslog``; TLS through ``rsyslog-openssl``'s ``ossl`` stream
driver) in the foreground, everything under a pytest temp dir: work directory, pid file, output. Only the
modules the tests need are loaded (``imptcp``, ``imtcp``, ``mmpstrucdata``): no ``imuxsock`` (``/dev/log``) or
``imklog``, nothing that needs root. Four inputs on free 127.0.0.1 ports, all with octet-counted framing (which
imptcp and imtcp detect by themselves), into the ruleset queue README.md recommends for a shipctl receiver:

- ``port``: plain TCP through ``imptcp``, the input README.md recommends (it reads with half the CPU of imtcp);
- ``imtcp_port``: plain TCP through ``imtcp``, rsyslog's usual input;
- ``tls_port``: TLS that wants a client certificate signed by the test CA (``x509/certvalid``);
- ``anon_port``: TLS without client authentication.

Every message is parsed by ``mmpstrucdata`` (the receiver's own reading of the structured data) and written
as one JSON object per line to ``out``: the header fields, the raw ``STRUCTURED-DATA``, ``MSG``, and the
parsed structured data. rsyslog's defaults are kept otherwise, so what the tests see is what a stock
rsyslog does: control characters in a message (newline, tab) arrive escaped as ``#012``, ``#011``.

The certificates (a CA, the server's for IP 127.0.0.1, a client's) are made with the ``openssl`` command.
A missing binary skips these tests by hand and fails them when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import _free_ports

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
INSTALL = "apt-get install -y --no-install-recommends rsyslog rsyslog-openssl openssl"
OSSL_MODULE = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so"

# One JSON object per message. "parsed" is mmpstrucdata's tree ({"rfc5424-sd": {SD-ID: {name: value}}}); it
# is empty (no JSON at all) for a message without structured data, which read() turns into null.
TEMPLATE = (
    '{\\"pri\\":%pri%,\\"ts\\":\\"%timestamp:::date-rfc3339%\\",\\"host\\":\\"%hostname:::json%\\",'
    '\\"app\\":\\"%app-name:::json%\\",\\"procid\\":\\"%procid:::json%\\",\\"msgid\\":\\"%msgid:::json%\\",'
    '\\"sd\\":\\"%structured-data:::json%\\",\\"msg\\":\\"%msg:::json%\\",\\"parsed\\":%$!%}\\n'
)


def _require(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path:
        return path
    why = f"{binary} is not installed (Debian: {INSTALL})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; .ci/run installs it, so in CI this is a failure", pytrace=False)
    pytest.skip(why)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(d: Path) -> Certs:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, by the openssl command."""
    openssl = _require("openssl")
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=shipctl test CA")  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=shipctl test {name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", *ext)  # fmt: skip
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


class Rsyslog:
    """One rsyslogd process; ``stop()`` and ``start()`` again keep its ports and output file."""

    def __init__(self, root: Path, certs: Certs, binary: str) -> None:
        self.root = root
        self.certs = certs
        self.binary = binary
        self.out = root / "messages.jsonl"
        self.log = root / "rsyslogd.log"
        self.pidfile = root / "rsyslogd.pid"
        self.conf = root / "rsyslog.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = self.imtcp_port = self.tls_port = self.anon_port = 0

    def _write_conf(self) -> None:
        (self.root / "work").mkdir(exist_ok=True)
        c = self.certs
        self.conf.write_text(
            f"""\
# Written by tests/servers_syslog.py. No imuxsock, no imklog: nothing of the machine's own syslog.
global(workDirectory="{self.root / "work"}" maxMessageSize="128k"
       defaultNetstreamDriverCAFile="{c.ca}"
       defaultNetstreamDriverCertFile="{c.server_cert}"
       defaultNetstreamDriverKeyFile="{c.server_key}")
module(load="imptcp")
module(load="imtcp")
module(load="mmpstrucdata")
input(type="imptcp" address="127.0.0.1" port="{self.port}" ruleset="ship" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{self.imtcp_port}" ruleset="ship" name="imtcp")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="ship" name="tls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{self.anon_port}" ruleset="ship" name="tls-anon"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="shipjson" type="string" string="{TEMPLATE}")
ruleset(name="ship" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="1024") {{
  action(type="mmpstrucdata" sd_name.lowercase="off")
  action(type="omfile" file="{self.out}" template="shipjson" asyncWriting="on" ioBufferSize="1m")
}}
"""
        )

    def start(self) -> None:
        """Start (again), and wait until every input accepts connections. New ports only on the first start."""
        last = ""
        for _attempt in range(3):
            if not self.port:
                self.port, self.imtcp_port, self.tls_port, self.anon_port = _free_ports(4)
            self._write_conf()
            with self.log.open("ab") as fh:
                self.proc = subprocess.Popen(
                    [self.binary, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if all(_accepts(p) for p in (self.port, self.imtcp_port, self.tls_port, self.anon_port)):
                    return
                time.sleep(0.02)
            self.stop()
            last = self.log.read_text(errors="replace")[-3000:]
            if "already in use" not in last:
                break
            self.port = 0  # taken meanwhile by another process: new ports
        raise RuntimeError(f"rsyslogd did not start (see {self.root}):\n{last}")

    def stop(self) -> None:
        """SIGTERM by PID (rsyslogd writes what it holds, then exits), SIGKILL if it does not."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)

    def address(self, which: str = "tcp") -> str:
        port = {"tcp": self.port, "imtcp": self.imtcp_port, "tls": self.tls_port, "anon": self.anon_port}[which]
        return f"127.0.0.1:{port}"

    def read(self, app: str | None = None) -> list[dict[str, Any]]:
        """Every message written so far (of APP-NAME ``app``), with ``si``/``sn``/``attrs`` taken from the
        structured data as rsyslog parsed it."""
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            if not line.endswith("}"):
                continue  # being written
            rec = json.loads(line[:-1] + "null}" if line.endswith('"parsed":}') else line)
            if app is not None and rec["app"] != app:
                continue
            sd = (rec.get("parsed") or {}).get("rfc5424-sd", {})
            meta = next((v for k, v in sd.items() if k.startswith("shipctl@")), {})
            rec["si"], rec["sn"] = meta.get("si"), int(meta["sn"]) if "sn" in meta else None
            rec["meta"] = meta
            rec["attrs"] = next((v for k, v in sd.items() if k.startswith("attrs@")), {})
            out.append(rec)
        return out

    def count(self, app: str) -> int:
        """How many messages of APP-NAME ``app`` are written so far (cheap: no parsing)."""
        try:
            return self.out.read_bytes().count(b'"app":"%s"' % app.encode())
        except FileNotFoundError:
            return 0

    def wait_for(
        self, app: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """``read(app)`` once ``done`` holds for it (rsyslog writes asynchronously), or what is there at the
        timeout."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.read(app)
            if done(recs) or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_rsyslog(root: Path, certs: Certs) -> Rsyslog:
    binary = _require("rsyslogd")
    if not os.path.exists(OSSL_MODULE):
        why = f"rsyslog's TLS driver {OSSL_MODULE} is missing (Debian: {INSTALL})"
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    root.mkdir(parents=True, exist_ok=True)
    server = Rsyslog(root, certs, binary)
    server.start()
    return server
