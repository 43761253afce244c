"""CroCo's own overlap measure, for users who want its exact criterion and as the baseline.

CroCo's Habitat generator unprojects both views to world point clouds and
counts, with a k-d tree, the points of one cloud that have a point of the
other within 5 cm; the count is divided by H·W (invalid pixels count as not
overlapping) and the pair's score is the minimum of both directions. It tests a 3D distance
where reprojection tests depth along B's rays, so its edges reach ``radius``
further, and it costs a tree query per point instead of a lookup.
"""

from __future__ import annotations

import numpy as np

from renderers.camera import unproject_depth

__all__ = ["CROCO_RADIUS", "croco_overlap", "croco_overlap_pairs"]

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
    depths: np.ndarray, Ks: np.ndarray, poses: np.ndarray, pairs: np.ndarray, radius: float = CROCO_RADIUS
) -> tuple[np.ndarray, np.ndarray]:
    """CroCo's overlap for many pairs of one scene, each view's tree built once.

    Parameters
    ----------
    depths : (N, H, W), Ks : (N, 3, 3), poses : (N, 4, 4)
    pairs : (P, 2) int
        View indices ``(a, b)``.

    Returns
    -------
    a_in_b, b_in_a : (P,) float64
    """
    from scipy.spatial import cKDTree

    clouds = [_cloud(d, K, p) for d, K, p in zip(depths, Ks, poses)]
    trees = [cKDTree(c) if len(c) else None for c in clouds]
    n_pix = depths[0].size
    out = np.zeros((len(pairs), 2))
    for k, (a, b) in enumerate(pairs):
        for direction, (src, dst) in enumerate(((a, b), (b, a))):
            if trees[dst] is not None and len(clouds[src]):
                dist = trees[dst].query(clouds[src], k=1, distance_upper_bound=radius)[0]
                out[k, direction] = np.isfinite(dist).sum() / n_pix
    return out[:, 0], out[:, 1]
