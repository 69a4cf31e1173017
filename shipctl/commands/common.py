"""Shared plumbing of the commands: load config, open state under the command's lock, bound a run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from shipctl.config import Config, load_config
from shipctl.runtime import Context, log
from shipctl.state import State, lock, resolve_state_path


class _LazyFileHandler(logging.Handler):
    """A rotating log file opened on the first record: a quiet run neither imports logging.handlers nor
    touches the file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._target: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._target is None:
            import logging.handlers

            try:
                self._target = logging.handlers.RotatingFileHandler(self.path, maxBytes=1 << 20, backupCount=3)
                self.path.chmod(0o600)
            except OSError:
                self._target = logging.NullHandler()
            self._target.setFormatter(self.formatter)
        self._target.emit(record)

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
        super().close()


def setup_logging(state_path: Path, log_file: str | None) -> None:
    """The tool's own log: a small rotating file beside the state file (warnings also go to stderr via
    the CLI). Configured once per process."""
    if log.handlers:
        return
    handler = _LazyFileHandler(Path(log_file) if log_file else state_path.with_name("shipctl.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


@contextlib.contextmanager
def session(
    config_path: str | None, kind: str | None, *, wait: bool = False, config: Config | None = None
) -> Iterator[Context]:
    """Load config, take the lock for ``kind`` (None: read-only, no lock), open the state file."""
    cfg = config or load_config(config_path)
    state_path = resolve_state_path(cfg.agent.state)
    lock_cm = lock(state_path, kind, wait=wait) if kind else contextlib.nullcontext()
    with lock_cm:
        state = State.open(state_path)
        setup_logging(state_path, cfg.agent.log_file)
        try:
            yield Context(cfg, state)
        finally:
            state.close()
