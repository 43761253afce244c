"""CroCo's own overlap measure, for users who want its exact criterion and as the baseline.

CroCo's Habitat generator unprojects both views to world point clouds and
counts, with a k-d tree, the points of one cloud that have a point of the
other within 5 cm; the count is divided by H·W (invalid pixels count as not
overlapping) and the pair's score combines both directions as every measure
does (:func:`covisibility.measures.pair_covisibility`). It tests a 3D
distance where reprojection tests depth along B's rays, so its edges reach
``radius`` further, and it costs a tree query per point instead of a lookup.
Registered as the ``croco`` measure (every pair, no pruning).
"""

from __future__ import annotations

import numpy as np

from covisibility.measures import Measure, PairCovisibility, all_pairs, check_view_arrays, register_measure
from renderers.camera import unproject_depth

__all__ = ["CROCO_RADIUS", "CrocoMeasure", "croco_overlap", "croco_overlap_pairs"]

CROCO_RADIUS = 0.05  # metres


def _cloud(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    points, valid = unproject_depth(depth, K, cam2world)
    return points[valid]


def croco_overlap(
    depth_a: np.ndarray, K_a: np.ndarray, cam2world_a: np.ndarray,
    depth_b: np.ndarray, K_b: np.ndarray, cam2world_b: np.ndarray,
    radius: float = CROCO_RADIUS,
) -> tuple[float, float]:  # fmt: skip
    """``(overlap(A in B), overlap(B in A))`` by nearest neighbours within ``radius``."""
    from scipy.spatial import cKDTree

    a, b = _cloud(depth_a, K_a, cam2world_a), _cloud(depth_b, K_b, cam2world_b)
    if len(a) == 0 or len(b) == 0:
        return 0.0, 0.0
    near_ab = np.isfinite(cKDTree(b).query(a, k=1, distance_upper_bound=radius)[0]).sum()
    near_ba = np.isfinite(cKDTree(a).query(b, k=1, distance_upper_bound=radius)[0]).sum()
    return float(near_ab / depth_a.size), float(near_ba / depth_b.size)


def croco_overlap_pairs(
    depths: np.ndarray, Ks: np.ndarray, poses: np.ndarray, pairs: np.ndarray | None = None,
    *, radius: float = CROCO_RADIUS,
) -> PairCovisibility:  # fmt: skip
    """CroCo's overlap for many pairs of one scene, each view's tree built once.

    Parameters
    ----------
    depths : (N, H, W), Ks : (N, 3, 3), poses : (N, 4, 4)
    pairs : (P, 2) int, optional
        View indices ``(a, b)``, ``a < b``; default every pair.
    radius : float
        Metres.

    Returns
    -------
    PairCovisibility
        Every pair given (``candidates == computed == P``).
    """
    from scipy.spatial import cKDTree

    check_view_arrays(depths, Ks, poses)
    pairs = all_pairs(len(depths)) if pairs is None else np.asarray(pairs, np.int64).reshape(-1, 2)
    clouds = [_cloud(d, K, p) for d, K, p in zip(depths, Ks, poses)]
    trees = [cKDTree(c) if len(c) else None for c in clouds]
    n_pix = depths[0].size if len(depths) else 1
    out = np.zeros((len(pairs), 2))
    for k, (a, b) in enumerate(pairs):
        for direction, (src, dst) in enumerate(((a, b), (b, a))):
            if trees[dst] is not None and len(clouds[src]):
                dist = trees[dst].query(clouds[src], k=1, distance_upper_bound=radius)[0]
                out[k, direction] = np.isfinite(dist).sum() / n_pix
    return PairCovisibility(
        pairs=pairs,
        covis_1in2=out[:, 0].astype(np.float32),
        covis_2in1=out[:, 1].astype(np.float32),
        candidates=len(pairs),
        computed=len(pairs),
    )


@register_measure
class CrocoMeasure(Measure):
    """CroCo's k-d-tree overlap (:func:`croco_overlap_pairs`) on every pair."""

    name = "croco"
    description = "CroCo's criterion, share of points within 5 cm of the other view's, by k-d tree; slow"

    def pairs(
        self, depths: np.ndarray, Ks: np.ndarray, poses: np.ndarray, *, min_covis: float, max_covis: float
    ) -> PairCovisibility:
        return croco_overlap_pairs(depths, Ks, poses)

    def exact(self, depths, Ks: np.ndarray, poses: np.ndarray, pairs: np.ndarray,
              cache: dict | None = None) -> PairCovisibility:  # fmt: skip
        dense = depths if isinstance(depths, np.ndarray) else np.stack([depths[i] for i in range(depths.shape[0])])
        return croco_overlap_pairs(dense, Ks, poses, pairs)
