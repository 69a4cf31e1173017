"""``shipctl config convert agent.json``: the equivalent shipctl TOML, so a Scalyr user can move to the native
format. Built from the same mapping the loader uses (shipctl/agentjson.py), so the output reads back to the same
resolved config. A key without a shipctl equivalent becomes a comment where it was. An API key written in the
file is not printed: the output reads it from $SCALYR_API_KEY instead (the agent reads that variable too)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any

from shipctl import agentjson
from shipctl.agentvars import AgentVars
from shipctl.errors import ConfigError
from shipctl.records import record
from shipctl.schema import is_secret_key

_BARE = re.compile(r"[A-Za-z0-9_-]+")
KEY_VAR = "SCALYR_API_KEY"
SALT_VAR = "SCALYR_HASH_SALT"


class _Unwritable(ValueError):
    """A value TOML cannot hold, with the keys down to it."""

    def __init__(self, what: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(what)
        self.what, self.keys = what, keys

    def under(self, key: str) -> _Unwritable:
        return _Unwritable(self.what, (key, *self.keys))


@record
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

    _merge(
        path, mapped.files, env_optional=True, substitute=False
    )  # a config that would not load is an error now, not later
    try:
        text = _document(mapped)
    except _Unwritable as exc:
        # JSON numbers have no size limit and the agent sends them as they are; TOML's integers stop at 64
        # bits, so writing one anyway would give a file no TOML reader (shipctl's included) accepts.
        raise ConfigError(
            f"{path}: {'.'.join(exc.keys)}: {exc.what}; config convert cannot write it: quote it in agent.json"
            " to send it as a string, or keep using agent.json (shipctl reads it as it is)"
        ) from None
    return ConvertResult(str(path), mapped.read, text, list(mapped.warnings))


def _document(mapped: agentjson.Mapped) -> str:
    notes = dict(mapped.notes)
    t = _Templater(mapped.vars, notes)
    main = t.walk(mapped.files[0][1])
    variables: list[Any] = []
    attrs: dict[str, Any] = {}
    logs: list[dict[str, Any]] = []
    monitors: list[dict[str, Any]] = []
    top_notes: list[str] = []
    for n, (_path, raw) in enumerate(mapped.files):
        data = main if n == 0 else t.walk(raw)
        names = {v["var"] for v in variables}
        variables += [v for v in data.get("import_vars", []) if v["var"] not in names]
        attrs.update(data.get("server_attributes", {}))
        logs += data.get("logs", [])
        monitors += data.get("monitors", [])
        top_notes += notes.get(id(data), [])
    variables += t.variables({v["var"] for v in variables})
    sinks = [dict(s) for s in main.get("sinks", [])]
    sink_notes: list[list[str]] = [list(notes.get(id(s), [])) for s in main.get("sinks", [])]
    for s, sn in zip(sinks, sink_notes, strict=True):
        key = s.get("api_key")
        if mapped.key_env is not None:  # no file sets it: the agent read it from the environment, so does the TOML
            s["api_key"] = f"${mapped.key_env}"
            if mapped.key_env not in {v["var"] for v in variables}:
                variables.append({"var": mapped.key_env})
        elif isinstance(key, str) and "$" not in key:
            s["api_key"] = f"${KEY_VAR}"
            if KEY_VAR not in {v["var"] for v in variables}:
                variables.append({"var": KEY_VAR})
            sn.append(f"api_key: the key written in agent.json is not printed; set ${KEY_VAR} to it")

    logs = [_mask_salts(lg, variables, notes) for lg in logs]
    monitors = [_mask_options(m, variables, notes) for m in monitors]

    out = [f"# shipctl config converted from {mapped.read[0]} by `shipctl config convert`."]
    if len(mapped.read) > 1:
        out.append("# Fragments merged in: " + ", ".join(mapped.read[1:]))
    if top_notes:
        out.append("# Keys without a shipctl equivalent:")
        out += [f"#   {n}" for n in top_notes]
    out += [f"# Note: {n}" for n in t.remarks]
    out.append("")
    variables = [{"var": v["var"]} if "salt" in v else v for v in variables]  # the salt itself is not printed
    if variables:
        out.append(_line("import_vars", variables))
    if attrs:
        out.append(_line("server_attributes", attrs))
    if main.get("agent"):
        out += ["", "[agent]"] + [_within("agent", _line, k, v) for k, v in main["agent"].items()]
    for name, tables in (("logs", logs), ("monitors", monitors), ("sinks", sinks)):
        for i, t in enumerate(tables):
            out += ["", f"[[{name}]]"]
            remarks = list(sink_notes[i]) if name == "sinks" else _notes_in(t, notes)
            out += [f"# {n}" for n in remarks]
            out += [_within(f"{name}[{i}]", _line, k, v) for k, v in t.items()]
    text = "\n".join(out) + "\n"
    secrets = mapped.vars.secret_values if mapped.vars is not None else ()
    if any(v in text for v in secrets):
        # A secret variable's value that could not be written back as a reference (rewritten by a later
        # variable, or joined into a path): masked rather than printed; the line needs editing by hand.
        from shipctl.schema import mask

        for v in sorted(secrets, key=len, reverse=True):  # longest first: a value holding a shorter one goes whole
            text = text.replace(v, mask(v))
        head = "# Note: a secret variable's value is shown masked (****) where no ${NAME} form was possible: edit it"
        text = head + "\n" + text
    return text


class _Templater:
    """Copies of the mapped tables where a string substituted from import_vars is written back as ``${NAME}``
    (shipctl/agentvars.py), so that the TOML keeps reading the environment. Notes follow their tables."""

    def __init__(self, av: AgentVars | None, notes: dict[int, list[str]]) -> None:
        self.av = av
        self.notes = notes
        self.used: dict[str, None] = {}
        self.remarks: list[str] = []

    def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            t = self.av.template(value) if self.av is not None else None
            if t is None:
                return value
            self.used.update(dict.fromkeys(t.names))
            return t.text
        if isinstance(value, dict):
            out: Any = {k: self.walk(v) for k, v in value.items()}
        elif isinstance(value, list):
            out = [self.walk(v) for v in value]
        else:
            return value
        if id(value) in self.notes:
            self.notes[id(out)] = self.notes[id(value)]
        return out

    def variables(self, have: set[str]) -> list[dict[str, str]]:
        """import_vars for the references written. A secret's default written in agent.json is not printed."""
        out = []
        empty_differs = False
        for name in self.used:
            if name in have or self.av is None:
                continue
            default = self.av.defaults.get(name) or ""
            if default and name in self.av.secret_names:
                out.append({"var": name})
                self.remarks.append(f"import_vars: the default of {name} (a secret) is not printed; set ${name}")
                continue
            out.append({"var": name, "default": default})
            empty_differs = empty_differs or bool(default)
        if empty_differs:
            self.remarks.append(
                "import_vars: in TOML a variable set to an empty value reads as empty; in agent.json it gave the"
                " default"
            )
        return out


