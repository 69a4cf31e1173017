"""Find, load, merge and validate the TOML config into frozen dataclasses.

Main file: ``--config``, else ``$SHIPCTL_CONFIG``, else ``/etc/shipctl/shipctl.toml``. Files in ``conf.d/``
beside it (sorted ``*.toml``) may add logs, monitors, server attributes and imported variables only.
Relative paths in a file are relative to that file's directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from shipctl import logrename, records, schema
from shipctl.errors import ConfigError
from shipctl.logrename import RenameRule
from shipctl.model import KINDS
from shipctl.records import record
from shipctl.schema import Where, between, field, is_secret_key, non_negative, one_of, positive
from shipctl.schema import mask as mask  # re-exported: callers mask secrets through config

DEFAULT_CONFIG = Path("/etc/shipctl/shipctl.toml")
GROUPER_MODES = {
    "continue_through": "continue_through",
    "continueThrough": "continue_through",
    "continue_past": "continue_past",
    "continuePast": "continue_past",
    "halt_before": "halt_before",
    "haltBefore": "halt_before",
    "halt_with": "halt_with",
    "haltWith": "halt_with",
}


@record(frozen=True)
class LineGrouper:
    """A ``line_groupers`` entry: how lines join into one event (a stack trace)."""

    start: re.Pattern[str]
    mode: str  # one of the four canonical snake_case names
    pattern: re.Pattern[str]


@record(frozen=True)
class SamplingRule:
    """A ``sampling_rules`` entry: which share of the matching lines is kept."""

    match_expression: re.Pattern[str]
    sampling_rate: float = field(check=lambda v: None if 0 <= v <= 1 else "expected a number from 0 to 1")


@record(frozen=True)
class RedactionRule:
    """A ``redaction_rules`` entry: what is replaced (or hashed) in each line."""

    match_expression: re.Pattern[str]
    replacement: str = ""
    hash_salt: str = field("", secret=True)


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


def _rename_check(value: Any) -> str | None:
    return None if value is None else logrename.check(value)


@record(frozen=True)
class LogConfig:
    """One ``[[logs]]`` entry: the files it matches and how their lines are parsed."""

    path: str
    id: str = ""
    exclude: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    start_at: str = field("beginning", check=one_of("beginning", "end"))
    max_line_size: int = field(49900, check=between(1, 16 << 20))
    line_completion_wait: float = field(5.0, check=non_negative)
    line_groupers: tuple[LineGrouper, ...] = field((), aliases=("lineGroupers",))
    sampling_rules: tuple[SamplingRule, ...] = ()
    redaction_rules: tuple[RedactionRule, ...] = ()
    rotated_patterns: tuple[str, ...] = ()
    # The name its events carry as logfile instead of the path (the agent's option; shipctl/logrename.py).
    rename_logfile: str | RenameRule | None = field(None, check=_rename_check)
    rename_no_original: bool = False  # no original_file attribute when renamed

    @property
    def has_rules(self) -> bool:
        return bool(self.line_groupers or self.sampling_rules or self.redaction_rules)


def _levels(cls: Any) -> None:
    """A critical level below its warning level is a typo (it would never say WARNING): name both keys."""
    for f in records.fields(cls):
        if f.name.endswith("_warning"):
            base = f.name.removesuffix("_warning")
            warn, crit = getattr(cls, f.name), getattr(cls, f"{base}_critical")
            if crit < warn:
                raise ValueError(
                    f"{base}_critical ({crit:g}) is below {base}_warning ({warn:g}); expected critical >= warning"
                )


@record(frozen=True)
class HealthConfig:
    """``[agent.health]``: the levels of ``status --check``. A check is WARNING (CRITICAL) when its value is above
    the warning (critical) level, as the monitoring-plugins threshold "N" means; perfdata carries the same levels."""

    lag_warning: float = field(900.0, check=non_negative)  # seconds: oldest batch a sink has not delivered
    lag_critical: float = field(3600.0, check=non_negative)
    queue_bytes_warning: int = field(256 << 20, check=non_negative)  # bytes queued, all sinks
    queue_bytes_critical: int = field(1 << 30, check=non_negative)
    upload_failures_warning: int = field(2, check=non_negative)  # consecutive failed uploads of one sink
    upload_failures_critical: int = field(10, check=non_negative)
    read_errors_warning: int = field(0, check=non_negative)  # logs and files that could not be read
    read_errors_critical: int = field(4, check=non_negative)
    monitors_failing_warning: int = field(0, check=non_negative)  # monitors whose last run failed
    monitors_failing_critical: int = field(2, check=non_negative)
    last_run_warning: float = field(900.0, check=non_negative)  # seconds since the last successful run
    last_run_critical: float = field(3600.0, check=non_negative)

    def __post_init__(self) -> None:
        _levels(self)


@record(frozen=True)
class AgentConfig:
    """The ``[agent]`` table: state file, log file, limits of a run, server attributes."""

    state: str | None = None
    log_file: str | None = None
    server_attributes: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    max_seconds: float = field(50.0, check=non_negative)  # 0 = no limit; fits a once-a-minute timer
    max_bytes: int = field(0, check=non_negative)  # 0 = no limit
    batch_bytes: int = field(1 << 20, check=between(4096, 256 << 20))
    compress_queue: bool = True  # ISA-L level 1: faster than raw (SQLite writes ~6x less), smaller file
    max_queue_bytes: int = field(0, check=non_negative)  # 0 = no limit; over it upload drops the oldest batches
    implicit_metric_monitor: bool = True
    implicit_agent_process_metrics_monitor: bool = True
    # Self-metrics: Prometheus text for node_exporter's textfile collector, written after every run (None: off),
    # and the same figures as metric events of an implicit "shipctl" monitor (opt-in: see README).
    textfile: str | None = None
    implicit_shipctl_monitor: bool = False
    health: HealthConfig = dataclasses.field(default_factory=HealthConfig)
    # Ship shipctl's own log (log_file) as a log source, as the Scalyr agent ships agent.log. On by default for
    # an agent.json (the agent's default); off for TOML, whose users chose their logs explicitly.
    implicit_agent_log_collection: bool = False
    plugins_dir: str | None = None  # every .panoptes-plugin below it runs without a [[monitors]] entry
    # Default sample_interval of every monitor, the implicit ones included (the agent's
    # global_monitor_sample_interval).
    monitor_sample_interval: float = field(30.0, aliases=("global_monitor_sample_interval",), check=positive)


@record(frozen=True)
class MonitorConfig:
    """One ``[[monitors]]`` entry: its type, id, interval and type-specific options."""

    type: str
    id: str
    sample_interval: float
    options: Mapping[str, Any]
    where: Where


@record(frozen=True)
class SinkConfig:
    """One ``[[sinks]]`` entry: its type, id and options (checked by the sink type)."""

    type: str
    id: str
    options: Mapping[str, Any]
    where: Where
    kinds: tuple[str, ...] = ()  # empty: every kind the sink type can carry
    sources: tuple[str, ...] = ()  # globs over log ids and monitor ids; empty: all


@record(frozen=True)
class Config:
    """The whole configuration, merged from the main file and the files in its ``conf.d/``."""

    file: str  # the main file, or "<defaults>" when none exists
    files: tuple[str, ...]
    agent: AgentConfig
    logs: tuple[LogConfig, ...]
    monitors: tuple[MonitorConfig, ...]
    sinks: tuple[SinkConfig, ...]
    imported: Mapping[str, str]  # name -> value
    secret_values: tuple[str, ...] = ()  # imported values to mask wherever they appear
    warnings: tuple[str, ...] = ()  # not errors, but likely mistakes (shown by check-config)

    @property
    def server_attributes(self) -> dict[str, Any]:
        attrs = dict(self.agent.server_attributes)
        attrs.setdefault("serverHost", os.uname().nodename)
        return attrs

    def log(self, log_id: str) -> LogConfig:
        for log in self.logs:
            if log.id == log_id:
                return log
        known = ", ".join(log.id for log in self.logs) or "none configured"
        raise ConfigError(f"{self.file}: no [[logs]] entry with id {log_id!r} (known: {known})")


TOP_KEYS = ("import_vars", "agent", "server_attributes", "logs", "monitors", "sinks")
CONF_D_KEYS = ("import_vars", "agent", "server_attributes", "logs", "monitors")
MONITOR_COMMON = ("type", "id", "sample_interval")


def config_path(explicit: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The main config file and whether the user named it (a named file must exist)."""
    if explicit:
        return Path(os.path.abspath(os.path.expanduser(explicit))), True
    env = os.environ.get("SHIPCTL_CONFIG")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env))), True
    return DEFAULT_CONFIG, False


