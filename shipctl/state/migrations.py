"""Append-only schema migrations. Never edit a released one: add ``mNNN_...`` at the end.

The applied count lives in ``PRAGMA user_version`` so checking it costs one statement per run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


def _script(conn: sqlite3.Connection, sql: str) -> None:
    # executescript() would COMMIT the surrounding transaction; run statement by statement instead.
    for stmt in sql.split(";\n"):
        if stmt.strip():
            conn.execute(stmt)


def m001_initial(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- One row per tracked file of a [[logs]] entry. The identity columns say which file the offset
        -- belongs to; real_path is where that file was last found (it moves when rotated).
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            log_id TEXT NOT NULL,
            path TEXT NOT NULL,
            real_path TEXT NOT NULL,
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            fp_len INTEGER NOT NULL,
            fp_hash TEXT NOT NULL,
            offset INTEGER NOT NULL,
            tail_len INTEGER NOT NULL DEFAULT 0,
            tail_hash TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 0,
            mtime_ns INTEGER NOT NULL DEFAULT 0,
            pending_since REAL,
            gen_since REAL NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'active',
            bytes_copied INTEGER NOT NULL DEFAULT 0,
            lines_copied INTEGER NOT NULL DEFAULT 0,
            bytes_skipped INTEGER NOT NULL DEFAULT 0,
            lines_dropped INTEGER NOT NULL DEFAULT 0,
            bytes_dropped INTEGER NOT NULL DEFAULT 0,
            redactions INTEGER NOT NULL DEFAULT 0,
            rotations INTEGER NOT NULL DEFAULT 0,
            first_seen REAL NOT NULL,
            last_checked REAL NOT NULL,
            last_error TEXT,
            UNIQUE (log_id, path)
        );

        -- Files read to their end after they were rotated away, so a later run never reads them again.
        CREATE TABLE seen_files (
            id INTEGER PRIMARY KEY,
            log_id TEXT NOT NULL,
            fp_len INTEGER NOT NULL,
            fp_hash TEXT NOT NULL,
            size INTEGER NOT NULL,
            tail_hash TEXT NOT NULL,
            finished REAL NOT NULL
        );
        CREATE INDEX seen_files_log ON seen_files (log_id, fp_hash);

        CREATE TABLE logs (
            log_id TEXT PRIMARY KEY,
            initialized REAL NOT NULL,
            last_checked REAL,
            matched INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );

        -- The queue: one row per batch (~1 MiB), never one per line.
        CREATE TABLE queue (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            log_id TEXT,
            ts INTEGER NOT NULL,
            attrs TEXT NOT NULL,
            fmt TEXT NOT NULL,
            codec TEXT NOT NULL,
            n_events INTEGER NOT NULL,
            n_bytes INTEGER NOT NULL,
            sn INTEGER NOT NULL,
            created REAL NOT NULL,
            payload BLOB NOT NULL
        );

        CREATE TABLE upload_state (
            sink TEXT PRIMARY KEY,
            last_attempt REAL,
            last_success REAL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL,
            last_status TEXT,
            last_message TEXT,
            last_request_bytes INTEGER,
            bytes_uploaded INTEGER NOT NULL DEFAULT 0,
            events_uploaded INTEGER NOT NULL DEFAULT 0,
            batches_uploaded INTEGER NOT NULL DEFAULT 0,
            events_discarded INTEGER NOT NULL DEFAULT 0,
            batches_discarded INTEGER NOT NULL DEFAULT 0,
            batches_dropped INTEGER NOT NULL DEFAULT 0
        );

        CREATE TABLE monitors (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            last_run REAL,
            last_duration REAL,
            last_outcome TEXT,
            runs INTEGER NOT NULL DEFAULT 0,
            samples INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );

        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            exit_code INTEGER,
            summary TEXT
        );

        CREATE TABLE notices (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            source TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL
        );
        """,
    )


MIGRATIONS: list[Migration] = [m001_initial]


