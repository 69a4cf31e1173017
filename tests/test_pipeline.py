"""The per-line pipeline of tail-once: long lines, bad bytes, line groupers, sampling.

Fine cases run on ``Pipeline.cut`` directly; delivery is checked through the real CLI and the file sink.
The property tests feed chunks the way tail_once does (read from the offset, move it by ``consumed``,
the file growing between runs) and compare with a plain line-by-line model of the Scalyr agent.
"""

from __future__ import annotations

import json
import random
import re
import textwrap
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipctl.config import LineGrouper, LogConfig, RedactionRule, SamplingRule
from shipctl.tail.pipeline import Cut, Pipeline, read_size
from tests.conftest import Env, append, assert_exactly_once, numbered

# --- helpers ---------------------------------------------------------------------------------------


def grouper(start: str, mode: str, pattern: str) -> LineGrouper:
    return LineGrouper(re.compile(start), mode, re.compile(pattern))


def messages(cut: Cut) -> list[str]:
    if not cut.payload:
        return []
    if cut.fmt == "raw":
        return cut.payload.decode("utf-8", "replace").split("\n")[:-1]
    return [e["m"] for e in json.loads(cut.payload)]


def drive(pipe: Pipeline, parts: list[bytes], sizes: Iterator[int]) -> list[str]:
    """Feed a file that grows by ``parts`` between runs, as tail_once reads it; flush at the very end."""
    data, offset, out = b"", 0, []
    for n, part in enumerate(parts):
        data += part
        flush = n == len(parts) - 1
        while True:
            size = next(sizes)
            chunk = data[offset : offset + size]
            at_eof = len(chunk) < size
            cut = pipe.cut(chunk, at_eof=at_eof, flush=flush)
            assert cut.consumed <= len(chunk)
            assert at_eof or cut.consumed > 0, "no progress on a full chunk"
            offset += cut.consumed
            out += messages(cut)
            if cut.consumed == 0:
                break
    assert offset == len(data)
    return out


def reference(data: bytes, log: LogConfig) -> list[str]:
    """The Scalyr agent's way, one line at a time over the whole file: lines longer than the maximum are
    cut into pieces that count as lines; groups end before the line that would make them too long."""
    mx = log.max_line_size
    units: list[tuple[bytes, bool]] = []  # (bytes, ends with a newline)
    lines = data.split(b"\n")
    for k, line in enumerate(lines):
        last = k == len(lines) - 1
        if last and not line:
            break
        while len(line) > mx:
            units.append((line[:mx], False))
            line = line[mx:]
        units.append((line, not last))

    def text(k: int) -> str:
        return units[k][0].decode("utf-8", "replace") + ("\n" if units[k][1] else "")

    events: list[str] = []
    i = 0
    while i < len(units):
        g = next((g for g in log.line_groupers if g.start.search(text(i))), None)
        j, size = i + 1, len(units[i][0])
        while g is not None and j < len(units):
            hit = g.pattern.search(text(j)) is not None
            joins = {"continue_through": hit, "halt_before": not hit}.get(g.mode, True)
            ends_after = {"continue_past": not hit, "halt_with": hit}.get(g.mode, False)
            size += len(units[j][0]) + units[j - 1][1]
            if not joins or size > mx:
                break
            j += 1
            if ends_after:
                break
        events.append("".join(text(k) for k in range(i, j)).removesuffix("\n"))
        i = j
    kept = []
    for ev in events:
        rule = next((r for r in log.sampling_rules if r.match_expression.search(ev)), None)
        if rule is not None and rule.sampling_rate == 0:
            continue
        for r in log.redaction_rules:
            ev = r.match_expression.sub(r.replacement, ev)
        kept.append(ev)
    return kept


def sizes_from(draw_sizes: list[int], floor: int) -> Iterator[int]:
    while True:
        for s in draw_sizes or [0]:
            yield floor + s


