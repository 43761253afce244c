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

The result matches :func:`sample_texture` (and the per-material reference
shading) up to float32 rounding: a channel may differ by one level.

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

from renderers.backends import RenderBackend, RenderedView, SceneRenderer, build_raycaster, register_backend
from renderers.scene import Scene, Texture, Wrap

__all__ = ["PAD", "RaycastBackend", "TextureAtlas", "sample_texture"]

log = logging.getLogger(__name__)

PAD = 32  # texels of wrap-mode border per atlas entry: faces spanning < 2 PAD - 1 fit (synthetic ones span <= 39)
FOOTPRINT_MARGIN = 0.5  # texels kept between a face's footprint and its entry's edge (barycentric round-off)
FACE_CHUNK = 1 << 18  # faces prepared at a time in open(), to bound temporaries
WHITE, BLACK = 0, 1  # atlas entries of untextured faces and of misses
PARALLEL_MIN_PIXELS = 1 << 15  # views this large are shaded in two halves, on two threads (smaller: slower)


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
    """Textures with their samplers' wrap modes baked into a border, in one flat buffer.

    Entry ``e`` is an image of ``extent[e] + 2 * pad`` texels a side (x, y),
    stored row-major from ``texels[offset[e]]`` with row stride ``stride[e]``.
    Its texel ``(pad + i, pad + j)`` is the texture's texel ``(i, j)`` for
    ``0 <= i < size[e, 0]``, ``0 <= j < size[e, 1]``; around (and, for
    MIRRORED_REPEAT, beside) it lies what the wrap mode fetches at those indices.
    Entries ``WHITE`` and ``BLACK`` are 2x2 constant images without border.

    Attributes
    ----------
    texels : (T,) uint32
        RGBX, little-endian bytes R, G, B, 255.
    offset, stride : (E,) int64
    size : (E, 2) int64
        The texture's width and height.
    period : (E, 2) int64
        Wrap period along x and y: ``size`` (REPEAT), ``2 * size``
        (MIRRORED_REPEAT) or 0 (CLAMP_TO_EDGE: no shift is allowed).
    extent : (E, 2) int64
        Width and height inside the border: ``2 * size`` where mirrored, else ``size``.
    pad : int
    """

    texels: np.ndarray
    offset: np.ndarray
    stride: np.ndarray
    size: np.ndarray
    period: np.ndarray
    extent: np.ndarray
    pad: int

    @classmethod
    def build(cls, textures: Iterable[Texture], pad: int = PAD) -> TextureAtlas:
        """One entry per texture, in order, after the WHITE and BLACK entries (``2 + k`` is texture ``k``)."""
        images = [np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)]
        size, period, extent = [(2, 2), (2, 2)], [(0, 0), (0, 0)], [(2, 2), (2, 2)]
        for t in textures:
            rgb = t.image[..., :3]
            h, w = rgb.shape[:2]
            padded = _wrapped_border(_wrapped_border(rgb, 1, t.wrap_s, pad), 0, t.wrap_t, pad)
            images.append(padded)
            size.append((w, h))
            factor = [{Wrap.CLAMP_TO_EDGE: 0, Wrap.MIRRORED_REPEAT: 2}.get(m, 1) for m in (t.wrap_s, t.wrap_t)]
            period.append((factor[0] * w, factor[1] * h))
            extent.append((padded.shape[1] - 2 * pad, padded.shape[0] - 2 * pad))
        counts = np.array([im.shape[0] * im.shape[1] for im in images], np.int64)
        if counts.sum() > np.iinfo(np.int32).max:
            raise ValueError(f"textures too large for one atlas: {counts.sum():,} texels with borders")
        texels = np.empty((counts.sum(), 4), np.uint8)
        offset = np.cumsum(counts) - counts
        for im, start, n in zip(images, offset, counts):
            texels[start : start + n, :3] = im.reshape(-1, 3)
        texels[:, 3] = 255
        return cls(
            texels=texels.view(np.uint32).reshape(-1),
            offset=offset,
            stride=np.array([im.shape[1] for im in images], np.int64),
            size=np.array(size, np.int64),
            period=np.array(period, np.int64),
            extent=np.array(extent, np.int64),
            pad=pad,
        )

    @property
    def nbytes(self) -> int:
        return int(self.texels.nbytes)


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
    table : (F + 1, 8) float32
        Row ``f``: ``ax, ay, bx, by, cx, cy`` so that a hit at barycentrics
        ``(u, v)`` samples at ``(x, y) = a + u b + v c`` in the entry's padded
        image, then the entry's offset and row stride as int32 bit patterns
        (columns 6 and 7). Row ``F`` (misses) samples BLACK.
    slow : (F + 1,) bool
        Faces whose footprint does not fit their padded entry (it spans more
        than the border, or is clamped far outside the image): their pixels
        need :func:`_sample_wrapped`.
    """
    n_faces = len(entry)
    table = np.zeros((n_faces + 1, 8), np.float32)
    ints = table.view(np.int32)
    ints[:-1, 6] = atlas.offset[entry]
    ints[:-1, 7] = atlas.stride[entry]
    ints[-1, 6:] = atlas.offset[BLACK], atlas.stride[BLACK]
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
        fits = ((lo - shift >= margin - pad) & (hi - shift <= atlas.extent[e] + pad - 1 - margin)).all(axis=1)
        X += pad
        table[rows, :6] = np.concatenate([X[:, 0], X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]], axis=1)  # a, b, c
        slow[rows[~fits]] = True
    return table, slow


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


def _sample_wrapped(atlas: TextureAtlas, entry: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear RGB from an atlas with per-tap wrapping, as :func:`sample_texture` does.

    For the few pixels whose face does not fit its padded entry.

    Parameters
    ----------
    atlas : TextureAtlas
    entry : (n,) int
        Each pixel's atlas entry (a texture).
    xy : (2, n) float
        Padded texel coordinates (:func:`_face_texel_table`), any value.

    Returns
    -------
    (3, n) float32
        RGB in [0, 255].
    """
    pad = atlas.pad
    coords = xy.astype(np.float64) - pad  # (2, n) texel coordinates in the texture
    lo = np.floor(coords)
    frac = coords - lo
    lo = lo.astype(np.int64)
    period, size = atlas.period[entry].T, atlas.size[entry].T  # (2, n) each

    def fold(i: np.ndarray) -> np.ndarray:  # (2, n) indices into the entry's extent, then its border
        wrapped = np.where(period > 0, np.mod(i, np.maximum(period, 1)), np.clip(i, 0, size - 1))
        return wrapped + pad

    (xa, ya), (xb, yb) = fold(lo), fold(lo + 1)
    offset, stride = atlas.offset[entry], atlas.stride[entry]

    def tap(row: np.ndarray, col: np.ndarray) -> np.ndarray:  # (n, 3) float64
        return atlas.texels[offset + row * stride + col].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float64)

    fx, fy = frac[0][:, None], frac[1][:, None]
    top = tap(ya, xa) * (1 - fx) + tap(ya, xb) * fx
    bottom = tap(yb, xa) * (1 - fx) + tap(yb, xb) * fx
    return (top * (1 - fy) + bottom * fy).T.astype(np.float32)


