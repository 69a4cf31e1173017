"""Panoptes' metrics model with its checks and errors (AssertionError for a wrong type, ValueError for a bad name,
KeyError for a duplicate), so plugins behave as they did there. ``.json`` is schema 0.2, made by shipctl."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from time import time
from typing import Any

from yahoo_panoptes.framework.exceptions import PanoptesBaseException
from yahoo_panoptes.framework.resources import PanoptesResource
from yahoo_panoptes.framework.validators import PanoptesValidators

from shipctl.pyplugins.model import group_dict

_VALID_KEY = re.compile(r"^[^\d\W]\w*\Z")
METRICS_TIMESTAMP_PRECISION = 3
METRICS_GROUP_SCHEMA_VERSION = "0.2"


def _check(ok: Any, message: str) -> None:
    if not ok:
        raise AssertionError(message)  # explicit, so python -O does not drop Panoptes' checks


class PanoptesMetricsException(PanoptesBaseException):
    pass


class PanoptesMetricsNullException(PanoptesMetricsException):
    pass


class PanoptesMetricType:
    GAUGE, COUNTER = range(2)


METRIC_TYPE_NAMES = {PanoptesMetricType.GAUGE: "GAUGE", PanoptesMetricType.COUNTER: "COUNTER"}


class PanoptesMetric:
    def __init__(
        self, metric_name: str, metric_value: Any, metric_type: int, metric_creation_timestamp: float | None = None
    ) -> None:
        _check(PanoptesValidators.valid_nonempty_string(metric_name), "metric_name must be a non-empty str")
        _check(PanoptesValidators.valid_number(metric_value), "metric_value must be number")
        _check(metric_type in METRIC_TYPE_NAMES, "metric_type must be an attribute of PanoptesMetricType")
        _check(
            metric_creation_timestamp is None or PanoptesValidators.valid_number(metric_creation_timestamp),
            "metric_creation_timestamp should be None or a number",
        )
        if not _VALID_KEY.match(metric_name):
            raise ValueError(f'metric name "{metric_name}" has to match pattern: (letter|"_") (letter | digit | "_")*')
        ts = metric_creation_timestamp if metric_creation_timestamp is not None else time()
        self.__data = {
            "metric_creation_timestamp": round(ts, METRICS_TIMESTAMP_PRECISION),
            "metric_name": metric_name,
            "metric_value": metric_value,
            "metric_type": METRIC_TYPE_NAMES[metric_type].lower(),
        }
        self.__metric_type_raw = metric_type

    metric_name = property(lambda self: self.__data["metric_name"])
    metric_value = property(lambda self: self.__data["metric_value"])
    metric_timestamp = property(lambda self: self.__data["metric_creation_timestamp"])
    metric_type = property(lambda self: self.__metric_type_raw)

    @property
    def json(self) -> str:
        return json.dumps(self.__data, sort_keys=True)

    def __repr__(self) -> str:
        return (
            f"PanoptesMetric[{self.metric_name}|{self.metric_value}|{METRIC_TYPE_NAMES[self.metric_type]}|"
            f"{self.metric_timestamp}]"
        )

    def __str__(self) -> str:
        return f"{self.metric_name}|{self.metric_value}|{self.metric_type}"

    def __hash__(self) -> int:
        return hash(self.metric_name + str(self.metric_value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PanoptesMetric):
            return False
        return (self.metric_name, self.metric_value, self.metric_type) == (
            other.metric_name,
            other.metric_value,
            other.metric_type,
        )


class PanoptesMetricDimension:
    def __init__(self, name: str, value: str) -> None:
        _check(name and isinstance(name, str), f"dimension name must be non-empty str, is type {type(name)}")
        _check(
            value and isinstance(value, str),
            f'dimension value for dimension "{name}" must be non-empty str, is type {type(value)}',
        )
        if not _VALID_KEY.match(name):
            raise ValueError(f'dimension name "{name}" has to match pattern: (letter|"_") (letter | digit | "_")*')
        if "|" in value:
            raise ValueError(f'dimension value "{value}" cannot contain |')
        self.__data = {"dimension_name": name, "dimension_value": value}

    name = property(lambda self: self.__data["dimension_name"])
    value = property(lambda self: self.__data["dimension_value"])

    @property
    def json(self) -> str:
        return json.dumps(self.__data)

    def __repr__(self) -> str:
        return f"PanoptesMetricDimension[{self.name}|{self.value}]"

    def __str__(self) -> str:
        return f"{self.name}|{self.value}"

    def __hash__(self) -> int:
        return hash(self.name + self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PanoptesMetricDimension) and (self.name, self.value) == (other.name, other.value)


class PanoptesMetricsGroup:
    def __init__(self, resource: PanoptesResource, group_type: str, interval: int) -> None:
        _check(resource and isinstance(resource, PanoptesResource), "resource must be an instance of PanoptesResource")
        _check(PanoptesValidators.valid_nonempty_string(group_type), "group_type must be a non-empty string")
        _check(PanoptesValidators.valid_nonzero_integer(interval), "interval must a integer greater than zero")
        self._resource = resource
        self._group_type = group_type
        self._interval = interval
        self._created = round(time(), METRICS_TIMESTAMP_PRECISION)
        self._metrics: set[PanoptesMetric] = set()
        self._dimensions: set[PanoptesMetricDimension] = set()
        self._index: dict[int, list[str]] = {t: [] for t in METRIC_TYPE_NAMES}
        self._data_lock = threading.Lock()

    def copy(self) -> PanoptesMetricsGroup:
        copied = PanoptesMetricsGroup(self.resource, self.group_type, self.interval)
        for metric in self.metrics:
            copied.add_metric(metric)
        for dimension in self.dimensions:
            copied.add_dimension(dimension)
        return copied

    def add_metric(self, metric: PanoptesMetric) -> None:
        _check(metric and isinstance(metric, PanoptesMetric), "metric must be an instance of PanoptesMetric")
        if metric.metric_name in self._index[metric.metric_type]:
            raise KeyError(
                f'Metric name "{metric.metric_name}" (type "{METRIC_TYPE_NAMES[metric.metric_type]}") for metrics '
                f'group type "{self.group_type}" already populated'
            )
        self._metrics.add(metric)
        self._index[metric.metric_type].append(metric.metric_name)

    def add_dimension(self, dimension: PanoptesMetricDimension) -> None:
        _check(
            dimension and isinstance(dimension, PanoptesMetricDimension),
            "dimension must be instance of PanoptesMetricDimension",
        )
        with self._data_lock:
            if self.contains_dimension_by_name(dimension.name):
                raise KeyError(
                    f"Dimension name {dimension.name} already populated. "
                    "Please use upsert_dimension if you need to update dimensions"
                )
            self._dimensions.add(dimension)

    def get_dimension_by_name(self, dimension_name: str) -> PanoptesMetricDimension | None:
        return next((d for d in self._dimensions if d.name == dimension_name), None)

    def contains_dimension_by_name(self, dimension_name: str) -> bool:
        return any(d.name == dimension_name for d in self._dimensions)

    def delete_dimension_by_name(self, dimension_name: str) -> None:
        with self._data_lock:
            found = self.get_dimension_by_name(dimension_name)
            if found is not None:
                self._dimensions.remove(found)

    def upsert_dimension(self, dimension: PanoptesMetricDimension) -> None:
        self.delete_dimension_by_name(dimension.name)
        self._dimensions.add(dimension)

    @staticmethod
    def flatten_dimensions(dimensions: list[dict[str, str]]) -> dict[str, str]:
        return {d["dimension_name"]: d["dimension_value"] for d in dimensions}

    @staticmethod
    def flatten_metrics(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {"counter": {}, "gauge": {}}
        for m in metrics:
            out[m["metric_type"]][m["metric_name"]] = {
                "value": m["metric_value"],
                "timestamp": m["metric_creation_timestamp"],
            }
        return out

    resource = property(lambda self: self._resource)
    metrics = property(lambda self: self._metrics)
    dimensions = property(lambda self: self._dimensions)
    group_type = property(lambda self: self._group_type)
    interval = property(lambda self: self._interval)
    schema_version = property(lambda self: METRICS_GROUP_SCHEMA_VERSION)
    creation_timestamp = property(lambda self: self._created)

    @property
    def json(self) -> str:
        metrics = [
            (m.metric_name, m.metric_value, METRIC_TYPE_NAMES[m.metric_type].lower(), m.metric_timestamp)
            for m in self._metrics
        ]
        dims = {d.name: d.value for d in self._dimensions}
        return json.dumps(group_dict(self.group_type, self.interval, self._created, self.resource, metrics, dims))

    def __repr__(self) -> str:
        dims = ",".join(repr(d) for d in self.dimensions)
        metrics = ",".join(repr(m) for m in self.metrics)
        return (
            f"PanoptesMetricsGroup[resource:{self.resource!r},interval:{self.interval},schema_version:"
            f"{self.schema_version},group_type:{self.group_type},creation_timestamp:{self.creation_timestamp},"
            f"dimensions:[{dims}],metrics:[{metrics}]]"
        )

    def __hash__(self) -> int:
        metrics = "".join(str(m) for m in frozenset(self.metrics))
        dims = "".join(str(d) for d in frozenset(self.dimensions))
        return hash(str(self.resource) + metrics + dims)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PanoptesMetricsGroup):
            return False
        return (self.resource, self.metrics, self.dimensions) == (other.resource, other.metrics, other.dimensions)


class PanoptesMetricsGroupSet:
    def __init__(self) -> None:
        self._metrics_groups: set[PanoptesMetricsGroup] = set()

    def add(self, metrics_group: PanoptesMetricsGroup) -> None:
        _check(
            metrics_group and isinstance(metrics_group, PanoptesMetricsGroup),
            "metrics_group must be an instance of PanoptesMetricsGroup",
        )
        self._metrics_groups.add(metrics_group)

    def remove(self, metrics_group: PanoptesMetricsGroup) -> None:
        self._metrics_groups.remove(metrics_group)

    @property
    def metrics_groups(self) -> set[PanoptesMetricsGroup]:
        return self._metrics_groups

    def __add__(self, other: PanoptesMetricsGroupSet) -> PanoptesMetricsGroupSet:
        if not other or not isinstance(other, PanoptesMetricsGroupSet):
            raise TypeError(f"Unsupported type for addition: {type(other)}")
        new = PanoptesMetricsGroupSet()
        for g in (*self.metrics_groups, *other.metrics_groups):
            new.add(g)
        return new

    def __iter__(self) -> Iterator[PanoptesMetricsGroup]:
        return iter(self._metrics_groups)

    def next(self) -> PanoptesMetricsGroup:
        return next(iter(self._metrics_groups))

    def __len__(self) -> int:
        return len(self._metrics_groups)

    def __repr__(self) -> str:
        return "PanoptesMetricsGroupSet[" + ",".join(repr(g) for g in self._metrics_groups) + "]"


class PanoptesMetricSet:
    """An unordered set of PanoptesMetrics."""

    def __init__(self) -> None:
        self._metrics: set[PanoptesMetric] = set()

    def add(self, metric: PanoptesMetric) -> None:
        self._metrics.add(metric)

    def remove(self, metric: PanoptesMetric) -> None:
        self._metrics.remove(metric)

    @property
    def metrics(self) -> set[PanoptesMetric]:
        return self._metrics

    def __iter__(self) -> Iterator[PanoptesMetric]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)
