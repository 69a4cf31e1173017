"""A ``type = "plugin"`` monitor's options, and the plugin they resolve to.

Exactly one of ``descriptor`` (a Panoptes ``.panoptes-plugin`` INI file), ``module`` (a ``.py`` path or an
importable module name, with ``class`` naming the class or function in it) or ``plugin`` (a name registered by an
installed package through the ``shipctl.plugins`` entry-point group, or found in ``plugin_dirs``). The table's
``execute_frequency``, ``resource_filter`` and ``transforms`` override the descriptor's. Relative paths are
relative to the config file. Everything is checked when the config is, so a mistake is exit 78 naming the file
and key; only the plugin's code is imported when it runs.
"""

from __future__ import annotations

import configparser
import copy
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipctl.config import MonitorConfig
from shipctl.errors import ConfigError, MonitorSetupError
from shipctl.pyplugins import filter as rfilter
from shipctl.pyplugins.resources import KEY
from shipctl.records import record
from shipctl.schema import Where, describe, field, one_of, positive

DESCRIPTOR_SUFFIX = ".panoptes-plugin"
FOUND_IN_PLUGINS_DIR = "agent.plugins_dir"  # the key path of the monitors pyplugins.scan makes


@record(frozen=True)
class PluginOptions:
    """Options of the ``plugin`` monitor: a Python polling plugin."""

    descriptor: str = field("", doc="a .panoptes-plugin file")
    module: str = field("", doc="a .py file, or an importable module name")
    class_name: str = field("", aliases=("class",), doc="class (with run(context)) or function in the module")
    plugin: str = field("", doc="a plugin registered by an installed package, or found in plugin_dirs")
    plugin_dirs: tuple[str, ...] = ("plugins",)
    resources: Any = None  # a JSON list file, or a list of files and resource tables
    execute_frequency: int | float | None = None
    resource_filter: str | None = None
    transforms: Mapping[str, str] | None = None
    config: Mapping[str, Any] | None = None
    secrets: Mapping[str, str] | None = field(None, secret=True)
    output: str = field("events", check=one_of("events", "panoptes"))
    timeout: float = field(60.0, check=positive, doc="seconds for all resources of one run")
    # Resources run on this many threads; 1 for a plugin whose module-level state is not thread-safe.
    concurrency: int = field(4, check=positive)

    def finish(self, mon: MonitorConfig) -> PluginSpec:
        """Called by ``plugins.monitor_options``: read the descriptor, check everything, resolve paths."""
        try:
            return build(self, mon)
        except ConfigError as exc:
            if mon.where.path == FOUND_IN_PLUGINS_DIR:  # a dropped-in descriptor that is broken fails alone
                raise MonitorSetupError(str(exc)) from None
            raise


@record(frozen=True)
class EntryRef:
    """How to find the plugin's code: ``file`` (a path), ``module`` (an importable name) plus ``attr`` ("" = the
    module's only plugin class, else its ``poll`` function)."""

    kind: str
    target: str
    attr: str = ""


@record(frozen=True)
class PluginSpec:
    """A plugin monitor, resolved from its config or descriptor: what to run, how often, on what."""

    monitor_id: str
    name: str
    source: str  # where the plugin came from, for messages
    entry: EntryRef
    panoptes: bool  # loaded from a .panoptes-plugin descriptor
    execute_frequency: float  # 0: disabled (Panoptes skips a plugin without one)
    resource_filter: rfilter.ResourceFilter | None
    transforms: Mapping[str, frozenset[str]]  # group type -> counters to rate
    config: Mapping[str, Any]
    resources: tuple[str | Mapping[str, Any], ...]  # () = this host
    secrets: Mapping[str, str]
    output: str
    timeout: float
    concurrency: int
    config_file: str
    disabled_why: str = ""

    @property
    def sample_interval(self) -> float | None:
        """The schedule ``shipctl run`` keeps for this monitor: the execute frequency."""
        return self.execute_frequency or None

    def fresh_config(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.config))


@record(frozen=True)
class Descriptor:
    """A ``.panoptes-plugin`` descriptor file, read."""

    path: Path
    name: str
    module: Path
    sections: dict[str, dict[str, str]]
    execute_frequency: int | None
    resource_filter: str | None
    transforms: dict[str, str]


def _base(mon: MonitorConfig) -> Path:
    f = Path(mon.where.file)
    return f.parent if f.is_absolute() else Path.cwd()


