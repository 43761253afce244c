"""Covisibility by depth reprojection on geometry with known answers, and the overlap of sampled views."""

from __future__ import annotations

import numpy as np
import pytest

from covisibility.reprojection import covisibility, covisible_mask
from renderers.backends import get_backend
from renderers.camera import intrinsics_from_hfov, project, unproject_depth
from renderers.floor import floor_from_geometry
from renderers.sources import load_scene
from renderers.viewpoints import ViewConfig, camera_pose, sample_views
from tests.rooms import box_faces, scene_of

W = H = 256
K = intrinsics_from_hfov(W, H, 60.0)


def wall_depth(distance: float) -> np.ndarray:
    return np.full((H, W), distance, np.float32)


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_sideways_cameras_facing_a_wall(shift):
    d = 3.0
    a, b = camera_pose([0, 1.5, 0], 0.0), camera_pose([shift, 1.5, 0], 0.0)
    width = 2 * d * np.tan(np.radians(30.0))  # of the wall each camera sees
    expected = max(0.0, 1.0 - shift / width)
    a_in_b, b_in_a = covisibility(wall_depth(d), K, a, wall_depth(d), K, b)
    assert a_in_b == pytest.approx(expected, abs=0.01)
    assert b_in_a == pytest.approx(expected, abs=0.01)


def test_an_occluder_removes_exactly_the_pixels_it_hides():
    """B sees the wall through a pillar; A's pixels whose wall point the pillar hides in B drop out."""
    wall = box_faces((-10, 0, -3.05), (10, 3, -3.0), inward=False)
    pillar = box_faces((0.4, 0, -1.6), (0.8, 3, -1.4), inward=False)
    a, b = camera_pose([0, 1.5, 0], 0.0), camera_pose([0.6, 1.5, 0], 0.0)
    with get_backend("raycast").open(scene_of(wall)) as r:
        da, db_free = r.render(K, a, W, H).depth, r.render(K, b, W, H).depth
    with get_backend("raycast").open(scene_of(wall, pillar)) as r:
        db = r.render(K, b, W, H).depth
    free = covisible_mask(da, K, a, db_free, K, b)
    blocked = covisible_mask(da, K, a, db, K, b)
    # A's wall points, projected into B: hidden exactly where B sees the pillar instead of the wall
    points, _ = unproject_depth(da, K, a)
    uv, _ = project(points, K, b)
    uv = np.nan_to_num(uv, nan=-1.0, posinf=-1.0, neginf=-1.0)  # invalid pixels of A
    u, v = np.rint(uv[..., 0]).astype(int), np.rint(uv[..., 1]).astype(int)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    pillar_in_b = db < 2.0
    hidden = np.zeros_like(free)
    hidden[inside] = pillar_in_b[v[inside], u[inside]]
    assert hidden.sum() > 1000  # the pillar covers a real share of the view
    np.testing.assert_array_equal(blocked, free & ~hidden)


def test_swapping_views_swaps_the_directions():
    a, b = camera_pose([0, 1.5, 0], 0.0), camera_pose([0.3, 1.4, 0.5], 25.0, 5.0, 2.0)
    depth_a = wall_depth(3.0)
    depth_b = np.linspace(2.0, 4.0, W * H, dtype=np.float32).reshape(H, W)
    x = covisibility(depth_a, K, a, depth_b, K, b)
    y = covisibility(depth_b, K, b, depth_a, K, a)
    assert x == (y[1], y[0])


def test_invalid_pixels_are_never_covisible():
    depth = wall_depth(3.0)
    depth[:, : W // 2] = 0.0
    a = camera_pose([0, 1.5, 0], 0.0)
    a_in_a, _ = covisibility(depth, K, a, wall_depth(3.0), K, a)
    assert a_in_a == pytest.approx(0.5, abs=1e-6)


def synthetic_views(location: str, views: int, size: int, seed: int) -> list:
    """Views of a synthetic apartment as ``pairgen render`` places them (floor search, walks)."""
    scene = load_scene("synthetic", location, scene_id="apartment")
    config = ViewConfig(views=views, width=size, height=size)
    with get_backend("raycast").open(scene) as renderer:
        caster = renderer.raycaster()
        floor = floor_from_geometry(scene, caster)
        return list(sample_views(renderer.render, floor, caster, config, np.random.default_rng(seed)))


def test_sampled_views_hold_many_pairs_near_half_overlap():
    """The walks give the filter material: many pairs in 0.4-0.8, not all far apart nor all alike."""
    views = synthetic_views("small/1", views=48, size=64, seed=0)
    pairs = []
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            a, b = views[i], views[j]
            pairs.append(min(covisibility(a.render.depth, a.K, a.cam2world, b.render.depth, b.K, b.cam2world)))
    pairs = np.array(pairs)
    in_band = ((pairs >= 0.4) & (pairs <= 0.8)).sum()
    assert in_band >= len(views)  # at least one good pair per view on average
    assert (pairs > 0.95).mean() < 0.05  # not near-duplicates


@pytest.fixture(scope="module")
def scene_views():
    views = synthetic_views("small/2", views=40, size=96, seed=3)
    depths = np.stack([v.render.depth for v in views])
    return depths, np.stack([v.K for v in views]), np.stack([v.cam2world for v in views])


def test_batch_matches_the_single_pair_reference(scene_views):
    from covisibility.batch import covisibility_pairs

    depths, Ks, poses = scene_views
    result = covisibility_pairs(depths, Ks, poses)
    assert result.candidates == len(result.pairs) == 40 * 39 // 2
    for k in range(0, len(result.pairs), 37):
        a, b = result.pairs[k]
        ref = covisibility(depths[a], Ks[a], poses[a], depths[b], Ks[b], poses[b])
        assert result.a_in_b[k] == pytest.approx(ref[0], abs=1e-6)
        assert result.b_in_a[k] == pytest.approx(ref[1], abs=1e-6)


def test_pruning_keeps_every_pair_in_the_band(scene_views):
    from covisibility.batch import covisibility_pairs

    depths, Ks, poses = scene_views
    exact = covisibility_pairs(depths, Ks, poses)
    band = covisibility_pairs(depths, Ks, poses, min_covis=0.4, max_covis=0.8)
    assert band.bound_pruned + band.coarse_pruned > 0.5 * band.candidates  # most pairs never reach full resolution
    want = {tuple(p) for p, c in zip(exact.pairs, exact.covisibility) if 0.4 <= c <= 0.8}
    got = {tuple(p) for p, c in zip(band.pairs, band.covisibility) if 0.4 <= c <= 0.8}
    assert want and got == want


def test_croco_measure_on_a_wall(scene_views):
    from covisibility.croco import croco_overlap, croco_overlap_pairs

    d = 3.0
    a, b = camera_pose([0, 1.5, 0], 0.0), camera_pose([1.0, 1.5, 0], 0.0)
    width = 2 * d * np.tan(np.radians(30.0))
    ab, ba = croco_overlap(wall_depth(d), K, a, wall_depth(d), K, b)
    assert ab == pytest.approx(1 - (1.0 - 0.05) / width, abs=0.005)  # the 5 cm radius reaches past the edge
    assert ba == pytest.approx(ab, abs=0.005)
    depths, Ks, poses = scene_views
    pairs = np.array([[0, 1], [2, 7]])
    many = croco_overlap_pairs(depths, Ks, poses, pairs)
    for k, (i, j) in enumerate(pairs):
        one = croco_overlap(depths[i], Ks[i], poses[i], depths[j], Ks[j], poses[j])
        assert (many[0][k], many[1][k]) == pytest.approx(one)
