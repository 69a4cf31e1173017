"""What the .deb and .rpm are made of, checked without building them (packaging/roundtrip.sh, run by .ci/run,
builds, installs, runs and purges the real packages): the default config, the shell completion the
packaged scripts call, the man page generated from --help, and the units' ExecStart."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import Env

REPO = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    """A script of packaging/ as a module, under a name no installed package can shadow."""
    spec = importlib.util.spec_from_file_location(f"shipctl_packaging_{name}", REPO / "packaging" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("build")
manpage = _load("manpage")

# The console script, as the completion scripts call it (`python -m shipctl` has another program name).
SHIPCTL = Path(sys.executable).parent / "shipctl"


def _default_config(tmp: Path) -> Path:
    """The packaged /etc/shipctl/shipctl.toml with /var/lib/shipctl moved into tmp."""
    text = (REPO / "packaging/files/shipctl.toml").read_text()
    assert text.count("/var/lib/shipctl/") >= 2  # the state and the file sink both live there
    path = tmp / "shipctl.toml"
    path.write_text(text.replace("/var/lib/shipctl/", f"{tmp}/var/"))
    return path


def test_default_config_checks_and_runs_out_of_the_box(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SHIPCTL_STATE")  # the config's own agent.state must be what is used
    env.config = _default_config(tmp_path)
    checked = env.cli("check-config")
    assert checked.exit_code == 0, checked.stderr
    resolved = json.loads(checked.stdout)
    assert resolved["state"] == f"{tmp_path}/var/state.db"
    assert checked.stderr == ""  # no warning (e.g. a $VAR not imported)

    first = env.cli("run")
    assert first.exit_code == 0, first.stderr
    assert (first.stdout, first.stderr) == ("", "")  # a timer's run is quiet
    events = [json.loads(line) for line in (tmp_path / "var/out.jsonl").read_text().splitlines()]
    assert any(e["source"] == "system" and e["kind"] == "metric" for e in events)
    assert oct((tmp_path / "var/state.db").stat().st_mode & 0o777) == "0o600"

    again = env.cli("run")  # within the minute: the monitor is not due, nothing new
    assert again.exit_code == 0
    assert len((tmp_path / "var/out.jsonl").read_text().splitlines()) == len(events)


def _complete(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SHIPCTL)], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not SHIPCTL.exists(), reason="shipctl console script not installed beside this python")
def test_completion_scripts_and_answers():
    for shell in ("bash", "zsh", "fish"):
        res = _complete({"_SHIPCTL_COMPLETE": f"source_{shell}"})
        assert res.returncode == 0, res.stderr
        assert f"_SHIPCTL_COMPLETE=complete_{shell}" in res.stdout  # the script calls shipctl back
    words = _complete({"_SHIPCTL_COMPLETE": "complete_bash", "COMP_WORDS": "shipctl sta", "COMP_CWORD": "1"})
    assert sorted(words.stdout.split()) == ["state", "status"]
    opts = _complete({"_SHIPCTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "shipctl run --max-"})
    assert "--max-seconds" in opts.stdout and "--max-bytes" in opts.stdout
    sub = _complete(
        {
            "_SHIPCTL_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_ARGS": "shipctl state ",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        }
    )
    assert [line.split("\t")[0] for line in sub.stdout.splitlines()] == ["check", "recover"]


@pytest.mark.skipif(not SHIPCTL.exists(), reason="shipctl console script not installed beside this python")
def test_completion_of_an_unknown_shell_is_a_message_not_a_traceback():
    res = _complete({"_SHIPCTL_COMPLETE": "source_tcsh"})
    assert res.returncode == 1
    assert res.stderr.strip() == "Shell tcsh not supported."
    assert res.stdout == ""


def test_man_page_has_every_command_and_its_options():
    import typer.main

    from shipctl.cli import app

    page = manpage.render()
    root = typer.main.get_command(app)
    expected = []
    for name, cmd in root.commands.items():
        expected.append(f"SHIPCTL {name.upper()}")
        expected += [f"SHIPCTL {name.upper()} {sub.upper()}" for sub in getattr(cmd, "commands", {})]
    sections = re.findall(r'^\.SH "(.*)"$', page, re.M)
    assert sorted(sections) == sorted(["SHIPCTL", *expected])
    assert "SHIPCTL STATE RECOVER" in sections  # subcommands of subcommands too
    run_section = page.split('.SH "SHIPCTL RUN"', 1)[1].split(".SH", 1)[0]
    for option in ("\\-\\-max\\-seconds", "\\-\\-max\\-bytes", "\\-\\-wait", "\\-\\-json", "\\-\\-verbose"):
        assert option in run_section
    # Every line starting with a dot is a request of ours; help text never is (it would vanish or misrender).
    requests = {line.split()[0] for line in page.splitlines() if line.startswith(".")}
    assert requests <= {".TH", ".SH", ".TP", ".nf", ".fi", ".B"}
    assert "75" in page.split(".SH EXIT STATUS", 1)[1]  # the exit codes come from cli's docstring


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_man_page_renders_without_warnings(tmp_path: Path):
    src = tmp_path / "shipctl.1"
    src.write_text(manpage.render())
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(src)], capture_output=True, text=True)
    assert res.returncode == 0
    assert res.stderr == ""


def test_units_run_the_packaged_binary(tmp_path: Path):
    unit = tmp_path / "shipctl.service"
    unit.write_text(
        "[Service]\nExecStartPre=/opt/shipctl/bin/shipctl check-config\n"
        "ExecStart=/opt/shipctl/bin/shipctl run --config /etc/shipctl/shipctl.toml\n"
    )
    text = build.unit_text(unit)
    assert "ExecStart=/usr/bin/shipctl run --config /etc/shipctl/shipctl.toml\n" in text
    assert "ExecStartPre=/opt/shipctl/bin/shipctl check-config\n" in text  # only ExecStart= is pointed
    unit.write_text("ExecStart=-+/opt/shipctl/bin/shipctl run\nExecStart=/usr/bin/shipctlx\n")
    assert build.unit_text(unit) == "ExecStart=-+/usr/bin/shipctl run\nExecStart=/usr/bin/shipctlx\n"
    unit.write_text("ExecStart=/usr/bin/shipctl run -c /etc/shipctl/shipctl.toml\n")
    assert build.unit_text(unit) == unit.read_text()
    # The units shipped today: every ExecStart of the package runs /usr/bin/shipctl.
    for path in (REPO / "timers").glob("shipctl.service"):
        starts = re.findall(r"^ExecStart=(\S+)", build.unit_text(path), re.M)
        assert starts and set(starts) == {"/usr/bin/shipctl"}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) not installed")
def test_glibc_floor_is_the_newest_symbol_version(tmp_path: Path):
    exe = Path(sys.executable).resolve()
    shutil.copy(exe, tmp_path / "python")
    (tmp_path / "notes.txt").write_text("not an ELF file")
    out = subprocess.run(["objdump", "-T", str(exe)], capture_output=True, text=True).stdout
    versions = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out)}
    assert build.glibc_floor(tmp_path) == ".".join(map(str, max(versions)))
