"""``shipctl timers install``: the units and the cron file it writes, checked by systemd's own tools.

``systemd-analyze verify`` and ``systemd-analyze security --offline=true`` run against a temp root holding a
copy of the system's unit directory (for sysinit.target and the like), an /etc/passwd and a shipctl binary,
so nothing needs systemd as PID 1. The cron lines are run for real with /bin/sh, the way cron runs them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipctl.cli import app
from shipctl.commands import timers

REPO = Path(__file__).resolve().parent.parent
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
EXPOSURE = re.compile(r"Overall exposure level for shipctl\.service: (\d+\.\d+) (\w+)")
SHIPCTL = str(Path(sys.executable).with_name("shipctl"))
# The installed-for user: another uid when we are root (as on a server), ourselves otherwise (chown to self).
USER_IDS = (4242, 4242) if os.getuid() == 0 else (os.getuid(), os.getgid())


def _require_systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path and SYSTEM_UNITS.is_dir():
        return path
    why = "systemd-analyze is not installed (Debian: apt-get install --no-install-recommends systemd)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; .ci/run installs it, so in CI this is a failure", pytrace=False)
    pytest.skip(why)


def systemd_version() -> int:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, check=True).stdout
    return int(re.match(r"systemd (\d+)", out).group(1))  # type: ignore[union-attr]


def cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    """A root to install into: systemd's unit directory, the users, and an executable /usr/bin/shipctl."""
    analyze = _require_systemd_analyze()
    assert analyze
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc").mkdir()
    uid, gid = USER_IDS
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nshipctl:x:{uid}:{gid}::/var/lib/shipctl:/usr/sbin/nologin\n"
        f"logship:x:{uid}:{gid}::/var/lib/logship:/usr/sbin/nologin\n"
    )
    binary = root / "usr/bin/shipctl"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", f"--root={root}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
    )


def exposure(root: Path) -> tuple[float, str]:
    proc = analyze(root, "security", "--offline=true", "shipctl.service")
    m = EXPOSURE.search(proc.stdout)
    assert m, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    return float(m.group(1)), m.group(2)


# --- the files in timers/ ------------------------------------------------------------------------------------


def test_the_files_in_timers_are_the_default_output() -> None:
    spec = timers.Spec()
    assert (REPO / "timers/shipctl.service").read_text() == timers.render_service(spec)
    assert (REPO / "timers/shipctl.timer").read_text() == timers.render_timer(spec)
    assert (REPO / "timers/crontab").read_text() == timers.render_cron(spec)
    # What the deb/rpm packages rely on.
    service = (REPO / "timers/shipctl.service").read_text()
    assert "\nExecStart=/usr/bin/shipctl run -c /etc/shipctl/shipctl.toml\n" in service
    assert "\nUser=shipctl\n" in service and "\nStateDirectory=shipctl\n" in service


def test_print_writes_the_units_to_stdout_and_nothing_to_disk(tmp_path: Path) -> None:
    code, out, err = cli("timers", "install", "--print", "--root", str(tmp_path))
    assert code == 0, err
    assert err == ""
    service = (REPO / "timers/shipctl.service").read_text()
    timer = (REPO / "timers/shipctl.timer").read_text()
    assert out == (
        f"# ==> /etc/systemd/system/shipctl.service <==\n{service}\n"
        f"# ==> /etc/systemd/system/shipctl.timer <==\n{timer}"
    )
    assert list(tmp_path.iterdir()) == []

    code, out, err = cli("timers", "install", "--print", "--cron", "--every", "15s", "--user", "logship")
    assert code == 0, err
    assert out == "# ==> /etc/cron.d/shipctl <==\n" + timers.render_cron(timers.Spec(15, "logship"))


