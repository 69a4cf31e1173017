"""A Scalyr agent's ``agent.json`` (and its ``agent.d/*.json`` fragments) as a shipctl config.

The files are read with the agent's own JSON dialect (shipctl/scalyr_json.py), merged the way the agent merges
them, checked with the agent's type rules (``"30"`` is a fine number, ``"false"`` a boolean, ``true`` is not
an attribute value) and mapped onto shipctl's TOML shape: the ``[[sinks]]`` entry of type ``scalyr`` from
``api_key``/``scalyr_server``/..., ``[[logs]]`` from ``logs``, ``[[monitors]]`` from ``monitors`` named by
``module``. The result goes through the same loader as a TOML file (config._merge), so ``config convert``'s
TOML reads back to the very same resolved config.

Keys the agent accepts that shipctl does not implement are accepted with one warning each; keys the agent
would reject (wrong type, a fragment redefining a main-file key, a log without ``path``, ...) are errors naming
the file and the key. Unknown keys are ignored by the agent: a warning here.

Variables: each file's ``import_vars`` are substituted into that file with the agent's rules before anything
else reads it (shipctl/agentvars.py: per file, plain-text ``$NAME``, an empty variable gives the default, so
``"$X"`` also works in a boolean or number field); the mapped result holds final values, not substituted
again (config._merge(substitute=False)), so a ``$NAME`` the agent leaves as written stays so.
"""

from __future__ import annotations

import os
import typing
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipctl import records
from shipctl.errors import ConfigError
from shipctl.records import record
from shipctl.schema import Where, describe

if TYPE_CHECKING:
    from shipctl.agentvars import AgentVars

MODULE_PREFIX = "scalyr_agent.builtin_monitors."
BUILTIN_MONITORS = {
    "shell_monitor": "shell",
    "url_monitor": "url",
    "linux_system_metrics": "linux_system_metrics",
    "linux_process_metrics": "linux_process_metrics",
    "mysql_monitor": "mysql",
}
CUSTOM_MONITOR = "scalyr_monitor"  # a user's own ScalyrMonitor subclass
DEFAULT_LOG_DIR = "/var/log/scalyr-agent-2"  # the agent's agent_log_path: base of relative log paths
DEFAULT_CONFIG_DIR = "agent.d"
SINK_ID = "scalyr"
AGENT_LOG_PARSER = "scalyrAgentLog"
# Keys that may appear in several files; every other key may be set once, in any file (the agent's rule).
MULTI = ("import_vars", "logs", "journald_logs", "k8s_logs", "monitors", "server_attributes")
COMPRESSION = ("deflate", "bz2", "lz4", "zstandard", "none")
# The agent's valid compression_level range per algorithm (scalyr_agent/util.py); out of range it falls back to
# the algorithm's default (deflate: 6). Without compression_level shipctl keeps its own deflate default (1: about
# 4x less CPU than 6 for a 20% bigger body, see sinks/scalyr.py).
AGENT_LEVELS = {"deflate": (1, 9), "bz2": (1, 9), "lz4": (0, 16), "zstandard": (1, 22)}
AGENT_DEFLATE_DEFAULT = 6
SHIPCTL_LEVEL = 1
GROUPER_MODES = {
    "continueThrough": "continue_through",
    "continuePast": "continue_past",
    "haltBefore": "halt_before",
    "haltWith": "halt_with",
}

