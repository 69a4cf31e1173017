"""Wire formats against real servers: InfluxDB 1.x line protocol through ``influxd``, Prometheus remote write
through ``prometheus`` (fixtures in tests/servers.py), plus pure tests of the encoders' edge cases.

The server tests pin down what the servers do with our bytes (and with bad ones), which is what the sinks
will rely on; the pure tests pin down the rules the module docs promise.
"""

from __future__ import annotations

import math
import struct
import sys
import time
import uuid
from typing import Any

import cramjam
import pytest

from shipctl.errors import ConfigError
from shipctl.sinks.lineproto import (
    MAX_TS_NS,
    MIN_TS_NS,
    encode_field_value,
    encode_point,
    escape_key,
    escape_measurement,
)
from shipctl.sinks.promwire import (
    encode_varint,
    encode_write_request,
    sanitize_label_name,
    sanitize_metric_name,
    snappy_compress,
)
from tests.servers import InfluxDB, Prometheus, influxql_ident

# ---------------------------------------------------------------------------------------------------------
# Line protocol, pure


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12, "12i"),
        (-7, "-7i"),
        (0, "0i"),
        ((1 << 63) - 1, "9223372036854775807i"),
        (-(1 << 63), "-9223372036854775808i"),
        (True, "true"),  # bool before int: not 1i
        (False, "false"),
        (1.5, "1.5"),
        (1.0, "1.0"),  # still a float to influx
        (0.1 + 0.2, "0.30000000000000004"),
        (1e300, "1e+300"),
        (5e-324, "5e-324"),
        (-0.0, "-0.0"),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash\\", '"back\\\\slash\\\\"'),
        ("two\nlines\r\ttab", '"two\nlines\r\ttab"'),  # kept raw inside the quotes
        ("ünï 🙂", '"ünï 🙂"'),
    ],
)
def test_encode_field_value(value: Any, text: str) -> None:
    assert encode_field_value(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1 << 63, -(1 << 63) - 1])
def test_encode_field_value_refuses_what_influx_cannot_store(value: float) -> None:
    with pytest.raises(ValueError):
        encode_field_value(value)


@pytest.mark.parametrize("value", [None, b"bytes", [1], 1j])
def test_encode_field_value_refuses_other_types(value: Any) -> None:
    with pytest.raises(TypeError):
        encode_field_value(value)


@pytest.mark.parametrize(
    ("name", "measurement", "key"),
    [
        ("plain", "plain", "plain"),
        ("a b,c=d", "a\\ b\\,c=d", "a\\ b\\,c\\=d"),  # measurements do not escape "="
        ('q"uote', 'q"uote', 'q"uote'),
        ("back\\slash", "back\\slash", "back\\slash"),  # a backslash before an ordinary character stays
        ("C:\\", "C:", "C:"),  # trailing backslashes cannot be told from an escape: dropped
        ("a\\\\,b", "a\\,b", "a\\,b"),  # so are those right before an escaped character...
        ('a\\"b', 'a"b', 'a"b'),  # ... or before a quote
        ("two\nlines\r\tand\x00nul", "two\\ lines\\ \\ and\\ nul", "two\\ lines\\ \\ and\\ nul"),
        ("ключ 🙂", "ключ\\ 🙂", "ключ\\ 🙂"),
    ],
)
def test_escape_names(name: str, measurement: str, key: str) -> None:
    assert escape_measurement(name) == measurement
    assert escape_key(name) == key


def test_encode_point_layout() -> None:
    line = encode_point("m", {"b": "2", "a": "1", "empty": "", "sp ace": "x y"}, {"z": 1, "y": 2.5}, 17)
    assert line == b"m,a=1,b=2,sp\\ ace=x\\ y y=2.5,z=1i 17"


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "ts"),
    [
        ("m", {}, {}, 1),  # no fields
        ("", {}, {"x": 1}, 1),
        ("\\", {}, {"x": 1}, 1),  # empty once cleaned
        ("#comment", {}, {"x": 1}, 1),  # influxd would drop the line as a comment
        ("m", {"": "v"}, {"x": 1}, 1),
        ("m", {}, {"": 1}, 1),
        ("m", {"a\n": "1", "a ": "2"}, {"x": 1}, 1),  # the same key once cleaned
        ("m", {}, {"x": 1}, MAX_TS_NS + 1),
        ("m", {}, {"x": 1}, MIN_TS_NS - 1),
    ],
)
def test_encode_point_refuses(measurement: str, tags: dict[str, str], fields: dict[str, Any], ts: int) -> None:
    with pytest.raises(ValueError):
        encode_point(measurement, tags, fields, ts)


