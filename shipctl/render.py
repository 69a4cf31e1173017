"""Turning result objects into text: rich tables for people, JSON for machines. The only rich importer;
imported only by commands that draw, so a quiet timer run never loads rich."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sys
import threading
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from shipctl.commands.status import StatusResult
from shipctl.humanize import age, plural, size


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Outside a terminal (cron mail, pipes) rich would assume 80 columns and fold paths: go wide instead.
    # No markup or emoji codes: ids, paths and messages are shown as written ("[x]", ":smile:" included).
    return Console(
        file=stream, width=None if tty else 1000, soft_wrap=not tty, highlight=False, markup=False, emoji=False
    )


def to_json(obj: Any) -> str:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, indent=2, default=default, sort_keys=False)


def when(ts: float | None) -> str:
    if not ts:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


ago = age  # the name render's callers use


def _ago_at(ts: float | None, now: float) -> str:
    return f"{ago(now - ts)} ago" if ts else "never"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def status(result: StatusResult, *, verbose: bool) -> None:
    out = console()
    out.print(
        f"State file: {result.state_path}"
        + (f" ({state_size_line(result)})" if result.exists else " (not created yet: nothing has run)")
    )
    out.print(f"Config:     {result.config_file}")
    for extra in result.config_files[1:]:
        out.print(f"            {extra}")
    out.print(f"Version:    shipctl {result.version}, running as {result.user}")
    for warning in result.config_warnings:
        out.print(f"Warning:    {warning}")
    now = result.now

    # A narrow terminal gets the columns that matter most (see _fitted); a wide one or a pipe gets them all.
    columns = [
        "log",
        "path",
        "copied",
        "lines",
        "pending",
        "skipped",
        "dropped",
        "redactions",
        "rotations",
        "last checked",
        "problem",
    ]
    rows: list[list[str]] = []
    row = rows.append

    for lg in result.logs:
        file_errors = {f.last_error for f in lg.files if f.last_error}
        if not lg.files or (lg.error and not any(e in lg.error for e in file_errors)):
            # No file yet, or a problem with a file that has no row (never readable): one row for the log.
            row([lg.log_id, lg.path, *["-"] * 7, when(lg.last_checked), lg.error or "no matching readable file"])
        for f in lg.files:
            path = f.path if f.reading == f.path else f"{f.path} (reading {f.reading})"
            problem = f.last_error or ("file gone" if f.state == "gone" else "")
            row(
                [
                    lg.log_id,
                    path,
                    size(f.bytes_copied),
                    str(f.lines_copied),
                    size(f.bytes_pending),
                    size(f.bytes_skipped),
                    plural(f.lines_dropped, "line") if f.lines_dropped else "0",
                    str(f.redactions),
                    str(f.rotations),
                    when(f.last_checked),
                    problem,
                ]
            )
    _print_fitted(
        out,
        "Logs",
        columns,
        rows,
        # What a person checks first: which file, is it stuck, how far behind, is it moving, was anything lost.
        order=[
            *("log", "path", "problem", "pending", "lines", "copied", "dropped", "skipped", "last checked"),
            *("redactions", "rotations"),
        ],
        paths={"path"},
        texts={"problem"},
        right={"lines", "redactions", "rotations"},
    )

    q = result.queue
    if result.exists and not q.get("batches"):
        out.print("Queue: empty")
    elif result.exists:
        out.print(
            f"Queue: {plural(q.get('batches', 0), 'batch')}, {plural(q.get('events', 0), 'event')},"
            f" {size(q.get('bytes', 0))}"
            f" ({size(q.get('stored_bytes', 0))} stored), oldest {ago(q.get('oldest_age'))} old"
        )
    if result.sinks:
        _sinks_table(out, result.sinks, now)
    if result.monitors:
        mcols = [
            "monitor",
            "type",
            "last run",
            "took",
            "outcome",
            "runs",
            "samples",
            "errors",
            "next due",
            "last error",
        ]
        mrows = []
        for m in result.monitors:
            due = "-" if m.next_due is None else ("now" if m.next_due <= now else f"in {ago(m.next_due - now)}")
            last = when(m.last_run) if out.width >= 150 else (f"{ago(now - m.last_run)} ago" if m.last_run else "never")
            values = [
                m.id,
                m.type,
                last,
                duration(m.last_duration),
                m.outcome or "-",
                str(m.runs),
                str(m.samples),
                str(m.errors),
                due,
                m.last_error or "",
            ]
            mrows.append(values)
        _print_fitted(
            out,
            "Monitors",
            mcols,
            mrows,
            order=[
                *("monitor", "outcome", "last error", "last run", "next due", "errors", "type", "took", "runs"),
                "samples",
            ],
            texts={"last error"},
            right={"runs", "samples", "errors"},
        )
    if result.scripts:
        scripts = Table(title="Scripts", title_justify="left")
        for col in ("monitor", "command", "last step", "exit", "bad lines (last/total)", "stderr (tail)"):
            scripts.add_column(col, overflow="fold")
        for sc in result.scripts:
            code = "killed" if sc["killed"] else "-" if sc["last_exit"] is None else str(sc["last_exit"])
            tail = " | ".join(x for x in sc["stderr_tail"].splitlines()[-3:] if x.strip())
            bad = f"{sc['bad_lines']}/{sc['bad_lines_total']}"
            cells = (sc["monitor"], sc["command"], sc["last_step"] or "-", code, bad, tail)
            scripts.add_row(*cells)
        out.print(scripts)
    if result.metric:
        _metric_history(out, result)
    if result.notices:
        out.print("Recent problems:" if not verbose else "Problems (newest first):")
        for n in result.notices:
            out.print(f"  {when(n['ts'])} {n['source']}: {n['message']}")
    if result.info_notices:  # news, not problems (a file shadowed by an earlier [[logs]] entry)
        out.print("Recent notices:" if not verbose else "Notices (newest first):")
        for n in result.info_notices:
            out.print(f"  {when(n['ts'])} {n['source']}: {n['message']}")
    if result.problems:  # reported once on stderr by the run that met each; shown here until it clears
        out.print("Ongoing problems (reported once; runs stay quiet until they change or clear):")
        for p in result.problems:
            out.print(f"  since {when(p['since'])}: {p['problem']}")
    if verbose and result.runs:
        out.print("Recent runs (newest first):")
        for r in result.runs:
            out.print(f"  {when(r['started'])} {r['command']}: exit {r['exit_code']} {json.dumps(r['summary'])}")


# A path column narrower than this (or than a third of the terminal) is more line breaks than path; a
# message column narrower than TEXT_MIN, more breaks than words.
PATH_MIN = 24
TEXT_MIN = 20


def _print_fitted(
    out: Console,
    title: str,
    columns: list[str],
    rows: list[list[str]],
    *,
    order: list[str],
    paths: AbstractSet[str] = frozenset(),
    texts: AbstractSet[str] = frozenset(),
    right: AbstractSet[str] = frozenset(),
) -> None:
    """A table that fits the terminal. ``order`` ranks the columns from most to least important: when they
    do not all fit, the less important ones that do not fit are left out and a line under the table names
    them. Paths wrap after a ``/`` (never inside a name), messages at spaces; other cells stay on one line."""
    width = out.width

    def natural(col: str) -> int:
        i = columns.index(col)
        return max([len(col)] + [len(line) for r in rows for line in (r[i].splitlines() or [""])])

    def least(col: str) -> int:  # the narrowest a column may be drawn
        n = natural(col)
        if col in paths:
            return min(n, max(PATH_MIN, width // 3))
        return min(n, TEXT_MIN) if col in texts else n

    # In order of importance, each column that still fits (3: its padding and one border); a wide one that
    # does not fit leaves room for narrower, less important ones.
    kept: list[str] = []
    used = 1
    for c in order:
        if not kept or used + least(c) + 3 <= width:
            kept.append(c)
            used += least(c) + 3
    # The room left goes to the wrapping columns, most important first, up to what they need.
    sizes = {c: least(c) for c in kept}
    spare = width - 1 - sum(sizes[c] + 3 for c in kept)
    for c in kept:
        if c in paths or c in texts:
            grow = max(0, min(spare, natural(c) - sizes[c]))
            sizes[c] += grow
            spare -= grow
    table = Table(title=title, title_justify="left", expand=False)
    shown = [c for c in columns if c in kept]
    for c in shown:
        wraps = c in paths or c in texts
        table.add_column(
            c,
            justify="right" if c in right else "left",
            no_wrap=not wraps,
            overflow="fold",
            width=sizes[c] if wraps else None,
        )
    for r in rows:
        cells = dict(zip(columns, r, strict=True))
        table.add_row(*(_wrap_path(cells[c], sizes[c]) if c in paths else cells[c] for c in shown))
    out.print(table)
    hidden = [c for c in order if c not in kept]
    if hidden:
        out.print(
            f"{title}: {plural(len(hidden), 'column')} hidden at {width} columns: {', '.join(hidden)};"
            " widen the terminal or use --json"
        )


def _wrap_path(path: str, width: int) -> str:
    """Break a path after a ``/`` so each line fits ``width``; a single name longer than that is folded."""
    lines, current = [], ""
    for piece in re.findall(r"[^/]*/|[^/]+$", path):
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = ""
        current += piece
    return "\n".join([*lines, current])


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / (hi - lo) * len(SPARKS)))] for v in values)


def series_values(kind: str, points: list[list[float]]) -> list[float]:
    """What to draw: a gauge's values; a counter's per-second rate between samples (resets left out)."""
    if kind != "counter":
        return [v for _, v in points]
    return [(v - pv) / (t - pt) for (pt, pv), (t, v) in pairwise(points) if t > pt and v >= pv]


def metric(result: StatusResult) -> None:
    """``status --metric NAME``: only the metric's sparklines, one line per series."""
    _metric_history(console(), result)


