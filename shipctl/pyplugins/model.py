"""What a python plugin returns: metrics groups — a group type, an interval, dimensions (name -> string) and
gauge/counter metrics — about a resource; how it is checked; and the Panoptes metrics group JSON (schema 0.2).

A plugin may return shipctl's ``MetricsGroup`` objects, plain dicts of the same shape, or Panoptes groups (from
the compatibility package, or the real one): ``normalize`` turns any of them into checked ``MetricsGroup``
copies, reporting what is wrong with a group in words that name the group and the metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from shipctl.monitors.base import COUNTER, GAUGE, is_number
from shipctl.pyplugins.resources import FIELDS, KEY, Resource
from shipctl.records import record

SCHEMA_VERSION = "0.2"
TYPE_CODES = {GAUGE: 0, COUNTER: 1}  # Panoptes' PanoptesMetricType values
TIMESTAMP_PRECISION = 3
# Event attributes a dimension must not shadow (to_events never lets it, so it would silently vanish).
RESERVED = frozenset(
    {"monitor", "metric", "value", "metric_type", "difference", "rate", "group_type", "transform", *FIELDS}
)


@record
class Metric:
    """One metric of a plugin's metrics group."""

    name: str
    value: int | float
    kind: str = GAUGE
    ts: float | None = None  # creation time in seconds; None = when the group was made
    transform: str = ""  # "rate" for a gauge a rate transform added


def metric_problem(name: Any, value: Any, kind: Any) -> str | None:
    if not isinstance(name, str) or not KEY.match(name):
        return f"metric name {name!r} must start with a letter or _ and hold only letters, digits and _"
    if not is_number(value):
        return f"metric {name!r}: value must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"metric {name!r}: value must be finite, got {value!r}"
    if kind not in TYPE_CODES:
        return f"metric {name!r}: type must be 'gauge' or 'counter', got {kind!r}"
    return None


def dimension_problem(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not KEY.match(name):
        return f"dimension name {name!r} must start with a letter or _ and hold only letters, digits and _"
    if name in RESERVED:
        return f"dimension name {name!r} is reserved for the event attribute of that name"
    if not isinstance(value, str) or not value:
        return f"dimension {name!r}: value must be a non-empty string, got {value!r}"
    return None


class MetricsGroup:
    """Metrics of one kind about one resource, identified by dimensions. ``interval`` None means the plugin's
    execute frequency; ``resource`` None means the resource the plugin ran for."""

    def __init__(
        self,
        group_type: str,
        interval: int | float | None = None,
        dimensions: Mapping[str, str] | None = None,
        *,
        resource: Resource | None = None,
        created: float | None = None,
    ) -> None:
        if not isinstance(group_type, str) or not group_type:
            raise ValueError(f"group_type must be a non-empty string, got {group_type!r}")
        if interval is not None and (not is_number(interval) or interval <= 0):
            raise ValueError(f"group {group_type!r}: interval must be a number above 0, got {interval!r}")
        self.group_type = group_type
        self.interval = interval
        self.resource = resource
        self.created = round(created if created is not None else time.time(), TIMESTAMP_PRECISION)
        self.dimensions: dict[str, str] = {}
        self.metrics: list[Metric] = []
        for name, value in (dimensions or {}).items():
            self.dimension(name, value)

    def dimension(self, name: str, value: str) -> MetricsGroup:
        problem = dimension_problem(name, value)
        if problem:
            raise ValueError(f"group {self.group_type!r}: {problem}")
        if name in self.dimensions:
            raise ValueError(f"group {self.group_type!r}: dimension {name!r} given twice")
        self.dimensions[name] = value
        return self

    def add_metric(self, metric: Metric) -> MetricsGroup:
        problem = metric_problem(metric.name, metric.value, metric.kind)
        if problem:
            raise ValueError(f"group {self.group_type!r}: {problem}")
        if self.find(metric.name, metric.kind) is not None:
            raise ValueError(f"group {self.group_type!r}: {metric.kind} {metric.name!r} given twice")
        self.metrics.append(metric)
        return self

    def gauge(self, name: str, value: int | float, ts: float | None = None) -> MetricsGroup:
        return self.add_metric(Metric(name, value, GAUGE, ts))

    def counter(self, name: str, value: int | float, ts: float | None = None) -> MetricsGroup:
        return self.add_metric(Metric(name, value, COUNTER, ts))

    def find(self, name: str, kind: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name and m.kind == kind), None)

    def sorted_metrics(self) -> list[Metric]:
        """Gauges (Panoptes type 0) first, then counters, each by name: the order the Panoptes guide shows
        (upstream keeps a set, so any order is valid there; a fixed one keeps output comparable)."""
        return sorted(self.metrics, key=lambda m: (TYPE_CODES[m.kind], m.name))

    def __repr__(self) -> str:
        return f"MetricsGroup({self.group_type!r}, {self.interval!r}, {self.dimensions!r}, {len(self.metrics)} metrics)"


# --- checking what a plugin returned ------------------------------------------------------------------------


