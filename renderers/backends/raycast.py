"""The default backend: CPU ray casting with Open3D's ``RaycastingScene`` (Embree).

Per view, one ray per pixel centre leaves the camera centre along
``R @ (x, y, 1)`` (camera frame scaled to z = 1), so Open3D's ``t_hit``, which
counts multiples of the direction's length, *is* the planar z-depth. Colour is
``base_color * texture(uv) * vertex_color * face_color`` at the hit, with the
face's barycentrics interpolating uvs and vertex colours (Open3D's ``primitive_uvs``
``(u, v)`` weigh the face's vertices ``(1 - u - v, u, v)``), textures sampled
bilinearly with their sampler's wrap modes
(:func:`~renderers.backends.atlas.sample_texture`).

Shading is the costly part of a view after the cast, so :meth:`RaycastBackend.open`
prepares everything a view needs as per-face tables
(:class:`~renderers.backends.face_tables.FaceTables`, handed to the kernels as
:class:`~renderers.backends.shading_kernels.ShadingTables`), and a view is one
compiled pass over its pixels (:func:`shading_kernels.shade`, numba):

* every texture, with its sampler, becomes one entry of a
  :class:`~renderers.backends.atlas.TextureAtlas`: one flat buffer of RGBX
  texels, each entry surrounded by a ``PAD``-texel border that already holds
  what the wrap mode would fetch there (the next tile, the mirror image, the
  edge texel);
* every face gets its corners' texel coordinates in its entry, shifted by whole
  wrap periods so that its footprint lies inside the padded entry; bilinear
  taps then need no per-pixel wrapping, and one gather serves all materials;
* faces whose footprint does not fit (larger than the border, or clamped far
  outside their image) are marked (``FaceTables.slow``), and their pixels are
  sampled again with per-tap wrapping, as ``sample_texture`` does;
* a scene with face colours gets one per-face factor, its material's base
  colour times its face colour (one gather per pixel, as for base colours);
* misses hit a sentinel face that shades black.

At ``antialias="off"`` the result matches ``sample_texture`` (and the
per-material reference shading) up to float32 rounding: a channel may differ
by one level. The other levels (``textures``, ``full``; docs/design.md,
"Renderer notes") add:

* **mip levels** in the atlas (built with ``mips``: 2x2 box averages down to
  1x1, each level with its own wrap-mode border,
  :func:`~renderers.backends.atlas.mip_chain`) and a level of detail per hit
  from a ray cone (``shading_kernels._footprint``, ``shading_kernels._level``):
  trilinear, with ``shading_kernels.ANISO_PROBES`` probes along the
  footprint's long axis (each face's world-to-texel map,
  ``FaceTables.texel_jacobian``), one where the footprint is near round
  (``shading_kernels.ISOTROPIC``);
* at ``full``, ``EDGE_SAMPLES`` more rays at the fixed offsets ``SUBPIXEL`` in
  the pixels that straddle an edge (found while shading,
  ``shading_kernels._mark_edges``; :func:`~renderers.backends.edges.edge_pixels`
  on its own, :mod:`renderers.backends.edges`), averaged with the centre
  sample. Depth is always the pixel-centre sample's;
* baked light (synthetic apartments, ``lighting="baked"``,
  :mod:`renderers.lighting`): the albedo times each face's interpolated
  corner irradiance in linear light, then sRGB (``shading_kernels._lit``).

Back faces (docs/design.md, "Back faces"): a face of a single-sided material
is seen from its front (counter-clockwise) side only; :meth:`~RaycastRenderer.cast`
sends a ray that meets its back on to the next face it crosses.

A view is :meth:`~RaycastRenderer.rays`, :meth:`~RaycastRenderer.cast`,
then :meth:`~RaycastRenderer.shade_hits` (public, for benchmarks and callers
with their own rays). Open3D's ``cast_rays`` keeps the GIL while Embree runs
on all cores, so these run one after the other (a caster thread overlapping
the shading was measured slower); the kernels release the GIL, and shading a
view splits its pixels between the calling thread and one helper thread.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from renderers.backends.base import ANTIALIAS, LIGHTING, RenderBackend, RenderedView, SceneRenderer, build_raycaster, register_backend
from renderers.backends import shading_kernels
from renderers.backends.edges import EDGE_COLOR, EDGE_GAP, SUBPIXEL
from renderers.backends.face_tables import FaceTables
from renderers.scene import Scene

__all__ = ["PARALLEL_MIN_PIXELS", "SPLIT_MIN_PIXELS", "RaycastBackend", "RaycastRenderer", "face_normals"]

log = logging.getLogger(__name__)

PARALLEL_MIN_PIXELS = 1 << 12  # work on this many pixels is shared by two threads (smaller: slower)
SPLIT_MIN_PIXELS = 1 << 11  # the smallest chunk of shared work (a kernel call costs about 6 us)

# Stand-ins for the arrays of features a scene or a call does not have (the kernels take them all).
_NO_T, _NO_VEC3, _NO_RAYS = np.zeros(0, np.float32), np.zeros((0, 3), np.float32), np.zeros((0, 6), np.float32)
_NO_EDGES = np.zeros(0, bool)
_INVALID_ID = np.uint32(2**32 - 1)  # Open3D's id of no face (a miss)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit front normals of triangles: the side their corners run counter-clockwise (right-hand rule).

    Parameters
    ----------
    vertices : (V, 3) float
    faces : (F, 3) int

    Returns
    -------
    (F, 3) float32
        Open3D's ``primitive_normals`` of the same faces; zero for a
        degenerate face (no side is its back).
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # (F, 3)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0).astype(np.float32)


class RaycastRenderer(SceneRenderer):
    """A scene opened by :class:`RaycastBackend`: its Embree scene and its per-face shading tables.

    Attributes
    ----------
    scene : Scene
    antialias : {"off", "textures", "full"}
    tables : FaceTables
        What shading reads of each face, built once here; the kernels read
        them as one :class:`~renderers.backends.shading_kernels.ShadingTables`.
    """

    def __init__(self, scene: Scene, antialias: str = "full", lighting: str = "baked") -> None:
        import open3d as o3d

        if antialias not in ANTIALIAS:
            raise ValueError(f"antialias must be one of {', '.join(ANTIALIAS)}, got {antialias!r}")
        if lighting not in LIGHTING:
            raise ValueError(f"lighting must be one of {', '.join(LIGHTING)}, got {lighting!r}")
        self._o3c = o3d.core
        self.scene = scene
        self.antialias = antialias
        self._raycaster = build_raycaster(scene)  # also what raycaster() hands out
        # Back faces (docs/design.md, "Back faces"): per face, whether only its front is seen, and its unit
        # front normal (the first cast's normals are Open3D's own; these serve the hits found behind a back face).
        single = scene.single_sided_faces
        self._single_sided = single  # (F,) or None
        self._face_normals = None if single is None else face_normals(scene.vertices, scene.faces)
        self._behind = None  # (RaycastingScene, face ids by geometry and index): built at the first back-face hit
        self._pool: ThreadPoolExecutor | None = None  # the helper thread of shade_hits, started on first use
        irradiance = None
        if lighting == "baked":  # synthetic apartments: per-vertex light, baked with this Embree scene
            from renderers.lighting import scene_irradiance

            irradiance = scene_irradiance(scene, self._raycaster)
        self.tables = FaceTables.build(scene, antialias=antialias, irradiance=irradiance)
        self._kernel_tables = self.tables.kernel_tables()

    # ------------------------------------------------------------------ rays and cast

    @staticmethod
    def rays(K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H, W, 6) float32 rays: origin and direction with camera-frame z = 1.

        Pixel ``(i, j)``'s camera-frame direction is ``(p_i + q_j, y_j, 1)``
        (:func:`renderers.camera.pixel_rays`; ``q`` is the skew term), so its
        world direction ``R (x, y, 1)`` is a column term plus a row term: one
        broadcast add per axis, interleaved as it is written
        (:func:`shading_kernels.grid_rays`; no BLAS, whose spinning threads
        would slow the cast that follows).
        """
        K = np.asarray(K, dtype=np.float64)
        c2w = np.asarray(cam2world, dtype=np.float64)
        R = c2w[:3, :3]
        p = (np.arange(width) - K[0, 2]) / K[0, 0]  # (W,)
        y = (np.arange(height) - K[1, 2]) / K[1, 1]  # (H,)
        q = -K[0, 1] / K[0, 0] * y  # (H,)
        cols = (R[:, :1] * p).astype(np.float32)  # (3, W)
        rows = (R[:, :1] * q + R[:, 1:2] * y + R[:, 2:]).astype(np.float32)  # (3, H)
        out = np.empty((height, width, 6), np.float32)
        shading_kernels.grid_rays(c2w[:3, 3].astype(np.float32), rows, cols, out)
        return out

    def cast(self, rays: np.ndarray) -> dict:
        """Open3D's hits (``t_hit``, ``primitive_ids``, ``primitive_uvs``... as tensors) of (..., 6) float32 rays.

        A ray whose first hit is the back of a single-sided face goes on
        through it (:meth:`_through_back_faces`); in a scene whose faces are
        all double-sided this is Open3D's ``cast_rays`` alone.
        """
        rays = np.ascontiguousarray(rays, np.float32)
        hits = self._raycaster.cast_rays(self._o3c.Tensor.from_numpy(rays))
        if self._single_sided is None:
            return hits
        return self._through_back_faces(rays, hits)

    def _through_back_faces(self, rays: np.ndarray, hits: dict) -> dict:
        """``hits`` where every ray's hit is its nearest one that is not the back of a single-sided face.

        The rays whose first hit is such a back face (its front normal
        pointing along the ray) are cast again with ``list_intersections``,
        which reports every face along them, and each takes its nearest
        acceptable one, or none (a miss). Nearest in the list, not a new
        cast from just past the back face: no offset to choose, and a front
        face coincident with the back face (a wall modelled as two opposite
        faces) is found whichever of the two Embree reports first. Open3D's
        list leaves out a hit at the same distance as the one reported just
        before it on the same geometry, so the list is asked of a second
        Embree scene (:meth:`_behind_scene`) whose faces are two geometries
        by orientation: opposite faces never share one.

        Parameters
        ----------
        rays : (..., 6) float32
        hits : dict
            Open3D's ``cast_rays`` of ``rays``.

        Returns
        -------
        dict
            ``hits`` itself when no ray met a culled back face; else the same
            keys, as tensors over numpy arrays of its own.
        """
        prim = hits["primitive_ids"].numpy().reshape(-1).view(np.int32)  # (N,), misses -1
        flat_rays = rays.reshape(-1, 6)  # (N, 6)
        back = np.empty(len(prim), np.int64)
        back = back[: shading_kernels.back_face_hits(prim, hits["primitive_normals"].numpy().reshape(-1, 3), flat_rays,
                                                     self._single_sided, back)]  # fmt: skip
        if not len(back):
            return hits
        d = flat_rays[:, 3:]  # (N, 3)
        out = {k: v.numpy().copy() for k, v in hits.items()}  # the caller's own arrays
        behind, face_of, first_of = self._behind_scene()
        found = behind.list_intersections(self._o3c.Tensor.from_numpy(np.ascontiguousarray(flat_rays[back])))
        ray = found["ray_ids"].numpy().astype(np.int64)  # (M,) into back
        p = face_of[first_of[found["geometry_ids"].numpy()] + found["primitive_ids"].numpy()]  # (M,) face ids
        t = found["t_hit"].numpy()  # (M,)
        ok = ~self._single_sided[p] | (np.einsum("mc,mc->m", self._face_normals[p], d[back[ray]]) <= 0.0)
        ok &= np.isfinite(t)
        ray, p, t, uv = ray[ok], p[ok], t[ok], found["primitive_uvs"].numpy()[ok]
        order = np.lexsort((t, ray))  # by ray, nearest first
        first = order[np.unique(ray[order], return_index=True)[1]]  # (R,) the nearest acceptable hit of each ray
        flat = {k: v.reshape(len(prim), -1) for k, v in out.items()}
        miss = np.ones(len(back), bool)
        miss[ray[first]] = False
        rows, gone = back[ray[first]], back[miss]
        flat["t_hit"][rows, 0], flat["t_hit"][gone, 0] = t[first], np.inf
        flat["primitive_ids"][rows, 0], flat["primitive_ids"][gone, 0] = p[first], _INVALID_ID
        flat["geometry_ids"][rows, 0], flat["geometry_ids"][gone, 0] = 0, _INVALID_ID
        flat["primitive_uvs"][rows], flat["primitive_uvs"][gone] = uv[first], 0.0
        flat["primitive_normals"][rows], flat["primitive_normals"][gone] = self._face_normals[p[first]], 0.0
        return {k: self._o3c.Tensor.from_numpy(v) for k, v in out.items()}

    def _behind_scene(self) -> tuple:
        """``(scene, face_of, first_of)``: the faces in an Embree scene of two geometries, by orientation.

        A face whose front normal's largest component is positive is in
        geometry 0, the others in geometry 1, so two opposite faces are
        never in the same one; geometry ``g``'s primitive ``i`` is face
        ``face_of[first_of[g] + i]``. Built at the first back-face hit.
        """
        if self._behind is None:
            import open3d as o3d

            n = self._face_normals
            positive = n[np.arange(len(n)), np.abs(n).argmax(axis=1)] >= 0  # (F,)
            groups = [np.flatnonzero(positive), np.flatnonzero(~positive)]
            scene = o3d.t.geometry.RaycastingScene()
            vertices = self._o3c.Tensor(np.ascontiguousarray(self.scene.vertices, np.float32))
            for g in groups:  # an empty group adds an empty geometry: the ids stay 0 and 1
                scene.add_triangles(vertices, self._o3c.Tensor(np.ascontiguousarray(self.scene.faces[g], np.uint32)))
            self._behind = scene, np.concatenate(groups), np.array([0, len(groups[0])], np.int64)
        return self._behind

    # ------------------------------------------------------------------ shading

    def shade_hits(
        self, hits: dict, width: int, height: int, *, rays: np.ndarray | None = None,
        K: np.ndarray | None = None, cam2world: np.ndarray | None = None,
    ) -> RenderedView:  # fmt: skip
        """The view from :meth:`cast`'s hits of an (H, W) ray grid.

        With ``rays`` and ``K`` (what :meth:`render` passes), textures are
        filtered by each pixel's footprint (``antialias`` ``textures`` and
        ``full``); with ``cam2world`` too, pixels on an edge get extra samples
        (``full``). Without them every level shades as ``off`` does. Depth is
        always the pixel-centre sample's.

        Large views are shaded in chunks by two threads (:meth:`_split`): the
        compiled kernels release the GIL, so the threads share the two cores
        that the ray cast just used.
        """
        # Misses carry Open3D's INVALID_ID, 2**32 - 1: -1 as int32, shaded as the miss sentinel F.
        prim = hits["primitive_ids"].numpy().reshape(-1).view(np.int32)
        bary_uv = hits["primitive_uvs"].numpy().reshape(-1, 2)
        filtered = self.antialias != "off" and rays is not None and K is not None
        geometry = shading_kernels.hit_geometry(hits, rays, K) if filtered else None
        edges = filtered and self.antialias == "full" and cam2world is not None
        edge = np.zeros(len(prim), bool) if edges else _NO_EDGES
        rgb = np.empty((len(prim), 3), np.uint8)
        self._split(lambda a, b: self.shade_into(rgb, prim, bary_uv, geometry, a, b, edge, width), len(prim))
        depth = hits["t_hit"].numpy().reshape(height, width).copy()  # the caller's hits stay as they were
        np.copyto(depth, np.float32(0.0), where=~np.isfinite(depth))
        if edges:
            self._supersample_edges(rgb, prim, edge, width, K, cam2world)
        return RenderedView(rgb=rgb.reshape(height, width, 3), depth=depth)

    def _split(self, work, n: int) -> None:
        """``work(start, stop)`` over ``range(n)``: in chunks taken by this and the helper thread, when ``n`` is large.

        Each chunk is a quarter of what is left, and at least
        ``SPLIT_MIN_PIXELS``: the first ones are large, the last ones small,
        so both threads finish together wherever a view's costly pixels lie
        (two fixed halves left one thread idle for 4 % of the shading).
        """
        if n < PARALLEL_MIN_PIXELS:
            work(0, n)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raycast-shade")
        lock, taken = threading.Lock(), [0]

        def chunks() -> None:
            while True:
                with lock:
                    start = taken[0]
                    size = min(n - start, max((n - start) // 4, SPLIT_MIN_PIXELS, 1))
                    taken[0] = start + size
                if size <= 0:
                    return
                try:
                    work(start, start + size)
                except BaseException:
                    with lock:  # the other thread takes no more
                        taken[0] = n
                    raise

        helper = self._pool.submit(chunks)
        try:
            chunks()
        finally:
            helper.result()

    def shade_into(self, out, prim, bary_uv, geometry, start: int, stop: int, edge=None, width: int = 0,
                   isotropic: float = shading_kernels.ISOTROPIC) -> None:  # fmt: skip
        """:func:`shading_kernels.shade` of hits ``start .. stop - 1`` (and their edges into ``edge``, if given).

        What :meth:`shade_hits` runs on each chunk of a view's pixels (on
        either thread), public for callers with their own hits.

        Parameters
        ----------
        out : (N, 3) uint8
            Receives the colours of hits ``start .. stop - 1``.
        prim : (N,) int32
            Hit faces; anything outside ``[0, F)`` is a miss, shaded black.
        bary_uv : (N, 2) float32
            Open3D's barycentrics.
        geometry : tuple or None
            :func:`shading_kernels.hit_geometry` of the hits: textures are then
            filtered by each hit's footprint (where the tables hold mip
            levels); None shades as ``antialias="off"``.
        start, stop : int
        edge : (N,) bool, optional
            With ``geometry``, receives the pixels on an edge of an image
            ``width`` pixels wide (only True is stored).
        width : int
        isotropic : float
            Footprints at most ``isotropic`` times longer than wide take one
            trilinear probe (``inf``: every one does).

        Raises
        ------
        ValueError
            The kernels do not check bounds, so every array's length is
            checked here: a caller's mistake is a ``ValueError``, never a read
            past an array.
        """
        edge = _NO_EDGES if edge is None else edge
        n = len(prim)
        lengths = [len(bary_uv), len(out)] + ([len(a) for a in geometry[:3]] if geometry is not None else [])
        if any(m != n for m in lengths) or not 0 <= start <= stop <= n or (
            len(edge) and (len(edge) != n or geometry is None or width < 1 or n % width)
        ):
            raise ValueError(
                f"shading {n} hits: barycentrics, output, depths, normals and rays must have {n} rows "
                f"(got {lengths}), the range {start}..{stop} lie within them, an edge search rows of "
                f"{width} pixels over them all"
            )
        tables = self._kernel_tables
        if geometry is None:
            shading_kernels.shade(tables, prim, bary_uv, False, _NO_T, _NO_VEC3, _NO_RAYS, np.float32(0.0), out,
                                  start, stop, edge, width, np.float32(0.0), np.float32(0.0))  # fmt: skip
        else:
            t, normals, rays, inv_focal = geometry
            shading_kernels.shade(tables, prim, bary_uv, True, t, normals, rays, inv_focal, out, start, stop, edge,
                                  width, inv_focal * np.float32(EDGE_GAP), np.float32(isotropic) ** 2)  # fmt: skip

    def _supersample_edges(self, rgb, prim, edge, width, K, cam2world) -> None:
        """Average ``EDGE_SAMPLES`` more samples into the pixels of ``rgb`` (N, 3) that straddle an edge, in place.

        ``edge`` (N,) holds the pixels that, with a 4-neighbour, hit different
        materials (or one misses), or surfaces apart by more than
        ``EDGE_GAP`` pixel footprints along either's normal (a depth step or a
        crease; the inner edges of a flat wall's triangles are not edges)
        (``shading_kernels._mark_edges``, found while shading); here it also
        gets those whose colours on untextured faces are more than
        ``EDGE_COLOR`` levels apart (:mod:`renderers.backends.edges`). Both
        pixels of such a pair are supersampled at the fixed ``SUBPIXEL``
        offsets; the pixel-centre sample counts as one more.
        """
        plain = self.tables.untextured
        if self.tables.atlas is None:  # colour from vertex, face or base colours everywhere
            plain = np.ones(self.tables.n_faces + 1, bool)
        if plain is not None:
            self._split(lambda a, b: shading_kernels.colour_edges(prim, rgb, plain, EDGE_COLOR, edge, width, a, b),
                        len(prim))  # fmt: skip
        index = np.flatnonzero(edge)
        if not len(index):
            return
        log.debug("%s: %d edge pixels of %d supersampled", self.scene.name, len(index), edge.size)
        shading_kernels.average_samples(rgb, index, self._subpixel_samples(index, width, K, cam2world))

    def _subpixel_samples(self, index, width, K, cam2world) -> np.ndarray:
        """(M S, 3) uint8: the colours of pixels ``index`` (M,) at the ``S`` offsets ``SUBPIXEL``, pixel-major.

        Each sample takes one trilinear probe whatever its footprint's shape:
        it stands for part of the pixel, and the pixel's samples together
        span its footprint (medium apartment: 42.83 dB with four samples and
        the probes along long footprints, 42.88 without; their shading 2.5 %
        cheaper).
        """
        samples = np.empty((len(index) * len(SUBPIXEL), 3), np.uint8)
        sub = np.empty((len(samples), 6), np.float32)
        K, cam2world = np.asarray(K, np.float64), np.asarray(cam2world, np.float64)
        shading_kernels.subpixel_rays(index, width, SUBPIXEL, K, cam2world, sub)
        sub_hits = self.cast(sub)
        sub_prim = sub_hits["primitive_ids"].numpy().reshape(-1).view(np.int32)
        sub_uv = sub_hits["primitive_uvs"].numpy().reshape(-1, 2)
        sub_geometry = shading_kernels.hit_geometry(sub_hits, sub, K) if self._kernel_tables.mipmapped else None
        self._split(lambda a, b: self.shade_into(samples, sub_prim, sub_uv, sub_geometry, a, b, isotropic=math.inf),
                    len(sub_prim))  # fmt: skip
        return samples

    def shade(self, prim: np.ndarray, bary_uv: np.ndarray) -> np.ndarray:
        """(N, 3) uint8 sRGB colours at hits, one sample each, textures at level 0 (``antialias="off"``'s shading).

        Parameters
        ----------
        prim : (N,) int
            Hit faces; ``F`` (the number of faces) or -1 marks a miss, shaded black.
        bary_uv : (N, 2) float32
            Open3D's barycentrics: the hit weighs the face's corners ``(1 - u - v, u, v)``.
        """
        prim = np.ascontiguousarray(prim, np.int32)
        out = np.empty((len(prim), 3), np.uint8)
        self.shade_into(out, prim, np.ascontiguousarray(bary_uv, np.float32), None, 0, len(prim))
        return out

    # ------------------------------------------------------------------ views

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        rays = self.rays(K, cam2world, width, height)
        return self.shade_hits(self.cast(rays), width, height, rays=rays, K=K, cam2world=cam2world)

    def close(self) -> None:
        self._raycaster = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@register_backend
class RaycastBackend(RenderBackend):
    """Open3D/Embree ray casting on the CPU; works wherever pip does."""

    name = "raycast"
    description = "Open3D/Embree ray casting on the CPU (honours --antialias and --lighting)"

    def open(self, scene: Scene, *, antialias: str = "full", lighting: str = "baked") -> RaycastRenderer:
        return RaycastRenderer(scene, antialias=antialias, lighting=lighting)
