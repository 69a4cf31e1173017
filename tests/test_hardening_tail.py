"""Issue 12, the tail side: no file type, directory shape or line length can stall a run or leak a secret.

Each scenario runs under a hard time limit (a subprocess killed by a watchdog, or an alarm in-process), so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipctl.config import LogConfig, RedactionRule
from shipctl.runtime import Budget
from shipctl.tail import discover, files
from shipctl.tail.files import Source
from shipctl.tail.pipeline import Pipeline, read_size
from tests.conftest import Env, append, assert_exactly_once, numbered

# --- helpers ---------------------------------------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float


def bounded(env: Env, *args: str, timeout: float = 15.0) -> Ran:
    """Run shipctl as a subprocess; a watchdog kills it after ``timeout`` s (the test then fails, never hangs).
    Reports the wall time and the child's own peak RSS."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cmd = [sys.executable, "-m", "shipctl", *args, "-c", str(env.config)]
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=os.environ.copy())
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        # The child's own peak, sampled: its rusage maxrss would start at pytest's own peak (vfork + exec
        # carry the parent's high-water mark over), which earlier tests push past a GiB.
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                with contextlib.suppress(OSError):
                    for line in open(f"/proc/{proc.pid}/status"):  # noqa: SIM115 - closed by the loop's end
                        if line.startswith("VmRSS:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
                done.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, _usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
            done.set()
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    assert not killed.is_set(), f"shipctl {' '.join(args)} still running after {timeout} s: {stderr[-2000:]}"
    return Ran(proc.returncode, stdout, stderr, time.monotonic() - started, peak[0] / 1024)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) instead of blocking: SIGALRM interrupts a blocked open() or read()."""

    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def status_files(env: Env) -> dict[str, dict[str, object]]:
    r = env.cli("status", "--json")
    assert r.exit_code == 0, r.stderr
    return {f["path"]: f for lg in json.loads(r.stdout)["logs"] for f in lg["files"]}


def status_logs(env: Env) -> dict[str, dict[str, object]]:
    r = env.cli("status", "--json")
    assert r.exit_code == 0, r.stderr
    return {lg["log_id"]: lg for lg in json.loads(r.stdout)["logs"]}


def config(env: Env, path: Path | str, extra: str = "", agent: str = "") -> None:
    env.write_config(f'[agent]\nmax_seconds = 0\n{agent}\n[[logs]]\npath = "{path}"\n{extra}\n')


# --- 1: FIFOs, sockets and devices never block -----------------------------------------------------------


def test_fifo_named_like_a_rotated_sibling_never_blocks_run(env: Env) -> None:
    app = env.logs / "app.log"
    app.write_text(numbered(5))
    config(env, app)
    assert bounded(env, "tail-once").returncode == 0
    os.mkfifo(env.logs / "app.log.1")  # the rotation-time sibling look-up must not open it for a blocking read
    append(app, numbered(5, start=5))
    r = bounded(env, "run", "--max-seconds", "5")
    assert r.seconds < 10
    assert r.returncode == 65, r.stderr  # reported, like an unreadable file ...
    assert "app.log.1" in r.stderr and "not a regular file" in r.stderr
    assert_exactly_once(env.messages(), range(10))  # ... and the log itself still shipped
    assert "app.log.1: not a regular file" in str(status_logs(env)[str(app)]["error"])


def test_directories_named_like_rotated_files_are_passed_over(env: Env) -> None:
    app = env.logs / "app.log"
    app.write_text(numbered(3))
    config(env, env.logs / "*.log")
    assert bounded(env, "tail-once").returncode == 0
    (env.logs / "app.log.1").mkdir()
    append(app, numbered(3, start=3))
    r = bounded(env, "tail-once")
    assert r.returncode == 0, r.stderr
    app.rename(env.logs / "app.log.2")  # a rotation: the directory is looked at again, among the siblings
    app.write_text(numbered(3, start=6))
    r = bounded(env, "tail-once")
    assert r.returncode == 0, r.stderr
    assert bounded(env, "upload").returncode == 0
    assert_exactly_once(env.messages(), range(9))


def test_followed_path_replaced_by_a_fifo_is_reported_and_the_other_files_ship(env: Env) -> None:
    app, other = env.logs / "app.log", env.logs / "other.log"
    app.write_text(numbered(3))
    other.write_text(numbered(3, start=100))
    config(env, env.logs / "*.log")
    assert bounded(env, "tail-once").returncode == 0
    app.unlink()
    os.mkfifo(app)
    append(other, numbered(3, start=103))
    r = bounded(env, "tail-once")
    assert r.returncode == 65 and f"{app}: not a regular file (a fifo)" in r.stderr, r.stderr
    assert bounded(env, "upload").returncode == 0
    assert_exactly_once(env.messages(), [*range(3), *range(100, 106)])  # type: ignore[arg-type]
    assert status_files(env)[str(app)]["last_error"] == "not a regular file (a fifo)"


def test_preview_refuses_fifos_sockets_and_devices_at_once(env: Env) -> None:
    config(env, env.logs / "*.log")
    fifo = env.logs / "pipe.log"
    os.mkfifo(fifo)
    sock_path = env.logs / "sock.log"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for target, kind in ((fifo, "FIFO"), (sock_path, "socket"), ("/dev/zero", "character device")):
            r = bounded(env, "preview", str(target), "--log", str(env.logs / "*.log"), timeout=10)
            assert r.returncode == 64, r.stderr
            assert f"{target}: cannot open: not a regular file (a {kind})" in r.stderr
    finally:
        sock.close()


def test_a_path_swapped_for_a_fifo_between_stat_and_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is made on the opened descriptor: a stat that still saw the regular file does not matter."""
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    regular = os.stat(__file__)
    monkeypatch.setattr(os, "stat", lambda *a, **k: regular)  # what a stat before the swap would have said
    with deadline(3), pytest.raises(files.NotRegularFile, match="FIFO"):
        Source(str(fifo))


