"""Self-metrics after every run: shipctl's own lag, backlog, throughput and failures.

Two ways out, the same figures in both:
- ``[agent] textfile = ".../shipctl.prom"``: the Prometheus text exposition format, for node_exporter's textfile
  collector, written atomically (a temp file in the same directory, then rename) with mode 0644;
- ``[agent] implicit_shipctl_monitor = true``: a snapshot in the state file that the implicit ``shipctl`` monitor
  (shipctl/monitors/selfmon.py) turns into metric events at its next run, so they reach every sink.

The figures come from what ``status`` gathers (passed in as ``gather``): one set of queries for the table, the
check and the metrics.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shipctl.errors import ShipctlError
from shipctl.monitors.implicit import wanted, wants_snapshot  # there, so that every run asks cheaply
from shipctl.records import record
from shipctl.runtime import Context, log
from shipctl.state import health as healthstate

if TYPE_CHECKING:
    from shipctl.commands.status import StatusResult
    from shipctl.config import Config

GAUGE, COUNTER = "gauge", "counter"
PROBLEM = "self-metrics: "  # how its problems are keyed among the state file's lasting problems

# name -> (type, help). Names follow the Prometheus conventions: base units, _total for counters.
METRICS: dict[str, tuple[str, str]] = {
    "shipctl_sink_lag_seconds": (GAUGE, "Age of the oldest queued batch the sink has not delivered (0: none)."),
    "shipctl_sink_backlog_batches": (GAUGE, "Batches queued for the sink and not delivered yet."),
    "shipctl_sink_backlog_events": (GAUGE, "Events queued for the sink and not delivered yet."),
    "shipctl_sink_backlog_bytes": (GAUGE, "Bytes queued for the sink and not delivered yet."),
    "shipctl_sink_events_sent_total": (COUNTER, "Events the sink's receiver accepted."),
    "shipctl_sink_bytes_sent_total": (COUNTER, "Bytes of events the sink's receiver accepted."),
    "shipctl_sink_events_discarded_total": (COUNTER, "Events the sink's receiver refused and shipctl gave up on."),
    "shipctl_sink_events_dropped_total": (COUNTER, "Events lost unsent: queue cap, or a batch that did not decode."),
    "shipctl_sink_consecutive_failures": (GAUGE, "Failed uploads to the sink since its last success."),
    "shipctl_sink_last_success_timestamp_seconds": (GAUGE, "When the sink last delivered (unix time)."),
    "shipctl_log_lines_read_total": (COUNTER, "Lines read from the log's files into the queue."),
    "shipctl_log_bytes_read_total": (COUNTER, "Bytes read from the log's files into the queue."),
    "shipctl_log_unread_bytes": (GAUGE, "Bytes in the log's files not read yet."),
    "shipctl_log_queued_bytes": (GAUGE, "Bytes of the log's lines in the queue (not yet delivered to every sink)."),
    "shipctl_log_lag_seconds": (GAUGE, "Age of the log's oldest queued batch (0: none)."),
    "shipctl_log_read_errors": (GAUGE, "The log's files (or glob) that the latest run could not read."),
    "shipctl_queue_batches": (GAUGE, "Batches in the queue."),
    "shipctl_queue_events": (GAUGE, "Events in the queue."),
    "shipctl_queue_bytes": (GAUGE, "Bytes in the queue (uncompressed)."),
    "shipctl_run_duration_seconds": (GAUGE, "How long the command's latest run took."),
    "shipctl_run_exit_code": (GAUGE, "The exit code of the command's latest run."),
    "shipctl_run_last_success_timestamp_seconds": (GAUGE, "When the command last ended with exit 0 (unix time)."),
    "shipctl_monitor_failures_total": (COUNTER, "Runs of the monitor that failed."),
    "shipctl_monitors_failing": (GAUGE, "Monitors whose latest run failed."),
    "shipctl_state_file_bytes": (GAUGE, "Size of the state file."),
    "shipctl_state_wal_bytes": (GAUGE, "Size of the state file's write-ahead log."),
    "shipctl_problems": (GAUGE, "Problems that persist across runs (reported once; listed by status)."),
}


@record(frozen=True)
class Figure:
    """One sample of shipctl's own metrics: name, labels and value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float | int


