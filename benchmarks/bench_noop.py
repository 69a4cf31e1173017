"""Start-up of a no-op ``shipctl run`` (issue 13): nothing new in the logs, no monitor due, nothing queued.

    python benchmarks/bench_noop.py --before /tmp/bench-before --after /tmp/bench-after [--runs 20]
                                    [--command run|tail-once|upload|status] [--sink scalyr|file]

Each install (a venv with a regular ``pip install .``; run this from ``cd /tmp``) gets its own state file, on
which one ``shipctl run`` first reads a small log and delivers it to a loopback addEvents receiver
(tests/receiver.py, in this process). Then the installs take turns (before, after, before, after...) running
the command again with nothing to do, each under ``/usr/bin/time -v``. ``--sink file`` delivers to a ``file``
sink (a JSON-lines file per install) instead of the addEvents receiver. Prints median [min-max] wall seconds,
CPU seconds (user + system) and peak RSS per install, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchutil import Timed, median, shipctl_command, timed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tests.receiver import KEY, Receiver, config_text  # noqa: E402

AGENT = "[agent]\nmax_seconds = 0\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _lines(n: int) -> str:
    line = '10.0.0.{} - - [01/Jan/2026:00:00:00 +0000] "GET /x/{} HTTP/1.1" 200 12\n'
    return "".join(line.format(i % 250, i) for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="venv or console script (default: none)")
    ap.add_argument("--after", help="venv or console script (default: the shipctl beside this python)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--command", default="run", choices=["run", "tail-once", "upload", "run-monitor", "status"])
    ap.add_argument("--sink", default="scalyr", choices=["scalyr", "file"], help="the configured sink")
    args = ap.parse_args()
    installs = {name: shipctl_command(v) for name, v in (("before", args.before), ("after", args.after)) if v}
    if not installs:
        installs = {"after": shipctl_command(None)}
    tmp = Path(tempfile.mkdtemp(prefix="shipctl-bench-noop-", dir="/tmp"))
    results: dict[str, list[Timed]] = {k: [] for k in installs}
    try:
        log = tmp / "access.log"
        log.write_text(_lines(200))
        with Receiver(strict=False) as recv:
            cfg = config_text(recv.url, AGENT + f'[[logs]]\npath = "{log}"\n')
            envs = {}
            for name, cmd in installs.items():
                d = tmp / name
                d.mkdir()
                if args.sink == "file":
                    cfg = AGENT + f'[[logs]]\npath = "{log}"\n[[sinks]]\ntype = "file"\npath = "{d / "out.jsonl"}"\n'
                (d / "bench.toml").write_text(cfg)
                env = {**os.environ, "SHIPCTL_STATE": str(d / "state.db"), "SCALYR_API_KEY": KEY}
                env.pop("SHIPCTL_CONFIG", None)
                envs[name] = (env, [*cmd, "run", "-c", str(d / "bench.toml")])
                timed(envs[name][1], env)  # the first run reads the log and delivers it
            load0 = os.getloadavg()
            for i in range(args.runs):
                order = list(installs) if i % 2 == 0 else list(reversed(installs))
                for name in order:
                    env, cmd = envs[name]
                    cmd = [*cmd[:-3], args.command, *cmd[-2:]]
                    t = timed(cmd, env)
                    if args.command != "status" and (t.stdout or t.stderr):
                        raise SystemExit(f"{name}: a no-op run printed something: {t.stdout}{t.stderr}")
                    results[name].append(t)
            load1 = os.getloadavg()
    finally:
        shutil.rmtree(tmp)
    print(
        f"no-op `shipctl {args.command}` ({args.sink} sink), {args.runs} runs each, interleaved;"
        f" load average {load0} -> {load1}"
    )
    for name, ts in results.items():
        for label, xs, fmt in (
            ("wall s", [t.wall for t in ts], "{:.3f}"),
            ("CPU s", [t.cpu for t in ts], "{:.3f}"),
            ("peak RSS MiB", [t.rss_mib for t in ts], "{:.1f}"),
        ):
            med, lo, hi = (fmt.format(x) for x in (median(xs), min(xs), max(xs)))
            print(f"  {name:6} {label:13} {med} [{lo}-{hi}]")


if __name__ == "__main__":
    main()
