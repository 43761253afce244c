"""Scene sources: one loader per file format, behind one interface and a registry.

A source turns a location (a file path, or a synthetic recipe) into a
:class:`~renderers.scene.Scene` in the Y-up world frame::

    from renderers.sources import load_scene
    scene = load_scene("ply", "data/scene_datasets/scannet/scans/scene0000_00/"
                       "scene0000_00_vh_clean_2.ply", up="z")

Every failure to read a file raises :class:`~renderers.scene.SceneFormatError`
naming the file and the problem.
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import ClassVar

from manifests.registry import Registry
from renderers.scene import Scene, SceneFormatError

__all__ = ["SceneSource", "available_sources", "get_source", "load_scene", "register_source"]

log = logging.getLogger(__name__)

UP_AXES = ("y", "z")


class SceneSource(abc.ABC):
    """Reads one format into a :class:`Scene`.

    Subclasses set ``name`` (the registry key) and implement :meth:`load`.
    """

    name: ClassVar[str]
    # File suffixes this source reads, lower case, for messages and discovery.
    suffixes: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def load(self, location: str, *, scene_id: str, up: str) -> Scene:
        """Read ``location`` into a validated Scene.

        Parameters
        ----------
        location : str
            A file path, or a source-specific recipe (synthetic scenes).
        scene_id : str
            The id the scene is known by in its dataset.
        up : {"y", "z"}
            The file's up axis; a Z-up file is rotated with ``(x, z, -y)``.
        """


_REGISTRY: Registry[SceneSource] = Registry("scene source")
register_source = _REGISTRY.register  # class decorator: add a source under cls.name
available_sources = _REGISTRY.names
get_source = _REGISTRY.get


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
        from renderers.sources.navmesh import read_navmesh

        scene.navmesh = read_navmesh(navmesh)
    log.debug("loaded %s: %d triangles from %s", scene_id, scene.num_triangles, location)
    return scene


def read_bytes(path: str | Path) -> bytes:
    """Read a whole file, turning OS errors into SceneFormatError naming the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SceneFormatError(path, "file not found") from None
    except IsADirectoryError:
        raise SceneFormatError(path, "is a folder, not a file") from None
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
    if not data:
        raise SceneFormatError(path, "file is empty")
    return data


# Importing the loaders registers them.
from renderers.sources import gltf, ply, synthetic  # noqa: E402,F401
