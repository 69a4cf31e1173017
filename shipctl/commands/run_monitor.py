"""``shipctl run-monitor``: run configured monitors (all, some, or only those due) or one ad hoc."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shipctl import plugins, schema
from shipctl.commands.common import Context, log
from shipctl.config import MonitorConfig
from shipctl.errors import ConfigError, UsageError
from shipctl.model import FMT_JSON, PendingBatch
from shipctl.monitors.base import MonitorOutput, to_events
from shipctl.state import monitors as monstate
from shipctl.state.queue import insert_batch


@dataclass
class MonitorResult:
    id: str
    type: str
    module: str
    started: float
    duration: float
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunMonitorResult:
    results: list[MonitorResult] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    queued: bool = True

    @property
    def errors(self) -> list[str]:
        return [f"monitor {r.id}: {r.error}" for r in self.results if r.error]


def _execute(mon: MonitorConfig) -> MonitorResult:
    kind, options = plugins.monitor_options(mon)
    monitor = plugins.resolve(kind.factory)(options)
    started = time.time()
    t0 = time.monotonic()
    try:
        out = monitor.sample()
    except Exception as exc:  # a monitor's bug must not stop the other monitors or the upload
        log.exception("monitor %s crashed", mon.id)
        out = MonitorOutput(error=f"crashed: {type(exc).__name__}: {exc}")
    events = to_events(monitor.module, mon.id, out)
    return MonitorResult(mon.id, mon.type, monitor.module, started, time.monotonic() - t0, events, out.error)


def run_all(monitors: list[MonitorConfig]) -> list[MonitorResult]:
    """Run monitors concurrently; each has its own timeout, so one hanging never holds the others."""
    if len(monitors) <= 1:
        return [_execute(m) for m in monitors]
    with ThreadPoolExecutor(max_workers=min(16, len(monitors))) as pool:
        return list(pool.map(_execute, monitors))


def run_monitors(
    ctx: Context, targets: list[str], *, due_only: bool, queue: bool = True, now: float | None = None
) -> RunMonitorResult:
    now = time.time() if now is None else now
    configured = {m.id: m for m in ctx.config.monitors}
    for t in targets:
        if t not in configured:
            known = ", ".join(configured) or "none configured"
            raise UsageError(f"no monitor with id {t!r} in {ctx.config.file} (configured: {known})")
    chosen = [configured[t] for t in targets] if targets else list(configured.values())
    result = RunMonitorResult(queued=queue)
    if due_only:
        last = monstate.last_runs(ctx.state.conn)
        due = []
        for m in chosen:
            # A little slack so a timer firing every interval does not miss by a few milliseconds.
            if m.id in last and now - last[m.id] < m.sample_interval - 1.0:
                result.not_due.append(m.id)
            else:
                due.append(m)
        chosen = due
    result.results = run_all(chosen)
    attrs = ctx.config.server_attributes
    with ctx.state.write() as conn:
        for r in result.results:
            if queue:
                _queue(conn, attrs, r)
            if queue:
                monstate.record(
                    conn,
                    r.id,
                    r.type,
                    now if due_only else r.started,
                    r.duration,
                    sum(1 for e in r.events if e.get("k") == "metric"),
                    r.error,
                )
            if r.error:
                ctx.state.notice(f"monitor:{r.id}", "error", r.error)
                log.warning("monitor %s: %s", r.id, r.error)
    return result


def _queue(conn: Any, attrs: dict[str, Any], r: MonitorResult) -> None:
    if r.events:
        insert_batch(
            conn,
            PendingBatch(
                kind="metric",
                source=r.id,
                ts=time.time_ns(),
                attrs=attrs,
                fmt=FMT_JSON,
                payload=json.dumps(r.events, separators=(",", ":")).encode(),
                n_events=len(r.events),
            ),
        )


def adhoc_config(mtype: str, options: dict[str, Any]) -> MonitorConfig:
    """A monitor built from command-line options, validated like a configured one."""
    import types

    where = schema.Where("<command line>", "")
    mon = MonitorConfig(mtype, mtype, 30.0, types.MappingProxyType(options), where)
    try:
        plugins.monitor_options(mon)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("<command line>: type", f"<command line>: monitor type {mtype!r}"))
    return mon


def run_adhoc(ctx: Context | None, mon: MonitorConfig, *, queue: bool) -> RunMonitorResult:
    result = RunMonitorResult(results=[_execute(mon)], queued=queue)
    if queue and ctx is not None:
        r = result.results[0]
        with ctx.state.write() as conn:
            _queue(conn, ctx.config.server_attributes, r)
            if r.error:
                ctx.state.notice(f"monitor:{r.id}", "error", r.error)
    return result


def parse_opt(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as TOML when it parses, else a string."""
    import tomllib

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--opt expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
