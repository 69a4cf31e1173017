"""``shipctl check-config``: load and validate everything, return the resolved config, secrets masked."""

from __future__ import annotations

import dataclasses
import re
import types
from typing import Any

from shipctl import plugins
from shipctl.config import Config, SinkConfig
from shipctl.errors import ConfigError
from shipctl.model import KINDS
from shipctl.schema import Where, is_secret_key, mask, secret_fields
from shipctl.state import resolve_state_path


def check_config(config: Config) -> dict[str, Any]:
    plugins.validate(config.monitors, config.sinks, strict=True)
    warnings = list(config.warnings)
    if config.sinks:
        from shipctl.monitors.implicit import effective_monitors

        monitors = effective_monitors(config)
        sources = [("log", lg.id) for lg in config.logs] + [("metric", m.id) for m in monitors]
        lost = plugins.unrouted(config.sinks, sources)
        if lost:
            raise ConfigError(f"{config.file}: sinks: " + "; ".join(lost))
        # Scripts and plugins may also send events (CoScale E lines); whether they do is only known when they
        # run, so a missing route for those is a warning, and the events are reported in status if they come.
        maybe = [("event", m.id) for m in monitors if m.type in ("script", "plugin")]
        warnings += [f"{config.file}: sinks: {w}, if it sends any" for w in plugins.unrouted(config.sinks, maybe)]
    # A file two [[logs]] entries match is shipped by the first only (as the Scalyr agent does): say which.
    from shipctl.tail.claims import overlaps, shadow_message

    shadowed = overlaps([(lg.id, lg.path, lg.exclude) for lg in config.logs])
    warnings += [
        f"{config.file}: logs[{s.index}] ({s.log_id!r}): {s.path}: {shadow_message(s.shipped_by)}" for s in shadowed
    ]
    # Panoptes descriptors dropped into plugins_dir: the ids they run under, and the broken ones (which fail alone).
    found: list[str] = []
    if config.agent.plugins_dir:
        from shipctl.pyplugins.scan import check as check_plugins

        scanned = check_plugins(config)
        found = [m.id for m in scanned.monitors]
        warnings += scanned.problems
    # Imported values that are secrets (named like one, or used under a secret key), longest first so a
    # value containing a shorter one is masked whole. Other imported values are shown: they are config.
    secrets = list(config.secret_values)

    def routing(s: SinkConfig) -> dict[str, Any]:
        return {"kinds": [k for k in KINDS if k in plugins.route(s).kinds], "sources": list(s.sources)}

    return {
        "files": list(config.files),
        "state": str(resolve_state_path(config.agent.state)),
        "agent": _plain(config.agent, secrets),
        "server_attributes": _plain(config.server_attributes, secrets),
        "logs": [_plain(lg, secrets) for lg in config.logs],
        "monitors": [
            _plain({"type": m.type, "id": m.id, "sample_interval": m.sample_interval, **m.options}, secrets)
            for m in config.monitors
        ],
        "sinks": [
            _plain(
                {"type": s.type, "id": s.id, **routing(s), **s.options},
                secrets,
            )
            for s in config.sinks
        ],
        "import_vars": {k: mask(v) if v in secrets else v for k, v in config.imported.items()},
        "regex_engines": _engines(config),
        "plugins_found": found,
        "shadowed": [{"log": s.log_id, "path": s.path, "shipped_by": s.shipped_by} for s in shadowed],
        "warnings": warnings,
    }


_URL_PASSWORD = re.compile(r"^([a-zA-Z][\w+.-]*://[^/@:\s]*:)([^/@\s]+)@")  # a URL value, not a regex about one
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")


def _plain(value: Any, secrets: list[str], secret: bool = False) -> Any:
    """JSON-ready copy. Values under a secret key (at any depth) are masked whatever their type, and any
    secret imported value is masked wherever it appears, regular expressions included."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hidden = secret_fields(type(value))
        return {
            f.name: _plain(getattr(value, f.name), secrets, secret or f.name in hidden or is_secret_key(f.name))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, dict | types.MappingProxyType):
        # A request header given as {header, value} (url monitor): an Authorization or Cookie value is a secret.
        hidden = str(value.get("header", "")).lower() in _SECRET_HEADERS or is_secret_key(str(value.get("header", "")))
        return {
            k: _plain(v, secrets, secret or is_secret_key(str(k)) or (hidden and k == "value"))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v, secrets, secret) for v in value]
    if isinstance(value, re.Pattern) or type(value).__module__ == "re2":
        value = value.pattern
    if isinstance(value, Where):
        return str(value)
    if secret and value is not None and value != "" and not isinstance(value, bool):
        return mask(str(value))
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(lambda m: m[1] + mask(m[2]) + "@", value)  # http://user:PASSWORD@host
        for s in secrets:
            if s in value:
                value = value.replace(s, mask(s))
    return value


def _engines(config: Config) -> dict[str, str]:
    """Which engine runs each rule of each log: "re", or "re2" for a pattern that could backtrack for ever."""
    from shipctl import regex

    out: dict[str, str] = {}
    for i, lg in enumerate(config.logs):
        for name, rules, attr in (
            ("line_groupers", lg.line_groupers, ("start", "pattern")),
            ("sampling_rules", lg.sampling_rules, ("match_expression",)),
            ("redaction_rules", lg.redaction_rules, ("match_expression",)),
        ):
            for j, rule in enumerate(rules):
                for a in attr:
                    out[f"logs[{i}].{name}[{j}].{a}"] = regex.engine(getattr(rule, a))
    return out
