"""Where a camera may stand: the navigable floor of a scene.

Two sources, one output (:class:`Floor`, a pool of floor points with the free
height above each):

* **navmesh** (:func:`floor_from_navmesh`): points drawn on the walkable
  triangles, area-weighted, as habitat-sim's ``sample_navigable_point`` does;
  each keeps the free height measured by a ray cast straight up.
* **geometry** (:func:`floor_from_geometry`), for scenes without a navmesh
  (ScanNet, Replica's raw meshes, synthetic, any mesh): a grid of vertical
  columns is cast top-down through the whole mesh and every surface each
  column meets is listed. A cell is floor where

  1. the surface faces up (within ``max_slope`` of horizontal; the winding
     is taken as counter-clockwise seen from the visible side, as in glTF and
     the scans, unless no floor faces up that way),
  2. nothing lies within ``agent_height`` above it (the next surface up the
     column; tops of furniture under a low ceiling and the floor under a
     table fail here), and that next surface faces down at it (one facing up
     is the top of a solid seen from inside: a closed cabinet, a wall),
  3. the cells within ``agent_radius`` around it are floor too, at a height
     within ``max_step`` (free space wide enough for a person: not inside a
     wall, not squeezed between furniture),
  4. horizontal rays at eye height meet the visible side of a surface in at
     least ``min_enclosure`` of directions (inside the building, not on the
     terrain scanned around it),
  5. it belongs to the largest connected walkable region, or to another
     region at least ``min_storey_fraction`` of its size lying a storey
     (``agent_height``) above or below every region kept (more floors of a
     house; a bed or a table top is neither).

Everything here is vectorised over cells; the ray casting is Open3D's
``RaycastingScene`` (Embree), built by the caller once per scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from renderers.scene import NavMesh, Scene, triangle_areas

__all__ = ["Floor", "FloorConfig", "NoFloorError", "find_floor", "floor_from_geometry", "floor_from_navmesh"]

log = logging.getLogger(__name__)

UP = np.array([0.0, 1.0, 0.0])
RAY_EPS = 1e-3  # metres a ray starts off the surface it leaves


class NoFloorError(ValueError):
    """A scene has nowhere a camera may stand; the message says which test failed."""


@dataclass(frozen=True)
class FloorConfig:
    """What counts as navigable floor (metres and degrees)."""

    agent_height: float = 1.9  # free height a cell needs above it (cameras go up to 1.8 m)
    agent_radius: float = 0.2  # free floor needed around a standing point
    cell: float = 0.1  # grid spacing of the geometric floor search
    max_slope: float = 20.0  # degrees a walkable surface may tilt
    max_step: float = 0.25  # height difference between neighbouring cells of one region
    min_enclosure: float = 0.75  # share of horizontal directions that must hit the scene
    enclosure_range: float = 30.0  # how far those rays look
    enclosure_directions: int = 8
    min_storey_fraction: float = 0.25  # a second region's size relative to the largest
    navmesh_samples: int = 20_000  # points drawn on a navmesh


@dataclass(frozen=True, eq=False)
class Floor:
    """A pool of points a camera may stand above.

    Attributes
    ----------
    points : (P, 3) float64
        Floor points in the Y-up world frame.
    clearance : (P,) float64
        Free height above each point (``inf`` where nothing is above).
    jitter : float
        Half-width (metres) of the square around each point, in x and z, that
        a sample may move within (the grid cell; 0 for navmesh points).
    source : str
        ``"navmesh"`` or ``"geometry"``.
    area : float
        Navigable area in square metres.
    """

    points: np.ndarray
    clearance: np.ndarray
    jitter: float
    source: str
    area: float

    def __len__(self) -> int:
        return len(self.points)


def find_floor(scene: Scene, raycaster, config: FloorConfig = FloorConfig(), rng=None) -> Floor:
    """The scene's navmesh floor where it has one, else the floor found in its geometry.

    ``raycaster`` is an ``open3d.t.geometry.RaycastingScene`` holding the
    scene's triangles.
    """
    if scene.navmesh is not None:
        return floor_from_navmesh(scene.navmesh, raycaster, config, rng if rng is not None else np.random.default_rng(0))
    return floor_from_geometry(scene, raycaster, config)


def _cast(raycaster, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance along each ray (``dirs`` unit) to the first hit, ``inf`` where none."""
    import open3d as o3d

    rays = np.concatenate([origins, np.broadcast_to(dirs, origins.shape)], axis=1).astype(np.float32)
    return raycaster.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)


