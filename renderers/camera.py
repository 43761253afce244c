"""Pinhole cameras in the docs/design.md conventions, as pure functions on arrays.

* Camera frame: OpenCV, x right, y down, z forward.
* ``cam2world``: (4, 4) rigid transform from camera to world (Y-up world).
* ``K``: (3, 3) pinhole intrinsics; the pixel in column ``i``, row ``j`` has
  its centre at ``(u, v) = (i, j)``, so a centred principal point is
  ``((W - 1) / 2, (H - 1) / 2)`` and ``fx = (W / 2) / tan(hfov / 2)``.
* Depth: planar z along the camera's +z, metres; 0 means no surface.
"""

from __future__ import annotations

import numpy as np

__all__ = ["intrinsics_from_hfov", "pixel_rays", "project", "unproject_depth"]


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Square-pixel intrinsics with a centred principal point.

    Parameters
    ----------
    width, height : int
        Image size in pixels.
    hfov_deg : float
        Horizontal field of view in degrees, in (0, 180).

    Returns
    -------
    K : (3, 3) float64
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov_deg}")
    f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Camera-frame directions through every pixel centre, scaled to z = 1.

    Returns
    -------
    (H, W, 3) float64
        ``(x / z, y / z, 1)``: multiplying by a planar depth gives the point.
    """
    i, j = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x = (i - K[0, 2] - K[0, 1] * (j - K[1, 2]) / K[1, 1]) / K[0, 0]
    y = (j - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def unproject_depth(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points of every pixel of a planar depth map.

    Parameters
    ----------
    depth : (H, W) float
        Planar z-depth in metres; 0 (or non-finite) marks invalid pixels.
    K : (3, 3) float
    cam2world : (4, 4) float

    Returns
    -------
    points : (H, W, 3) float64
        World coordinates (meaningless where ``valid`` is False).
    valid : (H, W) bool
    """
    h, w = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    cam = pixel_rays(K, w, h) * np.where(valid, depth, 0.0)[..., None]  # (H, W, 3)
    points = cam @ cam2world[:3, :3].T + cam2world[:3, 3]
    return points, valid


def project(points: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points into a camera.

    Parameters
    ----------
    points : (..., 3) float
        World coordinates.
    K : (3, 3) float
    cam2world : (4, 4) float

    Returns
    -------
    uv : (..., 2) float64
        Pixel coordinates (column, row), pixel centres at integers.
    z : (..., ) float64
        Planar depth in the camera; <= 0 means behind it.
    """
    R, t = cam2world[:3, :3], cam2world[:3, 3]
    cam = (np.asarray(points, dtype=np.float64) - t) @ R  # world -> camera: R^T (p - t)
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = cam @ np.asarray(K, dtype=np.float64).T
        uv = pix[..., :2] / z[..., None]
    return uv, z
