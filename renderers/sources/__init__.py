"""Scene sources: one loader per file format, behind one interface and a registry.

A source turns a location (a file path, or a synthetic recipe) into a
:class:`~renderers.scene.Scene` in the Y-up world frame::

    from renderers.sources import load_scene
    scene = load_scene("ply", "data/scene_datasets/scannet/scans/scene0000_00/"
                       "scene0000_00_vh_clean_2.ply", up="z")

Every failure to read a file raises :class:`~renderers.scene.SceneFormatError`
naming the file and the problem.

Untrusted files. Every loader opens files through :func:`open_regular` (or
:func:`read_bytes` on top of it): only regular files are read, never a folder,
FIFO, device or socket, and the open never blocks. A file a scene file names
(a glTF ``uri``, a stage config beside it) is resolved with
:func:`resolve_inside` and refused when ``..``, an absolute path or a symlink
leads out of the scene file's folder; the message names the scene file and
the reference, and never quotes the content of a file outside.
"""

from __future__ import annotations

import logging
from pathlib import Path

from renderers.scene import Scene
from renderers.sources import base
from renderers.sources.base import *  # noqa: F403  (the interface, re-exported: base.__all__)
from renderers.sources.base import UP_AXES, get_source
from renderers.sources.navmesh import read_navmesh

log = logging.getLogger(__name__)

__all__ = [*base.__all__, "load_scene"]


def load_scene(
    source: str,
    location: str | Path,
    *,
    scene_id: str | None = None,
    up: str = "z",
    navmesh: str | Path | None = None,
) -> Scene:
    """Load one scene with the named source, and attach its navmesh if given.

    Raises
    ------
    SceneFormatError
        The mesh or navmesh cannot be read; the message names the file.
    """
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {UP_AXES}, got {up!r}")
    location = str(location)
    if scene_id is None:
        scene_id = Path(location).stem
    scene = get_source(source).load(location, scene_id=scene_id, up=up)
    if navmesh is not None:
        scene.navmesh = read_navmesh(navmesh)
    log.debug("loaded %s: %d triangles from %s", scene_id, scene.num_triangles, location)
    return scene


# Importing the loaders registers them.
from renderers.sources import gltf, ply, synthetic  # noqa: E402,F401
