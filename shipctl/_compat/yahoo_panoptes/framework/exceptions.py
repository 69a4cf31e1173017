"""Panoptes' exception base."""

from __future__ import annotations


class PanoptesBaseException(Exception):
    pass
