"""Counts the lines appended to log files since the previous sample, keeping its place in a checkpoint file (the
agent's own file monitors do the same, so a restart does not count a file twice). Uses the agent's utility
modules: ``scalyr_agent.util`` for the JSON checkpoint and the glob, ``scalyr_agent.compat`` for the
environment."""

import os

from scalyr_agent import ScalyrMonitor, compat, define_config_option, define_metric
from scalyr_agent import util as scalyr_util

__monitor__ = __name__

define_config_option(__monitor__, "paths", "Glob of the files to follow.", required_option=True, convert_to=str)
define_config_option(__monitor__, "checkpoint", "Where the monitor keeps its place.", required_option=True)
define_metric(__monitor__, "growth.lines", "Lines appended since the previous sample.", extra_fields={"file": ""})
define_metric(__monitor__, "growth.total_lines", "Lines counted so far.", cumulative=True)


class GrowthMonitor(ScalyrMonitor):
    def _initialize(self):
        self.__glob = self._config.get("paths")
        self.__checkpoint = self._config.get("checkpoint")
        self.__host = compat.os_getenv_unicode("GROWTH_HOST", "unknown")

    def gather_sample(self):
        try:
            state = scalyr_util.read_file_as_json(self.__checkpoint)
        except (OSError, ValueError):
            state = {"offsets": {}, "total": 0}
        for path in sorted(scalyr_util.match_glob(self.__glob)):
            offset = state["offsets"].get(path, 0)
            if os.path.getsize(path) < offset:
                offset = 0  # truncated: start over
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            lines = data.count(b"\n")
            state["offsets"][path] = offset + len(data)
            state["total"] += lines
            self._logger.emit_value(
                "growth.lines", lines, extra_fields={"file": os.path.basename(path), "host": self.__host}
            )
        self._logger.emit_value("growth.total_lines", state["total"])
        scalyr_util.atomic_write_dict_as_json_file(self.__checkpoint, self.__checkpoint + ".tmp", state)