# --- --every and the other options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("30", 30), ("5", 5), ("1m", 60), ("1 minute", 60), ("5min", 300), ("2h", 7200), ("24h", 86400)],
)
def test_every_accepts(text: str, seconds: int) -> None:
    assert timers.parse_every(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0", "shortest interval is 5s"),
        ("3s", "shortest interval is 5s"),
        ("45s", "must divide a minute evenly (5s, 6s, 10s, 12s, 15s, 20s, 30s)"),
        ("90s", "must divide an hour evenly"),
        ("7m", "must divide an hour evenly"),
        ("5h", "must divide a day evenly"),
        ("48h", "longest interval is 24h"),
        ("2d", "expected a number with s, m or h"),
        ("-5s", "expected a number with s, m or h"),
        ("", "expected a number with s, m or h"),
        ("1m30s", "expected a number with s, m or h"),
    ],
)
def test_every_rejects_with_exit_64(text: str, says: str, tmp_path: Path) -> None:
    code, out, err = cli("timers", "install", "--every", text, "--print")
    assert code == 64
    assert out == ""
    assert err.startswith(f"shipctl: --every {text!r}" if "expected" in says else f"shipctl: --every {text}:")
    assert says in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--user", "root"], "--user root: the units run shipctl as an unprivileged user"),
        (["--user", "Ship Ctl"], "expected a system user name"),
        (["--user", "a;rm"], "expected a system user name"),
        (["--config", "shipctl.toml"], "--config 'shipctl.toml': expected an absolute path"),
        (["--exec", "/usr/bin/ship\nctl"], "control characters are not allowed"),
        (["--exec", '/opt/q"x/shipctl'], "systemd refuses quotes and backslashes in a command path"),
    ],
)
def test_bad_options_exit_64(args: list[str], says: str) -> None:
    code, out, err = cli("timers", "install", "--print", *args)
    assert (code, out) == (64, "")
    assert says in err


# --- systemd's verdict on the generated units ---------------------------------------------------------------


VARIANTS = {
    "default": [],
    "every 15s": ["--every", "15s"],
    "user logship": ["--user", "logship"],
    "every 5m, odd config path": ["--every", "5m", "--config", '/etc/ship ctl/50%$HOME"x.toml'],
    # verify checks that the command exists: a %n (a specifier) or $HOME not taken literally would fail it.
    "odd exec path": ["--exec", "/opt/ship ctl/50%n$HOME/shipctl"],
}


@pytest.mark.parametrize("args", VARIANTS.values(), ids=VARIANTS.keys())
def test_installed_units_verify_and_score_ok(sysroot: Path, args: list[str]) -> None:
    if "--exec" in args:
        binary = sysroot / args[args.index("--exec") + 1].lstrip("/")
        binary.parent.mkdir(parents=True)
        shutil.copy2(sysroot / "usr/bin/shipctl", binary)
    code, out, err = cli("timers", "install", "--root", str(sysroot), *args)
    assert code == 0, err
    assert out == ""  # stdout is data: install reports on stderr
    unit_dir = sysroot / "etc/systemd/system"
    for name in ("shipctl.service", "shipctl.timer"):
        assert stat.S_IMODE((unit_dir / name).stat().st_mode) == 0o644
    enabled = unit_dir / "timers.target.wants/shipctl.timer"
    assert enabled.is_symlink() and os.readlink(enabled) == "/etc/systemd/system/shipctl.timer"
    assert "ran systemctl --root=" in err

    proc = analyze(sysroot, "verify", "shipctl.service", "shipctl.timer")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # unknown keys and bad values are only warnings

    score, verdict = exposure(sysroot)
    assert score <= 2.0 and verdict == "OK", score
    # The figure the unit's own comment gives stays true.
    claimed = re.search(r"\(systemd (\d+)\) rates it (\d+\.\d+) OK", (unit_dir / "shipctl.service").read_text())
    assert claimed
    if systemd_version() == int(claimed.group(1)):  # other versions weigh the settings a little differently
        assert float(claimed.group(2)) == score


def test_the_exposure_check_can_fail(sysroot: Path) -> None:
    """The score parser and threshold reject an unsandboxed root unit like the one this replaced (9.6)."""
    unit_dir = sysroot / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "shipctl.service").write_text(
        "[Service]\nType=oneshot\nExecStart=/usr/bin/shipctl run -c /etc/shipctl/shipctl.toml\n"
    )
    score, verdict = exposure(sysroot)
    assert score > 9 and verdict == "UNSAFE"
    (unit_dir / "shipctl.service").write_text(
        timers.render_service(timers.Spec()).replace("ProtectSystem=strict", "ProtectSystem=maybe")
    )
    proc = analyze(sysroot, "verify", "shipctl.service")
    assert "Failed to parse protect system value" in proc.stderr  # so the empty-stderr check catches a bad value


def test_execstart_escapes_specifiers_variables_and_quotes() -> None:
    spec = timers.Spec(config='/etc/ship ctl/50%$HOME"x.toml')
    line = next(x for x in timers.render_service(spec).splitlines() if x.startswith("ExecStart="))
    assert line == 'ExecStart=/usr/bin/shipctl run -c "/etc/ship ctl/50%%$$HOME\\"x.toml"'


