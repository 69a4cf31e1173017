"""A python plugin that packaging/roundtrip.sh runs inside the installed, frozen shipctl: it imports every
shipctl module (the built-ins are registered as "module:attr" strings, invisible to PyInstaller's import
analysis), the standard-library modules plugins commonly use, and the Panoptes and Scalyr compatibility
packages, and reports which optional extras are in the bundle. An import that fails makes the monitor fail (exit 65).

    shipctl run-monitor plugin --opt module=packaging/probe_plugin.py --print
"""

from __future__ import annotations

import importlib
import pkgutil

import shipctl
from shipctl import plugins
from shipctl.pyplugins import MetricsGroup, PluginContext

STDLIB = (
    "ssl",
    "sqlite3",
    "ctypes",
    "lzma",
    "bz2",
    "zlib",
    "gzip",
    "email.mime.text",
    "xml.etree.ElementTree",
    "http.client",
    "urllib.request",
    "json",
    "csv",
    "decimal",
    "zoneinfo",
    "socket",
    "ipaddress",
    "uuid",
    "hashlib",
    "hmac",
    "secrets",
    "smtplib",
    "imaplib",
    "ftplib",
    "xmlrpc.client",
    "concurrent.futures",
    "asyncio",
    "multiprocessing",
    "statistics",
    "fractions",
    "tarfile",
    "zipfile",
    "configparser",
    "argparse",
    "logging.handlers",
    "platform",
    "pwd",
    "grp",
    "resource",
    "fcntl",
    "mmap",
    "select",
    "selectors",
    "shlex",
    "subprocess",
    "tempfile",
    "glob",
    "fnmatch",
    "difflib",
    "textwrap",
    "unicodedata",
    "readline",
    "curses",
    "dbm",
    "shelve",
    "pickle",
    "copy",
    "pprint",
    "dataclasses",
    "typing",
    "tomllib",
)
EXTRAS = {
    "prometheus": "cramjam",
    "otlp": "google.protobuf",
    "re2": "re2",
    "kafka": "confluent_kafka",
    "mysql": "pymysql",
}


def poll(ctx: PluginContext) -> list[MetricsGroup]:
    names = {m.name for m in pkgutil.walk_packages(shipctl.__path__, "shipctl.")}
    reg = plugins.registry()
    for kind in (*reg.monitors.values(), *reg.sinks.values()):
        names |= {kind.options.partition(":")[0], kind.factory.partition(":")[0]}
    failed = []
    for name in sorted(names | set(STDLIB)):
        if name.startswith("shipctl._compat") or name.endswith("__main__"):
            continue  # _compat: a directory put on sys.path (below); __main__ would run the CLI
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    from shipctl.monitors.scalyr_plugin import enable_scalyr_compat
    from shipctl.pyplugins.loader import enable_panoptes_compat

    for enable, module in (
        (enable_panoptes_compat, "yahoo_panoptes.polling.polling_plugin"),
        (enable_scalyr_compat, "scalyr_agent.scalyr_monitor"),
    ):
        enable()
        try:
            importlib.import_module(module)
        except Exception as exc:
            failed.append(f"{module} ({type(exc).__name__}: {exc})")
    if failed:
        raise RuntimeError("not importable in this shipctl: " + "; ".join(failed))
    group = MetricsGroup("bundle", dimensions={"probe": "imports"})
    group.gauge("shipctl_modules", len([n for n in names if n.startswith("shipctl")]))
    for extra, module in EXTRAS.items():
        try:
            importlib.import_module(module)
            group.gauge(f"extra_{extra}", 1)
        except ImportError:
            group.gauge(f"extra_{extra}", 0)
    return [group]
