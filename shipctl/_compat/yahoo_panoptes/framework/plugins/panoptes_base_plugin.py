"""Panoptes' plugin base class and errors."""

from __future__ import annotations

from typing import Any

from yahoo_panoptes.framework.exceptions import PanoptesBaseException


class PanoptesPluginConfigurationError(PanoptesBaseException):
    pass


class PanoptesPluginRuntimeError(PanoptesBaseException):
    pass


class PanoptesBasePlugin:
    def run(self, context: Any) -> Any:
        """Overridden by every plugin; the base does nothing (Panoptes raises here)."""
        return None