@pytest.mark.parametrize(
    ("every", "step"), [("15s", 15), ("5s", 5), ("1m", 60), ("5m", 300), ("2h", 7200), ("24h", 86400)]
)
def test_timer_fires_on_an_even_grid(every: str, step: int) -> None:
    _require_systemd_analyze()
    spec = timers.Spec(timers.parse_every(every))
    timer = timers.render_timer(spec)
    on_calendar = re.search(r"^OnCalendar=(.+)$", timer, re.M).group(1)  # type: ignore[union-attr]
    assert re.search(rf"^RandomizedDelaySec={re.escape(timers.span(step))}$", timer, re.M)
    assert "\nFixedRandomDelay=true\n" in timer and "\nAccuracySec=1s\n" in timer
    proc = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=4", on_calendar],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TZ": "UTC"},
    )
    assert proc.returncode == 0, proc.stderr
    times = [
        dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S")
        for m in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", proc.stdout)
    ]
    assert len(times) == 4, proc.stdout
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(times)} == {step}


def test_budget_and_timeout_follow_the_interval() -> None:
    default = timers.render_service(timers.Spec())
    assert "\nTimeoutStartSec=75s\n" in default  # agent.max_seconds' default 50 s + a tick's slack
    fast = timers.render_service(timers.Spec(15))
    assert "\nExecStart=/usr/bin/shipctl run -c /etc/shipctl/shipctl.toml --max-seconds 12\n" in fast
    assert "\nTimeoutStartSec=30s\n" in fast
    slow = timers.render_service(timers.Spec(3600))
    assert "--max-seconds 3000\n" in slow and "\nTimeoutStartSec=3615s\n" in slow
    assert "\nUser=logship\n" in timers.render_service(timers.Spec(user="logship"))
    sub = timers.render_timer(timers.Spec(15))
    assert "4 runs a minute cost ~1.3% of a core" in sub  # the documented trade-off


# --- installing -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="systemd runs here: this would install for real")
def test_without_systemd_install_refuses_with_69(tmp_path: Path) -> None:
    code, out, err = cli("timers", "install")
    assert (code, out) == (69, "")
    assert "systemd is not running on this machine" in err and "--cron" in err
    assert not Path("/etc/systemd/system/shipctl.timer").exists()


def test_missing_user_exits_67_and_writes_nothing(sysroot: Path) -> None:
    code, out, err = cli("timers", "install", "--root", str(sysroot), "--user", "nobody2")
    assert (code, out) == (67, "")
    assert "user 'nobody2' does not exist" in err and "useradd --system" in err
    assert not (sysroot / "etc/systemd/system/shipctl.service").exists()


def test_missing_binary_exits_64_and_names_this_one(sysroot: Path) -> None:
    code, _, err = cli("timers", "install", "--root", str(sysroot), "--exec", "/opt/shipctl/bin/shipctl")
    assert code == 64
    assert "--exec /opt/shipctl/bin/shipctl: no such executable" in err and "e.g. --exec /" in err
    assert not (sysroot / "etc/systemd/system").exists()


def test_install_notes_what_the_sandbox_would_block(sysroot: Path) -> None:
    conf = sysroot / "etc/shipctl/shipctl.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        '[agent]\nstate = "/srv/shipctl/state.db"\nmax_seconds = 0\n\n'
        '[[logs]]\npath = "/tmp/app/*.log"\n\n[[logs]]\npath = "/var/log/syslog"\n\n'
        '[[sinks]]\ntype = "file"\nid = "out"\npath = "/srv/out.jsonl"\n\n'
        '[[sinks]]\ntype = "file"\nid = "ok"\npath = "/var/lib/shipctl/out.jsonl"\n'
    )
    code, _, err = cli("timers", "install", "--root", str(sysroot))
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("shipctl: note: ")]
    assert len(notes) == 4, notes
    assert "agent.max_seconds = 0 (no limit): a run longer than 75 s is killed" in notes[0]
    assert "agent.state = /srv/shipctl/state.db is read-only for the service" in notes[1]
    assert "[[sinks]] out: path /srv/out.jsonl is read-only" in notes[2]
    assert "[[logs]] /tmp/app/*.log: the service has its own /tmp" in notes[3]


