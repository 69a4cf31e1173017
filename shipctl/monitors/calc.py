"""Difference and per-second rate of a sample against the previous one of its series.

Pure functions: the previous sample comes from the metric history in the state file (state/metrics.py),
so the numbers are right across runs of separate processes.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from shipctl.monitors.base import COUNTER, Derived, Sample

GAP_FACTOR = 3.0  # a previous sample older than this many intervals is too old for a rate


class Prev(Protocol):
    """The stored previous sample of one series (state/metrics.py keeps it)."""

    ts: float
    value: float | int
    epoch: str


def series_key(sample: Sample) -> tuple[str, str]:
    """(metric, canonical JSON of the dimensions): the same series whatever the dict order."""
    return sample.name, json.dumps(sample.dims, sort_keys=True, separators=(",", ":"), default=str)


def wants_history(sample: Sample) -> bool:
    return sample.kind == COUNTER or sample.calc == "difference"


def derive(prev: Prev | None, sample: Sample, ts: float, interval: float) -> Derived:
    """Difference from the previous sample, and its rate per second.

    No previous sample, or one from another epoch (the process restarted): nothing. A counter below its
    previous value was reset: nothing for this interval (the new value becomes the reference). A previous
    sample older than GAP_FACTOR intervals, or not older at all: a difference but no rate, since a rate
    over an unknown stretch would mislead.
    """
    value: Any = sample.value
    if prev is None:
        return Derived(why_not="first")
    if sample.epoch != prev.epoch:
        return Derived(why_not="reset")
    diff = value - prev.value
    if isinstance(value, int) and isinstance(prev.value, float) and prev.value.is_integer():
        diff = value - int(prev.value)
    if sample.kind == COUNTER and diff < 0:
        return Derived(why_not="reset")
    dt = ts - prev.ts
    if dt <= 0:
        return Derived(difference=diff, why_not="time")
    if dt > GAP_FACTOR * interval:
        return Derived(difference=diff, why_not="gap")
    return Derived(difference=diff, rate=diff / dt)
