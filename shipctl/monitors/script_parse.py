"""Parsers for what metric scripts print, written for the scripts that exist rather than for the spec.

CoScale ``-c`` JSON and ``-d`` lines (see shared/reference/script-protocols.md for the quirks handled here),
and InfluxDB line protocol (Telegraf exec). Pure functions: a bad line is a problem ``(line number, why,
line)`` for the caller to report, never an exception, and never stops the lines after it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import field
from typing import Any

from shipctl.monitors.base import COUNTER, GAUGE, Sample
from shipctl.records import record

COUNT = "count"  # metrics 2.0 "a number per interval": neither a level nor a running total
DEFAULT_PERIOD = 60.0
MIN_PERIOD = 60.0
MAX_RUNTIME_MS = 50_000

DATATYPES = {"DOUBLE": GAUGE, "GAUGE": GAUGE, "GUAGE": GAUGE, "COUNT": COUNT, "COUNTER": COUNTER}
CALCTYPES = {"INSTANT": "", "DIFFERENCE": "difference"}

Problem = tuple[int, str, str]  # (line number from 1, why, the line)


@record(frozen=True)
class MetricDef:
    """A metric a script declares in its ``-c`` output."""

    id: str
    name: str
    kind: str  # gauge, count or counter
    calc: str  # "" (Instant) or "difference"
    unit: str = ""
    groups: str = ""
    dims: dict[str, str] = field(default_factory=dict)  # dimension id -> name
    description: str = ""
    tags: tuple[str, ...] = ()  # "NETWORK", "MYTAG1,MYTAG2": what the metric is, not which series


# attributeDescriptions types (CoScale custom event attributes), by the names scripts write them with.
ATTR_TYPES = {
    "integer": "integer", "int": "integer", "long": "integer",
    "double": "double", "float": "double", "number": "double", "decimal": "double",
    "string": "string", "text": "string",
    "boolean": "boolean", "bool": "boolean",
}  # fmt: skip


@record(frozen=True)
class EventDef:
    """An event a script declares in its ``-c`` output."""

    id: str
    name: str
    description: str = ""
    attr_types: dict[str, str] = field(default_factory=dict)  # attribute name -> integer/double/string/boolean


@record(frozen=True)
class ScriptConfig:
    """What a script declares in its ``-c`` output: its metrics, events and period."""

    metrics: dict[str, MetricDef] = field(default_factory=dict)
    events: dict[str, EventDef] = field(default_factory=dict)
    period: float = DEFAULT_PERIOD
    maxruntime: float | None = None  # ms, at most MAX_RUNTIME_MS
    dim_names: dict[str, str] = field(default_factory=dict)  # every declared dimension, whichever metric

    def describe(self) -> dict[str, Any]:
        return {
            "maxruntime": self.maxruntime,
            "metrics": [
                {
                    "id": m.id,
                    "name": m.name,
                    "type": m.kind,
                    "calc": m.calc or "instant",
                    "unit": m.unit,
                    "groups": m.groups,
                    "dimensions": m.dims,
                    "description": m.description,
                    "tags": list(m.tags),
                }
                for m in self.metrics.values()
            ],
            "events": [
                {"id": e.id, "name": e.name, "description": e.description, "attributes": e.attr_types}
                for e in self.events.values()
            ],
        }


def norm_id(value: Any) -> str | None:
    """Ids compare as text with leading zeros dropped: config ``1``, ``"1"`` and data ``M01`` are one id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        v = value.strip()
        return str(int(v)) if v.isdigit() else v
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _entries(raw: dict[str, Any], key: str, warnings: list[str]) -> list[dict[str, Any]]:
    items = raw.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        warnings.append(f"{key!r} is not a list; ignored")
        return []
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and norm_id(item.get("id")) is not None:
            out.append(item)
        else:
            warnings.append(f"{key}[{i}] has no usable id; ignored")
    return out


def _tags(m: dict[str, Any]) -> tuple[str, ...]:
    """``"tags"`` as scripts write it: one comma-separated string (or, rarely, a list)."""
    raw = m.get("tags")
    items = raw if isinstance(raw, list) else _text(raw).split(",")
    return tuple(t for t in (_text(i).strip() for i in items) if t)