def m002_metric_history(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        -- One row per (monitor, metric, dimensions): the previous sample that Difference and rate need.
        -- value has no declared type so an integer counter reads back as an integer.
        CREATE TABLE metric_series (
            id INTEGER PRIMARY KEY,
            monitor TEXT NOT NULL,
            metric TEXT NOT NULL,
            dims TEXT NOT NULL,
            kind TEXT NOT NULL,
            epoch TEXT NOT NULL DEFAULT '',
            last_ts REAL NOT NULL,
            last_value NOT NULL,
            n INTEGER NOT NULL DEFAULT 0,
            UNIQUE (monitor, metric, dims)
        );
        CREATE INDEX metric_series_metric ON metric_series (metric);

        -- The recent samples of a series as a ring (slot = sample number modulo the ring size), so the
        -- history stays bounded without a DELETE per run.
        CREATE TABLE metric_points (
            series INTEGER NOT NULL,
            slot INTEGER NOT NULL,
            ts REAL NOT NULL,
            value NOT NULL,
            PRIMARY KEY (series, slot)
        ) WITHOUT ROWID;
        """,
    )


MIGRATIONS.append(m002_metric_history)


def m003_scripts(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        -- The JSON a generic script printed for -c, re-used while the file keeps its size and mtime. Keyed by the
        -- arguments too: the same file run with other arguments may declare other metrics.
        CREATE TABLE script_configs (
            path TEXT NOT NULL,
            argv TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            config TEXT NOT NULL,
            fetched REAL NOT NULL,
            PRIMARY KEY (path, argv)
        );

        -- Per script monitor, what its last run said: shown by status so a failing script is never silent.
        CREATE TABLE scripts (
            monitor TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            path TEXT NOT NULL,
            period REAL,
            last_run REAL NOT NULL,
            last_step TEXT NOT NULL,
            last_exit INTEGER,
            killed INTEGER NOT NULL DEFAULT 0,
            stderr_tail TEXT NOT NULL DEFAULT '',
            bad_lines INTEGER NOT NULL DEFAULT 0,
            bad_lines_total INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );
        """,
    )


MIGRATIONS.append(m003_scripts)


def m004_plugin_kv(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        -- Python plugins: per plugin (monitor id) a key/value store with expiry (space 'kv'), and the previous
        -- counter samples of rate transforms (space 'rate'). value is a string, or a JSON array for a set.
        CREATE TABLE plugin_kv (
            plugin TEXT NOT NULL,
            space TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            expires REAL,
            is_set INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (plugin, space, key)
        ) WITHOUT ROWID;
        CREATE INDEX plugin_kv_expires ON plugin_kv (plugin, expires) WHERE expires IS NOT NULL;
        """,
    )


MIGRATIONS.append(m004_plugin_kv)


def m005_journal(conn: sqlite3.Connection) -> None:
    """The queue becomes a journal read by every sink through its own cursor.

    A sink's cursor is the highest sequence number it is done with (delivered, discarded by its receiver, or
    not routed to it). Until now that lived in ``meta`` as ``upload.<sink>.acked_sn`` for the one sink, and a
    batch left the queue when that sink confirmed it, so everything still queued is undelivered (but for the
    part of a split batch the cursor already covers): moving the value over keeps nothing re-sent and nothing
    lost. Batches are read in sequence-number order, hence the index.
    """
    _script(
        conn,
        """
        ALTER TABLE upload_state ADD COLUMN acked_sn INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE upload_state ADD COLUMN events_dropped INTEGER NOT NULL DEFAULT 0;
        -- Each sink's own sequence stream (Scalyr's si, the file sink's dedup key): a receiver drops an event
        -- whose sn is not above the highest it accepted in that stream, so two sinks with cursors of their own
        -- must not share one. The sink that was delivering until now keeps the state file's session id.
        ALTER TABLE upload_state ADD COLUMN stream TEXT;
        CREATE INDEX queue_sn ON queue (sn);
        INSERT OR IGNORE INTO upload_state (sink)
            SELECT substr(key, 8, length(key) - 16) FROM meta WHERE key LIKE 'upload.%.acked_sn';
        UPDATE upload_state SET acked_sn = (
            SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'upload.' || upload_state.sink || '.acked_sn'
        ) WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'upload.' || upload_state.sink || '.acked_sn');
        UPDATE upload_state SET stream = (SELECT value FROM meta WHERE key = 'session')
            WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'upload.' || upload_state.sink || '.acked_sn');
        DELETE FROM meta WHERE key LIKE 'upload.%.acked_sn';
        """,
    )


MIGRATIONS.append(m005_journal)
