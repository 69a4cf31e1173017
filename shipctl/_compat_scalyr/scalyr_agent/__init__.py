"""shipctl's stand-in for the Scalyr agent's monitor plugin API (``from scalyr_agent import ScalyrMonitor, ...``).
Only on ``sys.path`` while shipctl runs Scalyr monitors, and only when the real package is absent."""

from scalyr_agent import json_lib, monitor_utils
from scalyr_agent.scalyr_logging import (
    DEBUG_LEVEL_0,
    DEBUG_LEVEL_1,
    DEBUG_LEVEL_2,
    DEBUG_LEVEL_3,
    DEBUG_LEVEL_4,
    DEBUG_LEVEL_5,
    AgentLogger,
    AutoFlushingRotatingFileHandler,
    getLogger,
)
from scalyr_agent.scalyr_monitor import (
    BadMonitorConfiguration,
    MonitorConfig,
    ScalyrMonitor,
    UnsupportedSystem,
    define_config_option,
    define_log_field,
    define_metric,
)
from scalyr_agent.util import RunState, StoppableThread

SHIPCTL_COMPAT = True

__all__ = [
    "DEBUG_LEVEL_0",
    "DEBUG_LEVEL_1",
    "DEBUG_LEVEL_2",
    "DEBUG_LEVEL_3",
    "DEBUG_LEVEL_4",
    "DEBUG_LEVEL_5",
    "AgentLogger",
    "AutoFlushingRotatingFileHandler",
    "BadMonitorConfiguration",
    "MonitorConfig",
    "RunState",
    "ScalyrMonitor",
    "StoppableThread",
    "UnsupportedSystem",
    "define_config_option",
    "define_log_field",
    "define_metric",
    "getLogger",
    "json_lib",
    "monitor_utils",
]
