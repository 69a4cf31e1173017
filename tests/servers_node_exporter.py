"""A real node_exporter (Debian ``prometheus-node-exporter``) with only its textfile collector, reading a directory
the test writes shipctl's ``.prom`` file into, on a free 127.0.0.1 port; stopped by PID.

Missing binary: skipped when run by hand, a failure under ``CI=true`` (.ci/run installs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import _Server, _start, require_binary

BINARY = "prometheus-node-exporter"


class NodeExporter(_Server):
    name = "node_exporter"

    @property
    def textfile_dir(self) -> Path:
        return self.root / "textfile"

    def scrape(self) -> str:
        r = self.http.get(f"{self.url}/metrics", timeout=10)
        r.raise_for_status()
        return r.text


@pytest.fixture
def node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeExporter]:
    """Per test (it starts in ~0.2 s): each test gets a textfile directory of its own."""
    binary = require_binary(BINARY, "node_exporter", package="prometheus-node-exporter")

    def prepare(d: Path, ports: list[int]) -> tuple[list[str], str, str]:
        (port,) = ports
        (d / "textfile").mkdir()
        url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            "--collector.disable-defaults",  # the host's CPU, disks, ... are not what the tests look at: faster
            "--collector.textfile",
            f"--collector.textfile.directory={d / 'textfile'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        return argv, url, f"{url}/metrics"

    server = _start(NodeExporter, tmp_path_factory.mktemp("node_exporter"), prepare, nports=1)
    assert isinstance(server, NodeExporter)
    try:
        yield server
    finally:
        server.stop()
