"""A Scalyr monitor's view of its options: ``MonitorConfig`` and the agent's conversion rules.

``self._config.get(field, required_field=False, max_value=None, min_value=None, convert_to=None, default=None)``
behaves as in the agent:

- a value of another type than ``convert_to`` is converted when the agent allows it: any text to a number
  or a boolean (only ``"true"``, any case, is true), an integer to a float, anything simple to text, a list
  to ``JsonArray`` or ``ArrayOfStrings``, text to ``JsonObject``/``JsonArray`` (parsed as JSON) or to
  ``ArrayOfStrings`` (``"a, b"``, ``["a", "b"]``). A float is never silently made an integer;
- a field missing from the config is looked up in the environment as ``SCALYR_<FIELD>`` (upper case, then
  lower case), or under the ``env_name`` its ``define_config_option`` gives;
- a missing ``required_field`` raises ``BadMonitorConfiguration``, and so does a value beyond
  ``min_value``/``max_value`` or one that cannot be converted.

Options declared with ``define_config_option`` (required, default, bounds, type) are checked when the monitor
is built, so a mistake is reported before ``gather_sample`` runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any


class JsonConversionException(Exception):
    pass


class JsonParseException(Exception):
    def __init__(self, message: str, position: int = -1, line_number: int = -1) -> None:
        super().__init__(message)
        self.raw_message = message
        self.position = position
        self.line_number = line_number


class JsonObject(dict):  # type: ignore[type-arg]
    """The agent's JSON object: a dict with its typed getters."""

    def get_string(self, key: str, default: Any = None, none_if_missing: bool = False) -> Any:
        return self._typed(key, str, default, none_if_missing)

    def get_int(self, key: str, default: Any = None, none_if_missing: bool = False) -> Any:
        return self._typed(key, int, default, none_if_missing)

    def get_float(self, key: str, default: Any = None, none_if_missing: bool = False) -> Any:
        return self._typed(key, float, default, none_if_missing)

    def get_bool(self, key: str, default: Any = None, none_if_missing: bool = False) -> Any:
        return self._typed(key, bool, default, none_if_missing)

    def get_json_object(self, key: str, default: Any = None, none_if_missing: bool = False) -> Any:
        return self._typed(key, JsonObject, default, none_if_missing)

    def get_json_array(self, key: str, default: Any = None, none_if_missing: bool = False) -> Any:
        return self._typed(key, JsonArray, default, none_if_missing)

    def _typed(self, key: str, tp: type, default: Any, none_if_missing: bool) -> Any:
        if key not in self:
            if default is not None or none_if_missing:
                return default
            raise JsonConversionException(f'The missing field "{key}" in JsonObject.')
        try:
            return convert_config_param(key, self[key], tp)
        except BadConfiguration as exc:
            raise JsonConversionException(exc.message) from None


class JsonArray(list):  # type: ignore[type-arg]
    """The agent's JSON array: a list that can also hand out its objects."""

    def get_json_object(self, index: int) -> Any:
        value = self[index]
        if not isinstance(value, JsonObject):
            raise JsonConversionException(f"element {index} is not an object")
        return value

    def json_objects(self) -> Iterator[JsonObject]:
        for i in range(len(self)):
            yield self.get_json_object(i)


class ArrayOfStrings(JsonArray):
    separators: tuple[str | None, ...] = (",",)


class SpaceAndCommaSeparatedArrayOfStrings(ArrayOfStrings):
    separators = (",", None)  # None: any whitespace


