"""Reading files by offset, plain or gzip, and telling whether a file is the one a record follows.

A file is recognised by content, not only by inode: a hash of its first bytes (the fingerprint, over
fewer bytes when the file is short) and a hash of the bytes just before the saved offset. Hashes, never
the bytes themselves, go to the state file, so a secret in a log line never lands there.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

FP_SIZE = 1024
TAIL_SIZE = 256

DEFAULT_ROTATED = (
    r"{name}\.\d+",
    r"{name}\.\d+\.gz",
    r"{name}-\d{{8}}",
    r"{name}-\d{{8}}\.gz",
    r"{name}\.\d{{4}}-\d{{2}}-\d{{2}}",
    r"{name}\.\d{{4}}-\d{{2}}-\d{{2}}\.gz",
)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


class Source:
    """An open file to read from by offset. Plain files use pread; gzip files stream forward."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.gz = path.endswith(".gz")
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self._fd)
        self.dev, self.ino, self.mtime_ns = st.st_dev, st.st_ino, st.st_mtime_ns
        self._size = None if self.gz else st.st_size
        self._gz: gzip.GzipFile | None = None

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
        os.close(self._fd)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def size(self) -> int:
        """Current size (decompressed for gzip, which needs one pass)."""
        if not self.gz:
            self._size = os.fstat(self._fd).st_size
            return self._size
        if self._size is None:
            with gzip.open(self.path, "rb") as fh:
                total = 0
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
            self._size = total
        return self._size

    def read_at(self, offset: int, n: int) -> bytes:
        if not self.gz:
            return os.pread(self._fd, n, offset)
        try:
            if self._gz is None or self._gz.tell() > offset:
                if self._gz is not None:
                    self._gz.close()
                self._gz = gzip.open(self.path, "rb")  # type: ignore[assignment]
            assert self._gz is not None
            self._gz.seek(offset)
            return self._gz.read(n)
        except (OSError, EOFError, zlib.error):
            return b""  # a truncated or corrupt archive reads as ending here

    def fingerprint(self) -> tuple[int, str]:
        head = self.read_at(0, FP_SIZE)
        return len(head), digest(head)

    def tail(self, offset: int) -> tuple[int, str]:
        n = min(TAIL_SIZE, offset)
        if n == 0:
            return 0, ""
        return n, digest(self.read_at(offset - n, n))


@dataclass(frozen=True)
class Identity:
    fp_len: int
    fp_hash: str
    offset: int
    tail_len: int
    tail_hash: str


def holds(src: Source, ident: Identity) -> bool:
    """Whether ``src`` starts with the same bytes as the file ``ident`` describes, up to its offset."""
    if ident.fp_len:
        head = src.read_at(0, ident.fp_len)
        if len(head) != ident.fp_len or digest(head) != ident.fp_hash:
            return False
    if ident.tail_len:
        data = src.read_at(ident.offset - ident.tail_len, ident.tail_len)
        if len(data) != ident.tail_len or digest(data) != ident.tail_hash:
            return False
    return True


def rotated_siblings(path: str, extra_patterns: tuple[str, ...] = ()) -> list[str]:
    """Files in ``path``'s directory whose names look like rotated generations of it."""
    p = Path(path)
    name = re.escape(p.name)
    stem = re.escape(p.stem) if p.suffix else None
    regexes = [re.compile(pat.format(name=name)) for pat in DEFAULT_ROTATED]
    if stem:  # app.log -> app-20261122.log / app.1.log, as some rotators name them
        regexes += [
            re.compile(rf"{stem}-\d{{8}}{re.escape(p.suffix)}(\.gz)?"),
            re.compile(rf"{stem}\.\d+{re.escape(p.suffix)}(\.gz)?"),
        ]
    # Configured patterns are globs over the file name, "{name}" standing for the log's own name.
    globs = [pat.replace("{name}", glob.escape(p.name)) for pat in extra_patterns]
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    return [
        str(p.parent / n)
        for n in sorted(names)
        if n != p.name and (any(r.fullmatch(n) for r in regexes) or any(fnmatch.fnmatchcase(n, g) for g in globs))
    ]


def rotation_number(path: str) -> int:
    """The generation number in ``app.log.3.gz`` (higher is older); 0 when there is none."""
    m = re.search(r"\.(\d+)(?:\.gz)?$", path)
    return int(m.group(1)) if m and len(m.group(1)) < 6 else 0
