"""File identity and rotation between runs (and during one): every line arrives exactly once.

Each test drives real files through what logrotate, an editor, a deploy script or an operator does to them
between two `shipctl tail-once` runs, then checks the numbered lines in the file sink. Lines are numbered
across all files of a test; a scenario that destroys lines itself (truncation in place) says which.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, append, assert_exactly_once, numbered

GZIP_METHODS = ("gzip-command", "python-gzip")


class Lines:
    """Appends the next numbered lines to whatever file is at a path, like an application would."""

    def __init__(self, start: int = 0) -> None:
        self.next = start

    def write(self, path: Path, n: int) -> range:
        append(path, numbered(n, start=self.next))
        self.next += n
        return range(self.next - n, self.next)


def assert_lines(msgs: list[str], expected: list[int]) -> None:
    assert_exactly_once(msgs, expected)  # type: ignore[arg-type]


def config(env: Env, path: Path | str, extra: str = "", agent: str = "") -> None:
    env.write_config(f'[agent]\nmax_seconds = 0\n{agent}\n[[logs]]\npath = "{path}"\n{extra}\n')


def ship(env: Env, *args: str) -> None:
    r = env.cli("tail-once", *args)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    r = env.cli("upload")
    assert r.exit_code == 0, (r.stdout, r.stderr)


def files_status(env: Env) -> dict[str, dict[str, Any]]:
    r = env.cli("status", "--json")
    assert r.exit_code == 0, r.stderr
    return {f["path"]: f for lg in json.loads(r.stdout)["logs"] for f in lg["files"]}


def gzip_file(path: Path, method: str) -> Path:
    """Compress like logrotate's `compress`: the .gz keeps the original's mtime, the original goes."""
    gz = path.with_name(path.name + ".gz")
    if method == "gzip-command":
        subprocess.run(["gzip", str(path)], check=True)
    else:
        st = path.stat()
        with path.open("rb") as src, gzip.open(gz, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.utime(gz, ns=(st.st_atime_ns, st.st_mtime_ns))
        path.unlink()
    assert gz.exists() and not path.exists()
    return gz


def logrotate(
    log: Path,
    *,
    compress: bool = False,
    delaycompress: bool = False,
    copytruncate: bool = False,
    gz: str = "gzip-command",
) -> None:
    """One rotation in logrotate's numbered scheme: shift `.N[.gz]` up, move (or copy and truncate) the
    log to `.1`, create the new log, then compress `.1` (or `.2` with delaycompress)."""
    gens = sorted((int(p.name[len(log.name) + 1 :].removesuffix(".gz")), p) for p in log.parent.glob(log.name + ".*"))
    for n, p in reversed(gens):
        p.rename(log.with_name(p.name.replace(f"{log.name}.{n}", f"{log.name}.{n + 1}", 1)))
    first = log.with_name(log.name + ".1")
    if copytruncate:
        shutil.copyfile(log, first)
        os.truncate(log, 0)
    else:
        log.rename(first)
        log.touch()
    if compress:
        target = log.with_name(log.name + (".2" if delaycompress else ".1"))
        if target.exists():
            gzip_file(target, gz)


# --- 1, 2: rename + create ---------------------------------------------------------------------------


def test_rename_and_create_finishes_the_old_file_first(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 15)  # written after the last run: only in the rotated file now
    logrotate(log)
    w.write(log, 7)
    ship(env)
    msgs = env.messages()
    assert_exactly_once(msgs, range(32))
    assert [int(m.split()[1]) for m in msgs] == list(range(32)), "old file's end must come before the new file"
    (f,) = files_status(env).values()
    assert f["rotations"] == 1 and f["bytes_skipped"] == 0 and f["last_error"] is None
    assert f["reading"] == str(log) and f["state"] == "active"
    ship(env)  # a quiet run after the rotation changes nothing
    assert_exactly_once(env.messages(), range(32))
    assert files_status(env)[str(log)]["rotations"] == 1


def test_two_rotations_between_runs_read_oldest_first(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 5)
    logrotate(log)  # A -> .1
    w.write(log, 20)  # B: never seen by any run
    logrotate(log)  # A -> .2, B -> .1
    w.write(log, 3)  # C
    ship(env)
    msgs = env.messages()
    assert [int(m.split()[1]) for m in msgs] == list(range(38))
    f = files_status(env)[str(log)]
    assert f["rotations"] == 2 and f["bytes_skipped"] == 0 and f["last_error"] is None


def test_rotated_generation_with_a_date_name(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 5)
    log.rename(env.logs / "app.log-20260101")
    w.write(log, 5)
    log.rename(env.logs / "app.log-20260102")
    w.write(log, 5)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(25))


# --- 3: copytruncate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("regrow", [3, 400], ids=["short", "regrown-past-old-offset"])
def test_copytruncate_finishes_the_copy(env: Env, regrow: int) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 50)
    ship(env)
    w.write(log, 10)
    logrotate(log, copytruncate=True)
    w.write(log, regrow)  # same inode as before; with 400 lines it is longer than the old offset
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(60 + regrow))
    f = files_status(env)[str(log)]
    assert f["rotations"] == 1 and f["bytes_skipped"] == 0 and f["last_error"] is None


def test_two_copytruncates_between_runs(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 50)
    ship(env)
    w.write(log, 10)
    logrotate(log, copytruncate=True)
    w.write(log, 70)
    logrotate(log, copytruncate=True, compress=True)
    w.write(log, 5)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(135))


# --- 4, 5: truncation in place -------------------------------------------------------------------------


def test_truncate_in_place_reads_the_file_again_from_its_start(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 5)  # lines 10-14 are destroyed by the truncation below before any run sees them
    log.write_text("")  # `> app.log`
    ship(env)
    w.write(log, 4)  # 15-18, shorter than the old offset
    ship(env)
    expected = [*range(10), *range(15, 19)]
    assert [int(m.split()[1]) for m in env.messages()] == expected
    f = files_status(env)[str(log)]
    assert f["rotations"] == 1 and f["last_error"] is None


def test_truncate_and_regrow_past_the_old_offset(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 10)
    ship(env)
    size_read = log.stat().st_size
    w.write(log, 5)  # 10-14: destroyed by the truncation, never expected
    os.truncate(log, 0)
    w.write(log, 100)  # 15-114: the file is now longer than the saved offset
    assert log.stat().st_size > size_read
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == [*range(10), *range(15, 115)]
    assert files_status(env)[str(log)]["rotations"] == 1


# --- 6: compress / delaycompress -----------------------------------------------------------------------


@pytest.mark.parametrize("gz", GZIP_METHODS)
@pytest.mark.parametrize("delaycompress", [False, True], ids=["compress", "delaycompress"])
def test_rotate_then_gzip(env: Env, gz: str, delaycompress: bool) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 30)
    ship(env)
    w.write(log, 10)
    logrotate(log, compress=True, delaycompress=delaycompress, gz=gz)
    assert (env.logs / "app.log.1.gz").exists() != delaycompress
    w.write(log, 10)
    ship(env)
    w.write(log, 10)
    logrotate(log, compress=True, delaycompress=delaycompress, gz=gz)
    assert (env.logs / "app.log.2.gz").exists()
    w.write(log, 10)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(70))
    f = files_status(env)[str(log)]
    assert f["rotations"] == 2 and f["bytes_skipped"] == 0 and f["last_error"] is None


@pytest.mark.parametrize("gz", GZIP_METHODS)
def test_three_rotations_between_runs_with_delaycompress(env: Env, gz: str) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 20)
    ship(env)
    for n in (7, 11, 13):  # the end of A, then B and C that no run ever saw as the live file
        w.write(log, n)
        logrotate(log, compress=True, delaycompress=True, gz=gz)
    w.write(log, 4)  # D
    assert sorted(p.name for p in env.logs.iterdir()) == ["app.log", "app.log.1", "app.log.2.gz", "app.log.3.gz"]
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(55))
    f = files_status(env)[str(log)]
    assert f["rotations"] == 3 and f["bytes_skipped"] == 0


# --- 7: the new file gets the old file's inode -----------------------------------------------------------


@pytest.mark.parametrize("new_lines", [3, 200], ids=["shorter", "longer"])
def test_new_file_reusing_the_rotated_files_inode(env: Env, new_lines: int) -> None:
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 40)
    ship(env)
    w.write(log, 10)
    old_ino = log.stat().st_ino
    log.rename(env.logs / "app.log.1")
    # The inode outlives its rotated name through a second link, and comes back as the new app.log, emptied:
    # what a file system that hands the freed inode out again does. Waiting for one to do so was a gamble
    # (under a parallel test run something else often took it first, and the scenario was skipped).
    keep = env.tmp / "old-inode"
    os.link(env.logs / "app.log.1", keep)
    gzip_file(env.logs / "app.log.1", "python")  # the gzip command leaves a file with another link alone
    with keep.open("r+b") as fh:
        fh.truncate(0)
    keep.rename(log)
    assert log.stat().st_ino == old_ino
    w.write(log, new_lines)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(50 + new_lines))
    f = files_status(env)[str(log)]
    assert f["rotations"] == 1 and f["bytes_skipped"] == 0


# --- 8: symlink retargeted ------------------------------------------------------------------------------


def test_symlink_whose_target_changes(env: Env) -> None:
    data = env.tmp / "data"
    data.mkdir()
    link = env.logs / "current.log"
    config(env, link)
    w = Lines()

    def retarget(name: str) -> Path:
        target = data / name
        target.touch()
        tmp = env.logs / ".current.tmp"
        tmp.symlink_to(target)
        tmp.replace(link)  # atomic, like `ln -sfn`
        return target

    first = retarget("app-1.log")
    w.write(first, 10)
    ship(env)
    assert files_status(env)[str(link)]["reading"] == os.path.realpath(first)
    w.write(first, 10)  # the app writes to its file; the link moves on before the next run
    second = retarget("app-2.log")
    w.write(second, 10)
    ship(env)
    w.write(second, 5)
    third = retarget("app-3.log")
    w.write(third, 5)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(40))
    f = files_status(env)[str(link)]
    assert f["rotations"] == 2 and f["bytes_skipped"] == 0 and f["reading"] == os.path.realpath(third)


# --- 9: deleted between runs --------------------------------------------------------------------------


def test_deleted_file_loss_is_reported_and_other_logs_go_on(env: Env) -> None:
    a, b = env.logs / "a.log", env.logs / "b.log"
    env.write_config(f"""
        [agent]
        max_seconds = 0
        batch_bytes = 4096
        [[logs]]
        path = "{a}"
        max_line_size = 1000
        [[logs]]
        path = "{b}"
    """)
    Lines(0).write(a, 1000)
    Lines(10_000).write(b, 10)
    r = env.cli("tail-once", "--max-bytes", "20000")  # stops part way through a.log, before b.log
    assert r.exit_code == 0, r.stderr
    a_size = a.stat().st_size
    a.unlink()
    r = env.cli("tail-once")
    assert r.exit_code == 65 and str(a) in r.stderr and "lost" in r.stderr
    assert env.cli("upload").exit_code == 0
    nums = [int(m.split()[1]) for m in env.messages()]
    got_a = [n for n in nums if n < 10_000]
    assert got_a == list(range(len(got_a))) and 0 < len(got_a) < 1000
    assert sorted(n for n in nums if n >= 10_000) == list(range(10_000, 10_010))
    st = files_status(env)
    assert st[str(a)]["state"] == "gone"
    assert st[str(a)]["bytes_skipped"] == a_size - len(numbered(len(got_a)))
    assert "disappeared" in st[str(a)]["last_error"]
    assert st[str(b)]["last_error"] is None
    # The loss is reported once; later runs are clean and b.log keeps being followed.
    Lines(10_010).write(b, 5)
    ship(env)
    assert sorted(n for n in (int(m.split()[1]) for m in env.messages()) if n >= 10_000) == list(range(10_000, 10_015))
    assert files_status(env)[str(a)]["bytes_skipped"] == a_size - len(numbered(len(got_a)))


def test_file_deleted_after_being_read_is_not_an_error(env: Env) -> None:
    config(env, env.logs / "*.log")
    a, b = env.logs / "a.log", env.logs / "b.log"
    Lines(0).write(a, 5)
    Lines(100).write(b, 5)
    ship(env)
    a.unlink()
    Lines(105).write(b, 5)
    ship(env)  # exit 0: nothing was lost
    st = files_status(env)
    assert st[str(a)]["state"] == "gone" and st[str(a)]["bytes_skipped"] == 0 and st[str(a)]["last_error"] is None
    assert sorted(int(m.split()[1]) for m in env.messages()) == [*range(5), *range(100, 110)]


def test_replaced_file_not_found_among_rotated_ones_reports_the_loss(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log, agent="batch_bytes = 4096", extra="max_line_size = 1000")
    w = Lines()
    w.write(log, 500)
    assert env.cli("tail-once", "--max-bytes", "8000").exit_code == 0
    size = log.stat().st_size
    log.rename(env.tmp / "elsewhere.log")  # moved where no rotated-file pattern looks
    w.write(log, 5)
    r = env.cli("tail-once")
    assert r.exit_code == 65 and "not found among rotated files" in r.stderr
    assert env.cli("upload").exit_code == 0
    got = [int(m.split()[1]) for m in env.messages()]
    k = got.index(500)
    assert got[:k] == list(range(k)) and got[k:] == list(range(500, 505))
    f = files_status(env)[str(log)]
    assert f["bytes_skipped"] == size - len(numbered(k)) > 0
    assert "not found among rotated files" in f["last_error"]


# --- 10: same first lines, empty files -------------------------------------------------------------------

BANNER = "".join(f"# service banner {i:03d} " + "=" * 40 + "\n" for i in range(30))  # > 1 KiB fingerprint


def test_files_with_identical_first_kilobytes(env: Env) -> None:
    config(env, env.logs / "*.log")
    a, b = env.logs / "a.log", env.logs / "b.log"
    wa, wb = Lines(0), Lines(10_000)
    for f in (a, b):
        f.write_text(BANNER)
    wa.write(a, 10)
    wb.write(b, 10)
    ship(env)
    for f, w in ((a, wa), (b, wb)):
        w.write(f, 5)
        logrotate(f)
        append(f, BANNER)
        w.write(f, 5)
    ship(env)
    msgs = env.messages()
    assert_lines(msgs, [*range(20), *range(10_000, 10_020)])
    assert sum(m.startswith("# service banner 000") for m in msgs) == 4
    # A new match with exactly the bytes of a generation already read is another file: read it all.
    c = env.logs / "c.log"
    shutil.copyfile(env.logs / "a.log.1", c)
    ship(env)
    assert sum(m.startswith("# service banner 000") for m in env.messages()) == 5
    assert sorted(int(m.split()[1]) for m in env.messages() if m.startswith("line ")).count(0) == 2


@pytest.mark.parametrize("how", ["compress", "copytruncate"])
def test_generations_that_differ_only_after_a_common_header(env: Env, how: str) -> None:
    """The last run saw only the banner each generation opens with. Two rotations later, both rotated
    generations and the file at the path (with compress, often under the old file's reused inode; with
    copytruncate, always the same inode) start with the very bytes the record knows."""
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    log.write_text(BANNER)
    ship(env)
    for _ in range(2):
        w.write(log, 10)
        logrotate(log, compress=how == "compress", copytruncate=how == "copytruncate")
        append(log, BANNER)
    w.write(log, 10)
    ship(env)
    msgs = env.messages()
    assert [int(m.split()[1]) for m in msgs if m.startswith("line ")] == list(range(30))
    assert sum(m.startswith("# service banner 000") for m in msgs) == 3
    assert files_status(env)[str(log)]["rotations"] == 2


def test_a_plain_copy_of_the_log_is_not_a_rotation(env: Env) -> None:
    """logrotate's `copy` (or a backup) leaves the log alone: the copy starts with the same bytes and goes
    on the same way, so it must not be taken for the old file."""
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    log.write_text(BANNER)
    w.write(log, 10)
    ship(env)
    w.write(log, 10)
    shutil.copyfile(log, env.logs / "app.log.1")
    w.write(log, 10)
    ship(env)
    msgs = env.messages()
    assert [int(m.split()[1]) for m in msgs if m.startswith("line ")] == list(range(30))
    assert sum(m.startswith("# service banner 000") for m in msgs) == 1
    assert files_status(env)[str(log)]["rotations"] == 0


def test_empty_files_and_empty_generations(env: Env) -> None:
    config(env, env.logs / "*.log")
    logs = [env.logs / f"{c}.log" for c in "abc"]
    for f in logs:
        f.touch()  # three files that all look alike: empty
    ship(env)
    assert env.messages() == []
    w = Lines()
    w.write(logs[1], 5)
    logrotate(logs[0])  # an empty file rotated: nothing to finish
    ship(env)
    logrotate(logs[0])  # and an empty generation between runs
    w.write(logs[0], 5)
    w.write(logs[2], 5)
    logrotate(logs[2])  # c's lines now only in c.log.1; c.log empty again
    ship(env)
    assert_lines(env.messages(), list(range(15)))
    w.write(logs[2], 5)
    ship(env)
    assert_lines(env.messages(), list(range(20)))
    st = files_status(env)
    assert all(st[str(f)]["bytes_skipped"] == 0 and st[str(f)]["last_error"] is None for f in logs)


# --- 11: last line without newline ----------------------------------------------------------------------


def test_partial_last_line_completed_on_a_later_run(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log, extra="line_completion_wait = 3600")
    log.write_text(numbered(5) + "line 000005 first half")
    ship(env)
    assert len(env.messages()) == 5
    append(log, " second half\n" + numbered(2, start=6))
    ship(env)
    assert env.messages()[5] == "line 000005 first half second half"
    assert_lines(env.messages(), list(range(8)))


def test_partial_line_completed_in_the_rotated_file(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log, extra="line_completion_wait = 3600")
    log.write_text(numbered(5) + "line 000005 first half")
    ship(env)
    old = env.logs / "app.log.1"
    log.rename(old)
    append(old, " second half\n" + numbered(1, start=6))  # the app still writes to its open file
    log.write_text(numbered(3, start=7))
    ship(env)
    msgs = env.messages()
    assert msgs[5] == "line 000005 first half second half"
    assert [int(m.split()[1]) for m in msgs] == list(range(10))


@pytest.mark.parametrize("gz", [None, "gzip-command"])
def test_partial_line_of_a_finished_rotated_file_is_sent_as_it_is(env: Env, gz: str | None) -> None:
    log = env.logs / "app.log"
    config(env, log, extra="line_completion_wait = 3600")
    log.write_text(numbered(5) + "line 000005 never finished")
    ship(env)
    logrotate(log, compress=gz is not None, gz=gz or "")
    Lines(6).write(log, 3)
    ship(env)
    msgs = env.messages()
    assert msgs[5] == "line 000005 never finished"
    assert [int(m.split()[1]) for m in msgs] == list(range(9))


# --- 12: glob matches come and go ----------------------------------------------------------------------


def test_glob_matches_appearing_and_disappearing(env: Env) -> None:
    config(env, env.logs / "*.log")
    a, b, c = (env.logs / f"{x}.log" for x in "abc")
    w = Lines()
    w.write(a, 5)
    ship(env)
    w.write(b, 5)  # appears
    ship(env)
    w.write(a, 5)
    a.unlink()  # 10-14 destroyed with the file before any run read them
    w.write(c, 5)  # appears while a disappears
    ship(env)
    w.write(a, 5)  # a new a.log under the old name: read from its start
    w.write(b, 5)
    ship(env)
    expected = [*range(10), *range(15, 30)]
    assert_lines(env.messages(), expected)
    st = files_status(env)
    assert st[str(a)]["state"] == "active" and st[str(b)]["rotations"] == 0


@pytest.mark.parametrize("rotated_name", ["app-20260101.log", "app.1.log"])
def test_rotated_name_that_also_matches_the_glob_is_not_read_twice(env: Env, rotated_name: str) -> None:
    log = env.logs / "app.log"
    config(env, env.logs / "*.log")
    w = Lines()
    w.write(log, 20)
    ship(env)
    w.write(log, 5)
    log.rename(env.logs / rotated_name)
    w.write(log, 5)
    ship(env)
    w.write(log, 5)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(35))
    st = files_status(env)
    assert st[str(log)]["rotations"] == 1
    assert st[str(env.logs / rotated_name)]["bytes_copied"] == 0


# --- 13: rotation during a run, and runs stopped by their budget -------------------------------------


def test_rotation_between_bounded_runs(env: Env) -> None:
    """Runs stop every 30 KB; rotations land while the record is mid-file, in the live file and in a
    rotated one, and compression moves the half-read file to .gz."""
    log = env.logs / "app.log"
    config(env, log, agent="batch_bytes = 4096", extra="max_line_size = 1000")
    w = Lines()
    w.write(log, 2000)  # ~140 KB

    def bounded() -> None:
        ship(env, "--max-bytes", "30000")

    bounded()
    logrotate(log, compress=True, delaycompress=True)  # the half-read file becomes .1
    w.write(log, 1500)
    bounded()
    bounded()
    f = files_status(env)[str(log)]
    assert f["reading"] == str(env.logs / "app.log.1"), "still finishing the rotated file"
    w.write(log, 10)
    logrotate(log, compress=True, delaycompress=True)  # now half way through .2.gz
    w.write(log, 10)
    for _ in range(20):
        before = len(env.messages())
        bounded()
        if len(env.messages()) == before:
            break
    assert [int(m.split()[1]) for m in env.messages()] == list(range(3520))
    f = files_status(env)[str(log)]
    assert f["rotations"] == 2 and f["bytes_skipped"] == 0 and f["last_error"] is None


def _wait_for_open(pid: int, path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                if os.readlink(fd) == str(path):
                    return
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never opened {path}")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_rotation_while_a_run_is_reading(env: Env) -> None:
    """A real tail-once subprocess has the file open and is held at its first commit (the test owns the
    state file's write lock) while the file is rotated, written to through the old name, and replaced."""
    log = env.logs / "app.log"
    config(env, log, agent="batch_bytes = 4096", extra="max_line_size = 1000")
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 2000)
    holder = sqlite3.connect(env.state, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    proc = env.popen("tail-once")
    try:
        _wait_for_open(proc.pid, log)
        assert proc.poll() is None
        log.rename(env.logs / "app.log.1")
        w.write(env.logs / "app.log.1", 100)  # the app writes on until it reopens its log
        w.write(log, 50)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert env.cli("upload").exit_code == 0
    # That run kept reading the file it had open, through the lines written after the rename.
    assert [int(m.split()[1]) for m in env.messages()] == list(range(2110))
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(2160))
    assert files_status(env)[str(log)]["rotations"] == 1


