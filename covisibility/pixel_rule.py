"""The per-pixel covisibility test: one rounding rule, one depth tolerance.

Every covisibility in this package (the single-pair reference of
:mod:`covisibility.reference`, the batched passes of
:mod:`covisibility.reprojection`) ends here: a point of view A, already projected
into a view B at pixel coordinates ``(u, v)`` and planar depth ``z``, is
*seen* by B when

* it is in front of B (``z > 0``) and its nearest pixel lies in B's image.
  The nearest pixel rounds half up, ``floor(x + 0.5)``: pixel ``i`` covers
  ``[i - 0.5, i + 0.5)`` (docs/design.md: pixel centres at integers);
* B's depth ``z_B`` at that pixel is valid and agrees with the point's:
  ``|z_B - z| <= DEPTH_ABS_TOL + DEPTH_REL_TOL * z``.

The relative part of the tolerance absorbs the error of nearest-pixel lookup
on slanted surfaces (at a grazing angle one pixel spans a depth range that
grows with distance); the absolute part covers 16-bit millimetre storage and
float rounding. An occluder in front of the surface is at least tens of
centimetres nearer in indoor scenes, far beyond both.

The functions compute in the dtype they are given (float32 in the batch,
float64 in the reference) and never convert.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEPTH_ABS_TOL", "DEPTH_REL_TOL", "covisible_count", "covisible_points", "in_image", "nearest_pixel"]

DEPTH_ABS_TOL = 0.02  # metres
DEPTH_REL_TOL = 0.05  # of the point's depth in B


def nearest_pixel(x: np.ndarray) -> np.ndarray:
    """int64 index of the pixel holding coordinate ``x``: round half up, ``floor(x + 0.5)``."""
    return np.floor(x + 0.5).astype(np.int64)


def in_image(u: np.ndarray, v: np.ndarray, z: np.ndarray, width: int, height: int) -> np.ndarray:
    """bool, the shape of ``u``: in front of the camera, nearest pixel inside a ``width`` x ``height`` image.

    ``u, v, z`` may hold NaN or inf (points at ``z = 0``): those are outside.
    The bounds are the same rule as :func:`nearest_pixel` (``floor(x + 0.5)``
    in ``[0, width)`` exactly when ``x`` in ``[-0.5, width - 0.5)``).
    """
    with np.errstate(invalid="ignore"):
        return (z > 0) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)


def covisible_points(u: np.ndarray, v: np.ndarray, z: np.ndarray, depths_b: np.ndarray) -> np.ndarray:
    """Which of ``M`` points each of ``m`` views B sees.

    Parameters
    ----------
    u, v, z : (m, M) float
        The points' pixel coordinates (column, row) and planar depth in each
        view B (any float dtype; NaN/inf count as outside).
    depths_b : (m, H, W) float
        The views' planar depth in metres, 0 = invalid.

    Returns
    -------
    (m, M) bool
    """
    m, h, w = depths_b.shape
    which, idx = np.nonzero(in_image(u, v, z, w, h))
    z_b = depths_b[which, nearest_pixel(v[which, idx]), nearest_pixel(u[which, idx])]
    z_a = z[which, idx]
    ok = (z_b > 0) & (np.abs(z_b - z_a) <= DEPTH_ABS_TOL + DEPTH_REL_TOL * z_a)
    seen = np.zeros(u.shape, dtype=bool)
    seen[which[ok], idx[ok]] = True
    return seen



def covisible_count(u: np.ndarray, v: np.ndarray, z: np.ndarray, depth_b: np.ndarray) -> int:
    """How many of ``M`` points one view B sees: ``covisible_points(u[None], v[None], z[None], depth_b[None]).sum()``.

    The same test on the same values (:func:`in_image`, :func:`nearest_pixel`,
    the tolerance) with flat indices into B's depth and no mask of the
    result, so the count is that of :func:`covisible_points` exactly.

    Parameters
    ----------
    u, v, z : (M,) float
        The points' pixel coordinates and planar depth in B.
    depth_b : (H, W) float
        B's planar depth in metres, 0 = invalid.
    """
    h, w = depth_b.shape
    sel = np.flatnonzero(in_image(u, v, z, w, h))
    z_b = np.ravel(depth_b)[nearest_pixel(v[sel]) * w + nearest_pixel(u[sel])]
    z_a = z[sel]
    return int(np.count_nonzero((z_b > 0) & (np.abs(z_b - z_a) <= DEPTH_ABS_TOL + DEPTH_REL_TOL * z_a)))