def test_cron_install_writes_the_file_and_hands_over_the_state_dir(sysroot: Path) -> None:
    (sysroot / "etc/systemd/system").mkdir(parents=True)
    (sysroot / "etc/systemd/system/shipctl.timer").write_text("[Timer]\n")
    env_file = sysroot / "etc/default/shipctl"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("SCALYR_API_KEY=x\n")
    env_file.chmod(0o600)  # ours: when we are root, root's, as on a server
    code, out, err = cli("timers", "install", "--cron", "--every", "30s", "--root", str(sysroot))
    assert (code, out) == (0, ""), err
    cron = sysroot / "etc/cron.d/shipctl"
    assert cron.read_text() == timers.render_cron(timers.Spec(30))
    assert stat.S_IMODE(cron.stat().st_mode) == 0o644  # cron ignores group/other-writable files
    state = sysroot / "var/lib/shipctl"
    st = state.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and (st.st_uid, st.st_gid) == USER_IDS
    assert "shipctl.timer is installed too: disable one" in err
    if os.getuid() == 0:
        assert "/etc/default/shipctl is not readable by shipctl" in err
    assert not (sysroot / "etc/systemd/system/timers.target.wants").exists()  # cron mode enables no unit


def test_cron_schedules() -> None:
    def lines(every: int) -> list[str]:
        return [x for x in timers.render_cron(timers.Spec(every)).splitlines() if x and x[0] in "*0"]

    assert [x.split(" shipctl ")[0] for x in lines(300)] == ["*/5 * * * *"]
    assert [x.split(" shipctl ")[0] for x in lines(7200)] == ["0 */2 * * *"]
    assert [x.split(" shipctl ")[0] for x in lines(86400)] == ["0 0 * * *"]
    sub = lines(15)
    assert len(sub) == 4
    assert [re.search(r"sleep \$\(\( (\d+ \+ )?", x).group(1) for x in sub] == [None, "15 + ", "30 + ", "45 + "]  # type: ignore[union-attr]
    assert all("timeout -k 10 30 " in x and "--max-seconds 12'" in x for x in sub)


# --- the cron line, run the way cron runs it --------------------------------------------------------------------


def _cron_command(text: str) -> str:
    """The command field of the one schedule line, %-unescaped as cron does (an unescaped % is a newline)."""
    [line] = [x for x in text.splitlines() if x.startswith("* * * * * ")]
    command = line.split(" ", 6)[6]
    assert not re.search(r"(?<!\\)%", command), "an unescaped % would cut the command at that point"
    return command.replace("\\%", "%")


def logs(sink: Path) -> list[str]:
    events = [json.loads(x) for x in sink.read_text().splitlines()]
    return [e["message"] for e in events if e["kind"] == "log"]


