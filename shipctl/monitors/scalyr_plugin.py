"""The ``scalyr_monitor`` monitor: a monitor written for the Scalyr agent's plugin API, run unmodified.

    [[monitors]]
    type = "scalyr_monitor"
    id = "spool"
    module = "acme.spool_monitor"               # agent.json's "module"
    module_paths = ["/opt/acme/monitors"]        # agent.json's additional_monitor_module_paths
    config = { spool_dir = "/var/spool/acme" }   # the rest of the monitor's agent.json entry

Each run imports the module (once per process), finds its ``ScalyrMonitor`` subclass, builds it with ``config``
plus ``module``, ``id`` and ``sample_interval`` (so ``_initialize`` and the ``define_config_option`` rules run
as in the agent), calls ``gather_sample()`` once, and turns each ``emit_value`` into a metric event: the metric
name, the value, ``extra_fields`` as dimensions; metrics declared ``cumulative=True`` are counters (difference
and rate from the previous run). The module's own dependencies must be importable by shipctl's Python.

``module_paths`` entries are appended to ``sys.path`` (each may hold several directories joined by ``:``, as
the agent's option does; relative ones are relative to the config file). The ``scalyr_agent`` import paths come
from shipctl (see shipctl/scalyrapi) unless a real ``scalyr_agent`` package is importable, which then wins.

What makes the run fail, alone (exit 65, shown by ``status``; other monitors go on): a module that cannot be
imported or defines no ScalyrMonitor subclass, ``BadMonitorConfiguration`` or any error while the monitor is
built, ``UnsupportedSystem``, ``gather_sample`` raising (the values it emitted before that are kept), an error
the monitor logged, and a monitor that only overrides ``run()`` (a long-running server, which a run-to-completion
tool cannot host). Logged warnings are warnings of the run. The instance lives for one run: state a monitor
keeps in its attributes between samples starts afresh each run, as after an agent restart.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import sys
import threading
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipctl.config import MonitorConfig
from shipctl.monitors.base import COUNTER, GAUGE, MonitorOutput
from shipctl.records import record
from shipctl.schema import field, positive

COMPAT_DIR = Path(__file__).resolve().parent.parent / "_compat_scalyr"
RESERVED = ("module", "id", "sample_interval")  # set by the monitor entry itself, not inside ``config``
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_lock = threading.Lock()
_loaded: dict[str, tuple[tuple[str, ...], tuple[int, int] | None]] = {}  # module -> (paths, file stamp) it came from
_module_locks: dict[str, threading.Lock] = {}


def _dotted(value: str) -> str | None:
    return None if _DOTTED.fullmatch(value) else "expected a dotted module name such as acme.disk_monitor"


@record(frozen=True)
class ScalyrMonitorSpec:
    """The options resolved against the monitor entry: what a run needs."""

    monitor_id: str
    module: str
    module_paths: tuple[str, ...]
    config: Mapping[str, Any]
    sample_interval: float
    timeout: float


@record(frozen=True)
class ScalyrMonitorOptions:
    """Options of the ``scalyr_monitor`` monitor: a Scalyr agent monitor module run as a plugin."""

    module: str = field(check=_dotted, doc="the monitor's module, dotted (agent.json's module)")
    module_paths: tuple[str, ...] = field((), doc="directories added to the import path")
    # The monitor's own options (the rest of its agent.json entry).
    config: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    timeout: float = field(30.0, check=positive, doc="seconds gather_sample may take")

    def finish(self, mon: MonitorConfig) -> ScalyrMonitorSpec:
        for key in self.config:
            if key in RESERVED:
                what = "the monitor's id" if key == "id" else f"{key} of the [[monitors]] entry"
                raise mon.where.key("config").key(key).error(f"set by {what}, not inside config")
        base = Path(mon.where.file).parent if Path(mon.where.file).is_file() else Path.cwd()
        paths: list[str] = []
        for entry in self.module_paths:
            for part in entry.split(os.pathsep):
                if part:
                    paths.append(str(base / os.path.expanduser(part)))
        return ScalyrMonitorSpec(mon.id, self.module, tuple(paths), self.config, mon.sample_interval, self.timeout)


class LoadError(Exception):
    """The monitor's module cannot be imported or holds no monitor."""


def enable_scalyr_compat() -> bool:
    """Make ``scalyr_agent.*`` importable from shipctl, unless a real package is importable (then it wins). True
    when the compatibility package is the one monitors get."""
    if str(COMPAT_DIR) in sys.path:
        return True
    try:
        real = importlib.util.find_spec("scalyr_agent")
    except (ImportError, ValueError):
        real = None
    if real is not None:
        return False
    sys.path.append(str(COMPAT_DIR))
    return True


def _stamp(module: Any) -> tuple[int, int] | None:
    try:
        st = os.stat(module.__file__)
    except (OSError, TypeError, AttributeError):
        return None
    return st.st_mtime_ns, st.st_size


def _forget(name: str) -> None:
    """Drop a module imported from elsewhere (other paths, or a file changed since): the next import reads anew."""
    top = name.split(".")[0]
    if top == "scalyr_agent":
        return
    for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
        del sys.modules[key]