# ----------------------------------------------------------------------------- renderer


class _RaycastRenderer(SceneRenderer):
    def __init__(self, scene: Scene) -> None:
        import open3d as o3d

        self._o3c = o3d.core
        self.scene = scene
        self._raycaster = build_raycaster(scene)  # also what raycaster() hands out
        self._pool: ThreadPoolExecutor | None = None  # the helper thread of shade_hits, started on first use
        n_faces = scene.num_triangles
        mats = scene.face_materials if scene.face_materials is not None else np.zeros(n_faces, np.uint16)
        self._face_materials = np.append(mats.astype(np.int32), len(scene.materials))  # (F + 1,), misses last

        # Textures: one atlas entry per (image, sampler) in use, per-face texel maps.
        self._atlas = self._table = self._slow = self._entry = None
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
            self._atlas = TextureAtlas.build(textures)
            self._entry = entry_of  # (M,) atlas entry of each material
            self._table, slow = _face_texel_table(scene, entry_of[mats], self._atlas)
            self._slow = slow if slow.any() else None
            log.debug(
                "%s: texture atlas of %d entries, %.0f MiB; %d of %d faces wrapped per pixel",
                scene.name, len(textures), self._atlas.nbytes / 2**20, int(slow.sum()), n_faces,
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

    def shade_hits(self, hits: dict, width: int, height: int) -> RenderedView:
        """The view from :meth:`cast`'s hits of an (H, W) ray grid.

        Large views are shaded in two halves, one on a helper thread: numpy and
        OpenCV release the GIL inside their loops, so the halves share the two
        cores that the ray cast just used.
        """
        # Misses carry Open3D's INVALID_ID, 2**32 - 1: -1 as int32, which the wrapping takes of shade() send
        # to the tables' last row, the miss sentinel F.
        prim = hits["primitive_ids"].numpy().reshape(-1).view(np.int32).astype(np.intp)
        bary_uv = hits["primitive_uvs"].numpy().reshape(-1, 2)
        n, first = len(prim), None
        if n >= PARALLEL_MIN_PIXELS:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raycast-shade")
            first = self._pool.submit(self.shade, prim[: n // 2], bary_uv[: n // 2])
        depth = hits["t_hit"].numpy().reshape(height, width).copy()  # the caller's hits stay as they were
        np.copyto(depth, np.float32(0.0), where=~np.isfinite(depth))
        if first is None:
            rgb = self.shade(prim, bary_uv)
        else:
            second = self.shade(prim[n // 2 :], bary_uv[n // 2 :])
            rgb = np.concatenate([first.result(), second])
        return RenderedView(rgb=rgb.reshape(height, width, 3), depth=depth)

    def shade(self, prim: np.ndarray, bary_uv: np.ndarray) -> np.ndarray:
        """sRGB colours at hits.

        Parameters
        ----------
        prim : (N,) int
            Hit faces; ``F`` (the number of faces) or -1 marks a miss, shaded black.
        bary_uv : (N, 2) float32
            Open3D's barycentrics: the hit weighs the face's corners ``(1 - u - v, u, v)``.

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
            cols = np.take(self._table, prim, axis=0, mode="wrap").T  # (8, N) strided
            xy = np.empty((2, len(prim)), np.float32)
            for k in range(2):  # a + u b + v c, row by row (a (2, N) op would loop over the short axis)
                np.multiply(cols[2 + k], u, out=xy[k])
                xy[k] += cols[4 + k] * v
                xy[k] += cols[k]
            color = _bilinear(self._atlas.texels, xy, cols[6:].view(np.int32))
            slow = np.take(self._slow, prim, mode="wrap") if self._slow is not None else None
            if slow is not None and slow.any():  # their fast taps were garbage (but in range): redo them
                slow = np.flatnonzero(slow)
                entry = np.take(self._entry, np.take(self._face_materials, prim[slow]))
                color[:, slow] = _sample_wrapped(self._atlas, entry, xy[:, slow])
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
        color += np.float32(0.5)  # round half up, as the reference does
        if self._base is not None or self._corner_colors is not None:  # a bilinear texel mix stays in range
            np.clip(color, 0.0, 255.0, out=color)
        rgb = color.astype(np.uint8)
        return cv2.merge([rgb[0], rgb[1], rgb[2]]).reshape(-1, 3)  # interleave

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

    # ------------------------------------------------------------------ views

    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        return self.shade_hits(self.cast(self.rays(K, cam2world, width, height)), width, height)

    def close(self) -> None:
        self._raycaster = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@register_backend
class RaycastBackend(RenderBackend):
    """Open3D/Embree ray casting on the CPU; works wherever pip does."""

    name = "raycast"
    description = "Open3D/Embree ray casting on the CPU"

    def open(self, scene: Scene) -> SceneRenderer:
        return _RaycastRenderer(scene)