def test_a_gzip_file_is_read_through_its_open_descriptor(tmp_path: Path) -> None:
    """Once opened, a .gz is never reopened by name: a FIFO put in its place later cannot block the read."""
    import gzip

    gz = tmp_path / "app.log.1.gz"
    gz.write_bytes(gzip.compress(numbered(2000).encode()))
    with deadline(5), Source(str(gz)) as src:
        gz.unlink()
        os.mkfifo(gz)
        assert src.size() == len(numbered(2000))
        assert src.read_at(0, 12) == b"line 000000 "
        assert src.read_at(73 * 1500, 12) == b"line 001500 "
        assert src.read_at(0, 12) == b"line 000000 "  # backwards: a fresh decompression, same descriptor


# --- 2: ** over symlink loops ----------------------------------------------------------------------------


def loopy_tree(root: Path) -> list[Path]:
    """Real logs at several depths, and directory symlinks that loop back up (each one doubles what a naive
    ``**`` walk visits per level)."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    logs = [root / "top.log", root / "a" / "one.log", root / "a" / "b" / "two.log", root / "c" / "three.log"]
    for k, p in enumerate(logs):
        p.write_text(numbered(4, start=100 * k))
    for d in (root, root / "a", root / "a" / "b", root / "c"):
        if d != root:
            (d / "up").symlink_to("..")
        (d / "self").symlink_to(".")
        (d / "root").symlink_to(root)
    (root / "a" / "b" / "loop").symlink_to(root / "a")
    return logs


def test_double_star_over_symlink_loops_is_bounded_and_ships_the_real_files(env: Env) -> None:
    root = env.logs / "tree"
    root.mkdir()
    loopy_tree(root)
    config(env, f"{root}/**/*.log")
    r = bounded(env, "tail-once", "--max-seconds", "2", timeout=12)
    assert r.returncode == 0, r.stderr
    assert r.seconds < 2 + 4  # the budget plus start-up, not the minutes a naive walk takes
    assert r.max_rss_mib < 200
    assert bounded(env, "upload").returncode == 0
    # Each real file once, under one name each (aliases through the links are the same files).
    assert_exactly_once(env.messages(), [*range(4), *range(100, 104), *range(200, 204), *range(300, 304)])  # type: ignore[arg-type]
    assert len(status_files(env)) == 4


def test_expand_visits_each_directory_once(tmp_path: Path) -> None:
    logs = loopy_tree(tmp_path)
    found = discover.discover(f"{tmp_path}/**/*.log", (), budget=Budget())
    assert found.paths == sorted(map(str, logs))
    assert found.truncated is None


def test_double_star_matches_what_glob_matches_where_there_is_no_loop(tmp_path: Path) -> None:
    for rel in ("x.log", "a/y.log", "a/b/z.log", "a/.hidden/h.log", ".dot/d.log", "a/.h.log", "c/d/e/f.log",
                "a/b/notlog.txt", "q/r/x.log"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    (tmp_path / "link").symlink_to(tmp_path / "c")  # a link to a directory is walked, as glob walks it
    (tmp_path / "a" / "flink.log").symlink_to(tmp_path / "x.log")
    import glob

    for pattern in ("**/*.log", "a/**/*.log", "**", "a/**", "*/*.log", "**/b/*", "*/**/*.log", "**/.hidden/*",
                    "a/.*", "q/*/x.log", "[ac]/**/?.log", "link/**/f.log", "no/**/x.log"):  # fmt: skip
        full = f"{tmp_path}/{pattern}"
        want = [p for p in sorted(glob.glob(full, recursive=True)) if os.path.isfile(p)]
        got_paths = discover.discover(full).paths
        # The same files (a symlink and its target count once: the first name in sorted order).
        assert sorted({os.path.realpath(p) for p in got_paths}) == sorted({os.path.realpath(p) for p in want}), pattern
        assert set(got_paths) <= set(want), pattern


def test_discovery_stops_at_the_entry_cap_and_says_so(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(30):
        (env.logs / f"f{k:02d}.log").write_text(f"line {k:06d} x\n")
    monkeypatch.setattr(discover, "MAX_ENTRIES", 10)
    config(env, f"{env.logs}/**/*.log")
    r = env.cli("tail-once")
    assert r.exit_code == 65
    assert "directory walk stopped after 10 entries" in r.stderr
    assert "directory walk stopped after 10 entries" in str(status_logs(env)[f"{env.logs}/**/*.log"]["error"])


def test_discovery_stops_when_the_budget_is_spent(tmp_path: Path) -> None:
    loopy_tree(tmp_path)
    spent = Budget(max_seconds=1e-9)
    time.sleep(0.001)
    found = discover.discover(f"{tmp_path}/**/*.log", budget=spent)
    assert found.truncated is not None and "time limit" in found.truncated


# --- 9: a secret longer than max_line_size is redacted whole ----------------------------------------------

RULE = 'password=[^&\\" ]*'  # the quickstart's rule, as it reads in TOML
ALPHABET = string.ascii_letters + string.digits + "+/"


def secret(n: int, seed: int = 12) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def leaked_windows(secret_text: str, blobs: list[bytes], width: int = 16) -> list[str]:
    """Every ``width``-character window of the secret found in any blob (an empty list when none is)."""
    windows = {secret_text[i : i + width].encode() for i in range(len(secret_text) - width + 1)}
    found = []
    for blob in blobs:
        for i in range(len(blob) - width + 1):
            if blob[i : i + width] in windows:
                found.append(blob[i : i + width].decode())
                break
    return found


def everything_written(env: Env, outputs: list[str]) -> list[bytes]:
    files = [p for p in env.state.parent.iterdir() if p.is_file()] + [env.sink]
    return [p.read_bytes() for p in files if p.exists()] + [o.encode() for o in outputs]


def redaction_config(env: Env, extra: str = "", agent: str = "") -> None:
    env.write_config(f"""
        [agent]
        max_seconds = 0
        compress_queue = false
        {agent}
        [[logs]]
        path = "{env.logs}/*.log"
        line_completion_wait = 3600
        {extra}
        redaction_rules = [{{ match_expression = "{RULE}", replacement = "password=<redacted>" }}]
    """)


def ship_verbose(env: Env, outputs: list[str], *cmds: str) -> None:
    for cmd in cmds:
        r = bounded(env, cmd, "-v")
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]


@pytest.mark.parametrize(
    ("where", "agent", "extra"),
    [
        ("alone", "", ""),  # default max_line_size 49,900: the match is longer than a piece
        ("across a read", "batch_bytes = 4096", ""),  # the line starts near the end of a read
        ("longer than a read", "batch_bytes = 4096", "max_line_size = 1000"),  # the match outgrows any read
    ],
)
def test_a_secret_longer_than_max_line_size_never_leaks(env: Env, where: str, agent: str, extra: str) -> None:
    token = secret(60_000)
    head = numbered(2100 if where == "across a read" else 3)
    (env.logs / "app.log").write_text(head + f'GET /login?user=bob&password={token}&next=/home "ok"\nafter\n')
    redaction_config(env, extra, agent)
    outputs: list[str] = []
    ship_verbose(env, outputs, "tail-once")
    assert leaked_windows(token, everything_written(env, outputs)) == []  # queued, not yet uploaded
    ship_verbose(env, outputs, "upload", "status")
    assert leaked_windows(token, everything_written(env, outputs)) == []
    msgs = env.messages()
    assert msgs[-1] == "after"
    line = "".join(m for m in msgs if not m.startswith("line ") and m != "after")
    said = (env.state.parent / "shipctl.log").read_text()
    if where == "longer than a read":  # what follows the secret on its line cannot be told from it: dropped
        assert line == "GET /login?user=bob&password=<redacted>"
        assert "a redaction match runs past a whole read (4096 bytes)" in said
    else:
        assert line == 'GET /login?user=bob&password=<redacted>&next=/home "ok"'
        assert "redaction match" not in said


def test_a_secret_still_being_written_is_not_cut_before_its_end(env: Env) -> None:
    token = secret(30_000, seed=5)
    log = env.logs / "app.log"
    log.write_text("start " + "x" * 1500 + " password=" + token[:20_000])  # no newline, no end of the match yet
    redaction_config(env, "max_line_size = 1000")
    outputs: list[str] = []
    ship_verbose(env, outputs, "tail-once", "upload")
    append(log, token[20_000:] + "&done\n")
    ship_verbose(env, outputs, "tail-once", "upload")
    assert leaked_windows(token, everything_written(env, outputs)) == []
    assert "".join(env.messages()) == "start " + "x" * 1500 + " password=<redacted>&done"


def test_preview_redacts_a_long_secret_whole(env: Env) -> None:
    token = secret(60_000, seed=7)
    path = env.logs / "app.log"
    path.write_text(f"a password={token} b\n")
    redaction_config(env)
    r = bounded(env, "preview", str(path))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["message"] for line in r.stdout.splitlines()] == ["a ", "password=<redacted>", " b"]
    assert leaked_windows(token, [r.stdout.encode(), r.stderr.encode()]) == []


@pytest.mark.parametrize("max_line_size", [10, 64, 1000])
def test_pieces_never_hold_part_of_a_match(max_line_size: int) -> None:
    """Whatever the chunking, the pieces of a long line joined back equal the whole line redacted at once
    (for matches that fit in a read: longer ones are the follower's, in the tests above)."""
    rule = RedactionRule(re.compile(r"password=[^&\" ]*"), "password=<r>")
    log = LogConfig(path="/x", max_line_size=max_line_size, redaction_rules=(rule,))
    rng = random.Random(max_line_size)
    for _ in range(40):
        parts = [
            rng.choice(["a" * rng.randint(0, 3 * max_line_size), "&", "password=" + secret(rng.randint(0, 5000))])
            for _ in range(rng.randint(1, 8))
        ]
        line = rng.choice([" ", "&"]).join(parts)
        data = (line + "\n").encode()
        pipe = Pipeline(log)
        offset, out = 0, []
        while offset < len(data):
            size = rng.randint(read_size(log, 8192), 3 * read_size(log, 8192))
            chunk = data[offset : offset + size]
            cut = pipe.cut(chunk, at_eof=offset + len(chunk) == len(data), flush=True)
            assert cut.consumed and not cut.open_match
            out += cut.payload.decode().split("\n")[:-1]
            offset += cut.consumed
        assert "".join(out) == rule.match_expression.sub("password=<r>", line)
        assert all(len(piece) <= max_line_size or piece == "password=<r>" for piece in out)


@pytest.mark.parametrize("max_line_size", [16, 64, 1000])
def test_overlapping_matches_of_two_rules_are_never_cut(max_line_size: int) -> None:
    """Two rules whose matches overlap ("password=token=..."): a cut is never inside either, whichever
    rule's match straddles it, so no piece holds a part of a secret that neither rule then recognises."""
    rules = tuple(RedactionRule(re.compile(p + r"=[^&\" ]*"), p[0].upper()) for p in ("password", "token"))
    log = LogConfig(path="/x", max_line_size=max_line_size, redaction_rules=rules)
    rng = random.Random(max_line_size)
    for round_ in range(40):
        secrets = [secret(rng.randint(16, 3000), seed=100 * round_ + k) for k in range(6)]
        parts = [rng.choice(["a" * rng.randint(0, 2 * max_line_size), "password=" + s, "token=" + s]) for s in secrets]
        line = "".join(p + rng.choice(["", "", " ", "&"]) for p in parts)
        data = (line + "\n").encode()
        pipe, offset, out = Pipeline(log), 0, b""
        while offset < len(data):
            size = rng.randint(read_size(log, 8192), 3 * read_size(log, 8192))
            chunk = data[offset : offset + size]
            cut = pipe.cut(chunk, at_eof=offset + len(chunk) == len(data), flush=True)
            assert cut.consumed and not cut.open_match
            out += cut.payload
            offset += cut.consumed
        used = [s for s, p in zip(secrets, parts, strict=True) if not p.startswith("a")]
        assert all(leaked_windows(s, [out]) == [] for s in used)
