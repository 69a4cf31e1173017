"""A real OTLP/HTTP receiver for the otlp sink's tests: rotel (PyPI ``rotel``, a Rust OpenTelemetry collector
whose wheel ships the ``rotel-agent`` binary), started on free 127.0.0.1 ports with its blackhole exporter and
``--debug-log logs --debug-log metrics --debug-log-verbosity detailed``: it prints every log record and data
point it accepted to stdout, which goes to a file that ``records()`` and ``points()`` read back.

A missing rotel skips the tests that use it when run by hand, and fails them when ``CI=true`` (.ci/run installs
it, so a missing one is a broken set-up).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import requests

ROTEL_VERSION = "0.0.1a15"
INSTALL = f"pip install --pre rotel=={ROTEL_VERSION}"
STARTUP_TIMEOUT = 30.0


def rotel_binary() -> Path:
    """The ``rotel-agent`` binary inside the installed ``rotel`` package (skip, or fail in CI, without it)."""
    spec = find_spec("rotel")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "rotel-agent"
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return path
    why = f"rotel is not installed ({INSTALL})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; .ci/run installs it, so in CI this is a failure", pytrace=False)
    pytest.skip(why)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LogRecord:
    resource: dict[str, Any]
    body: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    time: int = 0
    observed: int = 0
    severity_text: str = ""
    severity_number: int = 0
    event_name: str = ""


@dataclass
class Point:
    resource: dict[str, Any]
    name: str
    kind: str  # "Gauge", "Sum"
    monotonic: bool = False
    temporality: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    time: int = 0
    value: int | float | None = None  # None: rotel printed no value


_VALUE = re.compile(r"(Str|Int|Double|Bool)\((.*)\)", re.S)


def _value(text: str) -> Any:
    """rotel's rendering of an AnyValue: Str(x), Int(1), Double(1.5), Bool(true); others as printed."""
    m = _VALUE.fullmatch(text)
    if not m:
        return text
    kind, raw = m.groups()
    if kind == "Int":
        return int(raw)
    if kind == "Double":
        return float(raw)
    if kind == "Bool":
        return raw == "true"
    return raw


def _attr(line: str) -> tuple[str, Any]:
    key, _, value = line.strip().removeprefix("-> ").partition(": ")
    return key, _value(value)


