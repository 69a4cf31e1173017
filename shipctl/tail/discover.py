"""Expand a log's glob into the files to follow, within the run's budget.

The walk matches as ``glob.glob(pattern, recursive=True)`` does (``*``, ``?``, ``[..]`` within a directory,
``**`` across directories, following links to directories; dotfiles only when named), but it cannot run
away: ``**`` enters each directory once (by device and inode, for each ``**`` of the pattern), so links
that loop back up do not multiply the walk; every directory entry looked at counts against a cap shared
by all the logs of a run; and the run's time budget is checked at each directory.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import field
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from shipctl.records import record

if TYPE_CHECKING:
    from shipctl.runtime import Budget

# Directory entries one run may look at across all its globs. A host's log tree holds a few thousand; a
# pattern that reaches much further is a mistake to report, not a reason to spend the run walking.
MAX_ENTRIES = 200_000


class _LogLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def exclude(self) -> tuple[str, ...]: ...


LogT = TypeVar("LogT", bound=_LogLike)


class Limit:
    """The entries the walks of one run may still look at."""

    def __init__(self, entries: int | None = None) -> None:
        self.cap = MAX_ENTRIES if entries is None else entries
        self.left = self.cap


@record
class Found:
    """The paths a ``[[logs]]`` glob matched."""

    paths: list[str] = field(default_factory=list)
    truncated: str | None = None  # why the walk stopped before it had looked everywhere


def expand(pattern: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Regular files matching ``pattern``, minus those whose full path matches an ``exclude`` glob (see
    ``discover``)."""
    return discover(pattern, exclude).paths


def discover(
    pattern: str, exclude: tuple[str, ...] = (), *, budget: Budget | None = None, limit: Limit | None = None
) -> Found:
    """Regular files matching ``pattern`` (``*``, ``?``, ``[..]`` within a directory, ``**`` across
    directories; dotfiles only when named), minus those whose full path matches an ``exclude`` glob.
    Two matches that are the same file (a symlink and its target) are followed once. A walk cut short by
    the budget or the entry cap returns what it found so far, and says why."""
    found = Found()
    if glob.has_magic(pattern):
        walk = _Walk(budget, limit or Limit())
        matches = sorted(walk.glob(pattern))
        found.truncated = walk.stopped
    else:
        matches = [pattern] if os.path.lexists(pattern) else []
    seen: set[tuple[int, int]] = set()
    for path in matches:
        if any(fnmatch.fnmatch(path, ex) for ex in exclude):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue  # a dangling symlink or a file removed meanwhile
        if not stat.S_ISREG(st.st_mode):
            continue  # a FIFO, socket, device or directory is never followed
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        found.paths.append(path)
    return found


class _Stop(Exception):
    pass


class _Entry(NamedTuple):
    name: str
    path: str
    is_dir: bool  # following a symlink, as glob does
    key: tuple[int, int] | None  # (st_dev, st_ino) of a directory


class _Walk:
    def __init__(self, budget: Budget | None, limit: Limit) -> None:
        self.budget = budget
        self.limit = limit
        self.stopped: str | None = None
        self._entered: set[tuple[int, int, int]] = set()  # (dev, ino, index of the ** in the pattern)
        self._last: tuple[str, list[_Entry]] | None = None  # the latest listing ("**/*.log" lists each once)

    def glob(self, pattern: str) -> list[str]:
        head, parts = "", pattern.split("/")
        if pattern.startswith("/"):
            head, parts = "/", parts[1:]
        out: list[str] = []
        try:
            for path in self._match(head, parts, 0):
                out.append(path)
        except _Stop:
            pass
        return out

    def _match(self, dirname: str, parts: list[str], i: int) -> Iterator[str]:
        part, last = parts[i], i == len(parts) - 1
        if part == "**":
            for directory, entries in self._tree(dirname, i):
                if last:  # any file below (the directories themselves are not followed anyway)
                    yield from (e.path for e in entries if not e.is_dir and not _hidden(e.name))
                else:
                    yield from self._match(directory, parts, i + 1)
        elif glob.has_magic(part):
            entries = self._list(dirname)
            if not _hidden(part):
                entries = [e for e in entries if not _hidden(e.name)]
            names = set(fnmatch.filter([e.name for e in entries], part))
            for e in entries:
                if e.name not in names:
                    continue
                if last:
                    yield e.path
                elif e.is_dir:
                    yield from self._match(e.path, parts, i + 1)
        else:
            path = os.path.join(dirname, part)
            if not last:
                yield from self._match(path, parts, i + 1)
            elif os.path.lexists(path):
                yield path

    def _tree(self, top: str, i: int) -> Iterator[tuple[str, list[_Entry]]]:
        """``top`` and the directories below it (not hidden ones), each once, with their entries."""
        try:
            st = os.stat(top or os.curdir)
        except OSError:
            return
        stack = [(top, (st.st_dev, st.st_ino))]
        while stack:
            directory, key = stack.pop()
            if (*key, i) in self._entered:
                continue  # reached again through a link (a loop, or two ways to one place)
            self._entered.add((*key, i))
            entries = self._list(directory)
            yield directory, entries
            stack += [(e.path, e.key) for e in reversed(entries) if e.is_dir and e.key and not _hidden(e.name)]

    def _list(self, directory: str) -> list[_Entry]:
        if self._last is not None and self._last[0] == directory:
            return self._last[1]
        if self.budget is not None and self.budget.exhausted():
            self.stopped = self.budget.stopped
            raise _Stop
        out: list[_Entry] = []
        try:
            with os.scandir(directory or os.curdir) as it:
                for entry in it:
                    if self.limit.left <= 0:
                        self.stopped = (
                            f"directory walk stopped after {self.limit.cap} entries (the limit for one run);"
                            " files further on were not looked for: narrow the pattern"
                        )
                        raise _Stop
                    self.limit.left -= 1
                    key = None
                    try:
                        is_dir = entry.is_dir()
                        if is_dir:
                            est = entry.stat()
                            key = (est.st_dev, est.st_ino)
                    except OSError:
                        is_dir = False
                    out.append(_Entry(entry.name, os.path.join(directory, entry.name), is_dir, key))
        except OSError:
            return []
        out.sort()
        self._last = (directory, out)
        return out


def _hidden(name: str) -> bool:
    return name.startswith(".")


def first_match(logs: Iterable[LogT], path: str) -> LogT | None:
    """The ``[[logs]]`` entry that claims ``path``: the first, in config order, whose walk (``discover``,
    exactly as tail-once runs it) finds that file. ``preview`` asks this so it shows the rules tail-once
    applies, whatever the glob rules are."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    want = (st.st_dev, st.st_ino)
    limit = Limit()
    for lg in logs:
        for found in discover(lg.path, lg.exclude, limit=limit).paths:
            try:
                fst = os.stat(found)
            except OSError:
                continue
            if (fst.st_dev, fst.st_ino) == want:
                return lg
    return None
