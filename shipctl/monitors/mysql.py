"""The ``mysql`` monitor: MySQL / MariaDB server metrics, as the Scalyr agent's ``mysql_monitor`` reports them.

Options keep the agent's names, so an agent.json entry carries over unchanged: ``database_socket`` (a path, or
``"default"`` for the usual locations) or ``database_hostport`` (``host:port``, ``host``, ``port`` or
``"default"``), ``database_username``, ``database_password``, ``use_ssl`` with ``ca_file``, ``key_file``,
``cert_file``. shipctl adds ``timeout`` (seconds for the connection and each statement; default 10).
``use_ssl = true`` makes TLS required, verified against ``ca_file`` when given (a warning says when it is not);
without it PyMySQL still uses TLS when the server offers it, unverified, and plain TCP otherwise.

Each run connects once (PyMySQL, the ``mysql`` extra), reads, and closes. The metrics, named as the agent's code
emits them (its documentation says ``mysql.max_connections`` where the code writes ``mysql.vars.max_connections``;
the code is what existing Scalyr queries see):

- ``mysql.vars.max_connections``, ``mysql.vars.open_files_limit`` (``SHOW GLOBAL VARIABLES``);
- ``mysql.global.<status>`` for every ``SHOW GLOBAL STATUS`` variable, lower-cased, except the ``com_*`` ones
  other than ``com_select``, ``com_insert``, ``com_update``, ``com_delete``, ``com_replace``. Numbers become
  numbers; other values (``"OFF"``, ``""``) are text, as the agent sends them;
- ``mysql.innodb.*`` parsed from ``SHOW ENGINE INNODB STATUS`` (what the server version prints of it:
  ``history_list_length``, ``opened_read_views``, ``queries_queued``, ``oswait_array.*``, ``ibuf.*``, and
  ``locks.spin_waits|rounds|os_waits`` with dimension ``type`` = ``mutex``, ``rw-shared`` or ``rw-exclusive``;
  the agent meant to add that ``type`` but a misspelt key drops it, which leaves its series ambiguous);
- ``mysql.slave.seconds_behind_master|bytes_executed|bytes_relayed|thread_io_running|thread_sql_running`` on a
  replica;
- ``mysql.process.<command>``: connections per ``SHOW PROCESSLIST`` command (``query``, ``sleep``, ...; this
  monitor's own connection counts as one ``query``, as in the agent);
- ``mysql.derived.*``: the agent's percentages (slow queries, connections used, aborted connects and clients,
  reads and writes, query cache efficiency, joins without indexes, table cache hits, open files, immediate
  table locks, thread cache hits, temporary tables on disk). ``thread_cache_hit_rate`` is a percentage here;
  the agent subtracts a ratio from 100, which leaves it near 100 whatever the cache does.

Cumulative status counters are of type ``counter`` (difference and rate from the previous run), the rest
gauges. A statement the user may not run (``SHOW ENGINE INNODB STATUS`` needs the PROCESS privilege) is a
warning and its metrics are left out; the agent loses the whole sample then.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import stat
from collections.abc import Callable
from typing import Any

from shipctl.config import MonitorConfig
from shipctl.errors import MonitorSetupError
from shipctl.monitors.base import COUNTER, GAUGE, MonitorOutput, Sample
from shipctl.records import record
from shipctl.schema import field, positive

INSTALL_HINT = "pip install 'shipctl[mysql]'"
# The agent's default locations (MySQL's own, RPM systems, Debian), and Debian's /run spelling.
DEFAULT_SOCKETS = (
    "/tmp/mysql.sock",
    "/var/lib/mysql/mysql.sock",
    "/var/run/mysqld/mysqld.sock",
    "/run/mysqld/mysqld.sock",
)
DEFAULT_PORT = 3306
COMS_REPORTED = frozenset(("com_select", "com_update", "com_delete", "com_replace", "com_insert"))
VARIABLES = ("max_connections", "open_files_limit")

# Status variables that only ever grow while the server runs (MySQL and MariaDB documentation). Everything else
# is a gauge: a level (threads_connected, open_tables, innodb_buffer_pool_pages_free) or a high-water mark.
_COUNTER_PREFIXES = (
    "com_",
    "handler_",
    "select_",
    "sort_",
    "created_tmp_",
    "aborted_",
    "bytes_",
    "opened_",
    "innodb_rows_",
    "table_locks_",
    "access_denied_errors",
    "connection_errors_",
)
_COUNTERS = frozenset(
    (
        "connections",
        "questions",
        "queries",
        "slow_queries",
        "threads_created",
        "rows_read",
        "rows_sent",
        "rows_tmp_read",
        "key_read_requests",
        "key_reads",
        "key_write_requests",
        "key_writes",
        "qcache_hits",
        "qcache_inserts",
        "qcache_not_cached",
        "qcache_lowmem_prunes",
        "innodb_data_reads",
        "innodb_data_writes",
        "innodb_data_read",
        "innodb_data_written",
        "innodb_data_fsyncs",
        "innodb_buffer_pool_read_requests",
        "innodb_buffer_pool_reads",
        "innodb_buffer_pool_write_requests",
        "innodb_buffer_pool_pages_flushed",
        "innodb_log_writes",
        "innodb_log_write_requests",
        "innodb_os_log_written",
        "innodb_os_log_fsyncs",
        "innodb_pages_created",
        "innodb_pages_read",
        "innodb_pages_written",
        "innodb_row_lock_waits",
        "innodb_row_lock_time",
        "binlog_commits",
        "binlog_bytes_written",
    )
)
# The agent's cumulative metrics outside the status variables.
_INNODB_COUNTERS = frozenset(
    ("locks.spin_waits", "locks.rounds", "locks.os_waits", "ibuf.inserts", "ibuf.merged_recs", "ibuf.merges")
)

# (regex, [(metric, group, dimensions)]) over the lines of SHOW ENGINE INNODB STATUS, as the agent reads it.
_INNODB_LINES: tuple[tuple[re.Pattern[str], tuple[tuple[str, int, dict[str, str]], ...]], ...] = (
    (
        re.compile(r"OS WAIT ARRAY INFO: reservation count (\d+), signal count (\d+)"),
        (("oswait_array.reservation_count", 1, {}), ("oswait_array.signal_count", 2, {})),
    ),
    (
        re.compile(r"Mutex spin waits (\d+), rounds (\d+), OS waits (\d+)"),
        (
            ("locks.spin_waits", 1, {"type": "mutex"}),
            ("locks.rounds", 2, {"type": "mutex"}),
            ("locks.os_waits", 3, {"type": "mutex"}),
        ),
    ),
    (
        re.compile(r"RW-shared spins (\d+), OS waits (\d+); RW-excl spins (\d+), OS waits (\d+)"),
        (
            ("locks.spin_waits", 1, {"type": "rw-shared"}),
            ("locks.os_waits", 2, {"type": "rw-shared"}),
            ("locks.spin_waits", 3, {"type": "rw-exclusive"}),
            ("locks.os_waits", 4, {"type": "rw-exclusive"}),
        ),
    ),
    (
        re.compile(r"Ibuf: size (\d+), free list len (\d+), seg size (\d+),"),
        (("ibuf.size", 1, {}), ("ibuf.free_list_len", 2, {}), ("ibuf.seg_size", 3, {})),
    ),
    (
        re.compile(r"(\d+) inserts, (\d+) merged recs, (\d+) merges"),
        (("ibuf.inserts", 1, {}), ("ibuf.merged_recs", 2, {}), ("ibuf.merges", 3, {})),
    ),
    (re.compile(r"\d+ queries inside InnoDB, (\d+) queries in queue"), (("queries_queued", 1, {}),)),
    (re.compile(r"(\d+) read views open inside InnoDB"), (("opened_read_views", 1, {}),)),
    (re.compile(r"History list length (\d+)"), (("history_list_length", 1, {}),)),
)

# What a statement needs when the server answers "access denied" (error 1227), for the warning.
_PRIVILEGE = {
    "SHOW ENGINE INNODB STATUS": "PROCESS",
    "SHOW SLAVE STATUS": "REPLICATION CLIENT (MariaDB: SLAVE MONITOR)",
    "SHOW REPLICA STATUS": "REPLICATION CLIENT (MariaDB: SLAVE MONITOR)",
}


def _hostport(value: str | int) -> str | None:
    try:
        parse_hostport(value)
    except ValueError as exc:
        return str(exc)
    return None


def _true_false(value: bool | str) -> str | None:
    # The agent's config reader turns the strings "true"/"false" into booleans; anything else is a mistake here.
    if isinstance(value, bool) or value.lower() in ("true", "false"):
        return None
    return "expected true or false"


def parse_hostport(value: str | int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host``, a bare port (the local machine, as the agent documents) or
    ``"default"`` (localhost:3306)."""
    text = str(value).strip()
    if not text:
        raise ValueError('expected "host:port", "host", a port number or "default"')
    if text.lower() == "default":
        return "localhost", DEFAULT_PORT
    if text.isdigit():
        host, port_text = "localhost", text
    elif text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            raise ValueError('expected "[address]:port" for an IPv6 address')
        host, port_text = text[1:end], text[end + 2 :] or str(DEFAULT_PORT)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError('expected "host:port" (write an IPv6 address as "[address]:port")')
    else:
        host, port_text = text, str(DEFAULT_PORT)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError('expected "host:port" with a port from 1 to 65535')
    return host, int(port_text)


