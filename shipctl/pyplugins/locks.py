"""One run at a time per (plugin, resource): an flock on a small file beside the state file.

A plugin run that outlives its deadline is abandoned by the monitor but keeps running in its thread (Python
cannot stop it); the next run, in this process or another, must not start the same plugin on the same resource
meanwhile — the overlap Panoptes had to fix (#43). flock is per open file, so this holds between threads of one
process as well as between processes, and a killed process releases it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path

from shipctl.records import record

_local_held: set[str] = set()  # without a state file (ad hoc --print): this process only
_local_lock = threading.Lock()


@record
class Held:
    """A plugin resource lock this process holds."""

    fd: int | None
    name: str

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the flock
            self.fd = None
        else:
            with _local_lock:
                _local_held.discard(self.name)


@record(frozen=True)
class Busy:
    """A plugin resource lock another process holds."""

    holder: str  # "pid N since <time>", or "" when unknown


def lock_dir(state_path: Path) -> Path:
    return state_path.with_name(f"{state_path.name}.plugin-locks")


def try_lock(state_path: Path | None, plugin: str, resource_key: str) -> Held | Busy:
    """Take the (plugin, resource) lock without waiting: Held, or Busy naming the holder."""
    name = hashlib.sha256(f"{plugin}\0{resource_key}".encode()).hexdigest()[:24]
    if state_path is None:
        with _local_lock:
            if name in _local_held:
                return Busy("")
            _local_held.add(name)
        return Held(None, name)
    d = lock_dir(state_path)
    with contextlib.suppress(FileExistsError):
        d.mkdir(mode=0o700)
    fd = os.open(d / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = ""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return Busy(holder)
        raise
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} since {stamp}".encode(), 0)
    return Held(fd, name)
