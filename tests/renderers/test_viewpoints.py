"""Where cameras stand and look: the floor search, navmesh sampling, and the view walks."""

from __future__ import annotations

import numpy as np
import pytest

from renderers.backends import build_raycaster, get_backend
from renderers.camera import project
from renderers.floor import FloorConfig, NoFloorError, floor_from_geometry, floor_from_navmesh
from renderers.scene import NavMesh
from renderers.sources import load_scene
from renderers.sources.navmesh import read_navmesh
from renderers.viewpoints import SamplingStats, ViewConfig, camera_pose, sample_views, scale_intrinsics
from tests.rooms import box_faces, room, scene_of


def test_camera_pose_axes():
    level = camera_pose([1.0, 1.5, 2.0], yaw_deg=0.0)
    np.testing.assert_allclose(level[:3, 2], [0, 0, -1], atol=1e-12)  # looks along -Z
    np.testing.assert_allclose(level[:3, 1], [0, -1, 0], atol=1e-12)  # image down = world down
    np.testing.assert_allclose(level[:3, 3], [1.0, 1.5, 2.0])
    left = camera_pose([0, 0, 0], yaw_deg=90.0)
    np.testing.assert_allclose(left[:3, 2], [-1, 0, 0], atol=1e-12)  # positive yaw turns left
    up = camera_pose([0, 0, 0], yaw_deg=0.0, tilt_deg=10.0)
    assert up[1, 2] == pytest.approx(np.sin(np.radians(10.0)))  # positive tilt looks up
    rolled = camera_pose([0, 0, 0], 30.0, 7.0, 4.0)
    np.testing.assert_allclose(rolled[:3, :3] @ rolled[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rolled[:3, :3]) == pytest.approx(1.0)


def test_scale_intrinsics_keeps_the_camera():
    K = np.array([[221.7, 0, 127.5], [0, 221.7, 95.5], [0, 0, 1]])
    small = scale_intrinsics(K, 8.0)
    point = np.array([[0.3, -0.2, 2.0]])
    uv_full, _ = project(point, K, np.eye(4))
    uv_small, _ = project(point, small, np.eye(4))
    # pixel centres at integers: full-res u maps to (u + 0.5) / 8 - 0.5
    np.testing.assert_allclose(uv_small, (uv_full + 0.5) / 8 - 0.5, atol=1e-9)


def test_floor_of_a_furnished_room_avoids_furniture_and_walls():
    scene = room()
    config = FloorConfig()
    floor = floor_from_geometry(scene, build_raycaster(scene), config)
    x, y, z = floor.points.T
    assert np.all(np.abs(y) < 1e-4)  # the floor, not the table top or the cabinet top
    r = config.agent_radius - config.cell / 2 - 1e-6
    assert x.min() >= r and z.min() >= r and x.max() <= 5.0 - r and z.max() <= 4.0 - r
    for lo, hi in (((1.0, 1.0), (2.2, 1.8)), ((3.5, 0.2), (4.6, 0.8))):  # footprints (x, z)
        inside = (x > lo[0] - r) & (x < hi[0] + r) & (z > lo[1] - r) & (z < hi[1] + r)
        assert not inside.any()
    assert floor.source == "geometry" and 5 < floor.area < 20


def test_two_storeys_both_kept():
    ground = box_faces((0, 0, 0), (6, 2.6, 5))
    upper = box_faces((0, 2.8, 0), (6, 5.4, 5))
    scene = scene_of(ground, upper)
    floor = floor_from_geometry(scene, build_raycaster(scene))
    levels = np.unique(np.round(floor.points[:, 1], 2))
    np.testing.assert_allclose(levels, [0.0, 2.8], atol=1e-3)


@pytest.mark.parametrize(
    "parts, phrase",
    [
        ([box_faces((0, 0, 0), (5, 1.5, 5))], "free space above"),  # too low for a person
        ([box_faces((0, 0, 0), (20, 0.01, 20), inward=False, skip=("ymin",))], "open to the outside"),  # bare plane
        ([box_faces((0, 0, 0), (0.3, 2.6, 5))], "wide"),  # a corridor too narrow
    ],
    ids=["low-ceiling", "no-walls", "too-narrow"],
)
def test_no_floor_is_one_clear_error(parts, phrase):
    scene = scene_of(*parts)
    with pytest.raises(NoFloorError, match=phrase):
        floor_from_geometry(scene, build_raycaster(scene))


def test_empty_navmesh_is_refused():
    empty = NavMesh(polygons=[], triangles=np.zeros((0, 3, 3), np.float32), triangle_polygon=np.zeros(0, np.int32),
                    source="empty.navmesh")  # fmt: skip
    with pytest.raises(NoFloorError, match="empty.navmesh: the navmesh has no walkable area"):
        floor_from_navmesh(empty, build_raycaster(room()), FloorConfig(), np.random.default_rng(0))


@pytest.mark.parametrize("name", ["van-gogh-room.navmesh", "apartment_1.navmesh"])
def test_real_navmesh_points_lie_on_its_polygons_area_weighted(shared_fixtures, name):
    import open3d as o3d

    navmesh = read_navmesh(shared_fixtures / "navmesh" / name)
    tris = navmesh.triangles.astype(np.float32)
    caster = o3d.t.geometry.RaycastingScene()
    caster.add_triangles(o3d.core.Tensor(tris.reshape(-1, 3)), o3d.core.Tensor(np.arange(3 * len(tris), dtype=np.uint32).reshape(-1, 3)))
    config = FloorConfig(navmesh_samples=20_000)
    floor = floor_from_navmesh(navmesh, caster, config, np.random.default_rng(1))
    assert floor.source == "navmesh" and floor.area == pytest.approx(navmesh.area)
    result = caster.compute_closest_points(o3d.core.Tensor(floor.points.astype(np.float32)))
    distance = np.linalg.norm(result["points"].numpy() - floor.points, axis=1)
    assert distance.max() < 1e-3
    # area-weighted: each polygon's share of the points is its share of the area
    tri = result["primitive_ids"].numpy()
    share = np.bincount(navmesh.triangle_polygon[tri], minlength=len(navmesh.polygons)) / len(tri)
    area = np.bincount(navmesh.triangle_polygon, weights=navmesh.triangle_areas, minlength=len(navmesh.polygons))
    np.testing.assert_allclose(share, area / area.sum(), atol=0.015)


def _in_box(p, box, margin=0.0) -> bool:
    lo, hi = np.asarray(box["min"]) - margin, np.asarray(box["max"]) + margin
    return bool(np.all(p >= lo) and np.all(p <= hi))


@pytest.fixture(scope="module")
def synthetic_views():
    scene = load_scene("synthetic", "small/3", scene_id="apartment")
    config = ViewConfig(views_per_scene=60, resolution=(64, 48))
    stats = SamplingStats()
    with get_backend("raycast").open(scene) as renderer:
        caster = renderer.raycaster()
        floor = floor_from_geometry(scene, caster)
        views = list(sample_views(renderer.render, floor, caster, config, np.random.default_rng(7), stats))
    return scene, config, views, stats


def test_synthetic_cameras_stand_in_free_space_at_the_requested_height(synthetic_views):
    scene, config, views, stats = synthetic_views
    assert len(views) == config.views_per_scene and stats.kept == config.views_per_scene
    rooms, doors, obstacles = (scene.extras[k] for k in ("rooms", "doors", "obstacles"))
    for view in views:
        p = view.cam2world[:3, 3]
        assert any(_in_box(p, r) for r in rooms) or any(_in_box(p, d) for d in doors)
        assert not any(_in_box(p, o, margin=0.05) for o in obstacles)
        floor_y = 0.0
        assert config.camera_height[0] - 1e-6 <= p[1] - floor_y <= config.camera_height[1] + 0.02  # rugs: 1 cm
        R = view.cam2world[:3, :3]
        pitch = np.degrees(np.arcsin(R[1, 2]))
        assert abs(pitch) <= config.tilt + 1e-6
        assert view.render.valid_fraction >= config.min_valid
        near = (view.render.depth > 0) & (view.render.depth < config.min_distance)
        assert near.mean() <= config.max_near


def test_views_come_in_walks_of_nearby_cameras(synthetic_views):
    _, config, views, _ = synthetic_views
    walks = {}
    for v in views:
        walks.setdefault(v.walk, []).append(v.cam2world[:3, 3])
    assert len(walks) >= 2
    for positions in walks.values():
        positions = np.array(positions)
        # every view after the first is within one step of some earlier view of its walk
        for i in range(1, len(positions)):
            d = np.hypot(*(positions[:i, [0, 2]] - positions[i, [0, 2]]).T)
            assert d.min() <= config.step[1] + 0.15  # + the cell jitter


def test_sampling_is_deterministic():
    scene = room()
    config = ViewConfig(views_per_scene=12, resolution=(32, 32), walk_length=4)
    poses = []
    for seed in (5, 5, 6):
        with get_backend("raycast").open(scene) as renderer:
            caster = renderer.raycaster()
            floor = floor_from_geometry(scene, caster)
            rng = np.random.default_rng(seed)
            poses.append(np.array([v.cam2world for v in sample_views(renderer.render, floor, caster, config, rng)]))
    np.testing.assert_array_equal(poses[0], poses[1])
    assert poses[0].shape == poses[2].shape and not np.allclose(poses[0], poses[2])


@pytest.mark.parametrize(
    "kw, phrase",
    [
        (dict(views_per_scene=0), "views_per_scene"),
        (dict(camera_height=(1.8, 1.2)), "camera height"),
        (dict(hfov=180.0), "hfov"),
        (dict(min_valid=1.5), "valid"),
    ],
)
def test_view_config_rejects_nonsense(kw, phrase):
    with pytest.raises(ValueError, match=phrase):
        ViewConfig(**kw)


def test_clockwise_wound_mesh_still_has_a_floor():
    scene = room()
    flipped = scene_of((scene.vertices, scene.faces[:, ::-1].copy()))
    a = floor_from_geometry(scene, build_raycaster(scene))
    b = floor_from_geometry(flipped, build_raycaster(flipped))
    np.testing.assert_array_equal(a.points, b.points)