def _path(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def build(opts: PluginOptions, mon: MonitorConfig) -> PluginSpec:
    where = mon.where
    base = _base(mon)
    given = [k for k in ("descriptor", "module", "plugin") if getattr(opts, k)]
    if len(given) != 1:
        got = f"got {', '.join(given)}" if given else "got none"
        raise where.error(
            f'expected exactly one of descriptor = "x.panoptes-plugin", module = "x.py" or plugin = "name" ({got})'
        )
    desc: Descriptor | None = None
    if opts.descriptor:
        desc = read_descriptor(_path(base, opts.descriptor), where.key("descriptor"))
        entry = EntryRef("file", str(desc.module), opts.class_name)
        name, source = desc.name, str(desc.path)
    elif opts.module:
        entry, name, source = _module_entry(opts, base, where)
    else:
        entry, desc, name, source = _named(opts, base, where)
    panoptes = desc is not None

    freq_where = where.key("execute_frequency")
    if opts.execute_frequency is not None:
        freq = float(opts.execute_frequency)
        if freq < 0:
            raise freq_where.error(f"expected a number of seconds (0 disables the plugin), got {freq:g}")
    elif desc is not None:
        freq = float(desc.execute_frequency or 0)
    else:
        freq = mon.sample_interval
    disabled = ""
    if freq <= 0:
        origin = "the config" if opts.execute_frequency is not None else str(desc.path if desc else source)
        disabled = f"execute_frequency is missing or 0 in {origin}: plugin not run (as in Panoptes)"

    if opts.resource_filter is not None:
        filter_text, filter_where = opts.resource_filter, where.key("resource_filter")
    elif desc is not None:
        filter_text, filter_where = desc.resource_filter or "", Where(str(desc.path), "[main] resource_filter")
    else:
        filter_text, filter_where = "", where
    try:
        rf = rfilter.parse(filter_text) if filter_text.strip() else None
    except rfilter.FilterError as exc:
        raise filter_where.error(f"invalid resource filter: {exc}") from None

    if opts.transforms is not None:
        raw_transforms, t_where = dict(opts.transforms), where.key("transforms")
    elif desc is not None:
        raw_transforms, t_where = desc.transforms, Where(str(desc.path), "[transforms]")
    else:
        raw_transforms, t_where = {}, where
    transforms: dict[str, set[str]] = {}
    for key, text in raw_transforms.items():
        try:
            group_type, counters = parse_transform(text)
        except ValueError as exc:
            raise t_where.key(key).error(str(exc)) from None
        transforms.setdefault(group_type, set()).update(counters)

    config: dict[str, Any] = copy.deepcopy(desc.sections) if desc else {}
    for k, v in (opts.config or {}).items():
        if isinstance(v, Mapping) and isinstance(config.get(k), dict):
            config[k].update(_plain(v))
        else:
            config[k] = _plain(v)
    main = config.setdefault("main", {})
    if isinstance(main, dict):
        # A string, as configparser gives it to Panoptes plugins (which int() it).
        main["execute_frequency"] = str(int(freq)) if freq.is_integer() else str(freq)
        if filter_text:
            main["resource_filter"] = filter_text
    if raw_transforms:
        config["transforms"] = dict(raw_transforms)

    return PluginSpec(
        monitor_id=mon.id,
        name=name,
        source=source,
        entry=entry,
        panoptes=panoptes,
        execute_frequency=freq if freq > 0 else 0.0,
        resource_filter=rf,
        transforms=types.MappingProxyType({k: frozenset(v) for k, v in transforms.items()}),
        config=types.MappingProxyType(config),
        resources=_resources(opts.resources, base, where.key("resources")),
        secrets=types.MappingProxyType(dict(opts.secrets or {})),
        output=opts.output,
        timeout=opts.timeout,
        concurrency=opts.concurrency,
        config_file=mon.where.file,
        disabled_why=disabled,
    )


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def parse_transform(text: Any) -> tuple[str, list[str]]:
    """``rate:<group type>:<counter>[,<counter>...]`` (the left-hand key of the line is only a label)."""
    if not isinstance(text, str):
        raise ValueError(f'expected a string such as "rate:<group type>:<counter>,<counter>", got {describe(text)}')
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f'expected "rate:<group type>:<counter>[,<counter>...]", got {text!r}')
    kind, group_type, names = (p.strip() for p in parts)
    if kind != "rate":
        raise ValueError(f"unknown transform {kind!r} in {text!r} (only rate is supported)")
    if not group_type:
        raise ValueError(f"missing the group type in {text!r}")
    counters = [c.strip() for c in names.split(",") if c.strip()]
    if not counters:
        raise ValueError(f"no counter names in {text!r}")
    for c in counters:
        if not KEY.match(c):
            raise ValueError(f"{c!r} in {text!r} is not a metric name")
    return group_type, counters


def _resources(value: Any, base: Path, where: Where) -> tuple[str | Mapping[str, Any], ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str | Mapping) else value
    if not isinstance(items, list):
        raise where.error(f"expected a JSON file path or a list of paths and resource tables, got {describe(value)}")
    out: list[str | Mapping[str, Any]] = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            out.append(str(_path(base, item)))
        elif isinstance(item, Mapping):
            out.append(_plain(item))
        else:
            raise where.index(i).error(f"expected a JSON file path or a resource table, got {describe(item)}")
    return tuple(out)


