"""A zlib-format body assembled from pieces deflated at different times.

A request's events are deflated as they are encoded, while the request is filled; its head (which holds the
client time and the declarations of the threads and logs its events refer to) is only known when it is sent.
Raw deflate segments that each end on a sync flush (byte-aligned, not final) concatenate into one valid
stream, and the zlib trailer's Adler-32 of the whole is combined from the pieces' own checksums. A request
then holds its events deflated (~1/6 of their size) instead of as JSON until it is sent, and the JSON is
never joined into one big buffer.

Levels 1-3 use ISA-L when the ``isal`` package is installed: the same stream, 2-4x faster than zlib here (and
its level 1 gives a smaller body than zlib's level 1). It holds the GIL, so compressing in the thread that
encodes costs no parallelism (measured: two threads compressing take as long as one doing both).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

_BASE = 65521  # the largest prime below 2^16: Adler-32's modulus
_isal: Any = None


def _fast() -> Any:
    """ISA-L's zlib module, or the stdlib's if it is missing (a dependency; the same stream, slower). Imported
    on first use: a run with nothing to send does not load it."""
    global _isal
    if _isal is None:
        try:
            from isal import isal_zlib

            _isal = isal_zlib
        except ImportError:
            _isal = zlib
    return _isal


def _module(level: int) -> Any:
    return _fast() if 1 <= level <= 3 else zlib


def adler32(data: bytes, value: int = 1) -> int:
    return _fast().adler32(data, value)


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """The Adler-32 of A + B from those of A and B and the length of B (zlib's ``adler32_combine``)."""
    rem = len2 % _BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _BASE
    sum1 += (adler2 & 0xFFFF) + _BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _BASE - rem
    sum1 %= _BASE
    sum2 %= _BASE
    return sum1 | (sum2 << 16)


def _header(level: int) -> bytes:
    """The two zlib header bytes zlib itself writes for ``level`` (window 32 KiB, no dictionary)."""
    flevel = 0 if level <= 1 else 1 if level <= 5 else 2 if level == 6 else 3
    cmf = 0x78
    flg = flevel << 6
    flg += 31 - (cmf * 256 + flg) % 31
    return bytes((cmf, flg))


class Segment:
    """Raw deflate of data given a piece at a time, with its length and Adler-32."""

    def __init__(self, level: int) -> None:
        self.level = level
        # Made on first use: a request builder is set up before the queue is read, and a pass that finds
        # nothing to send then never loads ISA-L.
        self._z: Any = None
        self._out: list[bytes] = []
        self.length = 0
        self.adler = 1

    def _compressor(self) -> Any:
        if self._z is None:
            self._z = _module(self.level).compressobj(self.level, zlib.DEFLATED, -15)
        return self._z

    def add(self, data: bytes) -> None:
        self.adler = adler32(data, self.adler)
        self.length += len(data)
        out = self._compressor().compress(data)
        if out:
            self._out.append(out)

    def close(self, final: bool = False) -> bytes:
        """The segment's bytes: byte-aligned and open (sync flush), or the stream's last (``final``)."""
        self._out.append(self._compressor().flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))
        data = b"".join(self._out)
        self._out = []
        return data


class Deflated:
    """A closed segment: its bytes, and the length and Adler-32 of what it holds."""

    __slots__ = ("adler", "data", "length")

    def __init__(self, data: bytes, length: int, adler: int) -> None:
        self.data, self.length, self.adler = data, length, adler

    @classmethod
    def of(cls, segment: Segment) -> Deflated:
        return cls(segment.close(), segment.length, segment.adler)

    def inflate(self) -> bytes:
        """The data back (for showing a request; not on the hot path)."""
        return zlib.decompressobj(-15).decompress(self.data)


def zlib_body(level: int, head: bytes, middle: Deflated, tail: bytes) -> bytes:
    """One zlib stream of ``head + middle + tail``, where only the small head and tail are deflated now."""
    first = Segment(level)
    first.add(head)
    last = Segment(level)
    last.add(tail)
    check = adler32_combine(first.adler, middle.adler, middle.length)
    check = adler32_combine(check, last.adler, last.length)
    return b"".join((_header(level), first.close(), middle.data, last.close(final=True), struct.pack(">I", check)))
