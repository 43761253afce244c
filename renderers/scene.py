"""The in-memory scene every source produces and every backend renders.

A :class:`Scene` is one triangle mesh in the world frame of docs/design.md
(metres, right-handed, **Y up**), with what gives its triangles colour:

* ``materials[face_materials[f]]`` for each face ``f``: a base colour factor and
  optionally a :class:`Texture` sampled at the interpolated ``uvs``;
* optionally ``vertex_colors``, interpolated across each face;
* optionally ``face_colors``, one colour per triangle, constant across it (PLY
  scans that store their colour per face).

The colour of a surface point is ``base_color * texture(uv) * vertex_color``
(glTF 2.0's base-colour formula) ``* face_color``; an absent texture, vertex
colour or face colour counts as white. Where a navmesh exists, ``navmesh`` holds its walkable polygons in the
same frame.

Texture coordinates follow glTF: ``(0, 0)`` is the top-left corner of the
image, ``u`` grows to the right and ``v`` downwards, so texel row
``floor(v * H)``; every texture's row 0 is the image's top row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Y_UP_FROM_Z_UP",
    "Material",
    "NavMesh",
    "Scene",
    "SceneFormatError",
    "Texture",
    "Wrap",
    "triangle_areas",
    "z_up_to_y_up",
]

# (x, y, z)_world = (x, z, -y)_file: a +90 degree rotation about +X that takes
# a Z-up file (HM3D/MP3D/Gibson stages, ScanNet, Replica) to the Y-up world.
Y_UP_FROM_Z_UP = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


class SceneFormatError(ValueError):
    """A scene file that cannot be read: the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Wrap(enum.IntEnum):
    """Texture wrap modes, with glTF's sampler enum values."""

    REPEAT = 10497
    CLAMP_TO_EDGE = 33071
    MIRRORED_REPEAT = 33648


@dataclass(frozen=True, eq=False)
class Texture:
    """A decoded texture image and its sampler.

    Attributes
    ----------
    image : (H, W, C) uint8
        C is 3 (RGB) or 4 (RGBA); row 0 is the top of the image.
    wrap_s, wrap_t : Wrap
        What happens to ``u`` and ``v`` outside [0, 1].
    name : str
        Where the image came from (file, or glb image index), for messages.
    """

    image: np.ndarray
    wrap_s: Wrap = Wrap.REPEAT
    wrap_t: Wrap = Wrap.REPEAT
    name: str = ""


@dataclass(frozen=True, eq=False)
class Material:
    """A base colour factor (linear RGBA in [0, 1]), an optional texture, and which sides are seen.

    ``double_sided`` is glTF's ``doubleSided``: False (glTF's default) draws a
    face of this material only from its front, the side its corners run
    counter-clockwise, and a ray that meets its back goes on through it
    (docs/design.md, "Back faces").
    """

    name: str = ""
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    texture: Texture | None = None
    double_sided: bool = False


@dataclass(frozen=True, eq=False)
class NavMesh:
    """Walkable polygons in the Y-up world frame.

    Attributes
    ----------
    polygons : list of (n_i, 3) float32
        Each convex walkable polygon's vertices, in order.
    triangles : (T, 3, 3) float32
        The polygons' surface as triangles (the Detour detail mesh where the
        file has one), the set that area-weighted sampling draws from.
    triangle_polygon : (T,) int32
        Index into ``polygons`` of each triangle.
    source : str
        The file it was read from.
    """

    polygons: list[np.ndarray]
    triangles: np.ndarray
    triangle_polygon: np.ndarray
    source: str = ""

    @property
    def triangle_areas(self) -> np.ndarray:
        """(T,) float64 area of each triangle in square metres."""
        return triangle_areas(self.triangles)

    @property
    def area(self) -> float:
        """Total navigable area in square metres."""
        return float(self.triangle_areas.sum())


