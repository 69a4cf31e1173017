"""linux_system_metrics and linux_process_metrics against the real /proc, checked with values this test reads
itself; a real child process watched across runs and restarts; the implicit monitors of ``shipctl run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env
from tests.test_monitors import NO_IMPLICIT, metric_events, printed, run_at

CLK_TCK = os.sysconf("SC_CLK_TCK")


def by_metric(events: list[dict[str, Any]], name: str, **dims: Any) -> list[dict[str, Any]]:
    return [
        e["attrs"]
        for e in events
        if e["attrs"]["metric"] == name and all(e["attrs"].get(k) == v for k, v in dims.items())
    ]


def one(events: list[dict[str, Any]], name: str, **dims: Any) -> Any:
    (a,) = by_metric(events, name, **dims)
    return a["value"]


def proc_stat() -> dict[str, list[int]]:
    return {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in Path("/proc/stat").read_text().splitlines()}


def net_dev(iface: str) -> list[int]:
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == iface:
            return [int(x) for x in rest.split()]
    raise AssertionError(f"no {iface} in /proc/net/dev")


def between(lo: float, value: float, hi: float) -> bool:
    return lo <= value <= hi


def test_system_metrics_match_proc_read_independently(env: Env) -> None:
    env.write_config(NO_IMPLICIT)
    disks = set(os.listdir("/sys/block")) if os.path.isdir("/sys/block") else set()
    busy = [ln.split() for ln in Path("/proc/diskstats").read_text().splitlines()]
    busy = [f for f in busy if f[2] in disks and f[3] != "0"]
    before = (proc_stat(), float(Path("/proc/uptime").read_text().split()[0]), net_dev("lo"), busy)
    load_before = Path("/proc/loadavg").read_text().split()
    r = env.cli(
        "run-monitor",
        "linux_system_metrics",
        "--opt",
        'network_interface_prefixes=["lo"]',
        "--opt",
        'network_interface_suffix=""',
        "--print",
    )
    assert r.exit_code == 0, r.stderr
    load_after = Path("/proc/loadavg").read_text().split()
    after = (proc_stat(), float(Path("/proc/uptime").read_text().split()[0]), net_dev("lo"))
    ev = printed(r.stdout)
    assert all(e["kind"] == "metric" and e["attrs"]["monitor"] == "linux_system_metrics" for e in ev)

    for i, kind in enumerate(("user", "nice", "system", "idle", "iowait")):
        assert between(before[0]["cpu"][i], one(ev, "proc.stat.cpu", type=kind), after[0]["cpu"][i]), kind
    for name in ("ctxt", "processes"):
        assert between(before[0][name][0], one(ev, f"proc.stat.{name}"), after[0][name][0]), name
    assert between(before[0]["intr"][0], one(ev, "proc.stat.intr"), after[0]["intr"][0])
    assert one(ev, "sys.cpu.count") == sum(1 for k in after[0] if k.startswith("cpu") and k != "cpu")
    assert between(before[1], one(ev, "proc.uptime.total"), after[1])
    assert one(ev, "proc.loadavg.1min") in (float(load_before[0]), float(load_after[0]))
    assert one(ev, "proc.loadavg.total_threads") > 0

    meminfo = {ln.split(":")[0]: int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()}
    assert one(ev, "proc.meminfo.memtotal") == meminfo["MemTotal"]
    assert by_metric(ev, "proc.meminfo.memfree") and not by_metric(ev, "proc.meminfo.active(anon)")

    for i, name in enumerate(("bytes", "packets")):
        assert between(before[2][i], one(ev, f"proc.net.{name}", iface="lo", direction="in"), after[2][i])
        assert between(before[2][8 + i], one(ev, f"proc.net.{name}", iface="lo", direction="out"), after[2][8 + i])
    assert not [e for e in ev if e["attrs"]["metric"].startswith("proc.net.") and e["attrs"]["iface"] != "lo"]

    root = os.statvfs("/")
    fstype = next(
        ln.split()[2] for ln in reversed(Path("/proc/self/mounts").read_text().splitlines()) if ln.split()[1] == "/"
    )
    assert one(ev, "df.1kblocks.total", mount="/", fstype=fstype) == root.f_blocks * root.f_frsize // 1024
    assert one(ev, "df.inodes.total", mount="/") == root.f_files
    assert not by_metric(ev, "df.1kblocks.total", mount="/proc")  # pseudo file systems are left out

    for dev in before[3]:
        assert one(ev, "iostat.disk.read_requests", dev=dev[2]) >= int(dev[3])
    assert one(ev, "net.sockstat.sockets_inuse", type="tcp") >= 0

    kinds = {e["attrs"]["metric"]: e["attrs"]["metric_type"] for e in ev}
    assert kinds["proc.stat.cpu"] == "counter" and kinds["proc.net.bytes"] == "counter"
    assert kinds["proc.loadavg.1min"] == "gauge" and kinds["df.1kblocks.used"] == "gauge"


def test_system_metrics_options_tags_and_ignore_mounts(env: Env) -> None:
    env.write_config(
        NO_IMPLICIT
        + '[[monitors]]\ntype = "linux_system_metrics"\nid = "sys"\nignore_mounts = ["/"]\n'
        + 'network_interface_prefixes = ["no-such-if"]\ntags = { rack = "r7" }\n'
    )
    r = env.cli("run-monitor", "sys")
    assert r.exit_code == 0, r.stderr
    env.ship()
    ev = metric_events(env, "sys")
    assert ev and all(e["attrs"]["rack"] == "r7" for e in ev)
    assert not by_metric(ev, "df.1kblocks.total", mount="/")
    assert not by_metric(ev, "proc.net.bytes")
    assert ev[0]["message"].startswith("[linux_system_metrics(sys)] proc.stat.cpu ")


# --- processes ----------------------------------------------------------------------------------------------

CHILD = """
import os, sys
print("ready", flush=True)
for line in sys.stdin:
    fd = os.open(os.devnull, os.O_WRONLY)
    for _ in range(int(line)):
        os.write(fd, b"x")
    os.close(fd)
    sys.stdout.write("done\\n")
    sys.stdout.flush()
