"""Render backends: one interface, a registry, one implementation per engine.

A backend opens a :class:`~renderers.scene.Scene` once (building whatever
acceleration structure it needs) and renders many views from it::

    from renderers.backends import get_backend
    with get_backend("raycast").open(scene) as renderer:
        view = renderer.render(K, cam2world, width=256, height=256)
        view.rgb     # (H, W, 3) uint8
        view.depth   # (H, W) float32 planar z in metres, 0 = no hit

Cameras follow DESIGN.md: OpenCV axes, ``cam2world`` 4x4, pixel centres at
integer ``(u, v)`` (:mod:`renderers.camera`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from renderers.scene import Scene

__all__ = ["RenderBackend", "RenderedView", "SceneRenderer", "available_backends", "get_backend", "register_backend"]


@dataclass(frozen=True, eq=False)
class RenderedView:
    """One rendered view.

    Attributes
    ----------
    rgb : (H, W, 3) uint8
        sRGB colour; black where nothing is hit.
    depth : (H, W) float32
        Planar z-depth in metres along the camera's +z; 0 where nothing is hit.
    """

    rgb: np.ndarray
    depth: np.ndarray

    @property
    def valid_fraction(self) -> float:
        return float(np.count_nonzero(self.depth) / self.depth.size)


class SceneRenderer(abc.ABC):
    """A scene opened by a backend; renders views until closed."""

    @abc.abstractmethod
    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        """Render one pinhole view (``K`` (3, 3), ``cam2world`` (4, 4))."""

    def close(self) -> None:
        """Release what :meth:`RenderBackend.open` built."""

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RenderBackend(abc.ABC):
    """A rendering engine. Subclasses set ``name`` and implement :meth:`open`."""

    name: ClassVar[str]

    @abc.abstractmethod
    def open(self, scene: Scene) -> SceneRenderer:
        """Prepare ``scene`` for rendering (once per scene, many views)."""


_REGISTRY: dict[str, RenderBackend] = {}


def register_backend(cls: type[RenderBackend]) -> type[RenderBackend]:
    """Class decorator: add a backend under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"render backend {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str) -> RenderBackend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown render backend {name!r}; known: {', '.join(available_backends())}") from None


from renderers.backends import raycast  # noqa: E402,F401  (registers "raycast")