def _mask_options(mon: dict[str, Any], variables: list[Any], notes: dict[int, list[str]]) -> dict[str, Any]:
    """A secret written in a monitor's options (mysql's database_password, a token in an own monitor's
    config) is not printed either: the TOML reads it from a variable named after the monitor and the key."""
    names = {v["var"] for v in variables}
    remarks: list[str] = []

    def masked(table: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = dict(table)
        for k, v in table.items():
            if isinstance(v, dict):
                out[k] = masked(v, f"{prefix}_{k}")
            elif isinstance(v, str) and v and "$" not in v and is_secret_key(k):
                var = base = re.sub(r"\W", "_", f"{prefix}_{k}").upper()
                n = 1
                while var in names:
                    n += 1
                    var = f"{base}_{n}"
                names.add(var)
                variables.append({"var": var})
                out[k] = f"${var}"
                remarks.append(f"{k}: the value written in agent.json is not printed; set ${var} to it")
        return out

    new = masked(mon, str(mon.get("id", "monitor")))
    if not remarks:
        return mon
    notes[id(new)] = [*notes.get(id(mon), []), *remarks]
    return new


def _mask_salts(log: dict[str, Any], variables: list[Any], notes: dict[int, list[str]]) -> dict[str, Any]:
    """A redaction rule's hash_salt written in agent.json is a secret (whoever has it can test guesses against
    the hashes): like the API key it is not printed, the TOML reads it from a variable instead
    ($SCALYR_HASH_SALT; _2, _3, ... for further distinct salts). A salt that came from a variable stays one."""
    rules = log.get("redaction_rules")
    if not rules or not any(isinstance(r.get("hash_salt"), str) and "$" not in r["hash_salt"] for r in rules):
        return log
    names = {v["var"] for v in variables}
    out_rules = []
    for rule in rules:
        salt = rule.get("hash_salt")
        if not isinstance(salt, str) or "$" in salt or not salt:
            out_rules.append(rule)
            continue
        var = _salt_var(salt, variables, names)
        new = {**rule, "hash_salt": f"${var}"}
        notes[id(new)] = [
            *notes.get(id(rule), []),
            f"hash_salt: the salt written in agent.json is not printed; set ${var} to it",
        ]
        out_rules.append(new)
    copy = {**log, "redaction_rules": out_rules}
    if id(log) in notes:
        notes[id(copy)] = notes[id(log)]
    return copy


def _salt_var(salt: str, variables: list[Any], names: set[str]) -> str:
    """The variable a salt is read from: one per distinct salt, in order of appearance."""
    for v in variables:
        if v.get("salt") == salt:
            return str(v["var"])
    n = sum(1 for v in variables if "salt" in v) + 1
    var = SALT_VAR if n == 1 else f"{SALT_VAR}_{n}"
    while var in names:
        n += 1
        var = f"{SALT_VAR}_{n}"
    names.add(var)
    variables.append({"var": var, "salt": salt})
    return var


def _within(table: str, write: Any, *args: Any) -> str:
    try:
        return str(write(*args))
    except _Unwritable as exc:
        raise exc.under(table) from None


def _line(k: str, v: Any) -> str:
    """``key = value``; an array of tables one table a line (TOML's inline tables must fit on one)."""
    try:
        if isinstance(v, list) and len(v) > 1 and all(isinstance(x, dict) for x in v):
            return f"{_key(k)} = [\n" + "".join(f"  {_within(f'[{i}]', _value, x)},\n" for i, x in enumerate(v)) + "]"
        return f"{_key(k)} = {_value(v)}"
    except _Unwritable as exc:
        raise exc.under(k) from None


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
        if not -(1 << 63) <= v < 1 << 63:
            raise _Unwritable(f"the integer {v} is beyond TOML's 64-bit integers")
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
        return "[" + ", ".join(_within(f"[{i}]", _value, x) for i, x in enumerate(v)) + "]"
    if isinstance(v, dict):
        pairs = (f"{_key(str(k))} = {_within(str(k), _value, x)}" for k, x in v.items())
        return "{ " + ", ".join(pairs) + " }" if v else "{}"
    if v is None:
        raise ConfigError("a null value has no TOML form")  # the mapping drops nulls; a bug if reached
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
