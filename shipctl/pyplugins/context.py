"""What a plugin gets when it runs: its config, a logger, the resource it polls, a key/value store persisted in
the state file, and its secrets. The same object is Panoptes' ``PanoptesPluginContext`` (``config``,
``logger``, ``data``, ``kv``, ``secrets``), so plugins written for either API read it the same way.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shipctl.pyplugins.resources import Resource
from shipctl.state import kv as kvsql

PANOPTES_EXPIRE = 604800  # Panoptes' default for set() and getset(): one week


class _Default:
    def __repr__(self) -> str:
        return "<store default>"


DEFAULT: Any = _Default()


class Snapshot:
    """A plugin's key/value rows: read from the state file before its run (main thread), shared by the threads
    running its resources, and the changed keys written back in the transaction that queues the run's events —
    so state and events commit together, and ``--print`` (which queues nothing) changes nothing."""

    def __init__(self, rows: dict[tuple[str, str], kvsql.Entry] | None = None) -> None:
        self.rows: dict[tuple[str, str], kvsql.Entry] = dict(rows or {})
        self.changed: set[tuple[str, str]] = set()
        self.lock = threading.RLock()

    def get(self, space: str, key: str, now: float) -> kvsql.Entry | None:
        with self.lock:
            e = self.rows.get((space, key))
        return e if e is not None and (e.expires is None or e.expires > now) else None

    def put(self, space: str, key: str, entry: kvsql.Entry | None) -> None:
        with self.lock:
            if entry is None:
                self.rows.pop((space, key), None)
            else:
                self.rows[(space, key)] = entry
            self.changed.add((space, key))

    def keys(self, space: str, now: float) -> list[str]:
        with self.lock:
            return [k for (s, k), e in self.rows.items() if s == space and (e.expires is None or e.expires > now)]

    def save(self, conn: sqlite3.Connection, plugin: str, now: float) -> None:
        with self.lock:
            for space, key in sorted(self.changed):
                e = self.rows.get((space, key))
                if e is None:
                    kvsql.delete(conn, plugin, space, key)
                else:
                    kvsql.put(conn, plugin, space, key, e.value, e.expires, e.is_set)
            self.changed.clear()
        kvsql.purge(conn, plugin, now)


class KeyValueStore:
    """Redis-like strings and sets with expiry, one namespace per plugin, kept in the state file.

    ``expire`` is in seconds; None keeps a key for good. Left out, it is the store's default: one week for a
    Panoptes plugin (as there), none for a shipctl plugin.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        plugin: str,
        clock: Callable[[], float],
        *,
        default_expire: float | None = None,
        space: str = kvsql.KV,
    ) -> None:
        self._snap = snapshot
        self._plugin = plugin
        self._clock = clock
        self._space = space
        self.default_expire = default_expire

    @property
    def namespace(self) -> str:
        return self._plugin

    # --- strings ---
    def get(self, key: str) -> str | None:
        entry = self._snap.get(self._space, _key(key), self._clock())
        if entry is None:
            return None
        if entry.is_set:
            raise TypeError(f"key {key!r} holds a set; use set_members()")
        return entry.value

    def set(self, key: str, value: str, expire: float | None = DEFAULT) -> None:
        self._snap.put(self._space, _key(key), kvsql.Entry(_value(value), self._expires(expire), False))

    def getset(self, key: str, value: str, expire: float | None = DEFAULT) -> str | None:
        with self._snap.lock:
            old = self.get(key)
            self.set(key, value, expire)
        return old

    def ttl(self, key: str) -> int:
        """Seconds left; -1 for a key without expiry, -2 for a missing key (Redis' answers)."""
        now = self._clock()
        entry = self._snap.get(self._space, _key(key), now)
        if entry is None:
            return -2
        if entry.expires is None:
            return -1
        return max(0, math.ceil(entry.expires - now))

    def find_keys(self, pattern: str | None = None) -> list[str]:
        """Keys matching a glob pattern (``*``, ``?``, ``[...]``), sorted."""
        return sorted(k for k in self._snap.keys(self._space, self._clock()) if fnmatch.fnmatchcase(k, pattern or "*"))

    def delete(self, key: str) -> int:
        with self._snap.lock:
            existed = self._snap.get(self._space, _key(key), self._clock()) is not None
            self._snap.put(self._space, key, None)
        return int(existed)

    # --- sets ---
    def set_add(self, set_name: str, member: str) -> None:
        with self._snap.lock:
            members = self.set_members(set_name)
            members.add(_value(member))
            entry = self._snap.get(self._space, set_name, self._clock())
            expires = entry.expires if entry else None
            self._snap.put(self._space, set_name, kvsql.Entry(json.dumps(sorted(members)), expires, True))

    def set_members(self, set_name: str) -> set[str]:
        entry = self._snap.get(self._space, _key(set_name), self._clock())
        if entry is None:
            return set()
        if not entry.is_set:
            raise TypeError(f"key {set_name!r} holds a string; use get()")
        return set(json.loads(entry.value))

    def _expires(self, expire: Any) -> float | None:
        if expire is DEFAULT:
            expire = self.default_expire
        if expire is None:
            return None
        if isinstance(expire, bool) or not isinstance(expire, int | float) or expire <= 0:
            raise ValueError(f"expire must be a number of seconds above 0 or None, got {expire!r}")
        return self._clock() + expire


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    return key


def _value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"value must be a string (store JSON for anything else), got {type(value).__name__}")
    return value


class Secrets(Mapping[str, str]):
    """Read-only secrets from the plugin's ``secrets`` table (values may come from imported environment
    variables). ``get_by_site`` is Panoptes' lookup: ``name:site``, then ``name:default``, then ``name``."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_by_site(self, secret_name: str, site: str, fallback_to_default: bool = True) -> str | None:
        found = self._values.get(f"{secret_name}:{site}")
        if found is None and fallback_to_default:
            found = self._values.get(f"{secret_name}:default", self._values.get(secret_name))
        return found

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)})"  # names only: a secret never reaches a log by accident


class PluginContext:
    """Handed to a plugin's ``run(context)`` (or ``poll(context)``) once per resource and run."""

    def __init__(
        self,
        *,
        monitor_id: str,
        name: str,
        config: dict[str, Any],
        logger: logging.Logger,
        resource: Resource,
        kv: KeyValueStore,
        secrets: Secrets,
        now: float,
        execute_frequency: float,
    ) -> None:
        self.monitor_id = monitor_id
        self.name = name
        self._config = config
        self._logger = logger
        self._resource = resource
        self._kv = kv
        self._secrets = secrets
        self.now = now
        self.execute_frequency = execute_frequency

    config = property(lambda self: self._config)
    logger = property(lambda self: self._logger)
    resource = property(lambda self: self._resource)
    data = property(lambda self: self._resource)  # Panoptes' name for the resource
    kv = property(lambda self: self._kv)
    secrets = property(lambda self: self._secrets)
    # Panoptes' site-wide settings; shipctl has none (a plugin reads its own config instead).
    sites = property(lambda self: set())
    snmp = property(lambda self: {})
    x509 = property(lambda self: {})

    def __repr__(self) -> str:
        return f"PluginContext({self.monitor_id!r}, resource={self._resource!r})"
