"""The ``plugin`` monitor: run a python plugin once per matching resource, each under its (plugin, resource) lock.

Hooks of run_monitor, called in its main thread: ``interval`` makes the execute frequency the schedule,
``restore_state(conn)`` reads the plugin's key/value rows (and where the state file is, for the locks) before
the run, ``PluginOutput.save_state(conn)`` writes the changed ones back in the transaction that queues the events.

Resources run concurrently (``concurrency`` threads) within the plugin's ``timeout``; one still going then is
reported and left to finish in the background, holding its lock, so the next run skips that resource instead of
starting it twice. What the plugins return is checked, rate transforms are applied, and the groups become
``metric`` events — one per metric (``output = "events"``) or one per group holding the Panoptes metrics group
JSON (``output = "panoptes"``).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import field
from pathlib import Path

from shipctl import runtime
from shipctl.monitors.base import MonitorOutput, Sample
from shipctl.pyplugins import loader, locks, rates
from shipctl.pyplugins import resources as res_mod
from shipctl.pyplugins.context import PANOPTES_EXPIRE, KeyValueStore, PluginContext, Secrets, Snapshot
from shipctl.pyplugins.model import MetricsGroup, group_json, normalize
from shipctl.pyplugins.resources import Resource
from shipctl.pyplugins.spec import PluginSpec
from shipctl.records import record
from shipctl.state import kv as kvsql

log = runtime.log.real()  # set up (the tool's log file) before the plugins' loggers below it log
MAX_NOTES = 20  # warnings/errors kept per run; a plugin logging in a loop must not flood status
_current = threading.local()  # the resource a worker thread is running, for the log capture
# The plugins' clock (key/value expiry, rate transforms). Tests that simulate time with run_monitors(now=...)
# set it to the same simulated time.
clock: Callable[[], float] = time.time


@record
class ResourceRun:
    """What a plugin produced for one resource, and its errors and warnings."""

    resource: Resource
    groups: list[MetricsGroup] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Capture(logging.Handler):
    """The plugin's own warnings and errors become the run's warnings (shown by status), per resource."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.notes) < MAX_NOTES:
            rid = getattr(_current, "rid", "?")
            self.notes.append(f"resource {rid}: plugin logged {record.levelname}: {record.getMessage()}")


@record
class PluginOutput(MonitorOutput):
    """The run's events, and the plugin's key/value changes to commit with them."""

    snapshot: Snapshot | None = None
    plugin: str = ""
    ran_at: float = 0.0

    def save_state(self, conn: sqlite3.Connection) -> None:
        if self.snapshot is not None:
            self.snapshot.save(conn, self.plugin, self.ran_at)


