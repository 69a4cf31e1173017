"""Panoptes' secrets store: read-only, from the plugin's ``secrets`` table (get, get_by_site)."""

from __future__ import annotations

from shipctl.pyplugins.context import Secrets as PanoptesSecretsStore

__all__ = ["PanoptesSecretsStore"]
