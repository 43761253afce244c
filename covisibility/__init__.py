"""Pure array geometry for pair selection: covisibility by depth reprojection.

The camera conventions it relies on (DESIGN.md: OpenCV cameras, ``cam2world``
poses, planar depth with 0 = invalid, pixel ``(i, j)`` centred at
``(u, v) = (i, j)``) are the renderer's, in :mod:`renderers.camera`; they are
re-exported here so later stages depend on earlier ones, never the reverse.
"""

from renderers.camera import intrinsics_from_hfov, pixel_rays, project, unproject_depth
from covisibility.reprojection import DEPTH_ABS_TOL, DEPTH_REL_TOL, covisibility, covisible_mask

__all__ = [
    "DEPTH_ABS_TOL",
    "DEPTH_REL_TOL",
    "covisibility",
    "covisible_mask",
    "intrinsics_from_hfov",
    "pixel_rays",
    "project",
    "unproject_depth",
]
