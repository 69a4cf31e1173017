"""``scalyr_agent.scalyr_monitor``: the monitor base class and declarations (shipctl/scalyrapi/monitor.py)."""

from shipctl.scalyrapi.config import BadMonitorConfiguration, MonitorConfig
from shipctl.scalyrapi.monitor import (
    ConfigOption,
    LogFieldDescription,
    MetricDescription,
    MonitorInformation,
    ScalyrMonitor,
    UnsupportedSystem,
    define_config_option,
    define_log_field,
    define_metric,
)

__all__ = [
    "BadMonitorConfiguration",
    "ConfigOption",
    "LogFieldDescription",
    "MetricDescription",
    "MonitorConfig",
    "MonitorInformation",
    "ScalyrMonitor",
    "UnsupportedSystem",
    "define_config_option",
    "define_log_field",
    "define_metric",
]
