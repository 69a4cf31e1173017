"""``[agent] plugins_dir``: every ``.panoptes-plugin`` descriptor under it runs, as in Panoptes, without a
``[[monitors]]`` entry of its own.

Each descriptor becomes a ``type = "plugin"`` monitor against this host (a ``[[monitors]]`` entry naming the
descriptor takes it over, with resources, output and the rest of its options). Its id is ``panoptes:`` plus the
descriptor's path below the directory without the suffix (``panoptes:net/interface``): stable across runs and
hosts, unique within the directory, and what status, the metric history and the plugin's key/value store are
keyed by. A broken descriptor is still listed: it fails alone when it runs (named on stderr and in status,
exit 65) while the others run; ``check-config`` warns about it.
"""

from __future__ import annotations

import os
import types
from dataclasses import field
from pathlib import Path

from shipctl.config import Config, MonitorConfig
from shipctl.errors import ConfigError, MonitorSetupError
from shipctl.records import record
from shipctl.schema import Where

SUFFIX = ".panoptes-plugin"
ID_PREFIX = "panoptes:"
WHERE = "agent.plugins_dir"  # the key path of every monitor found here (= spec.FOUND_IN_PLUGINS_DIR)
MAX_ENTRIES = 20_000  # directory entries one scan looks at: a plugins directory holds tens
DEFAULT_INTERVAL = 60.0  # only the schedule of a broken descriptor's report: a good one has its execute_frequency


@record
class Found:
    """The monitors found in ``agent.plugins_dir``, and the problems met there."""

    monitors: list[MonitorConfig] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # broken descriptors, ids taken, an unreadable directory


def descriptors(directory: str) -> tuple[list[Path], str | None]:
    """The descriptors below ``directory`` (hidden names skipped, links to directories not followed), sorted
    by path; and why the walk stopped short, if it did."""
    out: list[Path] = []
    seen = 0
    if not os.path.isdir(directory):
        return [], f"{directory}: not a directory" if os.path.exists(directory) else f"{directory}: not found"
    for top, dirs, files in os.walk(directory, onerror=None):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        seen += len(dirs) + len(files)
        if seen > MAX_ENTRIES:
            return sorted(out), f"{directory}: more than {MAX_ENTRIES} entries; the rest was not looked at"
        out += [Path(top) / f for f in files if f.endswith(SUFFIX) and not f.startswith(".")]
    return sorted(out), None


def plugin_id(directory: str, descriptor: Path) -> str:
    return ID_PREFIX + descriptor.relative_to(directory).as_posix().removesuffix(SUFFIX)


def scan(config: Config) -> Found:
    found = Found()
    directory = config.agent.plugins_dir
    if not directory:
        return found
    paths, stopped = descriptors(directory)
    if stopped:
        found.problems.append(f"{config.file}: {WHERE}: {stopped}")
    taken = {m.id for m in config.monitors}
    configured = {
        os.path.realpath(Path(m.where.file).parent / str(m.options["descriptor"]))
        for m in config.monitors
        if m.type == "plugin" and isinstance(m.options.get("descriptor"), str)
    }
    for path in paths:
        if os.path.realpath(path) in configured:
            continue  # a [[monitors]] entry runs this one, with its own options
        mid = plugin_id(directory, path)
        if mid in taken:
            found.problems.append(f"{path}: not run from {WHERE}: a [[monitors]] entry already has the id {mid!r}")
            continue
        where = Where(config.file, WHERE)
        options = types.MappingProxyType({"descriptor": str(path)})
        found.monitors.append(MonitorConfig("plugin", mid, DEFAULT_INTERVAL, options, where))
    return found


def check(config: Config) -> Found:
    """``scan``, with every descriptor read: what check-config warns about."""
    from shipctl.pyplugins.spec import read_descriptor

    found = scan(config)
    for mon in found.monitors:
        path = Path(str(mon.options["descriptor"]))
        try:
            read_descriptor(path, Where(str(path)))
        except (ConfigError, MonitorSetupError) as exc:
            found.problems.append(f"{mon.id}: {exc} (the other plugins run)")
    return found