def load_config(
    explicit: str | os.PathLike[str] | None = None, *, require: bool = True, env_optional: bool = False
) -> Config:
    """``require``: a missing default file is an error too (commands that only make sense with a config).
    ``env_optional``: an imported variable that is not set reads as "" with a warning (``status`` must
    work in a shell that lacks the API key)."""
    path, named = config_path(explicit)
    schema.set_secret_values(())
    if not path.exists():
        if named:
            raise ConfigError(f"{path}: config file not found")
        if require:
            raise ConfigError(f"{path}: config file not found (write one, or give --config / $SHIPCTL_CONFIG)")
        return _build("<defaults>", [], {}, {})
    if path.suffix.lower() != ".toml":  # a TOML config does not pay for importing the agent.json reader
        from shipctl import agentjson

        if agentjson.is_agent_json(path):  # a Scalyr agent.json, with its agent.d/*.json (shipctl/agentjson.py)
            mapped = agentjson.load(path, env_optional=env_optional)
            config = _merge(path, mapped.files, env_optional=env_optional, substitute=False)
            config = _with_agent_vars(config, mapped.vars)
            return replace(config, warnings=tuple(mapped.warnings) + config.warnings)
    main = _read_toml(path)
    files: list[tuple[Path, dict[str, Any]]] = [(path, main)]
    warnings: list[str] = []
    agent_vars = None  # the import_vars of agent-style *.json fragments, substituted by the agent's rules
    conf_d = path.parent / "conf.d"
    # *.toml, and agent-style *.json fragments (their logs and monitors); any other file is named in a warning.
    for p in _conf_d_files(conf_d, warnings):
        if p.suffix == ".toml":
            files.append((p, _read_toml(p)))
        elif p.suffix == ".json":
            from shipctl import agentjson
            from shipctl.agentvars import AgentVars

            agent_vars = agent_vars or AgentVars()
            files.append((p, agentjson.load_fragment(p, warnings, av=agent_vars)))
        else:
            warnings.append(f"{p}: not read (only *.toml and *.json files in {conf_d} are read)")
    config = _merge(path, files, env_optional=env_optional)
    config = _with_agent_vars(config, agent_vars)
    return replace(config, warnings=tuple(warnings) + config.warnings)


