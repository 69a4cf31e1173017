"""Reading files by offset, plain or gzip, and telling whether a file is the one a record follows.

A file is recognised by content, not only by inode: a hash of its first bytes (the fingerprint, over
fewer bytes when the file is short) and a hash of the bytes just before the saved offset. Hashes, never
the bytes themselves, go to the state file, so a secret in a log line never lands there.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import glob
import io
import os
import re
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shipctl.records import record

if TYPE_CHECKING:
    import gzip

    from shipctl.config import LogConfig

try:  # the blake2 module alone: hashlib would also load OpenSSL (~4 ms and ~3 MiB on every run)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

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

# How far past a cut point a long line is looked at for a redaction match the cut would split (pipeline.py).
LOOKAHEAD = 1024


def read_size(log: LogConfig, batch_bytes: int) -> int:
    """Bytes to read at a time. A chunk must hold a group's first unit and the next one, which may be a
    piece that is only final once LOOKAHEAD bytes past it are known; otherwise a chunk could hold nothing
    that can be decided and the run would make no progress."""
    return max(batch_bytes, 2 * (log.max_line_size + 1) + (LOOKAHEAD if log.redaction_rules else 0))


def digest(data: bytes) -> str:
    return blake2b(data, digest_size=12).hexdigest()


class NotRegularFile(OSError):
    """A FIFO, socket or device where a log file was expected. It is never read: opening a FIFO for reading
    waits for a writer, and a read from it (or from a device) may wait or never end."""


_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def _readable_kind(mode: int) -> bool:
    """A regular file, or a directory (opened, but any read of it fails at once with EISDIR)."""
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def _refuse(path: str, mode: int) -> NotRegularFile:
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    return NotRegularFile(errno.EINVAL, f"not a regular file (a {kind})", path)


# Opening never waits (O_NONBLOCK: a FIFO without a writer would block open() itself) and never makes the
# file a controlling terminal; what was opened is checked on the descriptor, so a path swapped for a FIFO
# between a stat and the open is refused all the same.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class _PRead(io.RawIOBase):
    """A file object over a descriptor that reads with pread from a position of its own, so that a gzip
    stream can be restarted or measured through the descriptor opened once (never by name again) while
    another stream over it is open."""

    def __init__(self, fd: int) -> None:
        self._fd, self._pos = fd, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = os.preadv(self._fd, [buf], self._pos)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos}.get(whence)
        self._pos = (os.fstat(self._fd).st_size if base is None else base) + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


class Source:
    """An open file to read from by offset. Plain files use pread; gzip files stream forward. A FIFO,
    socket or device is refused (NotRegularFile), and a file is read only through the descriptor opened here."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.gz = path.endswith(".gz")
        st = os.stat(path)
        if not _readable_kind(st.st_mode):  # not even opened: opening a device can have effects of its own
            raise _refuse(path, st.st_mode)
        self._fd = os.open(path, _OPEN_FLAGS)
        try:
            st = os.fstat(self._fd)
            if not _readable_kind(st.st_mode):
                raise _refuse(path, st.st_mode)
        except BaseException:
            os.close(self._fd)
            raise
        self.dev, self.ino, self.mtime_ns = st.st_dev, st.st_ino, st.st_mtime_ns
        self.is_dir = stat.S_ISDIR(st.st_mode)
        self._size = None if self.gz else st.st_size
        self._gz: gzip.GzipFile | None = None

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
        os.close(self._fd)

    def _gzip(self) -> gzip.GzipFile:
        import gzip  # only for .gz files: a run over plain logs does not load it

        return gzip.GzipFile(fileobj=io.BufferedReader(_PRead(self._fd), 1 << 16), mode="rb")

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def size(self) -> int:
        """Current size (decompressed for gzip, which needs one pass)."""
        if not self.gz:
            st = os.fstat(self._fd)
            self._size, self.mtime_ns = st.st_size, st.st_mtime_ns
            return self._size
        if self._size is None:
            total = 0
            with self._gzip() as fh:
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
                self._gz = self._gzip()
            assert self._gz is not None
            self._gz.seek(offset)
            return self._gz.read(n)
        except (OSError, EOFError, zlib.error):
            return b""  # a truncated or corrupt archive reads as ending here

    def read_into(self, offset: int, buf: bytearray) -> bytes | bytearray:
        """What ``read_at(offset, len(buf))`` returns, read into ``buf``: ``buf`` itself when it was filled,
        else a copy of the bytes read (a short read is the file's end). A fresh 1 MiB bytes object per
        read is a fresh mapping from the allocator, whose ~256 page faults cost more CPU than the read
        (measured: ~25,000 faults over 116 MB). The caller must not read into ``buf`` again while what it
        returned is still in use."""
        if self.gz:
            return self.read_at(offset, len(buf))
        n = os.preadv(self._fd, [buf], offset)
        return buf if n == len(buf) else bytes(memoryview(buf)[:n])

    def line_end(self, start: int, step: int, go_on: Callable[[], bool] = lambda: True) -> tuple[int, bool] | None:
        """Where the line going on at ``start`` ends: the offset of its newline and True, or the end of the
        file and False. Read ``step`` bytes at a time, asking ``go_on`` before each read; None if it said no."""
        offset = start
        while go_on():
            data = self.read_at(offset, step)
            k = data.find(b"\n")
            if k >= 0:
                return offset + k, True
            if not data:
                return offset, False
            offset += len(data)
        return None

    def fingerprint(self) -> tuple[int, str]:
        head = self.read_at(0, FP_SIZE)
        return len(head), digest(head)

    def tail(self, offset: int) -> tuple[int, str]:
        n = min(TAIL_SIZE, offset)
        if n == 0:
            return 0, ""
        return n, digest(self.read_at(offset - n, n))


