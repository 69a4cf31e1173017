"""``scalyr_agent.scalyr_monitor``: the monitor base class and declarations (shipctl/scalyrapi/monitor.py).
Re-exported whole, so the names a monitor may import are listed once, in that module's ``__all__``."""

from shipctl.scalyrapi.monitor import *  # noqa: F403
from shipctl.scalyrapi.monitor import __all__ as __all__
