"""Hardening (issue 12): a broken monitor, a silent receiver, secrets cut in replies, configs that crashed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env

QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def test_a_broken_monitor_fails_alone_and_logs_still_ship(env: Env) -> None:
    (env.logs / "a.log").write_text("hello\n")
    env.write_config(
        f'[agent]\n{QUIET}[[logs]]\npath = "{env.logs}/a.log"\n'
        f'[[monitors]]\ntype = "plugin"\nid = "broken"\ndescriptor = "{env.tmp}/gone.panoptes-plugin"\n'
        '[[monitors]]\ntype = "shell"\nid = "fine"\ncommand = "echo 7"\n'
    )
    r = env.proc("run")
    assert r.returncode == 65, r.stderr  # the monitor's own problem: exit 65, not a config error (78)
    assert "monitor broken: cannot set up" in r.stderr and "descriptor not found" in r.stderr
    assert env.messages() == ["hello"] and len(env.messages("metric")) == 1  # the rest went on
    status = env.proc("status", "--json")
    assert status.returncode == 0
    mons = {m["id"]: m for m in json.loads(status.stdout)["monitors"]}
    assert mons["fine"]["errors"] == 0 and mons["broken"]["errors"] == 1
    check = env.proc("check-config")  # check-config still calls it what it is
    assert check.returncode == 78 and "monitors[0].descriptor" in check.stderr
