"""Real servers for the wire tests: session-scoped fixtures ``influxdb`` (InfluxDB 1.x ``influxd``) and
``prometheus`` (``prometheus`` with its remote-write receiver on).

Each server runs from the Debian package's binary on free 127.0.0.1 ports, with its config and data in a
pytest temp dir, and is stopped by PID when the session ends. Mocks would only check our own reading of the
protocols; these check what the servers accept and store.

A missing binary skips the tests that use it when run by hand, and fails them when ``CI=true``: in CI the
servers are installed by .ci/run, so a missing one is a broken set-up, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from shipctl.sinks.promwire import REMOTE_WRITE_HEADERS

STARTUP_TIMEOUT = 60.0  # seconds; both start in 1-3 s here, but CI machines have 2 cores and a cold cache
STOP_TIMEOUT = 15.0


def influxql_ident(name: str) -> str:
    """Quote any name for InfluxQL: double quotes, with backslash escapes for ``\\``, ``"`` and newline."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class ServerProcess:
    """A server process started by a test fixture: its directory and log, stopped by PID. Shared by every
    fixture that runs a real server (tests/servers_*.py)."""

    name = "server"

    def __init__(self, proc: subprocess.Popen[bytes], root: Path, log: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.root = root
        self.log = log

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited within STOP_TIMEOUT."""
        if self.proc.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.proc.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)


class _Server(ServerProcess):
    """An HTTP server process: its base URL, the URL that answers 2xx once it is ready, and a requests session
    that ignores proxy variables (a proxy set in the environment must not see, or break, requests to
    127.0.0.1)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, root: Path, log: Path, ready_url: str = "") -> None:
        super().__init__(proc, root, log)
        self.url = url
        self.ready_url = ready_url or url
        self.http = requests.Session()
        self.http.trust_env = False

    def answers(self) -> bool:
        try:
            return self.http.get(self.ready_url, timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.http.close()
        super().stop()


class InfluxDB(_Server):
    """A running ``influxd`` (1.x). ``url`` is ``http://127.0.0.1:PORT``, no auth."""

    name = "influxd"

    def write(self, db: str, body: bytes, *, precision: str = "ns") -> requests.Response:
        """POST /write: 204 when every point was stored, 400 with ``{"error": ...}`` otherwise."""
        return self.http.post(f"{self.url}/write", params={"db": db, "precision": precision}, data=body, timeout=30)

    def query(self, db: str, q: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """GET /query for one read statement; the series of its result (``name``, ``tags`` when grouped,
        ``columns``, ``values``), ``[]`` when nothing matched. With ``epoch="ns"`` times are int nanoseconds.
        An error in the result raises AssertionError with influx's message."""
        r = self.http.get(f"{self.url}/query", params={"db": db, "q": q, "epoch": epoch}, timeout=30)
        r.raise_for_status()
        result = r.json()["results"][0]
        assert "error" not in result, f"{q!r}: {result['error']}"
        return list(result.get("series", []))

    def rows(self, db: str, q: str) -> list[dict[str, Any]]:
        """``query()`` flattened: one dict per row, the columns plus ``_measurement`` and the series' tags."""
        out = []
        for s in self.query(db, q):
            for values in s["values"]:
                out.append(
                    {"_measurement": s["name"], **s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))}
                )
        return out

    def create_db(self, name: str | None = None) -> str:
        """Create a database (a fresh uniquely named one by default) and return its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        # Statements that change things must be POSTed in 1.x; GET refuses them.
        r = self.http.post(f"{self.url}/query", params={"q": f"CREATE DATABASE {influxql_ident(name)}"}, timeout=30)
        r.raise_for_status()
        assert "error" not in r.json()["results"][0], r.text
        return name


class Prometheus(_Server):
    """A running ``prometheus`` with ``--web.enable-remote-write-receiver``, no scrape targets.

    Its TSDB only accepts a sample newer than about one hour (half the 2 h head chunk range) before the
    newest sample it holds, whatever the series: older ones get 400 "out of bounds". On an empty head the
    first sample sets that point, however old, and one sample from the future moves the window for every
    series (after a sample at now+10min, now-55min is already out of bounds). Per series, a sample older
    than the series' last one is 400 "out of order sample"; the same timestamp with another value is 400
    "duplicate sample for timestamp". A request with any such sample stores none of its samples. So: write
    samples from the last few minutes, never from the future, and give each test its own metric names.
    """

    name = "prometheus"

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def remote_write(self, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        """POST a snappy-compressed WriteRequest to /api/v1/write (204 when stored)."""
        return self.http.post(self.write_url, data=body, headers=headers or REMOTE_WRITE_HEADERS, timeout=30)

    def query(self, expr: str, time: float | str | None = None) -> list[dict[str, Any]]:
        """Instant query; ``time`` in Unix seconds (``"1700000000.123"`` is exact to the ms, which a float may not
        be), the server's now if None. The ``result`` list:
        for a vector ``[{"metric": {...}, "value": [seconds, "text of the float"]}, ...]``. An instant query
        sees the newest sample up to 5 min before ``time``, so query at a sample's own time to get it."""
        params: dict[str, float | str] = {"query": expr}
        if time is not None:
            params["time"] = time
        r = self.http.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body.get("status") == "success", f"{expr!r}: {r.status_code} {r.text}"
        return list(body["data"]["result"])


