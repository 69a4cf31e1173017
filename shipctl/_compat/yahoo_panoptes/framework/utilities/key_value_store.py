"""Panoptes' key/value store: shipctl's, kept in the state file (get, set, getset, ttl, find_keys, delete,
set_add, set_members; set() expires after a week unless told otherwise, as in Panoptes)."""

from __future__ import annotations

from shipctl.pyplugins.context import KeyValueStore as PanoptesKeyValueStore


class PanoptesKeyValueStoreException(BaseException):  # upstream derives it from BaseException too
    pass


__all__ = ["PanoptesKeyValueStore", "PanoptesKeyValueStoreException"]
