"""Which engine runs an operator's regular expression, and whether it could run for ever.

Python's ``re`` backtracks: a rule such as ``(a+)+$`` takes exponential time on a line of a few dozen
characters, and nothing can interrupt it (the match holds the GIL). RE2 runs in time linear in the line, for
the patterns it supports (no backreferences, no lookaround). So:

- a pattern without the shapes that backtrack exponentially (a repetition of something that itself repeats
  with nothing fixed between, or of alternatives that can match the same text) runs on ``re``: the reference
  semantics (Scalyr's rules are Python regexes), and as fast (pyre2 measured 92 MB/s against re's 106 MB/s
  on a redaction that matches every line of a 25 MB access log; google-re2's wrapper 6 MB/s);
- a pattern with such a shape runs on RE2 when the ``re2`` extra is installed (``pip install
  'shipctl[re2]'``, pyre2) and RE2 supports it, and is refused otherwise, with a message saying why and what to
  do, rather than allowed to stall shipping.

The check is a conservative reading of the parsed pattern, not a proof: it flags ``(a+)+``, ``(a*)*``,
``(a|a)+``, ``(\\w+\\s*)+``, not ``(\\d+\\.)+`` (a fixed ``.`` separates the repeats).
"""

from __future__ import annotations

import re
from typing import Any

try:  # sre_parse moved under re in 3.11 and warns when imported by its old name
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse  # type: ignore[no-redef]

_re2: Any = None
_re2_checked = False


def _engine() -> Any:
    """The re2 module (pyre2), or None when the extra is not installed."""
    global _re2, _re2_checked
    if not _re2_checked:
        _re2_checked = True
        try:
            import re2

            _re2 = re2 if hasattr(re2, "FallbackPattern") else None  # pyre2, not google-re2's module
        except ImportError:
            _re2 = None
    return _re2


class Unsafe(ValueError):
    """A pattern that can backtrack for ever on ``re`` and cannot run on RE2 here."""


def compile(text: str) -> Any:
    """``text`` compiled. On ``re`` (the reference: the Scalyr agent's rules are Python regexes), unless it has a
    shape that backtracks exponentially: then on RE2, or Unsafe when RE2 is not installed or cannot take it.
    re.error for an invalid pattern."""
    compiled = re.compile(text)  # the reference syntax: errors read as Python's
    why = backtracks(text)
    if not why:
        return compiled
    re2 = _engine()
    if re2 is not None:
        fast = re2.compile(text)
        if not isinstance(fast, re2.FallbackPattern):
            return fast
        hint = "RE2 cannot run this pattern (it has a backreference or lookaround)"
    else:
        hint = "install the re2 extra (pip install 'shipctl[re2]') to run it in linear time"
    raise Unsafe(f"{why}: it can take exponential time on some lines; rewrite it, or {hint}")


def module_of(pattern: Any) -> Any:
    """The module that compiled ``pattern`` (re, or re2), to compile variants of it the same way."""
    return re if isinstance(pattern, re.Pattern) else _engine()


def engine(pattern: Any) -> str:
    """ "re2" or "re", for check-config."""
    return "re" if isinstance(pattern, re.Pattern) else "re2"


_REPEATS = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT)


def backtracks(text: str) -> str | None:
    """Why the pattern can backtrack exponentially on ``re``, or None."""
    try:
        tree = sre_parse.parse(text)
    except re.error:
        return None
    return _scan(list(tree))


def _scan(items: list[Any]) -> str | None:
    for op, av in items:
        if op in _REPEATS:
            _low, high, body = av
            body = list(body)
            if high == sre_parse.MAXREPEAT or high > 16:
                if _only_repeats(body):
                    return "a repetition of something that itself repeats (like (a+)+)"
                if _overlapping_branch(body):
                    return "a repetition of alternatives that can match the same text (like (a|a)+)"
            found = _scan(body)
            if found:
                return found
        elif op == sre_parse.SUBPATTERN:
            found = _scan(list(av[-1]))
            if found:
                return found
        elif op == sre_parse.BRANCH:
            for alt in av[1]:
                found = _scan(list(alt))
                if found:
                    return found
    return None


def _unwrap(items: list[Any]) -> list[Any]:
    while len(items) == 1 and items[0][0] == sre_parse.SUBPATTERN:
        items = list(items[0][1][-1])
    return items


def _only_repeats(body: list[Any]) -> bool:
    """The repeated body has an unbounded repeat and nothing that must match a fixed character besides."""
    body = _unwrap(body)
    has_repeat = False
    for op, av in body:
        if op in _REPEATS:
            if av[1] == sre_parse.MAXREPEAT or av[1] > 16:
                has_repeat = True
            elif av[0] > 0:
                return False
        elif op == sre_parse.SUBPATTERN:
            if not _only_repeats(list(av[-1])):
                return False
            has_repeat = True
        elif op in (sre_parse.AT,):  # anchors match no character
            continue
        else:
            return False
    return has_repeat


def _overlapping_branch(body: list[Any]) -> bool:
    body = _unwrap(body)
    if len(body) != 1 or body[0][0] != sre_parse.BRANCH:
        return False
    firsts = [_first(list(alt)) for alt in body[0][1][1]]
    seen: set[Any] = set()
    for f in firsts:
        if f is None or f in seen:
            return True  # an alternative that can start anywhere, or two that start alike
        seen.add(f)
    return False


def _first(items: list[Any]) -> Any:
    """A hashable description of what the alternative's first character must be, or None when anything."""
    items = _unwrap(items)
    if not items:
        return None
    op, av = items[0]
    if op == sre_parse.LITERAL:
        return ("lit", av)
    if op == sre_parse.IN:
        return ("in", tuple(av))
    return None
