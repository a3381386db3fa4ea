"""``_record.record``: what the result types keep from dataclasses (issue #11 made them
records so that ``from linkstrategy import place`` does not import dataclasses)."""

from __future__ import annotations

import copy
import pickle
import typing

import pytest

import linkstrategy
from linkstrategy._mounts import Mount
from linkstrategy._record import FrozenInstanceError, field, record, replace
from linkstrategy._tree import Deferred, RemoveFailure, RemoveReport


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default=(), repr=False)


@record
class Bag:
    name: str
    items: list[str] = field(default_factory=list)


@record(eq=False)
class Node:
    value: int


def test_init_positional_keyword_and_defaults() -> None:
    assert (Point(1).x, Point(1).y, Point(1).tags) == (1, 0, ())
    p = Point(1, tags=("a",), y=2)
    assert (p.x, p.y, p.tags) == (1, 2, ("a",))
    assert vars(p) == {"x": 1, "y": 2, "tags": ("a",)}


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument: 'x'"),
        ((1, 2, (), 4), {}, "takes 3 positional arguments but 4 were given"),
        ((1,), {"z": 1}, "unexpected keyword argument 'z'"),
        ((1,), {"x": 1}, "multiple values for argument 'x'"),
    ],
)
def test_init_refuses_what_a_dataclass_refuses(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)  # type: ignore[arg-type]


def test_default_factory_is_fresh_per_instance() -> None:
    a, b = Bag("a"), Bag("b")
    a.items.append("x")
    assert b.items == []
    assert "items" not in Bag.__dict__  # as dataclasses: no shared class attribute


def test_default_factory_is_not_called_for_a_given_value() -> None:
    calls: list[int] = []

    def make() -> list[str]:
        calls.append(1)
        return []

    @record
    class Holder:
        items: list[str] = field(default_factory=make)

    assert Holder(["a"]).items == ["a"]
    assert Holder(items=["b"]).items == ["b"]
    assert calls == []
    assert Holder().items == []
    assert calls == [1]


def test_repr_leaves_out_repr_false_fields() -> None:
    assert repr(Point(1, 2, ("t",))) == "Point(x=1, y=2)"
    assert repr(Bag("a")) == "Bag(name='a', items=[])"


def test_equality_and_hash() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1) != (1, 0, ())  # type: ignore[comparison-overlap]  # only the same class compares equal
    assert Bag("a") == Bag("a")
    with pytest.raises(TypeError, match="unhashable"):
        hash(Bag("a"))  # mutable with eq: unhashable, as a dataclass
    n = Node(1)
    assert n != Node(1)  # eq=False: identity
    assert n == n
    assert hash(n) == hash(n)


def test_frozen() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x
    b = Bag("a")
    b.name = "b"
    assert b.name == "b"


def test_replace_copy_pickle_match_args() -> None:
    p = Point(1, 2, ("t",))
    assert replace(p, y=5) == Point(1, 5, ("t",))
    assert p.__replace__(x=0) == Point(0, 2, ("t",))  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        replace(p, z=1)
    assert copy.copy(p) == p
    assert copy.deepcopy(Bag("a", ["x"])) == Bag("a", ["x"])
    assert pickle.loads(pickle.dumps(p)) == p
    assert Point.__match_args__ == ("x", "y", "tags")
    match p:
        case Point(1, y):
            assert y == 2
        case _:
            pytest.fail("no match")


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="'b' without a default"):

        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_public_result_types_keep_their_fields() -> None:
    m = Mount("/", "ext4", "/dev/sda1", optional_fields=("shared:1",))
    assert "optional_fields" not in repr(m)
    assert replace(m, fstype="xfs").fstype == "xfs"
    r = RemoveReport(removed=2, deferred=(Deferred("a", "t", "busy"),))
    assert r.to_json()["removed"] == 2
    assert RemoveFailure("p", 13, "denied") == ("p", 13, "denied")  # still tuples
    assert repr(Deferred("a", "t", "busy")) == "Deferred(path='a', trash='t', reason='busy')"
    assert Deferred("a", "t", "busy")._replace(reason="x").reason == "x"
    assert pickle.loads(pickle.dumps(RemoveFailure("p", 1, "r"))) == RemoveFailure("p", 1, "r")


def test_strategy_alias_exists_at_run_time() -> None:
    """``linkstrategy.Strategy`` is made on first use (it needs typing)."""
    assert typing.get_args(linkstrategy.Strategy) == ("reflink", "hardlink", "copy", "symlink")
    from linkstrategy._plan import StrategyArg

    assert typing.get_origin(StrategyArg) is typing.Union  # type: ignore[comparison-overlap]