def test_encode_point_timestamp_must_be_int() -> None:
    with pytest.raises(TypeError):
        encode_point("m", {}, {"x": 1}, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_point("m", {}, {"x": 1}, True)


# ---------------------------------------------------------------------------------------------------------
# Line protocol through a real influxd

TS = 1_700_000_000_123_456_789  # every nanosecond digit significant

# (measurement, tags, fields, ts) as written, then the measurement, tags and fields influx must give back.
Point = tuple[str, dict[str, str], dict[str, Any], int]
HOSTILE_TAGS = {
    "host name": "web 1,a=b",
    'quote"d': 'val "x"',
    "uni ключ": "值 🙂 é",
    "path": "C:\\dir\\file.txt",  # backslashes before ordinary characters come back as they were
    "=,": ", =",
}
ROUND_TRIPS: list[tuple[Point, str, dict[str, str], dict[str, Any] | None]] = [
    (
        (
            'cpu load,total=all "q" \\x',
            HOSTILE_TAGS,
            {
                "value,1": 1.5,
                "count=": 12,
                "ok flag": True,
                "off": False,
                "msg": 'say "hi" \\ back\\slash\\\nline 2\ttab',  # a raw newline: the next line must survive
                "neg": -7,
                "tiny": 5e-324,
                "huge": 1e300,
                "third": 0.1 + 0.2,
                "max": (1 << 63) - 1,
                "min": -(1 << 63),
                "empty": "",
                "unc": "\\\\host\\share\\",  # a double backslash, and one right before the closing quote
                "uni é": "ünï 🙂",
            },
            TS,
        ),
        'cpu load,total=all "q" \\x',
        HOSTILE_TAGS,
        None,  # the fields as written
    ),
    (
        # The documented lossy rules: control characters to spaces, unreadable backslashes dropped, empty
        # tags left out. And a timestamp before 1970.
        (
            "multi\nline",
            {"dir": "C:\\", "nl": "a\nb", "only": "\\", "empty": ""},
            {"x\\": 1, "s": "kept\nas is"},
            -1_000_000_001,
        ),
        "multi line",
        {"dir": "C:", "nl": "a b"},
        {"x": 1, "s": "kept\nas is"},
    ),
    (("mesure é🙂", {}, {"f": 0.5}, 0), "mesure é🙂", {}, None),
]

INFLUX_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}


def test_line_protocol_round_trips_through_influxd(influxdb: InfluxDB) -> None:
    db = influxdb.create_db()
    body = b"\n".join(encode_point(*point) for point, *_ in ROUND_TRIPS)
    r = influxdb.write(db, body)
    assert r.status_code == 204, r.text

    for (_, _, fields, ts), measurement, tags, expected in ROUND_TRIPS:
        expected = fields if expected is None else expected
        series = influxdb.query(db, f"SELECT * FROM {influxql_ident(measurement)} GROUP BY *")
        assert len(series) == 1, series
        assert series[0]["name"] == measurement
        assert series[0].get("tags", {}) == tags
        (row,) = series[0]["values"]
        assert dict(zip(series[0]["columns"], row, strict=True)) == {"time": ts, **expected}
        # JSON says 12 for both 12i and 12.0: the field types come from the schema.
        keys = influxdb.query(db, f"SHOW FIELD KEYS FROM {influxql_ident(measurement)}")
        types = {k: t for k, t in keys[0]["values"]}
        assert types == {k: INFLUX_TYPES[type(v)] for k, v in expected.items()}


def test_influxd_refuses_a_bad_line_with_400(influxdb: InfluxDB) -> None:
    db = influxdb.create_db()
    r = influxdb.write(db, b"m x= 1")
    assert r.status_code == 400
    assert r.json() == {"error": "unable to parse 'm x= 1': missing field value"}
    assert r.headers["X-Influxdb-Error"] == "unable to parse 'm x= 1': missing field value"


def test_influxd_partial_writes(influxdb: InfluxDB) -> None:
    """What influxd 1.6 does with a batch it can only partly store: 400, and the good points are stored."""
    db = influxdb.create_db()
    assert influxdb.write(db, encode_point("conflict", {}, {"x": 1}, 1)).status_code == 204

    # (a) A field type conflict: the point is dropped ("dropped=1"), the others are stored.
    r = influxdb.write(db, b"\n".join([encode_point("conflict", {}, {"x": 2.5}, 2), b"conflict x=3i 3"]))
    assert r.status_code == 400
    assert r.json()["error"] == (
        'partial write: field type conflict: input field "x" on measurement "conflict" is type float, '
        "already exists as type integer dropped=1"
    )
    assert [row["time"] for row in influxdb.rows(db, "SELECT * FROM conflict")] == [1, 3]

    # (b) One unparsable line among good ones: the good ones are stored, and "dropped=0" does not count
    # the line that did not parse.
    r = influxdb.write(db, b"good x=1 1\nbroken x= 2\ngood x=3 3")
    assert r.status_code == 400
    assert r.json()["error"] == "partial write: unable to parse 'broken x= 2': missing field value dropped=0"
    assert [row["time"] for row in influxdb.rows(db, "SELECT * FROM good")] == [1, 3]


