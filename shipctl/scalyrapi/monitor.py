"""``ScalyrMonitor`` and the agent's declarations (``define_config_option``, ``define_metric``,
``define_log_field``), as third-party monitors use them.

shipctl builds the monitor as the agent does, ``cls(monitor_config, logger, global_config=None)`` — which reads
``sample_interval`` and the declared options and calls ``_initialize()`` — then calls ``gather_sample()`` once
per run, and ``stop(wait_on_join=False)`` after it so a monitor can release what it opened. The thread
machinery (``run``, ``StoppableThread``, ``RunState``) works as in the agent for monitors that use it inside
``gather_sample``; a monitor that only overrides ``run()`` (a long-running server) has no sample to take and is
reported as such.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from shipctl.scalyrapi.config import BadMonitorConfiguration, MonitorConfig


class UnsupportedSystem(Exception):
    """Raised by a monitor (usually at import) that cannot run on this system."""

    def __init__(self, monitor_name: str, message: str) -> None:
        super().__init__(message)
        self.monitor_name = monitor_name


class RunState:
    """Whether something should keep running; sleeps that end early when it is stopped."""

    def __init__(self, fake_clock: Any = None) -> None:
        self._stopped = threading.Event()
        self._callbacks: list[Callable[[], Any]] = []
        self._lock = threading.Lock()

    def is_running(self) -> bool:
        return not self._stopped.is_set()

    def sleep_but_awaken_if_stopped(self, timeout: float) -> bool:
        """True when stopped (now or during the sleep)."""
        return self._stopped.wait(max(0.0, float(timeout)))

    def stop(self) -> None:
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()

    def register_on_stop_callback(self, callback: Callable[[], Any]) -> None:
        with self._lock:
            if not self._stopped.is_set():
                self._callbacks.append(callback)
                return
        callback()


class StoppableThread(threading.Thread):
    """A thread with a ``RunState``; ``target`` (if given) is called with it."""

    def __init__(
        self,
        name: str | None = None,
        target: Callable[[RunState], Any] | None = None,
        fake_clock: Any = None,
        is_daemon: bool = False,
    ) -> None:
        threading.Thread.__init__(self, name=name, daemon=True)  # never keeps shipctl alive at exit
        self._run_state = RunState()
        self.__target = target

    def run(self) -> None:
        if self.__target is not None:
            self.__target(self._run_state)

    def stop(self, wait_on_join: bool = True, join_timeout: float = 5) -> None:
        self._run_state.stop()
        if wait_on_join and self.is_alive():
            self.join(join_timeout)


class ConfigOption:
    def __init__(self) -> None:
        self.option_name: str = ""
        self.description: str = ""
        self.required_option = False
        self.max_value: Any = None
        self.min_value: Any = None
        self.convert_to: type | None = None
        self.default: Any = None
        self.env_aware = False
        self.env_name: str | None = None


class MetricDescription:
    def __init__(self) -> None:
        self.metric_name: str = ""
        self.description: str = ""
        self.extra_fields: dict[str, Any] | None = None
        self.unit: str | None = None
        self.cumulative = False
        self.category: str | None = None


class LogFieldDescription:
    def __init__(self) -> None:
        self.field: str = ""
        self.description: str = ""


class MonitorInformation:
    """What a monitor module declared: options (checked when a monitor is built), metrics (``cumulative``
    ones are counters here), log fields."""

    __monitor_info__: dict[str, MonitorInformation] = {}
    _lock = threading.Lock()

    def __init__(self, monitor_module: str) -> None:
        self.monitor_module = monitor_module
        self.description: str | None = None
        self._options: dict[str, ConfigOption] = {}
        self._metrics: dict[str, MetricDescription] = {}
        self._log_fields: dict[str, LogFieldDescription] = {}

    @property
    def config_options(self) -> list[ConfigOption]:
        return list(self._options.values())

    @property
    def metrics(self) -> list[MetricDescription]:
        return list(self._metrics.values())

    @property
    def log_fields(self) -> list[LogFieldDescription]:
        return list(self._log_fields.values())

    def is_cumulative(self, metric_name: str) -> bool:
        return any(m.cumulative for m in self._metrics.values() if m.metric_name == metric_name)

    @staticmethod
    def set_monitor_info(
        monitor_module: str,
        description: str | None = None,
        option: ConfigOption | None = None,
        metric: MetricDescription | None = None,
        log_field: LogFieldDescription | None = None,
    ) -> None:
        with MonitorInformation._lock:
            info = MonitorInformation.__monitor_info__.get(monitor_module)
            if info is None:
                info = MonitorInformation.__monitor_info__[monitor_module] = MonitorInformation(monitor_module)
            if description is not None:
                info.description = description
            if option is not None:
                info._options[option.option_name] = option
            if metric is not None:
                key = metric.metric_name + (str(metric.extra_fields) if metric.extra_fields is not None else "")
                info._metrics[key] = metric
            if log_field is not None:
                info._log_fields[log_field.field] = log_field

    @staticmethod
    def get_monitor_info(monitor_module: str) -> MonitorInformation | None:
        return MonitorInformation.__monitor_info__.get(monitor_module)


def define_config_option(
    monitor_module: str,
    option_name: str,
    option_description: str,
    required_option: bool = False,
    max_value: Any = None,
    min_value: Any = None,
    convert_to: type | None = None,
    default: Any = None,
    env_aware: bool = False,
    env_name: str | None = None,
) -> None:
    option = ConfigOption()
    option.option_name = option_name
    option.description = option_description
    option.required_option = required_option
    option.max_value = max_value
    option.min_value = min_value
    option.convert_to = convert_to
    option.default = default
    option.env_aware = env_aware
    option.env_name = env_name
    MonitorInformation.set_monitor_info(monitor_module, option=option)


def define_metric(
    monitor_module: str,
    metric_name: str,
    description: str,
    extra_fields: dict[str, Any] | None = None,
    unit: str | None = None,
    cumulative: bool = False,
    category: str | None = None,
) -> None:
    info = MetricDescription()
    info.metric_name = metric_name
    info.description = description
    info.extra_fields = extra_fields
    info.unit = unit
    info.cumulative = cumulative
    info.category = category
    MonitorInformation.set_monitor_info(monitor_module, metric=info)


def define_log_field(monitor_module: str, field_name: str, field_description: str) -> None:
    log_field = LogFieldDescription()
    log_field.field = field_name
    log_field.description = field_description
    MonitorInformation.set_monitor_info(monitor_module, log_field=log_field)


class ScalyrMonitor(StoppableThread):
    """Base class of Scalyr agent monitors. Subclasses implement ``_initialize`` (read and check options) and
    ``gather_sample`` (report values with ``self._logger.emit_value``)."""

    DEFAULT_SAMPLE_INTERVAL_SECS = 30.0

    def __init__(
        self,
        monitor_config: Any,
        logger: Any,
        sample_interval_secs: float | None = None,
        global_config: Any = None,
    ) -> None:
        self._logger = logger
        self.monitor_name = monitor_config["module"]
        self._global_config = global_config
        self._config = MonitorConfig(monitor_config, monitor_module=self.monitor_name)
        self.log_config: dict[str, Any] = {"path": self.monitor_name.split(".")[-1] + ".log"}
        self.disabled = False
        component = getattr(logger, "component", "")
        self.monitor_name = component[8:] if component.startswith("monitor:") else component or self.monitor_name
        self.__lock = threading.Lock()
        self.__reported_lines = 0
        self.__errors = 0
        if sample_interval_secs is not None:
            self._sample_interval_secs = sample_interval_secs
        else:
            self._sample_interval_secs = self._config.get(
                "sample_interval", convert_to=float, default=ScalyrMonitor.DEFAULT_SAMPLE_INTERVAL_SECS
            )
        self._log_write_rate = self._config.get("monitor_log_write_rate", convert_to=int, default=2000)
        self._log_max_write_burst = self._config.get("monitor_log_max_write_burst", convert_to=int, default=100000)
        self._log_flush_delay = self._config.get("monitor_log_flush_delay", convert_to=float, default=0.0, min_value=0)
        self._metric_name_blacklist: list[str] = list(getattr(global_config, "metric_name_blacklist", None) or [])
        self._adjust_sleep_by_gather_time = False
        self._initialize()
        StoppableThread.__init__(self, name="metric thread")

    def _initialize(self) -> None:
        """Overridden to read and check options; raise BadMonitorConfiguration for a bad one."""

    @property
    def module_name(self) -> str:
        return str(self._config["module"])

    def reported_lines(self) -> int:
        with self.__lock:
            return self.__reported_lines

    def errors(self) -> int:
        with self.__lock:
            return self.__errors

    def increment_counter(self, reported_lines: int = 0, errors: int = 0) -> None:
        with self.__lock:
            self.__reported_lines += reported_lines
            self.__errors += errors

    def config_from_monitors(self, manager: Any) -> None:
        return None

    def gather_sample(self) -> None:
        """Overridden to report one sample of every metric with ``self._logger.emit_value``."""

    def run(self) -> None:
        """The agent's loop (gather_sample every interval until stopped), for a monitor started as a thread."""
        while not self._is_thread_stopped():
            started = time.monotonic()
            try:
                self.gather_sample()
            except Exception:
                self._logger.exception("Failed to gather sample due to the following exception")
                self.increment_counter(errors=1)
            took = min(time.monotonic() - started, self._sample_interval_secs)
            adjust = took if self._adjust_sleep_by_gather_time else 0.0
            self._sleep_but_awaken_if_stopped(self._sample_interval_secs - adjust)

    def get_extra_server_attributes(self) -> dict[str, Any] | None:
        return None

    def get_user_agent_fragment(self) -> str | None:
        return None

    def set_sample_interval(self, secs: float) -> None:
        self._sample_interval_secs = secs

    def set_log_watcher(self, log_watcher: Any) -> None:
        return None

    def open_metric_log(self) -> bool:
        return True

    def close_metric_log(self) -> None:
        return None

    def _is_thread_stopped(self) -> bool:
        return not self._run_state.is_running()

    def _sleep_but_awaken_if_stopped(self, time_to_sleep: float) -> bool:
        return self._run_state.sleep_but_awaken_if_stopped(time_to_sleep)


__all__ = [
    "BadMonitorConfiguration",
    "ConfigOption",
    "LogFieldDescription",
    "MetricDescription",
    "MonitorConfig",
    "MonitorInformation",
    "RunState",
    "ScalyrMonitor",
    "StoppableThread",
    "UnsupportedSystem",
    "define_config_option",
    "define_log_field",
    "define_metric",
]