def _metric_history(out: Console, result: StatusResult) -> None:
    if not result.metric_history:
        known = ", ".join(result.known_metrics) or "none yet"
        out.print(f"No history for metric {result.metric!r} (metrics with history: {known})")
        return
    out.print(f"History of {result.metric}:")
    for series in result.metric_history:
        points = series["points"]
        values = series_values(series["kind"], points)
        dims = " ".join(f"{k}={v}" for k, v in sorted(series["dims"].items()))
        label = f"{series['monitor']} {dims}".strip()
        what = "rate/s" if series["kind"] == "counter" else "value"
        if not values:
            out.print(f"  {label}: {len(points)} sample(s), not enough for a {what} yet")
            continue
        span = points[-1][0] - points[0][0]
        out.print(
            f"  {label}: {sparkline(values)} last {what} {values[-1]:.6g}, min {min(values):.6g},"
            f" max {max(values):.6g} ({plural(len(points), 'sample')} over {ago(span)}, up to {when(points[-1][0])})",
        )


class Bars:
    """One run's progress on stderr: bytes read by tail-once, and events delivered to each sink (its own bar,
    which appears when that sink has something to send; its total grows while tail-once still queues)."""

    def __init__(self, bar: Any, read_total: int | None) -> None:
        self._bar = bar
        self._read = bar.add_task("tail-once", total=read_total, unit="bytes") if read_total else None
        self._sinks: dict[str, Any] = {}
        self._lock = threading.Lock()  # sinks report from their own threads

    def read(self, n: int) -> None:
        if self._read is None:
            return
        self._bar.advance(self._read, n)
        task = self._bar.tasks[self._read]
        if task.total is not None and task.completed > task.total:  # a log grew since the total was taken
            self._bar.update(self._read, total=task.completed)

    def sent(self, sink: str, done: int, total: int) -> None:
        with self._lock:
            task = self._sinks.get(sink)
            if task is None:
                if total <= 0:
                    return
                task = self._sinks[sink] = self._bar.add_task(f"upload {sink}", total=total, unit="events")
        self._bar.update(task, completed=done, total=max(total, done))


