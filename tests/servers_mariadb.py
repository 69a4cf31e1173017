"""A real MariaDB server for the mysql monitor tests: session-scoped fixture ``mariadb``.

``mariadb-install-db`` makes a data directory in a pytest temp dir, then ``mariadbd`` serves it on a Unix socket
in that directory and on a free 127.0.0.1 port; it is stopped by PID when the session ends. The Debian
package (``mariadb-server``) starts nothing by itself here, and .ci/run installs it.

A missing binary skips the tests that use it when run by hand, and fails them when ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import STARTUP_TIMEOUT, ServerProcess, require_binary, start_on_free_ports
from tests.servers_syslog import Certs, make_certs

# The monitoring user of the tests, with what the Scalyr agent's documentation asks for: PROCESS (SHOW ENGINE
# INNODB STATUS, every thread in SHOW PROCESSLIST) and the replica-status privilege.
MONITOR_USER = "scalyr-agent-monitor"
MONITOR_PASSWORD = "m0nitor-pass-9f3c"
LIMITED_USER = "nobody-special"  # USAGE only: global status yes, InnoDB status no
LIMITED_PASSWORD = "limited-pass-41d2"
TLS_USER = "tls-only"  # REQUIRE SSL: refused without TLS
CERT_USER = "cert-only"  # REQUIRE X509: refused without a client certificate the CA signed
TLS_PASSWORD = "tls-pass-77aa"
REPL_USER = "replicator"
REPL_PASSWORD = "repl-pass-5b1e"


def _binary(name: str) -> str:
    return require_binary(name, package="mariadb-server")


class MariaDB(ServerProcess):
    """A running ``mariadbd``: ``socket`` (root connects there without a password), ``port`` on 127.0.0.1."""

    name = "mariadbd"

    def __init__(
        self, proc: subprocess.Popen[bytes], root: Path, socket: str, port: int, log: Path, certs: Certs
    ) -> None:
        super().__init__(proc, root, log)
        self.certs = certs  # the server's TLS: its CA, and a client certificate that CA signed
        self.socket = socket
        self.port = port

    def connect(self, user: str = "root", password: str = "", **kw: Any) -> Any:
        import pymysql

        if "host" in kw:
            return pymysql.connect(user=user, password=password, port=self.port, connect_timeout=10, **kw)
        return pymysql.connect(unix_socket=self.socket, user=user, password=password, connect_timeout=10, **kw)

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as root (autocommit); the rows of the last one."""
        conn = self.connect(autocommit=True)
        try:
            cur = conn.cursor()
            rows: list[tuple[Any, ...]] = []
            for s in statements:
                cur.execute(s)
                rows = list(cur.fetchall())
            return rows
        finally:
            conn.close()

    def status(self, name: str) -> int:
        (row,) = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}'")
        return int(row[1])

    def answers(self) -> bool:
        try:
            self.sql("SELECT 1")
            return True
        except Exception:  # refused, not yet accepting logins, ...: not ready yet
            return False


def _start(root: Path, server_args: list[str], certs: Certs) -> MariaDB:
    install, server = _binary("mariadb-install-db"), _binary("mariadbd")
    pytest.importorskip("pymysql", reason="the mysql extra (PyMySQL) is not installed")
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses to run as root without it
    data = root / "data"
    init = subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--innodb-log-file-size=4M",  # 22 MB of data directory instead of 114
            *as_root,
        ],
        check=False,
        capture_output=True,
        timeout=STARTUP_TIMEOUT,
    )
    if init.returncode:  # what it said, not just "returned non-zero exit status"
        said = (init.stderr + init.stdout).decode(errors="replace")[-2000:]
        raise RuntimeError(f"mariadb-install-db failed (exit {init.returncode}) in {data}:\n{said}")

    def launch(adir: Path, ports: list[int]) -> MariaDB:
        (port,) = ports
        sock, log = str(adir / "mariadbd.sock"), adir / "mariadbd.log"
        argv = [
            server,
            "--no-defaults",  # no /etc/mysql/my.cnf: only what is written here
            f"--datadir={data}",
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={adir / 'mariadbd.pid'}",
            f"--log-error={log}",
            f"--tmpdir={adir}",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=4M",
            "--max-connections=77",  # not the default 151, so a test can tell the value was read
            f"--ssl-ca={certs.ca}",
            f"--ssl-cert={certs.server_cert}",
            f"--ssl-key={certs.server_key}",
            *server_args,
            *as_root,
        ]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return MariaDB(proc, adir, sock, port, log, certs)

    return start_on_free_ports("mariadbd", root, 1, launch, MariaDB.answers)


def _users(db: MariaDB) -> None:
    for host in ("localhost", "%"):
        db.sql(
            f"CREATE USER '{MONITOR_USER}'@'{host}' IDENTIFIED BY '{MONITOR_PASSWORD}'",
            f"GRANT PROCESS, SLAVE MONITOR ON *.* TO '{MONITOR_USER}'@'{host}'",
            f"CREATE USER '{LIMITED_USER}'@'{host}' IDENTIFIED BY '{LIMITED_PASSWORD}'",
            f"CREATE USER '{TLS_USER}'@'{host}' IDENTIFIED BY '{TLS_PASSWORD}' REQUIRE SSL",
            f"CREATE USER '{CERT_USER}'@'{host}' IDENTIFIED BY '{TLS_PASSWORD}' REQUIRE X509",
            f"GRANT PROCESS, SLAVE MONITOR ON *.* TO '{TLS_USER}'@'{host}', '{CERT_USER}'@'{host}'",
        )


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A real MariaDB for the whole session (a replication primary, binary log on), with a monitoring user, a
    user without privileges, and users that must come over TLS."""
    root = tmp_path_factory.mktemp("mariadb")
    db = _start(root, ["--server-id=1", f"--log-bin={root / 'binlog'}"], make_certs(root / "certs"))
    try:
        _users(db)
        db.sql(
            f"CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'",
            f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'",
        )
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="session")
def mariadb_replica(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A second MariaDB replicating from ``mariadb`` from the moment it starts (its own users are its own)."""
    root = tmp_path_factory.mktemp("mariadb-replica")
    db = _start(root, ["--server-id=2", "--skip-log-bin"], mariadb.certs)
    try:
        _users(db)
        ((log_file, log_pos, *_),) = mariadb.sql("SHOW MASTER STATUS")
        db.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={mariadb.port}, MASTER_USER='{REPL_USER}', "
            f"MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_LOG_FILE='{log_file}', MASTER_LOG_POS={log_pos}, "
            "MASTER_USE_GTID=no",
            "START SLAVE",
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            conn = db.connect(cursorclass=__import__("pymysql").cursors.DictCursor)
            try:
                cur = conn.cursor()
                cur.execute("SHOW SLAVE STATUS")
                row = cur.fetchone()
            finally:
                conn.close()
            if row and row["Slave_IO_Running"] == "Yes" and row["Slave_SQL_Running"] == "Yes":
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the replica did not start replicating:\n{db.log_tail()}")
        yield db
    finally:
        db.stop()
