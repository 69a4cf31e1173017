"""Turn TOML tables into frozen dataclasses, rejecting unknown keys and naming what was expected.

Used by config.py for the core sections and by monitors and sinks for their own options, so that every
config mistake reads the same: ``<file>: <key path>: expected <what>, got <value>``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from shipctl import records
from shipctl.errors import ConfigError

T = TypeVar("T")

# Bounds on any number in a config: beyond them a value is a mistake, and would overflow the clocks, waits and
# buffer sizes it reaches (a C long, a timeout in ns) with a traceback instead of a message.
MAX_INT = 2**53
MAX_FLOAT = 1e9

_MISSING = dataclasses.MISSING


def field(
    default: Any = _MISSING,
    *,
    aliases: tuple[str, ...] = (),
    regex: bool = False,
    check: Callable[[Any], str | None] | None = None,
    secret: bool = False,
    doc: str = "",
) -> Any:
    """A dataclass field with config metadata: alternative key names, regex compilation, a value check
    returning an error text, and whether the value is a secret (masked when shown)."""
    meta = {"aliases": aliases, "regex": regex, "check": check, "secret": secret, "doc": doc}
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples / MappingProxyType for frozen defaults")
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


SECRET_KEYS = ("api_key", "apikey", "token", "password", "passwd", "secret", "credential", "hash_salt")

# Values of imported environment variables, masked wherever config errors would show them. Set afresh by
# each config load: an error is raised far from where the variable was substituted (plugins validate their
# own options), so the values cannot be passed along.
_secret_values: tuple[str, ...] = ()


def set_secret_values(values: Any) -> None:
    global _secret_values
    # Longest first, so a secret containing a shorter one is masked whole; very short values are not secrets.
    _secret_values = tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))


def mask(value: str) -> str:
    """Show at most the last 4 characters of a secret, and only of a long one."""
    return "****" + value[-4:] if len(value) >= 12 else "****"


def is_secret_key(key: str) -> bool:
    """api_key, dbPassword, SCALYR_API_KEY, WRITE_KEY, ...: names that hold secrets."""
    low = key.lower()
    return any(s in low for s in SECRET_KEYS) or low.endswith(("_key", "-key"))


def scrub(text: str) -> str:
    """Mask every imported variable's value in ``text`` (also in its repr-escaped form), and any piece of
    one of 8 characters or more (a reply cut short may hold half a key)."""
    for s in _secret_values:
        if s in text:
            text = text.replace(s, mask(s))
        escaped = repr(s)[1:-1]
        if escaped != s and escaped in text:
            text = text.replace(escaped, mask(s))
        text = mask_fragments(text, s)
    return text


FRAGMENT = 8  # the shortest piece of a secret that is masked wherever it appears


def mask_fragments(text: str, secret: str) -> str:
    """Replace every run of ``text`` that is a piece of ``secret`` of at least FRAGMENT characters with
    "****". Finds each such run by its first FRAGMENT characters, then extends it as far as it matches."""
    if len(secret) < FRAGMENT or len(text) < FRAGMENT:
        return text
    grams: dict[str, list[int]] = {}
    for i in range(len(secret) - FRAGMENT + 1):
        grams.setdefault(secret[i : i + FRAGMENT], []).append(i)
    out: list[str] = []
    pos = 0  # text before pos is settled
    i = 0
    while i <= len(text) - FRAGMENT:
        starts = grams.get(text[i : i + FRAGMENT])
        if not starts:
            i += 1
            continue
        end = i + FRAGMENT
        for j in starts:  # the longest run of the secret from here
            k = FRAGMENT
            while i + k < len(text) and j + k < len(secret) and text[i + k] == secret[j + k]:
                k += 1
            end = max(end, i + k)
        out.append(text[pos:i])
        out.append("****")
        pos = i = end
    out.append(text[pos:])
    return "".join(out)


def describe(value: Any, *, secret: bool = False) -> str:
    """A value for an error message: short, and never a secret (masked before it is cut short)."""
    if secret and value is not None and not isinstance(value, bool):
        return repr(mask(str(value)))
    text = scrub(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is re.Pattern or origin is re.Pattern:
        return "a regular expression string"
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        return "a table"
    if records.is_dataclass(tp):
        return "a table"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    return getattr(tp, "__name__", str(tp))


_BARE_KEY = re.compile(r"[A-Za-z0-9_.-]+")


class Where:
    """Where a value came from: file and key path, for error messages."""

    def __init__(self, file: str, path: str = "", *, secret: bool = False) -> None:
        self.file = file
        self.path = path
        self.secret = secret  # the value here is a secret (a secret key, or inside one)

    def key(self, name: str) -> Where:
        # Quote odd TOML keys so the path stays one unambiguous line ("a\nb" would split the message).
        shown = name if _BARE_KEY.fullmatch(name) else json.dumps(name)
        return Where(
            self.file, f"{self.path}.{shown}" if self.path else shown, secret=self.secret or is_secret_key(name)
        )

    def index(self, i: int) -> Where:
        return Where(self.file, f"{self.path}[{i}]", secret=self.secret)

    def error(self, message: str) -> ConfigError:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return ConfigError(f"{where}: {scrub(message)}")  # not the file name: a variable may hold a path

    def __str__(self) -> str:
        return f"{self.file}: {self.path}" if self.path else self.file


def convert(tp: Any, value: Any, where: Where, *, regex: bool = False) -> Any:
    """Check and convert one value against a type annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        table_error: ConfigError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, where, regex=regex)
            except ConfigError as exc:
                errors.append(exc)
                if isinstance(value, dict) and records.is_dataclass(arg):
                    table_error = exc  # a table for a table type: its own error says more than "expected ..."
        if isinstance(value, dict) and table_error is not None:
            raise table_error
        raise where.error(f"expected {_type_name(tp)}, got {describe(value, secret=where.secret)}")
    if tp is typing.Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise where.error(f"expected a number of at most {MAX_INT}, got {describe(value)}")
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value) or abs(value) > MAX_FLOAT:
                # inf seconds of timeout or budget overflow every clock and wait they reach
                raise where.error(f"expected a finite number of at most {MAX_FLOAT:g}, got {describe(value)}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            if regex:
                compile_regex(value, where)
            return value
    elif tp is re.Pattern or origin is re.Pattern:
        if isinstance(value, str):
            return compile_regex(value, where)
    elif origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            value = [value]  # a single string where a list is expected is a common, harmless slip
        if isinstance(value, list):
            return tuple(convert(item_tp, v, where.index(i), regex=regex) for i, v in enumerate(value))
    elif origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if isinstance(value, dict):
            args = typing.get_args(tp)
            val_tp = args[1] if len(args) == 2 else typing.Any
            return types.MappingProxyType({str(k): convert(val_tp, v, where.key(str(k))) for k, v in value.items()})
    elif records.is_dataclass(tp):
        if isinstance(value, dict):
            return load(tp, value, where)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {tp!r}")
    raise where.error(f"expected {_type_name(tp)}, got {describe(value, secret=where.secret)}")


def compile_regex(text: str, where: Where) -> re.Pattern[str]:
    """On ``re``, or RE2 for a pattern that could backtrack for ever (see shipctl/regex.py)."""
    from shipctl import regex

    try:
        return regex.compile(text)  # type: ignore[no-any-return]
    except re.error as exc:
        raise where.error(f"invalid regular expression {describe(text, secret=where.secret)}: {exc}") from None
    except regex.Unsafe as exc:
        raise where.error(f"regular expression {describe(text, secret=where.secret)}: {exc}") from None


def load(cls: type[T], table: Mapping[str, Any], where: Where, *, ignore: tuple[str, ...] = ()) -> T:
    """Build dataclass ``cls`` from ``table``. Unknown keys are errors that list the known ones."""
    if not isinstance(table, Mapping):
        raise where.error(f"expected a table, got {describe(table)}")
    hints = typing.get_type_hints(cls)
    names: dict[str, dataclasses.Field[Any]] = {}
    for f in records.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        names[f.name] = f
        for alias in f.metadata.get("aliases", ()):
            names[alias] = f
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in ignore:
            continue
        f = names.get(key)
        if f is None:
            known = ", ".join(sorted(n for n in names if n not in ignore))
            raise where.key(key).error(f"unknown key (expected one of: {known})")
        if f.name in kwargs:
            raise where.key(key).error(f"given twice (also as another spelling of {f.name!r})")
        sub = where.key(key)
        if f.metadata.get("secret"):
            sub.secret = True
        if isinstance(value, str) and f.name.endswith("_bytes") and hints[f.name] is int:
            value = _size(value, sub)  # every *_bytes setting also takes "100M", "512KiB", ...
        converted = convert(hints[f.name], value, sub, regex=f.metadata.get("regex", False))
        check = f.metadata.get("check")
        if check is not None:
            problem = check(converted)
            if problem:
                raise sub.error(f"{problem}, got {describe(value, secret=sub.secret)}")
        kwargs[f.name] = converted
    for f in records.fields(cls):  # type: ignore[arg-type]
        if f.init and f.name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING:
            raise where.key(f.name).error(f"missing required key ({_type_name(hints[f.name])})")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise where.error(str(exc)) from None


def _size(text: str, where: Where) -> int:
    from shipctl.humanize import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise where.error(str(exc)) from None


def secret_fields(cls: type) -> set[str]:
    return {f.name for f in records.fields(cls) if f.metadata.get("secret")}


def positive(value: float) -> str | None:
    return None if value > 0 else "expected a number above 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "expected a number of 0 or more"


def between(low: float, high: float) -> Callable[[float], str | None]:
    def shown(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    def check(value: float) -> str | None:
        return None if low <= value <= high else f"expected a number from {shown(low)} to {shown(high)}"

    return check


def non_empty(value: str) -> str | None:
    return None if value.strip() else "expected a non-empty string"


def http_url(value: str) -> str | None:
    """An http:// or https:// URL with a host and a valid port."""
    from urllib.parse import urlsplit

    if any(c in value for c in "\r\n\0 "):
        return "expected a URL, got one with spaces or line breaks"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"expected an http:// or https:// URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    return None


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else "expected one of " + ", ".join(repr(c) for c in choices)

    return check