@dataclass(eq=False)
class Scene:
    """One scene: triangles in the Y-up world frame and their appearance.

    Attributes
    ----------
    name : str
        Scene id (``00800-TEEsavR23oF``, ``scene0000_00``, ``apartment_0``...).
    vertices : (V, 3) float32
        World coordinates in metres, Y up.
    faces : (F, 3) uint32
        Vertex indices of each triangle.
    uvs : (V, 2) float32 or None
        Texture coordinates (glTF convention, see the module docstring).
    vertex_colors : (V, 3) uint8 or None
        sRGB vertex colours.
    face_colors : (F, 3) uint8 or None
        sRGB colour of each triangle, the same at every point of it.
    face_materials : (F,) uint16 or None
        Index into ``materials`` of each face; None means material 0.
    materials : tuple of Material
        At least one (a white default where the file has none).
    navmesh : NavMesh or None
    source : str
        The file (or synthetic recipe) the scene came from.
    file_to_world : (4, 4) float64
        The transform applied to the file's coordinates on load.
    extras : dict
        Source-specific facts (synthetic rooms, glb node names...).
    irradiance : (V, 3) float32 or None
        Baked light at each vertex, linear RGB: the rendered colour is the
        albedo (the formula above) times it, in linear light
        (:mod:`renderers.lighting`). None where the colours already carry
        their lighting (every real dataset).
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    face_colors: np.ndarray | None = None
    face_materials: np.ndarray | None = None
    materials: tuple[Material, ...] = (Material(name="default"),)
    navmesh: NavMesh | None = None
    source: str = ""
    file_to_world: np.ndarray = field(default_factory=lambda: np.eye(4))
    extras: dict = field(default_factory=dict)
    irradiance: np.ndarray | None = None

    @property
    def num_triangles(self) -> int:
        return int(self.faces.shape[0])

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the axis-aligned bounding box, (3,) float32 each."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    @property
    def single_sided_faces(self) -> np.ndarray | None:
        """(F,) bool: the faces seen only from their front (counter-clockwise) side; None when every face is
        seen from both (docs/design.md, "Back faces")."""
        single = np.array([not m.double_sided for m in self.materials], dtype=bool)
        if not single.any():
            return None
        if self.face_materials is None:
            return np.ones(self.num_triangles, bool) if single[0] else None
        faces = single[self.face_materials]  # (F,)
        return faces if faces.any() else None

    @property
    def textured(self) -> bool:
        return self.uvs is not None and any(m.texture is not None for m in self.materials)

    @property
    def nbytes(self) -> int:
        """Memory held by the geometry and textures."""
        arrays = [self.vertices, self.faces, self.uvs, self.vertex_colors, self.face_colors, self.face_materials]
        total = sum(a.nbytes for a in arrays if a is not None)
        seen: set[int] = set()
        for m in self.materials:
            if m.texture is not None and id(m.texture) not in seen:
                seen.add(id(m.texture))
                total += m.texture.image.nbytes
        return total

    def validate(self) -> Scene:
        """Check shapes, dtypes, finiteness and index ranges; raise SceneFormatError.

        Returns the scene, so sources can end with ``return Scene(...).validate()``.
        """

        def fail(problem: str) -> None:
            raise SceneFormatError(self.source or self.name, problem)

        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[1] != 3 or v.dtype != np.float32:
            fail(f"vertices must be (V, 3) float32, got {v.shape} {v.dtype}")
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype != np.uint32:
            fail(f"faces must be (F, 3) uint32, got {f.shape} {f.dtype}")
        if len(v) == 0 or len(f) == 0:
            fail(f"no geometry ({len(v)} vertices, {len(f)} triangles)")
        if not np.isfinite(v).all():
            bad = int((~np.isfinite(v).all(axis=1)).sum())
            fail(f"{bad} vertices have NaN or infinite coordinates")
        if int(f.max()) >= len(v):
            fail(f"a face refers to vertex {int(f.max())} but there are only {len(v)} vertices")
        if self.uvs is not None:
            if self.uvs.shape != (len(v), 2) or self.uvs.dtype != np.float32:
                fail(f"uvs must be ({len(v)}, 2) float32, got {self.uvs.shape} {self.uvs.dtype}")
            if not np.isfinite(self.uvs).all():
                fail("texture coordinates contain NaN or infinite values")
        if self.vertex_colors is not None:
            c = self.vertex_colors
            if c.shape != (len(v), 3) or c.dtype != np.uint8:
                fail(f"vertex colours must be ({len(v)}, 3) uint8, got {c.shape} {c.dtype}")
        if self.face_colors is not None:
            c = self.face_colors
            if c.shape != (len(f), 3) or c.dtype != np.uint8:
                fail(f"face colours must be ({len(f)}, 3) uint8, got {c.shape} {c.dtype}")
        if not self.materials:
            fail("a scene needs at least one material")
        if self.face_materials is not None:
            fm = self.face_materials
            if fm.shape != (len(f),):
                fail(f"face_materials must be ({len(f)},), got {fm.shape}")
            if len(fm) and int(fm.max()) >= len(self.materials):
                fail(
                    f"a face uses material {int(fm.max())} but there are only "
                    f"{len(self.materials)} materials"
                )
        for m in self.materials:
            t = m.texture
            if t is None:
                continue
            if self.uvs is None:
                fail(f"material {m.name!r} has a texture ({t.name or 'unnamed'}) but the mesh has no texture "
                     "coordinates to map it with")  # fmt: skip
            img = t.image
            if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
                fail(f"texture {t.name!r} must be (H, W, 3|4) uint8, got {img.shape} {img.dtype}")
        return self


def triangle_areas(triangles: np.ndarray) -> np.ndarray:
    """Areas of triangles.

    Parameters
    ----------
    triangles : (T, 3, 3) float
        Corner coordinates.

    Returns
    -------
    (T,) float64
    """
    t = np.asarray(triangles, dtype=np.float64)
    return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """Rotate Z-up file coordinates into the Y-up world frame.

    Parameters
    ----------
    points : (N, 3) float
        ``(x, y, z)`` in the file.

    Returns
    -------
    (N, 3) same dtype
        ``(x, z, -y)``.
    """
    out = np.empty_like(points)
    out[:, 0] = points[:, 0]
    out[:, 1] = points[:, 2]
    out[:, 2] = -points[:, 1]
    return out
