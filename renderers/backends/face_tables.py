"""What shading needs of each face of a scene, as tables built once when a renderer opens it.

The raycast backend shades a hit from its face's rows (docs/design.md,
"Renderer notes"): the face's texel map into the :class:`~renderers.backends.atlas.TextureAtlas`
and texel density, its world-to-texel Jacobian (mip levels), its material or
base-colour factor, its corners' vertex colours and baked light, and its
plane key (the edge search). :class:`FaceTables` holds them, built by
:meth:`FaceTables.build`; :meth:`FaceTables.kernel_tables` hands them to the
compiled kernels as one :class:`~renderers.backends.shading_kernels.ShadingTables`.

Every per-face table has ``F + 1`` rows: the last one is the miss sentinel
(shaded black, material ``M``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from renderers.backends.atlas import BLACK, PAD, WHITE, TextureAtlas
from renderers.backends.shading_kernels import ShadingTables
from renderers.scene import Scene, triangle_areas

__all__ = ["PLANE_TOLERANCE", "FaceTables", "own_plane_keys", "plane_keys"]

log = logging.getLogger(__name__)

FOOTPRINT_MARGIN = 0.5  # texels kept between a face's footprint and its entry's edge (barycentric round-off)
FACE_CHUNK = 1 << 18  # faces prepared at a time, to bound temporaries
TABLE_COLUMNS = 10  # per-face table: texel map (6), entry offset and stride, entry, log2 texel density
NO_DENSITY = -30.0  # log2 texel density of untextured or degenerate faces: always level 0
PLANE_TOLERANCE = 5e-5  # metres: faces that share a plane key lie within this of one plane (the group's first)

# sRGB transfer: decoding by table (quarter levels), encoding by table on sqrt(linear) (fine in the darks).
_DECODE_STEPS, _ENCODE_STEPS = 4, 4095
_c = np.arange(255 * _DECODE_STEPS + 1, dtype=np.float64) / (255 * _DECODE_STEPS)
_DECODE = np.where(_c <= 0.04045, _c / 12.92, ((_c + 0.055) / 1.055) ** 2.4).astype(np.float32)
_l = (np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS) ** 2
_ENCODE = (255 * np.where(_l <= 0.0031308, 12.92 * _l, 1.055 * _l ** (1 / 2.4) - 0.055)).astype(np.float32)
del _c, _l


@dataclass(frozen=True, eq=False)
class FaceTables:
    """A scene's per-face shading tables (``F`` faces, ``M`` materials; last row: misses).

    Absent features are None. Build with :meth:`build`; the kernels read them
    through :meth:`kernel_tables`.

    Attributes
    ----------
    n_faces : int
        ``F``.
    face_materials : (F + 1,) int32
        Each face's material, misses last (material ``M``).
    planes : (F + 1,) int64
        :func:`plane_keys` where views search edges (``antialias="full"``),
        else :func:`own_plane_keys` (a row per face at every level: callers
        may search edges at any).
    atlas : TextureAtlas or None
        The scene's textures, one entry per (image, sampler) in use; None for
        an untextured scene.
    texel_table : (F + 1, 10) float32 or None
        Each face's texel map into its atlas entry, entry offset, stride and
        index (int32 bits) and log2 texel density (see :func:`_face_texel_table`).
    slow : (F + 1,) bool or None
        Faces whose footprint overflows their entry's border: sampled with
        per-tap wrapping. None where there are none.
    untextured : (F + 1,) bool or None
        In a textured scene, the faces without a texture (their colour steps
        are edges too); None where every face is textured, or the scene is not.
    mip_rows : (E * R, 4) float32 or None
        With mip levels (``antialias`` not ``off``): per (entry, level) scale
        x, y, then offset and stride as int32 bits; ``R`` is one more than the
        deepest level held (repeated).
    top_level : (E,) float32 or None
        Each entry's last mip level.
    texel_jacobian : (F + 1, 6) float32 or None
        Each face's world-to-level-0-texel map (2 x 3, rows), with mip levels.
    base : (3, M + 1) or (3, F + 1) float32 or None
        Base colour per material, or, with face colours, per face (base colour
        times face colour); None where every base colour is white and
        something else colours the view.
    base_per_face : bool
        Whether ``base`` has a column per face.
    corner_colors : (F + 1, 3) uint32 or None
        Each face's corners' vertex colours, as RGBX words; misses black.
    corner_light : (F + 1, 9) float32 or None
        Each face's corners' linear irradiance (baked light), corner-major.
    """

    n_faces: int
    face_materials: np.ndarray
    planes: np.ndarray
    atlas: TextureAtlas | None = None
    texel_table: np.ndarray | None = None
    slow: np.ndarray | None = None
    untextured: np.ndarray | None = None
    mip_rows: np.ndarray | None = None
    top_level: np.ndarray | None = None
    texel_jacobian: np.ndarray | None = None
    base: np.ndarray | None = None
    base_per_face: bool = False
    corner_colors: np.ndarray | None = None
    corner_light: np.ndarray | None = None

    @classmethod
    def build(cls, scene: Scene, *, antialias: str = "full", irradiance: np.ndarray | None = None) -> FaceTables:
        """The tables of ``scene`` for renders at ``antialias`` (mip levels unless ``off``).

        Parameters
        ----------
        scene : Scene
        antialias : {"off", "textures", "full"}
            ``off``: no mip levels; ``full``: real plane keys for the edge search.
        irradiance : (V, 3) float32, optional
            Linear irradiance per vertex (baked light, :mod:`renderers.lighting`).
        """
        n_faces = scene.num_triangles
        mats = scene.face_materials if scene.face_materials is not None else np.zeros(n_faces, np.uint16)
        face_materials = np.append(mats.astype(np.int32), len(scene.materials))  # (F + 1,), misses last

        # Textures: one atlas entry per (image, sampler) in use, per-face texel maps.
        atlas = table = slow = mip_rows = top_level = texel_jacobian = untextured = None
        if scene.textured:
            textures, entry_of = [], np.full(len(scene.materials), WHITE, np.int64)
            keys: dict[tuple, int] = {}
            for m, material in enumerate(scene.materials):
                t = material.texture
                if t is not None:
                    key = (id(t.image), t.wrap_s, t.wrap_t)
                    if key not in keys:
                        keys[key] = 2 + len(textures)
                        textures.append(t)
                    entry_of[m] = keys[key]
            atlas = TextureAtlas.build(textures, mips=antialias != "off", scene=scene.name)
            table, slow_faces = _face_texel_table(scene, entry_of[mats], atlas)
            if antialias != "off":  # per (entry, level): scale x, y, offset and stride bits; one level more, repeated
                n_entries, n_levels = atlas.mip_offset.shape
                rows = np.zeros((n_entries, n_levels + 1, 4), np.float32)
                rows[:, :n_levels, :2] = atlas.mip_scale
                rows.view(np.int32)[:, :n_levels, 2] = atlas.mip_offset
                rows.view(np.int32)[:, :n_levels, 3] = atlas.mip_stride
                rows[:, n_levels] = rows[:, n_levels - 1]
                mip_rows = rows.reshape(-1, 4)
                top_level = (atlas.levels - 1).astype(np.float32)
                texel_jacobian = _texel_jacobians(scene, table)
            slow = slow_faces if slow_faces.any() else None
            plain = entry_of[mats] == WHITE
            untextured = np.append(plain, False) if plain.any() else None
            log.debug(
                "%s: texture atlas of %d entries (%d mip levels at most), %.0f MiB; %d of %d faces wrapped per pixel",
                scene.name, len(textures), int(atlas.levels.max()), atlas.nbytes / 2**20,
                int(slow_faces.sum()), n_faces,
            )  # fmt: skip

        # Base colours: only where some differ from white (or nothing else colours the view). With face
        # colours, one factor per face instead (base colour x face colour), indexed by the hit face.
        base_colors = np.array([m.base_color[:3] for m in scene.materials], np.float32)
        base = None
        base_per_face = scene.face_colors is not None
        if base_per_face:
            factor = base_colors[mats] * (scene.face_colors.astype(np.float32) / np.float32(255.0))  # (F, 3)
            base = np.ascontiguousarray(np.append(factor, np.zeros((1, 3), np.float32), axis=0).T)  # (3, F + 1)
        elif (base_colors != 1.0).any() or (table is None and scene.vertex_colors is None):
            base = np.ascontiguousarray(np.append(base_colors, np.zeros((1, 3), np.float32), axis=0).T)  # (3, M + 1)

        # Vertex colours: each face's three corners as RGBX words; misses black.
        corner_colors = None
        if scene.vertex_colors is not None:
            rgbx = np.zeros((len(scene.vertices), 4), np.uint8)
            rgbx[:, :3] = scene.vertex_colors
            words = rgbx.view(np.uint32).reshape(-1)
            corner_colors = np.zeros((n_faces + 1, 3), np.uint32)
            corner_colors[:-1] = words[scene.faces]

        # Baked light (synthetic apartments): each face's corners' linear irradiance, (F + 1, 9) float32.
        corner_light = None
        if irradiance is not None:
            corner_light = np.zeros((n_faces + 1, 9), np.float32)
            corner_light[:-1] = irradiance[scene.faces].reshape(n_faces, 9)

        return cls(
            n_faces=n_faces,
            face_materials=face_materials,
            # a row per face at every level (callers may search edges at any): real keys where views do
            planes=plane_keys(scene) if antialias == "full" else own_plane_keys(n_faces + 1),
            atlas=atlas,
            texel_table=table,
            slow=slow,
            untextured=untextured,
            mip_rows=mip_rows,
            top_level=top_level,
            texel_jacobian=texel_jacobian,
            base=base,
            base_per_face=base_per_face,
            corner_colors=corner_colors,
            corner_light=corner_light,
        )

    def kernel_tables(self) -> ShadingTables:
        """The kernels' view of these tables (absent ones as empty arrays of their type)."""
        atlas = self.atlas

        def given(array, shape, dtype):
            return np.zeros(shape, dtype) if array is None else np.ascontiguousarray(array, dtype)

        table = given(self.texel_table, (1, TABLE_COLUMNS), np.float32)
        mip_rows = given(self.mip_rows, (1, 4), np.float32)
        n_levels = atlas.mip_offset.shape[1] if atlas is not None else 1
        return ShadingTables(
            has_texture=self.texel_table is not None,
            table=table,
            table_i=table.view(np.int32),
            slow=given(self.slow, (len(table),), bool),
            mipmapped=self.mip_rows is not None,
            jacobian=np.zeros((1, 7), np.float32) if self.texel_jacobian is None else np.ascontiguousarray(
                np.concatenate([self.texel_jacobian, np.exp2(table[:, 9:10])], axis=1), np.float32),
            mip_rows=mip_rows,
            mip_rows_i=mip_rows.view(np.int32),
            rows_per_entry=int(n_levels + 1),
            top_level=given(self.top_level, (1,), np.float32),
            texels=given(None if atlas is None else atlas.texels, (4,), np.uint32),
            mip_scale=given(None if atlas is None else atlas.mip_scale, (1, 1, 2), np.float32),
            mip_period=given(None if atlas is None else atlas.mip_period, (1, 1, 2), np.int64),
            mip_size=given(None if atlas is None else atlas.mip_size, (1, 1, 2), np.int64),
            mip_offset=given(None if atlas is None else atlas.mip_offset, (1, 1), np.int64),
            mip_stride=given(None if atlas is None else atlas.mip_stride, (1, 1), np.int64),
            levels=given(None if atlas is None else atlas.levels, (1,), np.int64),
            pad=int(atlas.pad if atlas is not None else PAD),
            has_base=self.base is not None,
            base=given(self.base, (3, 1), np.float32),
            base_per_face=bool(self.base_per_face),
            face_materials=np.ascontiguousarray(self.face_materials, np.int32),
            planes=self.planes,
            has_vertex_colors=self.corner_colors is not None,
            corner_colors=given(self.corner_colors, (1, 3), np.uint32),
            has_light=self.corner_light is not None,
            corner_light=given(self.corner_light, (1, 9), np.float32),
            decode=_DECODE,
            decode_steps=_DECODE_STEPS,
            encode=_ENCODE,
            encode_steps=_ENCODE_STEPS,
        )


