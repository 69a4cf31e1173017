"""Prometheus remote-write 1.0 encoding: pure functions, no I/O.

The body of a remote-write request is a snappy-compressed (raw block format, not the framed stream format)
protobuf ``prometheus.WriteRequest``::

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }  // timestamp in ms since the epoch

The protobuf is written by hand (four small messages do not justify a protobuf runtime and generated code);
it is byte-for-byte what a protobuf library makes, except that zero values are written rather than left
out, which every decoder reads the same way and which keeps ``-0.0`` and a timestamp of 0 explicit.

Send it with ``REMOTE_WRITE_HEADERS``. Prometheus only accepts samples newer than about one hour before the
newest sample it holds ("out of bounds"), and per series only newer than the last one it has
("out of order"): see tests/servers.py.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence

from shipctl.errors import ConfigError

REMOTE_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}

Series = tuple[Mapping[str, str], Sequence[tuple[int, float]]]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NOT_METRIC_CHAR = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")

# Protobuf keys: (field number << 3) | wire type. Wire types: 0 varint, 1 64-bit, 2 length-delimited.
_KEY_TIMESERIES = 1 << 3 | 2  # WriteRequest.timeseries
_KEY_LABELS = 1 << 3 | 2  # TimeSeries.labels
_KEY_SAMPLES = 2 << 3 | 2  # TimeSeries.samples
_KEY_LABEL_NAME = 1 << 3 | 2
_KEY_LABEL_VALUE = 2 << 3 | 2
_KEY_SAMPLE_VALUE = 1 << 3 | 1  # double: 8 bytes little-endian
_KEY_SAMPLE_TIMESTAMP = 2 << 3 | 0  # int64: varint

_DOUBLE = struct.Struct("<d")


def sanitize_metric_name(s: str) -> str:
    """Make ``s`` a valid metric name, ``[a-zA-Z_:][a-zA-Z0-9_:]*``.

    Every other character (each code point, so ``é`` is one ``_``) becomes ``_``; a name starting with a
    digit, or an empty one, gets a ``_`` in front. Different inputs can give the same name (``a.b``, ``a-b``).
    """
    name = _NOT_METRIC_CHAR.sub("_", s)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def sanitize_label_name(s: str) -> str:
    """Make ``s`` a valid label name, ``[a-zA-Z_][a-zA-Z0-9_]*``, that is not a reserved one.

    Invalid characters become ``_`` and a leading digit (or an empty name) gets a ``_`` in front, as for
    metric names. Names starting with ``__`` are reserved for Prometheus itself (``__name__``, and the
    ``__meta_*``/``__tmp`` labels that relabelling uses and drops), so the leading run of underscores is
    cut to one: ``__foo`` -> ``_foo``, ``___`` -> ``_``. A prefix would not do: ``___foo`` still starts with
    ``__``. ``__name__`` itself is the caller's to set, directly, not through this function.
    """
    name = _NOT_LABEL_CHAR.sub("_", s)
    if not name or name[0].isdigit():
        name = "_" + name
    if name.startswith("__"):
        name = "_" + name.lstrip("_")
    return name


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of an int64 or a uint64 (``-2**63 <= value < 2**64``).

    Negative values are their 64-bit two's complement, as protobuf encodes int64 (not sint64, which would
    zigzag): always 10 bytes. Remote write has negative timestamps for samples before 1970.
    """
    if not _INT64_MIN <= value <= _UINT64_MAX:
        raise ValueError(f"{value} is neither an int64 nor a uint64")
    value &= _UINT64_MAX
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(key: int, payload: bytes) -> bytes:
    return bytes((key,)) + encode_varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _length_delimited(_KEY_LABEL_NAME, name.encode()) + _length_delimited(_KEY_LABEL_VALUE, value.encode())


def _sample(ts_ms: int, value: float) -> bytes:
    # isinstance and not type(...) is int, so numpy ints pass; bool is an int but never a timestamp.
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise TypeError(f"sample timestamps are int milliseconds, not {type(ts_ms).__name__}")
    if not _INT64_MIN <= ts_ms <= _INT64_MAX:
        raise ValueError(f"sample timestamp {ts_ms} ms does not fit an int64")
    # NaN and infinities are valid sample values (Prometheus even uses a NaN as its staleness marker).
    return (
        bytes((_KEY_SAMPLE_VALUE,))
        + _DOUBLE.pack(float(value))
        + bytes((_KEY_SAMPLE_TIMESTAMP,))
        + encode_varint(ts_ms)
    )


def _timeseries(labels: Mapping[str, str], samples: Sequence[tuple[int, float]]) -> bytes:
    # An empty label value means "no such label" to Prometheus, and the remote-write spec forbids sending one.
    present = {k: v for k, v in labels.items() if v != ""}
    name = present.get("__name__")
    if name is None:
        raise ValueError(f"series {dict(labels)!r} has no __name__ label")
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"metric name {name!r} is invalid: use sanitize_metric_name()")
    for k in present:
        if not _LABEL_NAME.fullmatch(k):
            raise ValueError(f"label name {k!r} is invalid: use sanitize_label_name()")
    out = bytearray()
    # Prometheus requires the labels sorted by name; the names are ASCII, so str order is byte order.
    for k in sorted(present):
        out += _length_delimited(_KEY_LABELS, _label(k, present[k]))
    # The spec wants samples in timestamp order; sorted() is stable, so equal timestamps keep their order.
    for ts_ms, value in sorted(samples, key=lambda s: s[0]):
        out += _length_delimited(_KEY_SAMPLES, _sample(ts_ms, value))
    return bytes(out)


def encode_write_request(series: Iterable[Series]) -> bytes:
    """The uncompressed protobuf ``WriteRequest`` for ``(labels, [(timestamp_ms, value), ...])`` pairs.

    ``labels`` must hold ``__name__``; names must already be valid (see the ``sanitize_*`` functions):
    ValueError otherwise. Labels with an empty value are left out; series without samples are skipped.
    """
    out = bytearray()
    for labels, samples in series:
        if not samples:
            continue
        out += _length_delimited(_KEY_TIMESERIES, _timeseries(labels, samples))
    return bytes(out)


def snappy_compress(data: bytes) -> bytes:
    """Snappy raw (block) format, as remote write wants: not the framed format ``snappy.compress`` makes.

    cramjam is an optional dependency, imported here so that shipctl works without it for other sinks.
    """
    try:
        import cramjam
    except ImportError as exc:
        raise ConfigError(
            "the prometheus sink needs the cramjam package for snappy: pip install 'shipctl[prometheus]'"
        ) from exc
    return bytes(cramjam.snappy.compress_raw(data))