# ---------------------------------------------------------------------------------------------------------
# Starting


def require_binary(*names: str, package: str) -> str:
    """The path of the first of ``names`` found on PATH or in /usr/sbin (which a non-root PATH may not hold).
    None found: the test is skipped when run by hand and fails under ``CI=true``, where .ci/run installs the
    Debian ``package``, so a missing one is a broken set-up, not a reason to skip."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if path:
            return path
    why = f"{names[0]} is not installed (Debian: apt-get install {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; .ci/run installs it, so in CI this is a failure", pytrace=False)
    pytest.skip(why)


def _require(binary: str) -> str:
    return require_binary(binary, package="influxdb prometheus")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1. Another process may take one before the server binds it: the
    caller retries on "address already in use"."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _child_env() -> dict[str, str]:
    # influxd lets INFLUXDB_* variables override its config file (INFLUXDB_HTTP_BIND_ADDRESS, ...): a developer's
    # own settings must not move the test server.
    return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}


P = TypeVar("P", bound=ServerProcess)


def start_on_free_ports(
    what: str, root: Path, nports: int, launch: Callable[[Path, list[int]], P], ready: Callable[[P], bool]
) -> P:
    """Start a server on free 127.0.0.1 ports and wait until ``ready(server)`` is true. ``launch(attempt_dir,
    ports)`` starts the process in a new directory and returns it. Another process may take a port between
    ``_free_ports`` and the server binding it: up to 3 tries with new ports while the server's log says a port
    was already in use; any other death, or STARTUP_TIMEOUT, raises RuntimeError with the log's end."""
    last = ""
    for attempt in range(3):
        adir = root / f"run{attempt}"
        adir.mkdir(parents=True)
        server = launch(adir, _free_ports(nports))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and server.proc.poll() is None:
            if ready(server):
                return server
            time.sleep(0.05)
        server.stop()
        last = server.log_tail()
        if "already in use" not in last:
            break
    raise RuntimeError(f"{what} did not become ready (see {root}):\n{last}")


def _start(
    kind: type[_Server],
    root: Path,
    prepare: Callable[[Path, list[int]], tuple[list[str], str, str]],
    nports: int,
) -> _Server:
    """Start an HTTP server and wait until its readiness URL answers 2xx. ``prepare(attempt_dir, ports)``
    writes config and returns (argv, base url, readiness url)."""

    def launch(adir: Path, ports: list[int]) -> _Server:
        argv, url, ready = prepare(adir, ports)
        log = adir / f"{kind.name}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=_child_env()
            )
        return kind(proc, url, adir, log, ready)

    return start_on_free_ports(kind.name, root, nports, launch, _Server.answers)


def _influx_prepare(binary: str) -> Callable[[Path, list[int]], tuple[list[str], str, str]]:
    def prepare(d: Path, ports: list[int]) -> tuple[list[str], str, str]:
        http, rpc = ports
        conf = d / "influxdb.conf"
        conf.write_text(
            f"""\
# Written by tests/servers.py for one test session.
reporting-disabled = true   # upstream's key: no usage reports to influxdata
reporting-enabled = false   # Debian's build renames it (and defaults it off); unknown keys are ignored
bind-address = "127.0.0.1:{rpc}"   # backup/restore RPC, default :8088 on all interfaces

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
  pprof-enabled = false

# Background services the tests do not use: off, so they write nothing and start no timers.
[monitor]
  store-enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""
        )
        url = f"http://127.0.0.1:{http}"
        return [binary, "run", "-config", str(conf)], url, f"{url}/ping"

    return prepare


def _prometheus_prepare(binary: str) -> Callable[[Path, list[int]], tuple[list[str], str, str]]:
    def prepare(d: Path, ports: list[int]) -> tuple[list[str], str, str]:
        (port,) = ports
        conf = d / "prometheus.yml"
        conf.write_text("# No scrape targets: the tests push with remote write.\nscrape_configs: []\n")
        argv = [
            binary,
            "--web.enable-remote-write-receiver",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--config.file={conf}",
        ]
        url = f"http://127.0.0.1:{port}"
        return argv, url, f"{url}/-/ready"

    return prepare


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """A real InfluxDB 1.x for the whole session; use ``create_db()`` for a database of your own."""
    binary = _require("influxd")
    server = _start(InfluxDB, tmp_path_factory.mktemp("influxdb"), _influx_prepare(binary), nports=2)
    assert isinstance(server, InfluxDB)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus with the remote-write receiver for the whole session. Shared: see ``Prometheus`` for
    which sample times it takes (the last hour, never the future) and use metric names of your own."""
    binary = _require("prometheus")
    server = _start(Prometheus, tmp_path_factory.mktemp("prometheus"), _prometheus_prepare(binary), nports=1)
    assert isinstance(server, Prometheus)
    try:
        yield server
    finally:
        server.stop()
