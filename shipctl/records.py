"""``record``: ``dataclasses.dataclass`` with the same ``__eq__``, ``__hash__`` and ``__repr__``, shared
instead of generated.

``dataclass`` writes each class's methods as source text and compiles it, one ``exec`` a method: ~0.4 ms a
class here, and a ``shipctl run`` with nothing to do makes ~45 classes on its way (a third of its time in
Python). ``__init__`` and a frozen class's ``__setattr__``/``__delattr__`` still come from ``dataclass``;
comparison, hashing and repr come from three functions shared by every class, which read the fields through
one ``operator.attrgetter`` made per class (measured: the no-op run's dataclasses 17.8 -> 12.9 ms). They
follow ``dataclass``'s rules: a method the class defines itself is kept, only fields with ``compare`` (or
``hash``) are compared (hashed), only those with ``repr`` shown, and a mutable class is unhashable.

And a class is made a dataclass when it is first needed: its first instance, or ``fields``/``is_dataclass``
below: a stand-in ``__new__`` makes it first. A no-op ``run`` defines ~45
record classes and makes ~25 of them (measured: 16 -> 9 ms of its start-up). Code that looks at a record class
(not an instance) through the dataclasses module must use ``fields``/``is_dataclass`` from here.
"""

from __future__ import annotations

import dataclasses
from _thread import RLock
from collections.abc import Callable
from operator import attrgetter
from reprlib import recursive_repr
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of ``names`` as a tuple (attrgetter gives a bare value for one name)."""
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    if not names:
        return lambda obj: ()
    return attrgetter(*names)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = self.__class__.__record_compare__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__class__.__record_hash__(self))


@recursive_repr()
def _repr(self: Any) -> str:
    cls = self.__class__
    shown = ", ".join(
        f"{name}={value!r}" for name, value in zip(cls.__record_repr__, cls.__record_shown__(self), strict=True)
    )
    return f"{cls.__qualname__}({shown})"


def _make(cls: type[T], frozen: bool) -> type[T]:
    # As dataclass decides: a __hash__ the class body sets is kept; one that defining __eq__ set to None is not.
    own_hash = cls.__dict__.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (own_hash is dataclasses.MISSING or (own_hash is None and "__eq__" in cls.__dict__))
    own = {name for name in ("__eq__", "__repr__") if name in cls.__dict__}
    for base in cls.__mro__[1:]:
        if base in _PENDING:  # a record deriving from one not made yet: dataclass reads the base's fields
            _ensure(base)
    cls = dataclasses.dataclass(cls, frozen=frozen, eq=False, repr=False)
    fields = dataclasses.fields(cls)
    compare = [f.name for f in fields if f.compare]
    shown = [f.name for f in fields if f.repr]
    cls.__record_compare__ = staticmethod(_getter(compare))
    cls.__record_repr__ = tuple(shown)
    cls.__record_shown__ = staticmethod(_getter(shown))
    if "__eq__" not in own:
        cls.__eq__ = _eq
    if "__repr__" not in own:
        cls.__repr__ = _repr
    if not explicit_hash:
        if frozen:
            hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
            cls.__record_hash__ = staticmethod(_getter(hashed))
            cls.__hash__ = _hash
        elif "__eq__" not in own:
            cls.__hash__ = None  # mutable and compared by value: unhashable, as dataclass makes it
    return cls


# Record classes defined but not made yet, with whether they are frozen. A class is made under the lock, and
# leaves this table only once made: a thread meeting it meanwhile waits rather than find it half made.
_PENDING: dict[type, bool] = {}
_MAKING = RLock()


def _ensure(cls: type) -> None:
    """Make ``cls`` and the record classes it derives from, if they are pending (bases first)."""
    if not _PENDING:
        return
    with _MAKING:
        for c in reversed(cls.__mro__):
            frozen = _PENDING.get(c)
            if frozen is not None:
                _make(c, frozen)
                del _PENDING[c]


def _stand_in(owner: type) -> staticmethod[..., Any]:
    """A ``__new__`` that makes ``owner`` first, if it is not made yet. Only then does ``type.__call__`` look up
    ``__init__``, so it finds the one dataclass wrote. It stays once the class is made (+0.15 us an instance):
    a class whose ``__new__`` was set keeps calling it through Python, and ``object.__new__`` refuses the
    arguments when called that way."""

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if owner in _PENDING:
            _ensure(owner)
        return object.__new__(cls)

    return staticmethod(__new__)


def _defer(cls: type[T], frozen: bool) -> type[T]:
    if any("__new__" in c.__dict__ and c not in _PENDING for c in cls.__mro__[:-1]):
        return _make(cls, frozen)  # a constructor of its own: nothing to stand in for
    _PENDING[cls] = frozen
    cls.__new__ = _stand_in(cls)  # type: ignore[assignment]
    return cls


def fields(class_or_instance: Any) -> tuple[dataclasses.Field[Any], ...]:
    """``dataclasses.fields``, for a record class that may not be made yet too."""
    _ensure(class_or_instance if isinstance(class_or_instance, type) else type(class_or_instance))
    return dataclasses.fields(class_or_instance)


def is_dataclass(obj: Any) -> bool:
    """``dataclasses.is_dataclass``, true for a record class that is not made yet too."""
    if isinstance(obj, type):
        _ensure(obj)
    return dataclasses.is_dataclass(obj)


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """``@record`` or ``@record(frozen=True)``: a dataclass (``dataclasses.fields``, ``replace`` and ``asdict``
    work on it), with the methods above."""
    if cls is None:
        return lambda c: _defer(c, frozen)
    return _defer(cls, frozen)