def to_json_types(value: Any) -> Any:
    """Config values as the agent's monitors see them: tables as JsonObject, lists as JsonArray."""
    if isinstance(value, Mapping):
        return JsonObject({str(k): to_json_types(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return JsonArray(to_json_types(v) for v in value)
    return value


class BadConfiguration(Exception):
    def __init__(self, message: str, field: str | None, error_code: str) -> None:
        self.message = message
        self.field = field
        self.error_code = error_code
        super().__init__(message)


class BadMonitorConfiguration(Exception):
    """A monitor's configuration is wrong (a required field missing, a value out of range)."""

    def __init__(self, message: str, field: str | None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


def parse_array_of_strings(text: str, separators: tuple[str | None, ...] = (",",)) -> ArrayOfStrings:
    """``a, b``, ``"a", "b"`` or ``["a", "b"]`` as a list of strings."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    pattern = "[" + "".join(r"\s" if s is None else re.escape(s) for s in separators) + "]"
    out = ArrayOfStrings()
    for item in re.split(pattern, text):
        item = item.strip()
        if len(item) >= 2 and item[0] in "'\"" and item[-1] == item[0]:
            item = item[1:-1]
        if item:
            out.append(item)
    return out


_NUMBERS = (int, float)


def convert_config_param(field_name: str, value: Any, convert_to: type, is_environment_variable: bool = False) -> Any:
    """``value`` as ``convert_to``, by the agent's rules (see the module docstring); BadConfiguration if not."""
    kind = "environment variable" if is_environment_variable else "config param"
    if type(value) is convert_to or (convert_to is JsonObject and isinstance(value, JsonObject)):
        return value
    if convert_to is str:
        if isinstance(value, list | dict):
            return json.dumps(value)
        return str(value)
    if isinstance(value, str):
        if convert_to is bool:
            return value.lower() == "true"
        if convert_to in _NUMBERS:
            try:
                return convert_to(value)
            except ValueError:
                raise BadConfiguration(
                    f'Could not parse value {value} for field "{field_name}" as numeric type {convert_to.__name__}',
                    field_name,
                    "notNumber",
                ) from None
        if convert_to in (JsonObject, JsonArray):
            try:
                parsed = to_json_types(json.loads(value)) if value.strip() else convert_to()
            except ValueError:
                parsed = None
            if not isinstance(parsed, convert_to):
                raise BadConfiguration(
                    f'Could not parse value {value} for field "{field_name}" as {convert_to.__name__}',
                    field_name,
                    "notJsonObject",
                )
            return parsed
        if isinstance(convert_to, type) and issubclass(convert_to, ArrayOfStrings):
            return convert_to(parse_array_of_strings(value, convert_to.separators))
    if isinstance(value, list):
        if convert_to is JsonArray:
            return to_json_types(value)
        if isinstance(convert_to, type) and issubclass(convert_to, ArrayOfStrings):
            if not all(isinstance(v, str) for v in value):
                raise BadConfiguration(
                    f'Non-string element found in value {value} for field "{field_name}"',
                    field_name,
                    "notArrayOfStrings",
                )
            return convert_to(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if convert_to is float:
            return float(value)
        if convert_to is int:
            return int(value)
    if convert_to is bool and isinstance(value, _NUMBERS) and not isinstance(value, bool):
        raise BadConfiguration(
            f'A numeric value {value} was given for boolean field "{field_name}"', field_name, "notBoolean"
        )
    raise BadConfiguration(
        f'Prohibited conversion of {kind} "{field_name}" from {type(value).__name__} to {convert_to.__name__}',
        field_name,
        "illegalConversion",
    )


def get_config_from_env(
    param_name: str,
    custom_env_name: str | None = None,
    convert_to: type | None = None,
    logger: Any = None,
    param_val: Any = None,
    monitor_name: str | None = None,
) -> Any:
    """The value of ``SCALYR_<PARAM>`` (or ``custom_env_name``), upper case first, then lower case."""
    name = (custom_env_name or f"SCALYR_{param_name}").upper()
    value = os.environ.get(name)
    if value is None:
        value = os.environ.get(name.lower())
    if value is None or convert_to is None:
        return value
    converted = convert_config_param(param_name, value, convert_to, is_environment_variable=True)
    if logger is not None and param_val is not None and param_val != converted:
        logger.warning(
            f"Conflicting values for {monitor_name or 'global'} config parameter `{param_name}` and the environment "
            f"variable `{name}`; the environment variable is ignored",
            limit_once_per_x_secs=300,
            limit_key=f"config_conflict_{monitor_name}_{param_name}",
        )
    return converted


class MonitorConfig:
    """A monitor instance's options (read-only), with the agent's validating ``get``."""

    def __init__(self, content: Mapping[str, Any] | None = None, monitor_module: str | None = None) -> None:
        from shipctl.scalyrapi.monitor import MonitorInformation

        self.__map: dict[str, Any] = {str(k): to_json_types(v) for k, v in (content or {}).items()}
        self.__monitor_module = monitor_module
        self._environment_aware_map: dict[str, str] = {}
        info = MonitorInformation.get_monitor_info(monitor_module) if monitor_module else None
        for option in info.config_options if info is not None else ():
            if option.env_aware or option.env_name:
                self._environment_aware_map[option.option_name] = option.env_name or (
                    f"SCALYR_{option.option_name.upper()}"
                )
            if option.required_option or option.default is not None or option.option_name in self.__map:
                self.__map[option.option_name] = self.get(
                    option.option_name,
                    required_field=option.required_option,
                    max_value=option.max_value,
                    min_value=option.min_value,
                    convert_to=option.convert_to,
                    default=option.default,
                    report_conflicting_environment_value=True,
                )

    def get(
        self,
        field: str,
        required_field: bool = False,
        max_value: Any = None,
        min_value: Any = None,
        convert_to: type | None = None,
        default: Any = None,
        report_conflicting_environment_value: bool = False,
    ) -> Any:
        try:
            result = self.__map.get(field)
            if result is not None and convert_to is not None and type(result) is not convert_to:
                result = convert_config_param(field, result, convert_to)
            if result is None or report_conflicting_environment_value:
                from shipctl.scalyrapi.logger import getLogger

                from_env = get_config_from_env(
                    field,
                    self._environment_aware_map.get(field),
                    convert_to=convert_to,
                    logger=getLogger("scalyr_agent.scalyr_monitor") if report_conflicting_environment_value else None,
                    param_val=result,
                    monitor_name=self.__monitor_module,
                )
                if result is None:
                    result = from_env
            if result is None:
                if required_field and field not in self.__map:
                    raise BadMonitorConfiguration(f'Missing required field "{field}"', field)
                result = self.__map.get(field, default)
            if result is None:
                return None
            if convert_to is not None and not isinstance(result, convert_to):
                result = convert_config_param(field, result, convert_to)
            if max_value is not None and result > max_value:
                raise BadMonitorConfiguration(
                    f'Value of {result} in field "{field}" is invalid; maximum is {max_value}', field
                )
            if min_value is not None and result < min_value:
                raise BadMonitorConfiguration(
                    f'Value of {result} in field "{field}" is invalid; minimum is {min_value}', field
                )
            return result
        except BadConfiguration as exc:
            raise BadMonitorConfiguration(exc.message, exc.field) from None

    def __len__(self) -> int:
        return len(self.__map)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__map)

    def __contains__(self, key: object) -> bool:
        return key in self.__map

    def __getitem__(self, field: str) -> Any:
        if field not in self.__map:
            raise KeyError(f'The missing field "{field}" in monitor config.')
        return self.__map[field]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MonitorConfig) and self.__map == other.__map

    __hash__ = None  # type: ignore[assignment]

    def items(self) -> list[tuple[str, Any]]:
        return list(self.__map.items())

    def keys(self) -> list[str]:
        return list(self.__map)

    def values(self) -> list[Any]:
        return list(self.__map.values())

    iteritems = items
    iterkeys = keys
    itervalues = values

    def copy(self) -> MonitorConfig:
        result = MonitorConfig()
        result.__map = dict(self.__map)
        return result
