"""``shipctl tail-once``: read what is new in every configured log into the queue, exactly once.

For each file the offset moves in the same transaction that queues the bytes before it. When the path
now holds another file (rotation, truncation, a new symlink target), the old file is found among its
rotated siblings and finished first, then any generations rotated after it, oldest first, then the new
file from its start.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shipctl.commands.common import Budget, Context, log
from shipctl.config import LogConfig
from shipctl.model import PendingBatch
from shipctl.state import files as filestate
from shipctl.state.files import FileRecord
from shipctl.state.queue import insert_batch
from shipctl.tail.discover import expand
from shipctl.tail.files import FP_SIZE, TAIL_SIZE, Identity, Source, digest, holds, rotated_siblings, rotation_number
from shipctl.tail.pipeline import Pipeline, read_size


@dataclass
class FileResult:
    path: str
    bytes: int = 0
    lines: int = 0
    batches: int = 0
    rotations: int = 0
    error: str | None = None


@dataclass
class LogResult:
    log_id: str
    matched: int = 0
    files: list[FileResult] = field(default_factory=list)


@dataclass
class TailResult:
    logs: list[LogResult] = field(default_factory=list)
    bytes: int = 0
    lines: int = 0
    batches: int = 0
    elapsed: float = 0.0
    stopped: str | None = None  # why the run ended before reading everything
    errors: list[str] = field(default_factory=list)


Progress = Callable[[int], None]


def tail_once(ctx: Context, budget: Budget, *, progress: Progress | None = None) -> TailResult:
    started = time.monotonic()
    result = TailResult()
    for log_cfg in ctx.config.logs:
        if budget.exhausted():
            break
        tailer = _LogTailer(ctx, log_cfg, budget, result, progress)
        result.logs.append(tailer.run())
    result.elapsed = time.monotonic() - started
    result.stopped = budget.stopped
    return result


def pending_bytes(ctx: Context, log_cfg: LogConfig) -> int:
    """Bytes waiting in the files of one log (for a progress total and for status)."""
    total = 0
    for rec in filestate.records(ctx.state.conn, log_cfg.id):
        with contextlib.suppress(OSError):
            total += max(0, os.stat(rec.real_path).st_size - rec.offset)
    return total


class _LogTailer:
    def __init__(
        self, ctx: Context, log_cfg: LogConfig, budget: Budget, result: TailResult, progress: Progress | None
    ) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.log = log_cfg
        self.budget = budget
        self.result = result
        self.progress = progress
        self.pipeline = Pipeline(log_cfg)
        self.rsize = read_size(log_cfg, ctx.config.agent.batch_bytes)
        self.compress = ctx.config.agent.compress_queue
        self.attrs = {**ctx.config.server_attributes, **log_cfg.attributes}
        self.now = time.time()

    # --- orchestration ---------------------------------------------------------------------------
    def run(self) -> LogResult:
        out = LogResult(self.log.id)
        conn = self.state.conn
        paths = expand(self.log.path, self.log.exclude)
        out.matched = len(paths)
        records = {r.path: r for r in filestate.records(conn, self.log.id)}
        first_time = not filestate.log_initialized(conn, self.log.id)
        for path in sorted(set(paths) | {p for p, r in records.items() if r.state == "active"}):
            if self.budget.exhausted():
                break
            fres = FileResult(path)
            out.files.append(fres)
            try:
                self._follow(path, records.get(path), fres, skip_history=first_time and self.log.start_at == "end")
            except OSError as exc:
                fres.error = f"{exc.strerror or exc} ({exc.filename or path})"
                self._error(path, records.get(path), fres.error)
        error = None if paths else "no matching readable file"
        with self.state.write() as wconn:
            filestate.touch_log(wconn, self.log.id, len(paths), error)
        return out

    def _error(self, path: str, rec: FileRecord | None, message: str) -> None:
        self.result.errors.append(f"{path}: {message}")
        log.warning("log %s: %s: %s", self.log.id, path, message)
        with self.state.write() as conn:
            self.state.notice(f"log:{self.log.id}", "error", f"{path}: {message}")
            if rec is not None and rec.id is not None:
                rec.last_error = message
                rec.last_checked = self.now
                filestate.save(conn, rec)

    def _follow(self, path: str, rec: FileRecord | None, fres: FileResult, *, skip_history: bool) -> None:
        cur = _open(path)
        try:
            if rec is None:
                if cur is None:
                    return
                rec = self._new_record(path, cur, skip_history=skip_history)
                self._read(rec, cur, fres, final=False)
                return
            if cur is not None and (cur.dev, cur.ino) == (rec.dev, rec.ino) and holds(cur, _ident(rec)):
                rec.real_path = path
                rec.gen_since = self.now
                self._read(rec, cur, fres, final=False)
                return
            # The path no longer holds the file this record follows (or holds nothing).
            self._catch_up_rotation(path, rec, cur, fres)
        finally:
            if cur is not None:
                cur.close()

    def _catch_up_rotation(self, path: str, rec: FileRecord, cur: Source | None, fres: FileResult) -> None:
        old = self._find_rotated(rec, cur)
        exclude = {(cur.dev, cur.ino)} if cur is not None else set()
        if old is not None:
            with old:
                fres.rotations += 1
                rec.rotations += 1
                rec.real_path = old.path
                if not self._read(rec, old, fres, final=True):
                    return  # budget spent: the record still names the old file; the next run resumes it
                exclude.add((old.dev, old.ino))
                done_path = old.path
        else:
            done_path = None
            if cur is not None and rec.fp_len and holds(cur, _ident(rec)):
                # Same bytes up to the offset under a new inode (a copy or an editor's save): carry on.
                self._switch(rec, cur, keep_offset=True)
                self._read(rec, cur, fres, final=False)
                return
            lost = max(0, rec.size - rec.offset)
            if cur is None:
                if rec.state != "gone":
                    msg = "file disappeared" + (f"; {lost} unread bytes lost" if lost else "")
                    rec.bytes_skipped += lost
                    rec.state = "gone"
                    rec.size = rec.offset
                    self._error(path, rec, msg)
                return
            if lost:
                rec.bytes_skipped += lost
                self._error(
                    path, rec, f"previous file replaced and not found among rotated files; {lost} unread bytes lost"
                )
        # Generations rotated after the old file that no run has read yet, oldest first.
        for gen_path in self._unseen_generations(rec, exclude, done_path):
            if self.budget.exhausted():
                return
            gen = _open(gen_path)
            if gen is None:
                continue
            with gen:
                self._switch(rec, gen, keep_offset=False)
                fres.rotations += 1
                if not self._read(rec, gen, fres, final=True):
                    return
        if cur is not None:
            self._switch(rec, cur, keep_offset=False)
            rec.gen_since = self.now
            self._read(rec, cur, fres, final=False)

    # --- identity --------------------------------------------------------------------------------
    def _new_record(self, path: str, src: Source, *, skip_history: bool) -> FileRecord:
        fp_len, fp_hash = src.fingerprint()
        offset = 0
        if skip_history:
            size = src.size()
            tail = src.read_at(max(0, size - self.rsize), self.rsize)
            offset = size - len(tail) + tail.rfind(b"\n") + 1
        tail_len, tail_hash = src.tail(offset)
        rec = FileRecord(
            log_id=self.log.id,
            path=path,
            real_path=path,
            dev=src.dev,
            ino=src.ino,
            fp_len=fp_len,
            fp_hash=fp_hash,
            offset=offset,
            tail_len=tail_len,
            tail_hash=tail_hash,
            size=src.size(),
            mtime_ns=src.mtime_ns,
            first_seen=self.now,
            last_checked=self.now,
            gen_since=self.now,
            bytes_skipped=offset,
        )
        with self.state.write() as conn:
            filestate.save(conn, rec)
        return rec

    def _switch(self, rec: FileRecord, src: Source, *, keep_offset: bool) -> None:
        """Point the record at another file, committed before any of its bytes are queued."""
        rec.real_path = src.path
        rec.dev, rec.ino = src.dev, src.ino
        rec.fp_len, rec.fp_hash = src.fingerprint()
        if not keep_offset:
            rec.offset = 0
            rec.tail_len, rec.tail_hash = 0, ""
        rec.pending_since = None
        rec.state = "active"
        rec.mtime_ns = src.mtime_ns
        with self.state.write() as conn:
            filestate.save(conn, rec)

    def _find_rotated(self, rec: FileRecord, cur: Source | None) -> Source | None:
        cands: list[str] = []
        if rec.real_path != rec.path:
            cands.append(rec.real_path)
        cands += rotated_siblings(rec.path, self.log.rotated_patterns)
        if rec.real_path != rec.path:
            cands += rotated_siblings(rec.real_path, self.log.rotated_patterns)
        cands = list(dict.fromkeys(c for c in cands if c != rec.path))
        ident = _ident(rec)
        opened: list[Source] = []
        found: Source | None = None
        try:
            for c in cands:
                src = _open(c)
                if src is not None:
                    opened.append(src)
            cur_key = (cur.dev, cur.ino) if cur is not None else None
            # Same inode first (renamed away), then same content (copied away, or compressed).
            for src in opened:
                if (src.dev, src.ino) == (rec.dev, rec.ino) != cur_key and not src.gz and holds(src, ident):
                    found = src
                    return src
            if rec.fp_len:
                for src in opened:
                    if (src.dev, src.ino) != cur_key and holds(src, ident):
                        found = src
                        return src
            return None
        finally:
            for src in opened:
                if src is not found:
                    src.close()

    def _unseen_generations(self, rec: FileRecord, exclude: set[tuple[int, int]], done_path: str | None) -> list[str]:
        seen = filestate.seen(self.state.conn, self.log.id)
        since_ns = int((rec.gen_since - 1.0) * 1e9)
        gens = []
        for cand in rotated_siblings(rec.path, self.log.rotated_patterns):
            if cand == done_path:
                continue
            src = _open(cand)
            if src is None:
                continue
            with src:
                if (src.dev, src.ino) in exclude or src.mtime_ns < since_ns:
                    continue
                fp_len, fp_hash = src.fingerprint()
                if fp_len == 0:
                    continue
                if any(
                    s[0] == fp_len and s[1] == fp_hash and s[2] == src.size() and s[3] == src.tail(s[2])[1]
                    for s in seen
                ):
                    continue
                gens.append((src.mtime_ns, -rotation_number(cand), cand))
        return [g[2] for g in sorted(gens)]

    # --- reading ---------------------------------------------------------------------------------
    def _read(self, rec: FileRecord, src: Source, fres: FileResult, *, final: bool) -> bool:
        """Queue what is new in ``src`` from the record's offset. ``final``: the file was rotated away and
        will not grow; its last line is sent even without a newline. Returns False if the budget ran out
        before the end of the file."""
        while True:
            if self.budget.exhausted():
                return False
            chunk = src.read_at(rec.offset, self.rsize)
            now = time.time()
            at_eof = len(chunk) < self.rsize
            expired = rec.pending_since is not None and now - rec.pending_since >= self.log.line_completion_wait
            cut = self.pipeline.cut(chunk, at_eof=at_eof, flush=final or expired)
            rec.last_checked = now
            rec.last_error = None
            if cut.consumed == 0:
                if not at_eof:
                    raise RuntimeError(f"{src.path}: no progress at offset {rec.offset}")  # a pipeline bug
                # Nothing complete yet: remember since when the rest has been waiting.
                if chunk and rec.pending_since is None:
                    rec.pending_since = now
                elif not chunk:
                    rec.pending_since = None
                if not src.gz:
                    rec.size = rec.offset + len(chunk)
                with self.state.write() as wconn:
                    filestate.save(wconn, rec)
                break
            rec.offset += cut.consumed
            rec.pending_since = now if at_eof and cut.consumed < len(chunk) else None
            if not src.gz:
                rec.size = max(rec.size, rec.offset - cut.consumed + len(chunk))
            rec.bytes_copied += cut.consumed - cut.bytes_dropped
            rec.lines_copied += cut.lines - cut.lines_dropped
            rec.lines_dropped += cut.lines_dropped
            rec.bytes_dropped += cut.bytes_dropped
            rec.redactions += cut.redactions
            if cut.consumed >= TAIL_SIZE:
                rec.tail_len = TAIL_SIZE
                rec.tail_hash = digest(chunk[cut.consumed - TAIL_SIZE : cut.consumed])
            else:
                rec.tail_len, rec.tail_hash = src.tail(rec.offset)
            if rec.fp_len < FP_SIZE:
                rec.fp_len, rec.fp_hash = src.fingerprint()
            with self.state.write() as wconn:
                if cut.n_events:
                    insert_batch(
                        wconn,
                        PendingBatch(
                            kind="log",
                            source=rec.path,
                            ts=time.time_ns(),
                            attrs=self.attrs,
                            fmt=cut.fmt,
                            payload=cut.payload,
                            n_events=cut.n_events,
                            log_id=self.log.id,
                        ),
                        compress=self.compress,
                    )
                filestate.save(wconn, rec)
            if cut.n_events:
                fres.batches += 1
                self.result.batches += 1
            fres.bytes += cut.consumed
            fres.lines += cut.lines
            self.result.bytes += cut.consumed
            self.result.lines += cut.lines
            self.budget.used_bytes += cut.consumed
            if self.progress:
                self.progress(cut.consumed)
        if final:
            with self.state.write() as wconn:
                filestate.mark_seen(wconn, self.log.id, rec.fp_len, rec.fp_hash, rec.offset, rec.tail_hash)
        return True


def _ident(rec: FileRecord) -> Identity:
    return Identity(rec.fp_len, rec.fp_hash, rec.offset, rec.tail_len, rec.tail_hash)


def _open(path: str) -> Source | None:
    try:
        return Source(path)
    except FileNotFoundError:
        return None
