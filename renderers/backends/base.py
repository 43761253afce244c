"""The render-backend interface and its registry: what every backend and its callers share.

Kept apart from the package's ``__init__`` so that the backends import it while the
package imports them to register them: no import cycle. The package re-exports
every name here.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from manifests.registry import Registry
from renderers.scene import Scene

__all__ = [
    "ANTIALIAS",
    "LIGHTING",
    "RENDER_REVISION",
    "BackendUnavailable",
    "RenderBackend",
    "RenderedView",
    "SceneRenderer",
    "available_backends",
    "describe_backends",
    "build_raycaster",
    "get_backend",
    "register_backend",
]


#: ``--antialias`` levels: ``off`` one sample per pixel centre, textures at full resolution (bilinear);
#: ``textures`` textures filtered by each pixel's footprint (mip levels, trilinear); ``full`` that, and
#: extra samples in pixels that straddle an edge. Depth is always the pixel-centre sample.
ANTIALIAS = ("off", "textures", "full")
#: ``--lighting`` of scenes whose colours carry no light (the synthetic apartments): ``baked`` light
#: (ceiling lights, door openings, ambient occlusion) or ``flat`` albedo. Real scans keep their colours.
LIGHTING = ("baked", "flat")
#: Bumped when the backends render the same config differently, for the views stage to hash with the config
#: (views made before must not be reused). 2: back faces seen by glTF's ``doubleSided`` (docs/design.md,
#: "Back faces"); 1: every face from both sides.
RENDER_REVISION = 2


class BackendUnavailable(RuntimeError):
    """A backend whose engine does not import here; the message says how to install it."""


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


def build_raycaster(scene: Scene):
    """An Open3D ``RaycastingScene`` (Embree BVH) holding ``scene``'s triangles."""
    import open3d as o3d

    raycaster = o3d.t.geometry.RaycastingScene()
    raycaster.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(scene.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(scene.faces, dtype=np.uint32)),
    )
    return raycaster


class SceneRenderer(abc.ABC):
    """A scene opened by a backend; renders views until closed.

    Subclasses set ``self.scene`` (the :class:`Scene` opened).
    """

    scene: Scene
    _raycaster = None
    #: whether a small render costs proportionally less (viewpoint sampling then
    #: screens candidates on a thumbnail first); False where changing the size
    #: rebuilds something expensive (habitat-sim's sensors)
    screening: bool = True

    @abc.abstractmethod
    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        """Render one pinhole view (``K`` (3, 3), ``cam2world`` (4, 4))."""

    def raycaster(self):
        """The scene's triangles in an Open3D ``RaycastingScene``, for geometric queries.

        Viewpoint sampling casts rays (floor search, line of sight) whatever the
        backend; a backend that already holds one returns it, the others build
        it on first use.
        """
        if self._raycaster is None:
            self._raycaster = build_raycaster(self.scene)
        return self._raycaster

    def close(self) -> None:
        """Release what :meth:`RenderBackend.open` built."""

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RenderBackend(abc.ABC):
    """A rendering engine. Subclasses set ``name`` and ``description`` and implement :meth:`open`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""  # one line for help texts

    def check_available(self) -> None:
        """Raise :class:`BackendUnavailable` when this backend's engine cannot run here."""

    @abc.abstractmethod
    def open(self, scene: Scene, *, antialias: str = "full", lighting: str = "baked") -> SceneRenderer:
        """Prepare ``scene`` for rendering (once per scene, many views).

        ``antialias`` (:data:`ANTIALIAS`) and ``lighting`` (:data:`LIGHTING`)
        are the render options; a backend that cannot do what one asks says
        so in its ``description`` and logs what it does instead.
        """


_REGISTRY: Registry[RenderBackend] = Registry("render backend")
register_backend = _REGISTRY.register  # class decorator: add a backend under cls.name
available_backends = _REGISTRY.names
describe_backends = _REGISTRY.summary
get_backend = _REGISTRY.get
