"""Samples of N views (covisibility/samples.py): every shape's rules hold, exactly, on views as render places them."""

from __future__ import annotations

import numpy as np
import pytest

from covisibility import MillimetreDepths, get_measure
from covisibility.measures import combine_directions
from covisibility.reprojection import covisibility_pairs
from covisibility.samples import grow_samples
from manifests.codecs import depth_to_mm
from tests.rooms import synthetic_views

LO, HI, CAP = 0.3, 0.8, 0.3


@pytest.fixture(scope="module")
def scene():
    """40 views of a small apartment at 64 px, depth as stored (whole millimetres)."""
    views = synthetic_views("small/1", views=40, size=64, seed=3)
    mm = np.stack([depth_to_mm(v.render.depth) for v in views])
    return mm, np.stack([v.K for v in views]), np.stack([v.cam2world for v in views])


def grow(scene, shape, n, target=12, rule="min", cap=CAP, seed=0, max_per_view=6):
    mm, Ks, poses = scene
    return grow_samples(MillimetreDepths(mm), Ks, poses, shape=shape, views=n, min_covis=LO, max_covis=HI, cap=cap,
                        rule=rule, target=target, max_per_view=max_per_view, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("shape, n, rule", [("pair", 2, "min"), ("star", 5, "min"), ("chain", 4, "min"),
                                           ("tree", 5, "min"), ("star", 5, "mean"), ("chain", 4, "mean"),
                                           ("tree", 4, "mean")])  # fmt: skip
def test_every_sample_keeps_its_shapes_rules_exactly(scene, shape, n, rule):
    mm, Ks, poses = scene
    grown = grow(scene, shape, n, rule=rule)
    assert len(grown.samples) >= 3, f"only {len(grown.samples)} {shape}s"
    uses = np.zeros(len(mm), int)
    assert len({frozenset(m.tolist()) for m, _ in grown.samples}) == len(grown.samples)  # no view set twice
    for (members, parents), matrix in zip(grown.samples, grown.matrices):
        assert len(members) == n == len(set(members.tolist())) and matrix.shape == (n, n)
        uses[members] += 1
        # the stored matrix is the measure's exact values, recomputed here by another path (every pair, no pruning)
        metres = mm[members].astype(np.float32) / np.float32(1000)
        again = covisibility_pairs(metres, Ks[members], poses[members])
        for (a, b), ab, ba in zip(again.pairs, again.covis_1in2, again.covis_2in1):
            assert matrix[a, b] == ab and matrix[b, a] == ba
        np.testing.assert_array_equal(np.diag(matrix), (mm[members] > 0).mean(axis=(1, 2)).astype(np.float32))
        pair = combine_directions(matrix, matrix.T, rule)  # (n, n): each pair's covisibility by the rule
        assert parents[0] == -1 and all(0 <= p < k for k, p in enumerate(parents) if k)
        if shape in ("star", "pair"):
            assert (parents[1:] == 0).all()
        if shape == "chain":
            assert (parents[1:] == np.arange(n - 1)).all()
        for k in range(1, n):
            assert LO <= pair[k, parents[k]] <= HI  # the edge
            for j in range(k):
                if j != parents[k]:
                    assert pair[k, j] <= HI if shape == "star" else pair[k, j] < CAP  # every non-edge under its bound
    assert uses.max() <= 6  # max_per_view


def test_the_same_seed_gives_the_same_samples_and_another_seed_others(scene):
    a, b, c = grow(scene, "tree", 5), grow(scene, "tree", 5), grow(scene, "tree", 5, seed=1)
    assert [m.tolist() for m, _ in a.samples] == [m.tolist() for m, _ in b.samples]
    assert [m.tolist() for m, _ in a.samples] != [m.tolist() for m, _ in c.samples]
    assert all(np.array_equal(x, y) for x, y in zip(a.matrices, b.matrices))


def test_cost_follows_the_samples_kept(scene):
    """Exact computations: those of the samples tried, far fewer than all pairs of the scene in both directions."""
    grown = grow(scene, "star", 5, target=4)
    n = len(scene[0])
    assert len(grown.samples) == 4 and grown.exact < n * (n - 1)
    assert grown.candidates < n * (n - 1) // 2  # the index proposes edges: not every pair


def test_any_measure_gives_the_matrix(scene):
    mm, Ks, poses = scene
    grown = grow_samples(MillimetreDepths(mm), Ks, poses, shape="star", views=3, measure="croco", min_covis=LO,
                         max_covis=HI, target=2, max_per_view=4, rng=np.random.default_rng(0))  # fmt: skip
    members, _ = grown.samples[0]
    exact = get_measure("croco").exact(mm[members].astype(np.float32) / np.float32(1000), Ks[members],
                                       poses[members], np.array([[0, 1], [0, 2], [1, 2]]))  # fmt: skip
    m = grown.matrices[0]
    np.testing.assert_array_equal([m[0, 1], m[0, 2], m[1, 2]], exact.covis_1in2)


def test_impossible_constraints_give_no_sample_and_bad_arguments_refuse(scene):
    grown = grow(scene, "star", 30)  # 29 views each overlapping one reference, none another much: not here
    assert grown.samples == [] and grown.tried > 0
    with pytest.raises(ValueError, match="a pair has 2 views"):
        grow(scene, "pair", 3)
    with pytest.raises(ValueError, match="unknown shape"):
        grow(scene, "ring", 3)