# ----------------------------------------------------------------------------- texel maps


def _face_texel_table(scene: Scene, entry: np.ndarray, atlas: TextureAtlas) -> tuple[np.ndarray, np.ndarray]:
    """Per-face affine maps from barycentrics to padded texel coordinates in the atlas.

    Parameters
    ----------
    scene : Scene
        With ``uvs``.
    entry : (F,) int64
        Atlas entry of each face's texture (``WHITE`` where untextured).
    atlas : TextureAtlas

    Returns
    -------
    table : (F + 1, 10) float32
        Row ``f``: ``ax, ay, bx, by, cx, cy`` so that a hit at barycentrics
        ``(u, v)`` samples at ``(x, y) = a + u b + v c`` in the entry's padded
        image, then the entry's offset and row stride as int32 bit patterns
        (columns 6 and 7), the entry itself (column 8, int32 bits) and
        ``log2`` of the face's texel density, level-0 texels per metre
        (column 9; ``sqrt`` of its texel area over its world area; -30 where
        untextured or degenerate). Row ``F`` (misses) samples BLACK.
    slow : (F + 1,) bool
        Faces whose footprint does not fit their padded entry (it spans more
        than the border, or is clamped far outside the image): their pixels
        are sampled with per-tap wrapping, as :func:`~renderers.backends.atlas.sample_texture` does.
    """
    n_faces = len(entry)
    table = np.zeros((n_faces + 1, TABLE_COLUMNS), np.float32)
    ints = table.view(np.int32)
    ints[:-1, 6] = atlas.offset[entry]
    ints[:-1, 7] = atlas.stride[entry]
    ints[:-1, 8] = entry
    ints[-1, 6:9] = atlas.offset[BLACK], atlas.stride[BLACK], BLACK
    table[:, 9] = NO_DENSITY
    slow = np.zeros(n_faces + 1, bool)
    pad, margin = atlas.pad, FOOTPRINT_MARGIN
    textured = np.flatnonzero(entry > BLACK)
    for start in range(0, len(textured), FACE_CHUNK):
        rows = textured[start : start + FACE_CHUNK]
        e = entry[rows]
        # (n, 3, 2) corner texel coordinates: texel centres at integers
        X = scene.uvs[scene.faces[rows]].astype(np.float64) * atlas.size[e][:, None, :] - 0.5
        lo = np.minimum(np.minimum(X[:, 0], X[:, 1]), X[:, 2])  # (n, 2); faster than min(axis=1)
        hi = np.maximum(np.maximum(X[:, 0], X[:, 1]), X[:, 2])
        period = atlas.period[e].astype(np.float64)  # (n, 2)
        shift = np.floor((lo + pad - margin) / np.where(period > 0, period, 1.0)) * period
        X -= shift[:, None, :]  # whole periods: the same texels, nearest the entry's origin
        e1, e2 = X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]
        texel_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        world_area = triangle_areas(scene.vertices[scene.faces[rows]])
        with np.errstate(divide="ignore", invalid="ignore"):
            density = 0.5 * np.log2(texel_area / world_area)
        table[rows, 9] = np.where(np.isfinite(density), density, NO_DENSITY)
        fits = ((lo - shift >= margin - pad) & (hi - shift <= atlas.extent[e] + pad - 1 - margin)).all(axis=1)
        X += pad
        table[rows, :6] = np.concatenate([X[:, 0], X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]], axis=1)  # a, b, c
        slow[rows[~fits]] = True
    return table, slow