# --- rotated_patterns, budget stop inside a rotated file -------------------------------------------------


@pytest.mark.parametrize("configured", [True, False], ids=["configured", "not-configured"])
def test_rotated_patterns_find_custom_names(env: Env, configured: bool) -> None:
    log = env.logs / "app.log"
    (env.logs / "archive").mkdir()
    patterns = 'rotated_patterns = ["{name}.old", "archive/{name}.*"]' if configured else ""
    config(env, log, extra=patterns)
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 5)
    log.rename(env.logs / "app.log.old")
    w.write(log, 5)
    r = env.cli("tail-once")
    assert r.exit_code == (0 if configured else 65)
    w.write(log, 5)
    log.rename(env.logs / "archive" / "app.log.2026")
    w.write(log, 5)
    r = env.cli("tail-once")
    assert r.exit_code == (0 if configured else 65)
    assert env.cli("upload").exit_code == 0
    f = files_status(env)[str(log)]
    if configured:
        assert [int(m.split()[1]) for m in env.messages()] == list(range(30))
        assert f["rotations"] == 2 and f["bytes_skipped"] == 0
    else:  # without the patterns the old files are not found; what was lost is counted
        assert [int(m.split()[1]) for m in env.messages()] == [*range(10), *range(15, 20), *range(25, 30)]
        assert "not found among rotated files" in f["last_error"]


