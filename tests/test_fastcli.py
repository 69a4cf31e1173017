"""Issue 13: the console script runs ``run``, ``tail-once`` and ``upload`` without typer (shipctl/fastcli.py).
Both paths must read the same argv the same way and end with the same output and exit code."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from shipctl import cli, fastcli
from shipctl.commands import shipping
from tests.conftest import Env
from tests.receiver import Receiver, config_text

SHIPCTL = Path(sys.executable).with_name("shipctl")  # the console script of this venv
NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def test_the_declaration_is_what_typer_parses() -> None:
    """cli.py builds the typer options from fastcli.OPTIONS: same flags, kinds, bounds and defaults."""
    group = typer.main.get_command(cli.app)
    for name, defaults in fastcli.COMMANDS.items():
        params = {p.name: p for p in group.commands[name].params}  # type: ignore[attr-defined]
        assert set(params) == set(defaults), name
        arguments = {d for d, p in params.items() if p.param_type_name == "argument"}
        assert arguments == ({fastcli.ARGUMENTS[name]} if name in fastcli.ARGUMENTS else set()), name
        for d in arguments:  # every word, as a list, None when there is none
            assert params[d].nargs == -1 and params[d].default is None and defaults[d] is None, (name, d)
        for dest, default in defaults.items():
            if dest in arguments:
                continue
            p, o = params[dest], fastcli.OPTIONS[dest]
            assert (p.opts, p.secondary_opts) == (list(o.flags), []), (name, dest)
            assert p.is_flag == o.is_flag and p.multiple == o.multiple, (name, dest)  # type: ignore[attr-defined]
            assert getattr(p.type, "min", None) == o.minimum, (name, dest)
            assert p.default == default, (name, dest)
            assert p.help == o.help and (o.metavar is None or p.metavar == o.metavar), (name, dest)  # type: ignore[attr-defined]
        assert fastcli.COMMANDS[name].keys() == shipping.COMMANDS[name].__annotations__.keys() - {"return"}


def _typer_kwargs(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[int, dict[str, Any] | None]:
    """The exit code and the keyword arguments the typer app calls the command function with."""
    seen: list[dict[str, Any]] = []
    for fn in ("tail_once_command", "upload_command", "run_command", "run_monitor_command"):
        monkeypatch.setattr(shipping, fn, lambda **kw: seen.append(kw) or 0)
    res = CliRunner().invoke(cli.app, argv)
    return res.exit_code, (seen[0] if seen else None)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


FAST = [
    ["run"],
    ["run", "-c", "/etc/x.toml"],
    ["run", "--config", "/etc/x.toml", "--max-seconds", "50", "--wait", "-v"],
    ["run", "--config=/etc/x.toml", "--max-seconds=1e3", "--max-bytes", "100M", "--json", "--verbose"],
    ["run", "-c", "a", "-c", "b"],  # the last one wins
    ["run", "-c", "--json"],  # a value that looks like an option is still the value
    ["run", "--config", "-v", "-c", "--"],
    ["run", "--json", "--json", "-v", "--verbose"],  # a flag given twice
    ["run", "--max-seconds", "nan", "--max-seconds", "inf"],
    ["run", "--max-seconds", "1_0", "--max-bytes=0", "--max-bytes", "4096"],
    ["tail-once", "-c", "x", "--max-bytes", "1.5G", "--wait", "--json"],
    ["tail-once", "--max-seconds", " 5 "],
    ["upload", "-c", "x", "--sink", "a", "--sink=b", "--max-batches", "3", "--force", "--dry-run"],
    ["upload", "--max-batches", "0", "--max-seconds", "0", "--wait", "--json", "-v"],
    ["upload", "-c", ""],
    ["run-monitor"],
    ["run-monitor", "--due", "-c", "x"],
    ["run-monitor", "system", "agent", "--print", "--json", "-v", "--wait"],
    ["run-monitor", "a", "--due", "b", "-c", "x", "c"],  # words between options are arguments too
    ["run-monitor", "shell", "--command", "uname -r", "--opt", "x=1", "--opt=y=two", "--print"],
    ["run-monitor", "shell", "--command", "--print"],
    ["run-monitor", "--opt", "-x"],
]
TYPER = [  # typer must answer these (help, usage errors, other forms of the same options)
    ["run", "--help"],
    ["run", "-c"],
    ["run", "--bogus"],
    ["run", "extra"],
    ["run", "--"],
    ["run", "-vc", "x"],
    ["run", "-cx"],
    ["run", "--wait=1"],
    ["run", "--conf", "x"],
    ["run", "--max-bytes"],
    ["run", "--max-seconds", "-1", "--max-seconds", "5"],  # typer checks only the last: it runs, the slow way
    ["run", "-"],
    ["run", ""],
    ["run", "--json=true"],
    ["run", "--help", "-c", "x"],
    ["tail-once", "-h"],
    ["RUN"],
    ["tail-once", "--max-seconds", "-1"],
    ["tail-once", "--max-seconds", "soon"],
    ["tail-once", "--max-bytes", "10Q"],
    ["tail-once", "--max-bytes", "1.5"],
    ["upload", "--max-batches", "x"],
    ["upload", "--max-batches", "-1"],
    ["upload", "--max-bytes", "1"],
    ["upload", "--max-batches", "1.0"],
    ["tail-once", "--sink", "a"],
    ["tail-once", "--dry-run"],
    ["status"],
    ["--version"],
    ["version"],
    [],
]


@pytest.mark.parametrize("argv", FAST, ids=" ".join)
def test_the_fast_path_reads_argv_as_typer_does(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    parsed = fastcli.parse(argv)
    assert parsed is not None and parsed[0] == argv[0]
    code, kwargs = _typer_kwargs(monkeypatch, argv)
    assert code == 0 and kwargs is not None and _same(parsed[1], kwargs), (parsed, kwargs)


@pytest.mark.parametrize("argv", TYPER, ids=" ".join)
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert fastcli.parse(argv) is None


def _fast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SHIPCTL), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    "argv",
    [["run", "--bogus"], ["tail-once", "--max-bytes", "10Q"], ["upload", "--max-batches", "-1"], ["run", "-vc"]],
    ids=" ".join,
)
def test_usage_errors_are_typers_from_the_console_script(env: Env, argv: list[str]) -> None:
    env.write_config("")
    p = _fast(*argv, "-c", str(env.config))
    r = env.cli(*argv, "-c", str(env.config))
    assert (p.returncode, p.stdout, p.stderr) == (64, "", r.stderr) and r.exit_code == 64


def test_help_goes_through_typer(env: Env) -> None:
    p = _fast("run", "--help")
    assert p.returncode == 0 and "--max-seconds" in p.stdout and "Usage:" in p.stdout


def test_both_paths_end_alike(env: Env) -> None:
    """Same exit code, stdout and stderr from the console script (fast path) and the typer app, for a
    missing config (78) and an idle run (0, silent)."""
    missing = str(env.tmp / "nope.toml")
    for argv in (["run", "-c", missing], ["tail-once", "-c", missing], ["upload", "-c", missing]):
        p, r = _fast(*argv), env.cli(*argv)
        assert (p.returncode, p.stdout, p.stderr) == (r.exit_code, r.stdout, r.stderr) == (78, "", p.stderr), argv
        assert "config file not found" in p.stderr

    (env.logs / "a.log").write_text("one\ntwo\n")
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n')
    assert env.cli("run").exit_code == 0
    for argv in (["run"], ["tail-once"], ["upload"]):
        p, r = _fast(*argv, "-c", str(env.config)), env.cli(*argv)
        assert (p.returncode, p.stdout, p.stderr) == (r.exit_code, r.stdout, r.stderr) == (0, "", ""), argv


@pytest.mark.parametrize("command", ["tail-once", "run"])
def test_both_paths_report_a_log_that_cannot_be_read(env: Env, command: str) -> None:
    """A followed file replaced by a FIFO: exit 65 and one line the first time, then quiet (status shows it)."""
    seen = {}
    for name in ("fast", "typer"):
        log = env.logs / f"{name}.log"
        log.write_text("x\n")
        env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{log}"\n')
        assert env.cli("run").exit_code == 0
        log.unlink()
        os.mkfifo(log)
        runs = [_fast(command, "-c", str(env.config)) if name == "fast" else env.cli(command) for _ in range(2)]
        seen[name] = [
            (r.returncode if isinstance(r, subprocess.CompletedProcess) else r.exit_code, r.stdout, r.stderr)
            for r in runs
        ]
    fast, typer_ = seen["fast"], seen["typer"]
    assert [(c, o, e.replace("fast", "typer")) for c, o, e in fast] == typer_
    assert typer_[0][0] == 65 and "not a regular file (a fifo)" in typer_[0][2] and typer_[1] == (0, "", "")


def test_both_paths_report_a_failed_upload(env: Env) -> None:
    # A sink nobody listens on: the upload fails (69) and says so; the batches stay for the next run.
    (env.logs / "a.log").write_text("one\ntwo\nthree\n")
    sink = 'type = "scalyr"\napi_key = "0123456789abcdef-key"\nserver = "http://127.0.0.1:9"\nallow_http = true\n'
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n[[sinks]]\n{sink}', sink=False)
    first = _fast("run", "-c", str(env.config))
    assert (first.returncode, first.stdout) == (69, "") and "batches kept for the next run" in first.stderr
    # Then the sink backs off; --force tries again, through each path in turn.
    p, r = _fast("upload", "--force", "-c", str(env.config)), env.cli("upload", "--force")
    assert (p.returncode, p.stdout, p.stderr) == (r.exit_code, r.stdout, r.stderr) == (69, "", first.stderr)


IDLE_UNLOADED = (
    "typer",
    "click",
    "rich",
    "shipctl.cli",
    "requests",
    "isal",
    "shipctl.tail.pipeline",
    "shipctl.monitors.runner",
    "gzip",
    "ast",  # inspect's: deferred, and every dataclass an idle run creates has a docstring (issue 13: RSS)
    "dis",
    "ctypes",  # shipctl.malloc loads it only once there is data to move
    "logging",  # shipctl.runtime.log imports it on first use; an idle run logs nothing
    "shipctl.commands.selfmetrics",  # only when configured (agent.textfile, the shipctl monitor)
    "traceback",
)


def _run_probe(env: Env, report: str, setup: str = "") -> list[str]:
    """The argv of a fresh interpreter that runs ``shipctl run -c CONFIG`` through fastcli after ``setup`` (code
    run once fastcli is imported), then prints the exit code and the value of the expression ``report``."""
    probe = (
        "import sys\nfrom shipctl import fastcli\n" + setup + "sys.argv = ['shipctl', 'run', '-c', sys.argv[1]]\n"
        "try:\n    fastcli.main()\nexcept SystemExit as e:\n    code = e.code\n"
        f"print(code, {report})\n"
    )
    return [sys.executable, "-c", probe, str(env.config)]


def _assert_idle_run_loads_none(env: Env) -> None:
    """A ``run`` in a fresh interpreter exits 0 without importing any module of ``IDLE_UNLOADED``."""
    run = _run_probe(env, f"sorted(m for m in {IDLE_UNLOADED!r} if m in sys.modules)")
    p = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert p.stdout.split(" ", 1) == ["0", "[]\n"], p.stdout + p.stderr


def test_an_idle_run_loads_only_what_it_needs(env: Env, receiver: Receiver) -> None:
    """Nothing new, nothing queued, no monitor: no CLI framework, no HTTP client, no compressor, no rules
    engine, no monitor runner (issue 13: what cron starts every minute)."""
    (env.logs / "a.log").write_text("one\n")
    env.write_config(config_text(receiver.url, NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n'), sink=False)
    assert env.cli("run").exit_code == 0 and receiver.accepted == 1
    _assert_idle_run_loads_none(env)
    assert receiver.accepted == 1


def test_an_idle_run_with_a_file_sink_loads_only_what_it_needs(env: Env) -> None:
    """The same with the ``file`` sink (its options module is imported to check the config on every run)."""
    (env.logs / "a.log").write_text("one\n")
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n')
    assert env.cli("run").exit_code == 0 and env.sink.read_text().count("\n") == 1
    _assert_idle_run_loads_none(env)
    assert env.sink.read_text().count("\n") == 1


def test_no_builtin_sink_or_monitor_module_needs_inspect() -> None:
    """Every run imports the modules of the configured sinks and monitors to check their options: none of their
    dataclasses may leave ``dataclasses`` to make a docstring through ``inspect`` (issue 13: a no-op run's RSS)."""
    probe = (
        "import sys\nfrom shipctl import fastcli\nfastcli._defer_inspect()\nfrom shipctl import plugins\n"
        "reg = plugins.registry()\nloaded = []\n"
        "for kind in [*reg.sinks.values(), *reg.monitors.values()]:\n"
        "    plugins.resolve(kind.options)\n"
        "    if 'ast' in sys.modules:\n        loaded.append(kind.name)\n        break\n"
        "import shipctl.monitors.runner\n"
        "print(loaded or ['ast' in sys.modules])\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert p.stdout == "[False]\n", p.stdout + p.stderr


def test_both_paths_run_monitors_alike(env: Env) -> None:
    env.write_config(NO_IMPLICIT + '[[monitors]]\ntype = "shell"\nid = "n"\ncommand = "echo 1"\n')
    cfg = ("-c", str(env.config))
    for argv in (["run-monitor", "nope"], ["run-monitor", "a", "b", "--command", "x"], ["run-monitor", "n", "-v"]):
        p, r = _fast(*argv, *cfg), env.cli(*argv)
        assert (p.returncode, p.stdout, p.stderr) == (r.exit_code, r.stdout, r.stderr), argv
    assert p.returncode == 0 and p.stderr == "run-monitor: 1 monitor ran, 1 event queued, 0 errors\n"

    def printed(out: str) -> list[tuple[Any, ...]]:  # what does not change from run to run (no time, duration)
        events = [json.loads(line) for line in out.splitlines()]
        return [(e["kind"], e["source"], e["attrs"]["metric"], e["attrs"]["value"]) for e in events]

    p, r = _fast("run-monitor", "--print", *cfg), env.cli("run-monitor", "--print")
    assert (p.returncode, p.stderr) == (r.exit_code, r.stderr) == (0, "")
    assert printed(p.stdout) == printed(r.stdout) == [("metric", "n", "output", 1)]


def test_a_deferred_inspect_loads_on_first_use() -> None:
    """The stand-in for ``inspect`` (issue 13: RSS of a no-op run) is the real module to whoever uses it."""
    probe = (
        "import sys\nfrom shipctl import fastcli\nfastcli._defer_inspect()\nimport inspect\n"
        "before = 'ast' in sys.modules\n"
        "print(before, str(inspect.signature(lambda a, b=1: 0)), sys.modules['inspect'].__name__,"
        " type(sys.modules['inspect']).__name__, 'ast' in sys.modules)\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert (p.stdout, p.stderr) == ("False (a, b=1) inspect module True\n", "")


def test_the_collector_is_off_only_while_a_hot_command_starts(env: Env) -> None:
    """fastcli turns the cyclic garbage collector off for start-up (issue 13) and on again, with what start-up
    made frozen, once the state file is open; a command that fails before that leaves it on too."""
    (env.logs / "a.log").write_text("one\n")
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n')
    setup = (
        "import gc\nimport shipctl.commands.run as r\nseen = []\n"
        "def tail(*a, tail=r.tail_once, **k):\n"
        "    seen.append((gc.isenabled(), gc.get_freeze_count() > 1000))\n    return tail(*a, **k)\n"
        "r.tail_once = tail\n"
    )
    run = _run_probe(env, "seen, gc.isenabled()", setup)
    p = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert p.stdout == "0 [(True, True)] True\n", p.stdout + p.stderr
    assert env.sink.read_text().count("\n") == 1
    env.config.write_text(NO_IMPLICIT + "[[logs]]\n")  # exit 78 while loading the config: before the state file
    p = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert p.stdout == "78 [] True\n", p.stdout + p.stderr


def test_a_run_that_logs_sets_up_the_log_file_on_first_use(env: Env) -> None:
    """The fast path imports ``logging`` only when something logs (issue 13), and that record still reaches
    the tool's log file, set up on the first use of the logger."""
    (env.logs / "a.log").write_text("one\ntwo\n")
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n')
    env_vars = {**os.environ, "SHIPCTL_STATE": str(env.state)}
    run = _run_probe(env, "'logging' in sys.modules")
    p = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env_vars)
    assert p.stdout == "0 True\n", p.stdout + p.stderr
    said = (env.state.parent / "shipctl.log").read_text()
    assert said.count("INFO run: exit 0 lines=2") == 1, said
    p = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env_vars)  # nothing new: silent
    assert p.stdout == "0 False\n", p.stdout + p.stderr
    assert (env.state.parent / "shipctl.log").read_text() == said


def test_the_lazy_logger_is_set_up_before_its_first_record(tmp_path: Path) -> None:
    """A set-up given before first use runs on first use (a child logger's too); one given after runs at once."""
    import logging

    from shipctl.runtime import LazyLogger

    lazy = LazyLogger(f"shipctl-test-{tmp_path.name}")
    calls: list[str] = []
    lazy.configure(lambda lg: calls.append("first"))
    lazy.configure(lambda lg: calls.append(f"second {lg.name == lazy.name}"))  # the last one given wins
    assert calls == []
    child = lazy.getChild("kafka")
    assert calls == ["second True"] and child is logging.getLogger(f"{lazy.name}.kafka")
    lazy.configure(lambda lg: calls.append("third"))
    assert calls == ["second True", "third"] and lazy.real() is logging.getLogger(lazy.name)


def test_an_idle_run_takes_no_write_lock_to_deliver(env: Env) -> None:
    """Nothing queued: the upload threads of a no-op run only read (issue 13: a write transaction there could
    wait for the readers' and costs a lock either way). The first run of a sink writes its stream id once."""
    (env.logs / "a.log").write_text("one\n")
    env.write_config(NO_IMPLICIT + f'[[logs]]\npath = "{env.logs}/a.log"\n')
    setup = (
        "import threading\nfrom shipctl.state import db\nseen = []\n"
        "def traced(cls, path, opened=db.State.open.__func__):\n"
        "    state = opened(cls, path)\n    name = threading.current_thread().name\n"
        "    state.conn.set_trace_callback(lambda sql: seen.append((name, sql)))\n    return state\n"
        "db.State.open = classmethod(traced)\n"
    )
    run = _run_probe(env, "sorted({n for n, sql in seen if sql.startswith('BEGIN')})", setup)
    p = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert p.stdout == "0 ['MainThread', 'shipctl-upload-file']\n", p.stdout + p.stderr
    assert env.sink.read_text().count("\n") == 1
    p = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert p.stdout == "0 ['MainThread']\n", p.stdout + p.stderr
