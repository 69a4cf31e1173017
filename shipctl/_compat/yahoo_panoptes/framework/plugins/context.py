"""The context a plugin's run() gets: shipctl's PluginContext has Panoptes' config, logger, data, kv, secrets."""

from __future__ import annotations

from typing import Any

from shipctl.pyplugins.context import PluginContext as PanoptesPluginContext


class PanoptesPluginContextValidators:
    @classmethod
    def valid_panoptes_plugin_context(cls, context: Any) -> bool:
        return bool(context) and isinstance(context, PanoptesPluginContext)


__all__ = ["PanoptesPluginContext", "PanoptesPluginContextValidators"]
