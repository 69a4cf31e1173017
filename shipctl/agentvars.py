"""``import_vars`` in an agent.json (and its fragments) with the Scalyr agent's rules, not shipctl's TOML ones.

What the agent does (scalyr_agent/configuration.py: ``import_shell_variables`` and the ``perform_*_substitution``
functions, called by ``__perform_substitutions`` once per file), replicated here:

- Per file: a file's ``import_vars`` apply to that file's strings only. A fragment does not see the main
  file's variables, nor the main file a fragment's.
- An entry is ``"NAME"`` (default ``""``) or ``{var: "NAME", default: "..."}`` (both keys required). An
  environment variable that is unset *or empty* gives the default. A name listed twice: the last entry wins.
- Every string value of the file (keys are not touched), at any depth, is rewritten by plain text
  replacement: for each variable, in the order of ``import_vars`` (where a name first appears), every
  occurrence of ``$NAME`` becomes its value. There is no ``${NAME}`` form and no word boundary, so:
  ``$FOOBAR`` with ``FOO`` listed before ``FOOBAR`` becomes FOO's value followed by ``BAR``; with ``FOOBAR``
  listed first it becomes FOOBAR's value; ``${FOO}`` stays as written; and a value that itself holds
  ``$OTHER`` is rewritten again by a later variable ``OTHER``.
- It happens before any type check, so ``"$X"`` works in a boolean or number field (``"true"``, ``"30"``).

Secrets: the values of variables named like one (``*_KEY``, ``*PASSWORD*``, ...; schema.is_secret_key) or
substituted under a secret key (``api_key``, ``hash_salt``, ...) are masked wherever shipctl shows text, as for
TOML configs.

For ``config convert``: each substituted string is remembered with a TOML equivalent using ``${NAME}``
references (``templates``), when one exists: not when a value was rewritten by a later variable, nor when the
variable's name is not a shell name or its default differs between two files.
"""

from __future__ import annotations

import os
import re
from dataclasses import field
from typing import Any

from shipctl.records import record
from shipctl.schema import Where, describe, is_secret_key

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@record
class Template:
    value: str  # the string as substituted (kept: its id() is the key in AgentVars.templates)
    text: str  # the same with ${NAME} references, for a TOML file
    names: tuple[str, ...]


@record
class AgentVars:
    """What the substitutions of one load found, across its files."""

    imported: dict[str, str] = field(default_factory=dict)  # name -> value (every file's)
    secret_names: set[str] = field(default_factory=set)
    defaults: dict[str, str | None] = field(default_factory=dict)  # name -> its default; None: differs by file
    templates: dict[int, Template] = field(default_factory=dict)
    secret_strings: set[str] = field(default_factory=set)  # substituted strings under a secret key

    @property
    def secret_values(self) -> tuple[str, ...]:
        values = {self.imported[n] for n in self.secret_names} | self.secret_strings
        return tuple(sorted(v for v in values if len(v) >= 4))

    def template(self, value: Any) -> Template | None:
        """The TOML form of a substituted string (this very object), if it has one."""
        t = self.templates.get(id(value))
        if t is None or t.value is not value or any(self.defaults.get(n) is None for n in t.names):
            return None  # another string, or a variable whose default differs between files
        return t

    def apply(self, content: dict[str, Any], where: Where) -> dict[str, Any]:
        """``content`` (one file) with its own import_vars substituted, as the agent does."""
        subs, defaults = read_import_vars(content.get("import_vars"), where.key("import_vars"))
        for name, value in subs.items():
            self.imported[name] = value
            if is_secret_key(name):
                self.secret_names.add(name)
            if name not in self.defaults:
                self.defaults[name] = defaults[name]
            elif self.defaults[name] != defaults[name]:
                self.defaults[name] = None
        if not subs:
            return content
        return self._walk(content, subs, where)

    def _walk(self, value: Any, subs: dict[str, str], where: Where) -> Any:
        if isinstance(value, str):
            return self._string(value, subs, where) if "$" in value else value
        if isinstance(value, dict):
            return {k: self._walk(v, subs, where.key(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, subs, where.index(i)) for i, v in enumerate(value)]
        return value

    def _string(self, s: str, subs: dict[str, str], where: Where) -> str:
        out = substitute(s, subs)
        if out == s:
            return s
        used = [n for n in subs if f"${n}" in s]
        if where.secret:
            self.secret_names.update(used)
            self.secret_strings.add(out)  # whole: a value rewritten by a later variable is no variable's value
        text = _template(s, subs, out)
        # "" and 1-character strings are shared objects: their id() says nothing.
        if text is not None and len(out) > 1 and all(_NAME.fullmatch(n) for n in text[1]):
            self.templates[id(out)] = Template(out, text[0], text[1])
        return out


def read_import_vars(value: Any, where: Where) -> tuple[dict[str, str], dict[str, str]]:
    """One file's variables: name -> value (from the environment, or the default when unset or empty), and
    name -> default; in the order of import_vars (where a name first appears), the last entry's value."""
    subs: dict[str, str] = {}
    defaults: dict[str, str] = {}
    if value is None:
        return subs, defaults
    if not isinstance(value, list):
        raise where.error(f"expected an array of names or {{var, default}} objects, got {describe(value)}")
    for i, entry in enumerate(value):
        ew = where.index(i)
        if isinstance(entry, dict):
            for k in ("var", "default"):
                if k not in entry:
                    raise ew.key(k).error("missing required key (the agent needs both var and default)")
            name, default = _text(entry["var"], ew.key("var")), _text(entry["default"], ew.key("default"))
            name_where = ew.key("var")
        else:
            name, default, name_where = _text(entry, ew), "", ew
        if not name:
            # The agent would replace every "$" in the file with the value: surely not what was meant.
            raise name_where.error("expected an environment variable name, got an empty string")
        subs[name] = os.environ.get(name) or default
        defaults[name] = default
    return subs, defaults


def _text(v: Any, w: Where) -> str:
    """A string, as the agent's JsonObject reads one (a number is its text)."""
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise w.error(f"expected a string, got {describe(v, secret=w.secret)}")


def substitute(s: str, subs: dict[str, str]) -> str:
    """The agent's perform_str_substitution: plain replacement of "$NAME", one variable after another."""
    for name, value in subs.items():
        s = s.replace(f"${name}", value)
    return s


def _template(s: str, subs: dict[str, str], expected: str) -> tuple[str, tuple[str, ...]] | None:
    """``s`` with each replaced "$NAME" written ``${NAME}``, or None when that would not read back to
    ``expected`` (a value rewritten by a later variable) or when the text left as written holds a "$NAME" that
    TOML would substitute. The replaced spans are marked with NUL-delimited tokens first, so that a later
    variable cannot match inside an earlier one's mark."""
    if "\0" in s:
        return None
    marked = s
    order = list(subs)
    for i, name in enumerate(order):
        marked = marked.replace(f"${name}", f"\0{i}\0")
    parts = marked.split("\0")
    value_parts, text_parts, used = [], [], []
    for j, part in enumerate(parts):
        if j % 2:
            name = order[int(part)]
            value_parts.append(subs[name])
            text_parts.append("${" + name + "}")
            used.append(name)
        else:
            if re.search(r"\$(?:\{|[A-Za-z_])", part):
                return None  # literal "$X" / "${" would be read as a reference by the TOML loader
            value_parts.append(part)
            text_parts.append(part)
    if "".join(value_parts) != expected:
        return None
    return "".join(text_parts), tuple(dict.fromkeys(used))
