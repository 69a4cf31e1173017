"""The Scalyr agent's monitor plugin API, so monitors written for the agent run unmodified under shipctl.

A third-party Scalyr monitor is a module with a ``ScalyrMonitor`` subclass implementing ``_initialize`` and
``gather_sample``; it reads its options through ``self._config.get(...)``, reports values with
``self._logger.emit_value(name, value, extra_fields={...})`` and problems with ``self._logger.warn/error``.
shipctl's ``scalyr_monitor`` monitor type (shipctl/monitors/scalyr_plugin.py) imports such a module, builds the
monitor with the configured options, calls ``gather_sample()`` once per run and turns what it emitted into
typed metric events.

The code lives here; ``shipctl/_compat_scalyr/scalyr_agent`` maps the agent's import paths
(``from scalyr_agent import ScalyrMonitor``, ``import scalyr_agent.scalyr_logging``, ...) onto it, and is put on
``sys.path`` only while such a monitor is loaded and only when no real ``scalyr_agent`` package is importable.

- logger.py: ``AgentLogger`` (``emit_value``, the agent's log methods and their ``limit_once_per_x_secs``,
  ``error_code`` arguments), ``getLogger``, and the per-run capture of what a monitor reports.
- config.py: ``MonitorConfig`` with the agent's ``get(field, required_field, max_value, min_value, convert_to,
  default)`` rules (type conversions, ``SCALYR_<FIELD>`` environment fallback), ``BadMonitorConfiguration``,
  and the json_lib container types.
- monitor.py: ``ScalyrMonitor``, ``define_config_option``, ``define_metric``, ``define_log_field``,
  ``MonitorInformation``, ``UnsupportedSystem``, ``StoppableThread``, ``RunState``.
"""
