"""What every run passes around: the config and state it works on, and how much it may do. No I/O here;
the engines (tail, monitors, delivery) and the commands import it, so it imports none of them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shipctl.config import Config
from shipctl.state import State

log = logging.getLogger("shipctl")


@dataclass
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


@dataclass
class Context:
    """What a command works with: the configuration and the open state file."""

    config: Config
    state: State
