"""shipctl.malloc: glibc's allocator set for a run that moves data (issue 13: peak RSS)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from shipctl import malloc


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
    return fake


def test_a_fixed_mmap_threshold_and_one_arena_once(libc: FakeLibc) -> None:
    malloc.tune()
    malloc.tune()
    assert libc.calls == [(malloc.M_MMAP_THRESHOLD, 512 << 10), (malloc.M_ARENA_MAX, 1)]


def test_the_environment_wins(libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    malloc.tune()
    assert libc.calls == [(malloc.M_MMAP_THRESHOLD, 512 << 10)]


def test_no_mallopt_no_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "_tuned", False)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    malloc.tune()  # nothing raised


def test_the_real_libc_takes_the_settings() -> None:
    code = "from shipctl import malloc; malloc.tune(); b = bytearray(1 << 20); print(len(b))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, "1048576\n", "")