"""


class Child:
    """A real process with a unique command line; ``writes(n)`` makes it do n + 1 write system calls."""

    def __init__(self, marker: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, marker], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def writes(self, n: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for c in made:
        c.stop()


def _io(pid: int) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split(":") for ln in Path(f"/proc/{pid}/io").read_text().splitlines())}


def _status_kb(pid: int, key: str) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith(key + ":"))
    return int(line.split()[1])


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_process_metrics_of_a_real_child(env: Env, children: list[Child]) -> None:
    marker = f"watch-me-{uuid.uuid4().hex}"
    children.append(Child(marker))
    child = children[0]
    child.writes(5)
    env.write_config(
        NO_IMPLICIT + f'[[monitors]]\ntype = "linux_process_metrics"\nid = "web"\ncommandline = "{marker}"\n'
    )
    r = env.cli("run-monitor", "web")
    assert r.exit_code == 0, r.stderr
    # The child is idle (blocked reading stdin): what it shows now is what it showed during the run.
    io, st = _io(child.pid), _stat(child.pid)
    fds = len(os.listdir(f"/proc/{child.pid}/fd"))
    rss = _status_kb(child.pid, "VmRSS") * 1024
    env.ship()
    ev = metric_events(env, "web")
    assert all(e["attrs"]["app"] == "web" and e["attrs"]["monitor"] == "linux_process_metrics" for e in ev)
    assert one(ev, "app.disk.requests", type="write") == io["syscw"]
    assert one(ev, "app.disk.bytes", type="write") == io["wchar"]
    assert one(ev, "app.disk.bytes", type="read") == io["rchar"]
    assert one(ev, "app.cpu", type="user") == int(st[11]) * 100 // CLK_TCK
    assert one(ev, "app.cpu", type="system") == int(st[12]) * 100 // CLK_TCK
    assert one(ev, "app.threads") == int(st[17])
    assert one(ev, "app.mem.majflt") == int(st[9])
    assert one(ev, "app.io.fds", type="open") == fds
    assert one(ev, "app.mem.bytes", type="resident") == rss
    assert one(ev, "app.mem.bytes", type="vmsize") == _status_kb(child.pid, "VmSize") * 1024
    assert {a["type"] for a in by_metric(ev, "app.mem.bytes")} == {"vmsize", "peak_vmsize", "resident", "peak_resident"}
    assert 0 <= one(ev, "app.uptime") < 600_000
    assert by_metric(ev, "app.nice") and by_metric(ev, "app.io.wait")
    line = next(e["message"] for e in ev if e["attrs"]["metric"] == "app.threads")
    assert line == f'[linux_process_metrics(web)] app.threads {st[17]} app="web"'


def test_process_metrics_by_pid_oldest_or_aggregated(env: Env, children: list[Child]) -> None:
    marker = f"pair-{uuid.uuid4().hex}"
    children += [Child(marker), Child(marker)]
    first, second = children
    first.writes(10)
    second.writes(100)
    env.write_config(NO_IMPLICIT)
    base = ["run-monitor", "linux_process_metrics", "--print"]
    oldest = printed(env.cli(*base, "--opt", f"commandline={marker}").stdout)
    summed = printed(
        env.cli(*base, "--opt", f"commandline={marker}", "--opt", "aggregate_multiple_processes=true").stdout
    )
    by_pid = printed(env.cli(*base, "--opt", f"pid={second.pid}").stdout)
    w1, w2 = _io(first.pid)["syscw"], _io(second.pid)["syscw"]
    assert one(oldest, "app.disk.requests", type="write") == w1
    assert one(summed, "app.disk.requests", type="write") == w1 + w2
    assert one(summed, "app.threads") == int(_stat(first.pid)[17]) + int(_stat(second.pid)[17])
    assert one(by_pid, "app.disk.requests", type="write") == w2
    assert one(by_pid, "app.cpu", type="user") >= 0 and by_pid[0]["attrs"]["app"] == "linux_process_metrics"


def test_no_matching_process_is_a_warning_not_an_error(env: Env) -> None:
    env.write_config(NO_IMPLICIT)
    r = env.cli("run-monitor", "linux_process_metrics", "--opt", f"commandline=absent-{uuid.uuid4().hex}", "--print")
    assert r.exit_code == 0
    assert r.stdout == ""
    assert "warning: monitor linux_process_metrics: no running process matches commandline" in r.stderr


def test_process_options_need_commandline_or_pid(env: Env) -> None:
    env.write_config(NO_IMPLICIT + '[[monitors]]\ntype = "linux_process_metrics"\nid = "p"\n')
    r = env.cli("run-monitor", "p")
    assert r.exit_code == 78
    assert f"{env.config}: monitors[0]: expected commandline (a regular expression) or pid" in r.stderr


def test_counter_rates_of_a_watched_process_across_a_restart(env: Env, children: list[Child]) -> None:
    marker = f"restart-{uuid.uuid4().hex}"
    env.write_config(
        NO_IMPLICIT + f'[[monitors]]\ntype = "linux_process_metrics"\nid = "svc"\ncommandline = "{marker}"\n'
    )
    t = 1_800_000_000.0
    children.append(Child(marker))
    run_at(env, t)
    children[0].writes(119)  # 120 write calls in all
    run_at(env, t + 60)
    children[0].stop()
    children.append(Child(marker))  # same command line, new process: its counters start over
    children[1].writes(5000)  # more writes than before: only the process identity tells it is a restart
    run_at(env, t + 120)
    children[1].writes(29)
    run_at(env, t + 180)
    env.ship()
    writes = by_metric(metric_events(env, "svc"), "app.disk.requests", type="write")
    assert [(a.get("difference"), a.get("rate")) for a in writes] == [(None, None), (120, 2.0), (None, None), (30, 0.5)]


# --- implicit monitors --------------------------------------------------------------------------------------


def _fresh(env: Env) -> None:
    """Start over: no sink output, no state file (with its WAL companions)."""
    env.sink.unlink()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{env.state}{suffix}").unlink(missing_ok=True)


def test_run_adds_implicit_system_and_agent_metrics_each_switchable(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text("hello\n")
    env.write_config(f'[[logs]]\npath = "{log}"\n')
    r = env.cli("run")
    assert r.exit_code == 0, r.stderr
    assert env.messages() == ["hello"]
    sources = {e["source"] for e in metric_events(env)}
    assert sources == {"system", "agent"}
    agent = metric_events(env, "agent")
    assert all(e["attrs"]["app"] == "agent" for e in agent)
    assert one(agent, "app.threads") >= 1
    assert by_metric(metric_events(env, "system"), "proc.loadavg.1min")
    st = {m["id"]: m for m in json.loads(env.cli("status", "--json").stdout)["monitors"]}
    assert st["system"]["interval"] == 30 and st["agent"]["runs"] == 1

    _fresh(env)
    env.write_config(f'[agent]\nimplicit_metric_monitor = false\n[[logs]]\npath = "{log}"\n')
    assert env.cli("run").exit_code == 0
    assert {e["source"] for e in metric_events(env)} == {"agent"}
    _fresh(env)
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{log}"\n')
    assert env.cli("run").exit_code == 0
    assert metric_events(env) == [] and env.messages() == ["hello"]
