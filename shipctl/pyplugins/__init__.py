"""Python polling plugins: shipctl's own plugin API, and Panoptes plugins run unmodified.

A plugin is a class with ``run(context)`` (a new instance per run) or a function ``poll(context)``; it returns
metrics groups::

    from shipctl.pyplugins import MetricsGroup

    def poll(ctx):
        g = MetricsGroup("interface", dimensions={"ifname": "eth0"})  # interval: the execute frequency
        g.counter("bytes_in", read_counter(ctx.resource.resource_endpoint))
        g.gauge("speed", 1e9)
        return [g]

The context carries ``config``, ``logger``, ``resource`` (also ``data``), ``kv`` (a key/value store with expiry
in the state file), ``secrets`` and ``now``. Configured as ``[[monitors]] type = "plugin"`` (see spec.py).
"""

from shipctl.monitors.base import COUNTER, GAUGE
from shipctl.pyplugins.context import KeyValueStore, PluginContext, Secrets
from shipctl.pyplugins.model import Metric, MetricsGroup
from shipctl.pyplugins.resources import Resource

__all__ = ["COUNTER", "GAUGE", "KeyValueStore", "Metric", "MetricsGroup", "PluginContext", "Resource", "Secrets"]
