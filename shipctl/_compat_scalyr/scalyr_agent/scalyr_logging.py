"""``scalyr_agent.scalyr_logging``: ``getLogger`` and ``AgentLogger`` (shipctl/scalyrapi/logger.py)."""

import logging.handlers
from typing import Any

from shipctl.scalyrapi.logger import (
    DEBUG_LEVEL_0,
    DEBUG_LEVEL_1,
    DEBUG_LEVEL_2,
    DEBUG_LEVEL_3,
    DEBUG_LEVEL_4,
    DEBUG_LEVEL_5,
    AgentLogger,
    UnsupportedValueType,
    getLogger,
)


class AutoFlushingRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file written through on every record (``flushDelay`` is accepted; records are not held)."""

    def __init__(
        self,
        filename: str,
        mode: str = "a",
        maxBytes: int = 0,
        backupCount: int = 0,
        encoding: Any = None,
        delay: bool = False,
        flushDelay: float = 0.0,
    ) -> None:
        super().__init__(filename, mode, maxBytes, backupCount, encoding, delay)
        self.flush_delay = flushDelay


__all__ = [
    "DEBUG_LEVEL_0",
    "DEBUG_LEVEL_1",
    "DEBUG_LEVEL_2",
    "DEBUG_LEVEL_3",
    "DEBUG_LEVEL_4",
    "DEBUG_LEVEL_5",
    "AgentLogger",
    "AutoFlushingRotatingFileHandler",
    "UnsupportedValueType",
    "getLogger",
]
