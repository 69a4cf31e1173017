"""Monitors that go wrong in the ways a run must survive. Which one runs is chosen by the ``mode`` option (one
module, one ScalyrMonitor subclass, as the agent expects)."""

import time

from scalyr_agent import ScalyrMonitor, define_config_option

__monitor__ = __name__

define_config_option(__monitor__, "mode", "What goes wrong.", required_option=True, convert_to=str)


class FaultyMonitor(ScalyrMonitor):
    def _initialize(self):
        self.__mode = self._config.get("mode")
        self.__stopped = False

    def gather_sample(self):
        mode = self.__mode
        self._logger.emit_value("faulty.before", 1)
        if mode == "hang":
            time.sleep(30)
        if mode == "raise":
            raise RuntimeError("the sensor is unplugged")
        if mode == "bad_value":
            self._logger.emit_value("faulty.list", [1, 2])
        if mode == "odd_values":
            self._logger.emit_value("faulty.nan", float("nan"))
            self._logger.emit_value("9 bad name!", 3, extra_fields={"bad key": "x", "ok": True})
            self._logger.emit_value("faulty.override", 4, monitor_id_override="other-instance")
            self._logger.emit_value("faulty.huge", 2**64 - 1)
            self._logger.info("checked %d sensors", 3, emit_to_metric_log=True)
        if mode == "log_error":
            self._logger.error("sensor %s answered garbage", "t1", error_code="badSensor")
            self._logger.warning("careful")
        if mode == "leak":
            password = self._config.get("password")
            self._logger.warning("logging in as admin with %s", password)
            raise RuntimeError("login refused for password " + password)
        if mode == "exception":
            try:
                {}["missing"]
            except KeyError:
                self._logger.exception("lookup failed")

    def stop(self, wait_on_join=True, join_timeout=5):
        # Proof that shipctl lets the monitor clean up: a file written on stop.
        if self.__mode == "leak_on_stop":
            raise RuntimeError("could not log out with password " + self._config.get("password"))
        path = self._config.get("stop_marker")
        if path:
            with open(path, "w") as fh:
                fh.write("stopped")
        ScalyrMonitor.stop(self, wait_on_join=wait_on_join, join_timeout=join_timeout)
