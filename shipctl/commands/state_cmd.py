"""``shipctl state check`` and ``shipctl state recover``: what a damaged (corrupt, truncated, emptied) state file
still holds, and a rebuilt one from it.

recover takes every command's lock, moves the damaged file aside (``state.db.damaged-<UTC time>``, with its
``-wal`` and ``-shm``), copies what can be read into a new file built beside it, and only then puts the new file
in place. When file offsets cannot be carried over, nothing is changed until the operator says where the logs
resume: ``--logs-from start`` (read them again from the start: whatever was shipped before is shipped again) or
``--logs-from end`` (start at their current end: whatever was not shipped yet is skipped). A file whose offset
was saved is never affected by that choice.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import time
from dataclasses import field
from pathlib import Path

from shipctl.config import Config, LogConfig
from shipctl.errors import StateError, UsageError
from shipctl.humanize import plural
from shipctl.records import record
from shipctl.state import State, lock, resolve_state_path
from shipctl.state import files as filestate
from shipctl.state import recover as rec
from shipctl.state.db import forget_damage

LOGS_FROM = ("start", "end")


@record
class CheckResult:
    report: rec.Report
    healthy: bool
    verdict: str
    offsets_lost: bool  # recover will need --logs-from
    exit_code: int  # 0 ok (or no file yet), 73 damaged


def check(config: Config) -> CheckResult:
    path = resolve_state_path(config.agent.state)
    report = rec.check(path)
    damaged = report.damaged
    return CheckResult(report, not damaged, report.verdict, damaged and report.offsets_lost, 73 if damaged else 0)


@record
class RecoverResult:
    path: str
    done: bool = False  # False: the file was healthy, nothing changed
    quarantined: str | None = None
    logs_from: str | None = None  # the choice applied where offsets were lost
    batches: int = 0
    events: int = 0
    lost_batches: int = 0
    tracked_files: int = 0
    positioned: list[str] = field(default_factory=list)  # files set at their end (--logs-from end)
    cursors: dict[str, int] = field(default_factory=dict)
    new_session: bool = False
    unreadable: dict[str, int] = field(default_factory=dict)  # table -> rows known lost
    damaged_tables: list[str] = field(default_factory=list)  # tables read only in part
    missing_tables: list[str] = field(default_factory=list)  # tables the damaged file no longer had
    notes: list[str] = field(default_factory=list)


def recover(config: Config, *, logs_from: str | None = None, wait: bool = False) -> RecoverResult:
    if logs_from is not None and logs_from not in LOGS_FROM:
        raise UsageError(f"--logs-from must be 'start' or 'end', not {logs_from!r}")
    path = resolve_state_path(config.agent.state)
    out = RecoverResult(str(path))
    with contextlib.ExitStack() as held:
        for kind in _lock_kinds(config, path):
            held.enter_context(lock(path, kind, wait=wait))
        report = rec.check(path, integrity=True)
        if not report.damaged:
            out.notes.append(f"the state file is not damaged ({report.verdict}): nothing to recover")
            return out
        if report.offsets_lost and logs_from is None:
            raise UsageError(
                f"{path}: some file offsets cannot be recovered: say where those logs resume, with"
                " '--logs-from start' (read them again from their start: repeats what was shipped before) or"
                " '--logs-from end' (start at their current end: skips what was not shipped yet); nothing was"
                " changed"
            )
        out.logs_from = logs_from if report.offsets_lost else None
        if logs_from and not report.offsets_lost:
            out.notes.append(f"every file offset was recovered: --logs-from {logs_from} was not needed")
        _rebuild(config, path, out)
    return out


def _lock_kinds(config: Config, path: Path) -> list[str]:
    """Every command's lock: the fixed kinds, each configured sink's, and any other left beside the file."""
    from shipctl.delivery import lock_kind

    kinds = {"tail-once", "run", "run-monitor", *(lock_kind(s.id) for s in config.sinks)}
    prefix, suffix = f"{path}.", ".lock"
    for name in glob.glob(glob.escape(str(path)) + ".*.lock"):
        kinds.add(name[len(prefix) : -len(suffix)])
    return sorted(kinds)


def _rebuild(config: Config, path: Path, out: RecoverResult) -> None:
    tmp = path.with_name(f"{path.name}.recovering")
    for suffix in ("", *rec.COMPANIONS):  # left by a recovery that was killed: it never replaced anything
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{tmp}{suffix}")
    quarantined = rec.quarantine(path)
    try:
        salvage = rec.rebuild(quarantined, tmp)
        with State.open(tmp) as fresh:
            if out.logs_from:
                _position(config, fresh, out)
            _summarise(salvage, out)
            with fresh.write():
                fresh.notice("state", "error", _notice(out, quarantined))
            fresh.checkpoint()
        if any(os.path.lexists(f"{tmp}{s}") for s in rec.COMPANIONS):
            raise StateError(f"{tmp}: the rebuilt file still has a WAL open; {path} was left as it was")
        os.rename(tmp, path)
        forget_damage(path)
    except BaseException:
        for suffix in ("", *rec.COMPANIONS):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tmp}{suffix}")
        if not os.path.lexists(path):
            rec.unquarantine(quarantined, path)
        raise
    out.done = True
    out.quarantined = str(quarantined)


def _summarise(salvage: rec.Salvage, out: RecoverResult) -> None:
    out.batches, out.events = salvage.batches, salvage.events
    out.lost_batches = len(salvage.lost_batches)
    out.cursors = salvage.cursors
    out.new_session = salvage.new_session
    out.tracked_files = salvage.tables["files"].rows if "files" in salvage.tables else 0
    for name, t in sorted(salvage.tables.items()):
        if not t.present:
            out.missing_tables.append(name)
        elif not t.complete:
            out.damaged_tables.append(name)
        if t.unreadable:
            out.unreadable[name] = t.unreadable
    if out.lost_batches:
        out.notes.append(
            f"{out.lost_batches} queued batches could not be read: their events are lost (first sequence numbers:"
            f" {', '.join(map(str, salvage.lost_batches[:10]))}{' ...' if out.lost_batches > 10 else ''})"
        )
    if salvage.new_session:
        out.notes.append(
            "the next sequence number was lost: a new session and new sequence streams start, so no receiver"
            " mistakes new events for repeats (batches already sent may arrive twice)"
        )
    if "upload_state" in out.damaged_tables + out.missing_tables:
        out.notes.append(
            "some sinks' cursors were lost: those sinks get the recovered batches again (repeats possible)"
        )


def _notice(out: RecoverResult, quarantined: Path) -> str:
    where = f"; logs without a saved offset resume from their {out.logs_from}" if out.logs_from else ""
    return (
        f"state file rebuilt by 'shipctl state recover' (damaged file kept as {quarantined.name}):"
        f" {plural(out.batches, 'queued batch')} and {plural(out.tracked_files, 'file offset')} recovered,"
        f" {plural(out.lost_batches, 'batch')} lost{where}"
    )


def _position(config: Config, state: State, out: RecoverResult) -> None:
    """Where offsets were lost: every configured log's files without a recovered offset start at their end
    (``end``), or are read from their start (``start``: the follower does that for a file it has no record of,
    once its log is marked as initialised, whatever its start_at says)."""
    from shipctl.tail.discover import expand

    now = time.time()
    for log_cfg in config.logs:
        known = {r.path for r in filestate.records(state.conn, log_cfg.id)}
        if out.logs_from == "end":
            for path in expand(log_cfg.path, log_cfg.exclude):
                if path not in known and _at_end(state, log_cfg, config.agent.batch_bytes, path, now):
                    out.positioned.append(path)
        with state.write() as conn:
            filestate.touch_log(conn, log_cfg.id, 0, None)


def _at_end(state: State, log_cfg: LogConfig, batch_bytes: int, path: str, now: float) -> bool:
    """A record for ``path`` at the end of its last complete line, as a new file of a ``start_at = "end"``
    log gets one."""
    from shipctl.tail.files import Source
    from shipctl.tail.pipeline import read_size

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # never open a FIFO (it would block) or a device
        src = Source(path)
    except OSError:
        return False
    with src:
        size = src.size()
        window = read_size(log_cfg, batch_bytes)
        tail = src.read_at(max(0, size - window), window) if not src.gz else b""
        offset = size - len(tail) + tail.rfind(b"\n") + 1 if tail else size
        fp_len, fp_hash = src.fingerprint()
        tail_len, tail_hash = src.tail(offset)
        record = filestate.FileRecord(
            log_id=log_cfg.id,
            path=path,
            real_path=os.path.realpath(path) if os.path.islink(path) else path,
            dev=src.dev,
            ino=src.ino,
            fp_len=fp_len,
            fp_hash=fp_hash,
            offset=offset,
            tail_len=tail_len,
            tail_hash=tail_hash,
            size=offset if src.gz else size,
            mtime_ns=src.mtime_ns,
            first_seen=now,
            last_checked=now,
            gen_since=now,
            bytes_skipped=offset,
        )
    with state.write() as conn:
        filestate.save(conn, record)
    return True
