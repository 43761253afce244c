"""Pure array geometry for pair selection: covisibility by depth reprojection.

The camera conventions it relies on (docs/design.md: OpenCV cameras,
``cam2world`` poses, planar depth with 0 = invalid, pixel ``(i, j)`` centred
at ``(u, v) = (i, j)``) are the renderer's, in :mod:`renderers.camera`; they
are re-exported here so later stages depend on earlier ones, never the
reverse.

* :mod:`covisibility.kernel`: the per-pixel test (rounding rule, depth tolerances);
* :mod:`covisibility.reprojection`: the single-pair reference;
* :mod:`covisibility.measures`: the :class:`Measure` interface, its registry,
  :class:`PairCovisibility` and :func:`select_pairs`;
* :mod:`covisibility.batch` (``reprojection``) and :mod:`covisibility.croco`
  (``croco``): the registered measures.
"""

from renderers.camera import intrinsics_from_hfov, pixel_rays, project, unproject_depth
from covisibility.kernel import DEPTH_ABS_TOL, DEPTH_REL_TOL
from covisibility.reprojection import covisibility, covisible_mask
from covisibility.measures import (
    Measure,
    PairCovisibility,
    all_pairs,
    available_measures,
    describe_measures,
    get_measure,
    pair_covisibility,
    register_measure,
    select_pairs,
)
from covisibility import batch, croco  # noqa: F401,E402  (register "reprojection" and "croco")

__all__ = [
    "DEPTH_ABS_TOL",
    "DEPTH_REL_TOL",
    "Measure",
    "PairCovisibility",
    "all_pairs",
    "available_measures",
    "covisibility",
    "covisible_mask",
    "describe_measures",
    "get_measure",
    "intrinsics_from_hfov",
    "pair_covisibility",
    "pixel_rays",
    "project",
    "register_measure",
    "select_pairs",
    "unproject_depth",
]
