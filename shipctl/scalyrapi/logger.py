"""The Scalyr agent's ``AgentLogger`` and what a monitor run captures through it.

A monitor's ``self._logger`` is an ``AgentLogger`` bound to the run's ``Capture``; loggers a module makes for
itself (``scalyr_logging.getLogger(__name__)`` at import) are not bound, and report to the capture of the
monitor running in the calling thread, or to shipctl's own log when none is. What goes where:

- ``emit_value(name, value, extra_fields)``: one metric sample; a metric defined ``cumulative=True`` is a
  counter. Names are made valid as the agent does (``sa_`` prefix, ``_`` for other characters, with a warning).
- ``warn``/``warning``: a warning of the run (shown by ``run-monitor`` and ``status``); ``error``,
  ``exception``, ``critical``: an error of the run (exit 65, shown by ``status``), as the agent counts them
  as the monitor's errors. ``info``/``debug`` go to shipctl's log file.
- ``limit_once_per_x_secs`` + ``limit_key``: once per run (a run lasts a few seconds).
- ``info(..., emit_to_metric_log=True)``: a line in the monitor's log, queued as a ``log`` event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from shipctl import runtime
from shipctl.monitors.base import COUNTER, GAUGE, Sample

# The agent's debug levels (DEBUG_LEVEL_0 is its normal level).
DEBUG_LEVEL_0 = logging.INFO
DEBUG_LEVEL_1 = logging.DEBUG
DEBUG_LEVEL_2 = 7
DEBUG_LEVEL_3 = 6
DEBUG_LEVEL_4 = 5
DEBUG_LEVEL_5 = 4

MAX_NOTES = 20  # warnings kept per run: a monitor warning in a loop must not flood status
MAX_SAMPLES = 100_000  # values kept per run; past it the run says so instead of filling memory and the queue
_VALID_NAME = re.compile(r"[_a-zA-Z][\w.\-]*$")
_BAD_CHARS = re.compile(r"[^\w.\-]")
_shipctl_log = runtime.log.getChild("scalyr")  # through the tool's logger: set up before the first record


class UnsupportedValueType(Exception):
    """A metric name, value or extra field of a type the agent does not accept (as the agent raises it)."""

    def __init__(
        self,
        metric_name: Any = None,
        metric_value: Any = None,
        field_name: Any = None,
        field_value: Any = None,
    ) -> None:
        if field_name is not None and field_value is None:
            text = f"extra field name {field_name!r} must be a string"
        elif field_name is not None:
            text = (
                f"extra field {field_name!r} has a value of type {type(field_value).__name__}; expected str, int, "
                "float or bool"
            )
        elif metric_value is not None:
            text = (
                f"metric {metric_name!r} has a value of type {type(metric_value).__name__}; expected str, int, "
                "float or bool"
            )
        else:
            text = f"metric name {metric_name!r} must be a string"
        super().__init__(text)
        self.metric_name, self.metric_value, self.field_name, self.field_value = (
            metric_name,
            metric_value,
            field_name,
            field_value,
        )


def valid_name(name: str) -> str:
    """The agent's rule: a letter or ``_`` first, then letters, digits, ``.``, ``_``, ``-``."""
    if _VALID_NAME.match(name):
        return name
    fixed = _BAD_CHARS.sub("_", name)
    return fixed if re.match(r"[_a-zA-Z]", fixed) else "sa_" + fixed