def pymysql_installed() -> bool:
    try:
        return importlib.util.find_spec("pymysql") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (blocked)
        return False


@record(frozen=True)
class MysqlOptions:
    """Options of the ``mysql`` monitor: the server to connect to and what to report."""

    database_socket: str = field("", doc='socket file, or "default" for the usual locations')
    database_hostport: str | int = field("", check=_hostport, doc='"host:port", "host", a port, or "default"')
    database_username: str = field("", doc="user to connect as")
    database_password: str = field("", secret=True, doc="its password")
    use_ssl: bool | str = field(False, check=_true_false, doc="connect with TLS")
    ca_file: str = field("", doc="CA certificates to verify the server with (none: not verified)")
    key_file: str = field("", doc="client key, with cert_file")
    cert_file: str = field("", doc="client certificate")
    timeout: float = field(10.0, check=positive, doc="seconds for connecting and for each statement")

    def __post_init__(self) -> None:
        socket, hostport = self.database_socket, str(self.database_hostport)
        if socket and hostport:
            raise ValueError("give database_socket or database_hostport, not both")
        if not socket and not hostport:
            raise ValueError('expected database_socket (a path or "default") or database_hostport ("host:port")')
        if not self.database_username:
            raise ValueError("expected database_username (the user to connect as)")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        if (self.ca_file or self.cert_file) and not self.ssl:
            raise ValueError("ca_file, cert_file and key_file need use_ssl = true")

    @property
    def ssl(self) -> bool:
        return self.use_ssl is True or (isinstance(self.use_ssl, str) and self.use_ssl.lower() == "true")

    def finish(self, mon: MonitorConfig) -> MysqlOptions:
        """The monitor fails alone (the rest of the run goes on) when its client library is not installed."""
        if not pymysql_installed():
            raise MonitorSetupError(f"{mon.where}: the mysql monitor needs the PyMySQL package: {INSTALL_HINT}")
        return self


