"""Render backends: one interface, a registry, one implementation per engine.

A backend opens a :class:`~renderers.scene.Scene` once (building whatever
acceleration structure it needs) and renders many views from it::

    from renderers.backends import get_backend
    with get_backend("raycast").open(scene) as renderer:
        view = renderer.render(K, cam2world, width=256, height=256)
        view.rgb     # (H, W, 3) uint8
        view.depth   # (H, W) float32 planar z in metres, 0 = no hit

Cameras follow docs/design.md: OpenCV axes, ``cam2world`` 4x4, pixel centres at
integer ``(u, v)`` (:mod:`renderers.camera`).
"""

from __future__ import annotations

from renderers.backends import base
from renderers.backends.base import *  # noqa: F403  (the interface, re-exported: base.__all__)

__all__ = [*base.__all__]

from renderers.backends import raycast  # noqa: E402,F401  (registers "raycast")
from renderers.backends import habitat  # noqa: E402,F401  (registers "habitat"; habitat-sim imported on open)
