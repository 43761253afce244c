"""The texture atlas: every texture of a scene in one flat buffer, with mip levels and wrap-mode borders.

The raycast backend's shading fetches texels from one buffer whatever the
material (docs/design.md, "Renderer notes"). Each texture, with its sampler,
becomes one entry of a :class:`TextureAtlas`: its texels, surrounded by a
``PAD``-texel border that already holds what the sampler's wrap mode would
fetch there (the next tile, the mirror image, the edge texel), so that
bilinear taps need no per-pixel wrapping; built with ``mips``, each entry
also holds its mip chain (:func:`mip_chain`), each level with its own border.

:func:`sample_texture` is the reference the atlas path reproduces: a plain
bilinear lookup that wraps every tap (:func:`wrap_indices`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from renderers.scene import Texture, Wrap

__all__ = [
    "ATLAS_BUDGET",
    "BLACK",
    "MAX_TEXTURE_SIDE",
    "PAD",
    "WHITE",
    "TextureAtlas",
    "mip_chain",
    "sample_texture",
    "wrap_indices",
    "wrapped_border",
]

log = logging.getLogger(__name__)

PAD = 32  # texels of wrap-mode border per atlas entry: faces spanning < 2 PAD - 1 fit (synthetic ones span <= 39)
WHITE, BLACK = 0, 1  # atlas entries of untextured faces and of misses
MAX_TEXTURE_SIDE = 8192  # texels per side rendered; a larger texture is downscaled once, with a note
ATLAS_BUDGET = 1 << 28  # texels in one scene's atlas, levels and borders included (1 GiB of RGBX)


def wrap_indices(i: np.ndarray, n: int, mode: Wrap) -> np.ndarray:
    """Integer texel indices folded into ``[0, n)`` by a sampler wrap mode.

    Parameters
    ----------
    i : (...) int
        Texel indices along one axis, any integers.
    n : int
        The image's size along that axis.
    mode : Wrap

    Returns
    -------
    (...) int
        The texel each index fetches: clamped, repeated, or mirrored (period ``2 n``).
    """
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
    xa, xb = wrap_indices(x0, w, texture.wrap_s), wrap_indices(x0 + 1, w, texture.wrap_s)
    ya, yb = wrap_indices(y0, h, texture.wrap_t), wrap_indices(y0 + 1, h, texture.wrap_t)
    rgb = img[..., :3]
    top = rgb[ya, xa] * (1 - fx) + rgb[ya, xb] * fx
    bottom = rgb[yb, xa] * (1 - fx) + rgb[yb, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def wrapped_border(rgb: np.ndarray, axis: int, mode: Wrap, pad: int) -> np.ndarray:
    """``rgb`` along ``axis`` extended to one wrap period (doubled for MIRRORED_REPEAT), plus ``pad`` each side.

    What an atlas entry holds along one axis (:class:`TextureAtlas`): texel
    ``pad + i`` of the result is what ``mode`` fetches at index ``i`` of
    ``rgb``, for ``-pad <= i < period + pad`` (:func:`wrap_indices`).

    Parameters
    ----------
    rgb : (H, W, C) array
    axis : int
        0 (rows, the sampler's ``wrap_t``) or 1 (columns, ``wrap_s``).
    mode : Wrap
    pad : int
        Border texels on each side.
    """
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
            chain = mip_chain(rgb) if mips else [rgb]
            images.append([wrapped_border(wrapped_border(im, 1, t.wrap_s, pad), 0, t.wrap_t, pad) for im in chain])
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


def mip_chain(rgb: np.ndarray) -> list[np.ndarray]:
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
