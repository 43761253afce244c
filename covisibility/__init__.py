"""Pure array geometry: camera conventions, (un)projection, covisibility.

Conventions (DESIGN.md): OpenCV cameras (x right, y down, z forward), poses
``cam2world`` 4x4, planar z-depth in metres with 0 = invalid, pixel ``(i, j)``
centred at ``(u, v) = (i, j)``.
"""

from covisibility.camera import intrinsics_from_hfov, project, unproject_depth

__all__ = ["intrinsics_from_hfov", "project", "unproject_depth"]
