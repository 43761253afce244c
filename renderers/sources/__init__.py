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

from renderers.sources.base import (  # noqa: F401  (the interface, re-exported)
    SceneSource,
    available_sources,
    get_source,
    load_scene,
    open_regular,
    read_bytes,
    register_source,
    resolve_inside,
)

__all__ = [
    "SceneSource",
    "available_sources",
    "get_source",
    "load_scene",
    "open_regular",
    "read_bytes",
    "register_source",
    "resolve_inside",
]

# Importing the loaders registers them.
from renderers.sources import gltf, ply, synthetic  # noqa: E402,F401