def _attr_types(value: Any, where: str, warnings: list[str]) -> dict[str, str]:
    """``attributeDescriptions``: [{name, type, unit}] -> {name: canonical type}. An unknown type is a warning;
    that attribute is then kept as the script prints it."""
    out: dict[str, str] = {}
    if value is None:
        return out
    if not isinstance(value, list):
        warnings.append(f"{where}: attributeDescriptions is not a list; ignored")
        return out
    for d in value:
        name = _text(d.get("name")).strip() if isinstance(d, dict) else ""
        if not name:
            warnings.append(f"{where}: an attribute description without a name; ignored")
            continue
        given = _text(d.get("type")).strip()
        kind = ATTR_TYPES.get(given.lower())
        if kind is None:
            if given:
                warnings.append(f"{where}: attribute {name!r} has unknown type {given!r}; kept as printed")
            continue
        out[name] = kind
    return out


def parse_config(raw: dict[str, Any]) -> tuple[ScriptConfig, list[str]]:
    """The ``-c`` JSON as scripts really write it: ``metrics``, ``events``, ``period`` and ``maxruntime`` all
    optional; DOUBLE/GAUGE/GUAGE are gauges; unknown datatypes and calctypes are warnings, not failures."""
    warnings: list[str] = []
    metrics: dict[str, MetricDef] = {}
    dim_names: dict[str, str] = {}
    for i, m in enumerate(_entries(raw, "metrics", warnings)):
        mid = norm_id(m["id"])
        assert mid is not None
        name = _text(m.get("name")).strip() or f"metric {mid}"
        dtype = _text(m.get("datatype")).strip()
        kind = DATATYPES.get(dtype.upper(), GAUGE) if dtype else GAUGE
        if dtype and dtype.upper() not in DATATYPES:
            warnings.append(f"metrics[{i}] ({name}): unknown datatype {dtype!r}; treated as a gauge")
        ctype = _text(m.get("calctype")).strip()
        calc = CALCTYPES.get(ctype.upper(), "") if ctype else ""
        if ctype and ctype.upper() not in CALCTYPES:
            warnings.append(f"metrics[{i}] ({name}): unknown calctype {ctype!r}; treated as Instant")
        dims: dict[str, str] = {}
        for d in m.get("dimensions") or []:
            did = norm_id(d.get("id")) if isinstance(d, dict) else None
            if did is None:
                warnings.append(f"metrics[{i}] ({name}): a dimension without a usable id; ignored")
                continue
            dims[did] = _text(d.get("name")).strip() or f"dimension {did}"
            dim_names.setdefault(did, dims[did])
        if mid in metrics:
            warnings.append(f"metrics[{i}]: id {mid} declared twice; the last one counts")
        unit, groups = _text(m.get("unit")), _text(m.get("groups"))
        metrics[mid] = MetricDef(mid, name, kind, calc, unit, groups, dims, _text(m.get("description")), _tags(m))
    events: dict[str, EventDef] = {}
    for e in _entries(raw, "events", warnings):
        eid = norm_id(e["id"])
        assert eid is not None
        name = _text(e.get("name")).strip() or f"event {eid}"
        types = _attr_types(e.get("attributeDescriptions"), f"event {eid} ({name})", warnings)
        events[eid] = EventDef(eid, name, _text(e.get("description")), types)
    period = DEFAULT_PERIOD
    if raw.get("period") is not None:
        p = _number(raw["period"])
        if p is None or not math.isfinite(p):
            warnings.append(f"period {raw['period']!r} is not a number; using {DEFAULT_PERIOD:g}")
        elif p < MIN_PERIOD:
            warnings.append(f"period {p:g} is below the minimum {MIN_PERIOD:g}; using {MIN_PERIOD:g}")
            period = MIN_PERIOD
        else:
            period = p
    maxruntime = None
    if raw.get("maxruntime") is not None:
        r = _number(raw["maxruntime"])
        if r is None or not math.isfinite(r) or r <= 0:
            warnings.append(f"maxruntime {raw['maxruntime']!r} is not a positive number; ignored")
        elif r > MAX_RUNTIME_MS:
            warnings.append(f"maxruntime {r:g} ms is above the maximum {MAX_RUNTIME_MS}; using {MAX_RUNTIME_MS}")
            maxruntime = float(MAX_RUNTIME_MS)
        else:
            maxruntime = r
    if not metrics and not events:
        warnings.append("declares no metrics and no events: every data line will be dropped")
    return ScriptConfig(metrics, events, period, maxruntime, dim_names), warnings


