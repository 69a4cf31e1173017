"""Monitors every Linux host gets without configuring them, as with the Scalyr agent: system metrics (id
``system``) and shipctl's own process metrics (id ``agent``, tagged ``app=agent``). Each is switched off in
``[agent]`` with ``implicit_metric_monitor = false`` / ``implicit_agent_process_metrics_monitor = false``."""

from __future__ import annotations

import os
import sys
import types

from shipctl.config import Config, MonitorConfig
from shipctl.schema import Where

SYSTEM_ID = "system"
AGENT_ID = "agent"
SHIPCTL_ID = "shipctl"
MONITOR_TYPE = "shipctl_metrics"  # the monitor of shipctl's own metrics (shipctl/commands/selfmetrics.py)


def wants_snapshot(config: Config) -> bool:
    """The implicit monitor, or one configured by hand (``type = "shipctl_metrics"``, an interval of its own)."""
    return config.agent.implicit_shipctl_monitor or any(m.type == MONITOR_TYPE for m in config.monitors)


def wanted(config: Config) -> bool:
    """Whether a run writes self-metrics: the textfile, or the snapshot the shipctl monitor sends. Here rather
    than in shipctl/commands/selfmetrics.py so that every run can ask without importing that (issue 13)."""
    return bool(config.agent.textfile) or wants_snapshot(config)


def effective_monitors(config: Config) -> tuple[MonitorConfig, ...]:
    """The configured monitors plus the implicit ones that apply."""
    mons = list(config.monitors)
    if config.agent.plugins_dir:  # Panoptes plugins dropped into the directory (pyplugins/scan.py)
        from shipctl.pyplugins.scan import scan

        mons += scan(config).monitors
    configured = {m.id for m in mons} | {m.type for m in mons}  # one by hand replaces it, as for the system one
    if config.agent.implicit_shipctl_monitor and not {SHIPCTL_ID, MONITOR_TYPE} & configured:
        # Opt-in, unlike the two below: it adds ~10 series per sink and 6 per log to every sink (billed per event by
        # some), and node_exporter's textfile (agent.textfile) already serves a host's own scrape.
        where = Where(config.file, "agent.implicit_shipctl_monitor")
        interval = config.agent.monitor_sample_interval
        mons.append(MonitorConfig(MONITOR_TYPE, SHIPCTL_ID, interval, types.MappingProxyType({}), where))
    if not sys.platform.startswith("linux") or not os.path.exists("/proc/self/stat"):
        return tuple(mons)
    ids = {m.id for m in mons}
    agent = config.agent
    interval = agent.monitor_sample_interval  # [agent] monitor_sample_interval (global_monitor_sample_interval)
    # A configured linux_system_metrics replaces the implicit one rather than doubling every metric.
    if agent.implicit_metric_monitor and SYSTEM_ID not in ids and all(m.type != "linux_system_metrics" for m in mons):
        where = Where(config.file, "agent.implicit_metric_monitor")
        mons.append(MonitorConfig("linux_system_metrics", SYSTEM_ID, interval, types.MappingProxyType({}), where))
    if agent.implicit_agent_process_metrics_monitor and AGENT_ID not in ids:
        where = Where(config.file, "agent.implicit_agent_process_metrics_monitor")
        opts = types.MappingProxyType({"pid": "$$"})
        mons.append(MonitorConfig("linux_process_metrics", AGENT_ID, interval, opts, where))
    return tuple(mons)
