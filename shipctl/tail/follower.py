"""The rotation follower (``tail-once``, and the first part of ``run``): read what is new in every configured
log into the queue, exactly once.

For each file the offset moves in the same transaction that queues the bytes before it. When the path
now holds another file (rotation, truncation, a new symlink target), the old file is found among its
rotated siblings and finished first, then any generations rotated after it, oldest first, then the new
file from its start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import types
from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING, Any

from shipctl import malloc
from shipctl.config import LogConfig
from shipctl.model import PendingBatch, encode_payload
from shipctl.records import record
from shipctl.runtime import Budget, Context, log
from shipctl.state import files as filestate
from shipctl.state import health as healthstate
from shipctl.state.files import FileRecord
from shipctl.state.queue import insert_batch
from shipctl.tail.claims import Claims, file_key, shadow_message
from shipctl.tail.discover import Limit, discover
from shipctl.tail.files import (
    FP_SIZE,
    TAIL_SIZE,
    Identity,
    NotRegularFile,
    SiblingIndex,
    Source,
    digest,
    generation_key,
    holds,
    read_size,
    seen_offset,
)

if TYPE_CHECKING:
    from shipctl.tail.pipeline import Pipeline

# What Pipeline.cut returns for an empty chunk, as far as _read looks at it then.
_NOTHING: Any = types.SimpleNamespace(consumed=0, open_match=False)

if TYPE_CHECKING:  # imported when a run first deflates ahead (~2 ms that a no-op run does not pay)
    from concurrent.futures import Future, ThreadPoolExecutor


@record
class FileResult:
    """What tail-once read from one file."""

    path: str
    bytes: int = 0
    lines: int = 0
    batches: int = 0
    rotations: int = 0
    error: str | None = None


@record
class LogResult:
    """What tail-once did for one ``[[logs]]`` entry."""

    log_id: str
    matched: int = 0
    files: list[FileResult] = field(default_factory=list)
    shadowed: list[str] = field(default_factory=list)  # matched, but shipped by an earlier [[logs]] entry


@record
class TailResult:
    """What one tail-once did, in all and per ``[[logs]]`` entry."""

    logs: list[LogResult] = field(default_factory=list)
    bytes: int = 0
    lines: int = 0
    batches: int = 0
    elapsed: float = 0.0
    stopped: str | None = None  # why the run ended before reading everything
    errors: list[str] = field(default_factory=list)
    # The errors above that describe a condition (unreadable, not a regular file), which the next run will likely
    # meet again, as opposed to an event (lines lost to a rotation): reported once (shipctl/commands/problems.py).
    lasting: list[str] = field(default_factory=list)


Progress = Callable[[int], None]


def tail_once(ctx: Context, budget: Budget, *, progress: Progress | None = None) -> TailResult:
    started = time.monotonic()
    result = TailResult()
    walk_limit = Limit()  # directory entries all the globs of this run may look at
    claims = Claims()  # files taken by the entries before: a file matched twice is shipped by the first
    for n, log_cfg in enumerate(ctx.config.logs):
        if budget.exhausted():
            break
        tailer = _LogTailer(ctx, log_cfg, budget, result, progress, walk_limit, claims)
        tailer.alone = len(ctx.config.logs) == 1 and n == 0  # nothing to share a file with: no claims to check
        try:
            result.logs.append(tailer.run())
        finally:
            tailer.close()
    result.elapsed = time.monotonic() - started
    result.stopped = budget.stopped
    return result


def pending_bytes(ctx: Context, log_cfg: LogConfig) -> int:
    """Bytes waiting in the files of one log (for a progress total and for status)."""
    total = 0
    for rec in filestate.records(ctx.state.conn, log_cfg.id):
        if rec.state != "active" or rec.real_path.endswith(".gz"):
            continue  # nothing left, or compressed: its size on disk says nothing about what is unread
        with contextlib.suppress(OSError):
            total += max(0, os.stat(rec.real_path).st_size - rec.offset)
    return total


def backlog_bytes(ctx: Context, log_cfg: LogConfig) -> int:
    """What a run of this log has to read, for a progress bar's total: ``pending_bytes`` of the files it
    follows, plus the files its glob finds that no run has seen yet (read from 0, unless start_at = "end")."""
    total = pending_bytes(ctx, log_cfg)
    if log_cfg.start_at == "end":
        return total
    known: set[tuple[int, int]] = set()
    for rec in filestate.records(ctx.state.conn, log_cfg.id):
        known.add((rec.dev, rec.ino))
    for path in discover(log_cfg.path, log_cfg.exclude).paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) not in known:
                total += st.st_size
    return total


class _LogTailer:
    def __init__(
        self,
        ctx: Context,
        log_cfg: LogConfig,
        budget: Budget,
        result: TailResult,
        progress: Progress | None,
        walk_limit: Limit | None = None,
        claims: Claims | None = None,
    ) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.log = log_cfg
        self.budget = budget
        self.result = result
        self.progress = progress
        self.compress = ctx.config.agent.compress_queue
        self.attrs = {**ctx.config.server_attributes, **log_cfg.attributes}
        self.now = time.time()
        self.index = SiblingIndex(log_cfg.rotated_patterns)
        self.checked: list[int] = []  # files found unchanged: only their last_checked moves
        self.paths: list[str] = []
        self.records: dict[str, FileRecord] = {}
        self._dirs: dict[str, int] = {}  # directory -> mtime, stat once per run
        self.walk_limit = walk_limit or Limit()
        self.out = LogResult(log_cfg.id)
        self._refused: set[str] = set()  # candidates reported as not regular files in this run
        self._renamed: dict[str, dict[str, Any]] = {}  # path -> its batches' attributes (rename_logfile)
        self.claims = claims if claims is not None else Claims()
        self.alone = False
        self._resume: dict[str, FileRecord] = {}  # own records of files shadowed until now, by path
        self._by_file: dict[tuple[int, int], list[FileRecord]] | None = None  # every log's records, by file
        self._cleared: set[int] = set()  # records whose last_error this run cleared (to be saved)
        self._pending: list[_Pending] = []  # chunks read and cut, not committed yet (see _read)
        # With rules a chunk costs ~10x more Python than its commit: a commit per chunk, one buffer less.
        self.group = 1 if log_cfg.has_rules else GROUP
        self._pool: ThreadPoolExecutor | None = None  # the deflate worker, started for the first whole chunk
        self._bufs: list[bytearray] = []

    # The rules engine is built on the first read: a run that finds nothing new never imports it.
    @functools.cached_property
    def pipeline(self) -> Pipeline:
        from shipctl.tail.pipeline import Pipeline

        return Pipeline(self.log)

    @functools.cached_property
    def rsize(self) -> int:
        return read_size(self.log, self.ctx.config.agent.batch_bytes)

    def _attrs(self, path: str) -> dict[str, Any]:
        """The attributes of a file's batches: the log's, with logfile/original_file when it is renamed
        (rename_logfile, shipctl/logrename.py); worked out once per file and run."""
        if self.log.rename_logfile is None:
            return self.attrs
        got = self._renamed.get(path)
        if got is None:
            from shipctl import logrename

            _, problem = logrename.renamed(path, self.log.rename_logfile)
            if problem:
                log.warning("log %s: %s", self.log.id, problem)
            got = self._renamed[path] = logrename.attributes(
                self.attrs, path, self.log.rename_logfile, self.log.rename_no_original
            )
        return got

    # --- orchestration ---------------------------------------------------------------------------
    def run(self) -> LogResult:
        out = self.out
        conn = self.state.conn
        found = discover(self.log.path, self.log.exclude, budget=self.budget, limit=self.walk_limit)
        self.records = records = {r.path: r for r in filestate.records(conn, self.log.id)}
        self.paths = paths = self._claim(found.paths)
        out.matched = len(paths)
        walk_error = None
        if found.truncated and not self.budget.stopped:  # a budget stop is the run's, said once for all
            walk_error = found.truncated
            self._error(self.log.path, None, walk_error, lasting=True)
        skip_history = self.log.start_at == "end" and not filestate.log_initialized(conn, self.log.id)
        # Followed files first: once a rotated file is finished, a new glob match that is that very file
        # under a rotated name (app.log -> app-20260101.log with path = "*.log") is recognised, not re-read.
        matched = set(paths)
        known = sorted(
            p for p, r in records.items() if r.state not in ("late", "shadowed") and (p in matched or r.state in _LIVE)
        )
        for path in known + sorted(matched - set(records)):
            if self.budget.exhausted():
                break
            fres = FileResult(path)
            out.files.append(fres)
            try:
                self._follow(path, records.get(path), fres, skip_history=skip_history)
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename and exc.filename != path else ""
                fres.error = f"{(exc.strerror or str(exc)).lower()}{where}"
                self._error(path, records.get(path), fres.error, lasting=True)
        if not self.budget.exhausted():
            self._late_writes(out)
        failed = [f for f in out.files if f.error]
        error = None if paths or out.shadowed else "no matching readable file"
        if failed:  # shown on the log's row in status even for files never read (so no record of their own)
            error = f"{failed[0].path}: {failed[0].error}" + (
                f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            )
        if walk_error:
            error = walk_error + (f"; {error}" if error else "")
        with self.state.write() as wconn:
            filestate.touch_log(wconn, self.log.id, len(paths), error)
            filestate.mark_checked(wconn, self.checked, self.now)
        for rec in self.records.values():  # what this entry follows at other names is its own too
            if rec.state in _LIVE:
                self.claims.files.setdefault((rec.dev, rec.ino), []).append((self.log.id, rec))
        return out

    # --- one file, one entry ---------------------------------------------------------------------
    def _claim(self, paths: list[str]) -> list[str]:
        """The matched files this entry ships: those no earlier entry took (by path, by file, or as a file
        it follows under another name). The others are recorded as shadowed, so status says why they are
        not read here; an own record of a file shadowed until now is set aside for ``_start`` to resume."""
        if self.alone and not any(r.state == "shadowed" for r in self.records.values()):
            return paths  # the only entry: a stat per file saved
        own: list[str] = []
        shadowed: set[str] = set()
        theirs = {p for p, o in self.claims.paths.items() if o != self.log.id}
        for path in paths:
            key = file_key(path)
            owner = (
                self.claims.owner(path, key)
                or self._followed_elsewhere(path, key)
                or (self._rotated_from(path, theirs) if theirs else None)
            )
            if owner is not None and owner != self.log.id:
                shadowed.add(path)
                self.out.shadowed.append(path)
                self._shadow(path, owner)
                continue
            own.append(path)
            self.claims.take(self.log.id, path, key)
            rec = self.records.get(path)
            if rec is not None and rec.state == "shadowed":
                # Followed as a new file (from the furthest offset any entry reached in it); the record is
                # reused in the transaction that starts it, so a crash in between leaves it shadowed.
                self._resume[path] = self.records.pop(path)
        for path, rec in list(self.records.items()):
            if rec.state == "shadowed" and path not in shadowed:  # matched by neither entry any more
                with self.state.write() as conn:
                    filestate.delete(conn, rec)
                del self.records[path]
        return own

    def _followed_elsewhere(self, path: str, key: tuple[int, int] | None) -> str | None:
        """The earlier entry whose record follows this very file under another name (a rotated file it is
        finishing or has finished, matched here as a new name), if any."""
        holders = self.claims.files.get(key) if key is not None else None
        if not holders:
            return None
        src = _readable(path)
        if src is None:
            return None
        with src:
            for log_id, rec in holders:
                if holds(src, _ident(rec)):
                    return log_id
        return None

    def _rotated_from(self, path: str, theirs: set[str]) -> str | None:
        """The earlier entry that read this file before it was rotated away from a path that entry ships
        (``app.log.1`` matched here by ``app.log*``, ``app.log`` shipped by the entry before): its record has
        moved on to the new file, but what it finished is remembered by content. It also reads what is
        written to the file late, so any part of it read there makes the whole file that entry's."""
        if not self.index.is_generation_of_any(path, theirs):
            return None
        src = _readable(path)
        if src is None:
            return None
        with src:
            for owner in dict.fromkeys(self.claims.paths[p] for p in sorted(theirs)):
                if seen_offset(src, filestate.seen(self.state.conn, owner)):
                    return owner
        return None

    def _shadow(self, path: str, owner: str) -> None:
        """Record that ``path`` is shipped by ``owner``: this entry's record (kept, offset and all) stops
        moving and shows why in status. Said once, when it starts."""
        message = shadow_message(owner)
        rec = self.records.get(path)
        if rec is not None and rec.state == "shadowed" and rec.last_error == message:
            if rec.id is not None:
                self.checked.append(rec.id)
            return
        if rec is None:
            src = _readable(path)
            if src is None:
                return
            with src:
                rec = self._new_record(path, _real(path), src, 0, state="shadowed")
        rec.state = "shadowed"
        rec.last_error = message
        rec.last_checked = self.now
        log.info("log %s: %s: %s", self.log.id, path, message)
        with self.state.write() as conn:
            filestate.save(conn, rec)
            self.state.notice(f"log:{self.log.id}", "info", f"{path}: {message}")

    def _adopt(self, src: Source, path: str) -> FileRecord | None:
        """The record, of any entry, that read furthest into this very file: a file that another entry
        (or this one, before it was shadowed) has shipped so far goes on from there, not again from the
        start, when the entry that ships it changes (an entry added in front, one removed, an id renamed)."""
        best: FileRecord | None = None
        if self._by_file is None:  # read once per entry and run: a 10k-file glob starts 10k files at once
            self._by_file = {}
            for rec in filestate.records(self.state.conn):
                self._by_file.setdefault((rec.dev, rec.ino), []).append(rec)
        cands = list(self._by_file.get(_key(src), ()))
        if path in self._resume:
            cands.append(self._resume[path])
        for rec in cands:
            if rec.log_id == self.log.id and rec is not self._resume.get(path):
                continue  # this entry's own records are followed as they are
            if rec.state not in ("active", "shadowed") or (best is not None and rec.offset <= best.offset):
                continue
            if holds(src, _ident(rec)):
                best = rec
        return best

    def _error(self, path: str, rec: FileRecord | None, message: str, *, lasting: bool = False) -> None:
        self.result.errors.append(f"log {self.log.id}: {path}: {message}")
        if lasting:
            self.result.lasting.append(self.result.errors[-1])
        log.warning("log %s: %s: %s", self.log.id, path, message)
        with self.state.write() as conn:
            # A lasting problem already known gets no notice per run: 200 copies would push every other one out.
            if not (lasting and healthstate.is_ongoing(conn, self.result.errors[-1])):
                self.state.notice(f"log:{self.log.id}", "error", f"{path}: {message}")
            if rec is not None and rec.id is not None:
                rec.last_error = message
                rec.last_checked = self.now
                filestate.save(conn, rec)

    def _open_other(self, path: str) -> Source | None:
        """A file that may hold the followed file's lines (a rotated sibling, where a record last read):
        None if it is gone or a directory, or is not a regular file (reported once per run, and passed over:
        never opened for a read that could wait)."""
        try:
            src = _open(path)
            if src is not None and src.is_dir:
                src.close()
                return None
            return src
        except NotRegularFile as exc:
            if path not in self._refused:
                self._refused.add(path)
                message = f"{exc.strerror}; passed over"
                self.out.files.append(FileResult(path, error=message))
                self._error(path, self.records.get(path), message, lasting=True)
            return None

    def _follow(self, path: str, rec: FileRecord | None, fres: FileResult, *, skip_history: bool) -> None:
        cur = _open(path)
        try:
            if rec is None:
                if cur is None:
                    return
                rec = self._start(path, cur, skip_history=skip_history)
                if rec is not None:
                    self._read(rec, cur, fres, final=False)
                return
            if rec.last_error is not None and rec.id is not None:
                self._cleared.add(rec.id)  # the unchanged-file shortcut in _read must still save the cleared error
            rec.last_error = None  # last_error says what the latest run that looked at the file ran into
            if (
                rec.state == "active"
                and cur is not None
                and rec.real_path == _real(path)  # not part way through a rotated file or an old link target
                and _key(cur) == (rec.dev, rec.ino)
                and holds(cur, _ident(rec))
                and not self._replaced_alike(rec, cur)
                # Empty when last seen, nothing to recognise it by: a copytruncate since then shows only as
                # a new rotated generation, to be read before the file at the path.
                and not (rec.fp_len == 0 and self._unseen_generations(rec, {_key(cur)}, rec.real_path, cur))
            ):
                rec.real_path = _real(path)
                rec.gen_since = self.now
                self._read(rec, cur, fres, final=False)
                return
            # The path no longer holds the file this record follows (or holds nothing).
            self._catch_up(path, rec, cur, fres)
        finally:
            if cur is not None:
                cur.close()

    def _catch_up(self, path: str, rec: FileRecord, cur: Source | None, fres: FileResult) -> None:
        """Finish the file the record follows wherever it went, then the generations rotated after it
        that no run has read, oldest first, then the file now at ``path`` from its start."""
        known_at = rec.real_path
        exclude = {_key(cur)} if cur is not None else set()
        if rec.state == "active":
            old = self._find_rotated(rec, cur)
            if old is not None:
                with old:
                    rec.real_path = old.path
                    if not self._read(rec, old, fres, final=True):
                        return  # budget spent: the record names the rotated file; the next run resumes it
                    exclude.add(_key(old))
            elif cur is not None and rec.fp_len and holds(cur, _ident(rec)):
                # Same bytes up to the offset under a new inode (a copy or an editor's save): carry on.
                self._switch(rec, cur, fres, offset=rec.offset, rotated=False)
                self._read(rec, cur, fres, final=False)
                return
            elif rec.fp_len == 0 and self._unseen_generations(rec, set(exclude), known_at, cur):
                pass  # empty when last seen: what it received since is in the generations read below
            else:
                self._lost(path, rec, cur)
                if cur is None:
                    return
        for gen_path, start in self._unseen_generations(rec, exclude, known_at, cur):
            if self.budget.exhausted():
                return
            gen = self._open_other(gen_path)
            if gen is None:
                continue
            with gen:
                self._switch(rec, gen, fres, offset=start, rotated=True)
                if not self._read(rec, gen, fres, final=True):
                    return
        if cur is not None and not self.budget.exhausted():
            self._switch(rec, cur, fres, offset=0, rotated=True)
            rec.gen_since = self.now
            self._read(rec, cur, fres, final=False)

    def _late_writes(self, out: LogResult) -> None:
        """Read lines written to a rotated file after a run had finished it: the app writes on to the
        renamed file until it reopens its log. Such a file is read under a record of its own ("late"), so
        the live file's offset stays as it is and a crash or budget stop resumes it; that record is dropped
        in the transaction that finishes the file. Looked for only shortly after a file was finished."""
        conn = self.state.conn
        pending = [r for r in self.records.values() if r.state == "late"]
        finished = filestate.last_finished(conn, self.log.id)
        recent = finished is not None and self.now - finished < LATE_WINDOW
        if not pending and not recent:
            return
        cands: list[str] = []
        for r in list(self.records.values()):
            if r.state in _LIVE:
                cands += self.index.siblings(r.path)
        cands = list(dict.fromkeys(cands))
        for rec in pending:
            if self.budget.exhausted():
                return
            fres = FileResult(rec.path)
            out.files.append(fres)
            src = self._locate(rec, [rec.real_path, *cands])
            if src is None:
                with self.state.write() as wconn:
                    filestate.delete(wconn, rec)
                del self.records[rec.path]
                if rec.size > rec.offset:
                    self._error(rec.path, None, f"rotated file gone; {rec.size - rec.offset} late bytes lost")
                continue
            with src:
                rec.real_path = src.path
                self._read(rec, src, fres, final=True)
        if not recent:
            return
        seen = filestate.seen(conn, self.log.id)
        taken = set(self.records) | set(self.paths)
        keys = {(r.dev, r.ino) for r in self.records.values()}
        since_ns = int((self.now - LATE_WINDOW) * 1e9)
        for cand in cands:
            if cand in taken:
                continue
            if self.budget.exhausted():
                return
            src = self._open_other(cand)
            if src is None:
                continue
            with src:
                if _key(src) in keys or src.mtime_ns < since_ns:
                    continue
                start = seen_offset(src, seen)
                if not start or not src.read_at(start, 1):
                    continue  # never read (not a late write), or nothing new
                rec = self._new_record(cand, cand, src, start, state="late")
                fres = FileResult(cand)
                out.files.append(fres)
                self._read(rec, src, fres, final=True)

    def _locate(self, rec: FileRecord, cands: list[str]) -> Source | None:
        """The file ``rec`` was reading, among ``cands``: same inode and bytes, else same bytes (compressed)."""
        ident = _ident(rec)
        by_content: Source | None = None
        for c in dict.fromkeys(cands):
            src = self._open_other(c)
            if src is None:
                continue
            if _key(src) == (rec.dev, rec.ino) and not src.gz and holds(src, ident):
                if by_content is not None:
                    by_content.close()
                return src
            if by_content is None and src.gz and holds(src, ident):
                by_content = src
            else:
                src.close()
        return by_content

    def _lost(self, path: str, rec: FileRecord, cur: Source | None) -> None:
        """The followed file is nowhere to be found: count what is known to be unread as skipped."""
        lost = max(0, rec.size - rec.offset)
        rec.bytes_skipped += lost
        rec.size = rec.offset  # counted once
        unread = f"; {lost} unread bytes lost" if lost else ""
        if cur is None:
            rec.state = "gone"
            if lost:
                self._error(path, rec, "file disappeared" + unread)
            else:  # read to its end, then removed: files matching a glob come and go
                with self.state.write() as conn:
                    self.state.notice(f"log:{self.log.id}", "info", f"{path}: file gone (read to its end)")
                    filestate.save(conn, rec)
        elif _key(cur) != (rec.dev, rec.ino):
            # Whatever was written to it since the last run is lost too; a rotated_patterns entry may be missing.
            self._error(path, rec, "previous file replaced and not found among rotated files" + unread)
        elif lost:
            self._error(path, rec, "file truncated in place" + unread)

    # --- identity --------------------------------------------------------------------------------
    def _start(self, path: str, src: Source, *, skip_history: bool) -> FileRecord | None:
        """A record for a newly matched file, or None when another record already follows that file."""
        offset = 0
        others = [r for r in self.records.values() if r.path != path]
        for other in others:
            if other.state == "active" and _key(src) == (other.dev, other.ino) and holds(src, _ident(other)):
                if path in self._resume:  # followed under its other name: this record has nothing left to say
                    with self.state.write() as conn:
                        filestate.delete(conn, self._resume.pop(path))
                return None  # the same file as another match (a link), or a rotated file not finished yet
        adopted = self._adopt(src, path)
        if adopted is not None:
            if adopted.log_id != self.log.id:
                with self.state.write():
                    self.state.notice(
                        f"log:{self.log.id}",
                        "info",
                        f"{path}: goes on at offset {adopted.offset}, where log {adopted.log_id!r} had read it",
                    )
            return self._resumed(path, src, adopted.offset)
        if skip_history:
            size = src.size()
            tail = src.read_at(max(0, size - self.rsize), self.rsize)
            offset = size - len(tail) + tail.rfind(b"\n") + 1
        elif self.index.is_generation_of_any(path, {o.path for o in others}):
            # A rotated generation of a followed file, under a name the glob matches: skip what was read.
            offset = seen_offset(src, filestate.seen(self.state.conn, self.log.id))
        return self._resumed(path, src, offset, skipped=offset if skip_history else 0)

    def _resumed(self, path: str, src: Source, offset: int, *, skipped: int = 0) -> FileRecord:
        """A record for ``src`` at ``offset``: this entry's record of a file shadowed until now, reused (its
        counters kept), else a new one."""
        rec = self._resume.pop(path, None)
        if rec is None:
            return self._new_record(path, _real(path), src, offset, skipped=skipped)
        rec.bytes_skipped += skipped
        rec.last_error = None
        rec.gen_since = self.now
        self.records[path] = rec
        self._switch(rec, src, FileResult(path), offset=offset, rotated=False)  # saved, state active
        return rec

    def _new_record(
        self, path: str, real_path: str, src: Source, offset: int, *, state: str = "active", skipped: int = 0
    ) -> FileRecord:
        """A record for ``src`` at ``offset``, saved before any of its bytes are queued."""
        fp_len, fp_hash = src.fingerprint()
        tail_len, tail_hash = src.tail(offset)
        rec = FileRecord(
            log_id=self.log.id,
            path=path,
            real_path=real_path,
            dev=src.dev,
            ino=src.ino,
            fp_len=fp_len,
            fp_hash=fp_hash,
            offset=offset,
            tail_len=tail_len,
            tail_hash=tail_hash,
            size=offset if src.gz else src.size(),
            mtime_ns=src.mtime_ns,
            first_seen=self.now,
            last_checked=self.now,
            gen_since=self.now,
            state=state,
            bytes_skipped=skipped,
        )
        with self.state.write() as conn:
            filestate.save(conn, rec)
        self.records[path] = rec
        return rec

    def _switch(self, rec: FileRecord, src: Source, fres: FileResult, *, offset: int, rotated: bool) -> None:
        """Point the record at another file, committed before any of its bytes are queued."""
        rec.real_path = _real(rec.path) if src.path == rec.path else src.path
        rec.dev, rec.ino = src.dev, src.ino
        rec.fp_len, rec.fp_hash = src.fingerprint()
        rec.offset = offset
        rec.tail_len, rec.tail_hash = src.tail(offset)
        rec.size = offset if src.gz else src.size()
        rec.pending_since = None
        rec.state = "active"
        rec.mtime_ns = src.mtime_ns
        if rotated:  # one more file at the path since the last one: a rotation (or truncation) event
            rec.rotations += 1
            fres.rotations += 1
        with self.state.write() as conn:
            filestate.save(conn, rec)

    def _replaced_alike(self, rec: FileRecord, cur: Source) -> bool:
        """Whether the path holds a new file that merely starts like the old one, under the same inode: a
        freed inode reused for the new file, or a copytruncate, when each generation opens with the same
        header and the last run read no further. Then a rotated sibling that appeared since the last run
        holds the record's bytes and goes on differently from the file at the path. (One that goes on the
        same way is a plain copy, as logrotate's ``copy`` makes.)"""
        since_ns = int((rec.gen_since - 1.0) * 1e9)
        if not rec.fp_len or (self._dir_mtime(rec.path) < since_ns and not _has_dir(self.log.rotated_patterns)):
            return False  # nothing was renamed, created or removed beside the file since the last run
        ident = _ident(rec)
        for cand in self.index.siblings(rec.path):
            src = self._open_other(cand)
            if src is None:
                continue
            with src:
                if _key(src) == _key(cur) or src.mtime_ns < since_ns or not holds(src, ident):
                    continue
                after = src.read_at(rec.offset, 4096)
                if after and cur.read_at(rec.offset, len(after)) != after:
                    return True
        return False

    def _dir_mtime(self, path: str) -> int:
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            try:
                self._dirs[parent] = os.stat(parent).st_mtime_ns
            except OSError:
                self._dirs[parent] = 1 << 62  # unknown: look
        return self._dirs[parent]

    def _find_rotated(self, rec: FileRecord, cur: Source | None) -> Source | None:
        cands: list[str] = []
        if rec.real_path != rec.path:
            cands.append(rec.real_path)  # a symlink's old target, or where a rotated file was last read
        cands += self.index.siblings(rec.path)
        if rec.real_path != rec.path:
            cands += self.index.siblings(rec.real_path)
        for p in self.paths:  # moved to another name the glob matches
            with contextlib.suppress(OSError):
                st = os.stat(p)
                if (st.st_dev, st.st_ino) == (rec.dev, rec.ino):
                    cands.append(p)
        cands = list(dict.fromkeys(c for c in cands if c != rec.path))
        ident = _ident(rec)
        cur_key = _key(cur) if cur is not None else None
        opened: list[Source] = []
        found: Source | None = None
        try:
            for c in cands:
                with contextlib.suppress(OSError):
                    src = self._open_other(c)
                    if src is not None and _key(src) != cur_key:
                        opened.append(src)
            # Same inode first (renamed away), then same content (copied away, or compressed).
            for src in opened:
                if _key(src) == (rec.dev, rec.ino) and not src.gz and holds(src, ident):
                    found = src
                    return src
            if not rec.fp_len:
                return None  # an empty file has no content to recognise
            holding = [src for src in opened if holds(src, ident)]
            if len(holding) > 1:
                # Several generations start alike (a common header): the oldest that no run finished is the
                # one this record was reading; younger ones were written after it.
                seen = filestate.seen(self.state.conn, self.log.id)
                holding = [s for s in holding if seen_offset(s, seen) < s.size()] or holding
                holding.sort(key=lambda s: (s.mtime_ns < rec.mtime_ns, generation_key(s.path, rec.path, s.mtime_ns)))
            found = holding[0] if holding else None
            return found
        finally:
            for src in opened:
                if src is not found:
                    src.close()

    def _unseen_generations(
        self, rec: FileRecord, exclude: set[tuple[int, int]], known_at: str, cur: Source | None = None
    ) -> list[tuple[str, int]]:
        """Rotated generations changed since the record last followed the live file and not read to their
        end by any run, oldest first, each with the offset to start at. A generation whose bytes the file
        at the path (``cur``) starts with is a plain copy (logrotate ``copy``), read there instead."""
        seen = filestate.seen(self.state.conn, self.log.id)
        late = [r for r in self.records.values() if r.state == "late"]
        # mtimes come from a coarse clock that may lag time.time() by a tick: allow a margin (the seen
        # table, not the mtime, is what keeps a generation from being read twice).
        since_ns = int((rec.gen_since - 1.0) * 1e9)
        cands = self.index.siblings(rec.path)
        if known_at != rec.path:
            cands += self.index.siblings(known_at)
        gens = []
        for cand in dict.fromkeys(cands):
            src = self._open_other(cand)
            if src is None:
                continue
            with src:
                if _key(src) in exclude or src.mtime_ns < since_ns:
                    continue
                if any(_key(src) == (r.dev, r.ino) or (src.gz and holds(src, _ident(r))) for r in late):
                    continue  # its late lines are being read under a record of their own
                if _key(src) == (rec.dev, rec.ino) and holds(src, _ident(rec)):
                    start = rec.offset  # the file this record read up to there (written to since, or found again)
                else:
                    start = seen_offset(src, seen) if src.fingerprint()[0] else 0
                if not src.read_at(start, 1):
                    continue  # empty, or everything already read
                if cur is not None and not src.gz and _continues(cur, src):
                    continue
                exclude.add(_key(src))
                gens.append((generation_key(cand, rec.path, src.mtime_ns), cand, start))
        return [(g[1], g[2]) for g in sorted(gens)]

    def _overlong_match(self, rec: FileRecord, dropped: int) -> None:
        message = (
            f"at offset {rec.offset}: a redaction match runs past a whole read ({self.rsize} bytes);"
            f" it is replaced there and the {dropped} bytes after it up to the end of its line are dropped"
        )
        log.warning("log %s: %s: %s", self.log.id, rec.path, message)
        with self.state.write():
            self.state.notice(f"log:{self.log.id}", "warning", f"{rec.path}: {message}")

    # --- reading ---------------------------------------------------------------------------------
    def _buffers(self) -> list[bytearray]:
        """Read buffers reused from chunk to chunk (see Source.read_into): one per chunk waiting to be
        committed, and one for the chunk being read."""
        if not self._bufs:
            malloc.tune()  # before the first buffers: new bytes to read, a run that moves data
            self._bufs = [bytearray(self.rsize) for _ in range(self.group + 1)]
        return self._bufs

    def _deflate(self, payload: bytes | bytearray | memoryview) -> Future[tuple[str, bytes]]:
        """Deflate a payload in the worker thread. ISA-L lets go of the GIL while it compresses, so the next
        chunk is read and cut, and the previous one committed, on the other core meanwhile."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # a run with no whole chunk to read never needs it

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shipctl-deflate")
        return self._pool.submit(encode_payload, payload, True)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _read(self, rec: FileRecord, src: Source, fres: FileResult, *, final: bool) -> bool:
        """Queue what is new in ``src`` from the record's offset. ``final``: the file was rotated away and
        will not grow; its last line is sent even without a newline, and the record is marked finished in
        the same transaction as the last bytes. Returns False if the budget ran out before the end.

        A chunk is committed after the next one has been read and cut, so that its deflate in the worker
        thread overlaps that work, and up to GROUP chunks share a transaction (their batches in file order, and
        the record as it stands after the last of them). Each transaction still moves the offset exactly past
        the bytes it queues; the record's later state is never saved with earlier batches. Anything else that
        writes the state file commits the pending chunks first, and so does every way out of here (also an
        exception: what was cut is consistent, and committing it is what a run without the overlap would
        have done)."""
        try:
            return self._read_chunks(rec, src, fres, final=final)
        finally:
            self._flush()

    def _flush(self) -> None:
        """Commit the pending chunks, in one transaction."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        last = pending[-1]
        with self.state.write() as wconn:
            for p in pending:
                if p.batch is not None:
                    encoded = p.encoded if p.encoded is None or isinstance(p.encoded, tuple) else p.encoded.result()
                    insert_batch(wconn, p.batch, compress=self.compress, encoded=encoded)
            filestate.save(wconn, last.rec)  # every pending chunk is of one record: its state after the last
        if last.live.id is None:
            last.live.id = last.rec.id
        for p in pending:
            if p.batch is not None:
                p.fres.batches += 1
                self.result.batches += 1
            p.fres.bytes += p.consumed
            p.fres.lines += p.lines
            self.result.bytes += p.consumed
            self.result.lines += p.lines
            if self.progress:
                self.progress(p.consumed)

    def _read_chunks(self, rec: FileRecord, src: Source, fres: FileResult, *, final: bool) -> bool:
        bufs: list[bytearray] | None = None  # read into reused buffers once a read filled one
        turn = 0
        while True:
            if self.budget.exhausted():
                return False
            before = (rec.pending_since, rec.size, rec.mtime_ns, rec.state, rec.last_error)
            if bufs is None:
                chunk: bytes | bytearray = src.read_at(rec.offset, self.rsize)
            else:
                # The buffer used longest ago: at most ``group`` chunks are pending, each in another buffer, so
                # the chunk read into this one is committed and nothing uses it any more.
                chunk = src.read_into(rec.offset, bufs[turn])
                turn = (turn + 1) % len(bufs)
            now = time.time()
            at_eof = len(chunk) < self.rsize
            expired = rec.pending_since is not None and now - rec.pending_since >= self.log.line_completion_wait
            # Nothing past the offset (most files, most runs): nothing for the rules to cut, and the rules
            # engine need not even be loaded.
            cut = self.pipeline.cut(chunk, at_eof=at_eof, flush=final or expired) if chunk else _NOTHING
            if cut.open_match and not at_eof:
                # A redaction match runs past a whole read: replace it there and drop the rest of its line.
                end = src.line_end(rec.offset + len(chunk), self.rsize, lambda: not self.budget.exhausted())
                if end is None:
                    return False  # budget spent looking for the end of the line: the next run looks again
                at, newline = end
                if newline or final or expired:
                    beyond = at - rec.offset - len(chunk)
                    cut = self.pipeline.cut_through(chunk, beyond, newline=newline)
                    self._flush()
                    self._overlong_match(rec, beyond)
                else:
                    at_eof = True  # the line is still being written: wait for its end, as for a partial line
            rec.last_checked = now
            # What is known to be in the file (a budget stop or a vanished file reports the rest as lost).
            rec.size = max(rec.offset + len(chunk), rec.size if src.gz else src.size())
            rec.mtime_ns = src.mtime_ns
            if cut.consumed == 0:
                if not at_eof:
                    raise RuntimeError(f"{src.path}: no progress at offset {rec.offset}")  # a pipeline bug
                # Nothing complete yet: remember since when the rest has been waiting.
                if chunk and rec.pending_since is None:
                    rec.pending_since = now
                elif not chunk:
                    rec.pending_since = None
                if (
                    not final
                    and rec.id is not None
                    and rec.id not in self._cleared
                    and not self._pending
                    and before == (rec.pending_since, rec.size, rec.mtime_ns, rec.state, rec.last_error)
                ):
                    self.checked.append(rec.id)  # unchanged: one UPDATE for all such files at the end
                    return True
                self._flush()
                with self.state.write() as wconn:
                    if final:
                        filestate.mark_seen(wconn, self.log.id, rec.fp_len, rec.fp_hash, rec.offset, rec.tail_hash)
                    if final and rec.state == "late":
                        filestate.delete(wconn, rec)  # its own record was only for these lines
                        self.records.pop(rec.path, None)
                    else:
                        rec.state = "rotated" if final else rec.state
                        filestate.save(wconn, rec)
                return True
            rec.offset += cut.consumed
            rec.pending_since = now if at_eof and cut.consumed < len(chunk) else None
            rec.bytes_copied += cut.consumed - cut.bytes_dropped
            rec.lines_copied += cut.lines - cut.lines_dropped
            rec.lines_dropped += cut.lines_dropped
            rec.bytes_dropped += cut.bytes_dropped
            rec.redactions += cut.redactions
            if TAIL_SIZE <= cut.consumed <= len(chunk):
                rec.tail_len = TAIL_SIZE
                rec.tail_hash = digest(chunk[cut.consumed - TAIL_SIZE : cut.consumed])
            else:
                rec.tail_len, rec.tail_hash = src.tail(rec.offset)
            if rec.fp_len < FP_SIZE:
                rec.fp_len, rec.fp_hash = src.fingerprint()
            self.budget.used_bytes += cut.consumed
            batch = None
            encoded: Future[tuple[str, bytes]] | tuple[str, bytes] | None = None
            if cut.n_events:
                batch = PendingBatch(
                    kind="log",
                    source=rec.path,
                    ts=time.time_ns(),
                    attrs=self._attrs(rec.path),
                    fmt=cut.fmt,
                    payload=cut.payload,
                    n_events=cut.n_events,
                    log_id=self.log.id,
                )
            # Overlap only where a next chunk follows at once, and the record has its row (a snapshot saved
            # while it has none would insert a second one).
            ahead = not at_eof and rec.id is not None
            if batch is not None and self.compress and ahead:
                encoded = self._deflate(batch.payload)
            # The record as it stands after this chunk: the next chunk moves ``rec`` before this one commits.
            p = _Pending(dataclasses.replace(rec), rec, batch, encoded, fres, cut.consumed, cut.lines)
            if len(self._pending) >= self.group:
                self._flush()  # while this chunk is deflated
            self._pending.append(p)
            if not ahead:
                self._flush()
            elif bufs is None:
                bufs = self._buffers()