# The agent's top-level options that shipctl does not implement, by type, with the agent's default: a value
# that differs from the default gets a warning, a value of the wrong type an error (as from the agent).
_UNUSED: dict[str, tuple[str, Any]] = {}
for _names, _kind, _default in (
    (
        "check_remote_if_no_tty use_unsafe_debugging debug_init pidfile_advanced_reuse_guard use_requests_lib"
        " use_tlslite k8s_log_api_responses k8s_log_api_exclude_200s k8s_events_disable disable_send_requests"
        " enable_profiling"
        " disable_logfile_addevents_format disable_leak_monitor_threads disable_leak_monitors_creation"
        " disable_leak_new_file_matches disable_leak_scan_for_new_bytes disable_leak_processing_new_bytes"
        " disable_leak_copying_thread disable_leak_overall_stats disable_leak_bandwidth_stats"
        " disable_copy_manager_stats disable_leak_update_debug_log_level enable_gc_stats"
        " disable_leak_verify_config_cache_config",
        "bool",
        False,
    ),
    ("k8s_verify_api_queries k8s_verify_kubelet_queries include_raw_timestamp_field", "bool", True),
    (
        "copying_thread_profile_interval k8s_cache_expiry_fuzz_secs k8s_cache_start_fuzz_secs debug_level"
        " k8s_log_api_min_response_len k8s_log_api_ratelimit_interval",
        "int",
        0,
    ),
    (
        "close_old_files_duration_in_seconds full_checkpoint_interval_in_seconds min_allowed_request_size"
        " minimum_scan_interval low_water_bytes_sent high_water_bytes_sent max_log_offset_size"
        " max_existing_log_offset_size max_sequence_number read_page_size internal_parse_max_line_size"
        " log_rotation_backup_count log_rotation_max_bytes win32_max_open_fds k8s_cache_query_timeout_secs"
        " k8s_cache_expiry_secs k8s_cache_purge_secs k8s_controlled_warmer_max_query_retries"
        " k8s_controlled_warmer_max_attempts k8s_controlled_warmer_blacklist_time"
        " k8s_ratelimit_consecutive_increase_threshold k8s_ratelimit_max_concurrency max_profile_interval_minutes"
        " profile_duration_minutes user_agent_refresh_interval garbage_collect_interval disable_leak_all_config_updates"
        " disable_leak_verify_config disable_leak_config_equivalence_check disable_leak_verify_can_write_to_logs"
        " disable_leak_config_reload disable_leak_verify_config_create_monitors_manager"
        " disable_leak_verify_config_create_copying_manager",
        "int",
        None,
    ),
    (
        "min_request_spacing_interval max_request_spacing_interval max_error_request_spacing_interval"
        " low_water_request_spacing_adjustment high_water_request_spacing_adjustment failure_request_spacing_adjustment"
        " request_too_large_adjustment max_new_log_detection_time log_deletion_delay pipeline_threshold"
        " copy_staleness_threshold healthy_max_time_since_last_copy_attempt k8s_log_api_min_latency"
        " k8s_ratelimit_cluster_rps_init k8s_ratelimit_cluster_rps_min k8s_ratelimit_cluster_rps_max"
        " k8s_ratelimit_increase_factor k8s_ratelimit_backoff_factor config_change_check_interval"
        " overall_stats_log_interval copying_manager_stats_log_interval bandwidth_stats_log_interval",
        "float",
        None,
    ),
    (
        "copying_thread_profile_output_path stdout_severity k8s_api_url k8s_kubelet_ca_cert k8s_service_account_cert"
        " k8s_service_account_token k8s_service_account_namespace k8s_ratelimit_cluster_num_agents"
        " k8s_ratelimit_strategy profile_clock profile_log_name memory_profile_log_name agent_data_path",
        "str",
        None,
    ),
    ("json_library", "str", "auto"),
    ("max_send_rate_enforcement", "str", "unlimited"),
    ("k8s_ignore_namespaces k8s_include_namespaces", "strings", None),
    ("journald_logs k8s_logs", "objects", None),
    ("disable_max_send_rate_enforcement_overrides", "bool", False),
):
    for _name in _names.split():
        _UNUSED[_name] = (_kind, _default)

# Per log entry: options shipctl does not implement (type, the agent's default).
_LOG_UNUSED: dict[str, tuple[str, Any]] = {
    "ignore_stale_files": ("bool", False),
    "staleness_threshold_secs": ("float", 300.0),
    "minimum_scan_interval": ("int", None),
    "parse_lines_as_json": ("bool", None),
    "parse_format": ("str", "raw"),
    "json_message_field": ("str", "log"),
    "json_timestamp_field": ("str", "time"),
}


@record
class Mapped:
    """agent.json and its fragments in shipctl's TOML shape, for config._merge."""

    files: list[tuple[Path, dict[str, Any]]]
    read: list[str]  # every file read, main first
    warnings: list[str] = field(default_factory=list)
    # Remarks for ``config convert``: id() of an output table -> comment lines (a key without equivalent).
    notes: dict[int, list[str]] = field(default_factory=dict)
    vars: AgentVars | None = None  # import_vars as substituted (values, secrets, TOML forms for convert)
    key_env: str | None = None  # the API key came from this environment variable (no file sets api_key)


