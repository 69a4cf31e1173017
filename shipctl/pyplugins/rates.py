"""Rate transforms: for the listed counters of a group type, a per-second rate gauge of the same name, from the
previous sample kept in the state file.

Panoptes' semantics, except that the rate stays a float (upstream truncates: 59 over 60 s gave 0). No rate for
the first sample, after a counter went backwards (reset or wrap: the new value becomes the reference), when no
time passed, or when the previous sample is more than 3 intervals old. The new sample is stored in every case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from shipctl.monitors.base import COUNTER, GAUGE
from shipctl.monitors.calc import GAP_FACTOR
from shipctl.pyplugins.context import KeyValueStore
from shipctl.pyplugins.model import Metric, MetricsGroup

RATE = "rate"


def series_key(g: MetricsGroup, metric: str) -> str:
    assert g.resource is not None
    return json.dumps([g.resource.serialization_key, g.group_type, sorted(g.dimensions.items()), metric])


def apply(
    groups: list[MetricsGroup], counters: Mapping[str, frozenset[str]], store: KeyValueStore, now: float
) -> list[str]:
    """Add rate gauges to ``groups`` in place; returns warnings (a gauge of that name already there)."""
    warnings: list[str] = []
    for g in groups:
        wanted = counters.get(g.group_type)
        if not wanted:
            continue
        interval = float(g.interval or 0)
        for m in list(g.metrics):
            if m.kind != COUNTER or m.name not in wanted:
                continue
            key = series_key(g, m.name)
            prev = store.get(key)
            # Kept a second past 3 intervals, so that the gap rule below, not the expiry, decides at the boundary.
            store.set(key, json.dumps([m.value, now]), expire=GAP_FACTOR * interval + 1)
            rate = _rate(prev, m.value, now, interval)
            if rate is None:
                continue
            if g.find(m.name, GAUGE) is not None:
                warnings.append(f"group {g.group_type!r}: a gauge {m.name!r} is already there; rate not added")
                continue
            g.metrics.append(Metric(m.name, rate, GAUGE, transform=RATE))
    return warnings


def _rate(prev: str | None, value: float, now: float, interval: float) -> float | None:
    if prev is None:
        return None  # first sample
    old, ts = json.loads(prev)
    dt = now - ts
    if value < old or dt <= 0 or dt > GAP_FACTOR * interval:
        return None
    return (value - old) / dt
