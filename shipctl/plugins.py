"""Registry of monitor and sink types.

Built-ins register exactly as an outside package would: a ``register(registry)`` callable, found for
third parties through the ``shipctl.plugins`` entry-point group. Implementations are named as
``"module:attr"`` strings and imported only when used, so a run pays only for what it runs.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import field
from typing import Any

from shipctl import schema
from shipctl.config import MonitorConfig, SinkConfig
from shipctl.errors import ConfigError, MonitorSetupError
from shipctl.model import KINDS
from shipctl.records import record

ENTRY_POINT_GROUP = "shipctl.plugins"


@record(frozen=True)
class Kind:
    """A monitor or sink type: where its options and its factory are found."""

    name: str
    options: str  # "module:OptionsDataclass"
    factory: str  # "module:callable" -> the monitor or sink object
    carries: tuple[str, ...] = KINDS  # sinks: the kinds of event it can deliver


@record
class Registry:
    """Every monitor and sink type known: the built-in ones and those of plugins."""

    monitors: dict[str, Kind] = field(default_factory=dict)
    sinks: dict[str, Kind] = field(default_factory=dict)
    python_plugins: dict[str, str] = field(default_factory=dict)  # name -> "module:attr" (type = "plugin")

    def monitor(self, name: str, options: str, factory: str) -> None:
        self.monitors[name] = Kind(name, options, factory)

    def sink(self, name: str, options: str, factory: str, carries: tuple[str, ...] = KINDS) -> None:
        self.sinks[name] = Kind(name, options, factory, carries)

    def python_plugin(self, name: str, ref: str) -> None:
        """A polling plugin (class with run(context), or function) that ``plugin = NAME`` selects."""
        self.python_plugins[name] = ref


def register_builtins(reg: Registry) -> None:
    reg.monitor("shell", "shipctl.monitors.shell:ShellOptions", "shipctl.monitors.shell:ShellMonitor")
    reg.monitor("url", "shipctl.monitors.url:UrlOptions", "shipctl.monitors.url:UrlMonitor")
    reg.monitor("script", "shipctl.monitors.script:ScriptOptions", "shipctl.monitors.script:ScriptMonitor")
    reg.monitor(
        "linux_system_metrics",
        "shipctl.monitors.linux_system:SystemOptions",
        "shipctl.monitors.linux_system:SystemMetrics",
    )
    reg.monitor(
        "linux_process_metrics",
        "shipctl.monitors.linux_process:ProcessOptions",
        "shipctl.monitors.linux_process:ProcessMetrics",
    )
    reg.monitor("plugin", "shipctl.pyplugins.spec:PluginOptions", "shipctl.pyplugins.monitor:PluginMonitor")
    reg.monitor("shipctl_metrics", "shipctl.monitors.selfmon:ShipctlOptions", "shipctl.monitors.selfmon:ShipctlMetrics")
    reg.monitor("mysql", "shipctl.monitors.mysql:MysqlOptions", "shipctl.monitors.mysql:MysqlMonitor")
    reg.monitor(
        "scalyr_monitor",
        "shipctl.monitors.scalyr_plugin:ScalyrMonitorOptions",
        "shipctl.monitors.scalyr_plugin:ScalyrPluginMonitor",
    )
    reg.sink("file", "shipctl.sinks.jsonl:FileSinkOptions", "shipctl.sinks.jsonl:FileSink")
    reg.sink("stdout", "shipctl.sinks.jsonl:StdoutSinkOptions", "shipctl.sinks.jsonl:StdoutSink")
    reg.sink("scalyr", "shipctl.sinks.scalyr:ScalyrOptions", "shipctl.sinks.scalyr:ScalyrSink")
    reg.sink("influxdb", "shipctl.sinks.influxdb:InfluxOptions", "shipctl.sinks.influxdb:InfluxSink", ("metric",))
    reg.sink(
        "prometheus_remote_write",
        "shipctl.sinks.prometheus:RemoteWriteOptions",
        "shipctl.sinks.prometheus:RemoteWriteSink",
        ("metric",),
    )
    reg.sink("otlp", "shipctl.sinks.otlp:OtlpOptions", "shipctl.sinks.otlp:OtlpSink", ("log", "metric", "event"))
    reg.sink("kafka", "shipctl.sinks.kafka:KafkaOptions", "shipctl.sinks.kafka:KafkaSink")
    reg.sink("syslog", "shipctl.sinks.syslog:SyslogOptions", "shipctl.sinks.syslog:SyslogSink", ("log", "event"))


_registry: Registry | None = None
_entry_points_loaded = False


def registry(*, with_entry_points: bool = False) -> Registry:
    global _registry, _entry_points_loaded
    if _registry is None:
        _registry = Registry()
        register_builtins(_registry)
    if with_entry_points and not _entry_points_loaded:
        _entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()(_registry)
    return _registry


def resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    if not module.startswith("shipctl."):
        # A plugin's code may log to a logger below "shipctl" without going through shipctl.runtime.log:
        # set that up (the tool's log file) before it can.
        from shipctl.runtime import log

        log.real()
    return getattr(importlib.import_module(module), attr)


def _kind(table: str, name: str, where: schema.Where) -> Kind:
    kinds = getattr(registry(), table)
    if name not in kinds:
        kinds = getattr(registry(with_entry_points=True), table)
    if name not in kinds:
        raise where.key("type").error(f"unknown {table[:-1]} type {name!r} (known: {', '.join(sorted(kinds))})")
    return kinds[name]


def monitor_options(mon: MonitorConfig) -> tuple[Kind, Any]:
    """The monitor's options; ConfigError for a mistake in the config itself, MonitorSetupError when the
    files the options name (a plugin's descriptor, its module) are missing or broken."""
    kind = _kind("monitors", mon.type, mon.where)
    options = schema.load(resolve(kind.options), dict(mon.options), mon.where)
    finish = getattr(options, "finish", None)  # options naming files to read and check (a plugin's descriptor)
    return kind, (finish(mon) if callable(finish) else options)


def build_sink(sink: SinkConfig, session: str) -> Any:
    kind = _kind("sinks", sink.type, sink.where)
    options = schema.load(resolve(kind.options), dict(sink.options), sink.where)
    obj = resolve(kind.factory)(options, session)
    with contextlib.suppress(AttributeError):  # a third-party sink may refuse new attributes
        obj.sink_id = sink.id
    return obj


def validate(monitors: tuple[MonitorConfig, ...], sinks: tuple[SinkConfig, ...], *, strict: bool = False) -> None:
    """Check every monitor's and sink's options now, so a mistake stops the run with exit 78. A monitor whose
    own files are missing fails alone when it runs; ``strict`` (check-config) makes that an error too."""
    for mon in monitors:
        try:
            monitor_options(mon)
        except MonitorSetupError as exc:
            if strict:
                raise ConfigError(str(exc)) from None
    for sink in sinks:
        kind = _kind("sinks", sink.type, sink.where)
        schema.load(resolve(kind.options), dict(sink.options), sink.where)
        route(sink)


@record
class Route:
    """Which queued batches a sink takes: by kind, and by source (a log id or a monitor id) against globs."""

    sink_id: str
    kinds: frozenset[str]
    sources: tuple[str, ...]
    _seen: dict[tuple[str, str], bool] = field(default_factory=dict, repr=False)

    def takes(self, kind: str, source: str) -> bool:
        hit = self._seen.get((kind, source))
        if hit is None:
            from fnmatch import fnmatchcase

            hit = kind in self.kinds and (not self.sources or any(fnmatchcase(source, g) for g in self.sources))
            self._seen[(kind, source)] = hit
        return hit


def route(sink: SinkConfig) -> Route:
    """The sink's routing; ``kinds`` it names must be kinds its type can carry."""
    carries = _kind("sinks", sink.type, sink.where).carries
    for i, k in enumerate(sink.kinds):
        if k not in carries:
            raise (
                sink.where.key("kinds")
                .index(i)
                .error(f"a {sink.type} sink carries only {', '.join(map(repr, carries))}, not {k!r}")
            )
    return Route(sink.id, frozenset(sink.kinds or carries), sink.sources)


def unrouted(sinks: tuple[SinkConfig, ...], sources: list[tuple[str, str]]) -> list[str]:
    """For check-config: the (kind, source) pairs that no sink takes, as messages."""
    routes = [route(s) for s in sinks]
    return [
        f"{kind} events of {source!r} reach no sink (no [[sinks]] entry takes kind {kind!r} from that source)"
        for kind, source in sources
        if not any(r.takes(kind, source) for r in routes)
    ]


__all__ = [
    "ConfigError",
    "Kind",
    "Registry",
    "Route",
    "build_sink",
    "monitor_options",
    "registry",
    "route",
    "unrouted",
    "validate",
]