def is_agent_json(path: Path) -> bool:
    """By extension, else by content: a TOML file cannot begin with ``{`` or a ``//`` / ``/*`` comment."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return True
    if suffix == ".toml":
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith((b"{", b"//", b"/*"))


def read_json(path: Path, warnings: list[str]) -> dict[str, Any]:
    """One file in the agent's dialect; a syntax error names the file, line and column."""
    from shipctl.scalyr_json import ScalyrJsonError, parse_document, position

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        doc = parse_document(data)
    except ScalyrJsonError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.line}, column {exc.column}: {exc.message}") from None
    if not isinstance(doc.value, dict):
        raise ConfigError(f"{path}: expected a JSON object {{...}} at the top, got {describe(doc.value)}")
    if doc.trailing is not None:
        line, column = position(data, doc.trailing)
        warnings.append(
            f"{path}: line {line}, column {column}: text after the closing '}}' is ignored (as by the agent)"
        )
    return doc.value


def fragment_dir_files(directory: Path, ext: str, warnings: list[str]) -> list[Path]:
    """The files of a conf.d / agent.d directory that are read (sorted), warning about every other file."""
    if not directory.is_dir():
        return []
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        warnings.append(f"{directory}: cannot list the directory: {exc.strerror}; its files are not read")
        return []
    for name in names:
        p = directory / name
        if not p.is_file():
            continue
        if name.endswith(ext):
            out.append(p)
        else:
            warnings.append(f"{p}: not read (only *{ext} files in {directory} are read)")
    return out


def load(path: Path, *, env_optional: bool = False) -> Mapped:
    """Read agent.json, its fragments (``config_directory``, default agent.d, and $SCALYR_EXTRA_CONFIG_DIR), merge
    them as the agent does and map the result. ``env_optional``: no API key anywhere is not an error (``status``
    and ``state`` must work in a shell without it): the key reads from $SCALYR_API_KEY, which is not set."""
    from shipctl import schema
    from shipctl.agentvars import AgentVars

    warnings: list[str] = []
    where = Where(str(path))
    av = AgentVars()
    main = av.apply(read_json(path, warnings), where)  # first, as the agent: config_directory may use a variable
    conf_dir_raw = _str(main.get("config_directory", DEFAULT_CONFIG_DIR), where.key("config_directory"))
    dirs = [_resolve(conf_dir_raw or DEFAULT_CONFIG_DIR, path.parent)]
    extra = os.environ.get("SCALYR_EXTRA_CONFIG_DIR")
    if extra:
        dirs.append(_resolve(extra, path.parent))
    owner = {k: path for k in main}  # top-level key -> the file that set it
    top = dict(main)
    fragments: list[tuple[Path, dict[str, Any]]] = []
    for d in dirs:
        for fp in fragment_dir_files(d, ".json", warnings):
            content = read_json(fp, warnings)
            for k in content:
                if k in MULTI:
                    continue
                if k in owner:
                    raise Where(str(fp), k).error(
                        f"already set in {owner[k]}; only {', '.join(MULTI)} may be set in more than one file"
                        " (as for the agent)"
                    )
                owner[k] = fp
            content = av.apply(content, Where(str(fp)))  # its own import_vars only
            for k, v in content.items():
                if k not in MULTI:
                    top[k] = v
            fragments.append((fp, content))
    schema.set_secret_values(av.secret_values)  # from here on, errors mask them
    m = _Mapper(path, owner, warnings)
    m.env_optional = env_optional
    files = [(path, m.main(top))]
    files.extend((fp, m.fragment(fp, content)) for fp, content in fragments)
    if m.key_env is not None:  # masked like a variable's secret
        av.imported[m.key_env] = os.environ.get(m.key_env, "")
        av.secret_names.add(m.key_env)
    return Mapped(files, [str(path)] + [str(fp) for fp, _ in fragments], warnings, m.notes, av, m.key_env)


def load_fragment(
    path: Path, warnings: list[str], notes: dict[int, list[str]] | None = None, av: AgentVars | None = None
) -> dict[str, Any]:
    """An agent-style JSON fragment found in the conf.d of a TOML config: its logs, monitors and server
    attributes. Its own import_vars are substituted with the agent's rules (shipctl/agentvars.py); a "$NAME"
    left after that is then read with the TOML config's variables."""
    from shipctl.agentvars import AgentVars

    av = av if av is not None else AgentVars()
    content = av.apply(read_json(path, warnings), Where(str(path)))
    m = _Mapper(path, {}, warnings)
    if notes is not None:
        m.notes = notes
    for k in content:
        if k not in MULTI:
            raise Where(str(path), k).error(
                f"not allowed in a fragment of a TOML config (expected one of: {', '.join(MULTI)})"
            )
    return m.fragment(path, content)


def _resolve(p: str, base: Path) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


# --- the agent's type rules ---------------------------------------------------------------------------------


