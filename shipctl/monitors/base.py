"""What a monitor returns and how it becomes queued events.

A metric sample becomes an event of kind ``metric`` whose message is the Scalyr monitor line
(``[module(id)] name value key=value ...``) and whose attrs hold ``monitor``, ``metric``, ``value``,
``metric_type`` and one attribute per dimension.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

GAUGE = "gauge"
COUNTER = "counter"


@dataclass(frozen=True)
class Sample:
    name: str
    value: float | int | str
    kind: str = GAUGE
    dims: dict[str, Any] = field(default_factory=dict)
    ts: int = 0  # ns; 0 = when the monitor ran


@dataclass
class MonitorOutput:
    samples: list[Sample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # {"m": message, "a": attrs, "k": kind}
    error: str | None = None


class Monitor(Protocol):
    module: str

    def sample(self) -> MonitorOutput: ...


def monitor_line(module: str, monitor_id: str, name: str, value: Any, extra: dict[str, Any]) -> str:
    parts = [f"[{module}({monitor_id})]", name, json.dumps(value)]
    parts += [f"{k}={json.dumps(extra[k])}" for k in sorted(extra)]
    return " ".join(parts)


def to_events(module: str, monitor_id: str, out: MonitorOutput, now_ns: int | None = None) -> list[dict[str, Any]]:
    now_ns = now_ns or time.time_ns()
    events: list[dict[str, Any]] = []
    for s in out.samples:
        attrs = {"monitor": module, "metric": s.name, "value": s.value, "metric_type": s.kind, **s.dims}
        events.append(
            {
                "m": monitor_line(module, monitor_id, s.name, s.value, s.dims),
                "a": attrs,
                "t": s.ts or now_ns,
                "k": "metric",
            }
        )
    for e in out.events:
        events.append({"t": now_ns, "k": "event", **e})
    return events