JAVA = grouper(r"^[^\s]", "continue_through", r"^[\s]+at")
GROUPERS = [
    JAVA,
    grouper(r"\\$", "continue_past", r"\\$"),
    grouper(r"^BEGIN", "halt_before", r"^BEGIN|^[a-z]"),
    grouper(r"^SQL", "halt_with", r";\s*$"),
    grouper(r"^S", "halt_with", r"E$"),
]
LINE_PARTS = st.sampled_from(
    ["Exception in main", "  at a.b(c)", "\tat x.y", "call \\", "go on \\", "done", "BEGIN tx", "  in tx", "SQL select",
     "  from t;", "end", "S", "E", "", " ", "x=1 DROP", "a\tb", "Ω ü 日本"]
)  # fmt: skip
RANDOM_LINE = st.text(alphabet="aS Eb\\;\t", max_size=12)


@st.composite
def log_files(draw: st.DrawFn, *, rules: bool) -> tuple[LogConfig, list[bytes], list[int]]:
    mx = draw(st.sampled_from([16, 40, 4096]))
    lines = draw(st.lists(st.one_of(LINE_PARTS, RANDOM_LINE, st.text(alphabet="ab ", min_size=mx, max_size=3 * mx)),
                          max_size=40))  # fmt: skip
    data = "\n".join(lines).encode() + draw(st.sampled_from([b"\n", b""]))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    groupers = tuple(draw(st.lists(st.sampled_from(GROUPERS), max_size=2, unique=True)))
    sampling = redaction = ()
    if rules:
        sampling = (SamplingRule(re.compile("DROP"), 0.0), SamplingRule(re.compile("x="), 1.0))
        if mx > 100:  # the reference cuts long lines blindly; with redaction rules cuts avoid matches
            redaction = (RedactionRule(re.compile(r"x=(\d)"), r"x=<\1>"), RedactionRule(re.compile(r"b\b")))
    log = LogConfig(path="/x", max_line_size=mx, line_groupers=groupers, sampling_rules=sampling,
                    redaction_rules=redaction)  # fmt: skip
    return log, parts, draw(st.lists(st.integers(0, 300), min_size=1, max_size=5))


