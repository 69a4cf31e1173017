"""A monitor that refuses to load where it cannot work."""

from scalyr_agent import ScalyrMonitor, UnsupportedSystem

raise UnsupportedSystem("windows_only_monitor", "needs the Windows event log")


class WindowsOnlyMonitor(ScalyrMonitor):  # never reached
    pass
