"""Covisibility of one view in another, by depth reprojection (docs/design.md's definition).

A pixel of view A is covisible in view B when its surface point (A's depth,
unprojected) projects inside B's image, in front of B, and B's depth at that
pixel agrees with the point's depth in B (the point is not hidden behind
something B sees). The fraction counts over all of A's H·W pixels: invalid
pixels are never covisible (CroCo divides by H·W too).

The per-pixel test (nearest pixel, depth tolerance) is
:func:`covisibility.pixel_rule.covisible_points`, shared with the batch; this
module is the single-pair reference: float64 geometry through
:mod:`renderers.camera`, one pair at a time. :mod:`covisibility.reprojection`
computes the same numbers for many pairs at once, in float32, with pruning.
"""

from __future__ import annotations

import numpy as np

from covisibility.pixel_rule import DEPTH_ABS_TOL, DEPTH_REL_TOL, covisible_points
from renderers.camera import project, unproject_depth

__all__ = ["DEPTH_ABS_TOL", "DEPTH_REL_TOL", "covisibility", "covisible_mask"]


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
    uv, z = project(points[valid], K_b, cam2world_b)  # (M, 2), (M,) float64
    seen = covisible_points(uv[None, :, 0], uv[None, :, 1], z[None], np.asarray(depth_b)[None])[0]
    mask = np.zeros(depth_a.shape, dtype=bool)
    mask[valid] = seen
    return mask


def covisibility(
    depth_a: np.ndarray, K_a: np.ndarray, cam2world_a: np.ndarray,
    depth_b: np.ndarray, K_b: np.ndarray, cam2world_b: np.ndarray,
) -> tuple[float, float]:  # fmt: skip
    """``(covis(A in B), covis(B in A))`` of one pair.

    The pair's covisibility combines them as
    :func:`covisibility.measures.pair_covisibility` does.
    """
    a_in_b = covisible_mask(depth_a, K_a, cam2world_a, depth_b, K_b, cam2world_b).mean()
    b_in_a = covisible_mask(depth_b, K_b, cam2world_b, depth_a, K_a, cam2world_a).mean()
    return float(a_in_b), float(b_in_a)