# --- property tests --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log_files(rules=False))
def test_any_chunking_gives_each_line_once_as_the_line_model_does(
    case: tuple[LogConfig, list[bytes], list[int]],
) -> None:
    log, parts, sizes = case
    data = b"".join(parts)
    got = drive(Pipeline(log), parts, sizes_from(sizes, read_size(log, 0)))
    assert got == reference(data, log)
    if not log.line_groupers:
        # Without groupers the events are the lines themselves (pieces of long ones joined back).
        assert "".join(got) == data.decode().replace("\n", "")
        if data and max(map(len, data.split(b"\n"))) <= log.max_line_size:
            assert got == data.decode().removesuffix("\n").split("\n")
    else:
        assert "\n".join(got).replace("\n", "") == data.decode().replace("\n", "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log_files(rules=True))
def test_any_chunking_with_sampling_and_redaction(case: tuple[LogConfig, list[bytes], list[int]]) -> None:
    log, parts, sizes = case
    got = drive(Pipeline(log), parts, sizes_from(sizes, read_size(log, 0)))
    assert got == reference(b"".join(parts), log)


# Patterns that mean something else over a whole text than over one line: the last six would be missed
# by a search over the whole chunk, so they must run on each line.
TRICKY = [
    *[r"^\s+at", r"^[^\s]", r"\\$", r";\s*$", r"\s+$", r"\n$", r"\n\B", r"x\b", r"\bab\b", r"(?<=a)b", r"^$"],
    *[r"a*", r"(?i)s", r"(a)(b)?", r"[\s\S]{3}", r"^"],
    *[r"\Aab", r"b\Z", r"b(?!\n)", r"(?<!\n)a", r"(?>\s+)$", r"\s++$"],
]
TOKENS = st.lists(st.sampled_from(["a", "b", "ab", " ", ";", "\\", "x", "S", "\t", "at"]), max_size=5).map("".join)


@pytest.mark.parametrize(
    ("pattern", "chunk"),
    [(r"\Aab", b"x\nabc\n"), (r"b\Z", b"ab\nx\n"), (r"b(?!\n)", b"ab\nx\n"), (r"(?<!\n)a", b"x\nab\n"),
     (r"(?>\s+)$", b"a \nb\n"), (r"\s++$", b"a \nb\n")],
)  # fmt: skip
def test_patterns_unlike_over_a_whole_text_still_match_each_line(pattern: str, chunk: bytes) -> None:
    chunk += b"z\n"  # a line for a group to take in
    for rules in (
        {"redaction_rules": (RedactionRule(re.compile(pattern), "<r>"),)},
        {"sampling_rules": (SamplingRule(re.compile(pattern), 0.0),)},
        {"line_groupers": (grouper(pattern, "continue_past", "x"),)},
        {"line_groupers": (grouper("^", "halt_before", pattern),)},
    ):
        log = LogConfig(path="/x", **rules)  # type: ignore[arg-type]
        fast = Pipeline(log).cut(chunk, at_eof=True, flush=True)
        assert fast == Pipeline(log, prefilter=False).cut(chunk, at_eof=True, flush=True)
        if "line_groupers" not in rules:
            assert fast.redactions == 1 or fast.lines_dropped == 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(TOKENS, max_size=25),
    st.lists(st.tuples(st.sampled_from(TRICKY), st.sampled_from(TRICKY), st.sampled_from(
        ["continue_through", "continue_past", "halt_before", "halt_with"])), max_size=2),
    st.lists(st.tuples(st.sampled_from(TRICKY), st.sampled_from([0.0, 1.0, 0.5])), max_size=2),
    st.lists(st.sampled_from(TRICKY), max_size=3),
    st.booleans(),
    st.booleans(),
)  # fmt: skip
def test_whole_chunk_prefilter_changes_nothing(
    lines: list[str],
    groupers: list[tuple[str, str, str]],
    sampling: list[tuple[str, float]],
    redaction: list[str],
    at_eof: bool,
    flush: bool,
) -> None:
    """Skipping lines a pattern cannot match (found by one search over the chunk) gives exactly what
    running every pattern on every line gives, for patterns that behave differently over a whole text."""
    log = LogConfig(
        path="/x",
        line_groupers=tuple(grouper(s, m, c) for s, c, m in groupers),
        sampling_rules=tuple(SamplingRule(re.compile(p), r) for p, r in sampling),
        redaction_rules=tuple(RedactionRule(re.compile(p), "<r>") for p in redaction),
    )
    chunk = "\n".join(lines).encode()
    fast = Pipeline(log, rng=random.Random(7)).cut(chunk, at_eof=at_eof, flush=flush)
    slow = Pipeline(log, rng=random.Random(7), prefilter=False).cut(chunk, at_eof=at_eof, flush=flush)
    assert fast == slow


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from([40, 49900]), st.booleans())
def test_any_bytes_are_decoded_never_crash_and_lose_nothing(data: bytes, mx: int, rules: bool) -> None:
    log = LogConfig(path="/x", max_line_size=mx, line_groupers=(JAVA,) if rules else (),
                    redaction_rules=(RedactionRule(re.compile(r"\d+")),) if rules else ())  # fmt: skip
    pipe = Pipeline(log)
    consumed, lines = 0, 0
    for _ in range(10_000):
        cut = pipe.cut(data[consumed:], at_eof=True, flush=True)
        consumed += cut.consumed
        lines += cut.lines
        messages(cut)
        if not cut.consumed:
            break
    assert consumed == len(data)
    assert lines == data.count(b"\n") + (not data.endswith(b"\n") and bool(data))


# --- max_line_size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rules", [False, True], ids=["no-rules", "rules"])
def test_long_line_cut_into_pieces_that_join_back(rules: bool) -> None:
    extra = {"redaction_rules": (RedactionRule(re.compile("password=\\S+")),)} if rules else {}
    pipe = Pipeline(LogConfig(path="/x", max_line_size=100, **extra))  # type: ignore[arg-type]
    long = "".join(chr(ord("a") + i % 26) for i in range(345))
    cut = pipe.cut(f"before\n{long}\nafter\n".encode(), at_eof=True, flush=False)
    msgs = messages(cut)
    assert msgs[0] == "before" and msgs[-1] == "after"
    assert [len(m) for m in msgs[1:-1]] == [100, 100, 100, 45]
    assert "".join(msgs[1:-1]) == long
    assert cut.lines == 3 and cut.consumed == len(long) + 14


