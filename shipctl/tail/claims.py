"""Which ``[[logs]]`` entry ships a file that several entries match: the first one, in config order.

The Scalyr agent walks its log matchers in config order and never opens a second processor for a path
that one already follows, so a file matched by two entries is shipped once, with the attributes and rules
of the first. shipctl does the same, and goes a step further: the same file reached by another name (a
symlink, a path spelled with ``..``) counts as the same file, because it holds the same lines.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import TYPE_CHECKING

from shipctl.records import record
from shipctl.tail.discover import Limit, discover

if TYPE_CHECKING:
    from shipctl.state.files import FileRecord


@record
class Claims:
    """Files taken by the entries looked at so far in this run: by path and by (device, inode)."""

    paths: dict[str, str] = field(default_factory=dict)  # path -> log id
    keys: dict[tuple[int, int], str] = field(default_factory=dict)  # (st_dev, st_ino) -> log id
    # Records of those entries by the file they follow, wherever it is now (a rotated name another glob
    # matches): such a file is theirs as long as it still holds what the record read.
    files: dict[tuple[int, int], list[tuple[str, FileRecord]]] = field(default_factory=dict)

    def owner(self, path: str, key: tuple[int, int] | None) -> str | None:
        """The earlier entry that ships ``path``, if any."""
        if path in self.paths:
            return self.paths[path]
        return self.keys.get(key) if key is not None else None

    def take(self, log_id: str, path: str, key: tuple[int, int] | None) -> None:
        self.paths.setdefault(path, log_id)
        if key is not None:
            self.keys.setdefault(key, log_id)


def file_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def shadow_message(owner: str) -> str:
    """The one sentence status and check-config show for a file another entry ships."""
    return f"shadowed: also matched by log {owner!r}, which ships it (the first matching [[logs]] entry wins)"


@record(frozen=True)
class Shadowed:
    """A file that a ``[[logs]]`` entry matches but an earlier entry ships."""

    log_id: str  # the entry that matches the file but does not ship it
    index: int  # its position in [[logs]]
    path: str
    shipped_by: str


def overlaps(logs: list[tuple[str, str, tuple[str, ...]]]) -> list[Shadowed]:
    """Files that more than one entry matches now, each reported under every entry that does not ship it.
    ``logs``: (id, path glob, exclude globs) in config order. The walks share one entry cap, as in a run."""
    claims = Claims()
    limit = Limit()
    out: list[Shadowed] = []
    for i, (log_id, pattern, exclude) in enumerate(logs):
        found = discover(pattern, exclude, limit=limit)
        mine = []
        for path in found.paths:
            key = file_key(path)
            owner = claims.owner(path, key)
            if owner is not None and owner != log_id:
                out.append(Shadowed(log_id, i, path, owner))
            else:
                mine.append((path, key))
        for path, key in mine:
            claims.take(log_id, path, key)
    return out