def figures(res: StatusResult) -> list[Figure]:
    out: list[Figure] = []

    def add(name: str, value: Any, **labels: str) -> None:
        if value is not None:
            out.append(Figure(name, tuple(labels.items()), value))

    for s in res.sinks:
        sink = str(s["sink"])
        add("shipctl_sink_lag_seconds", round(s.get("oldest_pending_age") or 0.0, 3), sink=sink)
        add("shipctl_sink_backlog_batches", int(s.get("pending_batches") or 0), sink=sink)
        add("shipctl_sink_backlog_events", int(s.get("pending_events") or 0), sink=sink)
        add("shipctl_sink_backlog_bytes", int(s.get("pending_bytes") or 0), sink=sink)
        add("shipctl_sink_events_sent_total", int(s.get("events_uploaded") or 0), sink=sink)
        add("shipctl_sink_bytes_sent_total", int(s.get("bytes_uploaded") or 0), sink=sink)
        add("shipctl_sink_events_discarded_total", int(s.get("events_discarded") or 0), sink=sink)
        add("shipctl_sink_events_dropped_total", int(s.get("events_dropped") or 0), sink=sink)
        add("shipctl_sink_consecutive_failures", int(s.get("consecutive_failures") or 0), sink=sink)
        add("shipctl_sink_last_success_timestamp_seconds", s.get("last_success"), sink=sink)

    # Queued batches of a log are keyed by the path they were read from: map them back to their log.
    log_of = {f.path: lg.log_id for lg in res.logs for f in lg.files}
    queued: dict[str, list[float]] = {}
    for q in res.queue_sources:
        if q.get("kind") == "log" and q.get("source") in log_of:
            entry = queued.setdefault(log_of[q["source"]], [0, 0.0])
            entry[0] += int(q.get("bytes") or 0)
            entry[1] = min(entry[1] or q["oldest"], q["oldest"])
    for lg in res.logs:
        if lg.path == "(no longer configured)":
            continue
        errors = len(lg.read_errors())
        qbytes, oldest = queued.get(lg.log_id, [0, 0.0])
        add("shipctl_log_lines_read_total", sum(f.lines_copied for f in lg.files), log=lg.log_id)
        add("shipctl_log_bytes_read_total", sum(f.bytes_copied for f in lg.files), log=lg.log_id)
        add("shipctl_log_unread_bytes", sum(f.bytes_pending for f in lg.files), log=lg.log_id)
        add("shipctl_log_queued_bytes", int(qbytes), log=lg.log_id)
        add("shipctl_log_lag_seconds", round(max(0.0, res.now - oldest), 3) if oldest else 0, log=lg.log_id)
        add("shipctl_log_read_errors", errors, log=lg.log_id)

    add("shipctl_queue_batches", int(res.queue.get("batches") or 0))
    add("shipctl_queue_events", int(res.queue.get("events") or 0))
    add("shipctl_queue_bytes", int(res.queue.get("bytes") or 0))
    for command, r in sorted(res.commands.items()):
        if r.get("ended") is not None:
            add("shipctl_run_duration_seconds", round(r["ended"] - r["started"], 3), command=command)
        add("shipctl_run_exit_code", r.get("exit_code"), command=command)
        add("shipctl_run_last_success_timestamp_seconds", r.get("last_success"), command=command)
    for m in res.monitors:
        add("shipctl_monitor_failures_total", m.errors, monitor=m.id)
    add("shipctl_monitors_failing", sum(1 for m in res.monitors if m.outcome == "error"))
    add("shipctl_state_file_bytes", res.state_bytes)
    add("shipctl_state_wal_bytes", res.wal_bytes)
    add("shipctl_problems", len(res.problems))
    return out


def _label_value(value: str) -> str:
    # The exposition format's escapes for a label value: backslash, double quote and line feed.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float | int) -> str:
    if isinstance(v, bool):
        return str(int(v))
    return str(v) if isinstance(v, int) else repr(float(v))


def exposition(figs: list[Figure]) -> str:
    """The Prometheus text format (version 0.0.4): HELP and TYPE once per metric, then its samples."""
    by_name: dict[str, list[Figure]] = {}
    for f in figs:
        by_name.setdefault(f.name, []).append(f)
    lines = []
    for name, group in by_name.items():
        kind, text = METRICS[name]
        lines.append(f"# HELP {name} {_help(text)}")
        lines.append(f"# TYPE {name} {kind}")
        for f in group:
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in f.labels)
            lines.append(f"{name}{{{labels}}} {_value(f.value)}" if labels else f"{name} {_value(f.value)}")
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Atomically: node_exporter scrapes at any moment and must never see half a file. The temp file lives in the
    same directory (rename is atomic only within a file system) and does not end in .prom (never collected)."""
    import tempfile

    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory or ".")
    try:
        os.fchmod(fd, 0o644)  # node_exporter usually runs as its own user
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def after_run(ctx: Context, gather: Callable[[Config], StatusResult]) -> str | None:
    """Write the textfile and/or the snapshot, if configured. Returns a problem to report (None: fine, or already
    reported by an earlier run): self-metrics never fail the run that they describe."""
    agent = ctx.config.agent
    if not wanted(ctx.config):
        return None
    now = time.time()
    problem = None
    try:
        figs = figures(gather(ctx.config))
    except ShipctlError as exc:
        problem = f"{PROBLEM}cannot gather them: {exc.message}"
    else:
        if wants_snapshot(ctx.config):
            snap = {"ts": now, "figures": [[f.name, METRICS[f.name][0], dict(f.labels), f.value] for f in figs]}
            with ctx.state.write() as conn:
                healthstate.save_snapshot(conn, snap)
        if agent.textfile:
            try:
                write_textfile(agent.textfile, exposition(figs))
            except OSError as exc:
                problem = f"{PROBLEM}textfile {agent.textfile}: cannot write it: {exc.strerror or exc}"
    known = [p for p in healthstate.problems(ctx.state.conn) if p.text.startswith(PROBLEM)]
    if problem is None and not known:
        return None  # the usual case: no write transaction
    with ctx.state.write() as conn:
        changes = healthstate.update(conn, [problem] if problem else [], lambda t: t.startswith(PROBLEM), now)
    if changes.new:
        log.warning("%s", changes.new[0])
        return changes.new[0]
    return None