def test_pieces_end_on_character_boundaries() -> None:
    line = "ab" + "é日" * 40  # 2- and 3-byte characters; no piece may split one
    cut = Pipeline(LogConfig(path="/x", max_line_size=16)).cut(line.encode() + b"\n", at_eof=True, flush=False)
    msgs = messages(cut)
    assert "".join(msgs) == line and "\ufffd" not in "".join(msgs)
    assert all(len(m.encode()) <= 16 for m in msgs)


def test_line_of_exactly_twice_the_limit_seen_unfinished_gives_no_empty_piece() -> None:
    pipe = Pipeline(LogConfig(path="/x", max_line_size=10))
    first = pipe.cut(b"x" * 20, at_eof=True, flush=False)  # the newline is not written yet
    assert messages(first) == ["x" * 10] and first.consumed == 10
    second = pipe.cut(b"x" * 10 + b"\nnext\n", at_eof=True, flush=False)
    assert messages(second) == ["x" * 10, "next"]


def test_long_partial_line_at_eof_sends_only_final_pieces() -> None:
    pipe = Pipeline(LogConfig(path="/x", max_line_size=10))
    cut = pipe.cut(b"ok\n" + b"y" * 25, at_eof=True, flush=False)
    assert messages(cut) == ["ok", "y" * 10, "y" * 10] and cut.consumed == 23 and cut.lines == 1
    rest = pipe.cut(b"y" * 5, at_eof=True, flush=True)
    assert messages(rest) == ["y" * 5] and rest.lines == 1


def test_line_longer_than_the_read_size_arrives_whole_in_pieces(env: Env) -> None:
    log = env.logs / "big.log"
    big = "".join(f"{i:07d}," for i in range(200_000))  # 1.6 MB on one line, more than one 1 MiB read
    log.write_text("line 000000 first\n" + big + "\nline 000001 last\n")
    env.write_config(f'[[logs]]\npath = "{log}"\n')
    env.ship()
    msgs = env.messages()
    assert msgs[0] == "line 000000 first" and msgs[-1] == "line 000001 last"
    pieces = msgs[1:-1]
    assert "".join(pieces) == big
    assert all(len(p) <= 49900 for p in pieces) and len(pieces) == -(-len(big) // 49900)


def test_long_line_without_newline_at_eof_with_rules(env: Env) -> None:
    log = env.logs / "big.log"
    big = "z" * 120_000
    log.write_text("head\n" + big)
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        line_completion_wait = 3600
        redaction_rules = [{{ match_expression = "password=\\\\S+" }}]
        sampling_rules = [{{ match_expression = "DEBUG", sampling_rate = 0 }}]
    """)
    env.ship()
    first = env.messages()
    assert first[0] == "head" and [len(m) for m in first[1:]] == [49900, 49900]  # the rest may still grow
    append(log, "tail\nnext\n")
    env.ship()
    msgs = env.messages()
    assert "".join(msgs[1:-1]) == big + "tail" and msgs[-1] == "next"


# --- bad bytes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rules", [False, True], ids=["no-rules", "rules"])
def test_invalid_utf8_nul_and_binary_junk_do_not_stop_a_run(env: Env, rules: bool) -> None:
    log = env.logs / "junk.log"
    junk = bytes(random.Random(5).randrange(256) for _ in range(5000)).replace(b"\n", b"")
    log.write_bytes(b"ok \xff\xfe bad\n" + b"nul\x00byte\n" + junk + b"\n" + b"\xe2\x82\n" + numbered(5).encode())
    rules_toml = """
        redaction_rules = [{ match_expression = 'b.d', replacement = "BAD" }]
        lineGroupers = [{ start = '^never', haltWith = 'y' }]
    """
    env.write_config(f'[[logs]]\npath = "{log}"\n' + (textwrap.dedent(rules_toml) if rules else ""))
    env.ship()
    msgs = env.messages()
    assert (
        msgs[0] == ("ok \ufffd\ufffd BAD" if rules else "ok \ufffd\ufffd bad")
        and msgs[1] == "nul\x00byte"
        and msgs[3] == "\ufffd"
    )
    assert "\ufffd" in msgs[2]
    assert_exactly_once(msgs, range(5))
    assert len(msgs) == 9


# --- line groupers ---------------------------------------------------------------------------------

MODE_CASES = {
    "continue_through": (
        ("^[^\\s]", "^\\s+at"),
        ["Exception: boom", "  at a", "  at b", "next", "other", "  at c", "solo"],
        ["Exception: boom\n  at a\n  at b", "next", "other\n  at c", "solo"],
    ),
    "continue_past": (
        (r"\\$", r"\\$"),
        ["one \\", "two \\", "three", "four", "five \\", "six"],
        ["one \\\ntwo \\\nthree", "four", "five \\\nsix"],
    ),
    "halt_before": (
        ("^BEGIN", "^(BEGIN|END)"),
        ["BEGIN a", "x", "y", "BEGIN b", "END", "z"],
        ["BEGIN a\nx\ny", "BEGIN b", "END", "z"],
    ),
    "halt_with": (
        ("^SQL", ";\\s*$"),
        ["SQL select *", "from t", "where 1;", "after", "SQL x;", "y;"],
        ["SQL select *\nfrom t\nwhere 1;", "after", "SQL x;\ny;"],
    ),
}


@pytest.mark.parametrize("mode", list(MODE_CASES))
def test_grouper_modes(mode: str) -> None:
    (start, pattern), lines, expected = MODE_CASES[mode]
    log = LogConfig(path="/x", line_groupers=(grouper(start, mode, pattern),))
    cut = Pipeline(log).cut(("\n".join(lines) + "\n").encode(), at_eof=True, flush=True)
    assert messages(cut) == expected
    assert cut.lines == len(lines)


@pytest.mark.parametrize(
    "key", ["continue_through", "continueThrough", "continue_past", "continuePast", "halt_before", "haltBefore",
            "halt_with", "haltWith"],
)  # fmt: skip
def test_grouper_modes_through_the_cli_under_both_spellings(env: Env, key: str) -> None:
    mode = re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), key)
    (start, pattern), lines, expected = MODE_CASES[mode]
    log = env.logs / "app.log"
    log.write_text("\n".join(lines) + "\n")
    groupers = "lineGroupers" if key[-1].isupper() else "line_groupers"
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        line_completion_wait = 0
        {groupers} = [{{ start = '{start}', {key} = '{pattern}' }}]
    """)
    env.ship()
    env.ship()  # the last line may start a group: its wait (0 s) ends on the next run
    assert env.messages() == expected


