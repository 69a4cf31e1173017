"""The mysql monitor against a real MariaDB (tests/servers_mariadb.py): the Scalyr agent's option names and
metric names, values that follow what the server did, and the ways a connection or a privilege can fail."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shipctl.monitors.mysql import derived_stats, innodb_samples, parse_hostport, replica_samples
from tests.conftest import Env
from tests.servers import InfluxDB
from tests.servers_mariadb import (
    CERT_USER,
    LIMITED_PASSWORD,
    LIMITED_USER,
    MONITOR_PASSWORD,
    MONITOR_USER,
    TLS_PASSWORD,
    TLS_USER,
    MariaDB,
    mariadb,  # noqa: F401 - the fixture
    mariadb_replica,  # noqa: F401 - the fixture
)

NO_IMPLICIT = "[agent]\nimplicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


def _mysql(mid: str, **options: Any) -> str:
    lines = [f'[[monitors]]\ntype = "mysql"\nid = "{mid}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    return "\n".join(lines) + "\n"


def _socket_monitor(db: MariaDB, mid: str = "db") -> str:
    return _mysql(mid, database_socket=db.socket, database_username=MONITOR_USER, database_password=MONITOR_PASSWORD)


def _metrics(env: Env, source: str = "db") -> list[dict[str, Any]]:
    return [e for e in env.events() if e["kind"] == "metric" and e["source"] == source]


def _latest(env: Env, source: str = "db") -> dict[str, dict[str, Any]]:
    """The last value of each metric (the dimension ``type`` folded into the name)."""
    out = {}
    for e in _metrics(env, source):
        a = e["attrs"]
        out[a["metric"] + (f"[{a['type']}]" if "type" in a else "")] = a
    return out


def test_metrics_over_the_socket_follow_what_the_server_did(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    env.write_config(NO_IMPLICIT + _socket_monitor(mariadb))
    (limit,) = mariadb.sql("SELECT @@open_files_limit")  # before the samples: it counts as a com_select
    r = env.cli("run-monitor", "db")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    env.ship()
    first = _latest(env)

    # The variables, as the agent's code names them, with the server's own values.
    assert first["mysql.vars.max_connections"]["value"] == 77  # set on the mariadbd command line
    assert first["mysql.vars.open_files_limit"]["value"] == int(limit[0])
    # Every global status variable, lower-cased; com_* only for the five the agent reports.
    assert isinstance(first["mysql.global.uptime"]["value"], int)
    assert first["mysql.global.threads_connected"]["metric_type"] == "gauge"
    assert first["mysql.global.com_select"]["metric_type"] == "counter"
    coms = {m for m in first if m.startswith("mysql.global.com_")}
    assert coms == {f"mysql.global.com_{c}" for c in ("select", "insert", "update", "delete", "replace")}
    assert first["mysql.global.wsrep_ready"]["value"] == "OFF"  # text values are sent as text, as by the agent
    # InnoDB status text, the process list (this monitor's own connection is a query), derived percentages.
    assert isinstance(first["mysql.innodb.history_list_length"]["value"], int)
    assert isinstance(first["mysql.innodb.opened_read_views"]["value"], int)
    assert first["mysql.process.query"]["value"] >= 1
    assert first["mysql.derived.connections_used_percentage"]["value"] == pytest.approx(
        min(100.0, 100.0 * first["mysql.global.max_used_connections"]["value"] / 77), abs=1e-6
    )
    (line,) = [e["message"] for e in _metrics(env) if e["attrs"]["metric"] == "mysql.vars.max_connections"]
    assert line == "[mysql_monitor(db)] mysql.vars.max_connections 77"

    # Some work on another connection, one idle connection held open, then the next sample.
    idle = mariadb.connect()
    try:
        conn = mariadb.connect(autocommit=True)
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS shop")
        cur.execute("CREATE TABLE IF NOT EXISTS shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, n INT) ENGINE=InnoDB")
        for i in range(7):
            cur.execute("INSERT INTO shop.orders (n) VALUES (%s)", (i,))
        for _ in range(25):
            cur.execute("SELECT COUNT(*) FROM shop.orders")
        conn.close()
        r = env.cli("run-monitor", "db")
        assert r.exit_code == 0, r.stderr
    finally:
        idle.close()
    env.ship()
    second = _latest(env)
    assert second["mysql.global.com_select"]["difference"] == 25
    assert second["mysql.global.com_insert"]["difference"] == 7
    assert second["mysql.global.connections"]["difference"] >= 3  # the two above and the monitor's own
    assert second["mysql.global.com_select"]["rate"] > 0
    assert second["mysql.process.sleep"]["value"] >= 1  # the idle connection
    assert second["mysql.global.handler_write"]["difference"] >= 7  # rows written, the 7 among them
    sel = second["mysql.global.com_select"]["value"]
    writes = sum(second[f"mysql.global.com_{w}"]["value"] for w in ("insert", "update", "delete", "replace"))
    assert second["mysql.derived.read_percentage"]["value"] == pytest.approx(100.0 * sel / (sel + writes), abs=1e-5)


def test_tcp_with_a_password_which_never_shows(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    env.write_config(
        NO_IMPLICIT
        + _mysql(
            "tcp",
            database_hostport=f"127.0.0.1:{mariadb.port}",
            database_username=MONITOR_USER,
            database_password=MONITOR_PASSWORD,
        )
    )
    r = env.cli("run-monitor", "tcp")
    assert r.exit_code == 0, r.stderr
    env.ship()
    got = _latest(env, "tcp")
    assert got["mysql.vars.max_connections"]["value"] == 77
    assert got["mysql.innodb.history_list_length"]["metric_type"] == "gauge"
    shown = env.cli("check-config")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["monitors"][0]["database_username"] == MONITOR_USER
    for text in (r.stdout, r.stderr, shown.stdout, env.sink.read_text(), env.state.read_bytes().decode("latin-1")):
        assert MONITOR_PASSWORD not in text


def test_a_user_without_privileges_gets_what_it_may_read(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    env.write_config(
        NO_IMPLICIT
        + _mysql(
            "db", database_socket=mariadb.socket, database_username=LIMITED_USER, database_password=LIMITED_PASSWORD
        )
    )
    r = env.cli("run-monitor", "db")
    assert r.exit_code == 0, r.stderr
    assert (
        "shipctl: warning: monitor db: SHOW ENGINE INNODB STATUS: access denied (needs the PROCESS privilege); "
        "its metrics are left out" in r.stderr
    )
    env.ship()
    got = _latest(env)
    assert got["mysql.vars.max_connections"]["value"] == 77
    assert "mysql.global.com_select" in got
    assert not any(m.startswith("mysql.innodb.") for m in got)


def test_wrong_password_fails_that_monitor_only(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    env.write_config(
        NO_IMPLICIT
        + _mysql(
            "db",
            database_hostport=f"127.0.0.1:{mariadb.port}",
            database_username=MONITOR_USER,
            database_password="not-the-password",
        )
        + '[[monitors]]\ntype = "shell"\nid = "other"\ncommand = "echo 5"\n'
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert f"monitor db: cannot connect to 127.0.0.1:{mariadb.port}: Access denied for user" in r.stderr
    assert "(error 1045)" in r.stderr and "not-the-password" not in r.stderr
    env.ship()
    assert _metrics(env) == []
    assert [e["attrs"]["value"] for e in _metrics(env, "other")] == [5]
    status = env.cli("status")
    assert "cannot connect to" in status.stdout + status.stderr


def test_nothing_listening_or_not_a_socket(env: Env) -> None:
    from tests.servers import _free_ports

    (port,) = _free_ports(1)
    not_a_socket = env.tmp / "plain-file.sock"
    not_a_socket.write_text("")
    env.write_config(
        NO_IMPLICIT
        + _mysql("down", database_hostport=f"127.0.0.1:{port}", database_username="u", timeout=3)
        + _mysql("file", database_socket=str(not_a_socket), database_username="u")
        + _mysql("gone", database_socket=str(env.tmp / "missing.sock"), database_username="u")
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert f"monitor down: cannot connect to 127.0.0.1:{port}:" in r.stderr
    assert f"monitor file: cannot connect to {not_a_socket}: database_socket {not_a_socket} is not a socket" in r.stderr
    assert f"monitor gone: cannot connect to {env.tmp / 'missing.sock'}: " in r.stderr
    assert "No such file or directory" in r.stderr


@pytest.mark.parametrize(
    ("options", "key", "message"),
    [
        ({"database_username": "u"}, "monitors[0]", "expected database_socket"),
        (
            {"database_socket": "default", "database_hostport": "db:3306", "database_username": "u"},
            "monitors[0]",
            "give database_socket or database_hostport, not both",
        ),
        ({"database_hostport": "db:http", "database_username": "u"}, "monitors[0].database_hostport", "port"),
        ({"database_hostport": "db:70000", "database_username": "u"}, "monitors[0].database_hostport", "65535"),
        ({"database_socket": "default"}, "monitors[0]", "expected database_username"),
        ({"database_socket": "default", "database_username": "u", "use_ssl": "maybe"}, "monitors[0].use_ssl", "true"),
        ({"database_socket": "default", "database_username": "u", "ca_file": "/x"}, "monitors[0]", "need use_ssl"),
        (
            {"database_socket": "default", "database_username": "u", "databse_password": "x"},
            "monitors[0].databse_password",
            "unknown key",
        ),
    ],
)
def test_config_mistakes_name_the_key(env: Env, options: dict[str, Any], key: str, message: str) -> None:
    env.write_config(NO_IMPLICIT + _mysql("db", **options))
    r = env.cli("run-monitor", "db")
    assert r.exit_code == 78, r.stderr
    assert f"{env.config}: {key}" in r.stderr and message in r.stderr


def test_without_pymysql_the_monitor_says_which_extra(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)  # as if not installed: import fails
    env.write_config(
        NO_IMPLICIT
        + _mysql("db", database_socket="default", database_username="u")
        + '[[monitors]]\ntype = "shell"\nid = "other"\ncommand = "echo 5"\n'
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert "the mysql monitor needs the PyMySQL package: pip install 'shipctl[mysql]'" in r.stderr
    env.ship()
    assert [e["attrs"]["value"] for e in _metrics(env, "other")] == [5]
    check = env.cli("check-config")
    assert check.exit_code == 78 and "shipctl[mysql]" in check.stderr


def test_agent_option_values_as_agent_json_gives_them(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    # agent.json often has the port as a number and booleans as strings; the agent converts both.
    env.write_config(
        NO_IMPLICIT
        + _mysql(
            "db",
            database_hostport=mariadb.port,
            database_username=MONITOR_USER,
            database_password=MONITOR_PASSWORD,
            use_ssl="false",
        )
    )
    r = env.cli("run-monitor", "db")
    assert r.exit_code == 0, r.stderr
    env.ship()
    assert _latest(env)["mysql.vars.max_connections"]["value"] == 77


# --- parsing, without a server -------------------------------------------------------------------------------


def test_hostport_forms() -> None:
    assert parse_hostport("db.example:3307") == ("db.example", 3307)
    assert parse_hostport("db.example") == ("db.example", 3306)
    assert parse_hostport("3310") == ("localhost", 3310)  # "or simply 3306 when connecting to the local machine"
    assert parse_hostport(3310) == ("localhost", 3310)
    assert parse_hostport("default") == ("localhost", 3306)
    assert parse_hostport("[::1]:3308") == ("::1", 3308)
    for bad in ("", "db:", ":3306", "db:0", "::1", "[::1", "db:33a"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


# SHOW ENGINE INNODB STATUS of MySQL 5.6 (MariaDB 10.11 no longer prints the semaphore and insert buffer lines).
MYSQL56_INNODB = """
----------
SEMAPHORES
----------
OS WAIT ARRAY INFO: reservation count 12, signal count 11
Mutex spin waits 101, rounds 2020, OS waits 33
RW-shared spins 40, OS waits 4; RW-excl spins 50, OS waits 5
-------------------------------------
INSERT BUFFER AND ADAPTIVE HASH INDEX
-------------------------------------
Ibuf: size 1, free list len 0, seg size 2, 6 merges
merged operations:
 insert 0, delete mark 0, delete 0
