"""What a monitor returns and how it becomes queued events.

A metric sample becomes an event of kind ``metric`` whose message is the Scalyr monitor line
(``[module(id)] name value key=value ...``) and whose attrs hold ``monitor``, ``metric``, ``value``,
``metric_type`` and one attribute per dimension (plus ``difference`` and ``rate`` for a counter once the
metric history has a usable previous sample).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import field
from typing import Any, Protocol

from shipctl.records import record

GAUGE = "gauge"
COUNTER = "counter"
TEXT = "text"  # a monitor's text output (a shell command's answer): a value, but no number to plot
CORE_ATTRS = ("monitor", "metric", "value", "metric_type")


@record(frozen=True)
class Sample:
    """One sample a monitor took: a metric's value, with the dimensions that identify its series."""

    name: str
    value: float | int | str
    kind: str = GAUGE
    dims: dict[str, Any] = field(default_factory=dict)  # identify the series (history key)
    ts: int = 0  # ns; 0 = when the monitor ran
    extra: dict[str, Any] = field(default_factory=dict)  # shown like dims, but not part of the series key
    # Counters only: a new epoch (process restarted, host rebooted) means the counter started over, even if
    # its value happens to be higher than the stored one.
    epoch: str = ""
    # "" = emit the value (and difference/rate as attributes for counters); "difference" = emit the
    # difference from the previous sample as the value, and nothing when there is none (CoScale calctype).
    calc: str = ""
    # What the metric is, not which series: unit, description (help text) and tags (labels such as CoScale's
    # "NETWORK"). Shown in the Scalyr-shaped attrs and kept on the typed sample for sinks with a place for them.
    unit: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()


@record
class MonitorOutput:
    """What one run of a monitor produced: samples, events, and what went wrong."""

    samples: list[Sample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # {"m": message, "a": attrs, "k": kind}
    error: str | None = None  # the monitor could not do its job (counted as an error, exit 65)
    warnings: list[str] = field(default_factory=list)  # worth a notice in status, not a failed run
    attrs: dict[str, Any] = field(default_factory=dict)  # added to every metric event's attrs (e.g. tags)


@record(frozen=True)
class Derived:
    """What the metric history says about one counter sample."""

    difference: float | int | None = None
    rate: float | None = None
    why_not: str = ""  # "first", "reset", "gap" (rate only), "time" (rate only)


class Monitor(Protocol):
    """Built by its registered factory as ``factory(options)``, or ``factory(options, monitor_id)`` when the
    factory has ``wants_id = True``; ``sample()`` runs in a worker thread and must respect its own timeout."""

    module: str

    def sample(self) -> MonitorOutput: ...


def monitor_line(module: str, monitor_id: str, name: str, value: Any, extra: dict[str, Any]) -> str:
    parts = [f"[{module}({monitor_id})]", name, json.dumps(value)]
    parts += [f"{k}={json.dumps(extra[k])}" for k in sorted(extra)]
    return " ".join(parts)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_events(
    module: str,
    monitor_id: str,
    out: MonitorOutput,
    now_ns: int | None = None,
    derived: list[Derived | None] | None = None,
) -> list[dict[str, Any]]:
    """Events for the queue; ``derived`` (same order as ``out.samples``) comes from the metric history."""
    now_ns = now_ns or time.time_ns()
    events: list[dict[str, Any]] = []
    for i, s in enumerate(out.samples):
        d = derived[i] if derived else None
        value = s.value
        if s.calc == "difference":
            if d is None or d.difference is None:
                continue  # first sample or reset: nothing to say for this interval
            value = d.difference
        shown = {**s.dims, **s.extra}
        attrs: dict[str, Any] = {"monitor": module, "metric": s.name, "value": value, "metric_type": s.kind}
        for k, v in (*shown.items(), *out.attrs.items(), *_about(s).items()):
            attrs.setdefault(k, v)  # a dimension never overrides the core attribute names
        if d is not None and s.calc != "difference":
            if d.difference is not None:
                attrs["difference"] = d.difference
            if d.rate is not None:
                attrs["rate"] = d.rate
        # The typed sample, apart from the Scalyr-shaped message and attrs: what identifies the series
        # (dimensions, and the monitor's own tags) is kept apart from fields shown alongside it.
        typed: dict[str, Any] = {
            "n": s.name,
            "v": value,
            "t": TEXT if isinstance(value, str) else (GAUGE if s.calc == "difference" else s.kind),
            # The monitor's id tells apart two monitors of one type that sample the same metric name.
            "d": {"monitor": monitor_id, **{str(k): v for k, v in out.attrs.items()}, **s.dims},
        }
        if s.extra:
            typed["f"] = s.extra
        if s.unit:
            typed["u"] = s.unit
        if s.description:
            typed["h"] = s.description
        if s.tags:
            typed["tg"] = list(s.tags)
        if d is not None and s.calc != "difference" and d.rate is not None:
            typed["r"] = d.rate
        events.append(
            {
                "m": monitor_line(module, monitor_id, s.name, value, shown),
                "a": attrs,
                "t": s.ts or now_ns,
                "k": "metric",
                "x": typed,
            }
        )
    for e in out.events:
        events.append({"t": now_ns, "k": "event", **e})
    return events


def _about(s: Sample) -> dict[str, Any]:
    """The sample's metadata as Scalyr-shaped attributes (tags as the one string a script wrote them as)."""
    out: dict[str, Any] = {}
    if s.unit:
        out["unit"] = s.unit
    if s.description:
        out["description"] = s.description
    if s.tags:
        out["tags"] = ",".join(s.tags)
    return out


def shape_text(text: str, extract: re.Pattern[str] | None, log_all_lines: bool, max_characters: int) -> tuple[str, int]:
    """Scalyr's treatment of command output and response bodies: the extract group, then the first line
    (unless log_all_lines), then cut at max_characters with "...". Returns (text, length before the cut)."""
    if extract is not None:
        m = extract.search(text)
        text = (m.group(1) if m.groups() else m.group(0)) if m else ""
        text = text or ""
    text = text.rstrip("\n") if log_all_lines else text.strip("\n").split("\n", 1)[0].strip("\r")
    length = len(text)
    if length > max_characters:
        text = text[:max_characters] + "..."
    return text, length


_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?")


def as_value(text: str) -> float | int | str:
    """A number when the whole text is one, so a numeric command output becomes a usable metric."""
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t)
    if _FLOAT.fullmatch(t):
        return float(t)
    return text
