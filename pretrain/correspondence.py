"""Zero-shot patch correspondence from frozen features, scored against the ground truth of depth and poses.

The ``--task correspondence`` half of ``pretrain probe``: :mod:`pretrain.probe` reads the views and runs the
encoders; this module is pure functions on arrays.

Geometry (docs/design.md, Conventions)
    OpenCV cameras (x right, y down, z forward), ``cam2world`` 4x4 poses, pinhole ``K`` with pixel ``i``'s
    centre at ``u = i``, planar depth in metres, 0 invalid. A point is *seen* by a view when it lies in front
    of it, its nearest pixel (``floor(x + 0.5)``) is inside the image, and that pixel's depth agrees with the
    point's: ``|z_view - z| <= DEPTH_ABS_TOL + DEPTH_REL_TOL * z``: pairgen's pixel rule, used as it is
    (``covisibility.pixel_rule``, pure numpy: the one module of ``covisibility`` that ``pretrain`` imports,
    with ``renderers.camera``'s projection).
The model's frame
    The probe feeds the model each view resized so that its shorter side is ``size``, then centre-cropped
    (:func:`fit_transform`); a point ``u`` of the view is at ``(u + 0.5) * scale - 0.5 - left`` there. The
    geometry is computed on the views as stored (their own depth and ``K``), and positions are carried into
    the model's frame by that map, so resampled depth never enters the ground truth.
Covisibility (:func:`covisibility_of`)
    covis(A in B): the fraction of A's pixels whose surface point B sees, invalid pixels counted as not
    covisible; a pair's is the minimum of both directions: pairgen's measure, on a grid of about
    ``COVIS_GRID`` x ``COVIS_GRID`` of A's pixels (exact at stride 1, tested against pairgen's reference).
Ground truth (:func:`patch_matches`)
    A patch of view 1 is matched when the surface point at its centre (view 1's depth at the centre's
    nearest pixel) is seen by view 2 and lands inside view 2's crop; its true position is where that point
    projects, in patch units of view 2's grid (patch ``(x, y)``'s centre at ``(x, y)``).
Recall (:func:`nearest_patches`, :func:`patch_errors`, :func:`pair_recall`)
    Each matched patch of view 1 takes the patch of view 2 whose features have the highest cosine
    similarity with its own (exact ties broken at random, seeded); its error is the distance, in patches,
    from that patch's centre to the true position. recall@r of a pair: the share of its matched patches
    with error <= r; of a band: the mean over its pairs (each pair one vote, as Probe3D's binned recall).
    Chance (:func:`chance_recall`): the share of view 2's patches within r of the true position, what a
    uniformly random pick scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

import renderers.camera as camera
from covisibility.pixel_rule import covisible_points

__all__ = ["COVIS_GRID", "RADII", "chance_recall", "covis_stride", "covisibility_of",
           "fit_transform", "grid_points", "nearest_patches", "pair_recall", "patch_errors", "patch_features",
           "patch_matches", "project", "seen", "to_model_frame", "unproject"]  # fmt: skip

RADII = (1, 2, 4)  # patches: recall within these distances of the true position
COVIS_GRID = 32  # covisibility is estimated on about COVIS_GRID x COVIS_GRID pixels of a view (1024 points)


def fit_transform(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """How a ``width`` x ``height`` view becomes the model's ``size`` x ``size`` input: resized so that its
    shorter side is ``size``, then the centre square cropped.

    Returns
    -------
    (new_width, new_height, left, top) : int
        The resized image's size and the crop's top-left corner in it.
    """
    if min(height, width) == size:
        new_w, new_h = width, height
    else:
        scale = size / min(height, width)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def to_model_frame(u: np.ndarray, v: np.ndarray, height: int, width: int, size: int,
                   inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Pixel coordinates of a view -> the model's frame (:func:`fit_transform`), or back with ``inverse``.

    A resize maps pixel centres by ``u' = (u + 0.5) * scale - 0.5`` (each pixel covers ``[u - 0.5, u + 0.5)``).
    """
    new_w, new_h, left, top = fit_transform(height, width, size)
    sx, sy = new_w / width, new_h / height
    if inverse:
        return (u + left + 0.5) / sx - 0.5, (v + top + 0.5) / sy - 0.5
    return (u + 0.5) * sx - 0.5 - left, (v + 0.5) * sy - 0.5 - top


