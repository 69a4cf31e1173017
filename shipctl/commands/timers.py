"""``shipctl timers install``: write the systemd units (or an /etc/cron.d file) that run ``shipctl run`` on a
schedule, and enable them.

The unit text comes from one template (``shipctl.timer_templates``); ``timers/shipctl.service`` and
``timers/shipctl.timer`` are its default output. The interval must divide a minute, an hour or a day evenly, so
every host runs on the same grid and keeps its own fixed offset within it (systemd: FixedRandomDelay=; cron: a
sleep derived from the host name). A run's budget is 5/6 of the interval (agent.max_seconds' default of 50 s for
the default minute) and the hard timeout the interval plus 15 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import field
from pathlib import Path

from shipctl import timer_templates
from shipctl.errors import CannotWrite, ConfigError, NoSuchUser, Unavailable, UsageError
from shipctl.records import record

DEFAULT_EVERY = 60
DEFAULT_USER = "shipctl"
DEFAULT_CONFIG = "/etc/shipctl/shipctl.toml"
DEFAULT_EXEC = "/usr/bin/shipctl"
STATE_DIR = "/var/lib/shipctl"  # StateDirectory=shipctl; the cron variant creates it itself
LOGS_DIR = "/var/log/shipctl"  # LogsDirectory=shipctl
ENV_FILE = "/etc/default/shipctl"
UNIT_DIR = "etc/systemd/system"  # under --root
CRON_FILE = "etc/cron.d/shipctl"
SERVICE_NAME = "shipctl.service"
TIMER_NAME = "shipctl.timer"
MIN_EVERY = 5  # below this, process start-up (~0.2 s CPU per run, measured) is most of what a run costs
GRACE = 15  # seconds between the interval and the hard timeout
KILL_AFTER = 10  # seconds from SIGTERM to SIGKILL (TimeoutStopSec=, timeout -k)
CPU_PER_RUN = 0.2  # seconds of CPU of an idle `shipctl run` (README: Performance)

_EVERY_RE = re.compile(r"(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?)?", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
# What useradd accepts for a system user, minus the exotic: keeps the name safe in a unit and a crontab.
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n) if n % d == 0]


def parse_every(text: str) -> int:
    """``--every`` in seconds: ``15s``, ``30``, ``1m``, ``5min``, ``2h``. It must divide a minute (at least 5 s),
    an hour (whole minutes) or a day (whole hours) so the runs stay on one grid; otherwise UsageError (64)."""
    m = _EVERY_RE.fullmatch(text.strip())
    if not m:
        raise UsageError(f"--every {text!r}: expected a number with s, m or h, e.g. 15s, 30s, 1m, 5m, 1h")
    seconds = int(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s")[0].lower()]
    if seconds < MIN_EVERY:
        raise UsageError(
            f"--every {text}: the shortest interval is {MIN_EVERY}s (every run is a new process, ~0.2 s of CPU even"
            " with nothing to do)"
        )
    if seconds < 60:
        if 60 % seconds:
            ok = ", ".join(f"{d}s" for d in _divisors(60) if d >= MIN_EVERY)
            raise UsageError(f"--every {text}: under a minute it must divide a minute evenly ({ok})")
    elif seconds < 3600:
        if seconds % 60 or 3600 % seconds:
            ok = ", ".join(f"{d}m" for d in _divisors(60))
            raise UsageError(f"--every {text}: between a minute and an hour it must divide an hour evenly ({ok})")
    elif seconds > 86400:
        raise UsageError(f"--every {text}: the longest interval is 24h")
    elif seconds % 3600 or 86400 % seconds:
        ok = ", ".join(f"{d}h" for d in [*_divisors(24), 24])
        raise UsageError(f"--every {text}: an hour or more must divide a day evenly ({ok})")
    return seconds


def span(seconds: int) -> str:
    """A systemd time span, the largest whole unit: 15s, 1min, 5min, 2h."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


def human(seconds: int) -> str:
    """For prose: "minute", "15 seconds", "5 minutes", "hour", "2 hours"."""
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    raise AssertionError(seconds)


