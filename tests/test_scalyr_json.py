"""The Scalyr agent's JSON dialect (shipctl/scalyr_json.py): what it accepts, what it refuses, and where."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipctl.scalyr_json import ScalyrJsonError, parse, parse_document, position


def test_every_extension_of_the_agent_dialect() -> None:
    text = b"""// a line comment
    /* a block
       comment */
    {
      unquoted_key: 1,           // after a value
      "quoted key": "v" + "w"    /* concatenation */ + "x"
      missing_comma: [1, 2
                      3]
      triple: \"\"\"spans
two "lines" \\t\"\"\",
      numbers: [007, 1., -.5, --5, 1e3, 12345678901234567890, -0],
      literals: [true, false, null,],
      escapes: "\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00",
      empty: {}, nested: {a: {b: []}},
      dup: 1, dup: 2,
    }"""
    assert parse(text) == {
        "unquoted_key": 1,
        "quoted key": "vwx",
        "missing_comma": [1, 2, 3],
        "triple": 'spans\ntwo "lines" \t',
        "numbers": [7, 1.0, -0.5, -5, 1000.0, 12345678901234567890, 0],
        "literals": [True, False, None],
        "escapes": '"\\/\b\f\n\r\t\u00e9\U0001f600',
        "empty": {},
        "nested": {"a": {"b": []}},
        "dup": 2,
    }


def test_length_prefixed_string_and_crlf_comments() -> None:
    blob = "é\n".encode()
    data = b"{\r\n  a: `s" + struct.pack(">i", len(blob)) + blob + b" // c\r\n  b: 2\r\n}"
    assert parse(data) == {"a": "é\n", "b": 2}


def test_text_after_the_value_is_reported_not_parsed() -> None:
    doc = parse_document(b'{"a": 1}\n  // fine\n junk')
    assert doc.value == {"a": 1} and doc.trailing == len(b'{"a": 1}\n  // fine\n ')
    assert parse_document(b'{"a": 1}  /* c */ \n').trailing is None


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        (b"", 1, 1, "Empty input"),
        (b"  // only a comment\n", 2, 1, "Empty input"),
        (b'{\n  "a": 1 "b": 2\n}', 2, 10, "After object field, expected ',' or '}' but found '\"'"),
        (b"{a: 1 /* c */ b: 2}", 1, 15, "are you missing a comma?"),
        (b"[1 2]", 1, 4, "Unexpected character [2] in array"),
        (b'{\n"a": "x\ny"}', 2, 8, "string literal not terminated before end of line"),
        (b'{"a": "\\d"}', 1, 9, "Unexpected backslash escape [d]"),
        (b"[1,,2]", 1, 4, "Unexpected character ','"),
        (b"{,}", 1, 2, "Expected string literal for object attribute name"),
        (b"{a-b: 1}", 1, 3, "To use character '-' in an attribute name"),
        (b"{a 1}", 1, 4, "Expected ':' delimiting object attribute value"),
        (b"{'a': 1}", 1, 2, "Expected string literal for object attribute name"),
        (b'{"a": tru}', 1, 7, "unknown identifier"),
        (b'{"a": NaN}', 1, 7, "Unexpected character 'N'"),
        (b'{"a": 1.2.3}', 1, 7, "Could not parse number as float '1.2.3'"),
        (b'{"a": "x" + 1}', 1, 13, "Expected string literal after + operator"),
        (b'{\n  "a": [1\n', 2, 8, "Array has no terminating ']'"),
        (b'{\n  "a": 1,\n', 1, 1, "Need '}' for end of object"),
        (b"{\n /* open", 2, 2, "Unterminated comment"),
        (b'{"a": """never closed}', 1, 7, "string literal not terminated"),
        (b"{ /x }", 1, 3, "Unexpected character '/x'"),
        (b"}", 1, 1, "'}' can only be used to end an object"),
        (b'{\n  "a": [1,\n', 3, 1, "unexpected end of input"),
        ('{\n  "é": 1 x}'.encode(), 2, 10, "found 'x'"),
        (b"{\r\n\r\n  a: @}", 3, 6, "Unexpected character '@'"),
        (b"{a: 1\r}x: 2", 1, 1, None),  # a lone CR is a line break too: parses, with trailing text
    ],
)
def test_errors_name_line_and_column(text: bytes, line: int, column: int, message: str | None) -> None:
    if message is None:
        doc = parse_document(text)
        assert doc.value == {"a": 1} and position(text, doc.trailing or 0) == (2, 2)
        return
    with pytest.raises(ScalyrJsonError) as err:
        parse(text)
    assert message in err.value.message
    assert (err.value.line, err.value.column) == (line, column), err.value


def test_number_limit_and_deep_nesting_are_errors_not_crashes() -> None:
    with pytest.raises(ScalyrJsonError, match="numeric literal too long"):
        parse(b"[" + b"1" * 101 + b"]")
    with pytest.raises(ScalyrJsonError, match="nested too deeply"):
        parse(b"[" * 100_000)
    assert math.isinf(parse(b"[1e999]")[0])


# --- property tests: standard JSON is a subset, and the extensions do not change the value ---------------

_scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=20)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_values = st.recursive(
    _scalars | _finite,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_standard_json_reads_the_same(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=2), json.dumps(value, ensure_ascii=False)):
        assert parse(text) == value


def _relaxed(value: object, depth: int = 0) -> str:
    """The same value in the agent's style: unquoted keys where possible, no commas between lines, trailing
    commas, comments, concatenated strings."""
    pad = "  " * (depth + 1)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = k if k.isidentifier() and k.isascii() and k not in ("true", "false", "null") else json.dumps(k)
            items.append(f"{pad}{key}: {_relaxed(v, depth + 1)} // {k!r}\n")
        return "{\n" + "".join(items) + pad + "}"
    if isinstance(value, list):
        return "[ /* list */\n" + "".join(f"{pad}{_relaxed(v, depth + 1)},\n" for v in value) + pad + "]"
    if isinstance(value, str) and len(value) > 1:
        return json.dumps(value[:1]) + " + " + json.dumps(value[1:])
    return json.dumps(value)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_relaxed_forms_read_the_same(value: object) -> None:
    assert parse(_relaxed(value)) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_give_a_value_or_a_positioned_error(data: bytes) -> None:
    try:
        parse_document(data)
    except ScalyrJsonError as exc:
        assert 0 <= exc.offset <= len(data)
        assert (exc.line, exc.column) == position(data, exc.offset)
        assert exc.line == 1 + data[: exc.offset].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n")
