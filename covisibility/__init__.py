"""Pure array geometry for pair selection: covisibility by depth reprojection.

The camera conventions it relies on (docs/design.md: OpenCV cameras,
``cam2world`` poses, planar depth with 0 = invalid, pixel ``(i, j)`` centred
at ``(u, v) = (i, j)``) are the renderer's, in :mod:`renderers.camera`; they
are re-exported here so later stages depend on earlier ones, never the
reverse.

* :mod:`covisibility.pixel_rule`: the per-pixel test (rounding rule, depth tolerances);
* :mod:`covisibility.reference`: the single-pair reference;
* :mod:`covisibility.measures`: the :class:`Measure` interface, its registry,
  :class:`PairCovisibility` and :func:`select_pairs`;
* :mod:`covisibility.reprojection` (``reprojection``) and :mod:`covisibility.croco_overlap`
  (``croco``): the registered measures;
* :mod:`covisibility.search`: the :class:`Search` interface (which pairs get
  computed and kept), its registry (``exhaustive``, ``index``) and :class:`Choice`.
"""

from renderers.camera import intrinsics_from_hfov, pixel_rays, project, unproject_depth
from covisibility.pixel_rule import DEPTH_ABS_TOL, DEPTH_REL_TOL
from covisibility.reference import covisibility, covisible_mask
from covisibility.measures import (
    Measure,
    PairCovisibility,
    all_pairs,
    available_measures,
    describe_measures,
    get_measure,
    in_band,
    pair_covisibility,
    register_measure,
    select_pairs,
)
from covisibility import croco_overlap, reprojection  # noqa: F401,E402  (register "croco" and "reprojection")
from covisibility.search import (  # noqa: E402  (registers "exhaustive" and "index")
    Choice,
    MillimetreDepths,
    Search,
    available_searches,
    describe_searches,
    get_search,
    register_search,
)
from manifests.codecs import metres, millimetres  # noqa: E402  (depth in millimetres, as views store it)

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
    "in_band",
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