JAVA_TRACE = """\
java.lang.NullPointerException: boom
    at com.example.myproject.Book.getTitle(Book.java:16)
    at com.example.myproject.Author.getBookTitles(Author.java:25)
    at com.example.myproject.Bootstrap.main(Bootstrap.java:14)
"""


def test_java_stack_trace_of_the_agent_docs_is_one_event(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text("2026-11-22 INFO starting\n" + JAVA_TRACE + "2026-11-22 INFO after\n")
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        lineGroupers = [{{ start = "^[^\\\\s]", continueThrough = "^[\\\\s]+at" }}]
    """)
    env.ship()
    # The last line starts a possible group: it waits for the next line or for line_completion_wait.
    assert env.messages() == ["2026-11-22 INFO starting", JAVA_TRACE.rstrip("\n")]
    append(log, "2026-11-22 INFO later\n")
    env.ship()
    assert env.messages()[2:] == ["2026-11-22 INFO after"]


def test_first_grouper_whose_start_matches_wins() -> None:
    log = LogConfig(
        path="/x",
        line_groupers=(grouper("^A", "halt_with", "END"), grouper("^A|^B", "continue_through", "^ ")),
    )
    chunk = b"A1\n x\nEND\nB1\n y\n z\nA2\nEND\n"
    assert messages(Pipeline(log).cut(chunk, at_eof=True, flush=True)) == ["A1\n x\nEND", "B1\n y\n z", "A2\nEND"]


def test_open_group_waits_then_completes_on_the_next_run(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        line_completion_wait = 3600
        line_groupers = [{{ start = "^BEGIN", halt_with = "^END" }}]
    """)
    log.write_text("before\nBEGIN 1\npart a\n")
    env.ship()
    assert env.messages() == ["before"]  # not sent half
    append(log, "part b\n")
    env.ship()
    assert env.messages() == ["before"]
    append(log, "END 1\nafter\n")
    env.ship()
    assert env.messages() == ["before", "BEGIN 1\npart a\npart b\nEND 1", "after"]


