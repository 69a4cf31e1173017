"""Which bytes of a piece of text fall outside a set, found at C speed without copying the piece.

The sinks' whole-piece JSON encoders escape quotes and backslashes with ``replace`` and need to know whether
anything else (a control character) is there, which is almost never. ``translate`` through a table that
changes only the bytes outside the set answers that in one pass: CPython hands back the very same object when
a translation changes nothing (measured: 0.049 against 0.072 CPU-s for 116 MB of access log, against a
``translate`` that deletes the plain bytes). Where that did not hold, the exact answer is computed each time:
slower, still right.
"""

from __future__ import annotations


class ByteClass:
    """The bytes in ``plain``; ``outside(data)`` gives those of ``data`` that are not."""

    __slots__ = ("_changes", "_plain")

    def __init__(self, plain: bytes) -> None:
        self._plain = plain
        keep = set(plain)
        # Every byte outside the set is mapped to a different one; those inside to themselves.
        self._changes = bytes(c if c in keep else (c + 1) % 256 for c in range(256))

    def outside(self, data: bytes) -> bytes:
        """The bytes of ``data`` outside the set, in order (usually empty)."""
        if data.translate(self._changes) is data:
            return b""
        return data.translate(None, self._plain)


# Printable ASCII and the newline between lines: text of nothing else needs only '"' and '\\' escaped.
PRINTABLE_ASCII = ByteClass(bytes(range(0x20, 0x7F)) + b"\n")
# What needs no escaping in a JSON string of valid UTF-8, but for '"' and '\\': all but control characters.
NOT_CONTROL = ByteClass(bytes(range(0x20, 0x100)) + b"\n")
