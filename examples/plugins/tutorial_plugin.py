from typing import Dict, Any
import time
from yahoo_panoptes.polling.polling_plugin import PanoptesPollingPlugin
from yahoo_panoptes.framework.metrics import PanoptesMetricsGroupSet, PanoptesMetricsGroup, \
    PanoptesMetric, PanoptesMetricType, PanoptesMetricDimension
from yahoo_panoptes.framework.plugins.context import PanoptesPluginContext
from yahoo_panoptes.framework.resources import PanoptesResource


class TutorialPollingPlugin(PanoptesPollingPlugin):
    """
    Only classes that inherit from PanoptesPollingPlugin are loaded. (Upstream Configuration Knobs Control This)
    """
    def __init__(self):
        self._plugin_context: PanoptesPluginContext = None
        self._config: Dict[str, Any] = {}
        self._panoptes_metrics_group_set: PanoptesMetricsGroupSet = PanoptesMetricsGroupSet()
        self._device: PanoptesResource = None
        self._execute_frequency: int = 60
        self._logger = None
        super(TutorialPollingPlugin, self).__init__()

    def populateMetricsGroupSetWithTimeSeries(self) -> None:
        panoptes_metrics_group = PanoptesMetricsGroup(self._device, 'example', self._execute_frequency)
        dimension = PanoptesMetricDimension('cpu_no', '5')
        panoptes_metrics_group.add_dimension(dimension)

        counter = PanoptesMetric('context_switch_count', 50, PanoptesMetricType.COUNTER)
        gauge = PanoptesMetric('cpu_load', .3, PanoptesMetricType.GAUGE)
        panoptes_metrics_group.add_metric(counter)
        panoptes_metrics_group.add_metric(gauge)

        self._panoptes_metrics_group_set.add(panoptes_metrics_group)


    def run(self, context: PanoptesPluginContext) -> PanoptesMetricsGroupSet:
        """
        (The guide's docstring about the plugin runner is left out here.)
        """
        self._plugin_context = context
        self._config = context.config
        self._logger = context.logger
        self._device = context.data
        self._execute_frequency = int(context.config['main']['execute_frequency'])

        self._logger.info("Running {} against {}".format(type(self).__name__, self._device))

        start_time = time.time()
        self.populateMetricsGroupSetWithTimeSeries()
        end_time = time.time()

        self._logger.info(
            "{} ran against device {} in {:.2f} seconds, {} metrics produced".format(
                type(self).__name__, self._device, end_time - start_time, len(self._panoptes_metrics_group_set))
        )

        for panoptes_metrics_group in self._panoptes_metrics_group_set:
            self._logger.info(panoptes_metrics_group.json)

        return self._panoptes_metrics_group_set