def normalize(result: Any, resource: Resource, interval: float) -> tuple[list[MetricsGroup], list[str]]:
    """Checked copies of the groups in ``result``, and a message per group that was not usable (skipped)."""
    if result is None:
        return [], []
    if float(interval).is_integer():
        interval = int(interval)  # Panoptes' intervals are whole seconds; keep the JSON the same
    if isinstance(result, str | bytes | Mapping) and not _is_group_dict(result):
        return [], [f"returned {type(result).__name__}, expected a list of metrics groups"]
    single = _is_group_dict(result) or isinstance(result, MetricsGroup) or hasattr(result, "group_type")
    items = [result] if single else result
    try:
        items = list(items)
    except TypeError:
        return [], [f"returned {type(result).__name__}, expected a list of metrics groups"]
    groups: list[MetricsGroup] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            groups.append(_one(item, resource, interval))
        except ValueError as exc:
            problems.append(f"group #{i + 1}: {exc}" if not str(exc).startswith("group ") else str(exc))
    return groups, problems


def _is_group_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "group_type" in obj


def _one(item: Any, resource: Resource, interval: float) -> MetricsGroup:
    if isinstance(item, MetricsGroup):
        src_interval = item.interval if item.interval is not None else interval
        g = MetricsGroup(item.group_type, src_interval, resource=item.resource or resource, created=item.created)
        dims: Iterable[tuple[Any, Any]] = item.dimensions.items()
        metrics = [(m.name, m.value, m.kind, m.ts) for m in item.metrics]
    elif isinstance(item, Mapping):
        unknown = sorted(set(item) - {"group_type", "interval", "dimensions", "metrics"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (expected group_type, interval, dimensions, metrics)")
        g = MetricsGroup(item.get("group_type"), item.get("interval") or interval, resource=resource)  # type: ignore[arg-type]
        raw_dims = item.get("dimensions") or {}
        if not isinstance(raw_dims, Mapping):
            raise ValueError(f"group {g.group_type!r}: dimensions must be a table of name -> string")
        dims = raw_dims.items()
        metrics = []
        for m in item.get("metrics") or []:
            if not isinstance(m, Mapping) or "name" not in m or "value" not in m:
                raise ValueError(f"group {g.group_type!r}: each metric must be a table with name, value and type")
            metrics.append((m["name"], m["value"], m.get("type", GAUGE), m.get("ts")))
    elif hasattr(item, "group_type") and hasattr(item, "metrics") and hasattr(item, "dimensions"):
        g = _from_panoptes(item, resource)
        dims = [(d.name, d.value) for d in item.dimensions]
        metrics = [
            (m.metric_name, m.metric_value, _panoptes_kind(m.metric_type), getattr(m, "metric_timestamp", None))
            for m in item.metrics
        ]
    else:
        raise ValueError(f"expected a metrics group, got {type(item).__name__}")
    for name, value in dims:
        g.dimension(name, value)
    for name, value, kind, ts in metrics:
        if ts is not None and not is_number(ts):
            raise ValueError(f"group {g.group_type!r}: metric {name!r}: timestamp must be a number, got {ts!r}")
        g.add_metric(Metric(name, value, kind, round(ts, TIMESTAMP_PRECISION) if ts is not None else None))
    return g


def _panoptes_kind(code: Any) -> Any:
    return {0: GAUGE, 1: COUNTER}.get(code, code) if not isinstance(code, bool) else code


def _from_panoptes(item: Any, resource: Resource) -> MetricsGroup:
    own = getattr(item, "resource", None)
    if own is not None and not isinstance(own, Resource):  # the real yahoo_panoptes' resource class
        own = Resource(
            *(getattr(own, f) for f in FIELDS),
            resource_creation_timestamp=own.resource_creation_timestamp,
            resource_plugin=own.resource_plugin,
            resource_ttl=int(own.resource_metadata.get("_resource_ttl", 604800)),
        )
        for k, v in item.resource.resource_metadata.items():
            if k != "_resource_ttl":
                own.add_metadata(k, v)
    interval = item.interval
    if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0:
        raise ValueError(f"group {item.group_type!r}: interval must be an integer above 0, got {interval!r}")
    created = getattr(item, "creation_timestamp", None)
    return MetricsGroup(item.group_type, interval, resource=own or resource, created=created)


# --- Panoptes metrics group JSON ---------------------------------------------------------------------------


def group_json(g: MetricsGroup) -> dict[str, Any]:
    """The metrics group as Panoptes puts it on its bus, schema 0.2, keys in Panoptes' order."""
    assert g.resource is not None, "normalize() sets the resource"
    metrics = [(m.name, m.value, m.kind, m.ts) for m in g.sorted_metrics()]
    return group_dict(g.group_type, g.interval, g.created, g.resource, metrics, g.dimensions)


def group_dict(
    group_type: str,
    interval: Any,
    created: float,
    resource: Resource,
    metrics: Iterable[tuple[str, Any, str, float | None]],
    dimensions: Mapping[str, str],
) -> dict[str, Any]:
    """Schema 0.2 from parts (also used by the compatibility package's ``PanoptesMetricsGroup.json``)."""
    return {
        "metrics_group_type": group_type,
        "metrics_group_interval": interval,
        "metrics_group_creation_timestamp": created,
        "metrics_group_schema_version": SCHEMA_VERSION,
        "resource": {**resource.raw, "resource_metadata": dict(resource.resource_metadata)},
        "metrics": [
            {
                "metric_creation_timestamp": ts if ts is not None else created,
                "metric_name": name,
                "metric_value": value,
                "metric_type": kind,
            }
            for name, value, kind, ts in sorted(metrics, key=lambda m: (TYPE_CODES.get(m[2], 9), m[0]))
        ],
        "dimensions": [{"dimension_name": k, "dimension_value": dimensions[k]} for k in sorted(dimensions)],
    }