def read_descriptor(path: Path, where: Where) -> Descriptor:
    """A ``.panoptes-plugin`` file with configparser's semantics (option names lower-cased, ``%%`` for ``%``)."""
    if not path.is_file():
        raise _missing(where.error(f"{path}: descriptor not found"))
    cp = configparser.ConfigParser()
    try:
        cp.read_string(path.read_text(), source=str(path))
        sections = {s: {k: cp.get(s, k) for k in cp.options(s)} for s in cp.sections()}
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid descriptor: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise _missing(where.error(f"{path}: cannot read descriptor: {exc.strerror}")) from None
    core = sections.get("Core", {})
    if not core.get("module"):
        raise Where(str(path), "[Core] Module").error("missing: the path of the plugin's .py file")
    main = sections.get("main", {})
    freq: int | None = None
    if main.get("execute_frequency", "").strip():
        try:
            freq = int(main["execute_frequency"])
        except ValueError:
            raise Where(str(path), "[main] execute_frequency").error(
                f"expected a whole number of seconds, got {main['execute_frequency']!r}"
            ) from None
    return Descriptor(
        path=path,
        name=core.get("name") or path.name.removesuffix(DESCRIPTOR_SUFFIX),
        module=_descriptor_module(path, core["module"]),
        sections=sections,
        execute_frequency=freq,
        resource_filter=main.get("resource_filter"),
        transforms=dict(sections.get("transforms", {})),
    )


def _descriptor_module(descriptor: Path, text: str) -> Path:
    """The Module path as written (relative to the descriptor), with or without ``.py``, or a package
    directory; when it does not exist (a path from the Panoptes container), the file of that name beside the
    descriptor."""
    given = _path(descriptor.parent, text.strip())
    beside = descriptor.parent / given.name
    for p in (given, beside):
        for cand in (p, p.with_name(p.name + ".py"), p / "__init__.py"):
            if cand.is_file() and (cand.suffix == ".py"):
                return cand
    raise _missing(
        Where(str(descriptor), "[Core] Module").error(f"{given} not found, nor {beside.name} beside the descriptor")
    )


def _module_entry(opts: PluginOptions, base: Path, where: Where) -> tuple[EntryRef, str, str]:
    text, attr = opts.module, opts.class_name
    if text.endswith(".py") or "/" in text:
        path = _path(base, text)
        if not path.is_file():
            raise _missing(where.key("module").error(f"{path}: plugin file not found"))
        return EntryRef("file", str(path), attr), attr or path.stem, str(path)
    mod, _, ref_attr = text.partition(":")
    if not all(part.isidentifier() for part in mod.split(".")):
        raise where.key("module").error(f"expected a .py path or a module name such as pkg.plugin, got {text!r}")
    if not _importable(mod):
        raise _missing(where.key("module").error(f"no module named {mod!r} is installed for {sys.executable}"))
    return EntryRef("module", mod, attr or ref_attr), attr or ref_attr or mod, text


def _missing(exc: ConfigError) -> MonitorSetupError:
    """A file or module the monitor needs is not there (yet): the monitor fails alone when it runs, and
    check-config calls it a config error (``plugins.validate(strict=True)``)."""
    return MonitorSetupError(str(exc))


def _importable(mod: str) -> bool:
    """Whether ``mod`` can be found (its parent packages are imported to look, as an import would)."""
    import importlib.util

    if mod in sys.modules:
        return True
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False
    except Exception:  # a parent package that fails to import: the load reports it properly
        return True


def _named(opts: PluginOptions, base: Path, where: Where) -> tuple[EntryRef, Descriptor | None, str, str]:
    """``plugin = NAME``: a descriptor (by [Core] Name or file name) or ``NAME.py`` in plugin_dirs, else a
    plugin an installed package registered."""
    from shipctl import plugins

    name = opts.plugin
    dirs = [_path(base, d) for d in opts.plugin_dirs]
    found: list[tuple[Path, Descriptor | None]] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.rglob(f"*{DESCRIPTOR_SUFFIX}")):
            cp = configparser.ConfigParser()
            try:
                cp.read(p)
                core_name = cp.get("Core", "name", fallback="")
            except configparser.Error:
                core_name = ""
            if name in (core_name, p.name.removesuffix(DESCRIPTOR_SUFFIX)):
                found.append((p, read_descriptor(p, where.key("plugin"))))
        found += [(p, None) for p in sorted(d.rglob(f"{name}.py"))]
    if len(found) > 1:
        listed = ", ".join(str(p) for p, _ in found)
        raise where.key("plugin").error(f"plugin {name!r} is ambiguous: found {listed}")
    if found:
        p, desc = found[0]
        if desc is not None:
            return EntryRef("file", str(desc.module), opts.class_name), desc, desc.name, str(p)
        return EntryRef("file", str(p), opts.class_name), None, name, str(p)
    registered = plugins.registry(with_entry_points=True).python_plugins
    if name in registered:
        mod, _, attr = registered[name].partition(":")
        return EntryRef("module", mod, opts.class_name or attr), None, name, f"installed plugin {registered[name]}"
    known = ", ".join(sorted(registered)) or "none installed"
    searched = ", ".join(str(d) for d in dirs)
    raise _missing(
        where.key("plugin").error(f"no plugin {name!r} in plugin_dirs ({searched}) nor installed (installed: {known})")
    )
