"""Covisibility of many view pairs of one scene: vectorised, with pruning.

Exact answers come from :mod:`covisibility.reference`'s definition (the
per-pixel test of :mod:`covisibility.pixel_rule`, here in float32); this module
only decides cheaply which pairs need them. Registered as the
``reprojection`` measure. Three passes, each on the pairs the previous one
kept:

1. **frustum bound** (all ordered pairs at once): a ``BOUND_GRID`` x
   ``BOUND_GRID`` sample of A's valid pixels, unprojected, and the share that
   lands in front of B and inside its image. Ignoring occlusion, it bounds
   ``covis(A in B)`` from above up to sampling error; a pair whose bound is
   below ``min_covis - BOUND_MARGIN`` in either direction cannot reach the
   band and is dropped (cameras far apart, back to back, frusta that do not
   meet).
2. **coarse**: the full test (occlusion included) on every ``stride``-th
   pixel of A in each direction, against B's full-resolution depth: an
   unbiased estimate of the covisibility (4,096 samples at 256² with stride
   4, standard error <= 0.008). Pairs farther than ``COARSE_MARGIN`` outside
   ``[min_covis, max_covis]`` are dropped.
3. **exact**: every pixel, for the pairs left.

:func:`directed_covisibility` computes the same numbers (either pass) for
given directed pairs, a source's points once for all its targets, depth read
per view: what :mod:`covisibility.search`'s ``index`` search runs on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from covisibility.pixel_rule import covisible_count, covisible_points, in_image
from covisibility.measures import (
    Measure,
    PairCovisibility,
    all_pairs,
    check_view_arrays,
    in_band,
    pair_covisibility,
    register_measure,
)
from renderers.camera import pixel_rays

__all__ = [
    "BOUND_GRID",
    "BOUND_MARGIN",
    "COARSE_MARGIN",
    "ReprojectionMeasure",
    "coarse_keeps",
    "covisibility_pairs",
    "directed_covisibility",
    "seen_fraction",
]

BOUND_GRID = 16  # samples a side for the frustum bound
BOUND_MARGIN = 0.15  # sampling slack of the bound (16x16 samples)
COARSE_MARGIN = 0.05  # > 6 standard errors of the coarse estimate at 256^2, stride 4
POINTS_CACHE_BYTES = 128 << 20  # world points kept in a caller's cache (about 170 sources at 256^2)


def _world_points(depth: np.ndarray, rays: np.ndarray, cam2world: np.ndarray, stride: int) -> np.ndarray:
    """(M, 3) float32 world points of A's valid pixels on every ``stride``-th row and column."""
    d = depth[::stride, ::stride]
    valid = d > 0
    cam = rays[::stride, ::stride][valid]  # (M, 3) float32
    cam *= d[valid][:, None]
    points = cam @ cam2world[:3, :3].T.astype(np.float32)
    points += cam2world[:3, 3].astype(np.float32)
    return points