9 inserts, 8 merged recs, 6 merges
------------
TRANSACTIONS
------------
History list length 451
--------------
ROW OPERATIONS
--------------
0 queries inside InnoDB, 3 queries in queue
2 read views open inside InnoDB
"""


def test_innodb_status_lines_with_their_type() -> None:
    got = {(s.name, s.dims.get("type", "")): (s.value, s.kind) for s in innodb_samples(MYSQL56_INNODB)}
    assert got == {
        ("mysql.innodb.oswait_array.reservation_count", ""): (12, "gauge"),
        ("mysql.innodb.oswait_array.signal_count", ""): (11, "gauge"),
        ("mysql.innodb.locks.spin_waits", "mutex"): (101, "counter"),
        ("mysql.innodb.locks.rounds", "mutex"): (2020, "counter"),
        ("mysql.innodb.locks.os_waits", "mutex"): (33, "counter"),
        ("mysql.innodb.locks.spin_waits", "rw-shared"): (40, "counter"),
        ("mysql.innodb.locks.os_waits", "rw-shared"): (4, "counter"),
        ("mysql.innodb.locks.spin_waits", "rw-exclusive"): (50, "counter"),
        ("mysql.innodb.locks.os_waits", "rw-exclusive"): (5, "counter"),
        ("mysql.innodb.ibuf.size", ""): (1, "gauge"),
        ("mysql.innodb.ibuf.free_list_len", ""): (0, "gauge"),
        ("mysql.innodb.ibuf.seg_size", ""): (2, "gauge"),
        ("mysql.innodb.ibuf.inserts", ""): (9, "counter"),
        ("mysql.innodb.ibuf.merged_recs", ""): (8, "counter"),
        ("mysql.innodb.ibuf.merges", ""): (6, "counter"),
        ("mysql.innodb.history_list_length", ""): (451, "gauge"),
        ("mysql.innodb.queries_queued", ""): (3, "gauge"),
        ("mysql.innodb.opened_read_views", ""): (2, "gauge"),
    }


def test_derived_stats_skip_what_the_server_lacks() -> None:
    status = {
        "slow_queries": 5,
        "questions": 200,
        "max_used_connections": 300,
        "connections": 0,
        "aborted_connects": 0,
        "threads_created": 0,
        "qcache_hits": "OFF",  # text where a number is needed: that stat is left out, not a crash
    }
    got = dict(derived_stats({"max_connections": 151}, status))
    assert got == {
        "slow_query_percentage": 2.5,
        "connections_used_percentage": 100.0,  # capped, as the agent does
        "aborted_connections_percentage": 0.0,  # no connections: 0, not a division by zero
        "thread_cache_hit_rate": 100.0,
    }


# --- TLS -----------------------------------------------------------------------------------------------------


def _tls(db: MariaDB, user: str, mid: str = "db", **options: Any) -> str:
    return _mysql(
        mid, database_hostport=f"127.0.0.1:{db.port}", database_username=user, database_password=TLS_PASSWORD, **options
    )


def test_use_ssl_verifies_the_server_with_ca_file(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    env.write_config(
        NO_IMPLICIT
        + _tls(mariadb, TLS_USER, "verified", use_ssl=True, ca_file=str(mariadb.certs.ca))
        + _tls(mariadb, TLS_USER, "unverified", use_ssl=True)
        # Without use_ssl PyMySQL still uses TLS when the server offers it (unverified), so a user the server
        # only admits over TLS gets in: use_ssl = true makes TLS required, and verified with ca_file.
        + _tls(mariadb, TLS_USER, "preferred")
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == (
        "shipctl: warning: monitor unverified: use_ssl without ca_file: the server certificate is not verified\n"
    )
    env.ship()
    for mid in ("verified", "unverified", "preferred"):
        got = _latest(env, mid)
        assert got["mysql.vars.max_connections"]["value"] == 77
        assert got["mysql.global.ssl_accepts"]["value"] >= 1  # the server counted TLS handshakes


def test_a_server_certificate_from_another_ca_is_refused(env: Env, mariadb: MariaDB, tmp_path: Path) -> None:  # noqa: F811
    from tests.servers_syslog import make_certs

    other = make_certs(tmp_path / "other-ca")
    env.write_config(NO_IMPLICIT + _tls(mariadb, TLS_USER, use_ssl=True, ca_file=str(other.ca)))
    r = env.cli("run-monitor", "db")
    assert r.exit_code == 65
    assert f"monitor db: cannot connect to 127.0.0.1:{mariadb.port}:" in r.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in r.stderr or "certificate verify failed" in r.stderr


def test_client_certificate_for_an_x509_user(env: Env, mariadb: MariaDB) -> None:  # noqa: F811
    c = mariadb.certs
    env.write_config(
        NO_IMPLICIT
        + _tls(mariadb, CERT_USER, "nocert", use_ssl=True, ca_file=str(c.ca))
        + _tls(
            mariadb,
            CERT_USER,
            "withcert",
            use_ssl=True,
            ca_file=str(c.ca),
            cert_file=str(c.client_cert),
            key_file=str(c.client_key),
        )
        + _tls(mariadb, CERT_USER, "badcert", use_ssl=True, ca_file=str(c.ca), cert_file=str(c.ca))
    )
    r = env.cli("run-monitor")
    assert r.exit_code == 65
    assert "monitor nocert: cannot connect to" in r.stderr and "Access denied" in r.stderr
    assert "monitor withcert" not in r.stderr
    # The CA certificate has no key beside it: said as a set-up problem of that monitor.
    assert (
        f"monitor badcert: cannot set up the connection to 127.0.0.1:{mariadb.port}: cert_file {c.ca}: not a "
        "certificate and its private key (" in r.stderr
    )
    env.ship()
    assert _latest(env, "withcert")["mysql.vars.max_connections"]["value"] == 77


def test_every_sample_reaches_a_metric_store(env: Env, mariadb: MariaDB, influxdb: InfluxDB) -> None:  # noqa: F811
    """Hundreds of samples of every kind (counters, text, floats, MariaDB's 2**64-1 for unset ids) in one write:
    the receiver takes them all, so no odd value costs the batch."""
    db = influxdb.create_db()
    env.write_config(
        NO_IMPLICIT
        + _socket_monitor(mariadb)
        + f'[[sinks]]\ntype = "influxdb"\nurl = "{influxdb.url}"\ndatabase = "{db}"\n'
    )
    assert env.cli("run-monitor", "db").exit_code == 0
    r = env.cli("upload")
    assert r.exit_code == 0, r.stderr
    (row,) = influxdb.rows(db, 'SELECT * FROM "mysql.vars.max_connections"')
    assert row["value"] == 77 and row["monitor"] == "db"
    (row,) = influxdb.rows(db, 'SELECT * FROM "mysql.global.wsrep_cluster_conf_id"')
    assert float(row["value"]) == float(2**64 - 1)  # a float: the line protocol has no unsigned 64-bit here
    (row,) = influxdb.rows(db, 'SELECT * FROM "mysql.global.wsrep_ready"')
    assert row["text"] == "OFF"
    (counts,) = influxdb.query(db, "SHOW MEASUREMENTS")
    assert len(counts["values"]) > 300


def test_replica_metrics_from_a_real_replica(env: Env, mariadb: MariaDB, mariadb_replica: MariaDB) -> None:  # noqa: F811
    mariadb.sql(
        "CREATE DATABASE IF NOT EXISTS replicated",
        "CREATE TABLE IF NOT EXISTS replicated.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(100))",
        "INSERT INTO replicated.t (v) VALUES ('a'), ('b'), ('c')",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the replica has applied the inserts
        try:
            if mariadb_replica.sql("SELECT COUNT(*) FROM replicated.t") == [(3,)]:
                break
        except Exception:  # the table is not there yet
            pass
        time.sleep(0.05)
    (master_pos,) = [row[1] for row in mariadb.sql("SHOW MASTER STATUS")]
    env.write_config(NO_IMPLICIT + _socket_monitor(mariadb_replica, "replica") + _socket_monitor(mariadb, "primary"))
    r = env.cli("run-monitor")
    assert r.exit_code == 0, r.stderr
    env.ship()
    replica = _latest(env, "replica")
    assert replica["mysql.slave.thread_io_running"]["value"] == 1
    assert replica["mysql.slave.thread_sql_running"]["value"] == 1
    assert replica["mysql.slave.seconds_behind_master"]["value"] >= 0
    # Positions in the primary's binary log: the replica has read and executed all of it.
    assert replica["mysql.slave.bytes_relayed"]["value"] == master_pos
    assert replica["mysql.slave.bytes_executed"]["value"] == master_pos
    # The primary is no replica: none of these there, as in the agent.
    assert not any(m.startswith("mysql.slave.") for m in _latest(env, "primary"))


def test_replica_columns_of_mysql_8() -> None:
    """MySQL 8.0.22+ names the columns after the source, not the master; the metrics keep the agent's names."""
    row = {
        "source_host": "db1",
        "seconds_behind_source": 4,
        "exec_source_log_pos": 1200,
        "read_source_log_pos": 1300,
        "replica_io_running": "Yes",
        "replica_sql_running": "No",
    }
    got = {s.name: s.value for s in replica_samples(row)}
    assert got == {
        "mysql.slave.seconds_behind_master": 4,
        "mysql.slave.bytes_executed": 1200,
        "mysql.slave.bytes_relayed": 1300,
        "mysql.slave.thread_io_running": 1,
        "mysql.slave.thread_sql_running": 0,
    }
    assert replica_samples({"master_host": "", "slave_io_running": "No"}) == []  # not a replica
    stopped = {s.name for s in replica_samples({**row, "seconds_behind_source": None})}
    assert "mysql.slave.seconds_behind_master" not in stopped  # NULL while stopped: left out
