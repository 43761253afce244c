"""Camera viewpoints for a scene: where to stand, where to look, which views to keep.

Views are placed in **walks** so that a scene's views overlap at every level,
the material ``pairgen filter`` cuts ~50 %-covisible pairs from:

* a walk starts at a floor point drawn uniformly (area-weighted) from the
  scene's :class:`~renderers.floor.Floor`, with a random yaw;
* each further view of the walk branches from a random earlier one: it stands
  ``step`` metres away (on the same storey, in sight of it) and turns by up to
  ``turn`` degrees. Views one branch apart overlap a lot, views several
  branches apart little, views of different walks mostly not at all;
* every camera is ``camera_height`` above its floor point (below the ceiling),
  at any yaw, pitched within ``tilt`` and rolled within ``roll`` degrees
  (CroCo's generator: 1.2-1.8 m, 10 and 5 degrees).

A candidate view is kept when at least ``min_valid`` of its pixels see a
surface and at most ``max_near`` of them see one nearer than ``min_distance``
(a camera against a wall or a cupboard door teaches nothing). Candidates are
screened on a small render first (where the backend allows), so a rejected
view costs about 1/64 of a kept one.

Everything is drawn from one ``numpy`` generator: the same scene, config and
seed give the same views.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from renderers.backends import RenderedView
from renderers.camera import intrinsics_from_hfov
from manifests.options import ConfigError, check, option, parse_pair, parse_size, show_pair, show_size
from renderers.floor import RAY_EPS, Floor, NoFloorError

__all__ = ["SamplingStats", "View", "ViewConfig", "camera_pose", "sample_views", "scale_intrinsics"]

log = logging.getLogger(__name__)

# OpenCV camera looking along world -Z with its y axis down (world -Y): yaw 0.
LEVEL = np.diag([1.0, -1.0, -1.0])
HEAD_MARGIN = 0.1  # metres kept between a camera and the ceiling above it
SCREEN = 8  # the screening render is this many times smaller per side


@dataclass(frozen=True)
class ViewConfig:
    """How views are placed and which are kept (metres, degrees); each field is a ``pairgen render`` flag."""

    views_per_scene: int = option(500, min=1, max=1_000_000, metavar="N",
                                  help="views kept per scene (about 1,000 pairs in 0.5-0.8 covisibility)")
    resolution: tuple[int, int] = option((256, 256), min=8, max=8192, metavar="WxH", parse=parse_size, show=show_size,
                                         help="image size: SIZE or WIDTHxHEIGHT")
    hfov: float = option(60.0, above=0, below=180, help="horizontal field of view, degrees")
    camera_height: tuple[float, float] = option((1.2, 1.8), min=0, max=100, metavar="MIN,MAX", parse=parse_pair,
                                                show=show_pair, help="camera height above the floor, metres")
    tilt: float = option(10.0, min=0, below=90, help="largest pitch up or down, degrees")
    roll: float = option(5.0, min=0, below=180, help="largest roll, degrees")
    min_valid: float = option(0.7, min=0, max=1, help="least share of pixels with valid depth for a view to be kept")
    min_distance: float = option(0.3, min=0, max=100, metavar="M",
                                 help="surfaces nearer than this (metres) may fill at most --max-near of a kept view")
    max_near: float = option(0.2, min=0, max=1, metavar="FRACTION",
                             help="largest share of a kept view nearer than --min-distance")
    walk_length: int = option(16, min=1, max=100_000, metavar="N", help="views per walk")
    step: tuple[float, float] = option((0.1, 0.8), min=0, max=100, metavar="MIN,MAX", parse=parse_pair, show=show_pair,
                                       help="metres between a view and the one it branches from")
    turn: float = option(20.0, min=0, max=180, help="largest yaw change from that view, degrees")
    max_attempts: float = option(8.0, min=1, max=1000, cli=False, help="candidates tried per view kept, at most")

    def __post_init__(self) -> None:
        check(self)
        if self.camera_height[0] > self.camera_height[1]:
            raise ConfigError("camera_height", f"the camera height range must satisfy min <= max, "
                              f"got {show_pair(self.camera_height)}")
        if self.step[0] > self.step[1]:
            raise ConfigError("step", f"the step range must satisfy min <= max, got {show_pair(self.step)}")

    @property
    def width(self) -> int:
        return self.resolution[0]

    @property
    def height(self) -> int:
        return self.resolution[1]

    @property
    def K(self) -> np.ndarray:
        return intrinsics_from_hfov(self.width, self.height, self.hfov)


@dataclass(frozen=True, eq=False)
class View:
    """A kept view: its camera and what the backend rendered."""

    K: np.ndarray  # (3, 3)
    cam2world: np.ndarray  # (4, 4)
    render: RenderedView
    walk: int  # the walk it belongs to


@dataclass
class SamplingStats:
    candidates: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    walks: int = 0


def _rotation_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rotation_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rotation_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_pose(position, yaw_deg: float, tilt_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """OpenCV ``cam2world`` (4, 4) at ``position`` (Y-up world).

    Yaw 0 looks along world -Z, positive yaw turns left (counter-clockwise
    seen from above); positive tilt looks up; positive roll turns the image
    clockwise as seen by the camera.
    """
    R = _rotation_y(np.radians(yaw_deg)) @ LEVEL @ _rotation_x(np.radians(tilt_deg)) @ _rotation_z(np.radians(roll_deg))
    pose = np.eye(4)
    pose[:3, :3] = R
    pose[:3, 3] = position
    return pose


def scale_intrinsics(K: np.ndarray, factor: float) -> np.ndarray:
    """K of the same camera at ``1/factor`` the resolution (pixel centres at integers)."""
    S = np.array([[1.0 / factor, 0.0, 0.5 / factor - 0.5], [0.0, 1.0 / factor, 0.5 / factor - 0.5], [0, 0, 1.0]])
    return S @ np.asarray(K, dtype=np.float64)


def _reject_reason(depth: np.ndarray, config: ViewConfig) -> str | None:
    valid = depth > 0
    if valid.mean() < config.min_valid:
        return "too little valid depth"
    if (valid & (depth < config.min_distance)).mean() > config.max_near:
        return "too close to a surface"
    return None


class _Walker:
    """Draws candidate standing points and headings, walk by walk."""

    def __init__(self, floor: Floor, raycaster, config: ViewConfig, rng: np.random.Generator) -> None:
        from scipy.spatial import cKDTree

        self.floor, self.raycaster, self.config, self.rng = floor, raycaster, config, rng
        self.lo_h, self.hi_h = config.camera_height
        usable = floor.clearance - HEAD_MARGIN >= self.lo_h
        if not usable.any():
            raise NoFloorError(f"no floor point has {self.lo_h + HEAD_MARGIN:g} m of free height above it")
        self.points = floor.points[usable]
        self.clearance = floor.clearance[usable]
        self.tree = cKDTree(self.points)

    def stand(self, i: int) -> np.ndarray:
        """A camera position above floor point ``i``, below the ceiling."""
        p = self.points[i].copy()
        if self.floor.jitter:
            p[[0, 2]] += self.rng.uniform(-self.floor.jitter, self.floor.jitter, size=2)
        top = min(self.hi_h, self.clearance[i] - HEAD_MARGIN)
        p[1] += self.rng.uniform(self.lo_h, top)
        return p

    def anchor(self) -> tuple[int, np.ndarray, float]:
        i = int(self.rng.integers(len(self.points)))
        p = self.stand(i)
        return i, p, float(self.rng.uniform(0.0, 360.0))

    def branch(self, parent: tuple[int, np.ndarray, float]) -> tuple[int, np.ndarray, float] | None:
        """A point ``step`` away from ``parent``'s, in its sight, turned by up to ``turn``."""
        i0, p0, yaw0 = parent
        lo, hi = self.config.step
        near = np.asarray(self.tree.query_ball_point(self.points[i0], r=hi), dtype=np.int64)
        d = self.points[near] - self.points[i0]
        ok = (np.hypot(d[:, 0], d[:, 2]) >= lo) & (np.abs(d[:, 1]) <= 0.5)
        if not ok.any():
            return None
        i = int(self.rng.choice(near[ok]))
        p = self.stand(i)
        if not self._in_sight(p0, p):
            return None
        return i, p, float(yaw0 + self.rng.uniform(-self.config.turn, self.config.turn))

    def _in_sight(self, a: np.ndarray, b: np.ndarray) -> bool:
        import open3d as o3d

        d = b - a
        length = float(np.linalg.norm(d))
        if length < RAY_EPS:
            return True
        ray = np.concatenate([a, d / length])[None].astype(np.float32)
        return bool(self.raycaster.cast_rays(o3d.core.Tensor(ray))["t_hit"].numpy()[0] >= length)

    def orient(self, p: np.ndarray, yaw: float) -> np.ndarray:
        c = self.config
        return camera_pose(p, yaw, self.rng.uniform(-c.tilt, c.tilt), self.rng.uniform(-c.roll, c.roll))


