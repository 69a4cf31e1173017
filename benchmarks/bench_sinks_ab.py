"""The kafka, otlp and syslog sinks, two installs of shipctl compared, by hand.

    python benchmarks/bench_sinks_ab.py --before /tmp/sp-before --after /tmp/sp-after [--rounds 5] [--mb 200]
                                        [--cases kafka,otlp-json,otlp-protobuf,syslog] [--out FILE.json]
    python benchmarks/bench_sinks_ab.py --table FILE.json      # print the table of a finished set again

Each round runs every case once with each install, one right after the other, the order swapped every round
(ABBA), so that a machine whose speed drifts (other jobs on the same cores) touches both alike. A case is one
run of ``bench_kafka.py`` / ``bench_otlp.py`` / ``bench_syslog.py`` (``--runs 1``, its own receiver), whose
figures for the upload are read from its output: MB/s of log, shipctl CPU-s per GB of log, the receiver's
CPU-s per GB. The table gives the median and range of each, and the after/before ratio of the medians and,
round by round, of each pair run back to back (the figure least affected by drift). The load average is
recorded before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from benchutil import median

HERE = Path(__file__).parent
CASES = {
    "kafka": ["bench_kafka.py"],
    "kafka-no-headers": ["bench_kafka.py", "--no-headers"],
    "otlp-json": ["bench_otlp.py", "--protocol", "json"],
    "otlp-protobuf": ["bench_otlp.py", "--protocol", "protobuf"],
    "syslog": ["bench_syslog.py"],
    # rsyslog's usual receiver as it was benchmarked before README.md recommended imptcp and batches of 1024
    "syslog-imtcp": ["bench_syslog.py", "--input", "imtcp", "--batch", "4096"],
    "syslog-null": ["bench_syslog.py", "--receiver", "null"],
}
_MBS = re.compile(r"= ([\d.]+) MB/s")
_CPU = re.compile(r"([\d.]+) CPU-s/GB")
_RECEIVER = re.compile(r"(?:broker|receiver) ([\d.]+) CPU-s/GB|collector CPU ([\d.]+) s")
_RSS = re.compile(r"peak RSS ([\d.]+) MiB")


def run_case(case: str, venv: str, mb: int) -> dict[str, float]:
    script, *extra = CASES[case]
    load = os.getloadavg()[0]
    cmd = [sys.executable, str(HERE / script), "--mb", str(mb), "--runs", "1", "--shipctl", venv, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
    line = next((x for x in out.stdout.splitlines() if x.startswith("run 1:")), None)
    if out.returncode or line is None:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    mbs = float(_MBS.search(line).group(1))  # type: ignore[union-attr]
    cpu = float(_CPU.search(line).group(1))  # type: ignore[union-attr]
    rec = _RECEIVER.search(line)
    receiver = 0.0
    if rec and rec.group(1):
        receiver = float(rec.group(1))
    elif rec and rec.group(2):  # bench_otlp gives the collector's seconds: per GB of the log here
        size = (HERE / "data" / f"access-{mb}.log").stat().st_size
        receiver = float(rec.group(2)) / (size / 1e9)
    rss = _RSS.search(line)
    return {"mbs": mbs, "cpu": cpu, "receiver": receiver, "rss": float(rss.group(1)) if rss else 0.0, "load": load}


def table(doc: dict) -> str:
    rows = ["| case | figure | before | after | after / before | round by round |", "|---|---|---|---|---|---|"]
    names = {"mbs": "MB/s of log", "cpu": "shipctl CPU-s per GB", "receiver": "receiver CPU-s per GB",
             "rss": "shipctl peak RSS MiB"}  # fmt: skip
    for case, rounds in doc["results"].items():
        for key, name in names.items():
            b = [r["before"][key] for r in rounds]
            a = [r["after"][key] for r in rounds]
            if not any(b) and not any(a):
                continue
            pairs = [y / x for x, y in zip(b, a, strict=True) if x]
            rows.append(
                f"| {case} | {name} | {median(b):.1f} [{min(b):.1f}-{max(b):.1f}] | {median(a):.1f}"
                f" [{min(a):.1f}-{max(a):.1f}] | {median(a) / median(b):.2f} | {median(pairs):.2f}"
                f" [{min(pairs):.2f}-{max(pairs):.2f}] |"
            )
    loads = [r[w]["load"] for rounds in doc["results"].values() for r in rounds for w in ("before", "after")]
    rows.append("")
    rows.append(f"{doc['rounds']} rounds, {doc['mb']} MB log; load average (1 min) before each run: median"
                f" {median(loads):.2f}, range {min(loads):.2f}-{max(loads):.2f}")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="venv of the first install")
    ap.add_argument("--after", help="venv of the second install")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--cases", default="kafka,otlp-json,otlp-protobuf,syslog")
    ap.add_argument("--out", default="/tmp/sinks-ab.json")
    ap.add_argument("--table", help="print the table of this finished set and stop")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    if not (args.before and args.after):
        raise SystemExit("give --before and --after (venv folders), or --table FILE")
    cases = args.cases.split(",")
    doc: dict = {"rounds": args.rounds, "mb": args.mb, "results": {c: [] for c in cases}}
    for rnd in range(args.rounds):
        order = ("before", "after") if rnd % 2 == 0 else ("after", "before")
        for case in cases:
            got = {which: run_case(case, getattr(args, which), args.mb) for which in order}
            doc["results"][case].append(got)
            print(
                f"round {rnd + 1} {case}: before {got['before']['mbs']:.1f} MB/s {got['before']['cpu']:.1f} CPU-s/GB,"
                f" after {got['after']['mbs']:.1f} MB/s {got['after']['cpu']:.1f} CPU-s/GB"
                f" (load {got[order[0]]['load']:.2f})",
                flush=True,
            )
            Path(args.out).write_text(json.dumps(doc, indent=1))
    print(table(doc))


if __name__ == "__main__":
    main()
