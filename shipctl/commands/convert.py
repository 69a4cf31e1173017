"""``shipctl config convert agent.json``: the equivalent shipctl TOML, so a Scalyr user can move to the native
format. Built from the same mapping the loader uses (shipctl/agentjson.py), so the output reads back to the same
resolved config. A key without a shipctl equivalent becomes a comment where it was. An API key written in the
file is not printed: the output reads it from $SCALYR_API_KEY instead (the agent reads that variable too)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipctl import agentjson
from shipctl.errors import ConfigError

_BARE = re.compile(r"[A-Za-z0-9_-]+")
KEY_VAR = "SCALYR_API_KEY"


@dataclass
class ConvertResult:
    source: str
    files: list[str]
    toml: str
    warnings: list[str] = field(default_factory=list)


def convert(file: str) -> ConvertResult:
    path = Path(os.path.abspath(os.path.expanduser(file)))
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not agentjson.is_agent_json(path):
        raise ConfigError(f"{path}: not a Scalyr agent.json (expected a .json file, or one beginning with '{{')")
    mapped = agentjson.load(path)
    from shipctl.config import _merge

    _merge(path, mapped.files, env_optional=True)  # a config that would not load is an error now, not later
    return ConvertResult(str(path), mapped.read, _document(mapped), list(mapped.warnings))


def _document(mapped: agentjson.Mapped) -> str:
    notes = mapped.notes
    main = mapped.files[0][1]
    variables: list[Any] = []
    attrs: dict[str, Any] = {}
    logs: list[dict[str, Any]] = []
    monitors: list[dict[str, Any]] = []
    top_notes: list[str] = []
    for _path, data in mapped.files:
        names = {v["var"] for v in variables}
        variables += [v for v in data.get("import_vars", []) if v["var"] not in names]
        attrs.update(data.get("server_attributes", {}))
        logs += data.get("logs", [])
        monitors += data.get("monitors", [])
        top_notes += notes.get(id(data), [])
    sinks = [dict(s) for s in main.get("sinks", [])]
    sink_notes: list[list[str]] = [notes.get(id(s), []) for s in main.get("sinks", [])]
    for s, sn in zip(sinks, sink_notes, strict=True):
        key = s.get("api_key")
        if isinstance(key, str) and "$" not in key:
            s["api_key"] = f"${KEY_VAR}"
            if KEY_VAR not in {v["var"] for v in variables}:
                variables.append({"var": KEY_VAR})
            sn.append(f"api_key: the key written in agent.json is not printed; set ${KEY_VAR} to it")

    out = [f"# shipctl config converted from {mapped.read[0]} by `shipctl config convert`."]
    if len(mapped.read) > 1:
        out.append("# Fragments merged in: " + ", ".join(mapped.read[1:]))
    if top_notes:
        out.append("# Keys without a shipctl equivalent:")
        out += [f"#   {n}" for n in top_notes]
    out.append("")
    if variables:
        out.append(_line("import_vars", variables))
    if attrs:
        out.append(f"server_attributes = {_value(attrs)}")
    if main.get("agent"):
        out += ["", "[agent]"] + [f"{_key(k)} = {_value(v)}" for k, v in main["agent"].items()]
    for name, tables in (("logs", logs), ("monitors", monitors), ("sinks", sinks)):
        for i, t in enumerate(tables):
            out += ["", f"[[{name}]]"]
            remarks = list(sink_notes[i]) if name == "sinks" else _notes_in(t, notes)
            out += [f"# {n}" for n in remarks]
            out += [_line(k, v) for k, v in t.items()]
    return "\n".join(out) + "\n"


def _line(k: str, v: Any) -> str:
    """``key = value``; an array of tables one table a line (TOML's inline tables must fit on one)."""
    if isinstance(v, list) and len(v) > 1 and all(isinstance(x, dict) for x in v):
        return f"{_key(k)} = [\n" + "".join(f"  {_value(x)},\n" for x in v) + "]"
    return f"{_key(k)} = {_value(v)}"


def _notes_in(value: Any, notes: dict[int, list[str]]) -> list[str]:
    found = list(notes.get(id(value), []))
    if isinstance(value, dict):
        for v in value.values():
            found += _notes_in(v, notes)
    elif isinstance(value, list):
        for v in value:
            found += _notes_in(v, notes)
    return found


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    # JSON's escapes are TOML's, but TOML also wants DEL escaped (json.dumps leaves it raw).
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if v is None:
        raise ConfigError("a null value has no TOML form")  # the mapping drops nulls; a bug if reached
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
