"""shipctl's stand-in for the Scalyr agent's monitor plugin API (``from scalyr_agent import ScalyrMonitor, ...``).
Only on ``sys.path`` while shipctl runs Scalyr monitors, and only when the real package is absent.

The package exports what its modules export (each lists its names once, in its ``__all__``), as the agent's
own ``scalyr_agent/__init__.py`` makes the monitor API importable from the top."""

from scalyr_agent import json_lib, monitor_utils, scalyr_logging, scalyr_monitor  # noqa: F401 (in __all__)
from scalyr_agent.scalyr_logging import *  # noqa: F403
from scalyr_agent.scalyr_monitor import *  # noqa: F403

SHIPCTL_COMPAT = True

__all__ = sorted({*scalyr_logging.__all__, *scalyr_monitor.__all__, "json_lib", "monitor_utils"})
