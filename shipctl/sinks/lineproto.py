"""InfluxDB 1.x line protocol encoding: pure functions, no I/O.

One point is one line::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] timestamp_ns

The escaping follows the InfluxDB 1.x line protocol reference:

* measurement: ``,`` and space are escaped with a backslash;
* tag keys, tag values and field keys: ``,``, ``=`` and space are escaped with a backslash;
* string field values: double-quoted, with ``"`` and ``\\`` escaped with a backslash.

The reference has no escape for a backslash outside string values, and influxd's scanners (1.x, checked
against 1.6 in tests/test_wire.py) cannot tell a literal backslash from an escape when it stands right
before a character that is escaped or at the end of a name: ``C:\\`` as a tag value makes influxd
reject the whole line ("invalid tag format", influxdb#5231, #6154). Such backslashes are dropped,
as Telegraf's serializer does for trailing ones (telegraf#7652): ``C:\\`` is sent as ``C:``. Every other
backslash is sent as is and comes back unchanged.

Control characters (U+0000-U+001F and DEL) in a measurement, tag key, tag value or field key become a
space: influx 1.x has no escape for them there, a raw ``\\n`` would end the line, a ``\\r`` before the
timestamp spoils it, and a leading tab or NUL is skipped as whitespace at the start of the measurement and
of the first field key, so the name would change. Inside a string field value a raw
newline is sent as is: influxd's line scanner knows it is inside the quotes and keeps it (verified in
tests/test_wire.py), so multi-line log messages survive. A batch is therefore points joined with
``b"\\n"``; never split an encoded batch on ``b"\\n"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

FieldValue = int | float | bool | str

# influxd accepts timestamps in [MinInt64 + 2, MaxInt64 - 1]: the two extremes are its internal
# "no time" sentinels, and a point outside the range is refused with "time outside range".
MIN_TS_NS = -(1 << 63) + 2
MAX_TS_NS = (1 << 63) - 2
# Integer fields are int64 on the server; a larger Python int is refused with "value out of range".
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
# C0 control characters and DEL in names become a space (see module doc).
_CONTROLS = str.maketrans(dict.fromkeys([*range(0x20), 0x7F], " "))

# A run of backslashes that influxd would read as (part of) an escape: before an escaped character; before
# `"` or `=` (influxd 1.6 reads `\"` as `"` in measurements and field keys, and `\=` as `=` in measurements,
# where `=` is not escaped); or at the end of the name, where it would escape the separator. One rule for all
# names: simpler, and it costs only a backslash before `"` in tags, which would have survived.
_AMBIGUOUS_BACKSLASHES = re.compile(r'\\+(?=[ ,="]|\Z)')


def _clean_name(s: str) -> str:
    """Control characters to spaces, then drop the backslashes influxd cannot read back (see module doc)."""
    return _AMBIGUOUS_BACKSLASHES.sub("", s.translate(_CONTROLS))


def escape_measurement(s: str) -> str:
    """Escape a measurement name; raise ValueError for one influxd would drop or misread.

    Empty names are refused by influxd ("missing measurement"). A line whose first non-blank character is
    ``#`` is a comment to influxd and is dropped with a 204, so such a name is refused here rather than lost
    silently.
    """
    cleaned = _clean_name(s)
    if not cleaned:
        raise ValueError(f"measurement name {s!r} is empty once cleaned; InfluxDB needs one")
    if cleaned[0] == "#":
        raise ValueError(f"measurement name {s!r} starts with '#': InfluxDB would drop the line as a comment")
    return cleaned.translate(_MEASUREMENT_ESCAPES)


def escape_key(s: str) -> str:
    """Escape a tag key, tag value or field key (they share the rules: ``,``, ``=`` and space).

    Returns ``""`` for a name that is empty once cleaned; callers decide whether that is allowed.
    """
    return _clean_name(s).translate(_KEY_ESCAPES)


def encode_field_value(v: FieldValue) -> str:
    """Encode one field value: ``12i``, ``true``/``false``, a float that parses back to the same double,
    or a double-quoted string. NaN and infinities cannot be written to InfluxDB: ValueError."""
    # bool is a subclass of int: test it first or True would be sent as 1i.
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise ValueError(f"integer field value {v} does not fit InfluxDB's int64")
        return f"{int(v)}i"  # int(): an IntEnum's str() is its name, not its value
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"float field value {v!r} cannot be written to InfluxDB (no NaN or infinity)")
        # repr() is the shortest text that reads back to the same double ('0.1', '1e+100', '5e-324', '-0.0');
        # influxd parses it with Go's ParseFloat, which accepts all of these forms.
        return repr(float(v))
    if isinstance(v, str):
        return '"' + v.translate(_STRING_ESCAPES) + '"'
    raise TypeError(f"field values are int, float, bool or str, not {type(v).__name__}")


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ns: int,
) -> bytes:
    """One point as one line of UTF-8, without the trailing newline.

    Tags with an empty value are left out (influxd refuses them: "missing tag value"; in InfluxQL a missing
    tag and an empty one are the same anyway). Tags and fields are written sorted by their escaped bytes,
    which is the order influxd keeps series keys in, so it does not have to sort them again.
    ValueError for: no fields, an empty tag or field key, two keys that are the same once cleaned, and any
    value or timestamp InfluxDB cannot store.
    """
    if not fields:
        raise ValueError("a point needs at least one field")
    # isinstance and not type(...) is int, so a subclass like numpy's int64 passes; bool never does.
    if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
        raise TypeError(f"timestamp must be an int of nanoseconds, not {type(ts_ns).__name__}")
    if not MIN_TS_NS <= ts_ns <= MAX_TS_NS:
        raise ValueError(f"timestamp {ts_ns} ns is outside InfluxDB's range [{MIN_TS_NS}, {MAX_TS_NS}]")

    tag_parts = _pairs("tag", ((k, escape_key(v)) for k, v in tags.items() if v))
    field_parts = _pairs("field", ((k, encode_field_value(v)) for k, v in fields.items()))

    head = escape_measurement(measurement)
    if tag_parts:
        head += "," + ",".join(tag_parts)
    return f"{head} {','.join(field_parts)} {int(ts_ns)}".encode()


def _pairs(what: str, items: Iterable[tuple[str, str]]) -> list[str]:
    """``key=value`` strings sorted by escaped key; the values come already encoded."""
    out: dict[str, str] = {}
    for key, value in items:
        ekey = escape_key(key)
        if not ekey:
            raise ValueError(f"{what} key {key!r} is empty once cleaned")
        if ekey in out:
            # Only the lossy cleaning can do this ("a\n" and "a " are both "a "); influxd would reject the
            # point for duplicate tags, and silently keep one of two fields.
            raise ValueError(f"two {what} keys are both {ekey!r} once cleaned")
        if what == "tag" and not value:
            continue  # a value made only of dropped backslashes: leave the tag out, like an empty one
        out[ekey] = value
    # str order is code point order, which is also the UTF-8 byte order influxd's bytes.Compare uses.
    return [f"{k}={out[k]}" for k in sorted(out)]
