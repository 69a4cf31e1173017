"""Shared fixtures: every test gets its own state file and config under tmp_path (nothing global)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipctl.cli import app
from tests.receiver import KEY, Receiver


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point shipctl's state at tmp_path and make sure no real /etc config is read."""
    monkeypatch.setenv("SHIPCTL_STATE", str(tmp_path / "state" / "state.db"))
    monkeypatch.delenv("SHIPCTL_CONFIG", raising=False)
    monkeypatch.delenv("SHIPCTL_DEBUG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Env:
    """A shipctl set-up in tmp_path: a config file, a log directory and a file sink."""

    tmp: Path
    logs: Path
    sink: Path
    config: Path
    state: Path

    def write_config(self, body: str, *, sink: bool = True) -> Path:
        text = textwrap.dedent(body)
        if sink:
            text += f'\n[[sinks]]\ntype = "file"\npath = "{self.sink}"\n'
        self.config.write_text(text)
        return self.config

    def cli(self, *args: str) -> Result:
        """Run the real CLI in-process (stdout and stderr kept apart)."""
        res = CliRunner().invoke(app, [*args, "-c", str(self.config)] if _takes_config(args) else list(args))
        if res.exception and not isinstance(res.exception, SystemExit):
            raise res.exception
        return Result(res.exit_code, res.stdout, res.stderr)

    def proc(self, *args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
        """Run shipctl as a real subprocess (for kill -9 and concurrency tests)."""
        return subprocess.run(
            [sys.executable, "-m", "shipctl", *args, "-c", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ.copy(),
            **kw,  # type: ignore[arg-type]
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "shipctl", *args, "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )

    @staticmethod
    def kill9(proc: subprocess.Popen[str]) -> bool:
        """kill -9 ``proc`` if it is still running, then reap it and close its pipes; whether this killed it."""
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return killed

    def ship(self) -> Result:
        """tail-once then upload, both must succeed."""
        for cmd in ("tail-once", "upload"):
            r = self.cli(cmd)
            assert r.exit_code == 0, (cmd, r.stdout, r.stderr)
        return r

    def events(self) -> list[dict[str, object]]:
        if not self.sink.exists():
            return []
        return [json.loads(line) for line in self.sink.read_text().splitlines() if line.strip()]

    def messages(self, kind: str = "log") -> list[str]:
        """The messages of one kind, read a line at a time: a million parsed events would hold GBs."""
        if not self.sink.exists():
            return []
        out = []
        with self.sink.open() as fh:
            for line in fh:
                if line.strip():
                    e = json.loads(line)
                    if e["kind"] == kind:
                        out.append(str(e["message"]))
        return out


def _takes_config(args: tuple[str, ...]) -> bool:
    return bool(args) and args[0] not in ("version", "--help") and "-c" not in args and "--config" not in args


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A loopback addEvents receiver, with the API key the test configs import."""
    monkeypatch.setenv("SCALYR_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with Receiver() as r:
        yield r


@pytest.fixture
def env(tmp_path: Path) -> Env:
    logs = tmp_path / "logs"
    logs.mkdir()
    return Env(
        tmp_path, logs, tmp_path / "out" / "sink.jsonl", tmp_path / "shipctl.toml", tmp_path / "state" / "state.db"
    )


def numbered(n: int, start: int = 0, width: int = 60) -> str:
    """Lines "line 000123 xxxx..." easy to check for exactly-once delivery."""
    return "".join(f"line {i:06d} " + "x" * width + "\n" for i in range(start, start + n))


def assert_exactly_once(messages: list[str], expected: range) -> None:
    nums = [int(m.split()[1]) for m in messages if m.startswith("line ")]
    missing = sorted(set(expected) - set(nums))
    dups = sorted({n for n in nums if nums.count(n) > 1}) if len(nums) != len(set(nums)) else []
    assert not missing, f"{len(missing)} lines lost, first {missing[:10]}"
    assert not dups, f"{len(dups)} lines duplicated, first {dups[:10]}"
    assert len(nums) == len(expected), (len(nums), len(expected))


Writer = Callable[[Path, str], None]


def append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


from tests.servers import influxdb, prometheus  # noqa: E402,F401
