"""Redaction rules: what they replace, and the invariant that a secret they match never reaches the
state file, the sink or shipctl's own log, whatever state a run stops in."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipctl.config import LineGrouper, LogConfig, RedactionRule
from shipctl.tail.pipeline import Pipeline
from tests.conftest import Env, append
from tests.test_pipeline import messages


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def rule(pattern: str, replacement: str = "", salt: str = "") -> RedactionRule:
    return RedactionRule(re.compile(pattern), replacement, salt)


def test_every_match_replaced_with_back_references_and_salted_hashes() -> None:
    log = LogConfig(
        path="/x",
        redaction_rules=(
            rule(r"password=[^& ]*"),
            rule(r"userInfo=([^ ]+) [^ ]+", r"userInfo=\1"),
            rule(r"token=(\w+)", r"token=\H1", "pepper"),
            rule(r"card (\d{4})-(\d{4})", r"card \H2/\1"),
        ),
    )
    chunk = (
        b"GET /?password=hunter2&x=1&password=swordfish HTTP\n"
        b"userInfo=alice s3cret userInfo=bob pw2 end\n"
        b"token=abc and token=abc and token=xyz\n"
        b"card 1234-5678 ok\n"
        b"nothing here\n"
    )
    cut = Pipeline(log).cut(chunk, at_eof=True, flush=False)
    assert messages(cut) == [
        "GET /?&x=1& HTTP",
        "userInfo=alice userInfo=bob end",
        f"token={md5('abcpepper')} and token={md5('abcpepper')} and token={md5('xyzpepper')}",
        f"card {md5('5678')}/1234 ok",
        "nothing here",
    ]
    assert cut.redactions == 2 + 2 + 3 + 1


TEMPLATE_PARTS = [r"\1", r"\2", r"\g<0>", r"\g<w>", "x", r"\n", r"\\", "=", r"\t", "é", r"\H1"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TEMPLATE_PARTS), max_size=6), st.text(alphabet="ab=1 2\n", max_size=20))
def test_replacement_templates_read_once_expand_as_re_does(parts: list[str], text: str) -> None:
    pattern, template = re.compile(r"(?P<w>\w+)=(\d*)"), "".join(parts)

    def reference(m: re.Match[str]) -> str:
        # \H1 is the salted md5 of group 1 (not after an escaped backslash); re expands the text between.
        out, last = [], 0
        for h in re.finditer(r"\\\\|\\H1", template):
            if h[0] == "\\H1":
                out += [m.expand(template[last : h.start()]), md5(m[1] + "salt")]
                last = h.end()
        return "".join([*out, m.expand(template[last:])])

    redact = Pipeline(LogConfig(path="/x", redaction_rules=(rule(pattern.pattern, template, "salt"),))).redactors[0]
    assert redact(text) == pattern.subn(reference, text)


def test_rules_apply_in_order_each_to_the_output_of_the_one_before() -> None:
    # The second rule matches only what the first one wrote: it must still run on those lines, though a
    # search over the chunk as read finds nothing for it.
    log = LogConfig(path="/x", redaction_rules=(rule(r"key=(\w+)", r"KEY[\1]"), rule(r"KEY\[(\w)\w*\]", r"KEY[\1*]")))
    cut = Pipeline(log).cut(b"a key=abcdef\nplain\nkey=zz key=yy\n", at_eof=True, flush=False)
    assert messages(cut) == ["a KEY[a*]", "plain", "KEY[z*] KEY[y*]"]
    assert cut.redactions == 1 + 2 + 1 + 2


def test_redaction_sees_a_whole_group() -> None:
    log = LogConfig(
        path="/x",
        line_groupers=(LineGrouper(re.compile("^-----BEGIN"), "halt_with", re.compile("^-----END")),),
        redaction_rules=(rule(r"-----BEGIN KEY-----[\s\S]*?-----END KEY-----", "[key removed]"),),
    )
    cut = Pipeline(log).cut(b"before\n-----BEGIN KEY-----\nMIIEvAIB\nADANBgkq\n-----END KEY-----\nafter\n", at_eof=True,
                            flush=True)  # fmt: skip
    assert messages(cut) == ["before", "[key removed]", "after"]


def test_a_cut_never_splits_a_secret_in_a_long_line() -> None:
    log = LogConfig(path="/x", max_line_size=100, redaction_rules=(rule(r"token=\S+", "token=***"),))
    line = "a" * 90 + " token=" + "S3CR3T" * 5 + " " + "b" * 150
    msgs = messages(Pipeline(log).cut(line.encode() + b"\n", at_eof=True, flush=False))
    assert "".join(msgs) == "a" * 90 + " token=*** " + "b" * 150
    assert all(len(m) <= 100 for m in msgs)


def test_hash_salt_and_backslashes_through_the_config_with_counts_in_status(env: Env) -> None:
    log = env.logs / "app.log"
    log.write_text("user=alice card=1234\nuser=bob card=9876 card=5555\nnone\n")
    env.write_config(f"""
        [[logs]]
        path = "{log}"
        redaction_rules = [
          {{ match_expression = "card=\\\\d{{4}}", replacement = "card=XXXX" }},
          {{ match_expression = "user=(\\\\w+)", replacement = "user=\\\\H1", hash_salt = "s4lt" }},
        ]
    """)
    env.ship()
    assert env.messages() == [
        f"user={md5('alices4lt')} card=XXXX",
        f"user={md5('bobs4lt')} card=XXXX card=XXXX",
        "none",
    ]
    (f,) = json.loads(env.cli("status", "--json").stdout)["logs"][0]["files"]
    assert f["redactions"] == 5 and f["lines_copied"] == 3


@pytest.mark.parametrize("replacement", ["\\\\2", "\\\\H2", "\\\\g<name>"])
def test_replacement_naming_a_missing_group_is_a_config_error(env: Env, replacement: str) -> None:
    env.write_config(f"""
        [[logs]]
        path = "{env.logs}/*.log"
        redaction_rules = [{{ match_expression = "user=(\\\\w+)", replacement = "{replacement}" }}]
    """)
    r = env.cli("tail-once")
    assert r.exit_code == 78
    assert r.stderr.startswith(f"shipctl: {env.config}: logs[0].redaction_rules[0].replacement: ")


# --- the invariant ---------------------------------------------------------------------------------

SECRETS = {
    "complete": "Kx9CompleteLineSecret",
    "straddle": "Zq8StraddlesTheCutPoint",
    "group": "Wm7InsideAnOpenGroup",
    "partial": "Vn6InAPartialLine",
    "later": "Ub5WrittenLater",
}


def leaks(paths: list[Path], texts: list[str]) -> list[str]:
    """Which secret (or a telling part of one) shows in any of these files or texts."""
    blobs = [p.read_bytes() for p in paths if p.is_file()] + [t.encode() for t in texts]
    found = []
    for name, secret in SECRETS.items():
        for part in {secret, secret[:9], secret[-9:]}:
            if any(part.encode() in b for b in blobs):
                found.append(f"{name}: {part}")
    return found


def test_a_redacted_secret_never_reaches_state_sink_or_own_log(env: Env) -> None:
    main, grouped, partial = env.logs / "main.log", env.logs / "grouped.log", env.logs / "partial.log"
    main.write_text(
        f"login ok token={SECRETS['complete']} user=1\n"
        + "x" * 180 + f" token={SECRETS['straddle']} " + "y" * 300 + "\n"
    )  # fmt: skip
    grouped.write_text(f"BEGIN request\n  header token={SECRETS['group']}\n")  # the group is still open
    partial.write_text(f"first\nretry token={SECRETS['partial']}")  # no newline yet
    env.write_config(f"""
        [agent]
        compress_queue = false  # queued lines as written, so the bytes of the state file show what was queued
        [[logs]]
        path = "{env.logs}/*.log"
        max_line_size = 200
        line_completion_wait = 3600
        line_groupers = [{{ start = "^BEGIN", halt_with = "^END" }}]
        redaction_rules = [{{ match_expression = "token=\\\\S+", replacement = "token=<redacted>" }}]
    """)
    outputs = []
    for cmd in ("tail-once", "upload", "status", "status"):
        args = [cmd, "-v", "--json"] if cmd == "status" else [cmd, "-v"]
        r = env.proc(*args)
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    state_files = [*env.state.parent.iterdir()]
    assert env.state in state_files and (env.state.parent / "shipctl.log").exists()
    assert leaks([*state_files, env.sink], outputs) == []
    sent = [json.loads(line)["message"] for line in env.sink.read_text().splitlines()]
    assert sent[0] == "login ok token=<redacted> user=1" and "first" in sent
    assert "".join(sent[1:-1]) == "x" * 180 + " token=<redacted> " + "y" * 300  # pieces of the long line

    # The group and the partial line complete on the next run: redacted as well, and still nowhere else.
    append(grouped, f"END\nagain token={SECRETS['later']}\n")
    append(partial, " done\n")
    for cmd in ("tail-once", "upload"):
        r = env.proc(cmd, "-v")
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    sent = [json.loads(line)["message"] for line in env.sink.read_text().splitlines()]
    assert "BEGIN request\n  header token=<redacted>\nEND" in sent
    assert "retry token=<redacted> done" in sent and "again token=<redacted>" in sent
    assert leaks([*env.state.parent.iterdir(), env.sink], outputs) == []