@record(frozen=True)
class Identity:
    """How a file is recognised after a rename: a hash of its first bytes and of the bytes just before the offset."""

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


@functools.lru_cache(maxsize=256)
def _matchers(path: str, extra_patterns: tuple[str, ...]) -> tuple[list[re.Pattern[str]], list[str], list[str]]:
    """Regexes over names in ``path``'s directory, name globs there, and globs over full paths (configured
    patterns with a directory part, like logrotate's ``olddir``)."""
    p = Path(path)
    name = re.escape(p.name)
    regexes = [re.compile(pat.format(name=name)) for pat in DEFAULT_ROTATED]
    if p.suffix:  # app.log -> app-20261122.log / app.1.log, as some rotators name them
        stem, suffix = re.escape(p.stem), re.escape(p.suffix)
        regexes += [re.compile(rf"{stem}-\d{{8}}{suffix}(\.gz)?"), re.compile(rf"{stem}\.\d+{suffix}(\.gz)?")]
    # Configured patterns are globs, "{name}" standing for the log's own file name, relative to its directory.
    name_globs, path_globs = [], []
    for pat in extra_patterns:
        g = pat.replace("{name}", glob.escape(p.name))
        if "/" in g:
            path_globs.append(g if os.path.isabs(g) else os.path.join(glob.escape(str(p.parent)), g))
        else:
            name_globs.append(g)
    return regexes, name_globs, path_globs


def seen_offset(src: Source, seen: list[tuple[int, str, int, str]]) -> int:
    """Where to start reading ``src`` given the files already read to their end (``seen``: fingerprint
    length and hash, size, hash of the bytes before the end): the end of the longest one ``src`` begins
    with, or 0. A seen file that ``src`` continues counts only when it spans more than a fingerprint:
    below that, a new file that starts with the same header as a short old one would lose its header."""
    head = src.read_at(0, FP_SIZE)
    best = 0
    for fp_len, fp_hash, size, tail_hash in sorted(seen, key=lambda s: s[2]):
        if size <= best or fp_len > len(head) or digest(head[:fp_len]) != fp_hash:
            continue
        if not holds(src, Identity(fp_len, fp_hash, size, min(TAIL_SIZE, size), tail_hash)):
            continue
        if size >= FP_SIZE or not src.read_at(size, 1):
            best = size
    return best


