"""Helpers shared by the tests of python plugins (tests/test_plugins*.py)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shipctl.commands.common import session
from shipctl.monitors import runner as rm
from shipctl.pyplugins import monitor as plugin_monitor
from tests.conftest import Env

FIXTURES = Path(__file__).parent / "plugins"
TUTORIAL = FIXTURES / "tutorial"
NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def configure(env: Env, monitors: str) -> None:
    env.write_config(NO_IMPLICIT + textwrap.dedent(monitors))


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def tutorial_files(directory: Path, stage: str, descriptor: str = "tutorial_plugin.panoptes-plugin") -> Path:
    """The guide's descriptor and one stage of its plugin, laid out as a reader would: the plugin file beside the
    descriptor (whose Module path is the Panoptes container's). Returns the descriptor."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(TUTORIAL / descriptor, directory / descriptor)
    module = "tutorial_polling_plugin.py" if "rate" in descriptor else "tutorial_plugin.py"
    shutil.copy(TUTORIAL / f"{stage}.py.txt", directory / module)
    return directory / descriptor


def run_at(
    env: Env, now: float, monkeypatch: pytest.MonkeyPatch, *targets: str, due_only: bool = False, queue: bool = True
) -> rm.RunMonitorResult:
    """One run at a simulated time, through the function ``shipctl run`` uses (``queue=False`` is --print); the
    plugins' clock (kv expiry, rates) is set to the same time."""
    monkeypatch.setattr(plugin_monitor, "clock", lambda: now)
    with session(str(env.config), "run-monitor") as ctx:
        return rm.run_monitors(ctx, list(targets), due_only=due_only, queue=queue, now=now)


def metric_events(env: Env, source: str | None = None) -> list[dict[str, Any]]:
    return [e for e in env.events() if e["kind"] == "metric" and (source is None or e["source"] == source)]


def groups(env: Env, source: str | None = None) -> list[dict[str, Any]]:
    """The Panoptes metrics group JSON of each event of a monitor with output = "panoptes"."""
    return [json.loads(str(e["message"])) for e in metric_events(env, source)]


def upload(env: Env) -> None:
    r = env.cli("upload")
    assert r.exit_code == 0, r.stderr
