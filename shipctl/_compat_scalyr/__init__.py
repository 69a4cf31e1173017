"""Not imported as ``shipctl._compat_scalyr``: this directory is put on ``sys.path`` when a Scalyr agent monitor is
loaded (``type = "scalyr_monitor"``) and no real ``scalyr_agent`` package is importable, so that the monitor's
``scalyr_agent.*`` imports resolve to the small package here, which maps them onto shipctl/scalyrapi.
"""
