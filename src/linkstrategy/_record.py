"""``@record``: the part of ``@dataclass`` the result types use, without importing dataclasses.

``dataclasses`` pulls in inspect, ast, dis and tokenize, and builds each class with
several ``exec`` calls: together most of the time ``from linkstrategy import place``
took (issue #11).  ``@record`` reads the class's own annotations in order (strings,
under ``from __future__ import annotations``; never evaluated), takes a class-level
value as the field's default and :func:`field` for a default factory or a field left
out of the repr, and gives the class ``__init__``, ``__repr__`` and ``__eq__`` (plus
``__hash__``, ``__setattr__`` and ``__delattr__`` when frozen): closures over the
field names, never generated code (compiling it per class cost as much as
importing dataclasses).

What it keeps from dataclasses: the same ``__init__`` (positional or keyword, the
defaults), ``repr``, equality of two instances of the same class field by field,
hashing of frozen ones, ``AttributeError`` on assignment to a frozen one,
``__match_args__``.  ``__replace__`` gives ``copy.replace(obj, **changes)``
(Python 3.13) and :func:`replace` here.  No inheritance between records, no
``ClassVar`` fields, no ``__post_init__``.

Type checkers see it through ``dataclass_transform`` (PEP 681), so the
``__init__`` is checked as a dataclass's would be.
"""

from __future__ import annotations

# Not ``from typing import TYPE_CHECKING``: typing is what this module avoids importing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_: object) -> object:
        return lambda f: f


__all__ = ["FrozenInstanceError", "field", "record", "replace"]


class FrozenInstanceError(AttributeError):
    """Assignment to (or deletion of) an attribute of a frozen record."""


class _Field:
    __slots__ = ("default", "factory", "repr")

    def __init__(self, default: object, factory: Callable[[], object] | None, repr: bool) -> None:
        self.default = default
        self.factory = factory
        self.repr = repr


_MISSING = _Field(None, None, True)  # "no default" (a sentinel nobody else holds)


def field(
    *, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None, repr: bool = True
) -> Any:
    """A field's default (``default=``, or a fresh ``default_factory()`` per instance)
    and whether it shows in the repr, as ``dataclasses.field``."""
    return _Field(default, default_factory, repr)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes``, as ``dataclasses.replace``."""
    new: T = obj.__replace__(**changes)  # type: ignore[attr-defined]
    return new


def _replace(self: Any, /, **changes: Any) -> Any:
    values = {name: getattr(self, name) for name in self.__match_args__}
    values.update(changes)  # an unknown name: TypeError from __init__
    return self.__class__(**values)


def _frozen_set(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_del(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _build(cls: type[T], frozen: bool, eq: bool) -> type[T]:
    # the class's own annotations, in order (inspect is what this module avoids loading)
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
    defaults: dict[str, object] = {}
    factories: dict[str, Callable[[], object]] = {}
    shown: list[str] = []
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        if value is _MISSING:  # no default
            spec = _Field(_MISSING, None, True)
        elif isinstance(value, _Field):
            spec = value
        else:
            spec = _Field(value, None, True)
        if spec.factory is not None:
            factories[name] = spec.factory
            delattr(cls, name)
        elif spec.default is not _MISSING:
            defaults[name] = spec.default
            setattr(cls, name, spec.default)  # the class attribute, as dataclasses leave it
        elif defaults or factories:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with")
        if spec.repr:
            shown.append(name)
    n = len(names)
    title = cls.__name__
    index = {name: i for i, name in enumerate(names)}
    required = n - len(defaults) - len(factories)  # the first fields: defaults come last
    made = [(index[name], name, factory) for name, factory in factories.items()]

    # No code is generated (compiling it cost as much as dataclasses): these closures
    # serve every record.  Values go straight into the instance's __dict__, past a
    # frozen __setattr__; all of them positionally is the fast path.
    def __init__(self: object, *args: object, **kwargs: object) -> None:
        k = len(args)
        d = self.__dict__
        if k == n and not kwargs:
            d.update(zip(names, args, strict=True))
            return
        if k > n:
            raise TypeError(f"{title}() takes {n} positional arguments but {k} were given")
        for name in kwargs:
            i = index.get(name)
            if i is None or i < k:
                why = "an unexpected keyword" if i is None else "multiple values for"
                raise TypeError(f"{title}() got {why} argument {name!r}")
        for name in names[k:required]:
            if name not in kwargs:
                raise TypeError(f"{title}() missing required argument: {name!r}")
        d.update(defaults)
        for i, name, factory in made:
            if i >= k and name not in kwargs:
                d[name] = factory()
        d.update(zip(names, args, strict=False))
        d.update(kwargs)

    def __repr__(self: object) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def values(self: object) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in names])

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return values(self) == values(other)

    def __hash__(self: object) -> int:
        return hash(values(self))

    own: list[Any] = [__init__, __repr__]
    if eq:
        own.append(__eq__)
        # as dataclasses: hashable by value when frozen, unhashable when mutable
        if frozen:
            own.append(__hash__)
        else:
            cls.__hash__ = None  # type: ignore[assignment]
    for fn in own:
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
    if frozen:
        cls.__setattr__ = _frozen_set  # type: ignore[method-assign]
        cls.__delattr__ = _frozen_del  # type: ignore[method-assign]
    cls.__match_args__ = names  # type: ignore[attr-defined, misc]
    cls.__replace__ = _replace  # type: ignore[attr-defined]
    return cls


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = False, eq: bool = True) -> Any:
    """Make ``cls`` a record (see the module's doc): ``@record`` or ``@record(frozen=True)``."""
    if cls is None:
        return lambda c: _build(c, frozen, eq)
    return _build(cls, frozen, eq)
