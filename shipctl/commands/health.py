"""``shipctl status --check``: the facts ``status`` gathers, judged against ``[agent.health]`` levels, in the
monitoring-plugins format (Nagios, Icinga, Sensu, check_by_ssh, NRPE).

Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the state cannot be read: missing, locked, corrupt; or the config
is broken). Output: one summary line ``SHIPCTL <LEVEL> - <what> | <perfdata>``, then one line per finding.
Perfdata follows the monitoring-plugins guidelines: ``'label'=value[UOM];warn;crit;min``.

The facts come from ``status`` itself (passed in as ``gather``, so this command does not import another): the
check and the table can never disagree about what the state file says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING, Any

from shipctl.errors import ShipctlError
from shipctl.humanize import age, plural, size
from shipctl.records import record

if TYPE_CHECKING:
    from shipctl.commands.status import StatusResult
    from shipctl.config import Config, HealthConfig

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LEVELS = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
PROBE_TIMEOUT = 2.0  # seconds to wait for a locked state file before saying UNKNOWN (checks time out at ~10 s)


@record(frozen=True)
class Perf:
    label: str
    value: float
    uom: str = ""
    warn: float | None = None
    crit: float | None = None
    min: float | None = 0

    def __str__(self) -> str:
        label = re.sub(r"['=]", "_", self.label)
        if re.search(r"\s", label):
            label = f"'{label}'"
        fields = [f"{_num(self.value)}{self.uom}"] + [
            "" if v is None else _num(v) for v in (self.warn, self.crit, self.min)
        ]
        return f"{label}={';'.join(fields).rstrip(';')}"


@record(frozen=True)
class Finding:
    level: int
    text: str


@record
class CheckResult:
    code: int = OK
    summary: str = ""
    findings: list[Finding] = field(default_factory=list)  # every check that is not OK, worst first
    info: list[str] = field(default_factory=list)  # what an operator wants to see next to it
    perfdata: list[Perf] = field(default_factory=list)

    @property
    def level(self) -> str:
        return LEVELS[self.code]

    def lines(self) -> list[str]:
        # "|" starts perfdata in this format: one inside a message (a path, a server's reply) must not.
        first = f"SHIPCTL {self.level} - {_plain(self.summary)}"
        if self.perfdata:
            first += " | " + " ".join(str(p) for p in self.perfdata)
        return [first, *(_plain(f"{LEVELS[f.level]}: {f.text}") for f in self.findings), *map(_plain, self.info)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "exit_code": self.code,
            "summary": self.summary,
            "findings": [{"level": LEVELS[f.level], "text": f.text} for f in self.findings],
            "info": self.info,
            "perfdata": [
                {"label": p.label, "value": p.value, "uom": p.uom, "warn": p.warn, "crit": p.crit}
                for p in self.perfdata
            ],
        }


def unknown(summary: str, *info: str) -> CheckResult:
    return CheckResult(UNKNOWN, summary, info=list(info))


def check(config_path: str | None, gather: Callable[[Config], StatusResult]) -> CheckResult:
    """Never raises for what it finds: a monitoring system must get a level, not a traceback or exit 78."""
    from shipctl.config import load_config
    from shipctl.state import resolve_state_path
    from shipctl.state.db import StateDamaged
    from shipctl.state.health import probe

    try:
        cfg = load_config(config_path, env_optional=True)
        path = resolve_state_path(cfg.agent.state)
    except ShipctlError as exc:
        return unknown(f"config error: {exc.message}")
    found = probe(str(path), PROBE_TIMEOUT)
    if found is not None:
        what, detail = found
        hint = {
            "missing": "no run has created it yet, or agent.state / $SHIPCTL_STATE points elsewhere",
            "corrupt": "see `shipctl state check`; `shipctl state recover` rebuilds it",
            "locked": "a run should never hold it this long; see which process has it open (fuser)",
        }.get(what, "")
        return unknown(f"state file {what}: {path}: {detail}", *([hint] if hint else []))
    try:
        res = gather(cfg)
    except StateDamaged as exc:  # found past the probe: a damaged page, a missing table
        return unknown(f"state file corrupt: {exc.message}")
    except ShipctlError as exc:
        return unknown(f"state file unreadable: {exc.message}")
    return evaluate(res, cfg.agent.health)


def level_of(value: float | None, warn: float, crit: float) -> int:
    """Above the critical level: CRITICAL; above the warning level: WARNING (the plugins' threshold "N")."""
    if value is None:
        return OK
    if value > crit:
        return CRITICAL
    if value > warn:
        return WARNING
    return OK


def evaluate(res: StatusResult, h: HealthConfig, now: float | None = None) -> CheckResult:
    now = res.now if now is None else now
    out = CheckResult()
    findings: list[Finding] = []

    def judge(value: float | None, warn: float, crit: float, text: str) -> None:
        level = level_of(value, warn, crit)
        if level:
            findings.append(Finding(level, text))

    for s in res.sinks:
        sink = s["sink"]
        lag = s.get("oldest_pending_age") or 0.0
        failures = int(s.get("consecutive_failures") or 0)
        judge(
            lag,
            h.lag_warning,
            h.lag_critical,
            f"sink {sink}: oldest undelivered batch is {age(lag)} old ({plural(s.get('pending_batches', 0), 'batch')},"
            f" {size(s.get('pending_bytes') or 0)} waiting)",
        )
        last = f" (last: {s['last_message']})" if s.get("last_message") else ""
        backoff = (
            f"; next attempt {age(s['next_attempt'] - now)} from now" if (s.get("next_attempt") or 0) > now else ""
        )
        judge(
            failures,
            h.upload_failures_warning,
            h.upload_failures_critical,
            f"sink {sink}: {plural(failures, 'consecutive upload failure')}{last}{backoff}",
        )
        out.perfdata.append(Perf(f"lag_{sink}", round(lag, 3), "s", h.lag_warning, h.lag_critical))
        out.perfdata.append(
            Perf(f"upload_failures_{sink}", failures, "", h.upload_failures_warning, h.upload_failures_critical)
        )
        out.info.append(
            f"sink {sink}: {plural(s.get('pending_events', 0), 'event')} pending, last success"
            f" {age(now - s['last_success']) + ' ago' if s.get('last_success') else 'never'}"
        )

    qbytes = int(res.queue.get("bytes") or 0)
    judge(qbytes, h.queue_bytes_warning, h.queue_bytes_critical, f"queue holds {size(qbytes or 0)}")
    out.perfdata.append(Perf("queue_bytes", qbytes, "B", h.queue_bytes_warning, h.queue_bytes_critical))

    read_errors = [e for lg in res.logs for e in lg.read_errors()]
    judge(
        len(read_errors),
        h.read_errors_warning,
        h.read_errors_critical,
        f"{plural(len(read_errors), 'log or file', 'logs or files')} cannot be read: "
        + "; ".join(read_errors[:3])
        + (f" (and {len(read_errors) - 3} more)" if len(read_errors) > 3 else ""),
    )
    out.perfdata.append(Perf("read_errors", len(read_errors), "", h.read_errors_warning, h.read_errors_critical))

    failing = [m for m in res.monitors if m.outcome == "error"]
    judge(
        len(failing),
        h.monitors_failing_warning,
        h.monitors_failing_critical,
        f"{plural(len(failing), 'monitor')} failing: " + "; ".join(f"{m.id}: {m.last_error}" for m in failing[:3]),
    )
    out.perfdata.append(
        Perf("monitors_failing", len(failing), "", h.monitors_failing_warning, h.monitors_failing_critical)
    )

    successes = [c["last_success"] for c in res.commands.values() if c.get("last_success")]
    if successes:
        since = max(0.0, now - max(successes))
        judge(since, h.last_run_warning, h.last_run_critical, f"last successful run {age(since)} ago")
        out.perfdata.append(Perf("last_success_age", round(since, 3), "s", h.last_run_warning, h.last_run_critical))
    else:
        findings.append(Finding(WARNING, "no successful run recorded in the state file yet"))

    for p in res.problems:
        out.info.append(f"ongoing since {_stamp(p['since'])}: {p['problem']}")

    findings.sort(key=lambda f: -f.level)
    out.findings = findings
    out.code = max((f.level for f in findings), default=OK)
    if findings:
        worst = [f.text for f in findings if f.level == out.code]
        more = len(findings) - len(worst)
        out.summary = "; ".join(worst) + (f" (+{more} more)" if more else "")
    else:
        out.summary = (
            f"{plural(len(res.sinks), 'sink')} delivering, queue {size(qbytes or 0)},"
            f" last successful run {age(now - max(successes))} ago"
        )
    return out


def _plain(text: str) -> str:
    return " ".join(text.replace("|", "/").split())  # one line each: a newline in a message would start another


def _num(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