def _texel_jacobians(scene: Scene, table: np.ndarray) -> np.ndarray:
    """(F + 1, 6) float32: each face's map from a world displacement in its plane to level-0 texels (2 x 3, rows).

    A face's texel coordinates are ``a + u b + v c`` (:func:`_face_texel_table`)
    and its points ``p0 + u e1 + v e2``; a displacement ``x`` in its plane has
    barycentric change ``pinv([e1 e2]) x``, hence texel change
    ``[b c] pinv([e1 e2]) x``. Degenerate faces (and misses) map to zero.
    """
    n_faces = scene.num_triangles
    out = np.zeros((n_faces + 1, 6), np.float32)
    for start in range(0, n_faces, FACE_CHUNK):
        rows = slice(start, min(start + FACE_CHUNK, n_faces))
        tri = scene.vertices[scene.faces[rows]].astype(np.float64)  # (n, 3, 3)
        E = np.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]], axis=2)  # (n, 3, 2)
        gram = np.einsum("nki,nkj->nij", E, E)  # (n, 2, 2)
        det = gram[:, 0, 0] * gram[:, 1, 1] - gram[:, 0, 1] ** 2
        ok = det > 1e-20
        inv = np.zeros_like(gram)
        inv[ok, 0, 0], inv[ok, 1, 1] = gram[ok, 1, 1] / det[ok], gram[ok, 0, 0] / det[ok]
        inv[ok, 0, 1] = inv[ok, 1, 0] = -gram[ok, 0, 1] / det[ok]
        pinv = np.einsum("nij,nkj->nik", inv, E)  # (n, 2, 3)
        bc = np.stack([table[rows, 2:4], table[rows, 4:6]], axis=2).astype(np.float64)  # (n, 2 texel axes, 2)
        out[rows] = np.einsum("nij,njk->nik", bc, pinv).reshape(-1, 6)
    return out