def _with_agent_vars(config: Config, agent_vars: Any) -> Config:
    """Add the variables an agent.json (or JSON fragment) substituted itself (shipctl/agentvars.py): shown by
    check-config, and their secrets masked like those of import_vars in TOML."""
    if agent_vars is None or not agent_vars.imported:
        return config
    secrets = tuple(sorted(set(config.secret_values) | set(agent_vars.secret_values), key=len, reverse=True))
    schema.set_secret_values(secrets)
    imported = {**agent_vars.imported, **config.imported}
    return replace(config, imported=types.MappingProxyType(imported), secret_values=secrets)


def _conf_d_files(conf_d: Path, warnings: list[str]) -> list[Path]:
    if not conf_d.is_dir():
        return []
    from shipctl import agentjson

    return agentjson.fragment_dir_files(conf_d, "", warnings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 (byte {exc.start})") from None


def _merge(
    main_path: Path, files: list[tuple[Path, dict[str, Any]]], *, env_optional: bool = False, substitute: bool = True
) -> Config:
    """``substitute=False``: the files hold final values (an agent.json, substituted by the agent's rules)."""
    imported: dict[str, str] = {}
    warnings: list[str] = []
    # Variables first, from every file, so any file may use any imported name.
    for path, data in files:
        _import_vars(
            data.get("import_vars", []), Where(str(path), "import_vars"), imported, warnings if env_optional else None
        )
    # Secrets: variables named like one (API_KEY, DB_PASSWORD, ...) and any used under a secret key.
    secret_vars = {name for name in imported if schema.is_secret_key(name)}
    substituted = []
    for path, raw in files:
        substituted.append(_substitute(raw, imported, Where(str(path)), secret_vars, warnings) if substitute else raw)
    secret_values = tuple(sorted({imported[n] for n in secret_vars if len(imported[n]) >= 4}, key=len, reverse=True))
    schema.set_secret_values(secret_values)

    agent_table: dict[str, Any] = {}
    server_attrs: dict[str, Any] = {}
    logs: list[tuple[Any, Where, Path]] = []
    monitors: list[tuple[Any, Where, Path]] = []
    sinks: list[tuple[Any, Where, Path]] = []
    for n, (path, _raw) in enumerate(files):
        where = Where(str(path))
        data = substituted[n]
        allowed = TOP_KEYS if n == 0 else CONF_D_KEYS
        for key in data:
            if key in TOP_KEYS and key not in allowed:
                raise where.key(key).error(f"not allowed in conf.d (expected one of: {', '.join(allowed)})")
            if key not in allowed:
                raise where.key(key).error(f"unknown key (expected one of: {', '.join(allowed)})")
        agent = data.get("agent", {})
        if not isinstance(agent, dict):
            raise where.key("agent").error(f"expected a table, got {schema.describe(agent)}")
        if n == 0:
            agent_table = dict(agent)
        else:
            extra = set(agent) - {"server_attributes"}
            if extra:
                raise where.key(f"agent.{sorted(extra)[0]}").error("conf.d files may only set agent.server_attributes")
        for attrs, attrs_where in (
            (agent.get("server_attributes", {}), where.key("agent.server_attributes")),
            (data.get("server_attributes", {}), where.key("server_attributes")),
        ):
            server_attrs.update(_attributes(attrs, attrs_where))
        for name, bucket in (("logs", logs), ("monitors", monitors), ("sinks", sinks)):
            items = data.get(name, [])
            if not isinstance(items, list):
                raise where.key(name).error(f"expected an array of tables ([[{name}]]), got {_kind_of(items)}")
            for i, item in enumerate(items):
                bucket.append((item, where.key(name).index(i), path.parent))
    agent_table["server_attributes"] = server_attrs
    config = _build(str(main_path), [str(p) for p, _ in files], agent_table, imported, logs, monitors, sinks)
    return replace(config, secret_values=secret_values, warnings=tuple(warnings))


def _build(
    main: str,
    files: list[str],
    agent_table: dict[str, Any],
    imported: Mapping[str, str],
    logs: list[tuple[Any, Where, Path]] = (),  # type: ignore[assignment]
    monitors: list[tuple[Any, Where, Path]] = (),  # type: ignore[assignment]
    sinks: list[tuple[Any, Where, Path]] = (),  # type: ignore[assignment]
) -> Config:
    base = Path(main).parent if files else Path.cwd()
    agent = schema.load(AgentConfig, agent_table, Where(main, "agent"))
    for key in ("state", "log_file"):
        value = getattr(agent, key)
        if value is not None and (not value.strip() or "\0" in value):
            raise Where(main, f"agent.{key}").error(f"expected a file path, got {value!r}")
        if value and os.path.isdir(_abs(value, base) or ""):
            raise Where(main, f"agent.{key}").error(f"{value!r} is a directory; expected a file path in it")
    agent = replace(
        agent,
        state=_abs(agent.state, base),
        log_file=_abs(agent.log_file, base),
        plugins_dir=_abs(agent.plugins_dir, base),
    )
    if agent.textfile is not None:
        if not agent.textfile.endswith(".prom") or "\0" in agent.textfile:
            # node_exporter's textfile collector reads only *.prom files: any other name would be ignored silently
            raise Where(main, "agent.textfile").error(f"expected a file path ending in .prom, got {agent.textfile!r}")
        agent = replace(agent, textfile=_abs(agent.textfile, base))
    logs = list(logs)
    if agent.implicit_agent_log_collection:
        logs.append(_own_log(agent, Where(main, "agent.implicit_agent_log_collection")))
    log_objs = _unique_ids([_load_log(item, where, d) for item, where, d in logs], "logs", logs)
    mon_objs = _unique_ids(
        [_load_monitor(item, where, agent.monitor_sample_interval) for item, where, _ in monitors], "monitors", monitors
    )
    sink_objs = _unique_ids([_load_sink(item, where, d) for item, where, d in sinks], "sinks", sinks)
    return Config(
        file=main,
        files=tuple(files),
        agent=agent,
        logs=tuple(log_objs),
        monitors=tuple(mon_objs),
        sinks=tuple(sink_objs),
        imported=types.MappingProxyType(dict(imported)),
    )


OWN_LOG_ID = "shipctl.log"


def _own_log(agent: AgentConfig, where: Where) -> tuple[dict[str, Any], Where, Path]:
    """shipctl's own log as a [[logs]] entry (implicit_agent_log_collection), where commands/common.py writes
    it: agent.log_file, else shipctl.log beside the state file."""
    from shipctl.state import db

    path = db.own_log_path(db.resolve_state_path(agent.state), agent.log_file)
    entry = {"path": str(path), "id": OWN_LOG_ID, "attributes": {"parser": "scalyrAgentLog"}, "start_at": "end"}
    return entry, where, path.parent


def _kind_of(value: Any) -> str:
    return "a table" if isinstance(value, dict) else schema.describe(value)


def _attributes(value: Any, where: Where) -> dict[str, Any]:
    """Event attributes end up in JSON: strings, numbers and booleans only (a TOML date would not encode)."""
    if not isinstance(value, dict):
        raise where.error(f"expected a table, got {schema.describe(value)}")
    for k, v in value.items():
        if not isinstance(v, str | int | float | bool) or isinstance(v, dt.date | dt.time):
            raise where.key(k).error(
                f"expected a string, number or true/false, got {schema.describe(v, secret=is_secret_key(k))}"
            )
    return value


def _unique_ids(objs: list[Any], what: str, sources: list[tuple[Any, Where, Path]]) -> list[Any]:
    seen: dict[str, int] = {}
    for i, obj in enumerate(objs):
        if obj.id in seen:
            first, here = sources[seen[obj.id]][1], sources[i][1]
            other = first.path if first.file == here.file else f"{first.file}: {first.path}"
            raise here.key("id").error(f"duplicate id {obj.id!r} (also {other}); give each entry its own id")
        seen[obj.id] = i
    return objs


def _abs(value: str | None, base: Path) -> str | None:
    if not value:
        return value
    p = Path(value).expanduser()
    # Normalised: "conf.d/../logs/app.log" names the log (its default id, the logfile shown) as logs/app.log.
    return os.path.normpath(p if p.is_absolute() else base / p)


def _load_log(item: Any, where: Where, base: Path) -> LogConfig:
    if not isinstance(item, dict):
        raise where.error(f"expected a table, got {schema.describe(item)}")
    if "line_groupers" in item and "lineGroupers" in item:
        raise where.key("lineGroupers").error("given twice (also as line_groupers); keep one")
    gkey = "lineGroupers" if "lineGroupers" in item else "line_groupers"
    table = {k: v for k, v in item.items() if k not in ("line_groupers", "lineGroupers")}
    log = schema.load(LogConfig, table, where)
    parsed = _load_groupers(item.get(gkey, []), where.key(gkey))
    if not log.path.strip():
        raise where.key("path").error("expected a file path or glob, got an empty string")
    if "\0" in log.path:
        raise where.key("path").error("a path cannot contain a NUL character")
    if not any(c in log.path for c in "*?[") and os.path.isdir(_abs(log.path, base) or ""):
        raise where.key("path").error(f"{log.path!r} is a directory; name the files in it, e.g. '{log.path}/*.log'")
    path = _abs(log.path, base) or ""
    _check_glob(log.path, where.key("path"))
    for key in ("exclude", "rotated_patterns"):
        for i, pattern in enumerate(getattr(log, key)):
            _check_glob(pattern, where.key(key).index(i))
    _attributes(dict(log.attributes), where.key("attributes"))
    for i, rule in enumerate(log.redaction_rules):
        _check_replacement(rule, where.key("redaction_rules").index(i).key("replacement"))
    return replace(log, path=path, id=log.id or path, line_groupers=parsed)


def _check_glob(pattern: str, where: Where) -> None:
    # fnmatch/glob never raise; an unclosed class silently matches literally, which is surely a typo.
    # Same scan as fnmatch.translate: "[" opens a class, "!" and a "]" right after it are part of it.
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            j = pattern.find("]", j)
            if j < 0:
                raise where.error(f"unclosed '[' in glob {schema.scrub(repr(pattern))} (write [[] for a literal '[')")
            i = j
        i += 1


_HASH_REF = re.compile(r"\\(?:\\|H(\d+))")  # an escaped backslash, or \Hn (group n, hashed)


def _check_replacement(rule: RedactionRule, where: Where) -> None:
    """Group references (\\1, \\g<name>, and \\H1 for a salted hash) must exist in match_expression; else
    every matching line would fail at tail time instead of the config failing now."""
    pattern, template = rule.match_expression, rule.replacement
    literal, pos = [], 0
    for m in _HASH_REF.finditer(template):
        if m.group(1) is None:
            continue  # an escaped backslash is left for re to read
        if int(m.group(1)) > pattern.groups:
            raise where.error(f"\\H{m.group(1)}: match_expression has no group {m.group(1)} (it has {pattern.groups})")
        literal.append(template[pos : m.start()])
        pos = m.end()
    literal.append(template[pos:])
    for part in literal:
        try:
            pattern.sub(part, "")  # parses the template even without a match
        except (re.error, IndexError) as exc:
            raise where.error(f"invalid replacement {schema.describe(template)}: {exc}") from None


def _load_groupers(value: Any, where: Where) -> tuple[LineGrouper, ...]:
    if not isinstance(value, list):
        raise where.error(f"expected a list of tables, got {schema.describe(value)}")
    out = []
    for i, g in enumerate(value):
        gw = where.index(i)
        if not isinstance(g, dict):
            raise gw.error(f"expected a table with start and one continuation rule, got {schema.describe(g)}")
        modes = [k for k in g if k in GROUPER_MODES]
        unknown = [k for k in g if k != "start" and k not in GROUPER_MODES]
        if unknown:
            raise gw.key(unknown[0]).error(
                "unknown key (expected start and one of continue_through, continue_past, halt_before, halt_with)"
            )
        if "start" not in g:
            raise gw.key("start").error("missing required key (a regular expression string)")
        if len(modes) != 1:
            raise gw.error(
                f"expected exactly one of continue_through, continue_past, halt_before, halt_with (got {len(modes)})"
            )
        mode = modes[0]
        if not isinstance(g[mode], str):
            raise gw.key(mode).error(f"expected a regular expression string, got {schema.describe(g[mode])}")
        start = schema.convert(re.Pattern, g["start"], gw.key("start"))
        pattern = schema.convert(re.Pattern, g[mode], gw.key(mode))
        out.append(LineGrouper(start=start, mode=GROUPER_MODES[mode], pattern=pattern))
    return tuple(out)


def _load_monitor(item: Any, where: Where, default_interval: float = 30.0) -> MonitorConfig:
    if not isinstance(item, dict):
        raise where.error(f"expected a table, got {schema.describe(item)}")
    mtype = item.get("type")
    if not isinstance(mtype, str) or not mtype:
        raise where.key("type").error(f'expected a monitor type such as "shell", got {schema.describe(mtype)}')
    mid = item.get("id", mtype)
    if not isinstance(mid, str) or not mid:
        raise where.key("id").error(f"expected a non-empty string, got {schema.describe(mid)}")
    interval = schema.convert(float, item.get("sample_interval", default_interval), where.key("sample_interval"))
    if interval <= 0:
        raise where.key("sample_interval").error(f"expected a number above 0, got {interval!r}")
    options = {k: v for k, v in item.items() if k not in MONITOR_COMMON}
    return MonitorConfig(mtype, mid, interval, types.MappingProxyType(options), where)


def _load_sink(item: Any, where: Where, base: Path) -> SinkConfig:
    if not isinstance(item, dict):
        raise where.error(f"expected a table, got {schema.describe(item)}")
    stype = item.get("type")
    if not isinstance(stype, str) or not stype:
        raise where.key("type").error(f'expected a sink type such as "file", got {schema.describe(stype)}')
    sid = item.get("id", stype)
    if not isinstance(sid, str) or not sid:
        raise where.key("id").error(f"expected a non-empty string, got {schema.describe(sid)}")
    kinds = _str_list(item.get("kinds", []), where.key("kinds"))
    for i, k in enumerate(kinds):
        if k not in KINDS:
            raise where.key("kinds").index(i).error(f"expected one of {', '.join(map(repr, KINDS))}, got {k!r}")
    sources = _str_list(item.get("sources", []), where.key("sources"))
    options = {k: v for k, v in item.items() if k not in ("type", "id", "kinds", "sources")}
    if isinstance(options.get("path"), str):
        options["path"] = _abs(options["path"], base)
    return SinkConfig(stype, sid, types.MappingProxyType(options), where, tuple(kinds), tuple(sources))


def _str_list(value: Any, where: Where) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise where.error(f"expected a list of non-empty strings, got {schema.describe(value)}")
    return value


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _import_vars(value: Any, where: Where, out: dict[str, str], missing: list[str] | None = None) -> None:
    if not isinstance(value, list):
        raise where.error(f"expected a list of names or {{var, default}} tables, got {schema.describe(value)}")
    for i, entry in enumerate(value):
        ew = where.index(i)
        default: str | None = None
        name_where = ew
        if isinstance(entry, dict):
            unknown = set(entry) - {"var", "default"}
            if unknown:
                raise ew.key(sorted(unknown)[0]).error("unknown key (expected var, default)")
            name, default = entry.get("var"), entry.get("default")
            name_where = ew.key("var")
            if default is not None and not isinstance(default, str):
                raise ew.key("default").error(f"expected a string, got {schema.describe(default)}")
        else:
            name = entry
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise name_where.error(f"expected an environment variable name, got {schema.describe(name)}")
        env = os.environ.get(name)
        if env is None:
            if default is None and missing is not None:
                missing.append(f"{ew}: environment variable {name} is not set; read as empty")
                default = ""
            if default is None:
                raise ew.error(
                    f'environment variable {name} is not set (set it, or write {{var = "{name}", default = "..."}})'
                )
            env = default
        out[name] = env


def _substitute(
    value: Any, imported: Mapping[str, str], where: Where, secret_vars: set[str], warnings: list[str]
) -> Any:
    """Replace $NAME / ${NAME} of imported variables. A variable used under a secret key becomes a secret
    (masked everywhere); a $NAME that was not imported stays as written, with a warning (likely a typo)."""
    if isinstance(value, str):
        if "$" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            name = m[1] or m[2]
            if where.path.endswith("rename_logfile") and logrename.is_field(name):
                return m[0]  # $BASENAME, $PATH1, ...: the rename template's own placeholders
            if name not in imported:
                warnings.append(f"{where}: ${name} is not in import_vars; left as written")
                return m[0]
            if where.secret:
                secret_vars.add(name)
            return imported[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {
            k: (v if k == "import_vars" else _substitute(v, imported, where.key(k), secret_vars, warnings))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, imported, where.index(i), secret_vars, warnings) for i, v in enumerate(value)]
    return value