@record(frozen=True)
class Spec:
    """What the units say: how often, as whom, with which config and binary."""

    every: int = DEFAULT_EVERY
    user: str = DEFAULT_USER
    config: str = DEFAULT_CONFIG
    exec_path: str = DEFAULT_EXEC

    def __post_init__(self) -> None:
        if not _USER_RE.fullmatch(self.user):
            raise UsageError(
                f"--user {self.user!r}: expected a system user name (lower case letters, digits, _ and -;"
                " at most 32 characters)"
            )
        if self.user == "root":
            raise UsageError(
                "--user root: the units run shipctl as an unprivileged user (the sandbox takes every capability"
                " away, so root would gain nothing but risk); give it read access to the logs instead"
                " (group adm, or setfacl)"
            )
        for opt, path in (("--config", self.config), ("--exec", self.exec_path)):
            if not path.startswith("/"):
                raise UsageError(f"{opt} {path!r}: expected an absolute path")
            if any(ord(c) < 32 or c == "\x7f" for c in path):
                raise UsageError(f"{opt} {path!r}: control characters are not allowed in a path")
        if any(c in "\"'\\" for c in self.exec_path):
            # systemd refuses such a command name ("Executable name contains special characters").
            raise UsageError(f"--exec {self.exec_path!r}: systemd refuses quotes and backslashes in a command path")

    @property
    def budget(self) -> int:
        """Seconds a run may work: 5/6 of the interval, so it ends before the next tick (50 s for a minute)."""
        return self.every * 5 // 6

    @property
    def timeout(self) -> int:
        """The hard limit on a run: the interval plus GRACE; only a hang reaches it."""
        return self.every + GRACE

    @property
    def argv(self) -> list[str]:
        """What the timer runs. The default minute relies on agent.max_seconds (default 50 s, the budget);
        another interval passes its own budget, which the config's default would not fit."""
        args = [self.exec_path, "run", "-c", self.config]
        if self.every != DEFAULT_EVERY:
            args += ["--max-seconds", str(self.budget)]
        return args

    def install_args(self) -> str:
        """The ``timers install`` options that reproduce this spec (for the generated files' header)."""
        parts = []
        if self.every != DEFAULT_EVERY:
            parts += ["--every", span(self.every).replace("min", "m")]
        if self.user != DEFAULT_USER:
            parts += ["--user", self.user]
        if self.config != DEFAULT_CONFIG:
            parts += ["--config", self.config]
        if self.exec_path != DEFAULT_EXEC:
            parts += ["--exec", self.exec_path]
        return shlex.join(parts)

    def on_calendar(self) -> str:
        e = self.every
        if e < 60:
            return f"*-*-* *:*:00/{e}"
        if e == 60:
            return "*-*-* *:*:00"
        if e < 3600:
            return f"*-*-* *:00/{e // 60}:00"
        if e < 86400:
            return f"*-*-* 00/{e // 3600}:00:00"
        return "*-*-* 00:00:00"


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``{{name}}``; a placeholder without a value is a bug, never silent output."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template placeholder {{{{{m.group(1)}}}}} has no value")
        return values[m.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", one, template)


def _systemd_word(arg: str, *, command: bool = False) -> str:
    """One ExecStart= word, quoted when it holds a space or quote: % escaped (specifiers), and $ in arguments
    (variables; systemd does not expand them in the command itself, so there $ stays as it is)."""
    word = arg.replace("%", "%%") if command else arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _generated(spec: Spec, cron: bool = False) -> str:
    cmd = " ".join(x for x in ("shipctl timers install", "--cron" if cron else "", spec.install_args()) if x)
    return f"Generated by `{cmd}`; the default output is in shipctl's timers/ directory."


def render_service(spec: Spec) -> str:
    return fill(
        timer_templates.SERVICE,
        {
            "generated": _generated(spec),
            "every": human(spec.every),
            "exec_start": " ".join(_systemd_word(a, command=not i) for i, a in enumerate(spec.argv)),
            "budget": (
                f"agent.max_seconds, default {spec.budget} s"
                if spec.every == DEFAULT_EVERY
                else f"--max-seconds {spec.budget} above"
            ),
            "timeout": span(spec.timeout),
            "user": spec.user,
        },
    )


def render_timer(spec: Spec) -> str:
    values = {
        "generated": _generated(spec),
        "every": human(spec.every),
        "span": span(spec.every),
        "on_calendar": spec.on_calendar(),
        "budget": f"{spec.budget} s",
        "runs_per_minute": str(60 // spec.every) if spec.every < 60 else "1",
        "cpu_percent": f"{CPU_PER_RUN * 60 / spec.every / 60 * 100:.1f}".rstrip("0").rstrip("."),
    }
    values["tradeoff"] = fill(timer_templates.SUBMINUTE_TRADEOFF, values) if spec.every < 60 else "."
    return fill(timer_templates.TIMER, values)


def _cron_schedule(every: int) -> str:
    if every <= 60:
        return "* * * * *"
    if every < 3600:
        return f"*/{every // 60} * * * *"
    if every < 86400:
        return f"0 */{every // 3600} * * *"
    return "0 0 * * *"


def render_cron(spec: Spec) -> str:
    """/etc/cron.d/shipctl: one line per start within a minute (sub-minute intervals sleep to their slot).

    Each line sleeps to this host's own offset within the interval (a CRC of its name, as systemd's
    FixedRandomDelay= uses the machine id: the same on every tick, different across the fleet), takes a lock so
    a slow run is never joined by a second one, and is killed, like TimeoutStartSec=, at the interval plus 15 s.
    """
    state = Path(STATE_DIR)
    inner = f"set -a; [ ! -r {ENV_FILE} ] || . {ENV_FILE}; exec " + shlex.join(spec.argv)
    lock = shlex.quote(str(state / "cron.lock"))
    run = f"exec flock -n {lock} timeout -k {KILL_AFTER} {spec.timeout} sh -c {shlex.quote(inner)}"
    offset = f"$(uname -n | cksum | cut -d' ' -f1) % {spec.every}"
    lines = []
    slots = range(0, 60, spec.every) if spec.every < 60 else [0]
    for start in slots:
        delay = f"$(( {start} + {offset} ))" if start else f"$(( {offset} ))"
        command = f"sleep {delay}; {run}"
        # cron turns an unescaped % into a newline: every % of the command is escaped.
        lines.append(f"{_cron_schedule(spec.every)} {spec.user} {command.replace('%', chr(92) + '%')}")
    every = human(spec.every)
    header = f"""\
# /etc/cron.d/shipctl. {_generated(spec, cron=True)}
# `shipctl run` (new log lines, due monitors, upload) every {every}, as user {spec.user}, for systems without
# systemd (the systemd timer does the same with a sandbox; install one or the other, not both).
# Each line sleeps to this host's own offset within the interval (from a checksum of its name), so the fleet
# does not post all at once; flock -n skips a tick while a run is still going (quietly: cron mails output
# only); timeout kills a hung run after {spec.timeout} s (the run itself stops at {spec.budget} s).
# Secrets (SCALYR_API_KEY=...) in {ENV_FILE} must be readable by {spec.user}: chgrp {spec.user}, mode 0640.
# XDG_STATE_HOME puts the state in {STATE_DIR} ({spec.user}'s, 0700), as the systemd unit does.
SHELL=/bin/sh
PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
XDG_STATE_HOME={state.parent}
"""
    return header + "\n".join(lines) + "\n"


# --- install -------------------------------------------------------------------------------------------------


@record
class Written:
    path: str
    text: str


@record
class InstallResult:
    mode: str  # "systemd" or "cron"
    root: str
    printed: bool  # --print: nothing written, nothing run
    files: list[Written] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)  # run, in order
    notes: list[str] = field(default_factory=list)  # for stderr


def systemd_running(root: Path) -> bool:
    """sd_booted(): systemd is PID 1 exactly when /run/systemd/system exists."""
    return (root / "run/systemd/system").is_dir()


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _lookup_user(root: Path, name: str) -> tuple[int, int] | None:
    """(uid, gid) of ``name`` as the target system sees it: NSS for /, the image's /etc/passwd for --root."""
    if root == Path("/"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return pw.pw_uid, pw.pw_gid
    with contextlib.suppress(OSError):
        for line in (root / "etc/passwd").read_text(errors="replace").splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and parts[0] == name and parts[2].isdigit() and parts[3].isdigit():
                return int(parts[2]), int(parts[3])
    return None


def _write(path: Path, text: str) -> None:
    """Write a 0644 file whole or not at all (a half-written unit must never be loaded)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        hint = " (run as root)" if exc.errno in (1, 13) else ""
        raise CannotWrite(f"{path}: cannot write: {exc.strerror}{hint}") from None


def _run(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{shlex.join(argv)}: {exc}") from None
    if proc.returncode:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise Unavailable(f"{shlex.join(argv)} failed (exit {proc.returncode}): {' / '.join(said) or 'no message'}")


def _config_notes(root: Path, spec: Spec, cron: bool) -> list[str]:
    """What in the config the sandbox (or the budget) would get in the way of; notes only, never fatal."""
    from shipctl.config import load_config

    path = _under(root, spec.config)
    if not path.exists():
        return [f"{spec.config} does not exist yet: write it before the first tick"]
    try:
        cfg = load_config(path, env_optional=True)
    except ConfigError as exc:
        return [f"could not check the config against the units: {exc.message}"]
    notes = []
    writable = (STATE_DIR, LOGS_DIR)

    def outside(p: str) -> bool:
        return not any(p == d or p.startswith(d + "/") for d in writable)

    if spec.every == DEFAULT_EVERY and (cfg.agent.max_seconds == 0 or cfg.agent.max_seconds > spec.budget):
        have = "0 (no limit)" if cfg.agent.max_seconds == 0 else f"{cfg.agent.max_seconds:g}"
        notes.append(
            f"{spec.config}: agent.max_seconds = {have}: a run longer than {spec.timeout} s is killed; set it to"
            f" {spec.budget} or less so a run stops cleanly before the next tick"
        )
    if cron:
        return notes
    for key, value in (("agent.state", cfg.agent.state), ("agent.log_file", cfg.agent.log_file)):
        if value and outside(value):
            notes.append(
                f"{spec.config}: {key} = {value} is read-only for the service (ProtectSystem=strict): remove it"
                f" (the default is {STATE_DIR}) or add ReadWritePaths= in a drop-in (systemctl edit shipctl)"
            )
    for sink in cfg.sinks:
        out = sink.options.get("path") if sink.type == "file" else None
        if isinstance(out, str) and outside(out):
            notes.append(
                f"{spec.config}: [[sinks]] {sink.id}: path {out} is read-only for the service (ProtectSystem=strict):"
                " write under /var/lib/shipctl or /var/log/shipctl, or add ReadWritePaths= in a drop-in"
            )
    for log in cfg.logs:
        if log.path.startswith(("/tmp/", "/var/tmp/")):
            notes.append(
                f"{spec.config}: [[logs]] {log.path}: the service has its own /tmp and /var/tmp (PrivateTmp=yes)"
                " and cannot see this file"
            )
    return notes


def _check_target(root: Path, spec: Spec) -> tuple[int, int]:
    """The user and the binary the units name must exist on the target, or the first tick fails."""
    ids = _lookup_user(root, spec.user)
    if ids is None:
        raise NoSuchUser(
            f"user {spec.user!r} does not exist{'' if root == Path('/') else f' in {root}/etc/passwd'}: create it"
            f" (the deb/rpm packages do): useradd --system --home-dir {STATE_DIR} --shell /usr/sbin/nologin"
            f" --groups adm {spec.user}"
        )
    binary = _under(root, spec.exec_path)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        here = shutil.which("shipctl") or sys.argv[0]
        raise UsageError(
            f"--exec {spec.exec_path}: no such executable{'' if root == Path('/') else f' under {root}'};"
            f" give the path of the installed shipctl, e.g. --exec {os.path.abspath(here)}"
        )
    return ids


def install(spec: Spec, *, root: str = "/", cron: bool = False, print_only: bool = False) -> InstallResult:
    """Write and enable the units (or the cron file). ``root`` other than / installs into an image: the files
    are written under it and the timer enabled with ``systemctl --root`` (nothing is started)."""
    base = Path(os.path.abspath(root))
    res = InstallResult("cron" if cron else "systemd", str(base), print_only)
    if cron:
        res.files.append(Written("/" + CRON_FILE, render_cron(spec)))
    else:
        res.files.append(Written(f"/{UNIT_DIR}/{SERVICE_NAME}", render_service(spec)))
        res.files.append(Written(f"/{UNIT_DIR}/{TIMER_NAME}", render_timer(spec)))
    if print_only:
        return res
    live = base == Path("/")
    if not base.is_dir():
        raise UsageError(f"--root {root}: no such directory")
    if not cron and live and not systemd_running(base):
        raise Unavailable(
            "systemd is not running on this machine (no /run/systemd/system): nothing installed. Use"
            " `shipctl timers install --cron` for /etc/cron.d/shipctl, or --print to see the units"
        )
    uid, gid = _check_target(base, spec)
    res.notes += _config_notes(base, spec, cron)
    for f in res.files:
        _write(_under(base, f.path), f.text)
    if cron:
        _state_dir(base, uid, gid, res)
        if _under(base, f"/{UNIT_DIR}/{TIMER_NAME}").exists():
            res.notes.append(
                f"{TIMER_NAME} is installed too: disable one (systemctl disable --now {TIMER_NAME}, or remove"
                f" /{CRON_FILE}) or shipctl runs from both"
            )
        _env_file_note(base, spec, uid, gid, res)
        if live and not _in_group(spec.user, gid, "adm"):
            # The unit adds adm by SupplementaryGroups=; cron only has the groups /etc/group gives the user.
            res.notes.append(
                f"{spec.user} is not in group adm, so cron runs cannot read /var/log: usermod -aG adm {spec.user}"
            )
        if live and not any(shutil.which(d) for d in ("cron", "crond", "cronie")):
            res.notes.append("no cron daemon found (cron, crond): install one, or nothing will run the file")
        res.notes.append(f"cron reads /{CRON_FILE} within a minute; runs log to cron mail only when they fail")
        return res
    if _under(base, "/" + CRON_FILE).exists():
        res.notes.append(f"/{CRON_FILE} exists too: remove it, or shipctl runs from both cron and the timer")
    if shutil.which("systemctl") is None:
        raise Unavailable(f"systemctl not found: units written under {root}, but {TIMER_NAME} is not enabled")
    steps = (
        # restart, not just start: a timer already running keeps its old schedule until restarted.
        [["systemctl", "daemon-reload"], ["systemctl", "enable", TIMER_NAME], ["systemctl", "restart", TIMER_NAME]]
        if live
        else [["systemctl", f"--root={base}", "enable", TIMER_NAME]]
    )
    for argv in steps:
        _run(argv)
        res.commands.append(argv)
    return res


def _state_dir(root: Path, uid: int, gid: int, res: InstallResult) -> None:
    """cron has no StateDirectory=: make /var/lib/shipctl the user's, 0700, as systemd would."""
    path = _under(root, STATE_DIR)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise CannotWrite(f"{path}: not a directory")
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
            res.notes.append(f"{STATE_DIR} now belongs to uid {uid} (it was uid {st.st_uid})")
        os.chmod(path, 0o700)
    except PermissionError as exc:
        raise CannotWrite(f"{path}: cannot hand it to uid {uid}: {exc.strerror} (run as root)") from None
    except OSError as exc:
        raise CannotWrite(f"{path}: cannot create the state directory: {exc.strerror}") from None


def _in_group(user: str, gid: int, group: str) -> bool:
    import grp

    try:
        g = grp.getgrnam(group)
    except KeyError:
        return True  # no such group here: nothing to join
    return gid == g.gr_gid or user in g.gr_mem


def _env_file_note(root: Path, spec: Spec, uid: int, gid: int, res: InstallResult) -> None:
    with contextlib.suppress(OSError):
        st = _under(root, ENV_FILE).stat()
        readable = (
            (st.st_uid == uid and st.st_mode & 0o400) or (st.st_gid == gid and st.st_mode & 0o040) or st.st_mode & 0o004
        )
        if not readable:
            res.notes.append(
                f"{ENV_FILE} is not readable by {spec.user}, so cron runs would lack its variables:"
                f" chgrp {spec.user} {ENV_FILE} && chmod 0640 {ENV_FILE}"
            )


# --- uninstall ---------------------------------------------------------------------------------------------

MARKER = "Generated by `shipctl timers install"  # the first line of every file install writes


@record
class UninstallResult:
    mode: str  # "systemd" or "cron"
    root: str
    printed: bool  # --print: nothing removed, nothing run
    removed: list[str] = field(default_factory=list)  # paths as on the target system
    commands: list[list[str]] = field(default_factory=list)  # run (or, with --print, to run), in order
    notes: list[str] = field(default_factory=list)  # for stderr


def _ours(path: Path) -> bool:
    """A file install wrote (its marker in the first lines), not one an administrator wrote under the same name."""
    try:
        with path.open(errors="replace") as fh:
            head = fh.read(400)
    except OSError:
        return False
    return MARKER in head


def uninstall(*, root: str = "/", cron: bool = False, print_only: bool = False) -> UninstallResult:
    """Disable and remove what ``install`` wrote: the units in /etc/systemd/system, or /etc/cron.d/shipctl.
    Never the packaged units in /usr/lib/systemd/system (the package manager owns them), nor the state
    directory (the queue and offsets outlive a schedule: reinstalling goes on where the runs stopped)."""
    base = Path(os.path.abspath(root))
    res = UninstallResult("cron" if cron else "systemd", str(base), print_only)
    if not base.is_dir():
        raise UsageError(f"--root {root}: no such directory")
    live = base == Path("/")
    names = ["/" + CRON_FILE] if cron else [f"/{UNIT_DIR}/{TIMER_NAME}", f"/{UNIT_DIR}/{SERVICE_NAME}"]
    for name in names:
        path = _under(base, name)
        if not path.exists() and not path.is_symlink():
            continue
        if _ours(path):
            res.removed.append(name)
        else:
            res.notes.append(f"{name} was not written by shipctl timers install: left in place")
    if not res.removed:
        res.notes.append(f"nothing to remove: no {' or '.join(names)} written by shipctl timers install")
        return res
    if not cron:
        timer_ours = f"/{UNIT_DIR}/{TIMER_NAME}" in res.removed
        if live:
            res.commands += [["systemctl", "disable", "--now", TIMER_NAME]] if timer_ours else []
            res.commands += [["systemctl", "stop", SERVICE_NAME], ["systemctl", "daemon-reload"]]
        elif timer_ours:
            res.commands.append(["systemctl", f"--root={base}", "disable", TIMER_NAME])
    if print_only:
        return res
    if not cron:
        if live and not systemd_running(base):
            raise Unavailable(
                "systemd is not running on this machine (no /run/systemd/system): nothing removed. Use"
                " `shipctl timers uninstall --cron` for /etc/cron.d/shipctl"
            )
        if shutil.which("systemctl") is None:
            raise Unavailable(f"systemctl not found: {TIMER_NAME} cannot be disabled; nothing removed")
    # Disable (and stop) before removing: a unit file gone while enabled leaves a dangling wants/ link.
    reload = [c for c in res.commands if c[-1] == "daemon-reload"]
    for argv in [c for c in res.commands if c not in reload]:
        _run(argv)
    for name in res.removed:
        path = _under(base, name)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            hint = " (run as root)" if exc.errno in (1, 13) else ""
            raise CannotWrite(f"{path}: cannot remove: {exc.strerror}{hint}") from None
    for argv in reload:  # after the files are gone, so systemd forgets the units
        _run(argv)
    if not cron and _under(base, f"/usr/lib/systemd/system/{TIMER_NAME}").exists():
        res.notes.append(
            f"the packaged /usr/lib/systemd/system/{TIMER_NAME} is left as the package installed it"
            f" (disable it with systemctl disable --now {TIMER_NAME} if it is enabled)"
        )
    res.notes.append(f"the state directory ({STATE_DIR}) is kept: the queue and file offsets are still in it")
    return res