def seen_fraction(
    points: np.ndarray, n_pixels: int, depths_b: np.ndarray, Ks_b: np.ndarray, poses_b: np.ndarray,
    *, occlusion: bool = True,
) -> np.ndarray:  # fmt: skip
    """Share of A's ``n_pixels`` whose surface ``points`` each of several views B sees.

    Parameters
    ----------
    points : (M, 3) float32
        World points of A's valid pixels (the others count as not seen).
    n_pixels : int
        The number of A's pixels these points stand for (H·W, or the strided count).
    depths_b : (m, H, W) float32
    Ks_b : (m, 3, 3), poses_b : (m, 4, 4)
    occlusion : bool
        False: only in front of B and inside its image (the frustum bound).

    Returns
    -------
    (m,) float64
    """
    m, h, w = depths_b.shape
    R = poses_b[:, :3, :3].astype(np.float32)  # (m, 3, 3)
    t = poses_b[:, :3, 3].astype(np.float32)  # (m, 3)
    KR = Ks_b.astype(np.float32) @ R.transpose(0, 2, 1)  # (m, 3, 3) K R^T: world -> pixels (homogeneous)
    Kt = (KR @ t[:, :, None])[:, :, 0]  # (m, 3)
    # one GEMM for all m cameras: (M, 3) @ (3, 3m), column block i = (K R^T)_i^T
    pix = (points @ KR.transpose(2, 0, 1).reshape(3, 3 * m)).reshape(len(points), m, 3)
    pix -= Kt[None, :, :]
    pix = pix.transpose(1, 0, 2)  # (m, M, 3) view
    z = pix[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / z
        u = pix[..., 0] * inv
        v = pix[..., 1] * inv
    if not occlusion:
        return np.count_nonzero(in_image(u, v, z, w, h), axis=1) / n_pixels
    return np.count_nonzero(covisible_points(u, v, z, depths_b), axis=1) / n_pixels


def coarse_keeps(c: np.ndarray, min_covis: float, max_covis: float) -> np.ndarray:
    """bool: which coarse estimates ``c`` may still be in ``[min_covis, max_covis]`` (within ``COARSE_MARGIN``)."""
    return in_band(c, min_covis - COARSE_MARGIN, max_covis + COARSE_MARGIN)


def covisibility_pairs(
    depths: np.ndarray,
    Ks: np.ndarray,
    poses: np.ndarray,
    *,
    min_covis: float = 0.0,
    max_covis: float = 1.0,
    pairs: np.ndarray | None = None,
    stride: int = 4,
    chunk: int = 64,
) -> PairCovisibility:
    """Covisibility of every pair of views that can fall in ``[min_covis, max_covis]``.

    Parameters
    ----------
    depths : (N, H, W) float32
        Planar depth in metres, 0 = invalid; one size for all views.
    Ks : (N, 3, 3), poses : (N, 4, 4)
    min_covis, max_covis : float
        The band of interest: pairs that cannot reach it are pruned (their
        values are not computed). ``0, 1`` computes every pair exactly.
    pairs : (P, 2) int, optional
        The candidate pairs ``(a, b)``, ``a < b``; default every pair
        (:func:`~covisibility.measures.all_pairs`).
    stride : int
        Pixel stride of the coarse pass (1 skips it).
    chunk : int
        Views B handled at once (memory: ``chunk * H * W * 12`` bytes).

    Returns
    -------
    PairCovisibility
        The pairs that reached the exact pass; ``stats`` holds
        ``bound_pruned`` and ``coarse_pruned``, the pairs each pass dropped.
    """
    check_view_arrays(depths, Ks, poses)
    n, h, w = depths.shape
    rays = [pixel_rays(K, w, h).astype(np.float32) for K in Ks]
    pairs = all_pairs(n) if pairs is None else np.asarray(pairs, np.int64).reshape(-1, 2)
    candidates = len(pairs)

    def directed(pairs: np.ndarray, step: int, occlusion: bool) -> tuple[np.ndarray, np.ndarray]:
        """covis(a in b) and covis(b in a) for ``pairs``, A sampled every ``step`` pixels."""
        out = np.zeros((len(pairs), 2))
        n_pix = len(range(0, h, step)) * len(range(0, w, step))
        for direction, (src, dst) in enumerate(((0, 1), (1, 0))):
            order = np.argsort(pairs[:, src], kind="stable")
            sources = pairs[order, src]
            bounds = np.flatnonzero(np.r_[True, sources[1:] != sources[:-1], True])
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                a = sources[lo]
                pts = _world_points(depths[a], rays[a], poses[a], step)
                for c in range(lo, hi, chunk):
                    rows = order[c : min(hi, c + chunk)]
                    b = pairs[rows, dst]
                    out[rows, direction] = seen_fraction(pts, n_pix, depths[b], Ks[b], poses[b], occlusion=occlusion)
        return out[:, 0], out[:, 1]

    bound_pruned = coarse_pruned = 0
    if min_covis > 0 and len(pairs):
        grid = max(1, h // BOUND_GRID)
        keep = pair_covisibility(*directed(pairs, grid, occlusion=False)) >= min_covis - BOUND_MARGIN
        bound_pruned = int((~keep).sum())
        pairs = pairs[keep]
    if stride > 1 and (min_covis > 0 or max_covis < 1) and len(pairs):
        c = pair_covisibility(*directed(pairs, stride, occlusion=True))
        keep = coarse_keeps(c, min_covis, max_covis)
        coarse_pruned = int((~keep).sum())
        pairs = pairs[keep]
    ab, ba = directed(pairs, 1, occlusion=True) if len(pairs) else (np.zeros(0), np.zeros(0))
    return PairCovisibility(
        pairs=pairs,
        covis_1in2=ab.astype(np.float32),
        covis_2in1=ba.astype(np.float32),
        candidates=candidates,
        computed=len(pairs),
        stats={"bound_pruned": bound_pruned, "coarse_pruned": coarse_pruned},
    )


@register_measure
class ReprojectionMeasure(Measure):
    """Depth reprojection with occlusion (:func:`covisibility_pairs`), pairs outside the band pruned."""

    name = "reprojection"
    description = "depth reprojection with an occlusion test, pairs that cannot reach the band pruned; the default"

    def pairs(
        self, depths: np.ndarray, Ks: np.ndarray, poses: np.ndarray, *, min_covis: float, max_covis: float
    ) -> PairCovisibility:
        return covisibility_pairs(depths, Ks, poses, min_covis=min_covis, max_covis=max_covis)

    def exact(self, depths, Ks: np.ndarray, poses: np.ndarray, pairs: np.ndarray,
              cache: dict | None = None) -> PairCovisibility:  # fmt: skip
        """Both directions of every given pair by :func:`directed_covisibility` (depth read per view; ``cache``: its)."""
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        ab = directed_covisibility(pairs[:, 0], pairs[:, 1], depths, Ks, poses, cache=cache).astype(np.float32)
        ba = directed_covisibility(pairs[:, 1], pairs[:, 0], depths, Ks, poses, cache=cache).astype(np.float32)
        return PairCovisibility(pairs=pairs, covis_1in2=ab, covis_2in1=ba, candidates=len(pairs), computed=len(pairs))


def directed_covisibility(
    sources: np.ndarray, targets: np.ndarray, depths, Ks: np.ndarray, poses: np.ndarray,
    *, step: int = 1, chunk: int = 32, cache: dict | None = None,
) -> np.ndarray:  # fmt: skip
    """``covis(source in target)`` of ``D`` directed pairs: the numbers :func:`covisibility_pairs` computes.

    The same helpers on the same inputs (:func:`_world_points` of the source,
    :func:`seen_fraction` against the targets, rays from
    :func:`~renderers.camera.pixel_rays` in float32), so the values equal
    bit for bit those of :func:`covisibility_pairs` for the same pair and
    ``step`` (1: exact, every pixel; its ``stride``: the coarse pass). Each
    source's world points are computed once for all its targets; the rays
    once per distinct ``K``; depth is read per view, so ``depths`` need not
    be one float32 array.

    Parameters
    ----------
    sources, targets : (D,) int
        View indices: the ``D`` directions ``source -> target``.
    depths : (N, H, W) array-like
        Anything with ``shape`` and ``depths[i]`` (an int or an int array)
        giving float32 metres: an ndarray, or a decoder such as
        :class:`covisibility.search.MillimetreDepths`.
    Ks : (N, 3, 3), poses : (N, 4, 4)
    step : int
        Pixel stride of the sources' samples (1: every pixel).
    chunk : int
        Targets handled at once (memory about ``chunk * H * W * 40`` bytes).
    cache : dict, optional
        Kept by the caller across calls on the same scene's arrays: the rays
        of each ``K`` and the world points of the last sources (up to
        ``POINTS_CACHE_BYTES``) are kept there and not computed again. The
        same values either way.

    Returns
    -------
    (D,) float64
    """
    sources = np.asarray(sources, np.int64).ravel()
    targets = np.asarray(targets, np.int64).ravel()
    out = np.zeros(len(sources))
    if not len(sources):
        return out
    _, h, w = depths.shape
    n_pix = len(range(0, h, step)) * len(range(0, w, step))
    rays: dict[bytes, np.ndarray] = cache.setdefault("rays", {}) if cache is not None else {}
    points: OrderedDict | None = cache.setdefault(("points", step), OrderedDict()) if cache is not None else None
    order = np.argsort(sources, kind="stable")
    src = sources[order]
    bounds = np.flatnonzero(np.r_[True, src[1:] != src[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        a = int(src[lo])
        K = np.asarray(Ks[a])
        key = K.tobytes() + str(K.dtype).encode()
        if key not in rays:
            rays[key] = pixel_rays(K, w, h).astype(np.float32)
        if points is not None and a in points:
            pts = points[a]
            points.move_to_end(a)
        else:
            pts = _world_points_take(np.asarray(depths[a]), rays[key], poses[a], step)
            if points is not None:
                points[a] = pts
                while sum(p.nbytes for p in points.values()) > POINTS_CACHE_BYTES and len(points) > 1:
                    points.popitem(last=False)
        for c in range(lo, hi, chunk):
            rows = order[c : min(hi, c + chunk)]
            b = targets[rows]
            depths_b = depths[b]
            for j, (u, v, z) in enumerate(_project(pts, Ks[b], poses[b])):
                out[rows[j]] = covisible_count(u, v, z, depths_b[j]) / n_pix
    return out


def _world_points_take(depth: np.ndarray, rays: np.ndarray, cam2world: np.ndarray, stride: int) -> np.ndarray:
    """:func:`_world_points`, bit for bit, with the valid rays gathered by flat index (about twice as fast)."""
    d = depth[::stride, ::stride]
    valid = d > 0
    cam = np.take(rays[::stride, ::stride].reshape(-1, 3), np.flatnonzero(valid), axis=0)  # (M, 3) float32
    cam *= d[valid][:, None]
    points = cam @ cam2world[:3, :3].T.astype(np.float32)
    points += cam2world[:3, 3].astype(np.float32)
    return points


def _project(
    points: np.ndarray, Ks_b: np.ndarray, poses_b: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(u, v, z)``, each (M,) float32, of ``points`` in each of ``m`` views in turn, as :func:`seen_fraction` has.

    The same operations as :func:`seen_fraction`'s projection (one GEMM for
    all views, then ``- K t``, ``u = x * (1 / z)``, elementwise), so the
    values are the same bit for bit (``tests/covisibility/test_search.py`` holds the two
    to it); taken one view's columns at a time, which is about twice as fast.
    """
    m = len(Ks_b)
    R = poses_b[:, :3, :3].astype(np.float32)
    t = poses_b[:, :3, 3].astype(np.float32)
    KR = Ks_b.astype(np.float32) @ R.transpose(0, 2, 1)
    Kt = (KR @ t[:, :, None])[:, :, 0]
    pix = points @ KR.transpose(2, 0, 1).reshape(3, 3 * m)  # (M, 3m): view j in columns 3j, 3j + 1, 3j + 2
    for j in range(m):
        z = pix[:, 3 * j + 2] - Kt[j, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / z
            u = (pix[:, 3 * j] - Kt[j, 0]) * inv
            v = (pix[:, 3 * j + 1] - Kt[j, 1]) * inv
        yield u, v, z