def _str(v: Any, w: Where) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise w.error(f"expected a string, got {describe(v, secret=w.secret)}")


def _bool(v: Any, w: Where) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        if abs(v) < 1e-10:
            return False
        if abs(1 - v) < 1e-10:
            return True
    elif isinstance(v, str):
        return v not in ("", "f", "false")  # the agent's rule: any other string is true
    raise w.error(f"expected true or false, got {describe(v, secret=w.secret)}")


def _int(v: Any, w: Where) -> int:
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        try:
            return int(float(v)) if isinstance(v, str | float) else v
        except (ValueError, OverflowError):
            pass
    raise w.error(f"expected an integer, got {describe(v, secret=w.secret)}")


def _float(v: Any, w: Where) -> float:
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        try:
            return float(v)
        except ValueError:
            pass
    raise w.error(f"expected a number, got {describe(v, secret=w.secret)}")


def _strings(v: Any, w: Where) -> list[str]:
    if not isinstance(v, list):
        raise w.error(f"expected an array of strings, got {describe(v)}")
    for i, x in enumerate(v):
        if not isinstance(x, str):
            raise w.index(i).error(f"expected a string, got {describe(x)}")
    return v


def _objects(v: Any, w: Where) -> list[dict[str, Any]]:
    if not isinstance(v, list):
        raise w.error(f"expected an array of objects, got {describe(v)}")
    for i, x in enumerate(v):
        if not isinstance(x, dict):
            raise w.index(i).error(f"expected an object {{...}}, got {describe(x)}")
    return v


def _attrs(v: Any, w: Where) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise w.error(f"expected an object {{...}}, got {describe(v)}")
    for k, x in v.items():
        if x is not None and not isinstance(x, str) and (isinstance(x, bool) or not isinstance(x, int | float)):
            raise w.key(k).error(f"expected a string or number (as the agent requires), got {describe(x)}")
    return {k: x for k, x in v.items() if x is not None}


_CHECK = {"bool": _bool, "int": _int, "float": _float, "str": _str, "strings": _strings, "objects": _objects}


def _env(name: str) -> str | None:
    """The agent reads an option missing from every file from $SCALYR_<NAME> (or its lower-case spelling)."""
    for n in (name.upper(), name.lower()):
        v = os.environ.get(n)
        if v is not None:
            return v
    return None


def _env_bool(v: str, w: Where) -> bool:
    low = v.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no", ""):
        return False
    raise w.error(f"expected true or false, got {v!r}")