def test_rotation_found_while_a_budget_stopped_run_was_in_a_rotated_file(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log, agent="batch_bytes = 4096", extra="max_line_size = 1000")
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 1000)
    logrotate(log)
    w.write(log, 1000)
    ship(env, "--max-bytes", "20000")  # finds A at .1, stops part way through it
    assert files_status(env)[str(log)]["reading"] == str(env.logs / "app.log.1")
    logrotate(log, compress=True)  # A (half read) -> .2, B (never read) -> .1.gz
    w.write(log, 10)
    ship(env, "--max-bytes", "20000")
    while True:
        before = len(env.messages())
        ship(env, "--max-bytes", "20000")
        if len(env.messages()) == before:
            break
    assert [int(m.split()[1]) for m in env.messages()] == list(range(2020))
    assert files_status(env)[str(log)]["rotations"] == 2


# --- rotation without a new file yet, late writes, what the state file keeps ---------------------------


def test_rotated_away_with_no_new_file_yet(env: Env) -> None:
    """logrotate `nocreate`: the path stays empty until the app writes again. Finishing the old file is not
    an error, and the rotation is counted once however many runs pass before the new file appears."""
    log = env.logs / "app.log"
    config(env, log)
    w = Lines()
    w.write(log, 10)
    ship(env)
    w.write(log, 10)
    log.rename(env.logs / "app.log.1")
    ship(env)
    ship(env)
    f = files_status(env)[str(log)]
    assert f["state"] == "rotated" and f["last_error"] is None and f["bytes_skipped"] == 0
    w.write(log, 10)
    ship(env)
    assert [int(m.split()[1]) for m in env.messages()] == list(range(30))
    f = files_status(env)[str(log)]
    assert f["state"] == "active" and f["rotations"] == 1


