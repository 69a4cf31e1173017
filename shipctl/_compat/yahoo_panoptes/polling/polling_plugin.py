"""The base class of Panoptes polling plugins: shipctl runs any subclass, a new instance per run."""

from __future__ import annotations

import abc
from typing import Any

from yahoo_panoptes.framework.exceptions import PanoptesBaseException
from yahoo_panoptes.framework.plugins.panoptes_base_plugin import (
    PanoptesBasePlugin,
    PanoptesPluginConfigurationError,
)


class PanoptesPollingPluginError(PanoptesBaseException):
    pass


class PanoptesPollingPluginConfigurationError(PanoptesPluginConfigurationError):
    pass


class PanoptesPollingPlugin(PanoptesBasePlugin, metaclass=abc.ABCMeta):
    @abc.abstractmethod
    def run(self, context: Any) -> Any:
        """Return a PanoptesMetricsGroupSet for ``context.data`` (the resource)."""
