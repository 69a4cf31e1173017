"""An example plugin written against shipctl's own API: load averages and context switches of this host.

The counter ``context_switches`` gets a per-second rate gauge from the ``transforms`` of its [[monitors]] table.
"""

from __future__ import annotations

from pathlib import Path

from shipctl.pyplugins import MetricsGroup, PluginContext


def poll(ctx: PluginContext) -> list[MetricsGroup]:
    load1, load5, load15 = (float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    load = MetricsGroup("load", dimensions={"host": ctx.resource.resource_id})
    load.gauge("load1", load1).gauge("load5", load5).gauge("load15", load15)

    stat = dict(line.split(None, 1) for line in Path("/proc/stat").read_text().splitlines() if " " in line)
    cpu = MetricsGroup("cpu", dimensions={"host": ctx.resource.resource_id})
    cpu.counter("context_switches", int(stat["ctxt"]))

    runs = int(ctx.kv.get("runs") or 0) + 1  # the key/value store lives in the state file between runs
    ctx.kv.set("runs", str(runs))
    cpu.gauge("plugin_runs", runs)
    return [load, cpu]
