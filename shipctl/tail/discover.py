"""Expand a log's glob into the files to follow."""

from __future__ import annotations

import fnmatch
import glob
import os
import stat


def expand(pattern: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Regular files matching ``pattern`` (``*``, ``?``, ``[..]`` within a directory, ``**`` across
    directories; dotfiles only when named), minus those whose full path matches an ``exclude`` glob.
    Two matches that are the same file (a symlink and its target) are followed once."""
    if glob.has_magic(pattern):
        matches = sorted(glob.glob(pattern, recursive=True))
    else:
        matches = [pattern] if os.path.lexists(pattern) else []
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for path in matches:
        if any(fnmatch.fnmatch(path, ex) for ex in exclude):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue  # a dangling symlink or a file removed meanwhile
        if not stat.S_ISREG(st.st_mode):
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        out.append(path)
    return out
