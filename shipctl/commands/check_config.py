"""``shipctl check-config``: load and validate everything, return the resolved config, secrets masked."""

from __future__ import annotations

import dataclasses
import re
import types
from typing import Any

from shipctl import plugins
from shipctl.config import Config, is_secret_key, mask
from shipctl.schema import Where
from shipctl.state import resolve_state_path


def check_config(config: Config) -> dict[str, Any]:
    plugins.validate(config.monitors, config.sinks)
    secrets = {v for v in config.imported.values() if len(v) >= 4}
    out = {
        "files": list(config.files),
        "state": str(resolve_state_path(config.agent.state)),
        "agent": _plain(config.agent, secrets),
        "server_attributes": _plain(config.server_attributes, secrets),
        "logs": [_plain(lg, secrets) for lg in config.logs],
        "monitors": [
            _plain({"type": m.type, "id": m.id, "sample_interval": m.sample_interval, **m.options}, secrets)
            for m in config.monitors
        ],
        "sinks": [_plain({"type": s.type, "id": s.id, **s.options}, secrets) for s in config.sinks],
        "import_vars": {k: mask(v) for k, v in config.imported.items()},
    }
    return out


def _plain(value: Any, secrets: set[str], key: str = "") -> Any:
    """JSON-ready copy; secret keys and any imported variable's value are masked wherever they appear."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), secrets, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict | types.MappingProxyType):
        return {k: _plain(v, secrets, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, secrets, key) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Where):
        return str(value)
    if isinstance(value, str):
        if key and is_secret_key(key) and value:
            return mask(value)
        for s in secrets:
            if s in value:
                value = value.replace(s, mask(s))
        return value
    return value