def floor_from_navmesh(navmesh: NavMesh, raycaster, config: FloorConfig, rng: np.random.Generator) -> Floor:
    """Area-weighted points on the navmesh's triangles, with the free height above each.

    Raises
    ------
    NoFloorError
        The navmesh is empty or has no area.
    """
    tris = np.asarray(navmesh.triangles, dtype=np.float64)  # (T, 3, 3)
    areas = navmesh.triangle_areas if len(tris) else np.zeros(0)
    total = float(areas.sum())
    if len(tris) == 0 or not np.isfinite(total) or total <= 0.0:
        raise NoFloorError(f"{navmesh.source or 'navmesh'}: the navmesh has no walkable area")
    n = config.navmesh_samples
    tri = rng.choice(len(tris), size=n, p=areas / total)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)  # uniform on a triangle: (1 - sqrt r1, sqrt r1 (1 - r2), sqrt r1 r2)
    w = np.stack([1.0 - s, s * (1.0 - r2), s * r2], axis=1)  # (n, 3)
    points = np.einsum("nk,nkc->nc", w, tris[tri])
    clearance = _cast(raycaster, points + RAY_EPS * UP, UP)
    return Floor(points=points, clearance=clearance, jitter=0.0, source="navmesh", area=total)


def _front_hit(raycaster, origins: np.ndarray, d: np.ndarray, winding: float) -> np.ndarray:
    """Distance to the first hit along ``d`` where it is a surface's visible side, else ``inf``.

    ``winding`` is +1 when visible sides are counter-clockwise, -1 when clockwise.
    """
    import open3d as o3d

    rays = np.concatenate([origins, np.broadcast_to(d, origins.shape)], axis=1).astype(np.float32)
    hits = raycaster.cast_rays(o3d.core.Tensor(rays))
    t = hits["t_hit"].numpy().astype(np.float64)
    facing = winding * (hits["primitive_normals"].numpy() @ d) < 0.0
    return np.where(facing, t, np.inf)


def _column_hits(scene: Scene, raycaster, config: FloorConfig):
    """Every surface along vertical columns on a grid: (grid shape, origins, per-hit arrays)."""
    import open3d as o3d

    lo, hi = (np.asarray(b, dtype=np.float64) for b in scene.bounds)
    c = config.cell
    xs = np.arange(lo[0] + c / 2, hi[0], c)
    zs = np.arange(lo[2] + c / 2, hi[2], c)
    if len(xs) == 0 or len(zs) == 0:
        raise NoFloorError("the scene is flat in x or z: no floor to stand on")
    top = hi[1] + 1.0
    X, Z = np.meshgrid(xs, zs)  # (nz, nx)
    rays = np.zeros((X.size, 6), dtype=np.float32)
    rays[:, 0], rays[:, 1], rays[:, 2], rays[:, 4] = X.ravel(), top, Z.ravel(), -1.0
    hits = raycaster.list_intersections(o3d.core.Tensor(rays))
    ray = hits["ray_ids"].numpy().astype(np.int64)
    t = hits["t_hit"].numpy().astype(np.float64)
    prim = hits["primitive_ids"].numpy().astype(np.int64)
    order = np.lexsort((t, ray))  # by column, then top to bottom
    return X.shape, rays[:, [0, 2]].astype(np.float64), ray[order], top - t[order], prim[order]


def _face_normal_y(scene: Scene, prim: np.ndarray) -> np.ndarray:
    """n_y of the unit normal (counter-clockwise winding) of faces ``prim``."""
    v = scene.vertices[scene.faces[prim].astype(np.int64)].astype(np.float64)  # (N, 3, 3)
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    norm = np.linalg.norm(n, axis=1)
    return n[:, 1] / np.where(norm > 0, norm, np.inf)


def floor_from_geometry(scene: Scene, raycaster, config: FloorConfig = FloorConfig()) -> Floor:
    """Grid cells of navigable floor found from the mesh alone (see the module docstring).

    Raises
    ------
    NoFloorError
        No cell passes; the message names the first test that left none.
    """
    shape, columns, ray, y, prim = _column_hits(scene, raycaster, config)
    if len(ray) == 0:
        if not triangle_areas(scene.vertices[scene.faces.astype(np.int64)]).any():  # rays hit nothing then
            raise NoFloorError(f"all {scene.num_triangles} triangles are degenerate (zero area)")
        raise NoFloorError("no surface below any grid column: the mesh has no floor")
    same_column_above = np.r_[False, ray[1:] == ray[:-1]]
    clearance = np.where(same_column_above, np.r_[np.inf, y[:-1]] - y, np.inf)
    ny = _face_normal_y(scene, prim)
    ny_above = np.where(same_column_above, np.r_[0.0, ny[:-1]], -1.0)  # open sky counts as a ceiling
    try:
        return _select_floor(raycaster, config, shape, columns, ray, y, clearance, ny, ny_above, 1.0)
    except NoFloorError as counter_clockwise:
        try:
            floor = _select_floor(raycaster, config, shape, columns, ray, y, clearance, -ny, -ny_above, -1.0)
        except NoFloorError:
            raise counter_clockwise from None
        log.info("%s: no floor with counter-clockwise faces; the mesh is wound clockwise", scene.name)
        return floor


