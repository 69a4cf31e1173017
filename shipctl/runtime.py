"""What every run passes around: the config and state it works on, and how much it may do. No I/O here;
the engines (tail, monitors, delivery) and the commands import it, so it imports none of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipctl.config import Config
from shipctl.records import record
from shipctl.state import State

if TYPE_CHECKING:
    import logging


class LazyLogger:
    """A ``logging.Logger`` (every attribute is the real one's) that imports ``logging`` when first used.

    ``logging`` imports ``traceback``, ``linecache``, ``tokenize``, ``textwrap`` and ``string``: ~3 ms and
    ~0.4 MiB of a no-op run, which logs nothing (issue 13). How the logger is to be set up (the tool's log
    file, shipctl/logfile.py) is given to :meth:`configure` and done on first use, before the first record.
    Loggers below it (``shipctl.kafka``...) are made with ``log.getChild()``, which sets it up too; a record
    sent to one of them before that would miss the log file.
    """

    __slots__ = ("_lock", "_logger", "_name", "_setup")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None
        self._setup: Callable[[logging.Logger], None] | None = None
        # The upload threads may log first, at the same time; reentrant for a set-up that uses the logger.
        self._lock = threading.RLock()

    def configure(self, setup: Callable[[logging.Logger], None]) -> None:
        """Set the real logger up with ``setup``: at once if it is in use already, else on first use (the
        last one given wins: a later session replaces an earlier one's set-up that never ran)."""
        with self._lock:
            if self._logger is None:
                self._setup = setup
                return
        setup(self._logger)

    def real(self) -> logging.Logger:
        """The real logger, set up."""
        logger = self._logger
        if logger is None:
            with self._lock:
                logger = self._logger
                if logger is None:
                    import logging

                    logger = logging.getLogger(self._name)
                    setup, self._setup = self._setup, None
                    if setup is not None:
                        setup(logger)  # before any other thread gets the logger (they wait for the lock)
                    self._logger = logger
        return logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


log = LazyLogger("shipctl")


@record
class Budget:
    """How much one run may do; checked between batches so a run always stops on a boundary."""

    max_seconds: float = 0.0
    max_bytes: int = 0
    started: float = 0.0
    used_bytes: int = 0
    stopped: str | None = None

    def __post_init__(self) -> None:
        self.started = self.started or time.monotonic()

    def deadline(self) -> float | None:
        """When the time budget ends (``time.monotonic()``), or None without one."""
        return self.started + self.max_seconds if self.max_seconds else None

    def exhausted(self) -> bool:
        if self.stopped:
            return True
        if self.max_seconds and time.monotonic() - self.started >= self.max_seconds:
            self.stopped = f"time limit of {self.max_seconds:g} s reached"
        elif self.max_bytes and self.used_bytes >= self.max_bytes:
            self.stopped = f"byte limit of {self.max_bytes} reached"
        return self.stopped is not None


@record
class Context:
    """What a command works with: the configuration and the open state file."""

    config: Config
    state: State
