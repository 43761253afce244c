"""The default backend: CPU ray casting with Open3D's ``RaycastingScene`` (Embree).

Per view, one ray per pixel centre leaves the camera centre along
``R @ (x, y, 1)`` (camera frame scaled to z = 1), so Open3D's ``t_hit``, which
counts multiples of the direction's length, *is* the planar z-depth. Colour is
``base_color * texture(uv) * vertex_color * face_color`` at the hit, with the
face's barycentrics interpolating uvs and vertex colours (Open3D's ``primitive_uvs``
``(u, v)`` weigh the face's vertices ``(1 - u - v, u, v)``), textures sampled
bilinearly with their sampler's wrap modes (:func:`sample_texture`).

Shading is the costly part of a view after the cast, so :meth:`open` prepares
everything a view needs as per-face tables, and a view is a handful of
vectorised float32 passes over its pixels:

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
  hit from a ray cone (:func:`_lod`): trilinear, with ``ANISO_PROBES`` probes
  along the footprint's long axis (each face's world-to-texel map,
  :func:`_texel_jacobians`);
* at ``full``, ``EDGE_SAMPLES`` more rays at the fixed offsets ``SUBPIXEL`` in
  the pixels that straddle an edge (:func:`_edge_pixels`), averaged with the
  centre sample. Depth is always the pixel-centre sample's;
* baked light (synthetic apartments, ``lighting="baked"``,
  :mod:`renderers.lighting`): the albedo times each face's interpolated
  corner irradiance in linear light, then sRGB (:func:`_lit`).

A view is :meth:`~_RaycastRenderer.rays`, :meth:`~_RaycastRenderer.cast`,
then :meth:`~_RaycastRenderer.shade_hits` (public, for benchmarks and callers
with their own rays). Open3D's ``cast_rays`` keeps the GIL while Embree runs
on all cores, so these run one after the other (a caster thread overlapping
the shading was measured slower); shading a large view splits its pixels
between the calling thread and one helper thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from renderers.backends import ANTIALIAS, LIGHTING, RenderBackend, RenderedView, SceneRenderer, build_raycaster, register_backend
from renderers.scene import Scene, Texture, Wrap, triangle_areas

__all__ = ["PAD", "RaycastBackend", "TextureAtlas", "sample_texture"]

log = logging.getLogger(__name__)

PAD = 32  # texels of wrap-mode border per atlas entry: faces spanning < 2 PAD - 1 fit (synthetic ones span <= 39)
FOOTPRINT_MARGIN = 0.5  # texels kept between a face's footprint and its entry's edge (barycentric round-off)
FACE_CHUNK = 1 << 18  # faces prepared at a time in open(), to bound temporaries
WHITE, BLACK = 0, 1  # atlas entries of untextured faces and of misses
PARALLEL_MIN_PIXELS = 1 << 15  # views this large are shaded in two halves, on two threads (smaller: slower)
TABLE_COLUMNS = 10  # per-face table: texel map (6), entry offset and stride, entry, log2 texel density
NO_DENSITY = -30.0  # log2 texel density of untextured or degenerate faces: always level 0
MAX_TEXTURE_SIDE = 8192  # texels per side rendered; a larger texture is downscaled once, with a note
ATLAS_BUDGET = 1 << 28  # texels in one scene's atlas, levels and borders included (1 GiB of RGBX)
ANISO_PROBES = 2  # trilinear probes along a footprint's long axis (anisotropic filtering)
# Levels finer than the footprint by this much (log2): a level's texel box and its bilinear tent span about
# 1.4 of its texels, wider than the pixel's box; measured best against the 8 x 8 box reference.
LOD_BIAS = -0.5
EDGE_GAP = 0.5  # pixel footprints between two hits' surfaces, along a normal, that make an edge
EDGE_COLOR = 48  # levels between two untextured neighbours' colours that make an edge
EDGE_SAMPLES = 4  # extra samples per edge pixel (apartment vs 8x8: 4 give 43.9 dB, 6 45.4, 8 +0.6 more)
# Fixed sub-pixel offsets of the edge samples (one per row and column of a 6 x 6 grid, jittered; seeded).
_pattern = np.random.default_rng(20261202)
SUBPIXEL = np.stack([(_pattern.permutation(EDGE_SAMPLES) + _pattern.random(EDGE_SAMPLES)) / EDGE_SAMPLES - 0.5,
                     (np.arange(EDGE_SAMPLES) + _pattern.random(EDGE_SAMPLES)) / EDGE_SAMPLES - 0.5], axis=1)  # fmt: skip
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


def _bilinear(texels: np.ndarray, xy: np.ndarray, entry: np.ndarray) -> np.ndarray:
    """Bilinear RGB from an atlas, at padded texel coordinates that need no wrapping.

    Parameters
    ----------
    texels : (T,) uint32
        RGBX atlas (:class:`TextureAtlas`).
    xy : (2, N) float32
        Texel coordinates in each pixel's entry, ``>= 0``, texel centres at integers.
    entry : (2, N) int32
        Each pixel's entry: offset and row stride.

    Returns
    -------
    (3, N) float32
        RGB in [0, 255], channel-major.
    """
    n = xy.shape[1]
    with np.errstate(invalid="ignore"):  # coordinates of faces left to _sample_wrapped may overflow: harmless
        lo = xy.astype(np.int32)  # floor, as xy >= 0
    fx, fy = xy - lo.astype(np.float32)  # (N,) each
    offset, stride = entry
    top = np.multiply(lo[1], stride, dtype=np.intp)  # flat index of texel (x0, y0)
    top += offset
    top += lo[0]
    bottom = top + stride  # (x0, y0 + 1)
    # The 2x2 footprint; texels[1:] serves the x0 + 1 taps. mode="wrap" is numpy's fastest take; the
    # indices are in range by construction.
    words = np.empty((4, n), np.uint32)
    for k, (source, index) in enumerate(((texels, top), (texels[1:], top), (texels, bottom), (texels[1:], bottom))):
        np.take(source, index, out=words[k], mode="wrap")
    rgbx = words.view(np.uint8).reshape(4 * n, 1, 4)
    channels = cv2.split(rgbx)  # 4 x (4 n, 1) uint8
    t = np.empty((3, 4, n), np.float32)  # (channel, tap, pixel)
    for ch in range(3):
        t[ch] = channels[ch].reshape(4, n)
    a, b, c, d = t[:, 0], t[:, 1], t[:, 2], t[:, 3]  # (3, N) each: taps (x0, y0), (x0 + 1, y0), below them
    b -= a  # top: a + fx (b - a)
    b *= fx
    b += a
    d -= c  # bottom: c + fx (d - c)
    d *= fx
    d += c
    d -= b  # top + fy (bottom - top)
    d *= fy
    d += b
    return d


def _sample_wrapped(atlas: TextureAtlas, entry: np.ndarray, xy: np.ndarray, level: np.ndarray | None = None) -> np.ndarray:
    """Bilinear RGB from an atlas with per-tap wrapping, as :func:`sample_texture` does.

    For the few pixels whose face does not fit its padded entry.

    Parameters
    ----------
    atlas : TextureAtlas
    entry : (n,) int
        Each pixel's atlas entry (a texture).
    xy : (2, n) float
        Padded level-0 texel coordinates (:func:`_face_texel_table`), any value.
    level : (n,) int, optional
        Mip level to sample (0 where omitted).

    Returns
    -------
    (3, n) float32
        RGB in [0, 255].
    """
    pad = atlas.pad
    level = np.zeros(len(entry), np.intp) if level is None else level
    scale = atlas.mip_scale[entry, level].T.astype(np.float64)  # (2, n)
    coords = (xy.astype(np.float64) - pad + 0.5) * scale - 0.5  # (2, n) texel coordinates in the level
    lo = np.floor(coords)
    frac = coords - lo
    lo = lo.astype(np.int64)
    period, size = atlas.mip_period[entry, level].T, atlas.mip_size[entry, level].T  # (2, n) each

    def fold(i: np.ndarray) -> np.ndarray:  # (2, n) indices into the entry's extent, then its border
        wrapped = np.where(period > 0, np.mod(i, np.maximum(period, 1)), np.clip(i, 0, size - 1))
        return wrapped + pad

    (xa, ya), (xb, yb) = fold(lo), fold(lo + 1)
    offset, stride = atlas.mip_offset[entry, level], atlas.mip_stride[entry, level]

    def tap(row: np.ndarray, col: np.ndarray) -> np.ndarray:  # (n, 3) float64
        return atlas.texels[offset + row * stride + col].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float64)

    fx, fy = frac[0][:, None], frac[1][:, None]
    top = tap(ya, xa) * (1 - fx) + tap(ya, xb) * fx
    bottom = tap(yb, xa) * (1 - fx) + tap(yb, xb) * fx
    return (top * (1 - fy) + bottom * fy).T.astype(np.float32)


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

    # ------------------------------------------------------------------ rays and cast

    @staticmethod
    def rays(K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H, W, 6) float32 rays: origin and direction with camera-frame z = 1.

        Pixel ``(i, j)``'s camera-frame direction is ``(p_i + q_j, y_j, 1)``
        (:func:`renderers.camera.pixel_rays`; ``q`` is the skew term), so its
        world direction ``R (x, y, 1)`` is a column term plus a row term: one
        broadcast add per axis, then one interleave (OpenCV's ``merge``; no
        BLAS, whose spinning threads would slow the cast that follows).
        """
        K = np.asarray(K, dtype=np.float64)
        c2w = np.asarray(cam2world, dtype=np.float64)
        R = c2w[:3, :3]
        p = (np.arange(width) - K[0, 2]) / K[0, 0]  # (W,)
        y = (np.arange(height) - K[1, 2]) / K[1, 1]  # (H,)
        q = -K[0, 1] / K[0, 0] * y  # (H,)
        cols = (R[:, :1] * p).astype(np.float32)  # (3, W)
        rows = (R[:, :1] * q + R[:, 1:2] * y + R[:, 2:]).astype(np.float32)  # (3, H)
        dirs = rows[:, :, None] + cols[:, None, :]  # (3, H, W)
        origin = [np.full((height, width), c, np.float32) for c in c2w[:3, 3]]
        return cv2.merge([*origin, *dirs])

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

        Large views are shaded in two halves, one on a helper thread: numpy and
        OpenCV release the GIL inside their loops, so the halves share the two
        cores that the ray cast just used.
        """
        # Misses carry Open3D's INVALID_ID, 2**32 - 1: -1 as int32, which the wrapping takes of shade() send
        # to the tables' last row, the miss sentinel F.
        prim = hits["primitive_ids"].numpy().reshape(-1).view(np.int32).astype(np.intp)
        bary_uv = hits["primitive_uvs"].numpy().reshape(-1, 2)
        filtered = self.antialias != "off" and rays is not None and K is not None
        lod = _lod(hits, rays, K) if filtered and self._atlas is not None else None
        n, first = len(prim), None
        if n >= PARALLEL_MIN_PIXELS:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raycast-shade")
            half = None if lod is None else lod[:, : n // 2]
            first = self._pool.submit(self.shade, prim[: n // 2], bary_uv[: n // 2], half)
        depth = hits["t_hit"].numpy().reshape(height, width).copy()  # the caller's hits stay as they were
        np.copyto(depth, np.float32(0.0), where=~np.isfinite(depth))
        if first is None:
            rgb = self.shade(prim, bary_uv, lod)
        else:
            second = self.shade(prim[n // 2 :], bary_uv[n // 2 :], None if lod is None else lod[:, n // 2 :])
            rgb = np.concatenate([first.result(), second])
        rgb = rgb.reshape(height, width, 3)
        if filtered and self.antialias == "full" and cam2world is not None:
            self._supersample_edges(rgb, prim.reshape(height, width), hits, rays, K, cam2world)
        return RenderedView(rgb=rgb, depth=depth)

    def _supersample_edges(self, rgb, prim, hits, rays, K, cam2world) -> None:
        """Average ``EDGE_SAMPLES`` more samples into the pixels of ``rgb`` that straddle an edge, in place.

        A pixel straddles an edge when it and a 4-neighbour hit different
        materials (or one misses), or surfaces apart by more than
        ``EDGE_GAP`` pixel footprints along either's normal (a depth step or a
        crease; the inner edges of a flat wall's triangles are not edges), or,
        on untextured faces, colours more than ``EDGE_COLOR`` levels apart.
        Both pixels of such a pair are supersampled at the fixed
        :data:`SUBPIXEL` offsets; the pixel-centre sample counts as one more.
        """
        h, w = prim.shape
        prim = np.where((prim < 0) | (prim >= self._n_faces), self._n_faces, prim)
        plain = self._untextured
        if self._atlas is None:  # colour from vertex, face or base colours everywhere
            plain = np.ones(self._n_faces + 1, bool)
        edge = _edge_pixels(prim, hits, rays, K, rgb, self._face_materials, plain)
        index = np.flatnonzero(edge)
        log.debug("%s: %d edge pixels of %d supersampled", self.scene.name, len(index), edge.size)
        if not len(index):
            return
        ys, xs = np.divmod(index, w)
        u = (xs[:, None] + SUBPIXEL[:, 0]).reshape(-1)  # (M S,)
        v = (ys[:, None] + SUBPIXEL[:, 1]).reshape(-1)
        K = np.asarray(K, np.float64)
        c2w = np.asarray(cam2world, np.float64)
        y = (v - K[1, 2]) / K[1, 1]
        x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
        cam = np.stack([x, y, np.ones_like(x)])  # (3, M S), z = 1: t_hit stays planar depth
        sub = np.empty((len(u), 6), np.float32)
        sub[:, :3] = c2w[:3, 3]
        sub[:, 3:] = (c2w[:3, :3] @ cam).T
        sub_hits = self.cast(sub)
        sub_prim = sub_hits["primitive_ids"].numpy().reshape(-1).view(np.int32).astype(np.intp)
        sub_lod = _lod(sub_hits, sub, K) if self._atlas is not None else None
        samples = self.shade(sub_prim, sub_hits["primitive_uvs"].numpy().reshape(-1, 2), sub_lod)
        flat = rgb.reshape(-1, 3)
        total = samples.reshape(len(index), len(SUBPIXEL), 3).sum(axis=1, dtype=np.float32)
        total += flat[index]
        flat[index] = (total * np.float32(1.0 / (len(SUBPIXEL) + 1)) + np.float32(0.5)).astype(np.uint8)

    def shade(self, prim: np.ndarray, bary_uv: np.ndarray, lod: np.ndarray | None = None) -> np.ndarray:
        """sRGB colours at hits.

        Parameters
        ----------
        prim : (N,) int
            Hit faces; ``F`` (the number of faces) or -1 marks a miss, shaded black.
        bary_uv : (N, 2) float32
            Open3D's barycentrics: the hit weighs the face's corners ``(1 - u - v, u, v)``.
        lod : (4, N) float32, optional
            Each hit's footprint (:func:`_lod`): ``log2`` of its width in
            metres, then the world vector of its long axis. Textures are then
            sampled trilinearly (``ANISO_PROBES`` probes along the long axis,
            at the level that matches the longer of the width and the long
            axis' share of a probe; bilinearly from level 0 where they are
            magnified). None: level 0, one bilinear tap.

        Returns
        -------
        (N, 3) uint8
        """
        prim = np.asarray(prim, np.intp)
        bary_uv = np.asarray(bary_uv, np.float32)
        if not len(prim):
            return np.zeros((0, 3), np.uint8)
        u, v = bary_uv[:, 0], bary_uv[:, 1]
        color = None  # (3, N) float32 in [0, 255]
        if self._table is not None:
            color = self._texture(prim, u, v, lod)
        if self._base is not None:
            index = prim if self._base_per_face else np.take(self._face_materials, prim, mode="wrap")
            base = np.take(self._base, index, axis=1, mode="wrap")  # (3, N)
            if color is None:
                color = base * np.float32(255.0)
            else:
                color *= base
        if self._corner_colors is not None:
            vc = self._interpolate_vertex_colors(prim, u, v)
            if color is None:
                color = vc
            else:
                color *= vc
                color *= np.float32(1.0 / 255.0)
        if self._base is not None or self._corner_colors is not None:  # a bilinear texel mix stays in range
            np.clip(color, 0.0, 255.0, out=color)
        if self._corner_light is not None:
            color = _lit(color, self._interpolate_light(prim, u, v))
        color += np.float32(0.5)  # round half up, as the reference does
        rgb = color.astype(np.uint8)
        return cv2.merge([rgb[0], rgb[1], rgb[2]]).reshape(-1, 3)  # interleave

    def _texture(self, prim: np.ndarray, u: np.ndarray, v: np.ndarray, lod: np.ndarray | None) -> np.ndarray:
        """(3, N) float32 texture colours in [0, 255] at the hits (white where untextured)."""
        atlas = self._atlas
        cols = np.take(self._table, prim, axis=0, mode="wrap").T  # (10, N) strided
        xy = np.empty((2, len(prim)), np.float32)
        for k in range(2):  # a + u b + v c, row by row (a (2, N) op would loop over the short axis)
            np.multiply(cols[2 + k], u, out=xy[k])
            xy[k] += cols[4 + k] * v
            xy[k] += cols[k]
        slow = np.take(self._slow, prim, mode="wrap") if self._slow is not None else None
        slow = np.flatnonzero(slow) if slow is not None and slow.any() else None
        if lod is None or self._mip_rows is None:
            color = _bilinear(atlas.texels, xy, cols[6:8].view(np.int32))
            if slow is not None:  # their fast taps were garbage (but in range): redo them
                entry = np.take(self._entry, np.take(self._face_materials, prim[slow]))
                color[:, slow] = _sample_wrapped(atlas, entry, xy[:, slow])
            return color
        entry = cols[8].view(np.int32)  # (N,)
        # The long axis in level-0 texels: the face's world-to-texel map (2 x 3) times it.
        jac = np.take(self._texel_jacobian, prim, axis=0, mode="wrap").T  # (6, N)
        mx = jac[0] * lod[1] + jac[1] * lod[2] + jac[2] * lod[3]
        my = jac[3] * lod[1] + jac[4] * lod[2] + jac[5] * lod[3]
        lam = lod[0] + cols[9]  # log2 of the footprint's width in level-0 texels
        with np.errstate(divide="ignore"):
            probe = np.log2(np.sqrt(mx * mx + my * my) * np.float32(1.0 / ANISO_PROBES))
        np.maximum(lam, probe, out=lam)
        lam += np.float32(LOD_BIAS)
        np.nan_to_num(lam, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(lam, np.float32(0.0), np.take(self._top_level, entry), out=lam)  # magnified: level 0 (frac 0)
        level = lam.astype(np.int32)  # floor, lam >= 0
        frac = lam - level.astype(np.float32)
        row = entry * np.int32(self._mip_rows.shape[0] // len(atlas.levels))
        row += level
        # Magnified hits (level 0, no fraction: the footprint is under a texel) stay one bilinear tap,
        # minified ones get the probes at two levels.
        minified = np.flatnonzero(lam > 0)
        if len(minified) < len(prim):
            color = self._level_sample(xy, row)
        else:
            color = np.empty((3, len(prim)), np.float32)
        if len(minified):
            color[:, minified] = self._minified(xy[:, minified], row[minified], frac[minified],
                                                mx[minified], my[minified], level[minified])  # fmt: skip
        if slow is not None:  # redo per tap, at the same levels
            entry_slow = np.take(self._entry, np.take(self._face_materials, prim[slow]))
            ls, lv = lam[slow], level[slow].astype(np.intp)
            top = np.minimum(lv + 1, atlas.levels[entry_slow] - 1)
            a = _sample_wrapped(atlas, entry_slow, xy[:, slow], lv)
            b = _sample_wrapped(atlas, entry_slow, xy[:, slow], top)
            color[:, slow] = a + (ls - lv.astype(np.float32)) * (b - a)
        return color

    def _minified(self, xy: np.ndarray, row: np.ndarray, frac: np.ndarray, mx: np.ndarray, my: np.ndarray,
                  level: np.ndarray) -> np.ndarray:  # fmt: skip
        """(3, n) colours of minified hits: ``ANISO_PROBES`` trilinear probes along the long axis ``(mx, my)``.

        The probes stay within ``PAD / 2`` texels of ``level`` (the lower one) around the hit, inside the
        entry's border: only a footprint far longer than the whole texture (its level clamped at the top
        of the chain, at grazing incidence) is shortened by this.
        """
        if ANISO_PROBES > 1:
            reach = np.sqrt(mx * mx + my * my) * np.float32(0.5 - 0.5 / ANISO_PROBES)  # farthest probe, level-0 texels
            limit = np.ldexp(np.float32(self._atlas.pad // 2), level)
            shrink = np.minimum(np.float32(1.0), limit / np.maximum(reach, np.float32(1e-6)))
            mx, my = mx * shrink, my * shrink
        color = np.zeros((3, xy.shape[1]), np.float32)
        for k in range(ANISO_PROBES):  # probes spread evenly along the long axis
            at = xy
            if ANISO_PROBES > 1:
                s = np.float32((k + 0.5) / ANISO_PROBES - 0.5)
                at = np.stack([xy[0] + s * mx, xy[1] + s * my])
            lower = self._level_sample(at, row)
            upper = self._level_sample(at, row + np.int32(1))  # the level above (the last repeats itself)
            upper -= lower  # lower + frac (upper - lower)
            upper *= frac
            upper += lower
            color += upper
        if ANISO_PROBES > 1:
            color *= np.float32(1.0 / ANISO_PROBES)
        return color

    def _level_sample(self, xy: np.ndarray, row: np.ndarray) -> np.ndarray:
        """(3, n) bilinear colours from level-0 padded ``xy`` (2, n) at the levels ``row`` of ``_mip_rows``."""
        where = np.take(self._mip_rows, row, axis=0).T  # (4, n): scale x, y, then offset and stride bits
        shift = np.float32(self._atlas.pad - 0.5)
        at = xy - shift
        at *= where[:2]
        at += shift
        return _bilinear(self._atlas.texels, at, where[2:].view(np.int32))

    def _interpolate_vertex_colors(self, prim: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(3, N) float32 vertex colours in [0, 255] at the hits."""
        n = len(prim)
        rgbx = np.take(self._corner_colors, prim, axis=0, mode="wrap").view(np.uint8).reshape(3 * n, 1, 4)
        channels = cv2.split(rgbx)  # 4 x (3 n, 1) uint8, corner-major per pixel
        c = np.empty((3, 3, n), np.float32)  # (corner, channel, pixel)
        for k in range(3):
            c[:, k] = channels[k].reshape(n, 3).T
        vc = c[0] * (np.float32(1.0) - u - v)
        vc += c[1] * u
        vc += c[2] * v
        return vc

    def _interpolate_light(self, prim: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(3, N) float32 linear irradiance at the hits, from the faces' corners."""
        c = np.take(self._corner_light, prim, axis=0, mode="wrap").T  # (9, N): corner-major, then channel
        e = c[0:3] * (np.float32(1.0) - u - v)
        e += c[3:6] * u
        e += c[6:9] * v
        return e

    # ------------------------------------------------------------------ views

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        rays = self.rays(K, cam2world, width, height)
        return self.shade_hits(self.cast(rays), width, height, rays=rays, K=K, cam2world=cam2world)

    def close(self) -> None:
        self._raycaster = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# ----------------------------------------------------------------------------- footprints, edges, light


def _lod(hits: dict, rays: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Each hit's footprint on its surface (a ray cone): its width, and its long axis.

    A pixel's rays spread ``w = t / f`` apart at planar depth ``t`` (``f`` the
    focal length in pixels); on a surface seen at incidence ``phi`` the
    footprint is an ellipse ``w`` wide across the view direction and
    ``w / cos(phi)`` long along its projection on the surface.

    Parameters
    ----------
    hits : dict
        Open3D's ``t_hit`` and ``primitive_normals`` of the rays.
    rays : (..., 6) float32
        The rays, directions with camera-frame z = 1.
    K : (3, 3)

    Returns
    -------
    (4, N) float32
        ``log2(w)`` (metres), then the long axis as a world vector
        (``w / cos(phi)`` long). 0 where nothing was hit.
    """
    K = np.asarray(K, np.float64)
    t = hits["t_hit"].numpy().reshape(-1)
    n = hits["primitive_normals"].numpy().reshape(-1, 3)
    d = np.asarray(rays, np.float32).reshape(-1, 6)
    dx, dy, dz = d[:, 3], d[:, 4], d[:, 5]
    nx, ny, nz = n[:, 0], n[:, 1], n[:, 2]
    ndotd = nx * dx + ny * dy + nz * dz
    out = np.empty((4, len(t)), np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = t * np.float32(1.0 / np.sqrt(abs(K[0, 0] * K[1, 1])))
        np.log2(w, out=out[0])
        # the view direction's part along the surface, scaled to w / cos(phi) = w |d| / |n.d|
        px, py, pz = dx - ndotd * nx, dy - ndotd * ny, dz - ndotd * nz
        along = np.sqrt(px * px + py * py + pz * pz)
        length = w * np.sqrt(dx * dx + dy * dy + dz * dz) / np.maximum(np.abs(ndotd), np.float32(1e-3))
        scale = length / np.maximum(along, np.float32(1e-6))
        out[1], out[2], out[3] = px * scale, py * scale, pz * scale
    out[~np.isfinite(out)] = 0.0
    return out


def _edge_pixels(prim, hits, rays, K, rgb, face_materials, untextured) -> np.ndarray:
    """(H, W) bool: the pixels that straddle a geometric or material edge (see ``_supersample_edges``).

    Parameters
    ----------
    prim : (H, W) int
        Hit faces, ``F`` for misses.
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
    """
    h, w = prim.shape
    t = hits["t_hit"].numpy().reshape(h, w)
    hit = np.isfinite(t)
    t = np.where(hit, t, np.float32(0.0))
    n = hits["primitive_normals"].numpy().reshape(h, w, 3)
    d = np.asarray(rays, np.float32).reshape(h, w, 6)
    nx, ny, nz = (np.ascontiguousarray(n[..., k]) for k in range(3))
    px, py, pz = (d[..., k] + t * d[..., 3 + k] for k in range(3))  # hit points
    offset = nx * px + ny * py + nz * pz  # each hit's plane: n . x = offset
    footprint = t * np.float32(EDGE_GAP / np.sqrt(abs(K[0, 0] * K[1, 1])))
    mat = face_materials[prim]
    plain = untextured[prim] if untextured is not None else None
    edge = np.zeros((h, w), bool)
    for a, b in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                 ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):  # fmt: skip
        step = mat[a] != mat[b]
        other = prim[a] != prim[b]  # within one triangle there is no edge
        # b's hit off a's plane, and a's off b's, in footprints
        gap_ab = np.abs(nx[a] * px[b] + ny[a] * py[b] + nz[a] * pz[b] - offset[a]) > footprint[a]
        gap_ba = np.abs(nx[b] * px[a] + ny[b] * py[a] + nz[b] * pz[a] - offset[b]) > footprint[b]
        step |= other & hit[a] & hit[b] & (gap_ab | gap_ba)
        if plain is not None:
            diff = cv2.absdiff(rgb[a], rgb[b]).max(axis=-1)
            step |= plain[a] & plain[b] & (diff > EDGE_COLOR)
        edge[a] |= step
        edge[b] |= step
    return edge


# sRGB transfer: decoding by table (quarter levels), encoding by table on sqrt(linear) (fine in the darks).
_DECODE_STEPS, _ENCODE_STEPS = 4, 4095
_c = np.arange(255 * _DECODE_STEPS + 1, dtype=np.float64) / (255 * _DECODE_STEPS)
_DECODE = np.where(_c <= 0.04045, _c / 12.92, ((_c + 0.055) / 1.055) ** 2.4).astype(np.float32)
_l = (np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS) ** 2
_ENCODE = (255 * np.where(_l <= 0.0031308, 12.92 * _l, 1.055 * _l ** (1 / 2.4) - 0.055)).astype(np.float32)
del _c, _l


def _lit(color: np.ndarray, irradiance: np.ndarray) -> np.ndarray:
    """sRGB albedo (3, N) float32 in [0, 255] times linear ``irradiance`` (3, N), in linear light, back to sRGB."""
    index = color * np.float32(_DECODE_STEPS)
    index += np.float32(0.5)
    linear = np.take(_DECODE, index.astype(np.int32))
    linear *= irradiance
    np.clip(linear, 0.0, 1.0, out=linear)
    np.sqrt(linear, out=linear)
    linear *= np.float32(_ENCODE_STEPS)
    linear += np.float32(0.5)
    return np.take(_ENCODE, linear.astype(np.int32))


@register_backend
class RaycastBackend(RenderBackend):
    """Open3D/Embree ray casting on the CPU; works wherever pip does."""

    name = "raycast"
    description = "Open3D/Embree ray casting on the CPU (honours --antialias and --lighting)"

    def open(self, scene: Scene, *, antialias: str = "full", lighting: str = "baked") -> SceneRenderer:
        return _RaycastRenderer(scene, antialias=antialias, lighting=lighting)
