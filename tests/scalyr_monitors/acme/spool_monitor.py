# ruff: noqa: UP031 - written in the agent's own style (% formatting), as its monitors are
"""Reports what waits in an application's spool directory, the application's own counters and the host load.

Configuration (agent.json)::

    monitors: [{
        module: "acme.spool_monitor",
        spool_dir: "/var/spool/acme",
        states: "pending, failed",
        stats_file: "/var/run/acme/stats"
    }]
"""

import fnmatch
import os

import scalyr_agent.scalyr_logging as scalyr_logging
from scalyr_agent import BadMonitorConfiguration, ScalyrMonitor, define_config_option, define_log_field, define_metric
from scalyr_agent.json_lib.objects import ArrayOfStrings

global_log = scalyr_logging.getLogger(__name__)

__monitor__ = __name__

define_config_option(__monitor__, "module", "Always ``acme.spool_monitor``", required_option=True)
define_config_option(__monitor__, "spool_dir", "The spool directory, absolute.", required_option=True, convert_to=str)
define_config_option(__monitor__, "pattern", "Glob of the files counted.", default="*", convert_to=str)
define_config_option(__monitor__, "states", "Sub-directories, one per state.", default="pending, failed")
define_config_option(__monitor__, "stats_file", "Counters the application writes, one 'key value' a line.")
define_config_option(
    __monitor__,
    "max_files",
    "Files counted at most per state.",
    default=10000,
    convert_to=int,
    min_value=1,
    max_value=1000000,
)
define_config_option(
    __monitor__, "environment", "Reported as the env field.", default="prod", convert_to=str, env_name="ACME_SPOOL_ENV"
)

define_metric(__monitor__, "acme.spool.files", "Files waiting.", extra_fields={"state": ""})
define_metric(__monitor__, "acme.spool.bytes", "Bytes waiting.", extra_fields={"state": ""}, unit="bytes")
define_metric(__monitor__, "acme.app.requests", "Requests served since the application started.", cumulative=True)
define_metric(__monitor__, "acme.app.version", "The application's version.")
define_metric(__monitor__, "acme.host.load1", "Load average over a minute.")
define_log_field(__monitor__, "state", "The spool state directory.")


class AcmeSpoolMonitor(ScalyrMonitor):
    """Spool and application metrics for Acme."""

    def _initialize(self):
        self.__dir = self._config.get("spool_dir", required_field=True, convert_to=str)
        if not os.path.isabs(self.__dir):
            raise BadMonitorConfiguration("spool_dir must be an absolute path, got %s" % self.__dir, "spool_dir")
        self.__pattern = self._config.get("pattern")
        self.__states = self._config.get("states", convert_to=ArrayOfStrings)
        self.__stats_file = self._config.get("stats_file", convert_to=str)
        self.__max_files = self._config.get("max_files")
        self.__env = self._config.get("environment")

    def gather_sample(self):
        for state in self.__states:
            path = os.path.join(self.__dir, state)
            if not os.path.isdir(path):
                self._logger.warn(
                    "spool state directory %s is missing" % path,
                    limit_once_per_x_secs=300,
                    limit_key="missing-%s" % state,
                )
                continue
            count = size = 0
            for name in sorted(os.listdir(path))[: self.__max_files]:
                if fnmatch.fnmatch(name, self.__pattern):
                    count += 1
                    size += os.path.getsize(os.path.join(path, name))
            fields = {"state": state, "env": self.__env}
            self._logger.emit_value("acme.spool.files", count, extra_fields=fields)
            self._logger.emit_value("acme.spool.bytes", size, extra_fields=fields)

        if self.__stats_file:
            with open(self.__stats_file) as fh:
                for line in fh:
                    key, _, value = line.strip().partition(" ")
                    if key == "requests":
                        self._logger.emit_value("acme.app.requests", int(value))
                    elif key == "version":
                        self._logger.emit_value("acme.app.version", value)
                    elif key:
                        global_log.info("ignoring unknown stats key %s", key)

        with open("/proc/loadavg") as fh:
            self._logger.emit_value("acme.host.load1", float(fh.read().split()[0]))