def unproject(u: np.ndarray, v: np.ndarray, z: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``u, v`` (any shape) at planar depth ``z`` -> world points (..., 3) float64."""
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T  # (..., 3): z = 1
    cam = rays * np.asarray(z, np.float64)[..., None]  # (..., 3) camera frame
    return cam @ cam2world[:3, :3].T + cam2world[:3, 3]


def project(points: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (..., 3) -> pixel coordinates ``u, v`` and planar depth ``z`` (each (...,)) in a view:
    :func:`renderers.camera.project`, split. Points at or behind the camera get NaN or ``z <= 0``: not seen."""
    uv, z = camera.project(points, K, cam2world)
    return uv[..., 0], uv[..., 1], z


def seen(u: np.ndarray, v: np.ndarray, z: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """bool, the shape of ``u``: which points (pixel coordinates and planar depth in a view) the view sees, by
    pairgen's pixel rule (:func:`covisibility.pixel_rule.covisible_points`, for one view).

    Parameters
    ----------
    u, v, z : (...,) float
        Column, row and planar depth in the view (NaN or inf: not seen).
    depth : (H, W) float
        The view's planar depth in metres, 0 = invalid.
    """
    shape = np.shape(u)
    flat = [np.reshape(np.asarray(x, np.float64), (1, -1)) for x in (u, v, z)]
    return covisible_points(*flat, np.asarray(depth)[None]).reshape(shape)


def grid_points(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray, stride: int) -> np.ndarray:
    """World points of every ``stride``-th pixel of a view, each way: (M, 3) float64, NaN where depth is invalid.

    ``M`` counts the invalid pixels too: the covisibility of a view is a share of all its pixels.
    """
    h, w = depth.shape
    off = (stride - 1) // 2
    v, u = np.meshgrid(np.arange(off, h, stride, dtype=np.float64), np.arange(off, w, stride, dtype=np.float64),
                       indexing="ij")  # fmt: skip
    z = depth[off::stride, off::stride].astype(np.float64)
    points = unproject(u, v, z, K, cam2world).reshape(-1, 3)
    points[(z <= 0).ravel()] = np.nan
    return points


def covis_stride(height: int, width: int) -> int:
    """Pixels between the points at which covisibility is estimated: about ``COVIS_GRID`` a side."""
    return max(1, min(height, width) // COVIS_GRID)


def covisibility_of(depth_of: Callable[[int], np.ndarray], Ks: np.ndarray, poses: np.ndarray, first: np.ndarray,
                    keep_from: float = 0.0, stride: int | None = None) -> np.ndarray:  # fmt: skip
    """The pair covisibility of the views ``first`` with every view: ``min(covis(a in b), covis(b in a))``.

    Parameters
    ----------
    depth_of : callable
        ``depth_of(i)`` gives view ``i``'s depth (H_i, W_i) float, metres, 0 invalid; it is called about
        twice a view, so that the depth of a whole views file need not be held at once.
    Ks, poses : (N, 3, 3), (N, 4, 4) float
        Every view's intrinsics and ``cam2world``.
    first : (A,) int
        The views whose pairs are wanted.
    keep_from : float
        Pairs whose covis(a in b) is below this keep that value (their minimum cannot reach it) and the other
        direction is not computed for them.
    stride : int or None
        Pixels between the points sampled of each view (None: :func:`covis_stride`, about ``COVIS_GRID`` a
        side; 1: every pixel, pairgen's measure exactly).

    Returns
    -------
    (A, N) float64
        The pairs' covisibility; a view with itself gets -1.
    """
    n, first = len(Ks), np.asarray(first, np.int64)

    def points_of(i: int, depth: np.ndarray) -> np.ndarray:
        return grid_points(depth, Ks[i], poses[i], stride or covis_stride(*depth.shape))

    pts_first = [points_of(a, depth_of(a)) for a in first.tolist()]
    count_first = np.array([len(p) for p in pts_first])
    seg = np.repeat(np.arange(len(first)), count_first)
    pts_a = np.concatenate(pts_first)  # (sum M_a, 3)
    a_in_b, points = np.zeros((len(first), n)), []
    for b in range(n):
        depth = depth_of(b)
        s = seen(*project(pts_a, Ks[b], poses[b]), depth)
        a_in_b[:, b] = np.bincount(seg, weights=s, minlength=len(first)) / count_first
        points.append(points_of(b, depth))
    counts = np.array([len(p) for p in points])
    out = a_in_b.copy()
    for i, a in enumerate(first.tolist()):
        others = np.flatnonzero((a_in_b[i] >= keep_from) & (np.arange(n) != a))
        if len(others):
            seg_b = np.repeat(np.arange(len(others)), counts[others])
            s = seen(*project(np.concatenate([points[b] for b in others]), Ks[a], poses[a]), depth_of(a))
            out[i, others] = np.minimum(a_in_b[i, others], np.bincount(seg_b, weights=s, minlength=len(others))
                                        / counts[others])  # fmt: skip
        out[i, a] = -1.0
    return out


def patch_matches(depth1: np.ndarray, K1: np.ndarray, pose1: np.ndarray, depth2: np.ndarray, K2: np.ndarray,
                  pose2: np.ndarray, size: int, patch: int) -> np.ndarray:  # fmt: skip
    """Where the centre of each of view 1's patches is in view 2, in patch units of view 2's grid.

    Parameters
    ----------
    depth1, depth2 : (H_i, W_i) float
        The views' depth as stored, metres, 0 invalid.
    K1, K2, pose1, pose2 : (3, 3), (4, 4) float
        Their intrinsics and ``cam2world``.
    size, patch : int
        The model's input side and patch side (``size // patch`` patches a side, ``g``).

    Returns
    -------
    (g * g, 2) float64
        For view 1's patches, row-major (the encoder's token order), the true position ``(x, y)`` in view
        2 (patch ``(x, y)``'s centre at ``(x, y)``); NaN where there is no valid match: no depth at the
        centre in view 1, or the point not seen by view 2 (outside it, behind it, hidden) or outside its crop.
    """
    g = size // patch
    c = np.arange(g) * patch + (patch - 1) / 2  # patch centres, model frame
    vm, um = np.meshgrid(c, c, indexing="ij")  # (g, g): row-major
    u1, v1 = to_model_frame(um.ravel(), vm.ravel(), *depth1.shape, size, inverse=True)  # view 1's pixels
    h1, w1 = depth1.shape
    z1 = depth1[np.clip(np.floor(v1 + 0.5).astype(np.int64), 0, h1 - 1),
                np.clip(np.floor(u1 + 0.5).astype(np.int64), 0, w1 - 1)].astype(np.float64)  # fmt: skip
    u2, v2, z2 = project(unproject(u1, v1, z1, K1, pose1), K2, pose2)
    ok = (z1 > 0) & seen(u2, v2, z2, depth2)
    x, y = to_model_frame(u2, v2, *depth2.shape, size)
    with np.errstate(invalid="ignore"):
        ok &= (x >= -0.5) & (x < size - 0.5) & (y >= -0.5) & (y < size - 0.5)
    target = np.stack([(x - (patch - 1) / 2) / patch, (y - (patch - 1) / 2) / patch], axis=-1)
    target[~ok] = np.nan
    return target


def patch_features(images: np.ndarray, patch: int) -> torch.Tensor:
    """Raw pixels as features: (V, S, S, 3) uint8 -> (V, N, 3 p^2) float32, patches row-major, each patch's
    values less their mean and divided by their standard deviation (cosine similarity is then the patches'
    normalised cross-correlation; a flat patch is all zeros, similar to nothing)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()  # (V, S, S, 3)
    V, S = x.shape[:2]
    g = S // patch
    x = x.reshape(V, g, patch, g, patch, 3).permute(0, 1, 3, 2, 4, 5).reshape(V, g * g, -1)  # (V, N, p p 3)
    x = x - x.mean(-1, keepdim=True)
    return x / x.std(-1, keepdim=True).clamp_min(1e-6)


def nearest_patches(query: torch.Tensor, keys: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each query feature the index of the key with the highest cosine similarity; exact ties (a zero
    feature ties with every key) broken uniformly at random from ``generator``.

    query (Q, E), keys (N, E) -> (Q,) int64.
    """
    q, k = torch.nn.functional.normalize(query, dim=-1), torch.nn.functional.normalize(keys, dim=-1)
    sim = q @ k.T  # (Q, N)
    ties = sim >= sim.max(dim=1, keepdim=True).values  # (Q, N)
    draw = torch.rand(sim.shape, generator=generator)  # (Q, N)
    return torch.where(ties, draw, torch.full_like(draw, -1.0)).argmax(dim=1)


def patch_errors(chosen: np.ndarray, target: np.ndarray, grid: int) -> np.ndarray:
    """Distance in patches from each chosen patch's centre (index, row-major) to its true position.

    chosen (Q,) int, target (Q, 2) float (x, y) -> (Q,) float64.
    """
    chosen = np.asarray(chosen)
    xy = np.stack([chosen % grid, chosen // grid], axis=-1).astype(np.float64)
    return np.linalg.norm(xy - target, axis=-1)


def pair_recall(errors: np.ndarray, radii: tuple[int, ...] = RADII) -> np.ndarray:
    """(R,) the share of a pair's matched patches whose error is at most each radius (NaN: no matched patch)."""
    if not len(errors):
        return np.full(len(radii), np.nan)
    return (np.asarray(errors)[:, None] <= np.asarray(radii, np.float64)[None]).mean(axis=0)


def chance_recall(target: np.ndarray, grid: int, radii: tuple[int, ...] = RADII) -> np.ndarray:
    """(R,) what a uniformly random pick scores on a pair: the mean over its matched patches (target (Q, 2))
    of the share of the ``grid`` x ``grid`` patch centres within each radius of the true position."""
    if not len(target):
        return np.full(len(radii), np.nan)
    c = np.arange(grid, dtype=np.float64)
    centres = np.stack(np.meshgrid(c, c, indexing="xy"), axis=-1).reshape(-1, 2)  # (N, 2) as (x, y)
    dist = np.linalg.norm(target[:, None] - centres[None], axis=-1)  # (Q, N)
    return (dist[..., None] <= np.asarray(radii, np.float64)).mean(axis=1).mean(axis=0)
