"""Which resources a plugin runs for: resource files and tables, and the Panoptes resource filter (selection,
precedence, metadata, and clear errors for malformed filters)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipctl.pyplugins.filter import FilterError, parse
from shipctl.pyplugins.resources import Resource
from tests.conftest import Env
from tests.plugin_helpers import configure, metric_events, upload, write


def _resource(site: str, cls: str, rid: str, **metadata: str) -> dict[str, object]:
    return {
        "resource_plugin": "discovery",
        "resource_site": site,
        "resource_class": cls,
        "resource_subclass": "switch" if cls == "network" else "host",
        "resource_type": "generic",
        "resource_id": rid,
        "resource_endpoint": f"{rid}.example.net",
        "resource_metadata": dict(metadata),
    }


INVENTORY = [
    _resource("dc1", "network", "sw1", os_version="4.2.1", vendor="acme"),
    _resource("dc1", "network", "sw2", os_version="5.0", vendor="acme"),
    _resource("dc2", "network", "rtr1", os_version="4.9", vendor="other"),
    _resource("dc2", "system", "web1"),
    _resource("dc3", "system", "Web_2"),
]
RESOURCES = {r["resource_id"]: Resource.resource_from_dict(r) for r in INVENTORY}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('resource_id = "sw1"', {"sw1"}),
        ('resource_id eq "sw1"', {"sw1"}),
        ('resource_site != "dc1"', {"rtr1", "web1", "Web_2"}),
        ('resource_site NE "dc1"', {"rtr1", "web1", "Web_2"}),
        ('resource_id LIKE "web%"', {"web1", "Web_2"}),  # LIKE ignores ASCII case, as SQLite's
        ('resource_id LIKE "web_"', {"web1"}),  # _ is one character
        ('resource_id NOT LIKE "%1"', {"sw2", "Web_2"}),
        ('resource_site IN ("dc2", "dc3")', {"rtr1", "web1", "Web_2"}),
        ('resource_site NOT IN ("dc2", "dc3")', {"sw1", "sw2"}),
        ('resource_metadata.os_version LIKE "4%"', {"sw1", "rtr1"}),
        ('resource_metadata.vendor != "acme"', {"rtr1"}),  # a resource without the key never matches
        ('resource_metadata.vendor NOT IN ("acme")', {"rtr1"}),
        ('resource_metadata._resource_ttl = "604800"', set(RESOURCES)),  # Panoptes' default metadata
        # AND binds tighter than OR (SQL precedence): a OR (b AND c)
        ('resource_id = "web1" OR resource_class = "network" AND resource_site = "dc1"', {"web1", "sw1", "sw2"}),
        ('(resource_id = "web1" OR resource_class = "network") AND resource_site = "dc1"', {"sw1", "sw2"}),
        (
            'resource_class = "network" and resource_metadata.vendor = "acme" or resource_site = "dc3"',
            {"sw1", "sw2", "Web_2"},
        ),
        ('RESOURCE_ENDPOINT = "sw2.example.net"', {"sw2"}),  # field names and keywords are case-insensitive
        ('resource_id = "say \\"hi\\""', set()),  # escaped quotes in a value
        ('resource_id = "SW1"', set()),  # = is exact
    ],
)
def test_filter_selects(query: str, expected: set[str]) -> None:
    f = parse(query)
    assert {rid for rid, r in RESOURCES.items() if f.matches(r)} == expected


BAD_FILTERS = [
    ('resource_id == "x"', "expected a value in double quotes at column 14, got '='"),
    ("resource_id = x", "expected a value in double quotes at column 15, got 'x'"),
    ("resource_id = 'x'", 'unexpected character "\'" at column 15'),
    ('resource_id = "x', "unterminated string starting at column 15"),
    ('resource_name = "x"', "expected a field (resource_site, resource_class"),
    ('resource_metadata. = "x"', "expected a metadata key after 'resource_metadata.'"),
    ('resource_id = "x" AND', "expected a field (resource_site, resource_class, resource_subclass, resource_type, "),
    ('resource_id = "x" resource_site = "y"', "expected AND, OR or the end of the filter at column 19"),
    ("resource_id IN ()", "expected a value in double quotes at column 17, got ')'"),
    ('resource_id IN ("a" "b")', 'expected "," or ")" at column 21'),
    ('resource_id IN "a"', 'expected "(" after IN'),
    ('resource_id NOT = "x"', "expected LIKE or IN after NOT"),
    ('resource_id > "x"', "unexpected character '>'"),
    ('(resource_id = "x"', 'expected ")" at column 19, got the end of the filter'),
    ("", "empty filter"),
]


@pytest.mark.parametrize(("query", "message"), BAD_FILTERS)
def test_malformed_filters_say_what_was_expected_where(query: str, message: str) -> None:
    with pytest.raises(FilterError) as exc:
        parse(query)
    assert message in str(exc.value)


@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_a_filter_error(text: str) -> None:
    try:
        f = parse(text)
    except FilterError:
        return
    for r in RESOURCES.values():
        assert f.matches(r) in (True, False)


@given(st.sampled_from(sorted(RESOURCES)), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_%0123456789", max_size=8))
def test_like_agrees_with_sqlite(rid: str, pattern: str) -> None:
    import sqlite3

    f = parse(f'resource_id LIKE "{pattern}"')
    (sql,) = sqlite3.connect(":memory:").execute("SELECT ? LIKE ?", (rid, pattern)).fetchone()
    assert f.matches(RESOURCES[rid]) == bool(sql)


# --- end to end ---------------------------------------------------------------------------------------------


def _inventory_plugin(env: Env, resource_filter: str) -> None:
    (env.tmp / "inventory.json").write_text(json.dumps(INVENTORY))
    write(
        env.tmp / "who.py",
        """
        from shipctl.pyplugins import MetricsGroup

        def poll(ctx):
            return [MetricsGroup("who").gauge("up", 1)]
        """,
    )
    configure(
        env,
        f"""
        [[monitors]]
        type = "plugin"
        id = "who"
        module = "{env.tmp}/who.py"
        resources = "{env.tmp}/inventory.json"
        resource_filter = '{resource_filter}'
        """,
    )


def test_a_plugin_runs_once_for_each_matching_resource(env: Env) -> None:
    _inventory_plugin(env, 'resource_class = "network" AND resource_metadata.os_version NOT LIKE "5%"')
    assert env.cli("run-monitor", "who").exit_code == 0
    upload(env)
    assert sorted(e["attrs"]["resource_id"] for e in metric_events(env)) == ["rtr1", "sw1"]


def test_a_malformed_filter_in_the_config_is_exit_78_naming_the_key(env: Env) -> None:
    _inventory_plugin(env, 'resource_class = "network" AND')
    r = env.cli("run-monitor", "who")
    assert r.exit_code == 78
    assert f"{env.config}: monitors[0].resource_filter: invalid resource filter: expected a field" in r.stderr
    assert "at column 31, got the end of the filter" in r.stderr


def test_no_matching_resource_is_a_warning(env: Env) -> None:
    _inventory_plugin(env, 'resource_site = "dc9"')
    r = env.cli("run-monitor", "who")
    assert r.exit_code == 0
    assert "no resource to run: none of 5 matches resource_filter 'resource_site = \"dc9\"'" in r.stderr


def test_without_resources_the_plugin_polls_this_host(env: Env) -> None:
    import socket

    _inventory_plugin(env, "")
    configure(env, f'[[monitors]]\ntype = "plugin"\nid = "who"\nmodule = "{env.tmp}/who.py"\n')
    assert env.cli("run-monitor", "who").exit_code == 0
    upload(env)
    (e,) = metric_events(env)
    assert e["attrs"]["resource_id"] == socket.gethostname() and e["attrs"]["resource_class"] == "system"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"resource_id": "x"}', "expected a JSON list of resources, got dict"),
        (
            json.dumps([INVENTORY[0], {**INVENTORY[1], "resource_site": ""}]),
            "[1]: resource_site: expected a non-empty string",
        ),
        (json.dumps([{**INVENTORY[0], "resource_sit": "x"}]), "[0]: resource_sit: unknown key"),
        (
            json.dumps([{k: v for k, v in INVENTORY[0].items() if k != "resource_endpoint"}]),
            "resource_endpoint: expected a non-empty string, missing",
        ),
        (
            json.dumps([{**INVENTORY[0], "resource_metadata": {"n": 1}}]),
            "[0]: metadata 'n': value must be a non-empty string",
        ),
        (
            json.dumps([{**INVENTORY[0], "resource_metadata": {"_resource_ttl": "soon"}}]),
            "_resource_ttl: expected a whole number",
        ),
    ],
)
def test_a_bad_resource_file_fails_the_monitor_naming_file_and_entry(env: Env, content: str, message: str) -> None:
    _inventory_plugin(env, "")
    (env.tmp / "inventory.json").write_text(content)
    r = env.cli("run-monitor", "who")
    assert r.exit_code == 65
    assert f"monitor who: {env.tmp}/inventory.json: " in r.stderr and message in r.stderr


def test_a_missing_resource_file_fails_the_monitor(env: Env) -> None:
    _inventory_plugin(env, "")
    (env.tmp / "inventory.json").unlink()
    r = env.cli("run-monitor", "who")
    assert r.exit_code == 65 and f"{env.tmp}/inventory.json: cannot read resources: No such file" in r.stderr