# ---------------------------------------------------------------------------------------------------------
# Remote write, pure


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("http_requests_total", "http_requests_total"),
        ("ns:rule:rate5m", "ns:rule:rate5m"),
        ("shipctl.events-sent", "shipctl_events_sent"),
        ("9lives", "_9lives"),
        ("é", "_"),
        ("", "_"),
        ("__name__", "__name__"),  # metric names have no reserved prefix
    ],
)
def test_sanitize_metric_name(name: str, metric: str) -> None:
    assert sanitize_metric_name(name) == metric


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("job", "job"),
        ("host.name", "host_name"),
        ("a:b", "a_b"),  # ":" is allowed in metric names only
        ("1st", "_1st"),
        ("", "_"),
        ("_private", "_private"),
        ("__meta_x", "_meta_x"),  # "__" is reserved: cut to one underscore
        ("___x", "_x"),
        ("__", "_"),
        ("..x", "_x"),  # "__x" once sanitized, so reserved too
        ("ключ", "_"),  # "____": reserved, cut to one
    ],
)
def test_sanitize_label_name(name: str, label: str) -> None:
    assert sanitize_label_name(name) == label


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        ((1 << 63) - 1, "ffffffffffffffff7f"),
        ((1 << 64) - 1, "ffffffffffffffffff01"),
        (-1, "ffffffffffffffffff01"),  # int64 two's complement: 10 bytes
        (-2, "feffffffffffffffff01"),
        (-(1 << 63), "80808080808080808001"),
    ],
)
def test_encode_varint(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert _read_varint(encode_varint(value), 0)[0] == value & ((1 << 64) - 1)


@pytest.mark.parametrize("value", [1 << 64, -(1 << 63) - 1])
def test_encode_varint_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


def test_write_request_golden_bytes() -> None:
    # Worked out by hand from the .proto: WriteRequest{timeseries[0]{labels: __name__=up, job=x;
    # samples: {value 1.0, timestamp 1000}}}.
    body = encode_write_request([({"job": "x", "__name__": "up"}, [(1000, 1.0)])])
    assert body.hex() == (
        "0a28"  # timeseries, 40 bytes
        "0a0e" "0a085f5f6e616d655f5f" "12027570"  # label __name__ = up
        "0a08" "0a036a6f62" "120178"  # label job = x
        "120c" "09000000000000f03f" "10e807"  # sample 1.0 @ 1000
    )  # fmt: skip


def test_write_request_structure() -> None:
    body = encode_write_request(
        [
            (
                {"__name__": "m", "zeta": "1", "alpha": "2", "empty": "", "uni": "ü ✓"},
                [(30, 3.0), (-5, -0.0), (10, 1.5)],
            ),
            ({"__name__": "nothing"}, []),  # no samples: skipped
            ({"__name__": "n"}, [((1 << 63) - 1, math.nan), (-(1 << 63), math.inf)]),
        ]
    )
    decoded = _decode_write_request(body)
    assert [labels for labels, _ in decoded] == [
        [("__name__", "m"), ("alpha", "2"), ("uni", "ü ✓"), ("zeta", "1")],  # sorted, empty left out
        [("__name__", "n")],
    ]
    samples = decoded[0][1]
    assert [ts for ts, _ in samples] == [-5, 10, 30]  # sorted by time, negative as int64
    assert [struct.pack("<d", v) for _, v in samples] == [struct.pack("<d", v) for v in (-0.0, 1.5, 3.0)]
    (t_min, inf), (t_max, nan) = decoded[1][1]
    assert (t_min, t_max, inf) == (-(1 << 63), (1 << 63) - 1, math.inf)
    assert math.isnan(nan)


@pytest.mark.parametrize(
    "labels",
    [
        {"job": "x"},  # no __name__
        {"__name__": ""},
        {"__name__": "bad-name"},
        {"__name__": "m", "bad.label": "x"},
        {"__name__": "m", "1st": "x"},
    ],
)
def test_write_request_refuses_bad_labels(labels: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        encode_write_request([(labels, [(1, 1.0)])])


def test_write_request_refuses_bad_timestamps() -> None:
    with pytest.raises(ValueError):
        encode_write_request([({"__name__": "m"}, [(1 << 63, 1.0)])])
    with pytest.raises(TypeError):
        encode_write_request([({"__name__": "m"}, [(1.5, 1.0)])])  # type: ignore[list-item]


def test_snappy_compress_is_raw_snappy() -> None:
    data = encode_write_request([({"__name__": "m"}, [(i, float(i)) for i in range(100)])])
    compressed = snappy_compress(data)
    assert isinstance(compressed, bytes) and len(compressed) < len(data)
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == data


def test_snappy_compress_without_cramjam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cramjam", None)  # makes `import cramjam` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'shipctl\[prometheus\]'") as exc:
        snappy_compress(b"x")
    assert exc.value.exit_code == 78


# ---------------------------------------------------------------------------------------------------------
# Remote write through a real Prometheus


def _prom_time(ts_ms: int) -> str:
    """A query time exactly at ``ts_ms`` (a float of seconds may be off by one ms)."""
    return f"{ts_ms // 1000}.{ts_ms % 1000:03d}"


def _write(prometheus: Prometheus, series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> Any:
    return prometheus.remote_write(snappy_compress(encode_write_request(series)))


def test_remote_write_round_trips_through_prometheus(prometheus: Prometheus) -> None:
    name = sanitize_metric_name(f"shipctl.wire-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    samples = [(now - 180_000, 1.5), (now - 120_000, -0.25), (now - 60_000, 1e-300)]
    labels = {"__name__": name, "job": "wire test", sanitize_label_name("host.name"): "web-1 ü ✓", "empty": ""}
    r = _write(prometheus, [(labels, samples[::-1]), ({"__name__": f"{name}_nan"}, [(now - 60_000, math.nan)])])
    assert r.status_code == 204, r.text

    for ts, value in samples:
        (result,) = prometheus.query(name, time=_prom_time(ts))
        assert result["metric"] == {"__name__": name, "job": "wire test", "host_name": "web-1 ü ✓"}
        at, text = result["value"]
        assert (round(at * 1000), float(text)) == (ts, value)
    (result,) = prometheus.query(f"{name}_nan", time=_prom_time(now - 60_000))
    assert result["value"][1] == "NaN"


def test_prometheus_refuses_old_samples_and_the_whole_request(prometheus: Prometheus) -> None:
    """Out of bounds (older than ~1 h before the newest sample held) and out of order are 400, and a request
    with such a sample stores none of its samples: a sink has to drop them, retrying cannot help."""
    name = sanitize_metric_name(f"shipctl.stale-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    # A recent sample first: on an empty head the first sample, however old, sets the window.
    assert _write(prometheus, [({"__name__": f"{name}_fresh"}, [(now - 1000, 1.0)])]).status_code == 204

    r = _write(
        prometheus,
        [
            ({"__name__": f"{name}_good"}, [(now - 1000, 2.0)]),
            ({"__name__": f"{name}_old"}, [(now - 3 * 3600_000, 3.0)]),
        ],
    )
    assert (r.status_code, r.text.strip()) == (400, "out of bounds")
    assert prometheus.query(f"{name}_good", time=_prom_time(now - 1000)) == []

    assert _write(prometheus, [({"__name__": f"{name}_seq"}, [(now - 60_000, 1.0)])]).status_code == 204
    r = _write(prometheus, [({"__name__": f"{name}_seq"}, [(now - 120_000, 2.0)])])
    assert (r.status_code, r.text.strip()) == (400, "out of order sample")


# ---------------------------------------------------------------------------------------------------------
# A minimal protobuf reader, only for checking what the encoder wrote


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs: an int for varints, bytes for 64-bit and length-delimited fields."""
    out: list[tuple[int, Any]] = []
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, value))
    assert i == len(buf)
    return out


def _decode_write_request(body: bytes) -> list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]:
    series = []
    for number, ts_bytes in _fields(body):
        assert number == 1
        labels, samples = [], []
        for field, value in _fields(ts_bytes):
            if field == 1:
                (n1, name), (n2, val) = _fields(value)
                assert (n1, n2) == (1, 2)
                labels.append((name.decode(), val.decode()))
            else:
                assert field == 2
                (n1, raw), (n2, ts) = _fields(value)
                assert (n1, n2) == (1, 2)
                samples.append((ts - (1 << 64) if ts >= 1 << 63 else ts, struct.unpack("<d", raw)[0]))
        series.append((labels, samples))
    return series