# --- data lines ---------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_BYTES = re.compile(r"""b(['"])(.*)\1""", re.DOTALL)  # str(b"...") from a naive Python 3 port
_DIM_SPLIT = re.compile(r",(?=\s*\d+:)")  # values are never escaped: a comma splits only before "<id>:"
_QUOTE_GAP = re.compile(r'"\s+"')
_EVENT_HEAD = re.compile(r"E(\S+)\s+(\S+)\s+(\S+)\s*(.*)", re.DOTALL)
_SCOPE = re.compile(r"(?:^|\s)([SAsa])$")


@record
class Parsed:
    """A script's output parsed: samples, events, and the problems met."""

    samples: list[Sample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # {"m", "a", "t"} for MonitorOutput.events
    problems: list[Problem] = field(default_factory=list)


def _unbytes(text: str) -> str:
    m = _BYTES.fullmatch(text)
    if not m:
        return text
    return m.group(2).replace("\\r", "").replace("\\n", "").strip()


def parse_value(text: str) -> tuple[float | int | None, str]:
    """A metric value, or None and why not. Integers stay integers (exact counters); ``01`` is 1."""
    t = _unbytes(text.strip())
    if not t:
        return None, "empty value"
    if not _NUMBER.fullmatch(t):
        low = t.lower().lstrip("+-")
        if low in ("nan", "inf", "infinity"):
            return None, f"value {t!r} is not a finite number"
        return None, f"value {t!r} is not a number"
    if _INTEGER.fullmatch(t):
        return int(t), ""
    v = float(t)
    if not math.isfinite(v):
        return None, f"value {t!r} is not a finite number"
    return v, ""


def split_dims(text: str) -> dict[str, str] | None:
    """``"1:eth0,2:a,b:c"`` -> {"1": "eth0", "2": "a,b:c"}; None when a part is not ``<id>:<value>``."""
    if not text.strip():
        return {}
    out: dict[str, str] = {}
    for part in _DIM_SPLIT.split(text):
        did, sep, value = part.partition(":")
        did = did.strip()
        if not sep or not did.isdigit():
            return None
        out[str(int(did))] = value
    return out


def _metric_line(body: str) -> tuple[str, str | None, str] | str:
    """(id, dimension field or None, value text) of ``M<id> ["<dims>"] <value>``, or why it is not one."""
    mid, _, rest = body.partition(" ")
    if "\t" in mid:
        mid, _, more = mid.partition("\t")
        rest = f"{more} {rest}"
    rest = rest.strip()
    if not mid:
        return "no metric id after M"
    if rest.startswith('"'):
        close = rest.rfind('"')
        if close == 0:
            return "unbalanced quote in the dimension field"
        return mid, rest[1:close], rest[close + 1 :]
    parts = rest.split()
    if len(parts) <= 1:
        return mid, None, rest  # "M1 100", or "M1 " (empty: reported by the value check)
    if len(parts) == 2 and re.match(r"\d+:", parts[0]):
        return mid, parts[0], parts[1]  # the dimension field without its (required) quotes
    return 'expected M<id> "<dimension id>:<value>,..." <number>'


def _time(text: str, now: float) -> float | None:
    """0 = now, negative = seconds ago, positive = Unix seconds."""
    if not _NUMBER.fullmatch(text):
        return None
    v: float = int(text) if _INTEGER.fullmatch(text) else float(text)
    if v > 0:
        return v
    t = now + v
    return round(t) if isinstance(v, int) else round(t, 3)  # whole seconds, as the script gave them


def parse_attributes(text: str) -> dict[str, Any]:
    """Raw JSON between the quotes of the attributes field: as it is, then with ``\\"`` unescaped, else the text
    itself (kept as the ``attributes`` attribute rather than lost)."""
    t = text.strip()
    if not t:
        return {}
    for candidate in (t, t.replace('\\"', '"')):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return value if isinstance(value, dict) else {"attributes": value}
    return {"attributes": text}


def _is_json(text: str) -> bool:
    t = text.strip()
    for candidate in (t, t.replace('\\"', '"')):
        try:
            json.loads(candidate)
            return True
        except ValueError:
            continue
    return not t


def _event_fields(rest: str) -> tuple[str, str | None]:
    """(message, attributes text or None) from ``"<message>" "<attributes>"``. The attributes are taken
    greedily (they hold quotes of their own); the gap that leaves valid JSON on its right wins."""
    if len(rest) < 2 or not (rest.startswith('"') and rest.endswith('"')):
        return rest, None  # an unquoted message: keep it as it is
    gaps = list(_QUOTE_GAP.finditer(rest))
    if not gaps:
        return rest[1:-1], None
    best = next((g for g in gaps if _is_json(rest[g.end() : -1])), gaps[0])
    return rest[1 : best.start()], rest[best.end() : -1]


def parse_data(text: str, config: ScriptConfig, now: float | None = None) -> Parsed:
    """``M`` and ``E`` lines in any order; CR stripped; bad and undeclared lines become problems."""
    now = time.time() if now is None else now
    out = Parsed()
    for n, raw in enumerate(text.split("\n"), 1):
        line = _unbytes(raw.rstrip("\r").strip())
        if not line:
            continue
        if line[0] == "M":
            _metric(n, line, config, out)
        elif line[0] == "E":
            _event(n, line, config, now, out)
        else:
            out.problems.append((n, "not an M (metric) or E (event) line", line))
    return out


def _metric(n: int, line: str, config: ScriptConfig, out: Parsed) -> None:
    got = _metric_line(line[1:])
    if isinstance(got, str):
        out.problems.append((n, got, line))
        return
    mid, dim_text, value_text = got
    metric = config.metrics.get(norm_id(mid) or mid)
    if metric is None:
        out.problems.append((n, f"metric id {mid} was not declared by -c; dropped", line))
        return
    value, why = parse_value(value_text)
    if value is None:
        out.problems.append((n, why, line))
        return
    dims: dict[str, str] = {}
    if dim_text is not None:
        by_id = split_dims(dim_text)
        if by_id is None:
            out.problems.append((n, f"dimension field {dim_text!r} is not <id>:<value>,...", line))
            return
        for did, v in by_id.items():
            # Dimension ids are shared by a script's metrics: a line may name another metric's dimension.
            dims[metric.dims.get(did) or config.dim_names.get(did) or f"dimension {did}"] = v
    # A dimension named "unit" or "groups" keeps its value: it identifies the series.
    extra = {k: v for k, v in (("unit", metric.unit), ("groups", metric.groups)) if v and k not in dims}
    out.samples.append(
        Sample(
            metric.name, value, metric.kind, dims, extra=extra, calc=metric.calc,
            unit=metric.unit, description=metric.description, tags=metric.tags,
        )
    )  # fmt: skip


def _event(n: int, line: str, config: ScriptConfig, now: float, out: Parsed) -> None:
    m = _EVENT_HEAD.fullmatch(line)
    if not m:
        out.problems.append((n, 'expected E<id> <start> <end> "<message>" "<attributes>" [S|A]', line))
        return
    eid, start_text, end_text, rest = m.groups()
    event = config.events.get(norm_id(eid) or eid)
    if event is None:
        out.problems.append((n, f"event id {eid} was not declared by -c; dropped", line))
        return
    start, end = _time(start_text, now), _time(end_text, now)
    if start is None or end is None:
        bad = start_text if start is None else end_text
        out.problems.append((n, f"time {bad!r} is not a number (0, -seconds ago, or Unix seconds)", line))
        return
    rest = rest.strip()
    scope = "S"
    s = _SCOPE.search(rest)
    if s and (s.start() > 0 or rest in ("S", "A", "s", "a")):
        scope, rest = s.group(1).upper(), rest[: s.start()].rstrip()
    message, attr_text = _event_fields(rest)
    message = message.replace('\\"', '"')
    attrs: dict[str, Any] = {
        "event": event.name,
        "message": message,
        "start": start,
        "end": end,
        "scope": "server" if scope == "S" else "application",
    }
    if event.description:
        attrs["description"] = event.description
    for k, v in parse_attributes(attr_text or "").items():
        declared = event.attr_types.get(k)
        if declared is not None:
            v, ok = typed_attribute(v, declared)
            if not ok:
                out.problems.append((n, f"attribute {k!r} is declared {declared}, got {v!r}; kept as printed", line))
        attrs.setdefault(k, v)  # an attribute never overrides the event's own fields
    out.events.append({"m": message, "a": attrs, "t": int(start * 1e9)})


def typed_attribute(value: Any, kind: str) -> tuple[Any, bool]:
    """``value`` as the type its attributeDescriptions entry declares, and whether it could be: scripts print
    numbers as strings ("137") and strings as numbers (a unit name "42")."""
    if kind == "string":
        return (value if isinstance(value, str) else json.dumps(value)), True
    if kind == "boolean":
        if isinstance(value, bool):
            return value, True
        text = str(value).strip().lower()
        if text in ("true", "yes", "1"):
            return True, True
        if text in ("false", "no", "0"):
            return False, True
        return value, False
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value, False
    number, _why = parse_value(value) if isinstance(value, str) else (value, "")
    if number is None or (isinstance(number, float) and not math.isfinite(number)):
        return value, False
    if kind == "integer":
        if isinstance(number, float) and not number.is_integer():
            return value, False
        return int(number), True
    return float(number), True


# --- InfluxDB line protocol (Telegraf exec) ------------------------------------------------------------------

_BOOLS = {"t": 1, "T": 1, "true": 1, "True": 1, "TRUE": 1, "f": 0, "F": 0, "false": 0, "False": 0, "FALSE": 0}


def _split(text: str, sep: str, *, quotes: bool = False, limit: int = -1) -> list[str]:
    """Split on unescaped ``sep`` (outside double quotes when ``quotes``); the pieces keep their escapes."""
    parts: list[str] = []
    cur: list[str] = []
    inq = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if quotes and c == '"':
            inq = not inq
        elif c == sep and not inq and limit != len(parts):
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str, chars: str = ", =\\") -> str:
    """Undo the escapes the protocol defines (other backslashes are literal, as in C:\\path)."""
    return re.sub(r"\\([" + re.escape(chars) + "])", r"\1", text)