def test_open_group_sent_as_is_after_line_completion_wait(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        line_completion_wait = 0
        line_groupers = [{{ start = "^BEGIN", halt_with = "^END" }}]
    """)
    log.write_text("BEGIN 1\npart a\n")
    env.ship()  # first sight starts the wait
    env.ship()
    assert env.messages() == ["BEGIN 1\npart a"]
    append(log, "END 1\n")
    env.ship()
    assert env.messages() == ["BEGIN 1\npart a", "END 1"]


def test_group_across_the_read_size_boundary_is_one_event(env: Env) -> None:
    log = env.logs / "app.log"
    filler = numbered(16000, width=60)  # 1.1 MB: the trace starts before the first 1 MiB read ends
    cut_at = filler.index("\n", (1 << 20) - 150) + 1
    text = filler[:cut_at] + JAVA_TRACE + filler[cut_at:] + "line 999999 end\n"
    log.write_text(text)
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        line_completion_wait = 3600
        line_groupers = [{{ start = '^[^\\s]', continue_through = '^[\\s]+at' }}]
    """)
    env.ship()
    msgs = env.messages()
    assert len(text[: (1 << 20)].encode()) < cut_at + len(JAVA_TRACE) and JAVA_TRACE.rstrip("\n") in msgs
    assert_exactly_once([m for m in msgs if m != JAVA_TRACE.rstrip("\n")], range(16000))


def test_group_longer_than_the_limit_is_cut_between_lines() -> None:
    log = LogConfig(path="/x", max_line_size=50, line_groupers=(grouper("^E", "continue_through", "^ "),))
    lines = ["E start"] + [f" at frame {i:02d}" for i in range(10)] + ["next"]
    cut = Pipeline(log).cut(("\n".join(lines) + "\n").encode(), at_eof=True, flush=True)
    msgs = messages(cut)
    assert all(len(m) <= 50 for m in msgs)
    assert msgs[0] == "\n".join(lines[:4])  # 7 + 3 * 13 = 46 bytes; one more frame would make 59
    assert "\n".join(msgs) == "\n".join(lines)  # every line once, in order