def rotated_siblings(path: str, extra_patterns: tuple[str, ...] = ()) -> list[str]:
    """Files whose names look like rotated generations of ``path`` (in its directory, or where a configured
    pattern with a directory part points)."""
    p = Path(path)
    regexes, name_globs, path_globs = _matchers(path, tuple(extra_patterns))
    try:
        names = os.listdir(p.parent)
    except OSError:
        names = []
    out = [
        str(p.parent / n)
        for n in sorted(names)
        if n != p.name and (any(r.fullmatch(n) for r in regexes) or any(fnmatch.fnmatchcase(n, g) for g in name_globs))
    ]
    for g in path_globs:
        out += sorted(m for m in glob.glob(g) if m != path and m not in out)
    return out


# A rotated name back to the names it may be a generation of (the inverse of DEFAULT_ROTATED and the
# stem variants in _matchers): "app.log.3.gz" -> "app.log", "app-20261122.log" -> "app.log", ...
_BASES = (
    (re.compile(r"(.+)\.\d+(?:\.gz)?"), r"\1"),
    (re.compile(r"(.+)-\d{8}(?:\.gz)?"), r"\1"),
    (re.compile(r"(.+)\.\d{4}-\d{2}-\d{2}(?:\.gz)?"), r"\1"),
    (re.compile(r"(.+)-\d{8}(\.[^.]+)(?:\.gz)?"), r"\1\2"),
    (re.compile(r"(.+)\.\d+(\.[^.]+)(?:\.gz)?"), r"\1\2"),
)


def rotation_bases(name: str) -> set[str]:
    """The file names ``name`` would be a rotated generation of under the default patterns."""
    return {m.expand(template) for regex, template in _BASES if (m := regex.fullmatch(name))}


class SiblingIndex:
    """Rotated siblings by one directory listing per directory (per run), instead of a listing and a regex
    per name for every followed file: a glob over thousands of files in one directory stays linear."""

    def __init__(self, extra_patterns: tuple[str, ...] = ()) -> None:
        self.extra = tuple(extra_patterns)
        self._dirs: dict[str, dict[str, list[str]]] = {}

    def _index(self, directory: str) -> dict[str, list[str]]:
        index = self._dirs.get(directory)
        if index is None:
            index = {}
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                names = []
            for n in names:
                for base in rotation_bases(n):
                    index.setdefault(base, []).append(os.path.join(directory, n))
            self._dirs[directory] = index
        return index

    def siblings(self, path: str) -> list[str]:
        if self.extra:  # configured patterns are globs of any shape: match them the long way
            return rotated_siblings(path, self.extra)
        return list(self._index(os.path.dirname(path)).get(os.path.basename(path), []))

    def is_generation_of_any(self, candidate: str, paths: set[str]) -> bool:
        """Whether ``candidate`` is named like a rotated generation of one of ``paths``."""
        if self.extra:
            return any(looks_rotated(candidate, p, self.extra) for p in paths)
        directory = os.path.dirname(candidate)
        return any(os.path.join(directory, b) in paths for b in rotation_bases(os.path.basename(candidate)))


def looks_rotated(candidate: str, path: str, extra_patterns: tuple[str, ...] = ()) -> bool:
    """Whether ``candidate`` is named like a rotated generation of ``path``."""
    c, p = Path(candidate), Path(path)
    regexes, name_globs, path_globs = _matchers(path, tuple(extra_patterns))
    same_dir = c.parent == p.parent and c.name != p.name
    if same_dir and (
        any(r.fullmatch(c.name) for r in regexes) or any(fnmatch.fnmatchcase(c.name, g) for g in name_globs)
    ):
        return True
    return any(fnmatch.fnmatchcase(candidate, g) for g in path_globs)


def generation_key(candidate: str, path: str, mtime_ns: int) -> tuple[int, str, int, str]:
    """Sort key putting older generations of ``path`` first: a higher number (``app.log.3.gz``, ``app.3.log``)
    is older, then an earlier date in the name, then an earlier mtime. Numbers and dates in names win over
    mtimes, which a compressor may not keep."""
    name, base = Path(candidate).name, Path(path)
    rest = name[len(base.name) :] if name.startswith(base.name) else name[len(base.stem) :]
    m = re.match(r"\.(\d{1,5})(?:\.|$)", rest)
    number = int(m.group(1)) if m else 0
    d = re.search(r"(\d{4})-?(\d{2})-?(\d{2})", rest)
    date = "".join(d.groups()) if d else ""
    return -number, date, mtime_ns, name