def _select_floor(raycaster, config: FloorConfig, shape, columns, ray, y, clearance, ny, ny_above, winding) -> Floor:
    """Tests 1-5 of the module docstring on the column hits, for one winding.

    ``ny``/``ny_above`` are the normals' y of each hit and of the hit above it,
    already multiplied by ``winding`` (+1: visible sides counter-clockwise).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nz, nx = shape
    # the surface above must face down at it: one facing up is the top of a
    # solid seen from inside (a closed cabinet, the space inside a wall)
    keep = (ny >= np.cos(np.radians(config.max_slope))) & (ny_above < 0.0) & (clearance >= config.agent_height)
    if not keep.any():
        raise NoFloorError(
            f"no upward-facing surface has {config.agent_height:g} m of free space above it"
        )
    ray, y, clearance = ray[keep], y[keep], clearance[keep]

    # Floor nodes on a (layer, z, x) grid: several storeys can share a column.
    rank = np.arange(len(ray)) - np.searchsorted(ray, ray)  # order within the column, top first
    layers = int(rank.max()) + 1
    H = np.full((layers, nz, nx), np.nan)  # floor height
    C = np.full((layers, nz, nx), np.inf)  # free height above it
    H[rank, ray // nx, ray % nx] = y
    C[rank, ray // nx, ray % nx] = clearance

    # 3. free floor within agent_radius around each node, at a similar height.
    reach = int(np.ceil(config.agent_radius / config.cell - 1e-9))
    offsets = [(dz, dx) for dz in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
               if (dz * dz + dx * dx) * config.cell**2 <= config.agent_radius**2 + 1e-12]  # fmt: skip
    padded = np.pad(H, ((0, 0), (reach, reach), (reach, reach)), constant_values=np.nan)
    wide = ~np.isnan(H)
    for dz, dx in offsets:
        nb = padded[:, reach + dz : reach + dz + nz, reach + dx : reach + dx + nx]  # (L, nz, nx)
        with np.errstate(invalid="ignore"):
            close = np.abs(nb[None, :, :, :] - H[:, None, :, :]) <= config.max_step  # (L, L, nz, nx)
        wide &= close.any(axis=1)
    if not wide.any():
        raise NoFloorError(f"no floor is {2 * config.agent_radius:g} m wide with {config.agent_height:g} m above it")

    # 4. inside the building: horizontal rays at eye height meet the scene.
    li, zi, xi = np.nonzero(wide)
    eye = np.stack([columns[zi * nx + xi, 0], H[li, zi, xi] + 1.5, columns[zi * nx + xi, 1]], axis=1)
    angles = 2 * np.pi * (np.arange(config.enclosure_directions) + 0.5) / config.enclosure_directions
    hit = np.zeros(len(eye))
    for a in angles:
        d = np.array([np.cos(a), 0.0, np.sin(a)])
        hit += _front_hit(raycaster, eye, d, winding) <= config.enclosure_range
    inside = hit / len(angles) >= config.min_enclosure
    if not inside.any():
        raise NoFloorError("every candidate floor cell is open to the outside (no walls around it)")
    li, zi, xi = li[inside], zi[inside], xi[inside]

    # 5. connected walkable regions (4-neighbours within max_step); keep the
    #    largest and any other large one a storey away from all kept.
    node = np.full(H.shape, -1, dtype=np.int64)
    node[li, zi, xi] = np.arange(len(li))
    heights = H[li, zi, xi]
    src, dst = [], []
    for dz, dx in ((0, 1), (1, 0)):
        z2, x2 = zi + dz, xi + dx
        ok = (z2 < nz) & (x2 < nx)
        for l2 in range(layers):
            other = np.full(len(li), -1)
            other[ok] = node[l2, z2[ok], x2[ok]]
            link = (other >= 0) & (np.abs(heights[np.maximum(other, 0)] - heights) <= config.max_step)
            src.append(np.flatnonzero(link))
            dst.append(other[link])
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(li), len(li)))
    count, label = connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=count)
    kept: list[int] = []
    for region in np.argsort(-sizes, kind="stable"):
        if kept and sizes[region] < config.min_storey_fraction * sizes[kept[0]]:
            break
        level = np.median(heights[label == region])
        if all(abs(level - np.median(heights[label == k])) >= config.agent_height for k in kept):
            kept.append(int(region))
    chosen = np.isin(label, kept)
    li, zi, xi = li[chosen], zi[chosen], xi[chosen]
    cols = zi * nx + xi
    points = np.stack([columns[cols, 0], H[li, zi, xi], columns[cols, 1]], axis=1)
    log.debug(
        "floor from geometry: %d cells (%.1f m2) in %d region(s) of %d",
        len(points), len(points) * config.cell**2, len(kept), count,
    )  # fmt: skip
    return Floor(
        points=points,
        clearance=C[li, zi, xi],
        jitter=config.cell / 2,
        source="geometry",
        area=len(points) * config.cell**2,
    )

