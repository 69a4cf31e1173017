"""Progress bars under a real pseudo-terminal: drawn as bars (no literal rich markup), on a first catch-up
of new files too, one bar per sink while ``run`` and ``upload`` deliver; nothing at all outside a terminal."""

from __future__ import annotations

import re

from shipctl.humanize import size
from tests.conftest import Env, numbered
from tests.tty import frames, run_in_pty


def test_first_catch_up_of_a_new_file_shows_a_bar_without_markup(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    new = env.logs / "new.log"
    new.write_text(numbered(60_000))  # 4.2 MiB, never seen: no state file yet
    code, out, drawn = run_in_pty(env, "tail-once")
    assert code == 0 and out == ""
    assert "[progress" not in drawn and "[/" not in drawn  # no style tags printed as text
    bars = [f for f in frames(drawn) if f.startswith("tail-once ")]
    assert bars, drawn
    total = size(new.stat().st_size)
    assert all("━" in f and re.search(rf"[\d.]+ (B|KiB|MiB) of {total}", f) for f in bars), bars
    assert f"{total} of {total}" in bars[-1]
    assert not re.search(r"\bMB\b|\bkB\b", drawn)  # binary units, as everywhere else


def test_run_shows_the_upload_progress_of_each_sink(env: Env) -> None:
    second = env.tmp / "out" / "second.jsonl"
    env.write_config(
        f"[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"
        f'[[logs]]\npath = "{env.logs}/*.log"\n[[sinks]]\nid = "second"\ntype = "file"\npath = "{second}"\n'
    )
    (env.logs / "a.log").write_text(numbered(60_000))
    code, out, drawn = run_in_pty(env, "run")
    assert code == 0 and out == ""
    assert "[progress" not in drawn
    lines = frames(drawn)
    for sink in ("file", "second"):
        bars = [f for f in lines if f.startswith(f"upload {sink} ")]
        assert bars, drawn
        # The last frame before the bars are cleared: every queued event delivered, out of all of them.
        assert re.search(r"60000 of 60000 events", bars[-1]), bars[-1]
    assert len(env.messages()) == 60_000


def test_upload_alone_shows_its_bar_and_nothing_outside_a_terminal(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    (env.logs / "a.log").write_text(numbered(20_000))
    piped = env.proc("tail-once")  # stderr is a pipe: no bar, no escape codes, nothing at all
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == ""
    code, out, drawn = run_in_pty(env, "upload")
    assert code == 0 and out == ""
    bars = [f for f in frames(drawn) if f.startswith("upload file ")]
    assert bars and "20000 of 20000 events" in bars[-1], drawn
    assert "[progress" not in drawn


def test_a_run_with_nothing_to_do_draws_nothing(env: Env) -> None:
    env.write_config(f'[[logs]]\npath = "{env.logs}/*.log"\n')
    (env.logs / "a.log").write_text("one line\n")
    assert env.proc("run").returncode == 0
    code, out, drawn = run_in_pty(env, "run")
    assert code == 0 and out == ""
    assert "tail-once" not in drawn and "upload" not in drawn
