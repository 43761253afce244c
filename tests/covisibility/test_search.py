"""Pair searches: the registry, ``exhaustive`` as today's filter, ``index`` against it on rendered views."""

from __future__ import annotations

import inspect
import tracemalloc

import numpy as np
import pytest

from covisibility import (
    Choice,
    MillimetreDepths,
    PairCovisibility,
    get_measure,
    get_search,
    metres,
    millimetres,
    select_pairs,
)
from covisibility.reprojection import (  # private on purpose: the tests pin these helpers' bit-for-bit equality
    _project,
    _world_points,
    _world_points_take,
    covisibility_pairs,
    directed_covisibility,
    seen_fraction,
)
from covisibility.pixel_rule import covisible_count, covisible_points
from covisibility.search import COARSE_STRIDE, IndexSearch, SurfaceIndex
from manifests.codecs import decode_depth, encode_depth
from renderers.camera import pixel_rays
from tests.rooms import synthetic_views

LO, HI = 0.5, 0.8


def _views(location: str, n: int, size: int, seed: int):
    """Rendered views as the filter reads them: depth through the 16-bit PNG codec."""
    views = synthetic_views(location, views=n, size=size, seed=seed)
    depths = np.stack([decode_depth(encode_depth(v.render.depth)) for v in views])
    return depths, np.stack([v.K for v in views]), np.stack([v.cam2world for v in views])


@pytest.fixture(scope="module")
def scene():
    """A medium apartment, 160 views of 128²: a few hundred pairs in [0.5, 0.8]."""
    return _views("medium/0", 160, 128, seed=1)


@pytest.fixture(scope="module")
def exhaustive(scene):
    depths, Ks, poses = scene
    return get_measure("reprojection").pairs(depths, Ks, poses, min_covis=LO, max_covis=HI)


def _choose(name, scene, *, target=10_000, cap=10_000, seed=0, lo=LO, hi=HI, depths=None, measure="reprojection"):
    d, Ks, poses = scene
    return get_search(name).choose(d if depths is None else depths, Ks, poses, measure=measure, min_covis=lo,
                                   max_covis=hi, target=target, max_per_view=cap, rng=np.random.default_rng(seed))


def _keys(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in pairs}


