"""The whole-piece escapers' check for bytes that need more than a replace of quotes and backslashes."""

from __future__ import annotations

from shipctl.sinks.byteclass import NOT_CONTROL, PRINTABLE_ASCII, ByteClass


def test_every_byte_is_told_apart() -> None:
    for c in range(256):
        data = b"plain text\n" * 100 + bytes((c,)) + b"more\n"
        printable = 0x20 <= c < 0x7F or c == 0x0A
        assert PRINTABLE_ASCII.outside(data) == (b"" if printable else bytes((c,))), c
        assert NOT_CONTROL.outside(data) == (b"" if c >= 0x20 or c == 0x0A else bytes((c,))), c


def test_the_odd_bytes_come_in_order_and_an_empty_piece_has_none() -> None:
    assert PRINTABLE_ASCII.outside(b"a\tb\x01c\x7f\n") == b"\t\x01\x7f"
    assert NOT_CONTROL.outside(b"") == b""
    assert ByteClass(b"ab").outside(b"abcab") == b"c"
