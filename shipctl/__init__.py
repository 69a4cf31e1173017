"""shipctl: a daemonless log and metrics shipper."""

__version__ = "0.1.0"
