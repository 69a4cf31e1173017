"""``rename_logfile``: the name a log's events carry in their ``logfile`` attribute instead of the file's path,
with the Scalyr agent's rules (scalyr_agent/log_processing.py, ``LogMatcher.__rename_log_file`` and the
attributes set in ``find_matches``):

- a string is a ``string.Template`` over the matched path: ``$BASENAME`` (``app.log``), ``$BASENAME_NO_EXT``
  (``app``) and ``$PATH1``, ``$PATH2``, ... its components (``/var/log/app.log``: ``var``, ``log``,
  ``app.log``); ``$$`` is a literal ``$``;
- a table ``{match, replacement}`` is ``re.sub(match, replacement, path)`` (``\\1`` and ``\\g<name>`` refer
  to groups);
- a path the rule cannot rename keeps its own name: a ``$PATH5`` of a shorter path with a warning (in
  shipctl's log, as the agent's), a ``match`` that does not match silently (the agent warns every 10 minutes);
- the events get ``logfile`` = the new name unless the log's attributes set ``logfile`` or ``filename``
  themselves, and ``original_file`` = the path when the name changed, unless the attributes set it or the
  log has ``rename_no_original`` (the agent looks only at whether that key is present).

The sinks take ``logfile`` from the events' attributes when there is one (sinks/scalyr.py).
"""

from __future__ import annotations

import os
import re
import string
from typing import Any

from shipctl.records import record

_FIELD = re.compile(r"BASENAME|BASENAME_NO_EXT|PATH[1-9][0-9]*")


@record(frozen=True)
class RenameRule:
    """``rename_logfile = { match = "...", replacement = "..." }``."""

    match: re.Pattern[str]
    replacement: str


def is_field(name: str) -> bool:
    """A template placeholder of rename_logfile (not an import_vars reference in a TOML config)."""
    return bool(_FIELD.fullmatch(name))


def check(value: Any) -> str | None:
    """Why ``value`` can never rename a path (an error text), or None."""
    if isinstance(value, str):
        t = string.Template(value)
        if not t.is_valid():
            return f"invalid $ placeholder in {value!r} (write $$ for a literal $)"
        bad = [n for n in t.get_identifiers() if not _FIELD.fullmatch(n)]
        if bad:
            return f"unknown placeholder ${bad[0]} (expected $BASENAME, $BASENAME_NO_EXT or $PATH1, $PATH2, ...)"
    elif isinstance(value, RenameRule):
        try:
            value.match.sub(value.replacement, "")  # parses the template even without a match
        except (re.error, IndexError) as exc:
            return f"invalid replacement {value.replacement!r}: {exc}"
    return None


def _components(path: str) -> list[str]:
    """The path's components as the agent splits them: ``/var/log/app.log`` gives var, log, app.log (the root
    is not one); a relative path's first directory is kept."""
    parts: list[str] = []
    while True:
        head, tail = os.path.split(path)
        if head == path:  # the root, or nothing left
            break
        if tail:
            parts.append(tail)
            path = head
            continue
        if head:  # "dir/": a trailing slash ends the split at "dir"
            parts.append(head)
        break
    parts.reverse()
    return parts


def renamed(path: str, rule: str | RenameRule) -> tuple[str, str | None]:
    """The new name of ``path``, and why it kept its own name (None when the rule applied)."""
    if isinstance(rule, str):
        values = {f"PATH{i}": part for i, part in enumerate(_components(path), 1)}
        base = os.path.basename(path)
        values["BASENAME"] = base
        values["BASENAME_NO_EXT"] = os.path.splitext(base)[0]
        try:
            return string.Template(rule).substitute(values), None
        except KeyError as exc:
            return path, f"rename_logfile {rule!r}: {path} has no ${exc.args[0]}; its own name is used"
        except ValueError as exc:
            return path, f"rename_logfile {rule!r}: {exc}; its own name is used"
    try:
        new = rule.match.sub(rule.replacement, path)
    except (re.error, IndexError) as exc:
        return path, f"rename_logfile: {exc}; its own name is used"
    return new, None  # unchanged when match does not match: the agent warns every 10 min; a run is quieter


def attributes(attrs: dict[str, Any], path: str, rule: str | RenameRule, no_original: bool) -> dict[str, Any]:
    """``attrs`` with ``logfile`` (and ``original_file``) for the events of ``path`` under ``rule``."""
    new, _ = renamed(path, rule)
    out = dict(attrs)
    if "logfile" not in out and "filename" not in out:
        out["logfile"] = new
    if "original_file" not in out and new != path and not no_original:
        out["original_file"] = path
    return out
