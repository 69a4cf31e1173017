"""status lists info-level notices (a file shadowed by an earlier [[logs]] entry) apart from problems, in the
table and in --json alike."""

from __future__ import annotations

import json

from tests.conftest import Env, numbered


def test_info_notices_are_not_listed_as_problems(env: Env) -> None:
    (env.logs / "app.log").write_text(numbered(3))
    env.write_config(
        f'[[logs]]\nid = "app"\npath = "{env.logs}/app.log"\n[[logs]]\nid = "all"\npath = "{env.logs}/*.log"\n'
        # an error-level problem beside the info one
        '[[monitors]]\ntype = "shell"\nid = "broken"\ncommand = "/nonexistent/tool"\nshell = false\n'
    )
    env.cli("run")
    doc = json.loads(env.cli("status", "--json").stdout)
    assert all(n["level"] != "info" for n in doc["notices"]), doc["notices"]
    assert any("/nonexistent/tool" in n["message"] for n in doc["notices"]), doc["notices"]
    shadowed = [n for n in doc["info_notices"] if "shadowed" in n["message"]]
    assert shadowed and all(n["level"] == "info" for n in doc["info_notices"]), doc["info_notices"]
    text = env.cli("status").stdout
    assert "Recent problems:" in text and "Recent notices:" in text, text
    recent = text.partition("Recent problems:")[2]
    problems, _, notices = recent.partition("Recent notices:")
    notices = notices.partition("Ongoing problems")[0]
    assert "/nonexistent/tool" in problems and "shadowed" not in problems  # not listed as a problem
    assert "shadowed" in notices and "/nonexistent/tool" not in notices