def test_group_spanning_several_runs_is_one_event(env: Env) -> None:
    log = env.logs / "app.log"
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        line_completion_wait = 3600
        line_groupers = [{{ start = '^[^\\s]', continue_through = '^[\\s]+at' }}]
    """)
    trace = JAVA_TRACE.splitlines(keepends=True)
    log.write_text("first\n" + trace[0])
    env.ship()
    for line in trace[1:]:
        append(log, line)
        env.ship()
    append(log, "after\n")
    env.ship()
    assert env.messages() == ["first", JAVA_TRACE.rstrip("\n")]


# --- sampling --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "kept"), [([("INFO", 1.0), ("DEBUG", 0.0)], True), ([("DEBUG", 0.0), ("INFO", 1.0)], False)]
)
def test_sampling_first_matching_rule_decides(rules: list[tuple[str, float]], kept: bool) -> None:
    log = LogConfig(path="/x", sampling_rules=tuple(SamplingRule(re.compile(p), r) for p, r in rules))
    cut = Pipeline(log).cut(b"INFO and DEBUG\nplain\ninfo debug\n", at_eof=True, flush=False)
    assert messages(cut) == (["INFO and DEBUG"] if kept else []) + ["plain", "info debug"]
    assert cut.lines_dropped == (0 if kept else 1) and cut.fmt == "raw"  # rate 1 adds no attribute


def test_fractional_sampling_keeps_about_that_share_with_sample_rate() -> None:
    log = LogConfig(path="/x", sampling_rules=(SamplingRule(re.compile("noisy"), 0.25),))
    chunk = "".join(f"noisy {i}\nkeep {i}\n" for i in range(4000)).encode()
    cut = Pipeline(log, rng=random.Random(1)).cut(chunk, at_eof=True, flush=False)
    events = json.loads(cut.payload)
    noisy = [e for e in events if e["m"].startswith("noisy")]
    assert 800 < len(noisy) < 1200  # 1000 expected; the seed makes it exact, the bounds are 6 sigma
    assert all(e["a"] == {"sample_rate": 0.25} for e in noisy)
    assert [e["m"] for e in events if "a" not in e] == [f"keep {i}" for i in range(4000)]
    assert cut.lines_dropped == 4000 - len(noisy) and cut.lines == 8000


def test_kept_lines_carry_sample_rate_even_when_none_is_dropped() -> None:
    log = LogConfig(path="/x", sampling_rules=(SamplingRule(re.compile("x"), 0.999999),))
    cut = Pipeline(log, rng=random.Random(3)).cut(b"x 1\ny 2\n", at_eof=True, flush=False)
    assert json.loads(cut.payload) == [{"m": "x 1", "a": {"sample_rate": 0.999999}}, {"m": "y 2"}]


def test_sampling_decides_for_a_whole_group() -> None:
    log = LogConfig(
        path="/x",
        line_groupers=(grouper("^E", "continue_through", "^ "),),
        sampling_rules=(SamplingRule(re.compile("drop-me"), 0.0),),
    )
    chunk = b"E one\n at x\n at drop-me\nE two\n at y\nlast\n"
    cut = Pipeline(log).cut(chunk, at_eof=True, flush=True)
    assert messages(cut) == ["E two\n at y", "last"]
    assert cut.lines_dropped == 3 and cut.bytes_dropped == len(b"E one\n at x\n at drop-me\n")


def test_sampling_through_the_cli_counts_dropped_lines_in_status(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text("".join(f"DEBUG {i}\nINFO {i}\n" for i in range(2000)))
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        sampling_rules = [
          {{ match_expression = "DEBUG", sampling_rate = 0.5 }},
          {{ match_expression = "never", sampling_rate = 0 }},
        ]
    """)
    env.ship()
    events = env.events()
    debug = [e for e in events if e["message"].startswith("DEBUG")]
    assert 800 < len(debug) < 1200  # binomial(2000, 0.5): sd 22
    assert all(e["attrs"]["sample_rate"] == 0.5 for e in debug)
    assert [e["message"] for e in events if "sample_rate" not in e["attrs"]] == [f"INFO {i}" for i in range(2000)]
    st = json.loads(env.cli("status", "--json").stdout)
    (f,) = st["logs"][0]["files"]
    assert f["lines_dropped"] == 2000 - len(debug)
    assert f["lines_copied"] == 2000 + len(debug)


def test_no_rules_fast_path_keeps_the_bytes_as_read() -> None:
    chunk = b"a\r\nb\x00c\n\xffd\npartial"
    cut = Pipeline(LogConfig(path="/x")).cut(chunk, at_eof=True, flush=False)
    assert cut.payload == b"a\r\nb\x00c\n\xffd\n" and cut.n_events == 3 and cut.consumed == 10


def test_read_size_leaves_room_for_a_decision() -> None:
    # A group start of max bytes and a next line of max bytes must fit in one read, or no progress.
    log = LogConfig(path="/x", max_line_size=600_000, line_groupers=(grouper("^S", "halt_with", "^E"),))
    size = read_size(log, 1 << 20)
    chunk = (b"S" + b"a" * 599_999 + b"\n" + b"b" * 600_000 + b"\nE\n")[:size]
    assert Pipeline(log).cut(chunk, at_eof=False, flush=False).consumed > 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log_files(rules=True), st.booleans(), st.booleans())
def test_an_empty_chunk_cuts_nothing(case: tuple[LogConfig, list[bytes], list[int]], at_eof: bool, flush: bool) -> None:
    """The follower skips Pipeline.cut for an empty read (follower._NOTHING): it must be what cut returns."""
    log, _, _ = case
    cut = Pipeline(log).cut(b"", at_eof=at_eof, flush=flush)
    assert (cut.consumed, cut.open_match, cut.n_events, cut.lines) == (0, False, 0, 0)
