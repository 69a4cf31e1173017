"""The monitor runner (``run-monitor``, and ``run``'s monitors): configured monitors (all, some, or only those
due) or one ad hoc.

Monitors of one run execute concurrently, each in a daemon thread with a deadline (its own ``timeout`` option,
or DEFAULT_LIMIT, plus GRACE): one that hangs anyway is abandoned with an error, so it never holds up the
others, the queueing or the upload. Samples then go through the metric history (Difference and rate for
counters) inside the same transaction that queues them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import field
from typing import Any

from shipctl import plugins, schema
from shipctl.config import Config, MonitorConfig
from shipctl.errors import ConfigError, MonitorSetupError, UsageError
from shipctl.model import FMT_JSON, PendingBatch
from shipctl.monitors.base import Derived, MonitorOutput, is_number, to_events
from shipctl.monitors.implicit import effective_monitors
from shipctl.records import record
from shipctl.runtime import Context, log
from shipctl.state import health
from shipctl.state import monitors as monstate
from shipctl.state.queue import insert_batch

DEFAULT_LIMIT = 60.0  # seconds a monitor without a timeout option may take
GRACE = 5.0  # beyond a monitor's own timeout, before it is abandoned


# A failing monitor's message often carries details that differ on every run: a duration ("after 10.02 s"), a
# PID, a port, an exit status, a hex address. Keying on the message with every number masked keeps "the same
# kind of problem" one problem across runs, while a different failure (another wording) is news. The error
# class alone would not do: most monitors report a plain string (a script's stderr, an HTTP status line), and
# two different failures of one script would share one class.
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


def problem_key(monitor_id: str, error: str) -> str:
    """How a monitor's failure is keyed among the state file's lasting problems (commands/problems.py)."""
    return f"monitor {monitor_id}: {_NUMBERS.sub('#', error)}"


@record
class MonitorResult:
    """One monitor's run: when, how long, its events, and its error or warnings."""

    id: str
    type: str
    module: str
    started: float
    duration: float
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    samples: int = 0
    output: MonitorOutput | None = field(default=None, repr=False)  # raw, until the history is applied
    info: dict[str, Any] | None = None  # what the monitor wants an operator to see with --print (a script's config)


@record
class RunMonitorResult:
    """What one ``run-monitor`` (or ``run``'s monitor step) did, monitor by monitor."""

    results: list[MonitorResult] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    queued: bool = True
    # agent.plugins_dir problems met for the first time (not found, an id taken, too many entries): the plugins
    # it would have run do not run, so the run says so once, as for an unreadable log (status keeps showing it).
    setup_errors: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.setup_errors + [f"monitor {r.id}: {r.error}" for r in self.results if r.error]

    @property
    def warnings(self) -> list[str]:
        return [f"monitor {r.id}: {w}" for r in self.results for w in r.warnings]


@record
class _Job:
    """A monitor to run in this pass, and its result once it has run."""

    mon: MonitorConfig
    module: str
    monitor: Any
    limit: float
    result: MonitorResult | None = None


def monitors_of(config: Config) -> tuple[MonitorConfig, ...]:
    """What ``run`` and ``run-monitor`` consider configured: the config's monitors plus the implicit ones."""
    return effective_monitors(config)


def is_due(last_run: float | None, interval: float, now: float) -> bool:
    """Due once the interval has elapsed since the last run, less a little slack (a tenth of the interval,
    1 to 15 s) so a timer firing every interval with some jitter does not skip every other tick."""
    if last_run is None:
        return True
    slack = min(15.0, max(1.0, interval / 10))
    return now - last_run >= interval - slack


def intervals(conn: Any, monitors: list[MonitorConfig]) -> dict[str, float]:
    """Each monitor's interval: its ``sample_interval``, unless its factory has ``interval(conn, monitor_id,
    options)`` returning its own (a script's period comes from its cached ``-c`` output)."""
    out = {}
    for m in monitors:
        try:
            kind, options = plugins.monitor_options(m)
        except MonitorSetupError:  # run_all reports it; status shows the configured interval
            out[m.id] = m.sample_interval
            continue
        try:
            hook = getattr(plugins.resolve(kind.factory), "interval", None)
        except Exception:  # run_all reports a monitor that cannot be set up
            hook = None
        own = hook(conn, m.id, options) if hook is not None else None
        out[m.id] = float(own) if own else m.sample_interval
    return out


