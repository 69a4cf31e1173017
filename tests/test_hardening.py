"""Hardening (issue 12): a broken monitor, a silent receiver, secrets cut in replies, configs that crashed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Env
from tests.receiver import KEY, Receiver, config_text

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


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and reads, but never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


@pytest.mark.parametrize("sink", ["scalyr", "influxdb"])
def test_upload_to_a_silent_receiver_ends_within_its_budget(env: Env, silent_server: str, sink: str) -> None:
    (env.logs / "a.log").write_text("hello\n")
    if sink == "scalyr":
        table = f'type = "scalyr"\napi_key = "0123456789abcdef-key"\nserver = "{silent_server}"\nallow_http = true\n'
    else:
        table = f'type = "influxdb"\nurl = "{silent_server}"\nkinds = ["metric"]\n'
    env.write_config(
        f'[agent]\n{QUIET}[[logs]]\npath = "{env.logs}/a.log"\n'
        '[[monitors]]\ntype = "shell"\nid = "n"\ncommand = "echo 1"\n'
        f"[[sinks]]\n{table}[[sinks]]\nid = 'archive'\ntype = 'file'\npath = '{env.sink}'\n",
        sink=False,
    )
    assert env.proc("tail-once").returncode == 0
    assert env.proc("run-monitor").returncode == 0
    t0 = time.monotonic()
    r = env.proc("upload", "--max-seconds", "3", timeout=30)
    took = time.monotonic() - t0
    assert took < 6, f"upload took {took:.1f} s with --max-seconds 3 (read timeout is 60 s)"
    assert r.returncode == 69 and "no reply from 127.0.0.1" in r.stderr, r.stderr
    assert env.messages() == ["hello"]  # the file sink was not held up


def test_no_piece_of_the_api_key_leaks_when_a_reply_is_cut_through_it(env: Env, receiver: Receiver) -> None:
    """A proxy's error page quotes the request; shipctl shows the first 80 characters of a non-JSON reply,
    which ends inside the token. No 8-character piece of the key may reach any output or file."""
    (env.logs / "a.log").write_text("hello\n")
    env.write_config(config_text(receiver.url, f'[agent]\n{QUIET}[[logs]]\npath = "{env.logs}/a.log"\n'), sink=False)
    assert env.proc("tail-once").returncode == 0
    receiver.fail("quote")
    r = env.proc("upload")
    assert r.returncode == 69 and "not JSON" in r.stderr
    outputs = [r.stdout, r.stderr]
    for args in (("status",), ("status", "-v"), ("status", "--json"), ("check-config",)):
        res = env.proc(*args)
        outputs += [res.stdout, res.stderr]
    files = b"".join(p.read_bytes() for p in env.state.parent.iterdir() if p.is_file())
    pieces = {KEY[i : i + 8] for i in range(len(KEY) - 7)}
    leaked = sorted(p for p in pieces if any(p in o for o in outputs) or p.encode() in files)
    assert not leaked, f"pieces of the API key leaked: {leaked}"
