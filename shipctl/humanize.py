"""Numbers as people write and read them: sizes with units (``100M``, ``1.5 GiB``) and counted nouns
("1 redaction", "2 batches"). No rich here, so the quiet paths can use it without loading a renderer."""

from __future__ import annotations

import math
import re

# Sizes are binary throughout: a person reads MiB in status and the summaries, and writes 100M, 100MiB or
# 100MB on the command line or in the config for the same 100 * 2**20 bytes (shipctl's budgets and batch
# sizes are about memory and disk, where a decimal "MB" would only add a second meaning to keep apart).
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
SIZE_HELP = "a number of bytes, or with a unit: 512K, 100M, 2G (also KiB/MiB/GiB or KB/MB/GB: all binary)"


def parse_size(text: str | int) -> int:
    """Bytes from ``"100M"``, ``"100MiB"``, ``"1.5G"``, ``"4096"`` (``B`` optional; K/M/G/T are powers of
    1024). Raises ValueError naming what was expected."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"expected {SIZE_HELP}, got {text}")
        return text
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise ValueError(f"expected {SIZE_HELP}, got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(value):  # hundreds of digits: a float overflows, and int() of it would raise
        raise ValueError(f"expected {SIZE_HELP}, got {text!r} (too large)")
    if value != int(value) and not m.group(2):
        raise ValueError(f"expected a whole number of bytes, got {text!r}")
    return int(value)


def size(n: int | float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``, ``3.2 GiB``: one way of showing sizes everywhere."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # not reached


def age(seconds: float | None) -> str:
    """``45s``, ``12m``, ``5h``, ``3d``: a span in its largest whole unit (below 2 of the next one); ``-`` when
    unknown. A negative span (a clock set back) is shown as ``0s``."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


_IRREGULAR = {"batch": "batches", "entry": "entries", "process": "processes"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 redaction``, ``2 redactions``, ``0 batches``."""
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = _IRREGULAR.get(noun) or noun + ("es" if noun.endswith(("ch", "sh", "s", "x")) else "s")
    return f"{count} {many}"
