"""The ``shipctl_metrics`` monitor (implicit id ``shipctl``): shipctl's own figures as metric events, so they reach
every sink. It sends the snapshot the latest run left in the state file (shipctl/commands/selfmetrics.py): the
same figures, at the same time stamps, as the node_exporter textfile. Opt-in with
``[agent] implicit_shipctl_monitor = true``."""

from __future__ import annotations

import sqlite3
from typing import Any

from shipctl.monitors.base import COUNTER, GAUGE, MonitorOutput, Sample
from shipctl.records import record
from shipctl.state import health


@record(frozen=True)
class ShipctlOptions:
    """No options: what it reports is fixed by the state file."""


class ShipctlMetrics:
    module = "shipctl_metrics"

    def __init__(self, options: ShipctlOptions) -> None:
        self.snapshot: dict[str, Any] | None = None

    def restore_state(self, conn: sqlite3.Connection) -> None:
        self.snapshot = health.snapshot(conn)  # read in the main thread; sample() runs in a worker

    def sample(self) -> MonitorOutput:
        snap = self.snapshot
        if not snap:
            return MonitorOutput()  # no run has left figures yet (the first run of a new state file)
        ts = int(float(snap.get("ts", 0)) * 1e9)
        samples = []
        for name, kind, labels, value in snap.get("figures", []):
            samples.append(Sample(name, value, COUNTER if kind == "counter" else GAUGE, dims=dict(labels), ts=ts))
        return MonitorOutput(samples=samples)
