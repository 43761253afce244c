"""Covisibility by depth reprojection on geometry with known answers, the measures' contract, and pair selection."""

from __future__ import annotations

import numpy as np
import pytest

from covisibility import (
    PairCovisibility,
    all_pairs,
    get_measure,
    select_pairs,
)
from covisibility.reprojection import covisibility_pairs
from covisibility.croco_overlap import croco_overlap, croco_overlap_pairs
from covisibility.pixel_rule import covisible_points, in_image, nearest_pixel
from covisibility.reference import covisibility, covisible_mask
from renderers.backends import get_backend
from renderers.camera import intrinsics_from_hfov, project, unproject_depth
from renderers.viewpoints import camera_pose
from tests.rooms import box_faces, scene_of, synthetic_views

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
    u, v = np.floor(uv[..., 0] + 0.5).astype(int), np.floor(uv[..., 1] + 0.5).astype(int)  # round half up
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
    """Float32 batch and float64 reference share the per-pixel kernel: the same pixel counts."""
    depths, Ks, poses = scene_views
    result = covisibility_pairs(depths, Ks, poses)
    assert result.candidates == len(result.pairs) == 40 * 39 // 2
    for k in range(0, len(result.pairs), 37):
        a, b = result.pairs[k]
        ref = covisibility(depths[a], Ks[a], poses[a], depths[b], Ks[b], poses[b])
        assert (result.covis_1in2[k], result.covis_2in1[k]) == (np.float32(ref[0]), np.float32(ref[1]))
        mask = covisible_mask(depths[a], Ks[a], poses[a], depths[b], Ks[b], poses[b])
        assert np.count_nonzero(mask) == round(float(result.covis_1in2[k]) * depths[a].size)