def _check_choice(choice: Choice, n: int, *, target: int, cap: int, lo=LO, hi=HI) -> None:
    r, chosen = choice.result, choice.chosen
    assert isinstance(r, PairCovisibility) and chosen.dtype == np.int64 and len(chosen) <= target
    assert r.computed == len(r.pairs) <= r.candidates
    assert len(_keys(r.pairs)) == len(r.pairs) and (len(r.pairs) == 0 or r.pairs.max() < n)
    c = r.covisibility[chosen]
    assert ((c >= lo) & (c <= hi)).all()
    keys = [tuple(p) for p in r.pairs[chosen]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert len(chosen) == 0 or np.bincount(r.pairs[chosen].ravel(), minlength=n).max() <= cap
    assert all(isinstance(v, int) for v in r.stats.values())


# --------------------------------------------------------------------------- registry and interface


def test_index_supports_reprojection_only(scene):
    with pytest.raises(ValueError, match="'index'.*'croco'"):
        _choose("index", scene, measure="croco")
    with pytest.raises(ValueError, match="unknown covisibility measure 'colmap'"):
        _choose("index", scene, measure="colmap")
    with pytest.raises(ValueError, match="at least 1"):
        _choose("index", scene, target=0)


# --------------------------------------------------------------------------- exhaustive is today's filter


def test_exhaustive_is_the_measure_then_select_pairs_bit_for_bit(scene, exhaustive):
    depths = scene[0]
    want = select_pairs(exhaustive, min_covis=LO, max_covis=HI, target=50, max_per_view=3,
                        rng=np.random.default_rng(7))  # fmt: skip
    for d in (depths, millimetres(depths)):  # float32 metres, or uint16 millimetres decoded the same way
        got = _choose("exhaustive", scene, target=50, cap=3, seed=7, depths=d)
        assert got.result.pairs.tobytes() == exhaustive.pairs.tobytes()
        assert got.result.covis_1in2.tobytes() == exhaustive.covis_1in2.tobytes()
        assert got.result.covis_2in1.tobytes() == exhaustive.covis_2in1.tobytes()
        assert (got.result.candidates, got.result.computed, got.result.stats) == (
            exhaustive.candidates, exhaustive.computed, exhaustive.stats)
        np.testing.assert_array_equal(got.chosen, want)
    few = tuple(x[:10] for x in scene)
    croco = _choose("exhaustive", few, target=5, cap=2, measure="croco")  # any measure
    _check_choice(croco, 10, target=5, cap=2)


# --------------------------------------------------------------------------- the same numbers as the batch


def test_millimetres_are_the_codec_exactly(scene):
    depths, _, _ = scene
    mm = millimetres(depths)
    assert mm.dtype == np.uint16 and metres(mm).tobytes() == depths.tobytes()
    assert MillimetreDepths(mm)[3].tobytes() == depths[3].tobytes()
    assert MillimetreDepths(mm)[np.array([5, 1])].tobytes() == depths[[5, 1]].tobytes()
    with pytest.raises(ValueError, match="whole number of millimetres"):
        millimetres(depths + np.float32(0.0004))
    with pytest.raises(ValueError, match="float32"):
        millimetres(depths.astype(np.float64))


def test_the_fast_kernel_counts_what_the_mask_counts(scene):
    depths, Ks, poses = scene
    rays = pixel_rays(Ks[0], 128, 128).astype(np.float32)
    for a in (0, 7, 42):
        for step in (1, 2, 4):
            assert _world_points_take(depths[a], rays, poses[a], step).tobytes() == \
                _world_points(depths[a], rays, poses[a], step).tobytes()  # fmt: skip
        pts = _world_points(depths[a], rays, poses[a], 1)
        b = np.array([a + 1, a + 2, a + 5])
        projected = list(_project(pts, Ks[b], poses[b]))
        for j, (u, v, z) in enumerate(projected):  # seen_fraction's own projection, written out
            R, t = poses[b, :3, :3].astype(np.float32), poses[b, :3, 3].astype(np.float32)
            KR = Ks[b].astype(np.float32) @ R.transpose(0, 2, 1)
            pix = (pts @ KR.transpose(2, 0, 1).reshape(3, -1)).reshape(len(pts), len(b), 3)
            pix -= (KR @ t[:, :, None])[None, :, :, 0]
            pix = pix.transpose(1, 0, 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / pix[..., 2]
                want = (pix[..., 0] * inv, pix[..., 1] * inv, pix[..., 2])
            assert all(np.array_equal(x, w[j]) and x.dtype == np.float32 for x, w in zip((u, v, z), want))
        counts = [covisible_count(u, v, z, depths[j]) for (u, v, z), j in zip(projected, b)]
        assert np.array_equal(np.array(counts) / depths[0].size, seen_fraction(pts, depths[0].size, depths[b], Ks[b],
                                                                                poses[b]))  # fmt: skip
    # ties on pixel borders (round half up), outside, NaN and inf, invalid depth in B
    u = np.array([[-0.5, 0.5, 1.5, 3.49, 3.5, np.nan, np.inf, 2.0]])
    v, z = np.zeros_like(u), np.full_like(u, 2.0)
    depth = np.full((1, 4, 4), 2.0, np.float32)
    depth[0, 0, 1] = 0.0
    assert covisible_count(u[0], v[0], z[0], depth[0]) == covisible_points(u, v, z, depth).sum() == 4


def test_directed_values_equal_the_batch_bit_for_bit(scene, exhaustive):
    depths, Ks, poses = scene
    pairs = exhaustive.pairs[::3]
    for d in (depths, MillimetreDepths(millimetres(depths))):
        ab = directed_covisibility(pairs[:, 0], pairs[:, 1], d, Ks, poses)
        ba = directed_covisibility(pairs[:, 1], pairs[:, 0], d, Ks, poses, chunk=5)
        assert ab.astype(np.float32).tobytes() == exhaustive.covis_1in2[::3].tobytes()
        assert ba.astype(np.float32).tobytes() == exhaustive.covis_2in1[::3].tobytes()
    # the coarse pass too (its default stride): what covisibility_pairs compares against its margin
    assert inspect.signature(covisibility_pairs).parameters["stride"].default == COARSE_STRIDE


# --------------------------------------------------------------------------- index against exhaustive


def test_index_keeps_only_exact_in_band_pairs_with_the_batch_values(scene, exhaustive):
    depths, Ks, poses = scene
    n = len(depths)
    for target, cap in ((10_000, 10_000), (60, 2), (1, 1)):
        choice = _choose("index", scene, target=target, cap=cap, depths=millimetres(depths))
        _check_choice(choice, n, target=target, cap=cap)
        r = choice.result
        assert r.candidates < n * (n - 1) // 2
        # every computed pair carries covisibility_pairs' exact values, bit for bit
        ref = covisibility_pairs(depths, Ks, poses, pairs=r.pairs)
        assert r.covis_1in2.tobytes() == ref.covis_1in2.tobytes()
        assert r.covis_2in1.tobytes() == ref.covis_2in1.tobytes()
    assert len(choice.chosen) == 1


def test_index_finds_what_exhaustive_finds_when_the_band_is_short_of_the_target(scene, exhaustive):
    depths, _, _ = scene
    want = _keys(exhaustive.pairs[exhaustive.band(LO, HI)])
    assert len(want) > 200
    choice = _choose("index", scene)  # target and cap far above what the scene holds: the whole band
    r = choice.result
    got = _keys(r.pairs[r.band(LO, HI)])
    assert len(got & want) >= 0.95 * len(want)
    assert len(choice.chosen) == len(got)  # nothing binds: every in-band pair found is kept
    n_all = len(depths) * (len(depths) - 1) // 2
    assert r.candidates < 0.25 * n_all and r.computed < 1.5 * len(want)
    # min_covis under the margin: pairs sharing no cell may be in the band, so all but the clearly too close
    low = _choose("index", scene, lo=0.1, hi=0.4)
    ex_low = get_measure("reprojection").pairs(*scene, min_covis=0.1, max_covis=0.4)
    want_low = _keys(ex_low.pairs[ex_low.band(0.1, 0.4)])
    assert low.result.candidates > 0.9 * n_all
    assert len(_keys(low.result.pairs[low.result.band(0.1, 0.4)]) & want_low) >= 0.99 * len(want_low)


def test_index_stops_at_the_target(scene, exhaustive):
    choice = _choose("index", scene, target=40, cap=10)
    r = choice.result
    assert len(choice.chosen) == 40
    assert r.computed < 0.5 * len(exhaustive.band(LO, HI))  # stopped well before the band ran out
    assert r.stats["visited"] < r.candidates


def test_index_histogram_is_no_narrower_than_exhaustive(scene, exhaustive):
    """Kept pairs are a uniform draw among the in-band candidates: the same spread as exhaustive's draw."""
    idx, exh = [], []
    for seed in range(6):
        c = _choose("index", scene, target=80, cap=4, seed=seed)
        idx.append(c.result.covisibility[c.chosen])
        e = _choose("exhaustive", scene, target=80, cap=4, seed=seed)
        exh.append(e.result.covisibility[e.chosen])
    idx, exh = np.concatenate(idx), np.concatenate(exh)
    assert len(idx) == len(exh) == 6 * 80
    span = [float(np.subtract(*np.quantile(c, [0.95, 0.05]))) for c in (idx, exh)]
    assert idx.std() >= 0.93 * exh.std() and span[0] >= 0.93 * span[1]
    assert abs(idx.mean() - exh.mean()) < 0.02
    assert idx.min() < LO + 0.02 and idx.max() > HI - 0.05  # both ends of the band are reached


@pytest.mark.parametrize("target, cap", [(10_000, 10_000), (120, 3), (40, 10)])
def test_index_keeps_what_the_greedy_walk_over_its_candidates_keeps(scene, target, cap):
    """Batches, waits and one-way exits never change the choice: select_pairs' rule, one candidate at a time."""
    depths, Ks, poses = scene
    n = len(depths)
    cand = SurfaceIndex.build(depths, Ks, poses).candidates(LO, HI)[0]
    order = cand[np.random.default_rng(3).permutation(len(cand))]
    exact = covisibility_pairs(depths, Ks, poses, pairs=order)  # every candidate, every pixel, in that order
    uses, want = np.zeros(n, int), []
    for (a, b), c in zip(order.tolist(), exact.covisibility.tolist()):
        if LO <= c <= HI and uses[a] < cap and uses[b] < cap:
            uses[a] += 1
            uses[b] += 1
            want.append((a, b))
            if len(want) == target:
                break
    choice = _choose("index", scene, target=target, cap=cap, seed=3)
    assert _keys(choice.result.pairs[choice.chosen]) == set(want)
    if target == 120:
        assert choice.result.stats["waited"] > 0 and choice.result.stats["one_way_pruned"] > 0


def test_index_is_deterministic_from_the_rng(scene):
    a = _choose("index", scene, target=50, cap=3, seed=11)
    b = _choose("index", scene, target=50, cap=3, seed=11, depths=millimetres(scene[0]))
    c = _choose("index", scene, target=50, cap=3, seed=12)
    assert a.result.pairs.tobytes() == b.result.pairs.tobytes() and np.array_equal(a.chosen, b.chosen)
    assert a.result.stats == b.result.stats
    assert not np.array_equal(a.result.pairs[a.chosen], c.result.pairs[c.chosen])


def test_index_on_nothing_to_find():
    depths = np.zeros((3, 32, 32), np.uint16)  # no valid depth at all
    Ks = np.stack([np.array([[30.0, 0, 15.5], [0, 30.0, 15.5], [0, 0, 1]])] * 3)
    poses = np.stack([np.eye(4)] * 3)
    choice = get_search("index").choose(depths, Ks, poses, measure="reprojection", min_covis=LO, max_covis=HI,
                                        target=5, max_per_view=2, rng=np.random.default_rng(0))  # fmt: skip
    assert choice.result.candidates == choice.result.computed == 0 and choice.chosen.shape == (0,)
    one = get_search("index").choose(depths[:1], Ks[:1], poses[:1], measure="reprojection", min_covis=0.0,
                                     max_covis=1.0, target=5, max_per_view=2, rng=np.random.default_rng(0))
    assert len(one.result.pairs) == 0 and one.chosen.size == 0


def test_the_index_estimate_tracks_the_exact_values(scene, exhaustive):
    depths, Ks, poses = scene
    index = SurfaceIndex.build(millimetres(depths), Ks, poses)
    assert index.pairs.dtype == np.int64 and (index.pairs[:, 0] < index.pairs[:, 1]).all()
    keys = [tuple(p) for p in index.pairs]
    assert keys == sorted(keys)
    est = dict(zip(keys, index.estimate.tolist()))
    band = exhaustive.band(LO, HI)
    e = np.array([est.get(tuple(p), 0.0) for p in exhaustive.pairs[band]])
    c = exhaustive.covisibility[band]
    assert abs(float(np.mean(e - c))) < 0.08 and float(np.std(e - c)) < 0.1


def test_index_holds_no_float32_copy_of_the_depths(monkeypatch):
    """uint16 in: the search decodes a few views at a time, never the (N, H, W) float32 stack."""
    depths, Ks, poses = _views("small/1", 200, 256, seed=4)
    mm = millimetres(depths)
    stack = depths.nbytes
    del depths
    decoded = []
    getitem = MillimetreDepths.__getitem__
    monkeypatch.setattr(MillimetreDepths, "__getitem__", lambda self, i: decoded.append(np.size(i)) or getitem(self, i))
    tracemalloc.start()
    try:
        choice = IndexSearch().choose(mm, Ks, poses, measure="reprojection", min_covis=LO, max_covis=HI,
                                      target=10_000, max_per_view=10_000, rng=np.random.default_rng(0))  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert choice.result.computed > 300 and max(decoded) <= IndexSearch.chunk
    assert peak < 0.6 * stack, (peak, stack)  # the index and one chunk of samples: about 0.5 here, 0.2 at N = 2000