def parse_value(value: Any) -> int | float | str:
    """As the agent: an integer, a float when the text has a ".", else the text itself. An integer beyond 64 bits
    (MariaDB shows 2**64-1 for some unset counters) becomes a float: metric sinks take 64-bit integers at most."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, int | float) and not isinstance(value, bool):
        number: int | float = value
    else:
        text = "" if value is None else str(value)
        try:
            number = float(text) if "." in text else int(text)
        except ValueError:
            return text
    if isinstance(number, int) and not -(2**63) <= number < 2**63:
        return float(number)
    return number


def status_kind(name: str) -> str:
    return COUNTER if name in _COUNTERS or name.startswith(_COUNTER_PREFIXES) else GAUGE


class MysqlMonitor:
    module = "mysql_monitor"

    def __init__(self, options: MysqlOptions) -> None:
        self.options = options

    def target(self) -> str:
        o = self.options
        if o.database_hostport != "":
            host, port = parse_hostport(o.database_hostport)
            return f"{host}:{port}"
        return "the default socket" if o.database_socket.lower() == "default" else o.database_socket

    def _socket(self) -> str:
        path = self.options.database_socket
        if path.lower() == "default":
            for candidate in DEFAULT_SOCKETS:
                if _is_socket(candidate):
                    return candidate
            raise ConnectionError(f"no MySQL socket at the default locations ({', '.join(DEFAULT_SOCKETS)})")
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConnectionError(f"database_socket {path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ConnectionError(f"database_socket {path} is not a socket")
        return path

    def _connect(self) -> Any:
        import pymysql

        o = self.options
        kwargs: dict[str, Any] = {
            "user": o.database_username,
            "password": o.database_password,
            "connect_timeout": o.timeout,
            "read_timeout": o.timeout,
            "write_timeout": o.timeout,
            "charset": "utf8mb4",
        }
        if o.ssl:
            kwargs["ssl"] = self._ssl_context()
        if o.database_hostport != "":
            kwargs["host"], kwargs["port"] = parse_hostport(o.database_hostport)
        else:
            kwargs["unix_socket"] = self._socket()
        return pymysql.connect(**kwargs)

    def _ssl_context(self) -> Any:
        import ssl

        o = self.options
        if o.ca_file:
            try:
                ctx = ssl.create_default_context(cafile=o.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"ca_file {o.ca_file}: {_tls_reason(exc)}") from None
        else:  # as the agent: TLS without a CA file encrypts but does not verify (said as a warning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if o.cert_file:
            try:
                ctx.load_cert_chain(o.cert_file, o.key_file or None)
            except (OSError, ssl.SSLError) as exc:
                files = f"cert_file {o.cert_file}" + (f" with key_file {o.key_file}" if o.key_file else "")
                raise ValueError(f"{files}: not a certificate and its private key ({_tls_reason(exc)})") from None
        return ctx

    def sample(self) -> MonitorOutput:
        try:
            import pymysql
        except ImportError:
            return MonitorOutput(error=f"the mysql monitor needs the PyMySQL package: {INSTALL_HINT}")
        out = MonitorOutput()
        if self.options.ssl and not self.options.ca_file:
            out.warnings.append("use_ssl without ca_file: the server certificate is not verified")
        try:
            conn = self._connect()
        except ValueError as exc:  # the TLS files: a cert_file that is not a certificate, a missing ca_file
            out.error = f"cannot set up the connection to {self.target()}: {exc}"
            return out
        except (pymysql.Error, OSError, ConnectionError) as exc:
            out.error = f"cannot connect to {self.target()}: {_describe(exc)}"
            return out
        try:
            self._gather(conn, out)
        except pymysql.Error as exc:  # the connection broke mid-way: what was read so far still counts
            out.error = f"{self.target()}: {_describe(exc)}"
        finally:
            with contextlib.suppress(Exception):  # a connection that broke may not close cleanly
                conn.close()
        return out

    # --- reading --------------------------------------------------------------------------------------------
    def _gather(self, conn: Any, out: MonitorOutput) -> None:
        cur = conn.cursor()

        def query(sql: str) -> list[tuple[Any, ...]] | None:
            try:
                cur.execute(sql)
                return list(cur.fetchall())
            except Exception as exc:
                if _code(exc) in (1045, 1142, 1227, 1370) or "denied" in str(exc).lower():
                    need = _PRIVILEGE.get(sql)
                    hint = f" (needs the {need} privilege)" if need else ""
                    out.warnings.append(f"{sql}: access denied{hint}; its metrics are left out")
                    return None
                raise

        samples = out.samples
        variables = query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ", ".join(f"'{v}'" for v in VARIABLES) + ")"
        )
        vars_map: dict[str, int | float | str] = {}
        for name, value in variables or ():
            key = str(name).lower()
            vars_map[key] = parse_value(value)
            samples.append(Sample(f"mysql.vars.{key}", vars_map[key], GAUGE))

        status = query("SHOW /*!50000 GLOBAL */ STATUS")
        status_map: dict[str, int | float | str] = {}
        for name, value in status or ():
            key = str(name).lower()
            if key.startswith("com_") and key not in COMS_REPORTED:
                continue
            status_map[key] = parse_value(value)
            samples.append(Sample(f"mysql.global.{key}", status_map[key], status_kind(key)))

        if any(k.startswith("innodb") for k in status_map):
            rows = query("SHOW ENGINE INNODB STATUS")
            if rows and len(rows[0]) > 2 and rows[0][2]:
                samples.extend(innodb_samples(str(rows[0][2])))

        try:
            replica = query("SHOW SLAVE STATUS")
        except Exception as exc:
            if _code(exc) != 1064:  # ER_PARSE_ERROR: a server (MySQL 8.4) that only knows the new spelling
                raise
            replica = query("SHOW REPLICA STATUS")
        if replica:
            columns = [d[0].lower() for d in cur.description or ()]
            samples.extend(replica_samples(dict(zip(columns, replica[0], strict=False))))

        processes = query("SHOW PROCESSLIST")
        counts: dict[str, int] = {}
        for row in processes or ():
            command = str(row[4]).lower().replace(" ", "_")
            counts[command] = counts.get(command, 0) + 1
        samples.extend(Sample(f"mysql.process.{c}", n, GAUGE) for c, n in sorted(counts.items()))

        if vars_map and status_map:
            samples.extend(
                Sample(f"mysql.derived.{name}", round(value, 6), GAUGE)
                for name, value in derived_stats(vars_map, status_map)
            )


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _tls_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _describe(exc: BaseException) -> str:
    """PyMySQL errors are ``(code, message)``; show ``message (error code)``."""
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (error {args[0]})"
    return str(exc) or type(exc).__name__


def innodb_samples(text: str) -> list[Sample]:
    out: list[Sample] = []
    for line in text.split("\n"):
        for pattern, fields in _INNODB_LINES:
            m = pattern.match(line)
            if m is None:
                continue
            for name, group, dims in fields:
                kind = COUNTER if name in _INNODB_COUNTERS else GAUGE
                out.append(Sample(f"mysql.innodb.{name}", parse_value(m.group(group)), kind, dict(dims)))
    return out


# MySQL 8.0.22+ answers SHOW REPLICA STATUS with renamed columns (MySQL 8.4 no longer knows SHOW SLAVE STATUS).
_REPLICA_COLUMNS = {
    "source_host": "master_host",
    "seconds_behind_source": "seconds_behind_master",
    "exec_source_log_pos": "exec_master_log_pos",
    "read_source_log_pos": "read_master_log_pos",
    "replica_io_running": "slave_io_running",
    "replica_sql_running": "slave_sql_running",
}


def replica_samples(row: dict[str, Any]) -> list[Sample]:
    """Metrics of a replica: only when the replica status names a master, as the agent does."""
    row = {_REPLICA_COLUMNS.get(k, k): v for k, v in row.items()}
    master = row.get("master_host")
    if not master or master == "None":
        return []
    out = []
    behind = row.get("seconds_behind_master")
    if isinstance(behind, int):  # NULL while replication is stopped: nothing to say
        out.append(Sample("mysql.slave.seconds_behind_master", behind, GAUGE))
    for name, column in (("bytes_executed", "exec_master_log_pos"), ("bytes_relayed", "read_master_log_pos")):
        if column in row:
            out.append(Sample(f"mysql.slave.{name}", parse_value(row[column]), GAUGE))
    for name, column in (("thread_io_running", "slave_io_running"), ("thread_sql_running", "slave_sql_running")):
        if column in row:
            out.append(Sample(f"mysql.slave.{name}", 1 if str(row[column]).lower() == "yes" else 0, GAUGE))
    return out


def _pct(part: float, whole: float, empty: float = 0.0) -> float:
    return 100.0 * part / whole if whole > 0 else empty


def derived_stats(v: dict[str, Any], s: dict[str, Any]) -> list[tuple[str, float]]:
    """The agent's derived percentages; one whose inputs the server does not report is left out."""

    def g(name: str) -> float:
        value = s[f"{name}"]
        if not isinstance(value, int | float):
            raise KeyError(name)
        return float(value)

    writes = ("com_delete", "com_insert", "com_update", "com_replace")
    stats: list[tuple[str, Callable[[], float]]] = [
        ("slow_query_percentage", lambda: _pct(g("slow_queries"), g("questions"))),
        ("connections_used_percentage", lambda: min(100.0, _pct(g("max_used_connections"), v["max_connections"]))),
        ("aborted_connections_percentage", lambda: _pct(g("aborted_connects"), g("connections"))),
        ("aborted_clients_percentage", lambda: _pct(g("aborted_clients"), g("connections"))),
        ("read_percentage", lambda: _pct(g("com_select"), g("com_select") + sum(g(w) for w in writes))),
        ("write_percentage", lambda: _pct(sum(g(w) for w in writes), g("com_select") + sum(g(w) for w in writes))),
        ("query_cache_efficiency", lambda: _pct(g("qcache_hits"), g("com_select") + g("qcache_hits"))),
        ("joins_without_indexes", lambda: g("select_range_check") + g("select_full_join")),
        ("table_cache_hit_rate", lambda: _pct(g("open_tables"), g("opened_tables"), 100.0)),
        ("open_file_percentage", lambda: _pct(g("open_files"), v["open_files_limit"])),
        (
            "immediate_table_lock_percentage",
            lambda: (
                _pct(g("table_locks_immediate"), g("table_locks_waited") + g("table_locks_immediate"), 100.0)
                if g("table_locks_waited") > 0
                else 100.0
            ),
        ),
        ("thread_cache_hit_rate", lambda: 100.0 - _pct(g("threads_created"), g("connections"))),
        ("tmp_disk_table_percentage", lambda: _pct(g("created_tmp_disk_tables"), g("created_tmp_tables"))),
    ]
    out = []
    for name, compute in stats:
        try:
            out.append((name, compute()))
        except (KeyError, TypeError):
            continue
    return out


__all__ = ["MysqlMonitor", "MysqlOptions", "derived_stats", "innodb_samples", "parse_hostport"]
