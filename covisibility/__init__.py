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
  (``croco``): the registered measures;
* :mod:`covisibility.search`: the :class:`Search` interface (which pairs get
  computed and kept), its registry (``exhaustive``, ``index``) and :class:`Choice`.
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
from covisibility.search import (  # noqa: E402  (registers "exhaustive" and "index")
    Choice,
    MillimetreDepths,
    Search,
    available_searches,
    describe_searches,
    get_search,
    metres,
    millimetres,
    register_search,
)

__all__ = [
    "DEPTH_ABS_TOL",
    "DEPTH_REL_TOL",
    "Choice",
    "Measure",
    "MillimetreDepths",
    "PairCovisibility",
    "Search",
    "all_pairs",
    "available_measures",
    "available_searches",
    "covisibility",
    "covisible_mask",
    "describe_measures",
    "describe_searches",
    "get_measure",
    "get_search",
    "intrinsics_from_hfov",
    "metres",
    "millimetres",
    "pair_covisibility",
    "pixel_rays",
    "project",
    "register_measure",
    "register_search",
    "select_pairs",
    "unproject_depth",
]
