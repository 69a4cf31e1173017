"""``record`` makes classes that behave as ``dataclass`` makes them: compared against dataclass twins."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from shipctl.records import record


def twins(frozen: bool) -> tuple[type[Any], type[Any]]:
    def body() -> dict[str, Any]:
        return {
            "__annotations__": {"a": "int", "b": "str", "c": "list[int]", "d": "int"},
            "b": "x",
            "c": field(default_factory=list, repr=False),
            "d": field(default=0, compare=False),
        }

    return (
        record(frozen=frozen)(type("Rec", (), body())),
        dataclass(frozen=frozen)(type("Rec", (), body())),
    )


@pytest.mark.parametrize("frozen", [True, False])
def test_equality_hash_and_repr_are_dataclass_ones(frozen: bool) -> None:
    rec, dc = twins(frozen)
    for args in [(1,), (1, "y"), (2, "y", [3])]:
        r1, r2, d1 = rec(*args), rec(*args, d=5), dc(*args)
        assert repr(r1) == repr(d1) and str(r1) == str(d1)
        assert r1 == r2  # d is not compared
        assert r1 != rec(99) and r1 != d1  # another class is never equal
        assert (r1 == object()) is False
        assert dataclasses.astuple(r1) == dataclasses.astuple(d1)
    if frozen:
        r = rec(1, "y", (3,))
        assert hash(r) == hash(dc(1, "y", (3,))) and len({r, rec(1, "y", (3,), d=7)}) == 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.a = 2  # type: ignore[misc]
        assert dataclasses.replace(r, a=3) == rec(3, "y", (3,))
    else:
        with pytest.raises(TypeError, match="unhashable"):
            hash(rec(1))
        r = rec(1)
        r.a = 2
        assert r == rec(2)


def test_a_class_that_defines_its_own_methods_keeps_them() -> None:
    @record(frozen=True)
    class Own:
        a: int

        def __eq__(self, other: object) -> bool:
            return True

        def __repr__(self) -> str:
            return "own"

        __hash__ = object.__hash__

    assert Own(1) == Own(2) and repr(Own(1)) == "own"
    one = Own(1)
    assert hash(one) == object.__hash__(one)


def test_a_record_that_contains_itself_is_shown_with_an_ellipsis() -> None:
    @record
    class Node:
        name: str
        nxt: Any = None

    n = Node("a")
    n.nxt = n
    assert repr(n).endswith("Node(name='a', nxt=...)")


def test_a_record_class_is_made_when_first_needed_and_then_as_a_dataclass_would_be() -> None:
    @record(frozen=True)
    class Base:
        a: int
        b: int = 2

    @record(frozen=True)
    class Derived(Base):
        c: str = "x"

    assert "__dataclass_fields__" not in Base.__dict__  # defined, not made: no instance yet
    from shipctl import records

    assert [f.name for f in records.fields(Derived)] == ["a", "b", "c"]  # the base is made first
    assert records.is_dataclass(Base) and Derived(1).b == 2 and Derived(1, c="y") == Derived(1, 2, "y")

    @record
    class Later:
        items: list[int] = field(default_factory=list)

    class Plain(Later):  # not a record: its own __init__ reaches the record's through super()
        def __init__(self) -> None:
            super().__init__([1])
            self.extra = True

    p = Plain()
    assert p.items == [1] and p.extra and Later() == Later([]) and Later().items is not Later().items


def test_threads_meeting_a_record_class_first_all_get_whole_instances() -> None:
    import threading

    @record(frozen=True)
    class Racy:
        a: int
        b: str = "b"

    got: list[Any] = []
    barrier = threading.Barrier(8)

    def make(i: int) -> None:
        barrier.wait()
        got.append(Racy(i))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.a for r in got) == list(range(8)) and all(r.b == "b" for r in got)
    assert repr(got[0]).endswith(f"Racy(a={got[0].a}, b='b')")