def test_the_rounding_rule_is_round_half_up():
    """Pixel i covers [i - 0.5, i + 0.5): ties go up (np.rint would send 0.5 to 0 and 2.5 to 2)."""
    x = np.array([-0.5, 0.49, 0.5, 1.5, 2.5, 3.49])
    np.testing.assert_array_equal(nearest_pixel(x), [0, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(nearest_pixel(x.astype(np.float32)), [0, 0, 1, 2, 3, 3])
    u = np.array([-0.51, -0.5, 3.49, 3.5, np.nan, np.inf])  # a 4 x 4 image
    z = np.ones_like(u)
    np.testing.assert_array_equal(in_image(u, np.zeros_like(u), z, 4, 4), [False, True, True, False, False, False])
    assert not in_image(np.zeros(1), np.zeros(1), np.zeros(1), 4, 4)[0]  # not in front of the camera
    depth = np.full((1, 4, 4), 2.0, np.float32)
    depth[0, 0, 1] = 5.0  # pixel (u=1, v=0): a far surface
    seen = covisible_points(np.array([[0.5, 0.49, 1.2]]), np.zeros((1, 3)), np.full((1, 3), 2.0), depth)
    np.testing.assert_array_equal(seen, [[False, True, False]])  # 0.5 reads pixel 1, whose depth disagrees


def test_one_kernel_for_the_reference_and_the_batch_at_a_tie():
    """Points exactly on pixel boundaries read the same pixel of B in the reference and the batch."""
    d = 2.0
    Kc = np.array([[128.0, 0, 1.5], [0, 128.0, 1.5], [0, 0, 1]])  # 4 x 4 image; powers of two: exact ties
    a, b = np.eye(4), np.eye(4)
    b[0, 3] = 1.0 / 128  # B half a pixel to the right: A's column u lands at u - 0.5 in B, exactly
    depths = np.full((2, 4, 4), d, np.float32)
    depths[1, :, 1] = 0.0  # B sees nothing in its column 1
    mask = covisible_mask(depths[0], Kc, a, depths[1], Kc, b)
    # round half up: A's columns 0..3 read B's 0, 1, 2, 3 (np.rint would read 0, 0, 2, 2 and see all four)
    np.testing.assert_array_equal(mask, np.tile([True, False, True, True], (4, 1)))
    result = covisibility_pairs(depths, np.stack([Kc, Kc]), np.stack([a, b]))
    assert result.covis_1in2[0] == mask.mean() == 0.75


@pytest.mark.parametrize("name", ["reprojection", "croco"])
def test_every_measure_keeps_the_contract(scene_views, name):
    depths, Ks, poses = scene_views
    result = get_measure(name).pairs(depths, Ks, poses, min_covis=0.4, max_covis=0.8)
    assert isinstance(result, PairCovisibility)
    p = len(result.pairs)
    assert p > 0 and result.pairs.shape == (p, 2) and result.pairs.dtype == np.int64
    assert (result.pairs[:, 0] < result.pairs[:, 1]).all() and result.pairs.max() < len(depths)
    assert len({tuple(x) for x in result.pairs}) == p
    for c in (result.covis_1in2, result.covis_2in1, result.covisibility):
        assert c.shape == (p,) and c.dtype == np.float32
        assert ((c >= 0) & (c <= 1)).all()
    np.testing.assert_array_equal(result.covisibility, np.minimum(result.covis_1in2, result.covis_2in1))
    assert result.computed == p <= result.candidates == 40 * 39 // 2
    assert all(isinstance(v, int) for v in result.stats.values())
    assert get_measure(name).description and "\n" not in get_measure(name).description


@pytest.mark.parametrize("name", ["reprojection", "croco"])
def test_every_measure_measures_given_pairs_exactly(scene_views, name):
    """``exact``: the given pairs only, in their order, the values ``pairs`` gives them; millimetres read alike."""
    from covisibility import MillimetreDepths
    from manifests.codecs import depth_to_mm, metres

    depths, Ks, poses = scene_views
    mm = np.stack([depth_to_mm(d) for d in depths])
    depths = metres(mm)  # as stored: whole millimetres
    measure = get_measure(name)
    every = measure.pairs(depths, Ks, poses, min_covis=0.0, max_covis=1.0)  # every pair, every pixel
    order = np.random.default_rng(0).permutation(len(every.pairs))[:25]
    given = every.pairs[order]
    for d in (depths, MillimetreDepths(mm)):
        result = measure.exact(d, Ks, poses, given)
        assert isinstance(result, PairCovisibility) and result.candidates == result.computed == len(given)
        np.testing.assert_array_equal(result.pairs, given)
        np.testing.assert_array_equal(result.covis_1in2, every.covis_1in2[order])
        np.testing.assert_array_equal(result.covis_2in1, every.covis_2in1[order])
    assert len(measure.exact(depths, Ks, poses, np.zeros((0, 2), np.int64)).pairs) == 0


def test_the_result_type_refuses_broken_contracts():
    pairs = np.array([[0, 1], [1, 2]], np.int64)
    c = np.array([0.5, 0.6], np.float32)
    PairCovisibility(pairs, c, c, candidates=3, computed=2)
    for bad in [
        dict(pairs=pairs[:, ::-1].copy()),  # a > b
        dict(covis_1in2=c.astype(np.float64)),
        dict(covis_2in1=c[:1]),
        dict(computed=1),
        dict(candidates=1),
        dict(pairs=pairs.astype(np.int32)),
    ]:
        with pytest.raises(ValueError):
            PairCovisibility(**{"pairs": pairs, "covis_1in2": c, "covis_2in1": c, "candidates": 3, "computed": 2,
                                **bad})  # fmt: skip


def test_pruning_keeps_every_pair_in_the_band(scene_views):
    depths, Ks, poses = scene_views
    measure = get_measure("reprojection")
    exact = measure.pairs(depths, Ks, poses, min_covis=0.0, max_covis=1.0)
    band = measure.pairs(depths, Ks, poses, min_covis=0.4, max_covis=0.8)
    assert exact.stats == {"bound_pruned": 0, "coarse_pruned": 0} and exact.computed == exact.candidates
    assert band.stats["bound_pruned"] + band.stats["coarse_pruned"] == band.candidates - band.computed
    assert band.candidates - band.computed > 0.5 * band.candidates  # most pairs never reach full resolution
    want = {tuple(p) for p, c in zip(exact.pairs, exact.covisibility) if 0.4 <= c <= 0.8}
    got = {tuple(p) for p, c in zip(band.pairs, band.covisibility) if 0.4 <= c <= 0.8}
    assert want and got == want
    # the pairs it kept carry the unpruned values, bit for bit
    index = {tuple(p): k for k, p in enumerate(exact.pairs)}
    rows = np.array([index[tuple(p)] for p in band.pairs])
    assert band.covis_1in2.tobytes() == exact.covis_1in2[rows].tobytes()
    assert band.covis_2in1.tobytes() == exact.covis_2in1[rows].tobytes()
    # and given candidate pairs, the same values
    some = covisibility_pairs(depths, Ks, poses, pairs=exact.pairs[::5])
    assert some.covis_1in2.tobytes() == exact.covis_1in2[::5].tobytes()


def _greedy(pairs, c, lo, hi, target, cap, rng):
    """The filter's original choice, spelled out as it was, as the oracle of select_pairs."""
    band = np.flatnonzero((c >= lo) & (c <= hi))
    chosen, uses = [], np.zeros(pairs.max() + 1, np.int64)
    for k in rng.permutation(band):
        a, b = pairs[k]
        if uses[a] < cap and uses[b] < cap:
            uses[a] += 1
            uses[b] += 1
            chosen.append(k)
            if len(chosen) == target:
                break
    return np.array(sorted(chosen, key=lambda k: tuple(pairs[k])), np.int64)


@pytest.mark.parametrize("target, cap", [(1000, 10), (20, 3), (7, 1), (1, 1)])
def test_select_pairs_honours_band_target_and_cap(target, cap):
    rng = np.random.default_rng(5)
    pairs = all_pairs(30)
    ab = rng.random(len(pairs)).astype(np.float32)
    ba = np.clip(ab + rng.normal(0, 0.1, len(pairs)), 0, 1).astype(np.float32)
    result = PairCovisibility(pairs, ab, ba, candidates=len(pairs), computed=len(pairs))
    args = dict(min_covis=0.4, max_covis=0.8, target=target, max_per_view=cap)
    chosen = select_pairs(result, **args, rng=np.random.default_rng(11))
    assert chosen.dtype == np.int64 and len(chosen) <= target
    c = result.covisibility[chosen]
    assert ((c >= 0.4) & (c <= 0.8)).all()
    assert np.bincount(pairs[chosen].ravel(), minlength=30).max() <= cap
    keys = [tuple(p) for p in pairs[chosen]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    np.testing.assert_array_equal(chosen, select_pairs(result, **args, rng=np.random.default_rng(11)))
    np.testing.assert_array_equal(chosen, _greedy(pairs, result.covisibility, 0.4, 0.8, target, cap,
                                                  np.random.default_rng(11)))  # fmt: skip
    if target == 1000 and cap == 10:
        assert len(chosen) < len(result.band(0.4, 0.8))  # the cap binds
        other = select_pairs(result, **args, rng=np.random.default_rng(12))
        assert not np.array_equal(chosen, other)
    if target <= 7:
        assert len(chosen) == target


def test_select_pairs_on_nothing_in_the_band():
    pairs = all_pairs(4)
    c = np.full(len(pairs), 0.95, np.float32)
    result = PairCovisibility(pairs, c, c, candidates=6, computed=6)
    chosen = select_pairs(result, min_covis=0.4, max_covis=0.8, target=10, max_per_view=2, rng=np.random.default_rng())
    assert chosen.shape == (0,) and chosen.dtype == np.int64
    empty = PairCovisibility(np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), 0, 0)
    chosen = select_pairs(empty, min_covis=0, max_covis=1, target=1, max_per_view=1, rng=np.random.default_rng())
    assert chosen.size == 0


def test_croco_measure_on_a_wall(scene_views):
    d = 3.0
    a, b = camera_pose([0, 1.5, 0], 0.0), camera_pose([1.0, 1.5, 0], 0.0)
    width = 2 * d * np.tan(np.radians(30.0))
    ab, ba = croco_overlap(wall_depth(d), K, a, wall_depth(d), K, b)
    assert ab == pytest.approx(1 - (1.0 - 0.05) / width, abs=0.005)  # the 5 cm radius reaches past the edge
    assert ba == pytest.approx(ab, abs=0.005)
    depths, Ks, poses = scene_views
    pairs = np.array([[0, 1], [2, 7]])
    many = croco_overlap_pairs(depths, Ks, poses, pairs)
    assert many.candidates == many.computed == 2
    for k, (i, j) in enumerate(pairs):
        one = croco_overlap(depths[i], Ks[i], poses[i], depths[j], Ks[j], poses[j])
        assert (many.covis_1in2[k], many.covis_2in1[k]) == (np.float32(one[0]), np.float32(one[1]))