@record
class _Pending:
    """A chunk cut and (maybe) being deflated, not committed yet (see _LogTailer._read)."""

    rec: FileRecord  # the record as it is to be saved with this chunk
    live: FileRecord  # the record the follower goes on moving
    batch: PendingBatch | None
    encoded: Future[tuple[str, bytes]] | tuple[str, bytes] | None
    fres: FileResult
    consumed: int
    lines: int


_LIVE = ("active", "rotated")
# Chunks per transaction while a file is read at full speed. Each commit also rewrites a few fixed pages (the
# header, the meta row with the next sequence number, the file's row, the queue's index and pointer-map
# pages): with 1 MiB chunks deflated to ~170 KB these were ~7 of the ~12 WAL frames of 32 KiB per chunk.
# Two chunks per commit: the WAL gets ~30% fewer bytes, at the cost of one more read buffer.
GROUP = 2
LATE_WINDOW = 600.0  # seconds after a rotated file was finished in which late writes to it are looked for


def _key(src: Source) -> tuple[int, int]:
    return src.dev, src.ino


def _has_dir(patterns: tuple[str, ...]) -> bool:
    return any("/" in p for p in patterns)


def _real(path: str) -> str:
    """Where a symlinked log path points (its old target is where to look once it points elsewhere)."""
    return os.path.realpath(path) if os.path.islink(path) else path


def _continues(cur: Source, gen: Source) -> bool:
    """Whether ``cur`` starts with all of ``gen`` (same first bytes, same bytes before gen's end)."""
    size = gen.size()
    fp_len, fp_hash = gen.fingerprint()
    tail_len, tail_hash = gen.tail(size)
    return size > 0 and holds(cur, Identity(fp_len, fp_hash, size, tail_len, tail_hash))


def _ident(rec: FileRecord) -> Identity:
    return Identity(rec.fp_len, rec.fp_hash, rec.offset, rec.tail_len, rec.tail_hash)


def _readable(path: str) -> Source | None:
    """The file open for reading, or None when it cannot be (gone, unreadable, not a file): the callers only
    ask whether it is one they know, and a file they cannot open is not."""
    try:
        return Source(path)
    except OSError:
        return None


def _open(path: str) -> Source | None:
    try:
        return Source(path)
    except FileNotFoundError:
        return None
