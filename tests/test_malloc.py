"""shipctl.malloc: glibc's allocator set for a run that moves data (issue 13: peak RSS)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from shipctl import malloc
from tests.conftest import Env, numbered


class Mallopt:
    """Records its calls; takes argtypes and restype like a ctypes function."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


class FakeLibc:
    def __init__(self) -> None:
        self.mallopt = Mallopt()
        self.calls = self.mallopt.calls


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(malloc, "_tuned", False)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    return fake


def test_a_fixed_mmap_threshold_and_one_arena_once(libc: FakeLibc) -> None:
    malloc.tune()
    malloc.tune()
    assert libc.calls == [(malloc.M_MMAP_THRESHOLD, 512 << 10), (malloc.M_ARENA_MAX, 1)]


def test_an_upload_on_its_own_keeps_batch_sized_buffers_in_the_heap(libc: FakeLibc) -> None:
    malloc.tune(heap=True)
    assert libc.calls == [
        (malloc.M_MMAP_THRESHOLD, 4 << 20),
        (malloc.M_TRIM_THRESHOLD, 64 << 20),
        (malloc.M_ARENA_MAX, 1),
    ]


def test_upload_asks_for_the_heap_and_run_does_not(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(malloc, "tune", lambda heap=False: asked.append(heap))
    log = env.logs / "app.log"
    log.write_text(numbered(100))
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("tail-once").exit_code == 0
    asked.clear()
    assert env.cli("upload").exit_code == 0 and asked == [True]
    log.write_text(numbered(200))
    asked.clear()
    assert env.cli("run").exit_code == 0 and asked and not any(asked)  # tail-once's buffers are alive too
    assert len(env.messages("log")) == 200
    second = env.tmp / "second.jsonl"
    env.write_config(
        f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n'
        f'[[sinks]]\ntype = "file"\nid = "second"\npath = "{second}"\n'
    )
    log.write_text(numbered(300))
    assert env.cli("tail-once").exit_code == 0
    asked.clear()
    assert env.cli("upload").exit_code == 0 and asked == [False, False]  # two sinks' threads allocate at once
    assert len(second.read_text().splitlines()) == 100  # a sink added later starts at what is new


def test_the_environment_wins(libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    malloc.tune(heap=True)
    assert libc.calls == [(malloc.M_MMAP_THRESHOLD, 4 << 20)]


def test_no_mallopt_no_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "_tuned", False)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    malloc.tune()  # nothing raised


def test_the_real_libc_takes_the_settings() -> None:
    code = "from shipctl import malloc; malloc.tune(); b = bytearray(1 << 20); print(len(b))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, "1048576\n", "")