def load_class(spec: ScalyrMonitorSpec) -> type:
    from shipctl.pyplugins.loader import describe

    with _lock:  # monitors run in threads: sys.path changes one at a time
        for p in spec.module_paths:
            if p not in sys.path:
                sys.path.append(p)
        enable_scalyr_compat()
        module_lock = _module_locks.setdefault(spec.module, threading.Lock())
    # One import of a module at a time; a module whose import hangs holds up only the monitors of that module.
    with module_lock:
        if spec.module in sys.modules:
            previous = _loaded.get(spec.module)
            if previous is None or previous != (spec.module_paths, _stamp(sys.modules[spec.module])):
                _forget(spec.module)
        try:
            module = importlib.import_module(spec.module)
        except Exception as exc:
            if _named(exc, "UnsupportedSystem"):
                raise LoadError(f"{spec.module} is not supported on this system: {exc}") from None
            if isinstance(exc, ImportError):
                raise LoadError(f"cannot import {spec.module}: {exc}") from None
            raise LoadError(f"importing {spec.module} failed: {describe(exc)}") from None
        _loaded[spec.module] = (spec.module_paths, _stamp(module))
    found = [v for v in vars(module).values() if inspect.isclass(v) and _is_monitor_class(v)]
    own = [c for c in found if c.__module__ == module.__name__] or found
    leaves = [c for c in own if not any(o is not c and issubclass(o, c) for o in own)]
    if not leaves:
        raise LoadError(f"{spec.module} defines no ScalyrMonitor subclass")
    return leaves[0]


def _is_monitor_class(cls: type) -> bool:
    return any(
        b.__name__ == "ScalyrMonitor" and b.__module__.startswith(("scalyr_agent", "shipctl.scalyrapi"))
        for b in cls.__mro__[1:]
    )


def _named(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is the agent's exception ``name`` (from shipctl's API or a real scalyr_agent)."""
    return any(c.__name__ == name for c in type(exc).__mro__)


def _cumulative(module_name: str) -> set[str]:
    """The metrics the module declared cumulative, from whichever scalyr_agent it uses."""
    api = sys.modules.get("scalyr_agent.scalyr_monitor")
    info = api.MonitorInformation.get_monitor_info(module_name) if api is not None else None
    return {m.metric_name for m in getattr(info, "metrics", ()) if getattr(m, "cumulative", False)}


def _overrides(cls: type, method: str) -> bool:
    for klass in cls.__mro__:
        if klass.__name__ == "ScalyrMonitor":
            return False
        if method in vars(klass):
            return True
    return False


def _build(cls: type, monitor_config: dict[str, Any], logger: Any) -> Any:
    """As the agent builds a monitor; an old monitor whose __init__ has no ``global_config`` gets none."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    takes_global = "global_config" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if takes_global:
        return cls(monitor_config, logger, global_config=None)
    return cls(monitor_config, logger)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class ScalyrPluginMonitor:
    def __init__(self, spec: ScalyrMonitorSpec) -> None:
        self.spec = spec
        self.module = spec.module.rsplit(".", 1)[-1]  # the agent's "[module(id)]" uses the last part

    def sample(self) -> MonitorOutput:
        from shipctl.pyplugins.loader import describe
        from shipctl.scalyrapi.logger import AgentLogger, Capture, capturing

        spec = self.spec
        try:
            cls = load_class(spec)
        except LoadError as exc:
            return MonitorOutput(error=str(exc))
        counters = _cumulative(spec.module)
        capture = Capture(self.module, spec.monitor_id, lambda name: COUNTER if name in counters else GAUGE)
        logger = AgentLogger(f"{spec.module}({spec.monitor_id})", capture)
        monitor_config = {
            "module": spec.module,
            "id": spec.monitor_id,
            "sample_interval": spec.sample_interval,
            **_plain(spec.config),
        }
        error: str | None = None
        with capturing(capture):
            try:
                monitor = _build(cls, monitor_config, logger)
            except Exception as exc:
                if _named(exc, "BadMonitorConfiguration"):
                    message = getattr(exc, "message", None) or str(exc)
                    error = f"bad configuration: {message}"
                elif _named(exc, "UnsupportedSystem"):
                    error = f"not supported on this system: {exc}"
                else:
                    error = f"{cls.__name__} could not be set up: {describe(exc)}"
                return self._output(capture, error)
            if _overrides(cls, "run") and not _overrides(cls, "gather_sample"):
                error = (
                    f"{cls.__name__} overrides run() and not gather_sample(): it is a long-running monitor, and "
                    "shipctl takes one sample per run"
                )
            else:
                try:
                    monitor.gather_sample()
                except Exception as exc:  # as the agent: the monitor's error; what it emitted before counts
                    error = f"gather_sample failed: {describe(exc)}"
            try:
                monitor.stop(wait_on_join=False)  # the monitor's chance to release what it opened
            except Exception as exc:
                capture.warnings.append(f"stop() failed: {describe(exc)}")
        return self._output(capture, error)

    @staticmethod
    def _output(capture: Any, error: str | None) -> MonitorOutput:
        from shipctl.schema import scrub

        # An exception's text may quote the monitor's config (a password it was given): imported secrets masked,
        # in errors and in warnings (stop() failing) alike; what the monitor logged was masked as it logged it.
        errors = ([scrub(error)] if error else []) + [f"logged: {e}" for e in capture.errors]
        warnings = [scrub(w) for w in capture.warnings]
        if capture.dropped:
            warnings.append(f"{capture.dropped} values beyond the first {len(capture.samples)} of this run dropped")
        text = None
        if errors:
            more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
            text = "; ".join(errors[:3]) + more
        return MonitorOutput(samples=list(capture.samples), events=list(capture.events), error=text, warnings=warnings)
