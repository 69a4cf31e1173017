"""The tool's own log file: a small rotating file beside the state file, kept private (0600, never through a
symbolic link), opened on the first record.

Imported only once something logs: ``logging`` and what it imports cost ~3 ms of a no-op run, which logs
nothing (issue 13; see ``shipctl.runtime.LazyLogger``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_MAX_BYTES = 1 << 20
LOG_BACKUPS = 3


def _open_private(path: str) -> int:
    """A descriptor for appending to the log: created 0600 whatever the umask, never through a symlink, never
    a FIFO (that would block) or a file with another hard link; an existing file is made 0600 again."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link: refusing to follow it", path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if st.st_nlink != 1:
            raise OSError(errno.EINVAL, "it has another hard link: refusing to write to it", path)
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_private(path: str) -> None:
    """Rotated logs of an older shipctl may be 0644: tighten them (never through a symlink)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _rotating(path: Path, failed: Callable[[BaseException | None], None]) -> logging.Handler:
    """A RotatingFileHandler that keeps every generation 0600 and reports a failed write once, in one line,
    instead of logging's traceback on stderr."""
    import logging.handlers

    class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
        def _open(self) -> Any:
            return open(_open_private(self.baseFilename), "a", encoding="utf-8", errors="backslashreplace")

        def doRollover(self) -> None:
            super().doRollover()
            for i in range(1, self.backupCount + 1):
                _make_private(f"{self.baseFilename}.{i}")

        def handleError(self, record: logging.LogRecord) -> None:
            failed(sys.exc_info()[1])

    return PrivateRotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")


class _LazyFileHandler(logging.Handler):
    """A rotating log file opened on the first record: a quiet run neither imports logging.handlers nor
    touches the file. When the file cannot be opened or written (disk full, permissions, a symlink planted in
    its place), it stops trying and keeps the reason in ``failure`` for the command to report in one line."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._target: logging.Handler | None = None
        self.failure: str | None = None

    def retarget(self, path: Path) -> None:
        """Point at another file (a later session in the same process, as in tests) and forget old failures."""
        if self._target is not None:
            self._target.close()
        self.path = path
        self._target = None
        self.failure = None

    def _failed(self, exc: BaseException | None) -> None:
        if self.failure is None:
            reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
            self.failure = f"{self.path}: cannot write the log file: {reason}"
        if self._target is not None:
            with contextlib.suppress(Exception):
                self._target.close()
        self._target = logging.NullHandler()

    def emit(self, record: logging.LogRecord) -> None:
        if self._target is None:
            try:
                self._target = _rotating(self.path, self._failed)
            except OSError as exc:
                self._failed(exc)
            self._target.setFormatter(self.formatter)  # type: ignore[union-attr]
        self._target.emit(record)  # type: ignore[union-attr]

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
        super().close()


def attach(log: logging.Logger, path: Path) -> _LazyFileHandler | None:
    """Point ``log`` at the log file ``path``: configured once per process, a later session with another state
    re-points it. None when whoever embeds us configured the logger already."""
    for h in log.handlers:
        if isinstance(h, _LazyFileHandler):
            if h.path != path or h.failure:
                h.retarget(path)
            return h
    if log.handlers:
        return None  # configured by whoever embeds us
    handler = _LazyFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler
