"""The default backend: CPU ray casting with Open3D's ``RaycastingScene`` (Embree).

Per view, one ray per pixel centre leaves the camera centre along
``R @ (x, y, 1)`` (camera frame scaled to z = 1), so Open3D's ``t_hit``, which
counts multiples of the direction's length, *is* the planar z-depth. Colour is
``base_color * texture(uv) * vertex_color * face_color`` at the hit, with the
face's barycentrics interpolating uvs and vertex colours (Open3D's ``primitive_uvs``
``(u, v)`` weigh the face's vertices ``(1 - u - v, u, v)``), textures sampled
bilinearly with their sampler's wrap modes (:func:`sample_texture`).

Shading is the costly part of a view after the cast, so :meth:`open` prepares
everything a view needs as per-face tables (:class:`kernels.ShadingTables`),
and a view is one compiled pass over its pixels (:func:`kernels.shade`,
numba):

* every texture, with its sampler, becomes one entry of a :class:`TextureAtlas`:
  one flat buffer of RGBX texels, each entry surrounded by a ``PAD``-texel
  border that already holds what the wrap mode would fetch there (the next
  tile, the mirror image, the edge texel);
* every face gets its corners' texel coordinates in its entry, shifted by whole
  wrap periods so that its footprint lies inside the padded entry; bilinear
  taps then need no per-pixel wrapping, and one gather serves all materials;
* faces whose footprint does not fit (larger than the border, or clamped far
  outside their image) are marked, and their pixels are sampled again with
  per-tap wrapping, as :func:`sample_texture` does;
* a scene with face colours gets one per-face factor, its material's base
  colour times its face colour (one gather per pixel, as for base colours);
* misses hit a sentinel face that shades black.

At ``antialias="off"`` the result matches :func:`sample_texture` (and the
per-material reference shading) up to float32 rounding: a channel may differ
by one level. The other levels (``textures``, ``full``; docs/design.md,
"Renderer notes") add:

* **mip levels** in the atlas (built with ``mips``: 2x2 box averages down to
  1x1, each level with its own wrap-mode border) and a level of detail per
  hit from a ray cone (``kernels._footprint``, ``kernels._level``):
  trilinear, with ``kernels.ANISO_PROBES`` probes along the footprint's long
  axis (each face's world-to-texel map, :func:`_texel_jacobians`), one where
  the footprint is near round (``kernels.ISOTROPIC``);
* at ``full``, ``EDGE_SAMPLES`` more rays at the fixed offsets ``SUBPIXEL`` in
  the pixels that straddle an edge (found while shading,
  ``kernels._mark_edges``; :func:`_edge_pixels` on its own), averaged with the
  centre sample. Depth is always the pixel-centre sample's;
* baked light (synthetic apartments, ``lighting="baked"``,
  :mod:`renderers.lighting`): the albedo times each face's interpolated
  corner irradiance in linear light, then sRGB (``kernels._lit``).

A view is :meth:`~_RaycastRenderer.rays`, :meth:`~_RaycastRenderer.cast`,
then :meth:`~_RaycastRenderer.shade_hits` (public, for benchmarks and callers
with their own rays). Open3D's ``cast_rays`` keeps the GIL while Embree runs
on all cores, so these run one after the other (a caster thread overlapping
the shading was measured slower); the kernels release the GIL, and shading a
view splits its pixels between the calling thread and one helper thread.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from renderers.backends import ANTIALIAS, LIGHTING, RenderBackend, RenderedView, SceneRenderer, build_raycaster, register_backend
from renderers.backends import kernels
from renderers.scene import Scene, Texture, Wrap, triangle_areas

__all__ = ["PAD", "RaycastBackend", "TextureAtlas", "sample_texture"]

log = logging.getLogger(__name__)

PAD = 32  # texels of wrap-mode border per atlas entry: faces spanning < 2 PAD - 1 fit (synthetic ones span <= 39)
FOOTPRINT_MARGIN = 0.5  # texels kept between a face's footprint and its entry's edge (barycentric round-off)
FACE_CHUNK = 1 << 18  # faces prepared at a time in open(), to bound temporaries
WHITE, BLACK = 0, 1  # atlas entries of untextured faces and of misses
PARALLEL_MIN_PIXELS = 1 << 12  # work on this many pixels is shared by two threads (smaller: slower)
SPLIT_MIN_PIXELS = 1 << 11  # the smallest chunk of shared work (a kernel call costs about 6 us)
TABLE_COLUMNS = 10  # per-face table: texel map (6), entry offset and stride, entry, log2 texel density
NO_DENSITY = -30.0  # log2 texel density of untextured or degenerate faces: always level 0
MAX_TEXTURE_SIDE = 8192  # texels per side rendered; a larger texture is downscaled once, with a note
ATLAS_BUDGET = 1 << 28  # texels in one scene's atlas, levels and borders included (1 GiB of RGBX)
EDGE_GAP = 0.5  # pixel footprints between two hits' surfaces, along a normal, that make an edge
EDGE_COLOR = 48  # levels between two untextured neighbours' colours that make an edge
# Extra samples per edge pixel (medium apartment vs 8 x 8, benchmarks/fidelity.py: 2 give 42.3 dB, 4 in the
# four quadrants 42.8, the edge samples' cast and shading half of 4's: about 0.7 ms a 256^2 view of the large one).
EDGE_SAMPLES = 2
# Fixed sub-pixel offsets of the edge samples: in two opposite quadrants, a quarter pixel from the centre along
# each axis and jittered by up to an eighth (seeded), so that with the centre sample they are centred on the pixel.
_pattern = np.random.default_rng(20261203)
SUBPIXEL = np.array([(0.25, 0.25), (-0.25, -0.25)]) + _pattern.uniform(-0.125, 0.125, (EDGE_SAMPLES, 2))
del _pattern



def _wrap(i: np.ndarray, n: int, mode: Wrap) -> np.ndarray:
    """Integer texel indices folded into [0, n) by a sampler wrap mode."""
    if mode == Wrap.CLAMP_TO_EDGE:
        return np.clip(i, 0, n - 1)
    if mode == Wrap.MIRRORED_REPEAT:
        period = np.mod(i, 2 * n)
        return np.where(period < n, period, 2 * n - 1 - period)
    return np.mod(i, n)


def sample_texture(texture: Texture, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup (the reference the atlas path reproduces).

    Parameters
    ----------
    texture : Texture
        ``image`` (H, W, C) uint8, row 0 on top.
    uv : (N, 2) float
        glTF texture coordinates: (0, 0) is the image's top-left corner,
        texel ``(i, j)`` has its centre at ``((i + 0.5) / W, (j + 0.5) / H)``.

    Returns
    -------
    (N, 3) float32
        RGB in [0, 255].
    """
    img = texture.image
    h, w = img.shape[:2]
    x = uv[:, 0].astype(np.float64) * w - 0.5
    y = uv[:, 1].astype(np.float64) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = _wrap(x0, w, texture.wrap_s), _wrap(x0 + 1, w, texture.wrap_s)
    ya, yb = _wrap(y0, h, texture.wrap_t), _wrap(y0 + 1, h, texture.wrap_t)
    rgb = img[..., :3]
    top = rgb[ya, xa] * (1 - fx) + rgb[ya, xb] * fx
    bottom = rgb[yb, xa] * (1 - fx) + rgb[yb, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


# ----------------------------------------------------------------------------- texture atlas


def _wrapped_border(rgb: np.ndarray, axis: int, mode: Wrap, pad: int) -> np.ndarray:
    """``rgb`` along ``axis`` extended to one wrap period (doubled for MIRRORED_REPEAT), plus ``pad`` each side."""
    width = [(0, 0)] * rgb.ndim
    width[axis] = (pad, pad)
    if mode == Wrap.CLAMP_TO_EDGE:
        return np.pad(rgb, width, mode="edge")
    if mode == Wrap.MIRRORED_REPEAT:  # texel n + k mirrors texel n - 1 - k: period 2n
        rgb = np.concatenate([rgb, np.flip(rgb, axis)], axis=axis)
    return np.pad(rgb, width, mode="wrap")


@dataclass(frozen=True, eq=False)
class TextureAtlas:
    """Textures with their samplers' wrap modes baked into a border, in one flat buffer, with mip levels.

    Entry ``e`` is an image of ``extent[e] + 2 * pad`` texels a side (x, y),
    stored row-major from ``texels[offset[e]]`` with row stride ``stride[e]``.
    Its texel ``(pad + i, pad + j)`` is the texture's texel ``(i, j)`` for
    ``0 <= i < size[e, 0]``, ``0 <= j < size[e, 1]``; around (and, for
    MIRRORED_REPEAT, beside) it lies what the wrap mode fetches at those indices.
    Entries ``WHITE`` and ``BLACK`` are 2x2 constant images without border.

    Built with ``mips``, each entry also holds its mip chain: level ``k`` is
    level ``k - 1`` averaged over 2x2 texel blocks (a box filter, as GPUs
    build them; OpenCV's area resampling where a side is odd), down to 1x1,
    each level with its own ``pad``-texel wrap-mode border, laid out like level
    0 (``mip_*[e, k]``; ``mip_*[e, 0]`` is level 0). Levels past an entry's
    last repeat its last. A level-0 padded coordinate ``x`` maps to level
    ``k`` at ``(x - pad + 0.5) * scale[e, k] - 0.5 + pad``: the same point of
    the texture, as the level's texels cover it.

    Attributes
    ----------
    texels : (T,) uint32
        RGBX, little-endian bytes R, G, B, 255.
    offset, stride : (E,) int64
    size : (E, 2) int64
        The texture's width and height (after any downscaling, see :meth:`build`).
    period : (E, 2) int64
        Wrap period along x and y: ``size`` (REPEAT), ``2 * size``
        (MIRRORED_REPEAT) or 0 (CLAMP_TO_EDGE: no shift is allowed).
    extent : (E, 2) int64
        Width and height inside the border: ``2 * size`` where mirrored, else ``size``.
    pad : int
    levels : (E,) int64
        Mip levels held per entry (1 without ``mips``).
    mip_offset, mip_stride : (E, L) int64
    mip_size, mip_period : (E, L, 2) int64
    mip_scale : (E, L, 2) float32
        ``mip_size[e, k] / size[e]``.
    """

    texels: np.ndarray
    offset: np.ndarray
    stride: np.ndarray
    size: np.ndarray
    period: np.ndarray
    extent: np.ndarray
    pad: int
    levels: np.ndarray = None
    mip_offset: np.ndarray = None
    mip_stride: np.ndarray = None
    mip_size: np.ndarray = None
    mip_period: np.ndarray = None
    mip_scale: np.ndarray = None

    @classmethod
    def build(
        cls, textures: Iterable[Texture], pad: int = PAD, *, mips: bool = False, scene: str = "",
        max_side: int | None = None, budget: int | None = None,
    ) -> TextureAtlas:  # fmt: skip
        """One entry per texture, in order, after the WHITE and BLACK entries (``2 + k`` is texture ``k``).

        A texture wider or taller than ``max_side`` (:data:`MAX_TEXTURE_SIDE`)
        is downscaled once (area resampling) to fit, with a logged note naming
        ``scene`` and the texture; while the whole atlas (levels and borders
        included) would exceed ``budget`` texels (:data:`ATLAS_BUDGET`), the
        largest texture is halved again, with a note. Texture coordinates are
        unaffected: they address the image as a whole.
        """
        max_side = MAX_TEXTURE_SIDE if max_side is None else max_side
        budget = ATLAS_BUDGET if budget is None else budget
        textures = list(textures)
        bases = [_fit_side(t, max_side, scene) for t in textures]

        def texel_count(rgb: np.ndarray, t: Texture) -> int:  # one level with its border, as laid out below
            h, w = rgb.shape[:2]
            fw, fh = (2 if m == Wrap.MIRRORED_REPEAT else 1 for m in (t.wrap_s, t.wrap_t))
            return (fw * w + 2 * pad) * (fh * h + 2 * pad)

        def chain_count(rgb: np.ndarray, t: Texture) -> int:
            h, w = rgb.shape[:2]
            total = 0
            while True:
                total += texel_count(np.empty((h, w, 0)), t)
                if not mips or max(h, w) == 1:
                    return total
                h, w = max(1, h // 2), max(1, w // 2)

        counts = [chain_count(b, t) for b, t in zip(bases, textures)]
        while bases and sum(counts) > budget:
            k = int(np.argmax([b.shape[0] * b.shape[1] for b in bases]))
            h, w = bases[k].shape[:2]
            if max(h, w) == 1:
                break
            log.warning(
                "%s: texture %r downscaled from %d x %d to %d x %d to keep the texture atlas within %s texels",
                scene or "scene", textures[k].name, w, h, max(1, w // 2), max(1, h // 2), f"{budget:,}",
            )  # fmt: skip
            bases[k] = cv2.resize(bases[k], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
            counts[k] = chain_count(bases[k], textures[k])

        images = [[np.full((2, 2, 3), 255, np.uint8)], [np.zeros((2, 2, 3), np.uint8)]]  # per entry, per level
        sizes = [[(2, 2)], [(2, 2)]]
        period_factor = [(0, 0), (0, 0)]
        for t, rgb in zip(textures, bases):
            chain = _mip_chain(rgb) if mips else [rgb]
            images.append([_wrapped_border(_wrapped_border(im, 1, t.wrap_s, pad), 0, t.wrap_t, pad) for im in chain])
            sizes.append([(im.shape[1], im.shape[0]) for im in chain])
            period_factor.append(tuple({Wrap.CLAMP_TO_EDGE: 0, Wrap.MIRRORED_REPEAT: 2}.get(m, 1)
                                       for m in (t.wrap_s, t.wrap_t)))  # fmt: skip
        n_entries = len(images)
        levels = np.array([len(chain) for chain in images], np.int64)
        n_levels = int(levels.max())
        flat = [im for chain in images for im in chain]
        counts = np.array([im.shape[0] * im.shape[1] for im in flat], np.int64)
        if counts.sum() > np.iinfo(np.int32).max:
            raise ValueError(f"textures too large for one atlas: {counts.sum():,} texels with borders")
        texels = np.empty((counts.sum(), 4), np.uint8)
        starts = np.cumsum(counts) - counts
        for im, start, n in zip(flat, starts, counts):
            texels[start : start + n, :3] = im.reshape(-1, 3)
        texels[:, 3] = 255

        mip_offset = np.zeros((n_entries, n_levels), np.int64)
        mip_stride = np.zeros((n_entries, n_levels), np.int64)
        mip_size = np.zeros((n_entries, n_levels, 2), np.int64)
        at = 0
        for e, chain in enumerate(images):
            for k in range(n_levels):
                j = min(k, len(chain) - 1)
                mip_offset[e, k] = starts[at + j]
                mip_stride[e, k] = chain[j].shape[1]
                mip_size[e, k] = sizes[e][j]
            at += len(chain)
        factor = np.array(period_factor, np.int64)  # (E, 2)
        mip_period = mip_size * factor[:, None, :]
        extent = np.array([(im[0].shape[1] - 2 * pad, im[0].shape[0] - 2 * pad) for im in images[2:]], np.int64)
        return cls(
            texels=texels.view(np.uint32).reshape(-1),
            offset=mip_offset[:, 0].copy(),
            stride=mip_stride[:, 0].copy(),
            size=mip_size[:, 0].copy(),
            period=mip_period[:, 0].copy(),
            extent=np.concatenate([np.full((2, 2), 2, np.int64), extent.reshape(-1, 2)]),
            pad=pad,
            levels=levels,
            mip_offset=mip_offset,
            mip_stride=mip_stride,
            mip_size=mip_size,
            mip_period=mip_period,
            mip_scale=(mip_size / mip_size[:, :1, :]).astype(np.float32),
        )

    @property
    def nbytes(self) -> int:
        return int(self.texels.nbytes)


def _fit_side(texture: Texture, max_side: int, scene: str) -> np.ndarray:
    """The texture's RGB, downscaled once (area resampling) when a side exceeds ``max_side``, with a note."""
    rgb = texture.image[..., :3]
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    log.warning(
        "%s: texture %r is %d x %d, more than the %d texels per side rendered: downscaled once to %d x %d",
        scene or "scene", texture.name, w, h, max_side, nw, nh,
    )  # fmt: skip
    return cv2.resize(np.ascontiguousarray(rgb), (nw, nh), interpolation=cv2.INTER_AREA)


def _mip_chain(rgb: np.ndarray) -> list[np.ndarray]:
    """``rgb`` and its mip levels down to 1x1: each level the 2x2 box average of the one above.

    Even sides halve exactly, so no texel mixes with one across the image's
    edge and every wrap mode's tiling is preserved level by level; an odd side
    is resampled by area (OpenCV ``INTER_AREA``) to half its size, rounded down.
    """
    chain = [np.ascontiguousarray(rgb)]
    while max(chain[-1].shape[:2]) > 1:
        a = chain[-1]
        h, w = a.shape[:2]
        if h % 2 == 0 and w % 2 == 0:
            s = a.reshape(h // 2, 2, w // 2, 2, 3).astype(np.uint16).sum(axis=(1, 3))
            chain.append(((s + 2) // 4).astype(np.uint8))
        else:
            nxt = cv2.resize(a, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
            chain.append(nxt.reshape(max(1, h // 2), max(1, w // 2), 3))
    return chain


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
        need :func:`_sample_wrapped`.
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


# ----------------------------------------------------------------------------- renderer


class _RaycastRenderer(SceneRenderer):
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
        self._pool: ThreadPoolExecutor | None = None  # the helper thread of shade_hits, started on first use
        n_faces = scene.num_triangles
        self._n_faces = n_faces
        mats = scene.face_materials if scene.face_materials is not None else np.zeros(n_faces, np.uint16)
        self._face_materials = np.append(mats.astype(np.int32), len(scene.materials))  # (F + 1,), misses last

        # Textures: one atlas entry per (image, sampler) in use, per-face texel maps.
        self._atlas = self._table = self._slow = self._entry = self._mip_rows = self._top_level = self._texel_jacobian = None
        self._untextured = None  # (F + 1,) bool: faces coloured without a texture (edge search by colour)
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
            self._atlas = TextureAtlas.build(textures, mips=antialias != "off", scene=scene.name)
            self._entry = entry_of  # (M,) atlas entry of each material
            self._table, slow = _face_texel_table(scene, entry_of[mats], self._atlas)
            self._mip_rows = self._top_level = None
            if antialias != "off":  # per (entry, level): scale x, y, offset and stride bits; one level more, repeated
                a = self._atlas
                n_entries, n_levels = a.mip_offset.shape
                rows = np.zeros((n_entries, n_levels + 1, 4), np.float32)
                rows[:, :n_levels, :2] = a.mip_scale
                rows.view(np.int32)[:, :n_levels, 2] = a.mip_offset
                rows.view(np.int32)[:, :n_levels, 3] = a.mip_stride
                rows[:, n_levels] = rows[:, n_levels - 1]
                self._mip_rows = rows.reshape(-1, 4)
                self._top_level = (a.levels - 1).astype(np.float32)
                self._texel_jacobian = _texel_jacobians(scene, self._table)
            self._slow = slow if slow.any() else None
            untextured = entry_of[mats] == WHITE
            self._untextured = np.append(untextured, False) if untextured.any() else None
            log.debug(
                "%s: texture atlas of %d entries (%d mip levels at most), %.0f MiB; %d of %d faces wrapped per pixel",
                scene.name, len(textures), int(self._atlas.levels.max()), self._atlas.nbytes / 2**20,
                int(slow.sum()), n_faces,
            )  # fmt: skip

        # Base colours: only where some differ from white (or nothing else colours the view). With face
        # colours, one factor per face instead (base colour x face colour), indexed by the hit face.
        base = np.array([m.base_color[:3] for m in scene.materials], np.float32)
        self._base = None
        self._base_per_face = scene.face_colors is not None
        if self._base_per_face:
            factor = base[mats] * (scene.face_colors.astype(np.float32) / np.float32(255.0))  # (F, 3)
            self._base = np.ascontiguousarray(np.append(factor, np.zeros((1, 3), np.float32), axis=0).T)  # (3, F + 1)
        elif (base != 1.0).any() or (self._table is None and scene.vertex_colors is None):
            self._base = np.ascontiguousarray(np.append(base, np.zeros((1, 3), np.float32), axis=0).T)  # (3, M + 1)

        # Vertex colours: each face's three corners as RGBX words; misses black.
        self._corner_colors = None
        if scene.vertex_colors is not None:
            rgbx = np.zeros((len(scene.vertices), 4), np.uint8)
            rgbx[:, :3] = scene.vertex_colors
            words = rgbx.view(np.uint32).reshape(-1)
            self._corner_colors = np.zeros((n_faces + 1, 3), np.uint32)
            self._corner_colors[:-1] = words[scene.faces]

        # Baked light (synthetic apartments): each face's corners' linear irradiance, (F + 1, 9) float32.
        self._corner_light = None
        if lighting == "baked":
            from renderers.lighting import scene_irradiance

            irradiance = scene_irradiance(scene, self._raycaster)
            if irradiance is not None:
                self._corner_light = np.zeros((n_faces + 1, 9), np.float32)
                self._corner_light[:-1] = irradiance[scene.faces].reshape(n_faces, 9)
        self._tables = _shading_tables(self)

    # ------------------------------------------------------------------ rays and cast

    @staticmethod
    def rays(K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H, W, 6) float32 rays: origin and direction with camera-frame z = 1.

        Pixel ``(i, j)``'s camera-frame direction is ``(p_i + q_j, y_j, 1)``
        (:func:`renderers.camera.pixel_rays`; ``q`` is the skew term), so its
        world direction ``R (x, y, 1)`` is a column term plus a row term: one
        broadcast add per axis, interleaved as it is written
        (:func:`kernels.grid_rays`; no BLAS, whose spinning threads would slow
        the cast that follows).
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
        kernels.grid_rays(c2w[:3, 3].astype(np.float32), rows, cols, out)
        return out

    def cast(self, rays: np.ndarray) -> dict:
        """Open3D's hits (``t_hit``, ``primitive_ids``, ``primitive_uvs``... as tensors) of (..., 6) float32 rays."""
        return self._raycaster.cast_rays(self._o3c.Tensor.from_numpy(np.ascontiguousarray(rays, np.float32)))

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
        geometry = self._geometry(hits, rays, K) if filtered else None
        edges = filtered and self.antialias == "full" and cam2world is not None
        edge = np.zeros(len(prim), bool) if edges else _NO_EDGES
        rgb = np.empty((len(prim), 3), np.uint8)
        self._split(lambda a, b: self._shade_into(rgb, prim, bary_uv, geometry, a, b, edge, width), len(prim))
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

    @staticmethod
    def _geometry(hits: dict, rays: np.ndarray, K: np.ndarray) -> tuple:
        """What the kernels need of each hit's surface and ray: planar depths, normals, rays, ``1 / sqrt(fx fy)``."""
        K = np.asarray(K, np.float64)
        return (
            hits["t_hit"].numpy().reshape(-1),
            hits["primitive_normals"].numpy().reshape(-1, 3),
            np.ascontiguousarray(rays, np.float32).reshape(-1, 6),
            np.float32(1.0 / np.sqrt(abs(K[0, 0] * K[1, 1]))),
        )

    def _shade_into(self, out, prim, bary_uv, geometry, start: int, stop: int, edge=None, width: int = 0,
                    isotropic: float = kernels.ISOTROPIC) -> None:  # fmt: skip
        """:func:`kernels.shade` of hits ``start .. stop - 1`` (and their edges into ``edge``, if given).

        Footprints at most ``isotropic`` times longer than wide take one
        trilinear probe (``inf``: every one does).

        The kernels do not check bounds, so every array's length is checked
        here: a caller's mistake is a ``ValueError``, never a read past an array.
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
        if geometry is None:
            kernels.shade(self._tables, prim, bary_uv, False, _NO_T, _NO_VEC3, _NO_RAYS, np.float32(0.0), out,
                          start, stop, edge, width, np.float32(0.0), np.float32(0.0))  # fmt: skip
        else:
            t, normals, rays, inv_focal = geometry
            kernels.shade(self._tables, prim, bary_uv, True, t, normals, rays, inv_focal, out, start, stop, edge,
                          width, inv_focal * np.float32(EDGE_GAP), np.float32(isotropic) ** 2)  # fmt: skip

    def _supersample_edges(self, rgb, prim, edge, width, K, cam2world) -> None:
        """Average ``EDGE_SAMPLES`` more samples into the pixels of ``rgb`` (N, 3) that straddle an edge, in place.

        ``edge`` (N,) holds the pixels that, with a 4-neighbour, hit different
        materials (or one misses), or surfaces apart by more than
        ``EDGE_GAP`` pixel footprints along either's normal (a depth step or a
        crease; the inner edges of a flat wall's triangles are not edges)
        (:func:`kernels._mark_edges`, found while shading); here it also gets
        those whose colours on untextured faces are more than ``EDGE_COLOR``
        levels apart. Both pixels of such a pair are supersampled at the
        fixed :data:`SUBPIXEL` offsets; the pixel-centre sample counts as one more.
        """
        plain = self._untextured
        if self._atlas is None:  # colour from vertex, face or base colours everywhere
            plain = np.ones(self._n_faces + 1, bool)
        if plain is not None:
            self._split(lambda a, b: kernels.colour_edges(prim, rgb, plain, EDGE_COLOR, edge, width, a, b), len(prim))
        index = np.flatnonzero(edge)
        if not len(index):
            return
        log.debug("%s: %d edge pixels of %d supersampled", self.scene.name, len(index), edge.size)
        kernels.average_samples(rgb, index, self._subpixel_samples(index, width, K, cam2world))

    def _subpixel_samples(self, index, width, K, cam2world) -> np.ndarray:
        """(M S, 3) uint8: the colours of pixels ``index`` (M,) at the ``S`` offsets :data:`SUBPIXEL`, pixel-major.

        Each sample takes one trilinear probe whatever its footprint's shape:
        it stands for part of the pixel, and the pixel's samples together
        span its footprint (medium apartment: 42.83 dB with four samples and
        the probes along long footprints, 42.88 without; their shading 2.5 %
        cheaper).
        """
        samples = np.empty((len(index) * len(SUBPIXEL), 3), np.uint8)
        sub = np.empty((len(samples), 6), np.float32)
        kernels.subpixel_rays(index, width, SUBPIXEL, np.asarray(K, np.float64), np.asarray(cam2world, np.float64), sub)
        sub_hits = self.cast(sub)
        sub_prim = sub_hits["primitive_ids"].numpy().reshape(-1).view(np.int32)
        sub_uv = sub_hits["primitive_uvs"].numpy().reshape(-1, 2)
        sub_geometry = self._geometry(sub_hits, sub, K) if self._tables.mipmapped else None
        self._split(lambda a, b: self._shade_into(samples, sub_prim, sub_uv, sub_geometry, a, b, isotropic=math.inf),
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
        self._shade_into(out, prim, np.ascontiguousarray(bary_uv, np.float32), None, 0, len(prim))
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


# ----------------------------------------------------------------------------- edges, light


def _own_keys(n: int) -> np.ndarray:
    """(n,) int64 plane keys that no two faces share (negative)."""
    return -1 - np.arange(n, dtype=np.int64)


PLANE_TOLERANCE = 5e-5  # metres: faces that share a plane key lie within this of one plane (the group's first)


def _plane_keys(scene: Scene) -> np.ndarray:
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
    keys = _own_keys(n_faces + 1)
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


def _edge_pixels(prim, hits, rays, K, rgb, face_materials, untextured, planes=None) -> np.ndarray:
    """(H, W) bool: the pixels that straddle a geometric or material edge (see ``_supersample_edges``).

    What :meth:`_RaycastRenderer.shade_hits` finds while shading, on its own
    (for tests and callers with their own hits).

    Parameters
    ----------
    prim : (H, W) int
        Hit faces; anything outside ``[0, F)`` is a miss.
    hits : dict
        Open3D's hits of the view's rays (``t_hit``, ``primitive_normals``).
    rays : (H, W, 6) float32
    K : (3, 3)
    rgb : (H, W, 3) uint8
        The pixel-centre colours.
    face_materials : (F + 1,) int
        Material of each face, misses last (their own value).
    untextured : (F + 1,) bool or None
        Faces whose colour varies without a texture: colour steps between two
        of them are edges too. None: no such faces.
    planes : (F + 1,) int64, optional
        :func:`_plane_keys`; without them every pair of faces gets the plane test.
    """
    h, w = prim.shape
    planes = _own_keys(len(face_materials)) if planes is None else planes
    t, normals, rays, inv_focal = _RaycastRenderer._geometry(hits, rays, K)
    flat = np.ascontiguousarray(prim, np.int32).reshape(-1)
    edge = np.zeros(h * w, bool)
    face_materials = np.ascontiguousarray(face_materials, np.int32)
    kernels.edge_pixels(flat, t, normals, rays, inv_focal * np.float32(EDGE_GAP), face_materials, planes, edge, w, 0, h * w)
    if untextured is not None:
        colours = np.ascontiguousarray(rgb, np.uint8).reshape(-1, 3)
        kernels.colour_edges(flat, colours, np.ascontiguousarray(untextured, bool), EDGE_COLOR, edge, w, 0, h * w)
    return edge.reshape(h, w)


# sRGB transfer: decoding by table (quarter levels), encoding by table on sqrt(linear) (fine in the darks).
_DECODE_STEPS, _ENCODE_STEPS = 4, 4095
_c = np.arange(255 * _DECODE_STEPS + 1, dtype=np.float64) / (255 * _DECODE_STEPS)
_DECODE = np.where(_c <= 0.04045, _c / 12.92, ((_c + 0.055) / 1.055) ** 2.4).astype(np.float32)
_l = (np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS) ** 2
_ENCODE = (255 * np.where(_l <= 0.0031308, 12.92 * _l, 1.055 * _l ** (1 / 2.4) - 0.055)).astype(np.float32)
del _c, _l

# Stand-ins for the arrays of features a scene or a call does not have (the kernels take them all).
_NO_T, _NO_VEC3, _NO_RAYS = np.zeros(0, np.float32), np.zeros((0, 3), np.float32), np.zeros((0, 6), np.float32)
_NO_EDGES = np.zeros(0, bool)


def _shading_tables(r: _RaycastRenderer) -> kernels.ShadingTables:
    """The kernels' view of a renderer's per-scene tables (absent ones as empty arrays of their type)."""
    atlas = r._atlas

    def given(array, shape, dtype):
        return np.zeros(shape, dtype) if array is None else np.ascontiguousarray(array, dtype)

    table = given(r._table, (1, TABLE_COLUMNS), np.float32)
    mip_rows = given(r._mip_rows, (1, 4), np.float32)
    n_levels = atlas.mip_offset.shape[1] if atlas is not None else 1
    return kernels.ShadingTables(
        has_texture=r._table is not None,
        table=table,
        table_i=table.view(np.int32),
        slow=given(r._slow, (len(table),), bool),
        mipmapped=r._mip_rows is not None,
        jacobian=np.zeros((1, 7), np.float32) if r._texel_jacobian is None else np.ascontiguousarray(
            np.concatenate([r._texel_jacobian, np.exp2(table[:, 9:10])], axis=1), np.float32),
        mip_rows=mip_rows,
        mip_rows_i=mip_rows.view(np.int32),
        rows_per_entry=int(n_levels + 1),
        top_level=given(r._top_level, (1,), np.float32),
        texels=given(None if atlas is None else atlas.texels, (4,), np.uint32),
        mip_scale=given(None if atlas is None else atlas.mip_scale, (1, 1, 2), np.float32),
        mip_period=given(None if atlas is None else atlas.mip_period, (1, 1, 2), np.int64),
        mip_size=given(None if atlas is None else atlas.mip_size, (1, 1, 2), np.int64),
        mip_offset=given(None if atlas is None else atlas.mip_offset, (1, 1), np.int64),
        mip_stride=given(None if atlas is None else atlas.mip_stride, (1, 1), np.int64),
        levels=given(None if atlas is None else atlas.levels, (1,), np.int64),
        pad=int(atlas.pad if atlas is not None else PAD),
        has_base=r._base is not None,
        base=given(r._base, (3, 1), np.float32),
        base_per_face=bool(r._base_per_face),
        face_materials=np.ascontiguousarray(r._face_materials, np.int32),
        # a row per face at every level (callers may search edges at any): real keys where views do
        planes=_plane_keys(r.scene) if r.antialias == "full" else _own_keys(r._n_faces + 1),
        has_vertex_colors=r._corner_colors is not None,
        corner_colors=given(r._corner_colors, (1, 3), np.uint32),
        has_light=r._corner_light is not None,
        corner_light=given(r._corner_light, (1, 9), np.float32),
        decode=_DECODE,
        decode_steps=_DECODE_STEPS,
        encode=_ENCODE,
        encode_steps=_ENCODE_STEPS,
    )

@register_backend
class RaycastBackend(RenderBackend):
    """Open3D/Embree ray casting on the CPU; works wherever pip does."""

    name = "raycast"
    description = "Open3D/Embree ray casting on the CPU (honours --antialias and --lighting)"

    def open(self, scene: Scene, *, antialias: str = "full", lighting: str = "baked") -> SceneRenderer:
        return _RaycastRenderer(scene, antialias=antialias, lighting=lighting)