def _field_value(raw: str) -> float | int | str | None:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return _unescape(raw[1:-1], '"\\')
    if raw in _BOOLS:
        return _BOOLS[raw]
    if raw[-1:] in ("i", "u") and _INTEGER.fullmatch(raw[:-1]):
        return int(raw[:-1])
    if _NUMBER.fullmatch(raw):
        v = float(raw)
        return v if math.isfinite(v) else None
    return None


def _timestamp_ns(text: str) -> int | None:
    """Nanoseconds by the protocol; scripts printing seconds, ms or µs are recognised by magnitude."""
    if not _INTEGER.fullmatch(text):
        return None
    v = int(text)
    for limit, scale in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
        if abs(v) < limit:
            return v * scale
    return v


def parse_influx_line(line: str) -> list[Sample] | str:
    """``measurement[,tag=v...] field=v[,field=v...] [timestamp]`` -> one gauge sample per field, named
    ``measurement.field``, with the tags as dimensions; or why the line is not one."""
    # Quotes only delimit string field values: in the measurement and tags they are plain characters.
    first, *rest = _split(line, " ", limit=1)
    sections = [first, *(p for p in _split(rest[0] if rest else "", " ", quotes=True) if p)]
    if len(sections) not in (2, 3):
        return "expected: measurement[,tag=value...] field=value[,...] [timestamp]"
    head = _split(sections[0], ",")
    measurement = _unescape(head[0])
    if not measurement:
        return "no measurement name"
    tags: dict[str, str] = {}
    for t in head[1:]:
        kv = _split(t, "=", limit=1)
        if len(kv) != 2 or not kv[0]:
            return f"tag {t!r} is not key=value"
        tags[_unescape(kv[0])] = _unescape(kv[1])
    ts = 0
    if len(sections) == 3:
        got = _timestamp_ns(sections[2])
        if got is None:
            return f"timestamp {sections[2]!r} is not an integer"
        ts = got
    samples = []
    for pair in _split(sections[1], ",", quotes=True):
        kv = _split(pair, "=", limit=1)
        if len(kv) != 2 or not kv[0] or not kv[1]:
            return f"field {pair!r} is not key=value"
        value = _field_value(kv[1])
        if value is None:
            return f"field {_unescape(kv[0])!r}: {kv[1]!r} is not a number, boolean or quoted string"
        samples.append(Sample(f"{measurement}.{_unescape(kv[0])}", value, GAUGE, dict(tags), ts=ts))
    return samples


def parse_influx(text: str) -> tuple[list[Sample], list[Problem]]:
    samples: list[Sample] = []
    problems: list[Problem] = []
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r").strip(" \t")  # not str.strip(): a name may start with any other space
        if not line or line.startswith("#"):
            continue
        got = parse_influx_line(line)
        if isinstance(got, str):
            problems.append((n, got, line))
        else:
            samples += got
    return samples, problems
