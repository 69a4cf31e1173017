"""Shared plumbing of the commands: load config, open state under the command's lock, bound a run."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shipctl import fastcli
from shipctl.config import Config, load_config
from shipctl.errors import StateError
from shipctl.runtime import Context, log
from shipctl.state import State, lock, resolve_state_path
from shipctl.state.db import StateDamaged, damage, forget_damage

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


def setup_logging(state_path: Path, log_file: str | None) -> _LazyFileHandler | None:
    """The tool's own log: a small rotating file beside the state file (warnings also go to stderr via
    the CLI). Configured once per process; a later session with another state re-points it."""
    from shipctl.state import db

    path = db.own_log_path(state_path, log_file)
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


@contextlib.contextmanager
def session(
    config_path: str | None, kind: str | None, *, wait: bool = False, config: Config | None = None
) -> Iterator[Context]:
    """Load config, take the lock for ``kind`` (None: no lock), open the state file. After the work: give space
    back to the file system (State.maintain). A damaged state file met by any thread of the command (some
    catch errors to go on with other sinks or monitors) outranks every other outcome: exit 73 with its one
    line. A log file that could not be written makes an otherwise successful command exit 73 too."""
    cfg = config or load_config(config_path)
    state_path = resolve_state_path(cfg.agent.state)
    lock_cm = lock(state_path, kind, wait=wait) if kind else contextlib.nullcontext()
    forget_damage(state_path)
    with lock_cm:
        state = State.open(state_path)
        fastcli.end_startup()
        handler = setup_logging(state_path, cfg.agent.log_file)
        try:
            yield Context(cfg, state)
            state.maintain()
        except StateError:
            raise
        except BaseException:
            found = damage(state_path)
            if found:
                raise StateDamaged(found) from None
            raise
        finally:
            state.close()
        found = damage(state_path)
        if found:
            raise StateDamaged(found)
        if handler is not None and handler.failure:
            raise StateError(f"{handler.failure} (the run itself went through)")