class _Mapper:
    def __init__(self, main_path: Path, owner: dict[str, Path], warnings: list[str]) -> None:
        self.main_path = main_path
        self.owner = owner
        self.warnings = warnings
        self.notes: dict[int, list[str]] = {}
        self.log_dir = DEFAULT_LOG_DIR
        self.later_log_dir: tuple[Path, str | None] | None = None  # (fragment, value): agent_log_path set there
        self.top: dict[str, Any] = {}
        self.ids: dict[str, int] = {}
        self.module_paths: list[str] = []
        self.max_line_size: int | None = None  # the top-level defaults of every log entry
        self.line_wait: float | None = None
        self.env_optional = False
        self.key_env: str | None = None  # the variable the API key was read from, when no file sets it

    def where(self, key: str) -> Where:
        return Where(str(self.owner.get(key, self.main_path))).key(key)  # .key(): marks api_key & co secret

    def warn(self, table: dict[str, Any], w: Where, text: str) -> None:
        self.warnings.append(f"{w}: {text}")
        self.notes.setdefault(id(table), []).append(f"{w}: {text}")

    def get(self, key: str, check: Any, env: str | None = None) -> Any:
        """A top-level option with the agent's type rule; from the environment when no file sets it."""
        w = self.where(key)
        if key in self.top and self.top[key] is not None:
            return check(self.top[key], w)
        raw = _env(env or f"SCALYR_{key}")
        if raw is None:
            return None
        ew = Where(f"${(env or 'SCALYR_' + key).upper()}")
        if check is _bool:
            return _env_bool(raw, ew)
        return check(raw, ew)

    # --- the main file (with the top-level keys of the fragments) ----------------------------------------
    def main(self, top: dict[str, Any]) -> dict[str, Any]:
        self.top = top
        out: dict[str, Any] = {}
        agent: dict[str, Any] = {}
        sink: dict[str, Any] = {"type": "scalyr", "id": SINK_ID}
        handled = {"import_vars", "logs", "monitors", "server_attributes", "config_directory"}

        # Base of relative log paths, as the agent resolves them: each file's logs are checked (and joined to
        # agent_log_path) before that file's own top-level keys are merged in, so agent_log_path set in a fragment
        # applies to the fragments after it only; the main file's logs, that fragment's and the ones before it
        # use the environment's $SCALYR_AGENT_LOG_PATH or the default.
        handled.add("agent_log_path")
        owner = self.owner.get("agent_log_path", self.main_path)
        if owner == self.main_path:
            log_dir = self.get("agent_log_path", _str)
        else:
            self.later_log_dir = (owner, _str(self.top["agent_log_path"], self.where("agent_log_path")))
            log_dir = _env("SCALYR_agent_log_path")
        if log_dir:
            self.log_dir = log_dir
        self.module_paths = [
            p for p in (self.get("additional_monitor_module_paths", _str) or "").split(os.pathsep) if p
        ]
        handled.add("additional_monitor_module_paths")
        # The default interval of every monitor, the implicit ones too (as in the agent): an [agent] key.
        interval = self.get("global_monitor_sample_interval", _float)
        handled.add("global_monitor_sample_interval")
        if interval is not None:
            if not interval > 0:
                raise self.where("global_monitor_sample_interval").error(f"expected a number above 0, got {interval!r}")
            agent["monitor_sample_interval"] = interval

        # The Scalyr sink.
        handled.update(("api_key", "scalyr_server", "allow_http"))
        api_key_where = self.where("api_key")
        if "api_key" in top and top["api_key"] is not None:
            key = _str(top["api_key"], api_key_where)
            if not key:
                raise api_key_where.error("expected a Write Logs API key, got an empty string")
            sink["api_key"] = key
        else:
            name = next((n for n in ("SCALYR_API_KEY", "scalyr_api_key") if os.environ.get(n) is not None), None)
            if name is None and self.env_optional:
                name = "SCALYR_API_KEY"  # read as empty (status works in a shell without the key)
                self.warnings.append(f"{api_key_where}: environment variable {name} is not set; read as empty")
            if name is None:
                raise api_key_where.error(
                    "missing required key (a Write Logs API key; or set $SCALYR_API_KEY, which the agent reads too)"
                )
            # The value itself: the mapped files are not substituted again (config._merge(substitute=False)).
            sink["api_key"] = os.environ.get(name, "")
            self.key_env = name
        allow_http = self.get("allow_http", _bool) or False
        server = self.get("scalyr_server", _str, env="SCALYR_SERVER")
        if server is not None:
            server = server.strip()
            if not allow_http and "$" not in server:
                # The agent's rule: without allow_http the server is always reached over https.
                fixed = server if "://" in server else "https://" + server
                if fixed.startswith("http://"):
                    fixed = "https://" + fixed[len("http://") :]
                if fixed != server:
                    self.warn(
                        sink, self.where("scalyr_server"), f"{server!r} is reached as {fixed!r} (allow_http is false)"
                    )
                server = fixed
            sink["server"] = server
        if allow_http:
            sink["allow_http"] = True
        for key, option, check in (
            ("verify_server_certificate", "verify_tls", _bool),
            ("ca_cert_path", "ca_bundle", _str),
            ("https_proxy", "https_proxy", _str),
            ("http_proxy", "http_proxy", _str),
            ("enforce_monotonic_timestamps", "enforce_monotonic_timestamps", _bool),
            ("request_deadline", "read_timeout", _float),
        ):
            handled.add(key)
            value = self.get(key, check)
            if value is not None:
                sink[option] = value
        handled.update(("compression_type", "compression_level"))
        ctype = self.get("compression_type", _str)
        if ctype is not None and ctype not in COMPRESSION:
            raise self.where("compression_type").error(f"expected one of {', '.join(COMPRESSION)}, got {ctype!r}")
        level = self.get("compression_level", _int)
        if ctype in ("deflate", "none"):
            sink["compression"] = ctype
        elif ctype is not None:
            # shipctl only deflates; the level given is on the other algorithm's scale, so it does not carry over.
            lo, hi = AGENT_LEVELS[ctype]
            given = (
                f"; compression_level {level} (a {ctype} level, {lo} to {hi}) is not used" if level is not None else ""
            )
            self.warn(
                sink,
                self.where("compression_type"),
                f"{ctype!r} is not implemented by shipctl; deflate (level {SHIPCTL_LEVEL}, shipctl's default) is used"
                f" instead{given}",
            )
        if level is not None and ctype in (None, "deflate"):
            if 1 <= level <= 9:
                sink["compression_level"] = level
            else:
                sink["compression_level"] = AGENT_DEFLATE_DEFAULT
                self.warn(
                    sink,
                    self.where("compression_level"),
                    f"{level} is not a deflate level (1 to 9); level {AGENT_DEFLATE_DEFAULT} is used, as by the agent",
                )
        handled.add("max_allowed_request_size")
        size = self.get("max_allowed_request_size", _int)
        if size is not None:
            legacy = (self.get("max_send_rate_enforcement", _str) == "legacy") or bool(
                self.get("disable_max_send_rate_enforcement_overrides", _bool)
            )
            if legacy and size >= 64 * 1024:
                sink["max_request_bytes"] = size
            else:
                why = (
                    "below shipctl's minimum of 65536"
                    if legacy
                    else "overridden by max_send_rate_enforcement, as by the agent"
                )
                self.warn(sink, self.where("max_allowed_request_size"), f"{size} not used ({why}); 5900000 applies")

        # [agent]
        for key in ("implicit_metric_monitor", "implicit_agent_process_metrics_monitor"):
            handled.add(key)
            value = self.get(key, _bool)
            if value is not None:
                agent[key] = value
        handled.add("implicit_agent_log_collection")
        value = self.get("implicit_agent_log_collection", _bool)
        agent["implicit_agent_log_collection"] = True if value is None else value  # on, as in the agent

        # Defaults of every log entry.
        handled.update(("max_line_size", "line_completion_wait_time"))
        self.max_line_size = self.get("max_line_size", _int)
        self.line_wait = self.get("line_completion_wait_time", _float)

        handled.add("strip_domain_from_default_server_host")
        attrs = self.server_attributes(top, Where(str(self.main_path)))
        if self.get("strip_domain_from_default_server_host", _bool) and "serverHost" not in self._all_server_hosts():
            import socket

            attrs["serverHost"] = socket.gethostname().split(".")[0]
        if attrs:
            out["server_attributes"] = attrs

        for key, value in top.items():
            if key in handled:
                continue
            w = self.where(key)
            if key in _UNUSED:
                kind, default = _UNUSED[key]
                if value is None and kind == "str":
                    continue
                checked = _CHECK[kind](value, w)
                if key == "debug_level" and not 0 <= checked <= 5:
                    raise w.error("The debug level must be between 0 and 5 inclusive")
                if key == "json_library" and checked not in ("auto", "json", "ujson", "orjson"):
                    raise w.error(f"expected one of auto, json, ujson, orjson, got {checked!r}")
                if checked != default and key not in (
                    "max_send_rate_enforcement",
                    "disable_max_send_rate_enforcement_overrides",
                ):
                    self.warn(out, w, "an agent option shipctl does not implement; ignored")
            else:
                self.warn(out, w, "unknown key; ignored (the agent ignores it too)")

        if agent:
            out["agent"] = agent
        out.update(self.entries(top, Where(str(self.main_path))))
        out["sinks"] = [sink]
        return out

    def _all_server_hosts(self) -> set[str]:
        attrs = self.top.get("server_attributes")
        return set(attrs) if isinstance(attrs, dict) else set()

    def fragment(self, path: Path, content: dict[str, Any]) -> dict[str, Any]:
        w = Where(str(path))
        out: dict[str, Any] = {}
        attrs = self.server_attributes(content, w)
        if attrs:
            out["server_attributes"] = attrs
        for key in ("journald_logs", "k8s_logs"):
            if key in content:
                _objects(content[key], w.key(key))
                if content[key]:
                    self.warn(out, w.key(key), "an agent option shipctl does not implement; ignored")
        out.update(self.entries(content, w))
        if self.later_log_dir is not None and self.later_log_dir[0] == path:
            self.log_dir = self.later_log_dir[1] or DEFAULT_LOG_DIR  # for the fragments read after this one
        return out

    def server_attributes(self, data: dict[str, Any], w: Where) -> dict[str, Any]:
        if data.get("server_attributes") is None:
            return {}
        return _attrs(data["server_attributes"], w.key("server_attributes"))

    def entries(self, data: dict[str, Any], w: Where) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if data.get("logs") is not None:
            out["logs"] = [
                self.log(x, w.key("logs").index(i)) for i, x in enumerate(_objects(data["logs"], w.key("logs")))
            ]
        if data.get("monitors") is not None:
            items = _objects(data["monitors"], w.key("monitors"))
            out["monitors"] = [self.monitor(x, w.key("monitors").index(i)) for i, x in enumerate(items)]
        return out

    # --- logs ---------------------------------------------------------------------------------------------
    def log(self, item: dict[str, Any], w: Where) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if item.get("path") is None:
            raise w.key("path").error("missing required key (the file or glob to read)")
        path = _str(item["path"], w.key("path")) or ""
        out["path"] = path if os.path.isabs(path) or not path else os.path.join(self.log_dir, path)
        if "exclude" in item:
            out["exclude"] = list(_strings(item["exclude"], w.key("exclude")))
        attrs = _attrs(item["attributes"], w.key("attributes")) if item.get("attributes") is not None else {}
        if item.get("parser") is not None:
            attrs["parser"] = _str(item["parser"], w.key("parser"))  # the agent moves it into the attributes
        if attrs:
            out["attributes"] = attrs
        copy = item.get("copy_from_start")
        out["start_at"] = "beginning" if copy is not None and _bool(copy, w.key("copy_from_start")) else "end"
        if self.max_line_size is not None:
            out["max_line_size"] = self.max_line_size
        if self.line_wait is not None:
            out["line_completion_wait"] = self.line_wait
        if item.get("lineGroupers") is not None:
            out["line_groupers"] = [
                self.grouper(g, w.key("lineGroupers").index(i))
                for i, g in enumerate(_objects(item["lineGroupers"], w.key("lineGroupers")))
            ]
        for key, fields in (
            ("sampling_rules", ("match_expression", "sampling_rate")),
            ("redaction_rules", ("match_expression", "replacement", "hash_salt")),
        ):
            if item.get(key) is None:
                continue
            rules = []
            for i, rule in enumerate(_objects(item[key], w.key(key))):
                rw = w.key(key).index(i)
                if rule.get("match_expression") is None:
                    raise rw.key("match_expression").error("missing required key (a regular expression)")
                r: dict[str, Any] = {"match_expression": _str(rule["match_expression"], rw.key("match_expression"))}
                if key == "sampling_rules":
                    if rule.get("sampling_rate") is None:
                        raise rw.key("sampling_rate").error("missing required key (a number from 0 to 1)")
                    r["sampling_rate"] = _float(rule["sampling_rate"], rw.key("sampling_rate"))
                for k in ("replacement", "hash_salt"):
                    if key == "redaction_rules" and rule.get(k) is not None:
                        r[k] = _str(rule[k], rw.key(k))
                for k in rule:
                    if k not in fields:
                        self.warn(r, rw.key(k), "unknown key; ignored (the agent ignores it too)")
                rules.append(r)
            out[key] = rules
        if "rename_logfile" in item:
            self.rename(item["rename_logfile"], w.key("rename_logfile"), out)
        if "rename_no_original" in item:
            # The agent looks only at whether the key is there, whatever its value.
            out["rename_no_original"] = True
            if item["rename_no_original"] is not True:
                self.warn(
                    out,
                    w.key("rename_no_original"),
                    f"{describe(item['rename_no_original'])}: the agent only checks that the key is present;"
                    " original_file is not sent",
                )
        known = {
            "path",
            "exclude",
            "attributes",
            "parser",
            "copy_from_start",
            "lineGroupers",
            "sampling_rules",
            "redaction_rules",
            "rename_logfile",
            "rename_no_original",
        }
        for key, value in item.items():
            if key in known:
                continue
            kw = w.key(key)
            if key in _LOG_UNUSED:
                kind, default = _LOG_UNUSED[key]
                checked = value if kind == "any" else _CHECK[kind](value, kw)
                if checked is not None and checked != default:
                    self.warn(out, kw, "an agent log option shipctl does not implement; ignored")
            else:
                self.warn(out, kw, "unknown key; ignored (the agent ignores it too)")
        return out

    def rename(self, value: Any, w: Where, out: dict[str, Any]) -> None:
        """rename_logfile as the agent reads it: a string template, or {match, replacement}; anything the agent
        would never rename with (other types, an incomplete table, a bad template or regex) is ignored, with a
        warning here where the agent would warn while running."""
        import re

        from shipctl import logrename

        if isinstance(value, str):
            problem = logrename.check(value)
            if problem is None:
                out["rename_logfile"] = value
                return
        elif isinstance(value, dict):
            if "match" not in value or "replacement" not in value:
                self.warn(out, w, "expected both match and replacement (as the agent); ignored, the path is sent")
                return
            match, replacement = _str(value["match"], w.key("match")), _str(value["replacement"], w.key("replacement"))
            try:
                problem = logrename.check(logrename.RenameRule(re.compile(match or ""), replacement or ""))
            except re.error as exc:
                problem = f"invalid regular expression {match!r}: {exc}"
            if problem is None:
                out["rename_logfile"] = {"match": match, "replacement": replacement}
                return
        elif value is None:
            return
        else:
            problem = f"expected a string or {{match, replacement}}, got {describe(value)}"
        self.warn(out, w, f"{problem}; ignored, the path is sent (the agent would warn while running)")

    def grouper(self, g: dict[str, Any], w: Where) -> dict[str, Any]:
        if g.get("start") is None:
            raise w.key("start").error("missing required key (a regular expression)")
        out = {"start": _str(g["start"], w.key("start"))}
        modes = [k for k in GROUPER_MODES if g.get(k) is not None]
        if len(modes) != 1:
            got = f"{len(modes)}: {', '.join(modes)}" if modes else "none"
            raise w.error(f"expected exactly one of {', '.join(GROUPER_MODES)} (got {got})")
        out[GROUPER_MODES[modes[0]]] = _str(g[modes[0]], w.key(modes[0]))
        for k in g:
            if k != "start" and k not in GROUPER_MODES:
                self.warn(out, w.key(k), "unknown key; ignored (the agent ignores it too)")
        return out

    # --- monitors -----------------------------------------------------------------------------------------
    def monitor(self, item: dict[str, Any], w: Where) -> dict[str, Any]:
        if item.get("module") is None:
            raise w.key("module").error('missing required key (e.g. "scalyr_agent.builtin_monitors.shell_monitor")')
        module = (_str(item["module"], w.key("module")) or "").strip()
        if not module:
            raise w.key("module").error('expected a module name such as "scalyr_agent.builtin_monitors.shell_monitor"')
        short = module.removeprefix(MODULE_PREFIX)
        mtype = BUILTIN_MONITORS.get(short) if "." not in short else None
        out: dict[str, Any] = {"type": mtype or CUSTOM_MONITOR}
        mid = _str(item["id"], w.key("id")) if item.get("id") is not None else None
        if not mid:
            base = mtype or short.rsplit(".", 1)[-1]
            n = self.ids[base] = self.ids.get(base, 0) + 1
            mid = base if n == 1 else f"{base}_{n}"
        out["id"] = mid
        if item.get("sample_interval") is not None:  # else [agent] monitor_sample_interval applies
            out["sample_interval"] = _float(item["sample_interval"], w.key("sample_interval"))
        rest = {k: v for k, v in item.items() if k not in ("module", "id", "sample_interval")}
        if mtype is None:
            if module.startswith(MODULE_PREFIX):
                self.warn(
                    out,
                    w.key("module"),
                    "a built-in agent monitor shipctl has no equivalent for; it runs as a scalyr_monitor, which"
                    " needs the scalyr_agent package importable",
                )
            out["module"] = module
            if self.module_paths:
                out["module_paths"] = list(self.module_paths)
            # id and sample_interval are the monitor entry's own (the scalyr_monitor type refuses them in config).
            out["config"] = {k: v for k, v in item.items() if k not in ("module", "id", "sample_interval")}
            return out
        if "log_path" in rest:
            _str(rest["log_path"], w.key("log_path"))
            self.warn(out, w.key("log_path"), "shipctl queues monitor output itself (no per-monitor log file); ignored")
            rest.pop("log_path")
        hints, names = _options_of(mtype)
        for key, value in rest.items():
            kw = w.key(key)
            name = names.get(key)
            if name is None:
                self.warn(out, kw, f"not an option of shipctl's {mtype} monitor; ignored")
                continue
            out[key] = _coerce(hints[name], value, kw)
        return out


def _options_of(mtype: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A built-in monitor type's option fields: type hints, and every accepted spelling -> field name."""
    from shipctl import plugins

    cls = plugins.resolve(plugins.registry().monitors[mtype].options)
    hints = typing.get_type_hints(cls)
    names: dict[str, str] = {}
    for f in records.fields(cls):
        names[f.name] = f.name
        for alias in f.metadata.get("aliases", ()):
            names[alias] = f.name
    return hints, names


def _coerce(tp: Any, value: Any, w: Where) -> Any:
    """The agent's loose scalars ("30" for 30, 1 for true) turned into the type shipctl's option expects;
    anything else is left for the option's own check."""
    if tp is bool:
        return _bool(value, w)
    if tp is int and isinstance(value, str | float):
        return _int(value, w)
    if tp is float and isinstance(value, str | int) and not isinstance(value, bool):
        return _float(value, w)
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value