class PluginMonitor:
    module = "python_plugin"

    def __init__(self, spec: PluginSpec) -> None:
        self.spec = spec
        self.snapshot = Snapshot()  # in memory only, unless restore_state reads the state file's
        self.state_path: Path | None = None

    @staticmethod
    def interval(conn: sqlite3.Connection, monitor_id: str, spec: PluginSpec) -> float | None:
        """The schedule of ``shipctl run``: the execute frequency (None: the monitor's sample_interval)."""
        return spec.sample_interval

    def restore_state(self, conn: sqlite3.Connection) -> None:
        self.snapshot = Snapshot(kvsql.load(conn, self.spec.monitor_id, clock()))
        path = kvsql.database_file(conn)
        self.state_path = Path(path) if path else None

    # --- one run -------------------------------------------------------------------------------------------
    def sample(self) -> PluginOutput:
        spec = self.spec
        if spec.disabled_why:
            return PluginOutput(warnings=[spec.disabled_why])
        try:
            found = (
                res_mod.load(spec.resources, config_file=spec.config_file) if spec.resources else [res_mod.this_host()]
            )
        except res_mod.ResourceError as exc:
            return PluginOutput(error=str(exc))
        rf = spec.resource_filter
        chosen = [r for r in found if rf is None or rf.matches(r)]
        if not chosen:
            what = f"resource_filter {rf.text!r}" if rf else "the plugin"
            return PluginOutput(warnings=[f"no resource to run: none of {len(found)} matches {what}"])
        try:
            entry = loader.load(spec.entry)
        except loader.LoadError as exc:
            return PluginOutput(error=f"plugin {spec.name}: {exc}")
        logger = logging.getLogger(f"shipctl.plugin.{spec.monitor_id}")
        capture = _Capture()
        logger.addHandler(capture)
        started = clock()
        try:
            runs = self._run_all(entry, chosen, logger)
        finally:
            logger.removeHandler(capture)
        out = self._output(runs, capture.notes)
        out.snapshot, out.plugin, out.ran_at = self.snapshot, spec.monitor_id, started
        return out

    def _run_all(self, entry: loader.Entry, chosen: list[Resource], logger: logging.Logger) -> list[ResourceRun]:
        """Run the resources on up to ``concurrency`` daemon threads; whatever is not done by the deadline is
        reported, and keeps running (with its lock) only if it had started."""
        spec = self.spec
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(chosen)):
            todo.put(i)
        runs: dict[int, ResourceRun] = {}
        started: set[int] = set()
        guard = threading.Lock()
        all_done = threading.Event()
        stop = threading.Event()

        def worker() -> None:
            while True:
                with guard:
                    if stop.is_set() or todo.empty():
                        return
                    i = todo.get()
                    started.add(i)
                try:
                    run = self._run_one(entry, chosen[i], logger)
                except Exception as exc:  # shipctl's side failed (a lock file that cannot be made, say)
                    log.exception("plugin %s: resource %s failed", spec.monitor_id, chosen[i].resource_id)
                    run = ResourceRun(chosen[i], errors=[f"resource {chosen[i].resource_id}: {loader.describe(exc)}"])
                with guard:
                    runs[i] = run
                    if len(runs) == len(chosen):
                        all_done.set()

        for n in range(min(spec.concurrency, len(chosen))):
            threading.Thread(target=worker, name=f"plugin {spec.monitor_id} #{n}", daemon=True).start()
        all_done.wait(spec.timeout)
        with guard:
            stop.set()
            out = []
            for i, r in enumerate(chosen):
                if i in runs:
                    out.append(runs[i])
                elif i in started:
                    out.append(
                        ResourceRun(
                            r,
                            errors=[
                                f"resource {r.resource_id}: plugin {spec.name} did not finish within "
                                f"{spec.timeout:g} s; it goes on in the background and this resource is skipped "
                                "until it ends"
                            ],
                        )
                    )
                else:
                    msg = f"resource {r.resource_id}: not run, the timeout of {spec.timeout:g} s was used up"
                    out.append(ResourceRun(r, errors=[msg]))
        return out

    def _run_one(self, entry: loader.Entry, resource: Resource, logger: logging.Logger) -> ResourceRun:
        spec = self.spec
        run = ResourceRun(resource)
        rid = resource.resource_id
        held = locks.try_lock(self.state_path, spec.monitor_id, resource.serialization_key)
        if isinstance(held, locks.Busy):
            holder = f" ({held.holder})" if held.holder else ""
            run.warnings.append(f"resource {rid}: skipped, the plugin is still running on it{holder}")
            return run
        try:
            now = clock()
            panoptes = spec.panoptes or entry.panoptes
            kv = KeyValueStore(
                self.snapshot, spec.monitor_id, clock, default_expire=PANOPTES_EXPIRE if panoptes else None
            )
            ctx = PluginContext(
                monitor_id=spec.monitor_id,
                name=spec.name,
                config=spec.fresh_config(),
                logger=logger,
                resource=resource,
                kv=kv,
                secrets=Secrets(spec.secrets),
                now=now,
                execute_frequency=spec.execute_frequency,
            )
            _current.rid = rid
            try:
                result = entry.call(ctx)
            except Exception as exc:
                log.exception("plugin %s (%s) crashed on resource %s", spec.monitor_id, entry.label, rid)
                run.errors.append(f"resource {rid}: plugin {spec.name} crashed: {loader.describe(exc)}")
                return run
            groups, problems = normalize(result, resource, spec.execute_frequency)
            run.errors += [f"resource {rid}: plugin {spec.name} returned a bad group: {p}" for p in problems]
            if spec.transforms and groups:
                store = KeyValueStore(self.snapshot, spec.monitor_id, clock, space=kvsql.RATE)
                run.warnings += [f"resource {rid}: {w}" for w in rates.apply(groups, spec.transforms, store, now)]
            run.groups = groups
        finally:
            _current.rid = None
            held.release()
        return run

    # --- events ---------------------------------------------------------------------------------------------
    def _output(self, runs: list[ResourceRun], logged: list[str]) -> PluginOutput:
        out = PluginOutput()
        errors: list[str] = []
        for run in runs:
            errors += run.errors
            out.warnings += run.warnings
            for g in run.groups:
                assert g.resource is not None
                base = {"group_type": g.group_type, **g.resource.attrs()}
                if self.spec.output == "panoptes":
                    # The group as Panoptes publishes it, plus its samples typed for the metric sinks.
                    typed = [
                        {
                            "n": m.name,
                            "v": m.value,
                            "t": m.kind,
                            "d": {
                                "monitor": self.spec.monitor_id,
                                **base,
                                **g.dimensions,
                                **({"transform": m.transform} if m.transform else {}),
                            },
                            **({"ts": int(m.ts * 1e9)} if m.ts is not None else {}),
                        }
                        for m in g.sorted_metrics()
                    ]
                    out.events.append(
                        {
                            "m": json.dumps(group_json(g)),
                            "a": {"monitor": self.module, **base},
                            "k": "metric",
                            "t": int(g.created * 1e9),
                            "xs": typed,
                        }
                    )
                    continue
                for m in g.sorted_metrics():
                    dims = {**base, **g.dimensions, **({"transform": m.transform} if m.transform else {})}
                    ts = int(m.ts * 1e9) if m.ts is not None else 0
                    out.samples.append(Sample(m.name, m.value, m.kind, dims, ts=ts))
        out.warnings = (out.warnings + logged)[:MAX_NOTES]
        if errors:
            more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
            out.error = "; ".join(errors[:3]) + more
        return out