@contextmanager
def progress(read_total: int | None) -> Iterator[Bars | None]:
    """Progress bars on stderr, only when stderr is a terminal (outside one rich draws once at the end)."""
    err = console(stderr=True)
    if not err.is_terminal:
        yield None
        return
    # Plain text columns: the console has markup off (ids and paths are shown as written), so a
    # "[progress.description]" style tag would be printed as it stands.
    with Progress(
        TextColumn("{task.description}", markup=False, style="progress.description"),
        BarColumn(),
        _Amount(),
        _Speed(),
        console=err,
        transient=True,
    ) as bar:
        yield Bars(bar, read_total)


def _amount(task: Task, value: float | None) -> str:
    if value is None:
        return "?"
    return f"{int(value)}" if task.fields.get("unit") == "events" else size(int(value))


class _Amount(ProgressColumn):
    """``12.0 MiB of 40.0 MiB``, or ``3000 of 5000 events``."""

    def render(self, task: Task) -> Text:
        unit = " events" if task.fields.get("unit") == "events" else ""
        return Text(f"{_amount(task, task.completed)} of {_amount(task, task.total)}{unit}", style="progress.download")


class _Speed(ProgressColumn):
    """``85.3 MiB/s``, or ``1200 events/s`` (binary units, as everywhere else)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("", style="progress.data.speed")
        rate = f"{speed:.0f} events" if task.fields.get("unit") == "events" else size(int(speed))
        return Text(f"{rate}/s", style="progress.data.speed")


def _sinks_table(out: Any, sinks: list[dict[str, Any]], now: float) -> None:
    """One row per configured sink: what it has still to deliver from its cursor, and how it is doing."""
    columns = ["sink", "type", "pending", "oldest", "delivered", "last success", "last reply", "discarded", "dropped"]
    rows = []
    for up in sinks:
        reply = up["last_status"] or "-"
        message = (up["last_message"] or "").removeprefix(f"{up['last_status']}: ")
        if message and message != up["last_status"]:
            reply += f" ({message})"
        if up["next_attempt"] and up["next_attempt"] > now:
            failures = plural(up["consecutive_failures"], "failure")
            reply += f"; backing off after {failures} until {when(up['next_attempt'])}"
        values = {
            "sink": up["sink"],
            "type": up["type"],
            "pending": f"{plural(up['pending_events'], 'event')}, {size(up['pending_bytes'])}",
            "oldest": ago(up["oldest_pending_age"]) if up["oldest_pending_age"] else "-",
            "delivered": f"{plural(up['events_uploaded'], 'event')}, {size(up['bytes_uploaded'])}",
            # A narrow terminal gets "5m ago": the room goes to what was lost (dropped, discarded).
            "last success": when(up["last_success"]) if out.width >= 150 else _ago_at(up["last_success"], now),
            "last reply": reply,
            "discarded": str(up["events_discarded"]),
            "dropped": str(up.get("events_dropped") or up["batches_dropped"]),
        }
        rows.append([values[c] for c in columns])
    _print_fitted(
        out,
        "Sinks",
        columns,
        rows,
        order=["sink", "pending", "last reply", "oldest", "last success", "dropped", "discarded", "delivered", "type"],
        texts={"last reply"},
        right={"discarded", "dropped"},
    )
    for up in sinks:
        if up["batches_dropped"]:
            out.print(
                f"{up['sink']}: DROPPED {plural(up['batches_dropped'], 'oldest batch')} unsent: the queue went over"
                " agent.max_queue_bytes (see the problems below)",
                style="bold red",
            )
        if up["next_attempt"] and up["next_attempt"] > now:
            out.print(
                f"{up['sink']}: backing off after {plural(up['consecutive_failures'], 'failure')} until"
                f" {when(up['next_attempt'])}",
                style="bold red",
            )


def state_size_line(result: StatusResult) -> str:
    """The state file's size and its WAL's, for status (``State file: ... (12.0 MiB + 1.0 MiB WAL)``)."""
    if result.state_bytes is None:
        return ""
    wal = f" + {size(result.wal_bytes)} WAL" if result.wal_bytes else ""
    return f"{size(result.state_bytes)}{wal}"


def state_check(result: Any) -> None:
    """``shipctl state check``: one line per aspect, then the verdict."""
    rep = result.report
    out = console()
    files = f"{size(rep.size)}" if rep.exists else "missing"
    out.print(f"State file:  {rep.path} ({files}" + (f" + {size(rep.wal_size)} WAL)" if rep.wal_size else ")"))
    if rep.earlier_runs and (not rep.exists or rep.size == 0):
        out.print(f"Earlier runs: {rep.earlier_runs}")
    if rep.open_error:
        out.print(f"Opening:     FAILED: {rep.open_error}")
    if rep.integrity:
        first = rep.integrity[0]
        more = f" (and {len(rep.integrity) - 1} more)" if len(rep.integrity) > 1 else ""
        out.print(f"Integrity:   {'ok' if rep.integrity == ['ok'] else 'FAILED: ' + first + more}")
    if rep.schema_version is not None:
        missing = f"; MISSING: {', '.join(rep.missing)}" if rep.missing else ""
        out.print(f"Schema:      version {rep.schema_version} of {rep.known_version}{missing}")
    if rep.session is not None or rep.next_sn is not None:
        out.print(f"Session:     {rep.session or '(unreadable)'}, next sequence number {rep.next_sn or '(unreadable)'}")
    if rep.queue:
        q = rep.queue
        span = f", sn {q['first_sn']}-{q['last_sn']}" if q.get("batches") else ""
        readable = (
            f"{plural(q['batches'], 'batch')} readable ({plural(q['events'], 'event')}, {size(q['bytes'])}{span})"
        )
        out.print(f"Queue:       {readable}")
    if rep.lost_batches:
        out.print(f"             {plural(len(rep.lost_batches), 'batch')} UNREADABLE (first sn {rep.lost_batches[0]})")
    for b in rep.undecodable[:20]:  # rows that read, but whose attrs or payload do not decode
        out.print(
            f"             batch {b['id']} (sn {b['sn']}..{b['last_sn']}, {b['kind']} source {b['source']!r},"
            f" {plural(b['events'], 'event')}) CANNOT BE DECODED: {b['reason']}",
            overflow="fold",
        )
    if len(rep.undecodable) > 20:
        out.print(f"             ... and {plural(len(rep.undecodable) - 20, 'more batch')} that cannot be decoded")
    if "files" in rep.tables or rep.tracked_files:
        out.print(f"Files:       {rep.tracked_files} tracked files readable")
    for s in rep.sinks:
        out.print(f"Sink:        {s['sink']}: cursor at sn {s['acked_sn']}")
    for name, t in sorted(rep.tables.items()):
        if not t.complete:
            what = "missing" if not t.present else f"read in part: {t.rows} rows, {t.unreadable} lost"
            what += f"; {t.error}" if t.present and t.error else ""
            out.print(f"Table:       {name}: {what}")
    if rep.damaged:
        out.print(f"Offsets:     {'LOST for some files' if rep.offsets_lost else 'all recoverable'}")
    out.print(f"Verdict:     {rep.verdict}")


def state_recover(result: Any) -> None:
    """``shipctl state recover``: what was moved aside, what was saved, what was lost."""
    out = console()
    if not result.done:
        for note in result.notes:
            out.print(note)
        return
    out.print(f"Damaged file moved to {result.quarantined}")
    out.print(
        f"Rebuilt {result.path}: {plural(result.batches, 'queued batch')} ({plural(result.events, 'event')}),"
        f" {result.tracked_files} file offsets, {len(result.cursors)} sink cursors recovered"
    )
    if result.logs_from:
        where = "their current end" if result.logs_from == "end" else "their start"
        out.print(
            f"Logs without a recovered offset resume from {where} ({plural(len(result.positioned), 'file')} set at end)"
        )
    for name in result.missing_tables:
        out.print(f"Table {name} was missing: rebuilt empty")
    for name in result.damaged_tables:
        lost = result.unreadable.get(name)
        out.print(f"Table {name} was read in part" + (f" ({plural(lost, 'row')} lost)" if lost else ""))
    for note in result.notes:
        out.print(note)
