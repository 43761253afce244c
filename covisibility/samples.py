"""Samples of N views with controlled overlap, grown on the index's candidate graph.

A sample is N views of one scene. An *edge* is two views whose covisibility
(the pair rule of both directions: :func:`~covisibility.measures.combine_directions`)
lies in ``[min_covis, max_covis]``; the shapes (docs/design.md, "Samples of
N views"):

``star``
    View 1 (the reference) has an edge to every other view; the others
    overlap each other by at most ``max_covis`` (no near-duplicates). The
    Habitat stars DUSt3R, MASt3R and Fast3R train on.
``chain``
    View k has an edge to view k-1 and overlaps every earlier view by less
    than ``cap`` (MV-DUSt3R+'s ``chain``, with ``cap = min_covis`` there).
``tree``
    View k has an edge to one earlier view, its parent, and overlaps every
    other earlier view by less than ``cap`` (MV-DUSt3R+'s ``tree``).
``pair``
    Two views with an edge.

How a sample grows: the candidate edges are the :class:`~covisibility.search.SurfaceIndex`
pairs estimated in the band (widened by its margins), never all pairs. Starts
(a star's reference, a chain's or tree's root) are visited in a seeded
order; each new view is drawn, in a seeded order, among the candidate
neighbours of the view it must join (the reference, the previous view, or a
parent drawn among the members), and kept when the measure's exact values
(:meth:`covisibility.Measure.exact`, every pixel, both directions) put its
edge in the band and every other pair of the sample under its bound.
Candidates whose estimate against a member is far above that bound are
passed over before any exact computation. Exact values are cached by pair, so
a kept sample's full directed N x N matrix is what its checks computed. A
start that cannot be completed is dropped (no backtracking), and so is a
sample of views another sample already holds; views join at most
``max_per_view`` samples; the search stops at ``target`` samples or
when a pass over the starts adds none. Its cost follows the samples tried,
not the number of pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from covisibility.measures import combine_directions, get_measure
from covisibility.search import HIGH_MARGIN, SurfaceIndex, depth_source
from manifests.samples import SHAPES  # the shapes the format names

__all__ = ["SHAPES", "Grown", "SampleSearch", "grow_samples"]

TRIES_PER_STEP = 24  # candidates tried for one new view before the start is given up


@dataclass
class Grown:
    """What the search found in one scene.

    ``samples`` holds ``(views (N,) int64, parents (N,) int32)`` in their
    order (view indices into the scene's arrays; ``parents[k]`` a position in
    ``views``, -1 for view 1); ``matrix`` the directed (N, N) float32
    covisibility of each (``matrix[i, j]``: share of view i seen in view j;
    the diagonal the view's valid fraction).
    """

    samples: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    candidates: int = 0  # candidate edges from the index
    exact: int = 0  # directed exact computations
    tried: int = 0  # starts tried


class SampleSearch:
    """One scene's sample search (the module docstring); :meth:`run` returns a :class:`Grown`."""

    def __init__(self, depths, Ks: np.ndarray, poses: np.ndarray, *, shape: str, views: int, measure: str,
                 min_covis: float, max_covis: float, cap: float, rule: str, max_per_view: int,
                 rng: np.random.Generator, index: SurfaceIndex | None = None) -> None:  # fmt: skip
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
        if views < 2 or (shape == "pair" and views != 2):
            raise ValueError(f"a {shape} has {'2' if shape == 'pair' else 'at least 2'} views, not {views}")
        self.depths = depth_source(depths)
        self.Ks, self.poses = np.asarray(Ks), np.asarray(poses)
        self.n_views = self.depths.shape[0]
        self.shape, self.size, self.rule = shape, views, rule
        self.lo, self.hi, self.cap = float(min_covis), float(max_covis), float(cap)
        self.measure = get_measure(measure)
        self.max_per_view, self.rng = max_per_view, rng
        index = index if index is not None else SurfaceIndex.build(self.depths, self.Ks, self.poses)
        pairs, ab, ba = index.candidates(self.lo, self.hi)
        self.neighbours: list[list[int]] = [[] for _ in range(self.n_views)]
        for a, b in pairs.tolist():
            self.neighbours[a].append(b)
            self.neighbours[b].append(a)
        self.estimates = {(int(a), int(b)): float(e) for (a, b), e in
                          zip(index.pairs.tolist(), combine_directions(index.estimate_ab, index.estimate_ba, rule))}
        self.uses = np.zeros(self.n_views, np.int64)
        self.seen: set[frozenset[int]] = set()  # the view sets kept: never twice
        self.cache: dict[tuple[int, int], tuple[float, float]] = {}  # exact values by pair
        self.work: dict = {}  # the measure's per-view work, kept for the scene (Measure.exact's cache)
        self.grown = Grown(candidates=len(pairs))

    # -- exact values ------------------------------------------------------------------

    def directed(self, a: int, b: int) -> tuple[float, float]:
        """``(covis(a in b), covis(b in a))`` from the cache (computed by :meth:`compute`)."""
        ab, ba = self.cache[(min(a, b), max(a, b))]
        return (ab, ba) if a < b else (ba, ab)

    def compute(self, pairs: list[tuple[int, int]]) -> None:
        """Exact values of the pairs not cached yet, in one call to the measure."""
        todo = sorted({(min(a, b), max(a, b)) for a, b in pairs} - self.cache.keys())
        if not todo:
            return
        result = self.measure.exact(self.depths, self.Ks, self.poses, np.array(todo, np.int64), cache=self.work)
        self.grown.exact += 2 * len(todo)
        for (a, b), ab, ba in zip(todo, result.covis_1in2.tolist(), result.covis_2in1.tolist()):
            self.cache[(a, b)] = (ab, ba)

    def value(self, a: int, b: int) -> float:
        """The pair's covisibility by the rule (float32, as the measure's values)."""
        ab, ba = self.directed(a, b)
        return float(combine_directions(np.float32(ab), np.float32(ba), self.rule))

    def estimate(self, a: int, b: int) -> float:
        return self.estimates.get((min(a, b), max(a, b)), 0.0)

    # -- growing -----------------------------------------------------------------------

    @property
    def bound(self) -> float:
        """What a pair that is not an edge stays under: ``max_covis`` in a star (at most), ``cap`` otherwise (below)."""
        return self.hi if self.shape in ("star", "pair") else self.cap

    def fits(self, members: list[int], join: int, v: int) -> bool:
        """Whether ``v`` may join ``members`` with its edge to ``members[join]``: exact, after a cheap estimate."""
        others = [k for k in range(len(members)) if k != join]
        for k in others:  # an estimate far above the bound: not worth an exact computation
            if self.estimate(members[k], v) > self.bound + HIGH_MARGIN:
                return False
        self.compute([(members[join], v)])
        if not self.lo <= self.value(members[join], v) <= self.hi:
            return False
        self.compute([(members[k], v) for k in others])
        for k in others:
            c = self.value(members[k], v)
            if (c > self.bound) if self.shape in ("star", "pair") else (c >= self.bound):
                return False
        return True

    def grow(self, start: int) -> tuple[list[int], list[int]] | None:
        members, parents = [start], [-1]
        free = self.uses < self.max_per_view
        while len(members) < self.size:
            if self.shape == "tree":
                joins = list(self.rng.permutation(len(members)))
            else:
                joins = [0 if self.shape in ("star", "pair") else len(members) - 1]
            added = False
            for join in joins:
                pool = [v for v in self.neighbours[members[join]] if free[v] and v not in members]
                tries = 0
                for i in self.rng.permutation(len(pool)):
                    if tries == TRIES_PER_STEP:
                        break
                    tries += 1
                    v = pool[i]
                    if self.fits(members, join, v):
                        members.append(v)
                        parents.append(int(join))
                        added = True
                        break
                if added:
                    break
            if not added:
                return None
        return members, parents

    def matrix(self, members: list[int]) -> np.ndarray:
        n = len(members)
        m = np.zeros((n, n), np.float32)
        for i, a in enumerate(members):
            d = np.asarray(self.depths[a])
            m[i, i] = np.count_nonzero(d) / d.size
            for j in range(i + 1, n):
                m[i, j], m[j, i] = self.directed(a, members[j])
        return m

    def run(self, target: int) -> Grown:
        grown = self.grown
        while len(grown.samples) < target:
            before = len(grown.samples)
            for start in self.rng.permutation(self.n_views).tolist():
                if len(grown.samples) == target:
                    break
                if self.uses[start] >= self.max_per_view or not self.neighbours[start]:
                    continue
                grown.tried += 1
                found = self.grow(start)
                if found is None:
                    continue
                members, parents = found
                if frozenset(members) in self.seen:  # the same views from another start (a pair's both ends)
                    continue
                self.seen.add(frozenset(members))
                self.uses[members] += 1
                grown.samples.append((np.array(members, np.int64), np.array(parents, np.int32)))
                grown.matrices.append(self.matrix(members))
            if len(grown.samples) == before:
                break
        return grown


def grow_samples(depths, Ks: np.ndarray, poses: np.ndarray, *, shape: str, views: int, measure: str = "reprojection",
                 min_covis: float, max_covis: float, cap: float | None = None, rule: str = "min", target: int,
                 max_per_view: int, rng: np.random.Generator) -> Grown:  # fmt: skip
    """Up to ``target`` samples of ``views`` views of ``shape`` from one scene (the module docstring).

    Parameters
    ----------
    depths : (N, H, W) float32 metres or uint16 millimetres (or :class:`~covisibility.MillimetreDepths`)
    Ks : (N, 3, 3), poses : (N, 4, 4)
        ``cam2world``.
    cap : float, optional
        What a non-edge of a chain or tree stays under; default ``min_covis``.
    rule : ``"min"`` or ``"mean"``
        How a pair's two directions combine for the edge and cap tests.
    rng : numpy.random.Generator
        The only source of randomness: the same state, the same samples.
    """
    search = SampleSearch(depths, Ks, poses, shape=shape, views=views, measure=measure, min_covis=min_covis,
                          max_covis=max_covis, cap=min_covis if cap is None else cap, rule=rule,
                          max_per_view=max_per_view, rng=rng)  # fmt: skip
    return search.run(target)
