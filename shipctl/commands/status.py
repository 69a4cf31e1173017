"""``shipctl status``: where everything stands, from the state file alone (plus a stat per file)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, field
from typing import Any

from shipctl import __version__
from shipctl.config import Config
from shipctl.errors import ConfigError
from shipctl.monitors import runner as run_monitor
from shipctl.monitors.implicit import effective_monitors
from shipctl.records import record
from shipctl.state import State, report, resolve_state_path
from shipctl.state import scripts as scriptstate
from shipctl.state.db import file_sizes
from shipctl.state.queue import queue_stats


@record
class FileStatus:
    log_id: str
    path: str
    reading: str  # where the followed file is now (differs while a rotated file is finished)
    state: str
    bytes_copied: int
    lines_copied: int
    bytes_pending: int
    bytes_skipped: int
    lines_dropped: int
    bytes_dropped: int
    redactions: int
    rotations: int
    last_checked: float
    last_error: str | None


@record
class LogStatus:
    log_id: str
    path: str
    matched: int
    last_checked: float | None
    error: str | None
    files: list[FileStatus] = field(default_factory=list)

    def read_errors(self) -> list[str]:
        """What the latest run could not read: each file's error, and the log's own when it is about no file row
        (a glob matching nothing readable, a walk cut short). One list for status --check and the self-metrics."""
        if self.path == "(no longer configured)" or self.last_checked is None:
            return []  # gone from the config, or not looked at yet ("never checked" is no read error)
        errs = [f"log {self.log_id}: {f.path}: {f.last_error}" for f in self.files if f.last_error]
        if self.error and not any(f.last_error and f.last_error in self.error for f in self.files):
            errs.append(f"log {self.log_id}: {self.path}: {self.error}")
        return errs


@record
class MonitorStatus:
    id: str
    type: str
    interval: float | None
    last_run: float | None
    last_duration: float | None
    outcome: str | None
    runs: int
    samples: int
    errors: int
    last_error: str | None
    next_due: float | None


@record
class StatusResult:
    state_path: str
    exists: bool
    config_file: str
    now: float
    session: str = ""
    schema_version: int = 0
    state_bytes: int | None = None  # the state file's size on disk (None: not created yet)
    wal_bytes: int = 0  # its write-ahead log's
    logs: list[LogStatus] = field(default_factory=list)
    queue: dict[str, Any] = field(default_factory=dict)
    queue_sources: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    sinks: list[dict[str, Any]] = field(default_factory=list)  # one per configured sink: its cursor's lag
    monitors: list[MonitorStatus] = field(default_factory=list)
    scripts: list[dict[str, Any]] = field(default_factory=list)  # script monitors: last exit, stderr, bad lines
    notices: list[dict[str, Any]] = field(default_factory=list)  # warnings and errors: "Recent problems"
    info_notices: list[dict[str, Any]] = field(default_factory=list)  # info level: "Recent notices"
    runs: list[dict[str, Any]] = field(default_factory=list)
    metric: str | None = None  # asked for with --metric
    metric_history: list[dict[str, Any]] = field(default_factory=list)  # one entry per series, points oldest first
    known_metrics: list[str] = field(default_factory=list)  # when the asked metric has no history
    # Health (status --check, self-metrics): each command's latest run and latest success; ongoing problems.
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    # What the agent's ``status -v`` also shows: every config file read, the version, who runs it.
    config_files: list[str] = field(default_factory=list)
    config_warnings: list[str] = field(default_factory=list)  # e.g. a conf.d file that is not read
    version: str = ""
    user: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(config: Config, *, verbose: bool = False, metric: str | None = None) -> StatusResult:
    path = resolve_state_path(config.agent.state)
    result = StatusResult(str(path), path.exists(), config.file, time.time(), metric=metric)
    result.state_bytes, result.wal_bytes = file_sizes(path)
    result.config_files, result.version, result.user = list(config.files), __version__, _user()
    result.config_warnings = list(config.warnings)
    if not result.exists:
        result.logs = [LogStatus(lg.id, lg.path, 0, None, "never checked") for lg in config.logs]
        return result
    with State.open(path) as state:
        result.session = state.session
        result.schema_version = report.schema_version(state)
        _logs(state, config, result)
        q = queue_stats(state.conn)
        result.queue = {
            "batches": q.batches,
            "events": q.events,
            "bytes": q.bytes,
            "stored_bytes": q.stored_bytes,
            "oldest": q.oldest,
            "oldest_age": (result.now - q.oldest) if q.oldest else None,
        }
        result.queue_sources = report.queue_by_source(state)
        result.uploads = report.uploads(state)
        result.sinks = _sinks(state, config, result.uploads, result.now)
        monitors = effective_monitors(config)
        # A script's period (from its -c output) or a plugin's execute frequency overrides sample_interval.
        intervals = run_monitor.intervals(state.conn, monitors)
        result.scripts = scriptstate.rows(state.conn, {m.id for m in monitors if m.type == "script"})
        for row in report.monitors(state):
            interval = intervals.get(row["id"])
            result.monitors.append(
                MonitorStatus(
                    row["id"],
                    row["type"],
                    interval,
                    row["last_run"],
                    row["last_duration"],
                    row["last_outcome"],
                    row["runs"],
                    row["samples"],
                    row["errors"],
                    row["last_error"],
                    (row["last_run"] + interval) if interval and row["last_run"] else None,
                )
            )
        seen = {m.id for m in result.monitors}
        for m in monitors:
            if m.id not in seen:
                result.monitors.append(
                    MonitorStatus(m.id, m.type, intervals.get(m.id), None, None, None, 0, 0, 0, None, None)
                )
        if metric:
            _metric(state, metric, result)
        # Warnings and errors are problems; info (a file shadowed by an earlier [[logs]] entry, a rotated file
        # read to its end) is news, not a problem: listed apart, each with its own limit so one cannot push the
        # other out.
        keys = ("ts", "source", "level", "message")
        result.notices = [dict(zip(keys, n, strict=True)) for n in state.notices(50 if verbose else 5, info=False)]
        result.info_notices = [dict(zip(keys, n, strict=True)) for n in state.notices(50 if verbose else 5, info=True)]
        result.runs = [
            dict(zip(("command", "started", "ended", "exit_code", "summary"), r, strict=True))
            for r in state.last_runs(20 if verbose else 5)
        ]
        result.commands = report.runs_by_command(state)
        result.problems = report.problems(state)
    return result


def _user() -> str:
    import pwd

    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _metric(state: State, metric: str, result: StatusResult) -> None:
    import json

    from shipctl.state import metrics

    for series in metrics.history(state.conn, metric):
        series["dims"] = json.loads(series["dims"])
        series["points"] = [list(p) for p in series["points"]]
        result.metric_history.append(series)
    if not result.metric_history:
        result.known_metrics = metrics.metric_names(state.conn)


def _logs(state: State, config: Config, result: StatusResult) -> None:
    log_rows = report.logs(state)
    by_log: dict[str, list[dict[str, Any]]] = {}
    for f in report.files(state):
        by_log.setdefault(f["log_id"], []).append(f)
    configured = {lg.id: lg for lg in config.logs}
    for log_id in list(configured) + sorted(set(by_log) - set(configured)):
        lg = configured.get(log_id)
        row = log_rows.get(log_id, {})
        ls = LogStatus(
            log_id,
            lg.path if lg else "(no longer configured)",
            row.get("matched", 0),
            row.get("last_checked"),
            row.get("last_error") if row else "never checked",
        )
        for f in by_log.get(log_id, []):
            pending = 0
            if f["state"] == "active":
                with contextlib.suppress(OSError):
                    pending = max(0, os.stat(f["real_path"]).st_size - f["offset"])
            ls.files.append(
                FileStatus(
                    log_id,
                    f["path"],
                    f["real_path"],
                    f["state"],
                    f["bytes_copied"],
                    f["lines_copied"],
                    pending,
                    f["bytes_skipped"],
                    f["lines_dropped"],
                    f["bytes_dropped"],
                    f["redactions"],
                    f["rotations"],
                    f["last_checked"],
                    f["last_error"],
                )
            )
        result.logs.append(ls)


def _sinks(state: State, config: Config, uploads: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Each configured sink with what it has still to deliver from its cursor."""
    from shipctl import plugins
    from shipctl.state.queue import pending

    rows = {u["sink"]: u for u in uploads}
    out = []
    for sink in config.sinks:
        row = dict(rows.get(sink.id) or {"sink": sink.id})
        try:
            takes = plugins.route(sink).takes
        except ConfigError:
            continue  # check-config names it; status still shows the rest
        p = pending(state.conn, int(row.get("acked_sn") or 0), takes)
        row.update(
            type=sink.type,
            pending_batches=p.batches,
            pending_events=p.events,
            pending_bytes=p.bytes,
            oldest_pending_age=(now - p.oldest) if p.oldest else None,
        )
        for k in ("consecutive_failures", "events_uploaded", "bytes_uploaded", "events_discarded", "batches_dropped"):
            row.setdefault(k, 0)
        for k in ("last_success", "last_status", "last_message", "last_request_bytes", "next_attempt"):
            row.setdefault(k, None)
        out.append(row)
    return out
