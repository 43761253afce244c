"""A name -> implementation registry, shared by every "one interface, many kinds" place.

Scene sources, render backends, covisibility measures and datasets each keep one::

    _SOURCES = Registry("scene source")

    @_SOURCES.register
    class PlySource(SceneSource):
        name = "ply"

    _SOURCES.get("ply")   # the PlySource instance
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Instances of registered classes, keyed by their ``name`` class attribute."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: instantiate ``cls`` and register it under ``cls.name``."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = cls()
        return cls

    def names(self) -> list[str]:
        return sorted(self._items)

    def summary(self) -> str:
        """``name (description), ...`` of every entry, for help texts (from each class' ``description``)."""
        return ", ".join(f"{n} ({d})" if (d := getattr(self._items[n], "description", "")) else n for n in self.names())

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None
