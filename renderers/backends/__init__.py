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

from renderers.registry import Registry
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


_REGISTRY: Registry[RenderBackend] = Registry("render backend")
register_backend = _REGISTRY.register  # class decorator: add a backend under cls.name
available_backends = _REGISTRY.names
get_backend = _REGISTRY.get


from renderers.backends import raycast  # noqa: E402,F401  (registers "raycast")
