"""``scalyr_agent.json_lib``: the agent's JSON containers (shipctl/scalyrapi/config.py); ``parse`` and
``serialize`` use standard JSON."""

import json
from typing import Any

from shipctl.scalyrapi.config import (
    ArrayOfStrings,
    JsonArray,
    JsonConversionException,
    JsonObject,
    JsonParseException,
    SpaceAndCommaSeparatedArrayOfStrings,
    to_json_types,
)


def parse(text: str) -> Any:
    try:
        return to_json_types(json.loads(text))
    except ValueError as exc:
        raise JsonParseException(str(exc)) from None


def serialize(value: Any, output: Any = None, use_fast_encoding: bool = False) -> Any:
    text = json.dumps(value, separators=(",", ":"))
    if output is not None:
        output.write(text)
        return None
    return text


__all__ = [
    "ArrayOfStrings",
    "JsonArray",
    "JsonConversionException",
    "JsonObject",
    "JsonParseException",
    "SpaceAndCommaSeparatedArrayOfStrings",
    "parse",
    "serialize",
]