@pytest.mark.parametrize("bounded", [False, True], ids=["one-run", "budget-stopped"])
def test_late_writes_to_a_finished_rotated_file(env: Env, bounded: bool) -> None:
    """The app writes on to the renamed file until it is told to reopen its log; a run finished that file
    meanwhile. What it wrote later is read from where that run stopped, not again from the start, under a
    record of its own that a budget stop resumes and that goes once the file is finished."""
    log = env.logs / "app.log"
    config(env, log, agent="batch_bytes = 4096", extra="max_line_size = 1000")
    w = Lines()
    w.write(log, 30)
    ship(env)
    old = env.logs / "app.log.1"
    log.rename(old)
    w.write(old, 10)
    Lines(10_000).write(log, 5)
    ship(env)
    late = w.write(old, 1000 if bounded else 10)  # after that run finished app.log.1
    Lines(10_005).write(log, 5)
    args = ("--max-bytes", "20000") if bounded else ()
    ship(env, *args)
    if bounded:
        assert files_status(env)[str(old)]["state"] == "late"
        for _ in range(10):
            ship(env, *args)
    assert_lines(env.messages(), [*range(late.stop), *range(10_000, 10_010)])
    assert list(files_status(env)) == [str(log)], "the record for the late lines is gone"
    ship(env)
    assert_lines(env.messages(), [*range(late.stop), *range(10_000, 10_010)])


def test_state_file_keeps_hashes_not_log_bytes(env: Env) -> None:
    log = env.logs / "app.log"
    config(env, log)
    secret = "tok3n-" + "q" * 40
    log.write_text(f"first {secret}\n" + numbered(20))
    ship(env)
    logrotate(log, compress=True)
    append(log, f"second {secret}\n")
    ship(env)
    with sqlite3.connect(env.state) as db:
        rows = [*db.execute("SELECT * FROM files"), *db.execute("SELECT * FROM seen_files")]
    assert rows and not any("tok3n" in str(v) or "line 0000" in str(v) for row in rows for v in row)
    assert sum(secret in m for m in env.messages()) == 2