# ----------------------------------------------------------------------------- plane keys


def own_plane_keys(n: int) -> np.ndarray:
    """(n,) int64 plane keys that no two faces share (negative): every pair of faces gets the plane test."""
    return -1 - np.arange(n, dtype=np.int64)


def plane_keys(scene: Scene) -> np.ndarray:
    """(F + 1,) int64: one key per face, equal only for faces that lie in one plane.

    The edge search skips its plane test between faces with one key (the
    triangles of a tessellated wall), so a shared key must mean coplanar:
    faces are grouped by their quantized unit normal (12 bits a component,
    steps of 1/1024) and plane offset ``n . p`` (0.1 mm steps, to about
    210 m), and a face keeps its group's key only if all three of its
    vertices lie within ``PLANE_TOLERANCE`` of the plane of the group's first
    face. The rest (nearly but not truly coplanar, degenerate, farther out)
    and misses get keys of their own (negative, never shared): for them the
    plane test runs as it would without keys.
    """
    n_faces = scene.num_triangles
    keys = own_plane_keys(n_faces + 1)
    if not n_faces:
        return keys
    normal = np.zeros((n_faces, 3))
    offset = np.zeros(n_faces)
    ok = np.zeros(n_faces, bool)
    packed = keys[:-1].copy()
    for start in range(0, n_faces, FACE_CHUNK):  # a chunk of faces at a time, to bound temporaries
        rows = slice(start, min(start + FACE_CHUNK, n_faces))
        tri = scene.vertices[scene.faces[rows]].astype(np.float64)
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(n, axis=1)
        good = length > 1e-12
        n[good] /= length[good, None]
        normal[rows], offset[rows] = n, np.einsum("ij,ij->i", n, tri[:, 0])
        q = np.rint(n * 1024).astype(np.int64) + 1024  # 0 .. 2048: 12 bits
        d = np.rint(offset[rows] * 1e4)  # 0.1 mm
        good &= np.isfinite(d) & (np.abs(d) < 2**21)
        d = np.where(good, d, 0).astype(np.int64) + 2**21  # 22 bits
        packed[rows] = np.where(good, (q[:, 0] << 46) | (q[:, 1] << 34) | (q[:, 2] << 22) | d, packed[rows])
        ok[rows] = good
    groups, first, group_of = np.unique(packed, return_index=True, return_inverse=True)
    for start in range(0, n_faces, FACE_CHUNK):  # each face against its group's first face's plane
        rows = slice(start, min(start + FACE_CHUNK, n_faces))
        tri = scene.vertices[scene.faces[rows]].astype(np.float64)
        ref = first[group_of[rows]]
        distance = np.abs(np.einsum("ij,ikj->ik", normal[ref], tri) - offset[ref][:, None]).max(axis=1)
        ok[rows] &= distance <= PLANE_TOLERANCE
    keys[:-1] = np.where(ok, groups[group_of], keys[:-1])
    return keys
