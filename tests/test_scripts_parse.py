"""The script output parsers on their own: CoScale ``-c`` JSON and ``-d`` lines, InfluxDB line protocol, and
where shipctl finds the script in a command. Property tests check that what a script prints comes back."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipctl.monitors.script import resolve
from shipctl.monitors.script_parse import (
    ScriptConfig,
    parse_attributes,
    parse_config,
    parse_data,
    parse_influx,
    parse_value,
    split_dims,
)

NOW = 1_800_000_000.0

CONFIG, _ = parse_config(
    {
        "metrics": [
            {"id": 1, "name": "traffic", "unit": "B", "groups": "Net", "dimensions": [{"id": 1, "name": "if"}]},
            {"id": 2, "name": "two", "dimensions": [{"id": 2, "name": "a"}, {"id": 3, "name": "b"}]},
            {"id": 3, "name": "clash", "unit": "ms", "dimensions": [{"id": 4, "name": "unit"}]},
        ],
        "events": [{"id": 1, "name": "ev"}],
    }
)


# --- -c ------------------------------------------------------------------------------------------------------


def test_config_datatypes_calctypes_and_limits() -> None:
    cfg, warnings = parse_config(
        {
            "period": 10,
            "maxruntime": 90000,
            "metrics": [
                {"id": "01", "name": "a", "datatype": "double"},
                {"id": 2, "name": "b", "datatype": "GUAGE", "calctype": "difference"},
                {"id": 3, "name": "c", "datatype": "COUNT"},
                {"id": 4, "name": "d", "datatype": "COUNTER", "calctype": "Difference"},
                {"id": 5, "name": "e", "datatype": "HISTOGRAM", "calctype": "Average"},
                {"name": "no id"},
            ],
        }
    )
    assert [(m.id, m.kind, m.calc) for m in cfg.metrics.values()] == [
        ("1", "gauge", ""),
        ("2", "gauge", "difference"),
        ("3", "count", ""),
        ("4", "counter", "difference"),
        ("5", "gauge", ""),
    ]
    assert (cfg.period, cfg.maxruntime) == (60, 50000)
    assert warnings == [
        "metrics[5] has no usable id; ignored",
        "metrics[4] (e): unknown datatype 'HISTOGRAM'; treated as a gauge",
        "metrics[4] (e): unknown calctype 'Average'; treated as Instant",
        "period 10 is below the minimum 60; using 60",
        "maxruntime 90000 ms is above the maximum 50000; using 50000",
    ]


def test_config_without_metrics_or_events_or_limits() -> None:
    cfg, warnings = parse_config({"events": [{"id": 1, "name": "x"}]})
    assert (cfg.metrics, cfg.period, cfg.maxruntime, warnings) == ({}, 60, None, [])
    cfg, warnings = parse_config({})
    assert warnings == ["declares no metrics and no events: every data line will be dropped"]


# --- M lines -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "why"),
    [
        ("8.5", 8.5, ""),
        ("01", 1, ""),
        ("-3", -3, ""),
        ("1e3", 1000.0, ""),
        (".5", 0.5, ""),
        ("b'42'", 42, ""),
        ("b'7\\n'", 7, ""),
        ("", None, "empty value"),
        ("b''", None, "empty value"),
        ("nan", None, "value 'nan' is not a finite number"),
        ("-inf", None, "value '-inf' is not a finite number"),
        ("1_000", None, "value '1_000' is not a number"),
        ("0x10", None, "value '0x10' is not a number"),
        ("1e999", None, "value '1e999' is not a finite number"),
    ],
)
def test_values(text: str, value: float | None, why: str) -> None:
    assert parse_value(text) == (value, why)


def test_dimensions_split_only_before_an_id() -> None:
    assert split_dims("1:eth0") == {"1": "eth0"}
    assert split_dims("2:a,b:c,3:x:y") == {"2": "a,b:c", "3": "x:y"}
    assert split_dims("2:v1, 3:v2") == {"2": "v1", "3": "v2"}
    assert split_dims("1:system-getty.slice\\x2d@tty1.service") == {"1": "system-getty.slice\\x2d@tty1.service"}
    assert split_dims("") == {}
    assert split_dims("eth0") is None


def test_metric_line_shapes() -> None:
    got = parse_data(
        'M1 "1:eth0" 8.5\nM1 100\nM1 "" 3\nM1\t"1:tab" 4\nM1 1:noquotes 5\nM2 "2:a b c,3:\\"q\\"" 6\n'
        'M01 "1:lead" 7\r\nM3 "4:s" 8\n',
        CONFIG,
        NOW,
    )
    assert got.problems == []
    assert [(s.name, s.value, s.dims, s.extra) for s in got.samples] == [
        ("traffic", 8.5, {"if": "eth0"}, {"unit": "B", "groups": "Net"}),
        ("traffic", 100, {}, {"unit": "B", "groups": "Net"}),
        ("traffic", 3, {}, {"unit": "B", "groups": "Net"}),
        ("traffic", 4, {"if": "tab"}, {"unit": "B", "groups": "Net"}),
        ("traffic", 5, {"if": "noquotes"}, {"unit": "B", "groups": "Net"}),
        ("two", 6, {"a": "a b c", "b": '\\"q\\"'}, {}),
        ("traffic", 7, {"if": "lead"}, {"unit": "B", "groups": "Net"}),
        ("clash", 8, {"unit": "s"}, {}),  # a dimension named "unit" keeps its value
    ]


def test_bad_lines_are_problems_with_their_line_numbers() -> None:
    got = parse_data('\nhello\nM1 "1:x 5\nM7 1\nE9 0 0 "x" "{}"\nM2 "9" 1\nM\nM1 "1:x" 2 3\n', CONFIG, NOW)
    assert got.samples == [] and got.events == []
    assert [(n, why) for n, why, _ in got.problems] == [
        (2, "not an M (metric) or E (event) line"),
        (3, "unbalanced quote in the dimension field"),
        (4, "metric id 7 was not declared by -c; dropped"),
        (5, "event id 9 was not declared by -c; dropped"),
        (6, "dimension field '9' is not <id>:<value>,..."),
        (7, "no metric id after M"),
        (8, "value '2 3' is not a number"),
    ]


# --- E lines -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "start", "end", "message", "extra", "scope"),
    [
        (
            'E1 -300 0 "The event triggered" "{"Exit code":137}" S',
            NOW - 300,
            NOW,
            "The event triggered",
            {"Exit code": 137},
            "server",
        ),
        ('E1 1458345600 0 "abs" "{ }" A', 1458345600, NOW, "abs", {}, "application"),
        ('E1 0 -10 "no scope" "{"a":1}"', NOW, NOW - 10, "no scope", {"a": 1}, "server"),
        ('E1 0 0 "esc" "{\\"a\\":\\"b c\\"}" S', NOW, NOW, "esc", {"a": "b c"}, "server"),
        ('E1 0 0 "say "hi" now" "{"k":"v"}" S', NOW, NOW, 'say "hi" now', {"k": "v"}, "server"),
        ('E1 0 0 "a" "b" "{"k":"v"}" S', NOW, NOW, 'a" "b', {"k": "v"}, "server"),
        ('E1 0 0 "raw" "not json" s', NOW, NOW, "raw", {"attributes": "not json"}, "server"),
        ('E1 0 0 "list" "[1,2]"', NOW, NOW, "list", {"attributes": [1, 2]}, "server"),
        ('E1 0 0 "only a message"', NOW, NOW, "only a message", {}, "server"),
        ('E1 0 0 "only a message" A', NOW, NOW, "only a message", {}, "application"),
        ('E1 0 0 "no clobber" "{"event":"x","message":"y","z":1}"', NOW, NOW, "no clobber", {"z": 1}, "server"),
        ("E1 0 0 unquoted words", NOW, NOW, "unquoted words", {}, "server"),
        ('E1 0.5 -1.5 "fractions" ""', 0.5, NOW - 1.5, "fractions", {}, "server"),
    ],
)
def test_event_lines(line: str, start: float, end: float, message: str, extra: dict, scope: str) -> None:
    got = parse_data(line + "\r\n", CONFIG, NOW)
    assert got.problems == []
    (ev,) = got.events
    assert ev["m"] == message
    assert ev["a"] == {"event": "ev", "message": message, "start": start, "end": end, "scope": scope, **extra}
    assert ev["t"] == int(start * 1e9)


def test_event_with_bad_times_or_shape() -> None:
    got = parse_data('E1 soon 0 "x" "{}"\nE1 0 "x"\nE1\n', CONFIG, NOW)
    assert [why for _, why, _ in got.problems] == [
        "time 'soon' is not a number (0, -seconds ago, or Unix seconds)",
        "time '\"x\"' is not a number (0, -seconds ago, or Unix seconds)",
        'expected E<id> <start> <end> "<message>" "<attributes>" [S|A]',
    ]


def test_attributes_fallbacks() -> None:
    assert parse_attributes('{"a": 1}') == {"a": 1}
    assert parse_attributes('{\\"a\\": 1}') == {"a": 1}
    assert parse_attributes("  ") == {}
    assert parse_attributes("{broken") == {"attributes": "{broken"}


# --- properties ----------------------------------------------------------------------------------------------

# Dimension values as scripts print them, unescaped: anything but a newline, and not "<digits>:" after a comma.
dim_values = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r"), max_size=20).filter(
    lambda v: not any(p[:1].isdigit() and ":" in p for p in v.split(",")[1:]) and v.strip() == v
)
numbers = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)


@settings(max_examples=200, deadline=None)
@given(a=dim_values, b=dim_values, value=numbers)
def test_metric_lines_round_trip(a: str, b: str, value: float) -> None:
    text = repr(value) if isinstance(value, float) else str(value)
    got = parse_data(f'M2 "2:{a},3:{b}" {text}\n', CONFIG, NOW)
    assert got.problems == []
    (s,) = got.samples
    assert s.dims == {"a": a, "b": b}
    assert s.value == value or (isinstance(value, float) and math.isclose(s.value, value))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_output_parses_without_raising_and_every_line_is_accounted_for(text: str) -> None:
    got = parse_data(text, CONFIG, NOW)
    lines = [x for x in text.split("\n") if x.rstrip("\r").strip()]
    assert len(got.samples) + len(got.events) + len(got.problems) == len(lines)
    _, problems = parse_influx(text)
    assert len(problems) <= len([x for x in text.split("\n") if x.rstrip("\r").strip(" \t")])


@settings(max_examples=200, deadline=None)
@given(
    # No backslash in names: the protocol has no way to write one before an escaped character.
    measurement=st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"), min_size=1),
    tag=st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"), min_size=1),
    value=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    string=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
)
def test_influx_escapes_round_trip(measurement: str, tag: str, value: int, string: str) -> None:
    def esc(s: str, chars: str) -> str:
        return "".join("\\" + c if c in chars else c for c in s)

    if measurement.startswith("#"):
        return  # a comment line
    line = f'{esc(measurement, ", ")},t={esc(tag, ",= ")} n={value}i,s="{esc(string, chr(34) + chr(92))}"'
    samples, problems = parse_influx(line)
    assert problems == []
    assert [(s.name, s.value, s.dims) for s in samples] == [
        (f"{measurement}.n", value, {"t": tag}),
        (f"{measurement}.s", string, {"t": tag}),
    ]


# --- which file is the script ---------------------------------------------------------------------------------


def test_resolve_finds_the_script_and_its_interpreter(tmp_path: Path) -> None:
    py = tmp_path / "x.py"
    py.write_text(f"#!{sys.executable}\nprint(1)\n")
    py.chmod(0o644)
    assert resolve(f"python3 {py} --flag", shell=False, sh_as_bash=True).script == str(py)
    inv = resolve(str(py), shell=False, sh_as_bash=True)  # not executable: run through its #! line
    assert (inv.argv, inv.script) == ((sys.executable, str(py)), str(py))
    py.chmod(0o755)
    assert resolve(f"{py} a b", shell=False, sh_as_bash=True).argv == (str(py), "a", "b")
    sh = tmp_path / "y.sh"
    sh.write_text("#!/bin/sh\necho\n")
    sh.chmod(0o755)
    bash = resolve(str(sh), shell=False, sh_as_bash=True).argv[0]
    assert os.path.basename(bash) == "bash"
    assert resolve(str(sh), shell=False, sh_as_bash=False).argv == (str(sh),)
    bare = tmp_path / "z.sh"
    bare.write_text("echo no shebang\n")
    assert resolve(str(bare), shell=False, sh_as_bash=False).argv == ("/bin/sh", str(bare))
    with pytest.raises(ValueError):
        resolve("  ", shell=False, sh_as_bash=True)


def test_an_empty_config_drops_everything() -> None:
    got = parse_data('M1 1\nE1 0 0 "x"\n', ScriptConfig(), NOW)
    assert (got.samples, got.events, len(got.problems)) == ([], [], 2)
