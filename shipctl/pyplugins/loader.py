"""Import a plugin's code and find what to call.

Before any plugin module is imported, shipctl's compatibility package (``shipctl/_compat``, providing the
``yahoo_panoptes.*`` import paths Panoptes plugins use) is put on ``sys.path`` — unless a real
``yahoo_panoptes`` is installed, which then wins. Nothing else ever sees the compatibility package.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from shipctl.pyplugins.spec import EntryRef
from shipctl.records import record

COMPAT_DIR = Path(__file__).resolve().parent.parent / "_compat"
_lock = threading.Lock()
_files: dict[tuple[str, int, int], ModuleType] = {}  # (path, mtime_ns, size) -> module


class LoadError(Exception):
    """The plugin's code cannot be imported or has nothing to call."""


@record(frozen=True)
class Entry:
    """A plugin's entry point, loaded: what to call, and how to name it in messages."""

    call: Callable[[Any], Any]  # context -> groups
    label: str  # module:attr, for messages
    panoptes: bool  # a PanoptesPollingPlugin subclass (Panoptes' defaults apply, e.g. a week's kv expiry)


def enable_panoptes_compat() -> bool:
    """Make ``yahoo_panoptes.*`` importable from shipctl, unless the real package is installed. True when the
    compatibility package is (now) the one plugins get."""
    if str(COMPAT_DIR) in sys.path:
        return True
    if importlib.util.find_spec("yahoo_panoptes") is not None:
        return False
    sys.path.append(str(COMPAT_DIR))
    return True


def load(ref: EntryRef) -> Entry:
    with _lock:  # monitors run in threads; one import of a module at a time
        enable_panoptes_compat()
        module = _import_file(Path(ref.target)) if ref.kind == "file" else _import_module(ref.target)
    return _entry(module, ref.attr)


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LoadError(f"cannot import {name}: {exc}") from None
    except Exception as exc:
        raise LoadError(f"importing {name} failed: {describe(exc)}") from None


def _import_file(path: Path) -> ModuleType:
    try:
        st = path.stat()
    except OSError as exc:
        raise LoadError(f"{path}: {exc.strerror}") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _files:
        return _files[key]
    # A unique module name per file, so two plugins both called plugin.py do not replace each other.
    safe = re.sub(r"\W", "_", path.stem)
    name = f"shipctl_plugin_{safe}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    is_package = path.name == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise LoadError(f"{path}: not a python module")
    module = importlib.util.module_from_spec(spec)
    # The plugin's directory on the path (at the end), so it may import its sibling modules.
    home = str(path.parent.parent if is_package else path.parent)
    if home not in sys.path:
        sys.path.append(home)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise LoadError(f"importing {path} failed: {describe(exc)}") from None
    _files[key] = module
    return module


def describe(exc: BaseException) -> str:
    """``Type: message (file:line)``, the line being the innermost one in the plugin's code, not in shipctl's."""
    import traceback

    own = str(Path(__file__).resolve().parent.parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(own)]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({Path(exc.filename).name}:{exc.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


def _is_panoptes(cls: type) -> bool:
    return any(c.__module__.startswith("yahoo_panoptes.") for c in cls.__mro__[1:])


def _entry(module: ModuleType, attr: str) -> Entry:
    if attr:
        obj = getattr(module, attr, None)
        if obj is None:
            defined = sorted(n for n, v in vars(module).items() if _defined_here(v, module))
            raise LoadError(f"{module.__name__} has no {attr!r} (it defines: {', '.join(defined) or 'nothing'})")
        return _wrap(obj, f"{_label(module)}:{attr}")
    classes = [
        v
        for v in vars(module).values()
        if inspect.isclass(v)
        and _defined_here(v, module)
        and callable(getattr(v, "run", None))
        and not inspect.isabstract(v)
    ]
    if len(classes) == 1:
        return _wrap(classes[0], f"{_label(module)}:{classes[0].__name__}")
    if len(classes) > 1:
        names = ", ".join(sorted(c.__name__ for c in classes))
        raise LoadError(f'{_label(module)} defines several plugin classes ({names}); name one with class = "..."')
    poll = getattr(module, "poll", None)
    if callable(poll):
        return _wrap(poll, f"{_label(module)}:poll")
    raise LoadError(f"{_label(module)} has no plugin: expected a class with run(context) or a function poll(context)")


def _label(module: ModuleType) -> str:
    f = getattr(module, "__file__", None)
    return Path(f).name if f and module.__name__.startswith("shipctl_plugin_") else module.__name__


def _defined_here(v: Any, module: ModuleType) -> bool:
    return getattr(v, "__module__", None) == module.__name__


def _wrap(obj: Any, label: str) -> Entry:
    if inspect.isclass(obj):
        if not callable(getattr(obj, "run", None)):
            raise LoadError(f"{label} has no run(context) method")
        cls = obj
        return Entry(lambda ctx: cls().run(ctx), label, _is_panoptes(cls))  # a new instance per run, as Panoptes
    if callable(obj):
        return Entry(obj, label, False)
    raise LoadError(f"{label} is not a class or a function")