class Rotel:
    """One rotel process; ``url`` is its OTLP/HTTP base URL."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.out = root / "rotel.out"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rotel:
        binary = rotel_binary()
        argv = [
            str(binary),
            "start",
            "--exporter",
            "blackhole",
            "--debug-log",
            "logs",
            "--debug-log",
            "metrics",
            "--debug-log-verbosity",
            "detailed",
            "--disable-batching",  # print each request as it arrives, not every 200 ms
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.port}",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{free_port()}",
            "--pid-file",
            str(self.root / "rotel.pid"),
            "--log-file",
            str(self.root / "rotel.log"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}  # no developer settings
        with self.out.open("ab") as fh:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env)
        http = requests.Session()
        http.trust_env = False  # a proxy in the environment must not see requests to 127.0.0.1
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    # The smallest request rotel takes (it refuses "{}": resourceLogs is required).
                    r = http.post(f"{self.url}/v1/logs", json={"resourceLogs": []}, timeout=2)
                    if r.status_code == 200:
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.05)
        finally:
            http.close()
        self.stop()
        raise RuntimeError(f"rotel did not start on {self.url}:\n{self.text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it has not gone within 10 s."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def text(self) -> str:
        try:
            return self.out.read_text(errors="replace")
        except OSError:
            return ""

    def size(self) -> int:
        try:
            return self.out.stat().st_size
        except OSError:
            return 0

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until rotel has printed nothing new for ``quiet`` seconds: it prints after replying."""
        deadline = time.monotonic() + timeout
        last, since = self.size(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.size()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    # --- reading back what arrived ---------------------------------------------------------------------
    def _lines(self) -> list[str]:
        self.settle()
        # rotel's own log lines (ANSI-coloured, timestamped) are not part of the debug output.
        return [line for line in self.text().split("\n") if not line.startswith("\x1b[")]

    def records(self, service: str | None = None) -> list[LogRecord]:
        """Every log record rotel printed, in arrival order (of the resource with ``service.name`` = service)."""
        out: list[LogRecord] = []
        resource: dict[str, Any] = {}
        rec: LogRecord | None = None
        section = ""
        lines = self._lines()
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if line.startswith(("ResourceLog #", "ResourceMetrics #")):
                resource, rec, section = {}, None, "resource"
            elif line.startswith(("ScopeLogs #", "ScopeMetrics #")):
                section = ""
            elif line.startswith("LogRecord #"):
                rec = LogRecord(resource)
                out.append(rec)
                section = "record"
            elif line.startswith("Resource attributes:"):
                section = "resource"
            elif line.strip().startswith("-> ") and section == "resource":
                k, v = _attr(line)
                resource[k] = v
            elif rec is None:
                continue
            elif line.startswith("ObservedTimestamp: "):
                rec.observed = int(line.split(": ", 1)[1])
            elif line.startswith("Timestamp: "):
                rec.time = int(line.split(": ", 1)[1])
            elif line.startswith("SeverityText: "):
                rec.severity_text = line.split(": ", 1)[1]
            elif line.startswith("SeverityNumber: "):
                rec.severity_number = int(line.rsplit("(", 1)[1].rstrip(")"))
            elif line.startswith("EventName: "):
                rec.event_name = line.split(": ", 1)[1]
            elif line.startswith("Body: "):
                # A body may hold newlines: it runs until the attribute list (every shipctl record has one).
                body = [line[len("Body: ") :]]
                while i < len(lines) and lines[i] != "Attributes:" and not lines[i].startswith("    Trace ID"):
                    body.append(lines[i])
                    i += 1
                rec.body = _value("\n".join(body))
            elif line == "Attributes:":
                section = "attrs"
            elif line.strip().startswith("-> ") and section == "attrs":
                k, v = _attr(line)
                rec.attrs[k] = v
            elif line.startswith(("    Trace ID", "Flags:")):
                section = ""
        return [r for r in out if service is None or r.resource.get("service.name") == service]

    def points(self, service: str | None = None) -> list[Point]:
        """Every number data point rotel printed, with its metric's name and type."""
        out: list[Point] = []
        resource: dict[str, Any] = {}
        metric: dict[str, Any] = {}
        pt: Point | None = None
        section = ""
        for line in self._lines():
            s = line.strip()
            if line.startswith(("ResourceMetrics #", "ResourceLog #")):
                resource, section, pt = {}, "resource", None
            elif line.startswith("Resource attributes:"):
                section = "resource"
            elif line.startswith(("ScopeMetrics #", "ScopeLogs #", "LogRecord #")):
                section, pt = "", None
            elif line.startswith("Metric #"):
                metric, section, pt = {}, "descriptor", None
            elif s.startswith("-> ") and section == "descriptor":
                k, _, v = s[3:].partition(": ")
                metric[k] = v
            elif line.startswith("NumberDataPoints #"):
                pt = Point(
                    resource,
                    metric.get("Name", ""),
                    metric.get("DataType", ""),
                    metric.get("IsMonotonic") == "true",
                    metric.get("AggregationTemporality", ""),
                )
                out.append(pt)
                section = "point"
            elif line.startswith("Data point attributes:"):
                section = "point attrs"
            elif s.startswith("-> ") and section == "resource":
                k, v = _attr(line)
                resource[k] = v
            elif s.startswith("-> ") and section == "point attrs" and pt is not None:
                k, v = _attr(line)
                pt.attrs[k] = v
            elif pt is not None and line.startswith("Timestamp: "):
                pt.time = int(line.split(": ", 1)[1])
            elif pt is not None and line.startswith("Value: "):
                raw = line.split(": ", 1)[1]
                pt.value = int(raw) if re.fullmatch(r"-?\d+", raw) else float(raw)
        return [p for p in out if service is None or p.resource.get("service.name") == service]


@pytest.fixture(scope="session", name="rotel")
def rotel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotel]:
    """One rotel for the session; give each test its own ``service_name`` and read back only that."""
    server = Rotel(tmp_path_factory.mktemp("rotel")).start()
    try:
        yield server
    finally:
        server.stop()
