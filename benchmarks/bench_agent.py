"""The Scalyr agent 2.2.8 on the same log and the same loopback addEvents receiver as ``bench_all.py``, by hand.

    python -m venv /tmp/agent && /tmp/agent/bin/pip install scalyr-agent-2==2.2.8
    python benchmarks/bench_agent.py --agent /tmp/agent [--runs 3] [--lines 1000000] [--out agent.json]

The agent is a daemon, so only the figures that mean something for a daemon are taken: from its start to the
moment the receiver holds every line of the log (MB/s of log, start-up included as for ``shipctl run``), its
CPU seconds (user + system, all threads, read from ``/proc`` at that moment) per GB of log, and its peak RSS
(``VmHWM``). It runs in the foreground (``start --no-fork``) with the settings a user gets by default
(``max_send_rate_enforcement = "unlimited"``, deflate at level 6) but ``copy_from_start`` (it would
start at the end of a file it finds already there), its own metric and log collection off,
``allow_http`` for the loopback receiver. Events are counted by inflating each request and counting its
``attrs:{`` (the agent sends unquoted keys and each message as a raw length-prefixed string, so the log must
not contain that text; checked); its sequence numbers are byte offsets, so the receiver's ``sd`` runs do not
apply.

``bench_all.py --agent VENV`` runs this beside the shipctl installs and adds an "agent" column.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the receiver of the tests

from benchutil import median  # noqa: E402
from receiver import KEY, Receiver  # noqa: E402

# The agent's body is its own JSON dialect: unquoted keys, and each message a length-prefixed binary string
# (`` `s`` + 4 bytes + raw bytes, not escaped). One ``attrs:{`` per event; the log must not contain that text.
_ATTRS = b"attrs:{"


class _CountingReceiver(Receiver):
    """Counts events without parsing them (the agent's sn/sd are byte offsets, not one per event)."""

    def _scan(self, body: bytes) -> dict[str, Any] | None:
        if self.token.encode() not in body[:4096]:  # the agent writes `"token": "…"`, with a space
            return None
        return {"session": "agent", "runs": [(0, body.count(_ATTRS))]}

    _check = _scan  # not strict JSON (see _ATTRS), and no Content-Type: only count


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system, all threads) and peak RSS in MiB of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, hwm


def agent_python(where: str) -> str:
    p = Path(where)
    py = p / "bin" / "python" if p.is_dir() else p
    if not py.exists():
        raise SystemExit(f"no python at {py}")
    check = subprocess.run([str(py), "-c", "import scalyr_agent.agent_main"], capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(f"{py} has no scalyr_agent (pip install scalyr-agent-2==2.2.8): {check.stderr[-500:]}")
    return str(py)


def one_run(python: str, log: Path, lines: int, timeout: float = 600.0) -> dict[str, float]:
    """Start the agent on ``log``, wait until every line is at the receiver, and measure."""
    with tempfile.TemporaryDirectory(prefix="shipctl-bench-agent-") as d, _CountingReceiver(strict=False) as recv:
        tmp = Path(d)
        (tmp / "log").mkdir()
        (tmp / "data").mkdir()
        cfg = {
            "api_key": KEY,
            "scalyr_server": recv.url,
            "allow_http": True,
            "agent_log_path": str(tmp / "log"),
            "agent_data_path": str(tmp / "data"),
            "implicit_metric_monitor": False,
            "implicit_agent_process_metrics_monitor": False,
            "implicit_agent_log_collection": False,
            "logs": [{"path": str(log), "copy_from_start": True}],  # else it starts at the end
        }
        path = tmp / "agent.json"
        path.write_text(json.dumps(cfg))
        cmd = [python, "-m", "scalyr_agent.agent_main", "start", "--no-fork", "--no-check-remote-server", "-c"]
        t0 = time.perf_counter()
        with (tmp / "agent.out").open("wb") as out:
            proc = subprocess.Popen([*cmd, str(path)], stdout=out, stderr=subprocess.STDOUT)
        try:
            while recv.accepted < lines:
                if proc.poll() is not None:
                    raise SystemExit(f"the agent exited ({proc.returncode}): {(tmp / 'agent.out').read_text()[-2000:]}")
                if time.perf_counter() - t0 > timeout:
                    raise SystemExit(f"the agent sent {recv.accepted} of {lines} lines in {timeout:.0f} s")
                time.sleep(0.02)
            wall = time.perf_counter() - t0
            cpu, rss = _proc_cpu_rss(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if recv.accepted != lines:
            raise SystemExit(f"the receiver holds {recv.accepted} events for {lines} lines")
        size = log.stat().st_size
        return {"run_mbs": size / 1e6 / wall, "cpu_per_gb": cpu / (size / 1e9), "peak_rss": rss}


def measure(where: str, log: Path, lines: int, runs: int) -> dict[str, list[float]]:
    python = agent_python(where)
    if _ATTRS in log.read_bytes():
        raise SystemExit(f"{log} contains {_ATTRS!r}: the events could not be counted")
    res: dict[str, list[float]] = {}
    for _ in range(runs):
        for k, v in one_run(python, log, lines).items():
            res.setdefault(k, []).append(v)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="a venv (or its python) with scalyr-agent-2==2.2.8")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--out", default=None, help="write the figures as JSON here too")
    args = ap.parse_args()
    from bench_all import make_log  # imported here: bench_all imports this module for its agent column

    log = make_log(args.lines)
    res = measure(args.agent, log, args.lines, args.runs)
    print(f"Scalyr agent 2.2.8, {args.lines} lines ({log.stat().st_size / 1e6:.0f} MB), {args.runs} runs:")
    for k, v in res.items():
        print(f"  {k}: median {median(v):.3g} [{min(v):.3g}-{max(v):.3g}]")
    if args.out:
        Path(args.out).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
