"""Covisibility of one view in another, by depth reprojection (DESIGN.md's definition).

A pixel of view A is covisible in view B when its surface point (A's depth,
unprojected) projects inside B's image, in front of B, and B's depth at that
pixel agrees with the point's depth in B (the point is not hidden behind
something B sees). The fraction counts over all of A's H·W pixels: invalid
pixels are never covisible (CroCo divides by H·W too).

Depth agreement: B's depth is read at the nearest pixel, and the point counts
as seen when ``|z_B - z| <= DEPTH_ABS_TOL + DEPTH_REL_TOL * z``. The relative
part absorbs the error of nearest-pixel lookup on slanted surfaces (at a
grazing angle one pixel spans a depth range that grows with distance); the
absolute part covers 16-bit millimetre storage and float rounding. An
occluder in front of the surface is at least tens of centimetres nearer in
indoor scenes, far beyond both.

This is the single-pair reference; the vectorised, pruned version for many
pairs builds on it (issue 4).
"""

from __future__ import annotations

import numpy as np

from renderers.camera import project, unproject_depth

__all__ = ["DEPTH_ABS_TOL", "DEPTH_REL_TOL", "covisibility", "covisible_mask"]

DEPTH_ABS_TOL = 0.02  # metres
DEPTH_REL_TOL = 0.05  # of the point's depth in B


def covisible_mask(
    depth_a: np.ndarray, K_a: np.ndarray, cam2world_a: np.ndarray,
    depth_b: np.ndarray, K_b: np.ndarray, cam2world_b: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(H_a, W_a) bool: pixels of A whose surface point B sees.

    Parameters
    ----------
    depth_a, depth_b : (H, W) float
        Planar depth in metres, 0 = invalid.
    K_a, K_b : (3, 3) float
    cam2world_a, cam2world_b : (4, 4) float
    """
    points, valid = unproject_depth(depth_a, K_a, cam2world_a)
    uv, z = project(points[valid], K_b, cam2world_b)
    h, w = depth_b.shape
    with np.errstate(invalid="ignore"):
        u, v = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    ui, vi = u[inside].astype(np.int64), v[inside].astype(np.int64)
    z_b = depth_b[vi, ui]
    seen = np.zeros(len(z), dtype=bool)
    seen[inside] = (z_b > 0) & (np.abs(z_b - z[inside]) <= DEPTH_ABS_TOL + DEPTH_REL_TOL * z[inside])
    mask = np.zeros(depth_a.shape, dtype=bool)
    mask[valid] = seen
    return mask


def covisibility(
    depth_a: np.ndarray, K_a: np.ndarray, cam2world_a: np.ndarray,
    depth_b: np.ndarray, K_b: np.ndarray, cam2world_b: np.ndarray,
) -> tuple[float, float]:  # fmt: skip
    """``(covis(A in B), covis(B in A))``; a pair's covisibility is their minimum."""
    a_in_b = covisible_mask(depth_a, K_a, cam2world_a, depth_b, K_b, cam2world_b).mean()
    b_in_a = covisible_mask(depth_b, K_b, cam2world_b, depth_a, K_a, cam2world_a).mean()
    return float(a_in_b), float(b_in_a)