def _prepare(mon: MonitorConfig) -> _Job:
    kind, options = plugins.monitor_options(mon)
    factory = plugins.resolve(kind.factory)
    monitor = factory(options, mon.id) if getattr(factory, "wants_id", False) else factory(options)
    timeout = getattr(options, "timeout", None)
    limit = (float(timeout) if is_number(timeout) and timeout > 0 else DEFAULT_LIMIT) + GRACE
    return _Job(mon, getattr(monitor, "module", mon.type), monitor, limit)


def _execute(job: _Job) -> None:
    mon = job.mon
    started = time.time()
    t0 = time.monotonic()
    try:
        out = job.monitor.sample()
    except Exception as exc:  # a monitor's bug must not stop the other monitors or the upload
        log.exception("monitor %s crashed", mon.id)
        out = MonitorOutput(error=f"crashed: {type(exc).__name__}: {exc}")
    job.result = MonitorResult(
        mon.id, mon.type, job.module, started, time.monotonic() - t0, [], out.error, list(out.warnings), output=out
    )


def run_all(monitors: list[MonitorConfig], conn: Any = None) -> list[MonitorResult]:
    """Run monitors concurrently; each has a deadline, so one hanging never holds the others. With ``conn``, a
    monitor with ``restore_state(conn)`` reads what it keeps in the state file first, here in the main thread
    (the connection must not be used from the workers)."""
    jobs: list[_Job] = []
    failed: dict[int, MonitorResult] = {}
    for i, mon in enumerate(monitors):
        try:
            job = _prepare(mon)
            if conn is not None and (restore := getattr(job.monitor, "restore_state", None)) is not None:
                restore(conn)
            jobs.append(job)
        except ConfigError:
            raise
        except Exception as exc:  # a plugin failing to construct is that monitor's error only
            log.exception("monitor %s could not be set up", mon.id)
            failed[i] = MonitorResult(mon.id, mon.type, mon.type, time.time(), 0.0, error=f"cannot set up: {exc}")
            jobs.append(_Job(mon, mon.type, None, 0.0))
    t0 = time.monotonic()
    threads = []
    for i, job in enumerate(jobs):
        if i in failed:
            continue
        # Daemon threads: an abandoned one must not keep the process alive at exit.
        t = threading.Thread(target=_execute, args=(job,), name=f"monitor {job.mon.id}", daemon=True)
        t.start()
        threads.append((i, job, t))
    results: dict[int, MonitorResult] = dict(failed)
    for i, job, t in threads:
        t.join(max(0.0, t0 + job.limit - time.monotonic()))
        res = job.result
        if res is None:
            res = MonitorResult(
                job.mon.id,
                job.mon.type,
                job.module,
                time.time() - (time.monotonic() - t0),
                time.monotonic() - t0,
                error=f"did not finish within {job.limit:g} s; abandoned so the run could go on",
            )
            log.warning("monitor %s abandoned after %.0f s", job.mon.id, job.limit)
        results[i] = res
    return [results[i] for i in range(len(jobs))]


def _apply(r: MonitorResult, derived: list[Derived | None] | None = None) -> None:
    out = r.output
    if out is None:
        return
    r.samples = len(out.samples)
    r.info = getattr(out, "info", None)
    r.events = to_events(r.module, r.id, out, derived=derived)
    r.output = None


def _history(conn: Any, r: MonitorResult, interval: float, ts: float, *, store: bool) -> list[Derived | None]:
    """Difference and rate for this run's counters; with ``store`` the samples become the new history."""
    from shipctl.monitors.calc import derive, series_key, wants_history
    from shipctl.state import metrics

    assert r.output is not None
    known = metrics.load(conn, r.id)
    derived: list[Derived | None] = []
    points = []
    for s in r.output.samples:
        if not is_number(s.value):
            derived.append(None)
            continue
        key = series_key(s)
        derived.append(derive(known.get(key), s, ts, interval) if wants_history(s) else None)
        points.append(metrics.Point(key, s.kind, s.epoch, ts, s.value))  # type: ignore[arg-type]
    if store:
        metrics.store(conn, r.id, points, known, interval)
    return derived