def test_cron_line_runs_shipctl_with_the_env_file_under_a_lock(tmp_path: Path) -> None:
    odd = tmp_path / "conf 50%'s dir"  # a space, a % (cron) and a quote (sh -c) in the config path
    odd.mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/app.log").write_text("hello from cron\n")
    sink = tmp_path / "out.jsonl"
    config = odd / "shipctl.toml"
    config.write_text(f'[[logs]]\npath = "{tmp_path}/logs/*.log"\n\n[[sinks]]\ntype = "file"\npath = "{sink}"\n')
    statedir, env_file, state = tmp_path / "lib/shipctl", tmp_path / "default-shipctl", tmp_path / "st/state.db"
    statedir.mkdir(parents=True)
    # Only the environment file says where the state goes: it must be sourced and exported.
    env_file.write_text(f"SHIPCTL_STATE={state}\n")

    command = _cron_command(timers.render_cron(timers.Spec(60, config=str(config), exec_path=SHIPCTL)))
    command = command.replace(timers.STATE_DIR, str(statedir)).replace(timers.ENV_FILE, str(env_file))
    sleep, run = command.split("; ", 1)
    assert run.startswith("exec flock -n ")

    env = {k: v for k, v in os.environ.items() if k != "SHIPCTL_STATE"}
    offset = subprocess.run(["/bin/sh", "-c", sleep.replace("sleep ", "echo ", 1)], capture_output=True, text=True)
    assert offset.returncode == 0 and 0 <= int(offset.stdout) < 60, offset
    again = subprocess.run(["/bin/sh", "-c", sleep.replace("sleep ", "echo ", 1)], capture_output=True, text=True)
    assert again.stdout == offset.stdout  # a host keeps its offset

    proc = subprocess.run(["/bin/sh", "-c", run], capture_output=True, text=True, env=env, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")  # quiet: cron mails nothing
    assert logs(sink) == ["hello from cron"]
    assert state.exists()

    # While a run holds the lock, the next tick goes away at once, silently, and runs nothing.
    (tmp_path / "logs/app.log").write_text("hello from cron\nsecond line\n")
    with open(statedir / "cron.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        busy = subprocess.run(["/bin/sh", "-c", run], capture_output=True, text=True, env=env, timeout=60)
        assert (busy.returncode, busy.stdout, busy.stderr) == (1, "", "")
        assert time.monotonic() - started < 10
    assert logs(sink) == ["hello from cron"]
    proc = subprocess.run(["/bin/sh", "-c", run], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert logs(sink) == ["hello from cron", "second line"]


# --- uninstall -----------------------------------------------------------------------------------------------


def test_uninstall_disables_and_removes_what_install_wrote_and_nothing_else(sysroot: Path) -> None:
    assert cli("timers", "install", "--root", str(sysroot))[0] == 0
    unit_dir = sysroot / "etc/systemd/system"
    enabled = unit_dir / "timers.target.wants/shipctl.timer"
    assert enabled.is_symlink()
    packaged = sysroot / "usr/lib/systemd/system/shipctl.timer"  # as a distribution package would ship it
    packaged.write_text((REPO / "timers/shipctl.timer").read_text())
    state = sysroot / "var/lib/shipctl"
    state.mkdir(parents=True)
    (state / "state.db").write_text("kept")
    # --print: says what it would do, on stdout; changes nothing.
    code, out, err = cli("timers", "uninstall", "--print", "--root", str(sysroot))
    assert code == 0, err
    assert f"would remove /etc/systemd/system/shipctl.timer under {sysroot}" in out
    assert f"would remove /etc/systemd/system/shipctl.service under {sysroot}" in out
    assert f"would run systemctl --root={sysroot} disable shipctl.timer" in out
    assert (unit_dir / "shipctl.timer").exists() and enabled.is_symlink()
    code, out, err = cli("timers", "uninstall", "--root", str(sysroot))
    assert code == 0, err
    assert out == ""  # stdout is data
    assert f"shipctl: ran systemctl --root={sysroot} disable shipctl.timer" in err
    assert "shipctl: removed /etc/systemd/system/shipctl.service" in err
    assert not (unit_dir / "shipctl.timer").exists() and not (unit_dir / "shipctl.service").exists()
    assert not enabled.is_symlink() and not enabled.exists()
    assert packaged.exists() and (state / "state.db").read_text() == "kept"
    # Again: nothing left to remove, exit 0, and it says so.
    code, out, err = cli("timers", "uninstall", "--root", str(sysroot))
    assert (code, out) == (0, "") and "nothing to remove" in err


def test_uninstall_cron_removes_only_the_cron_file(sysroot: Path) -> None:
    assert cli("timers", "install", "--cron", "--root", str(sysroot))[0] == 0
    cron_file = sysroot / "etc/cron.d/shipctl"
    assert cron_file.exists() and (sysroot / "var/lib/shipctl").is_dir()
    code, out, err = cli("timers", "uninstall", "--cron", "--print", "--root", str(sysroot))
    assert (code, out) == (0, f"would remove /etc/cron.d/shipctl under {sysroot}\n") and cron_file.exists()
    code, out, err = cli("timers", "uninstall", "--cron", "--root", str(sysroot))
    assert code == 0 and "removed /etc/cron.d/shipctl" in err
    assert not cron_file.exists() and (sysroot / "var/lib/shipctl").is_dir()


def test_uninstall_leaves_a_unit_it_did_not_write(sysroot: Path) -> None:
    own = sysroot / "etc/systemd/system/shipctl.timer"
    own.parent.mkdir(parents=True)
    own.write_text("[Timer]\nOnCalendar=hourly\n")
    code, out, err = cli("timers", "uninstall", "--root", str(sysroot))
    assert (code, out) == (0, "") and "not written by shipctl timers install: left in place" in err
    assert own.read_text() == "[Timer]\nOnCalendar=hourly\n"


def test_uninstall_exit_codes_as_install(sysroot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("timers", "uninstall", "--root", str(sysroot / "missing"))
    assert (code, out) == (64, "") and "no such directory" in err
    assert cli("timers", "install", "--root", str(sysroot))[0] == 0
    monkeypatch.setenv("PATH", str(sysroot / "empty"))  # no systemctl to disable the timer with
    code, out, err = cli("timers", "uninstall", "--root", str(sysroot))
    assert (code, out) == (69, "") and "systemctl not found" in err and "nothing removed" in err
    assert (sysroot / "etc/systemd/system/shipctl.timer").exists()