def sample_views(
    render: Callable[[np.ndarray, np.ndarray, int, int], RenderedView],
    floor: Floor,
    raycaster,
    config: ViewConfig,
    rng: np.random.Generator,
    stats: SamplingStats | None = None,
    *,
    screen: bool = True,
) -> Iterator[View]:
    """Yield up to ``config.views_per_scene`` kept views, walk by walk.

    Parameters
    ----------
    render : callable
        ``render(K, cam2world, width, height) -> RenderedView`` (a backend's
        :meth:`~renderers.backends.SceneRenderer.render`).
    floor : Floor
        Where cameras may stand.
    raycaster : open3d.t.geometry.RaycastingScene
        The scene's triangles, for line-of-sight tests between views.
    stats : SamplingStats, optional
        Filled in as views are tried (candidates, kept, rejections by reason).
    screen : bool
        Check each candidate on a 1/8-size render before the full one (off for
        backends where a size change is expensive).

    Stops early, having yielded fewer views, when ``max_attempts`` candidates
    per requested view have been tried.
    """
    stats = stats if stats is not None else SamplingStats()
    walker = _Walker(floor, raycaster, config, rng)
    K = config.K
    w_s, h_s = max(1, config.width // SCREEN), max(1, config.height // SCREEN)
    K_s = scale_intrinsics(K, config.width / w_s)
    budget = int(np.ceil(config.max_attempts * config.views_per_scene))
    walk: list[tuple[int, np.ndarray, float]] = []
    misses = 0  # failed candidates in a row in this walk
    while stats.kept < config.views_per_scene and stats.candidates < budget:
        if not walk or len(walk) >= config.walk_length or misses >= 2 * config.walk_length:
            walk, misses = [], 0
            stats.walks += 1
            candidate = walker.anchor()
        else:
            candidate = walker.branch(walk[int(rng.integers(len(walk)))])
        stats.candidates += 1
        if candidate is None:
            stats.rejected["no reachable point in sight"] += 1
            misses += 1
            continue
        pose = walker.orient(candidate[1], candidate[2])
        reason = _reject_reason(render(K_s, pose, w_s, h_s).depth, config) if screen else None
        if reason is None:
            view = render(K, pose, config.width, config.height)
            reason = _reject_reason(view.depth, config)
        if reason is not None:
            stats.rejected[reason] += 1
            misses += 1
            continue
        walk.append(candidate)
        misses = 0
        stats.kept += 1
        yield View(K=K, cam2world=pose, render=view, walk=stats.walks - 1)
    if stats.kept < config.views_per_scene:
        log.info("kept %d of %d views after %d candidates: %s", stats.kept, config.views_per_scene, stats.candidates,
                 dict(stats.rejected))  # fmt: skip