def run_monitors(
    ctx: Context,
    targets: list[str],
    *,
    due_only: bool,
    queue: bool = True,
    now: float | None = None,
    scheduled_at: float | None = None,
) -> RunMonitorResult:
    """Run the named monitors (all configured and implicit ones if none named).

    ``now`` simulates the clock for both the schedule and the metric history (tests). ``scheduled_at`` is
    when the timer fired (``shipctl run`` passes its start): the schedule is checked against it, so the time
    tail-once took before does not make a monitor miss its tick; the history then uses the real sampling
    time of each monitor, so rates stay right.
    """
    sched = now if now is not None else (scheduled_at if scheduled_at is not None else time.time())
    configured = {m.id: m for m in monitors_of(ctx.config)}
    for t in targets:
        if t not in configured:
            known = ", ".join(configured) or "none configured"
            raise UsageError(f"no monitor with id {t!r} in {ctx.config.file} (configured: {known})")
    chosen = [configured[t] for t in targets] if targets else list(configured.values())
    result = RunMonitorResult(queued=queue)
    result.setup_errors = _plugins_dir_problems(ctx, queue=queue, now=sched)
    every = intervals(ctx.state.conn, chosen)
    if due_only:
        last = monstate.last_runs(ctx.state.conn)
        due = []
        for m in chosen:
            if is_due(last.get(m.id), every[m.id], sched):
                due.append(m)
            else:
                result.not_due.append(m.id)
        chosen = due
    if not chosen:
        return result
    result.results = run_all(chosen, ctx.state.conn)
    attrs = ctx.config.server_attributes
    with ctx.state.write() as conn:
        for r in result.results:
            if r.output is not None:
                if queue and (save := getattr(r.output, "save_state", None)) is not None:
                    save(conn)  # what the monitor keeps in the state file commits with its events
                ts = now if now is not None else r.started
                _apply(r, _history(conn, r, every[r.id], ts, store=queue))
            if queue:
                _queue(conn, attrs, r)
                started = sched if due_only else (now if now is not None else r.started)
                monstate.record(conn, r.id, r.type, started, r.duration, r.samples, r.error)
                for w in r.warnings:
                    ctx.state.notice(f"monitor:{r.id}", "warning", w)
            if r.error:
                # One notice per lasting failure, not one per run pushing every other notice out of status.
                if not health.is_ongoing(conn, problem_key(r.id, r.error)):
                    ctx.state.notice(f"monitor:{r.id}", "error", r.error)
                log.warning("monitor %s: %s", r.id, r.error)
        if queue:
            from shipctl.state import metrics

            metrics.prune(conn, sched, set(configured))
    return result


PLUGINS_DIR_PROBLEM = "plugins_dir: "  # how agent.plugins_dir's problems are keyed among the lasting problems


def _plugins_dir_problems(ctx: Context, *, queue: bool, now: float) -> list[str]:
    """What in agent.plugins_dir keeps plugins from running, new since the previous run (all of it when nothing
    is recorded: ``--print``). A problem that lasts is said once, and stays in status until it clears."""
    from shipctl.pyplugins.scan import scan
    from shipctl.state import health

    found = [PLUGINS_DIR_PROBLEM + p for p in scan(ctx.config).problems] if ctx.config.agent.plugins_dir else []
    if not queue:
        return found
    known = [p for p in health.problems(ctx.state.conn) if p.text.startswith(PLUGINS_DIR_PROBLEM)]
    if not found and not known:
        return []  # the usual case: no write transaction
    with ctx.state.write() as conn:
        changes = health.update(conn, found, lambda t: t.startswith(PLUGINS_DIR_PROBLEM), now)
    for text in changes.new:
        log.warning("%s", text)
    return changes.new


def _queue(conn: Any, attrs: dict[str, Any], r: MonitorResult) -> None:
    """Metrics and events go in batches of their own kind, so sinks can be routed by kind."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for e in r.events:
        kinds.setdefault(e.get("k", "metric"), []).append(e)
    for kind, events in kinds.items():
        if events:
            insert_batch(
                conn,
                PendingBatch(
                    kind=kind,
                    source=r.id,
                    ts=time.time_ns(),
                    attrs=attrs,
                    fmt=FMT_JSON,
                    payload=json.dumps(events, separators=(",", ":")).encode(),
                    n_events=len(events),
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
        raise ConfigError(str(exc).replace("<command line>: type", f"<command line>: monitor type {mtype!r}")) from None
    return mon


def run_adhoc(ctx: Context | None, mon: MonitorConfig, *, queue: bool) -> RunMonitorResult:
    """One monitor now, outside the schedule and the metric history (an operator trying it out)."""
    result = RunMonitorResult(results=run_all([mon]), queued=queue)
    r = result.results[0]
    _apply(r)
    if queue and ctx is not None:
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