def _value_ok(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


class Capture:
    """What one monitor run reported: samples, log events, warnings and errors. Thread-safe: a monitor may
    report from threads of its own during gather_sample."""

    def __init__(self, module: str, monitor_id: str, kind_of: Callable[[str], str] | None = None) -> None:
        self.module = module  # the last part of the module name, as in the agent's "[module(id)]"
        self.monitor_id = monitor_id
        self.kind_of = kind_of or (lambda name: GAUGE)
        self.samples: list[Sample] = []
        self.events: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.dropped = 0
        self._limited: set[str] = set()
        self._lock = threading.Lock()

    def sample(self, name: str, value: Any, dims: dict[str, Any]) -> None:
        with self._lock:
            if len(self.samples) >= MAX_SAMPLES:
                self.dropped += 1
                return
            kind = self.kind_of(name)
            if kind == COUNTER and (isinstance(value, bool) or not isinstance(value, int | float)):
                kind = GAUGE  # a cumulative metric reported as text cannot have a rate
            if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
                # Metric sinks take 64-bit integers at most (MariaDB reports 2**64-1 for unset ids, and the
                # agent's mysql_monitor passes it on): one such value must not get a whole batch refused.
                value = float(value)
            self.samples.append(Sample(name, value, kind, dims))

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._limited:
                return False
            self._limited.add(key)
            return True

    def note(self, level: int, text: str, *, to_metric_log: bool = False) -> None:
        from shipctl.schema import scrub

        text = scrub(text)  # a monitor logging its own config must not put an imported secret in status or logs
        if to_metric_log:
            with self._lock:
                self.events.append(
                    {
                        "m": f"[{self.module}({self.monitor_id})] {text}",
                        "a": {"monitor": self.module, "level": logging.getLevelName(level)},
                        "k": "log",
                        "t": time.time_ns(),
                    }
                )
            return
        with self._lock:
            if level >= logging.ERROR:
                self.errors.append(text)
            elif level >= logging.WARNING and len(self.warnings) < MAX_NOTES:
                self.warnings.append(text)
        _shipctl_log.log(level, "monitor %s: %s", self.monitor_id, text)


_current = threading.local()


def current() -> Capture | None:
    return getattr(_current, "capture", None)


@contextlib.contextmanager
def capturing(capture: Capture) -> Iterator[Capture]:
    """Unbound loggers (a module's own ``getLogger(__name__)``) report to ``capture`` from this thread."""
    previous = current()
    _current.capture = capture
    try:
        yield capture
    finally:
        _current.capture = previous


class AgentLogger:
    """The agent's logger: the ``logging.Logger`` methods plus ``emit_value`` and its extra keyword arguments."""

    def __init__(self, name: str, capture: Capture | None = None) -> None:
        self.name = name
        self._capture = capture
        self.level = logging.NOTSET
        # The agent's naming: "module(id)" names a monitor instance; the agent's own modules are "core".
        m = re.match(r"([^\[]*)(\(.*\))", name)
        module_path, monitor_id = (m.group(1), m.group(2)[1:-1]) if m else (name, None)
        if module_path.startswith("scalyr_agent") and not module_path.startswith("scalyr_agent.builtin_monitors."):
            self.component = "core"
            self.monitor_name: str | None = None
            self.monitor_name_base: str | None = None
        else:
            self.monitor_name_base = module_path.split(".")[-1]
            self.monitor_name = f"{self.monitor_name_base}({monitor_id})" if monitor_id else self.monitor_name_base
            self.component = f"monitor:{self.monitor_name}"

    def _target(self) -> Capture | None:
        return self._capture or current()

    # --- metrics ------------------------------------------------------------------------------------------------
    def emit_value(
        self,
        metric_name: Any,
        metric_value: Any,
        extra_fields: Any = None,
        monitor: Any = None,
        monitor_id_override: Any = None,
    ) -> None:
        own = getattr(monitor, "_logger", None) if monitor is not None else None
        if own is not None and own is not self and hasattr(own, "emit_value"):
            own.emit_value(metric_name, metric_value, extra_fields, monitor_id_override=monitor_id_override)
            return
        capture = self._target()
        if capture is None:
            raise Exception("Cannot report metric values until metric log file is opened.")
        if not isinstance(metric_name, str):
            raise UnsupportedValueType(metric_name=metric_name)
        name = self._valid(metric_name, capture, "metric name")
        if not _value_ok(metric_value):
            raise UnsupportedValueType(metric_name=name, metric_value=metric_value)
        if isinstance(metric_value, float) and not math.isfinite(metric_value):
            # JSON has no NaN or Infinity: such a value would break every sink's encoding.
            if capture.first_time(f"shipctl-nonfinite:{name}"):
                capture.note(logging.WARNING, f"metric {name}: value {metric_value} is not a finite number; dropped")
            return
        dims: dict[str, Any] = {}
        for key, value in dict(extra_fields or {}).items():
            if not isinstance(key, str):
                raise UnsupportedValueType(field_name=key)
            if not _value_ok(value):
                raise UnsupportedValueType(field_name=key, field_value=value)
            dims[self._valid(key, capture, "extra field name")] = value
        if monitor_id_override is not None:
            # The agent reports such a value under another monitor id: here the series carries that id.
            dims["monitor"] = str(monitor_id_override)
        capture.sample(name, metric_value, dims)

    def _valid(self, name: str, capture: Capture, what: str) -> str:
        fixed = valid_name(name)
        if fixed != name and capture.first_time(f"shipctl-name:{name}"):
            capture.note(logging.WARNING, f"invalid {what} {json.dumps(name)} reported as {json.dumps(fixed)}")
        return fixed

    force_valid_metric_or_field_name = staticmethod(lambda name, is_metric=True, logger=None: valid_name(name))

    # --- log records ----------------------------------------------------------------------------------------
    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(level, msg, args, **kwargs)

    def _log(
        self,
        level: int,
        msg: Any,
        args: tuple[Any, ...],
        exc_info: Any = None,
        extra: Any = None,
        error_code: str | None = None,
        limit_once_per_x_secs: float | None = None,
        limit_key: str | None = None,
        emit_to_metric_log: bool = False,
        **_other: Any,  # metric_log_for_monitor, force_stdout, ...: the agent's plumbing, nothing to do here
    ) -> None:
        if (limit_once_per_x_secs is None) != (limit_key is None):
            raise Exception("limit_once_per_x_secs and limit_key must be given together")
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        if error_code:
            text = f"{text} [error_code={error_code}]"
        if exc_info:
            text = f"{text}: {_exception_text(exc_info)}"
        capture = self._target()
        if capture is None:
            if limit_key is None or _global_first_time(limit_key, limit_once_per_x_secs or 0):
                logging.getLogger(f"shipctl.scalyr.{self.name}").log(level, "%s", text)
            return
        if limit_key is not None and not capture.first_time(f"limit:{limit_key}"):
            return
        capture.note(level, text, to_metric_log=emit_to_metric_log)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, msg, args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, msg, args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, msg, args, **kwargs)

    warn = warning

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, msg, args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, args, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.CRITICAL, msg, args, **kwargs)

    fatal = critical

    def isEnabledFor(self, level: int) -> bool:
        return level >= (self.level or DEBUG_LEVEL_1)

    def setLevel(self, level: int) -> None:
        self.level = level

    def getEffectiveLevel(self) -> int:
        return self.level or logging.INFO

    # The agent opens a metric log file per monitor before running it; here the run's capture takes its place.
    def openMetricLogForMonitor(self, *args: Any, **kwargs: Any) -> None:
        return None

    def closeMetricLog(self) -> None:
        return None


def _exception_text(exc_info: Any) -> str:
    import sys

    from shipctl.pyplugins.loader import describe

    exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
    return describe(exc) if exc is not None else "no exception"


_global_limits: dict[str, float] = {}
_global_lock = threading.Lock()


def _global_first_time(key: str, secs: float) -> bool:
    now = time.monotonic()
    with _global_lock:
        last = _global_limits.get(key)
        if last is not None and now - last < secs:
            return False
        _global_limits[key] = now
        return True


_loggers: dict[str, AgentLogger] = {}
_loggers_lock = threading.Lock()


def getLogger(name: str) -> AgentLogger:
    """The module-level logger of ``name`` (one per name, as ``logging.getLogger``)."""
    with _loggers_lock:
        logger = _loggers.get(name)
        if logger is None:
            logger = _loggers[name] = AgentLogger(name)
        return logger
