"""A module without a ScalyrMonitor subclass."""


def helper():
    return 1
