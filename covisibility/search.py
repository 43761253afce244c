"""Pair search: which view pairs of a scene get their covisibility computed, and which are kept.

A :class:`Search` turns one scene's views into a :class:`Choice`: the pairs
whose covisibility it computed exactly (a :class:`~covisibility.PairCovisibility`)
and the ones it keeps (indices into them, the contract of
:func:`~covisibility.select_pairs`)::

    from covisibility import get_search
    choice = get_search("index").choose(depths, Ks, poses, measure="reprojection", min_covis=0.5,
                                        max_covis=0.8, target=1000, max_per_view=10,
                                        rng=np.random.default_rng(0))
    choice.result.pairs[choice.chosen]        # (K, 2) int64, sorted by (a, b)
    choice.result.covisibility[choice.chosen] # every one in [0.5, 0.8], exact

Registered here:

``exhaustive``
    Today's filter: the measure over every pair of views (its own pruning),
    then :func:`~covisibility.select_pairs`. Time and memory grow with
    ``N (N - 1) / 2`` and every depth map is held as float32.
``index``
    A surface-cell index proposes the candidates; the exact values of the
    ``reprojection`` measure decide, on as few pairs as the target needs.

The ``index`` search
--------------------
1. **Surface cells** (:class:`SurfaceIndex`, ``O(N k)``). Each view is
   sampled on a ``SAMPLES`` x ``SAMPLES`` pixel grid (every ``s``-th pixel,
   ``s = min(H, W) // SAMPLES``, 8 at 256²) and the samples' world points are
   binned into cubes of ``CELL`` metres (0.15 m). Two sets per view:

   * its *points* ``W[v, c]``: how many of the view's samples fall in cell
     ``c`` (``S = SAMPLES²`` samples, invalid ones in none);
   * its *shell* ``M[v, c] in {0, 1}``: the cells of the points along each
     sample's ray at ``z + f * tol(z)``, ``f in SHELL = (-1, -0.5, 0, 0.5,
     1)``, ``tol(z) = DEPTH_ABS_TOL + DEPTH_REL_TOL * z``: where a surface
     point must lie to agree with the view's depth under the kernel's test
     (:mod:`covisibility.pixel_rule`). Without the shell, surfaces the test
     accepts (two faces of a 10 cm partition at 3 m, a slanted floor seen
     from afar) fall into other cells and those pairs are missed.

   The estimate of ``covis(a in b)`` is ``(W @ M.T)[a, b] / S``: the share of
   a's samples in a cell b's depth reaches. A pair's estimate is the minimum
   of both directions (:func:`~covisibility.pair_covisibility`); ``W @ M.T``
   is a sparse product whose non-zeros are exactly the pairs sharing a cell,
   so pairs that share none are never formed. It ignores the frusta's
   borders and occlusion inside a cell, so it errs high by a few hundredths
   (0.01-0.05 in the synthetic apartments, standard deviation 0.05).
2. **Candidates**: the pairs whose estimate lies in
   ``[min_covis - LOW_MARGIN, max_covis + HIGH_MARGIN]`` (0.12 each; on the
   medium apartment at 500 views 99.8 % of the exhaustive search's in-band
   pairs, about 2.5 candidates per in-band pair). When ``min_covis <=
   LOW_MARGIN`` a pair sharing no cell could be in the band, and every pair
   is a candidate.
3. **Order**: the candidates in the order of ``rng.permutation``; no other
   use of the estimate, so the kept pairs are a uniform draw among the
   in-band candidates, as :func:`~covisibility.select_pairs` draws among all
   in-band pairs (same covisibility histogram, up to the candidates' recall).
4. **Exact values, in that order, in batches** (:class:`_Walk`). A
   candidate one of whose views already holds ``max_per_view`` pairs is
   skipped (it could never be taken). The others pass, cheapest first:

   * the ``reprojection`` measure's coarse pass: every ``COARSE_STRIDE``-th
     pixel, the same values and the same ``COARSE_MARGIN`` test as
     :func:`~covisibility.reprojection.covisibility_pairs`, so no pair the
     exhaustive search keeps is dropped here. The direction the index
     estimates lower goes first: below ``min_covis - COARSE_MARGIN`` the
     pair is out without the other;
   * the pairs whose coarse value is outside the band (most of them are
     out): every ``FINE_STRIDE``-th pixel, dropped when more than
     ``FINE_SES`` binomial standard errors outside (0.0195 at 256²;
     measured errors of this pass: sd 0.0016, largest 0.0047);
   * the exact pass, every pixel
     (:func:`~covisibility.reprojection.directed_covisibility`: bit for bit the
     numbers of the exhaustive search). A pair still sampled below the band
     gets its lower direction first: below ``min_covis``, the pair is out
     and its other direction is never computed (98 % of them).

   Walking the batch in order, a pair is taken when its exact covisibility
   is in ``[min_covis, max_covis]`` and both its views are below
   ``max_per_view``: :func:`~covisibility.select_pairs`' greedy rule over
   the candidates in the ``rng``'s order. A pair one of whose views is
   expected full by its turn (the in-band chances of the batch's earlier
   pairs added to its uses) is not computed yet, and it and every later pair
   whose decision could hang on it wait, in order, for the next batch,
   where a full view drops it uncomputed. So batches, waits and early exits
   never change which pairs are kept (``tests/covisibility/test_search.py`` checks it
   against the walk one candidate at a time).
5. **Stopping**: when ``target`` pairs are taken, or the candidates run out.
   An exact batch is the shortest head of the queue whose summed chance of
   being in the band (normal error on each sampled value, ``SIZING_SES``
   standard errors) reaches what is still needed, plus 2 %.

Cost (medium apartment, 256², target 1,000, ``max_per_view`` 10,
``benchmarks/pipeline.py``): the index, ``O(N k)`` plus a sparse product over
the shared cells (1 s at 2,000 views); about 3.4 coarse candidates and 1.03
exact pairs a kept pair once the scene holds more in-band pairs than the
target; when it holds fewer, every candidate is walked (about 2.3 a pair in
the band).

Memory: depth can be given as uint16 millimetres (:func:`millimetres`;
``N H W * 2`` bytes, 262 MB at 2,000 views of 256²) and is decoded to
float32 per view as it is needed (:class:`MillimetreDepths`, the formula of
:func:`manifests.codecs.decode_depth`, so the values are those of the float32
path). The index holds the distinct (view, cell) pairs, a few thousand a
view (about 115 MB at 2,000 views), and keys ``_CHUNK`` views at a time; an
exact batch holds one source's world points and ``IndexSearch.chunk``
decoded targets at a time.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from covisibility.reprojection import COARSE_MARGIN, coarse_keeps, directed_covisibility
from covisibility.pixel_rule import DEPTH_ABS_TOL, DEPTH_REL_TOL
from covisibility.measures import (
    PairCovisibility,
    all_pairs,
    check_view_arrays,
    get_measure,
    in_band,
    pair_covisibility,
    select_pairs,
)
from manifests.codecs import metres
from manifests.registry import Registry
from renderers.camera import pixel_rays

__all__ = [
    "CELL",
    "COARSE_STRIDE",
    "FINE_SES",
    "FINE_STRIDE",
    "HIGH_MARGIN",
    "LOW_MARGIN",
    "SAMPLES",
    "SHELL",
    "SIZING_SES",
    "Choice",
    "ExhaustiveSearch",
    "IndexSearch",
    "MillimetreDepths",
    "Search",
    "SurfaceIndex",
    "available_searches",
    "depth_source",
    "describe_searches",
    "get_search",
    "register_search",
]

CELL = 0.15  # metres, side of a surface cell
SAMPLES = 32  # samples a side of each view's grid for the index
SHELL = (-1.0, -0.5, 0.0, 0.5, 1.0)  # offsets along the ray, in units of the kernel's depth tolerance
LOW_MARGIN = 0.12  # candidates: estimate >= min_covis - LOW_MARGIN
HIGH_MARGIN = 0.12  # ... and <= max_covis + HIGH_MARGIN
COARSE_STRIDE = 4  # the coarse pass of covisibility_pairs (its default stride)
FINE_STRIDE = 2  # second look at the pairs whose coarse value is outside the band
FINE_SES = 5.0  # ... dropped when this many binomial standard errors outside (0.0195 at 256²)
SIZING_SES = 1.5  # error assumed of a sampled value when sizing exact batches, in binomial standard errors

_BITS = 16  # bits of each cell coordinate in a key (65,536 cells a side: 9.8 km at 0.15 m)
_VIEW_SHIFT = 3 * _BITS  # a key's higher bits: the view within its chunk
_CHUNK = 64  # views keyed at once (transient memory about 0.35 MB a view at 32 x 32 samples)


# --------------------------------------------------------------------------- depth in millimetres


class MillimetreDepths:
    """(N, H, W) uint16 millimetres read as float32 metres, one view (or a few) at a time.

    ``depths[i]`` (an int, a slice or an int array) is :func:`metres` of
    those views: what :func:`manifests.codecs.decode_depth` gives for them.
    """

    def __init__(self, mm: np.ndarray) -> None:
        mm = np.asarray(mm)
        if mm.dtype != np.uint16 or mm.ndim != 3:
            raise ValueError(f"millimetre depths must be (N, H, W) uint16, got {mm.shape} {mm.dtype}")
        self.mm = mm
        self.shape = mm.shape

    def __len__(self) -> int:
        return len(self.mm)

    def __getitem__(self, index) -> np.ndarray:
        return metres(self.mm[index])

    def grid(self, index, offset: int, step: int) -> np.ndarray:
        """Views ``index`` on every ``step``-th row and column from ``offset``, in metres."""
        return metres(self.mm[index, offset::step, offset::step])


def depth_source(depths) -> np.ndarray | MillimetreDepths:
    """float32 metres as they are, uint16 millimetres decoded per view (:class:`MillimetreDepths`)."""
    if isinstance(depths, MillimetreDepths):
        return depths
    depths = np.asarray(depths)
    if depths.dtype == np.uint16:
        return MillimetreDepths(depths)
    if depths.dtype != np.float32:
        raise ValueError(f"depths must be float32 metres or uint16 millimetres, got {depths.dtype}")
    return depths


def _check(depths, Ks: np.ndarray, poses: np.ndarray, target: int, max_per_view: int) -> None:
    n = len(depths)
    if len(depths.shape) != 3:
        raise ValueError(f"depths must be (N, H, W), got {depths.shape}")
    check_view_arrays(np.empty((n, 0, 0)), Ks, poses)
    if target < 1 or max_per_view < 1:
        raise ValueError(f"target and max_per_view must be at least 1, got {target} and {max_per_view}")


# --------------------------------------------------------------------------- interface and registry


@dataclass(frozen=True, eq=False)
class Choice:
    """What a search found in one scene.

    Attributes
    ----------
    result : PairCovisibility
        The pairs whose covisibility was computed exactly (both directions,
        every pixel); ``candidates``: pairs considered, ``computed``: exact
        computations; ``stats``: the search's own counts.
    chosen : (K,) int64
        Indices into ``result.pairs`` of the kept pairs, sorted by ``(a, b)``:
        at most ``target``, each in ``[min_covis, max_covis]``, no view in
        more than ``max_per_view`` of them.
    """

    result: PairCovisibility
    chosen: np.ndarray


class Search(abc.ABC):
    """A pair search. Subclasses set ``name``, ``description`` and implement :meth:`choose`."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, for --help
    #: the measures it works with; empty: every registered one
    measures: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def supports(cls, measure: str) -> bool:
        """Whether this search runs with ``measure`` (the one place that is decided)."""
        return not cls.measures or measure in cls.measures

    @abc.abstractmethod
    def choose(
        self, depths, Ks: np.ndarray, poses: np.ndarray, *, measure: str, min_covis: float, max_covis: float,
        target: int, max_per_view: int, rng: np.random.Generator,
    ) -> Choice:  # fmt: skip
        """Up to ``target`` pairs in ``[min_covis, max_covis]`` by ``measure``'s exact values.

        Parameters
        ----------
        depths : (N, H, W) float32 metres or uint16 millimetres
            0 = invalid; one size for all views. Millimetres are decoded as
            :func:`manifests.codecs.decode_depth` does (:func:`metres`).
        Ks : (N, 3, 3) float
        poses : (N, 4, 4) float
            ``cam2world``.
        measure : str
            A registered covisibility measure (:func:`~covisibility.get_measure`).
        min_covis, max_covis : float
            The band.
        target, max_per_view : int
            Pairs to keep, at most; pairs one view may join, at most.
        rng : numpy.random.Generator
            The only source of randomness: the same state, the same choice.
        """


_REGISTRY: Registry[Search] = Registry("pair search")
register_search = _REGISTRY.register  # class decorator: add a search under cls.name
available_searches = _REGISTRY.names
describe_searches = _REGISTRY.summary  # "name (description), ..." for --help
get_search = _REGISTRY.get


@register_search
class ExhaustiveSearch(Search):
    """Today's filter: ``get_measure(measure).pairs(...)`` over every pair, then :func:`select_pairs`."""

    name = "exhaustive"
    description = "the measure over every pair of views (its own pruning), then a seeded draw; time grows as N²"

    def choose(self, depths, Ks, poses, *, measure, min_covis, max_covis, target, max_per_view, rng) -> Choice:
        if isinstance(depths, MillimetreDepths):
            depths = metres(depths.mm)
        elif isinstance(depths, np.ndarray) and depths.dtype == np.uint16:
            depths = metres(depths)
        result = get_measure(measure).pairs(depths, Ks, poses, min_covis=min_covis, max_covis=max_covis)
        chosen = select_pairs(result, min_covis=min_covis, max_covis=max_covis, target=target,
                              max_per_view=max_per_view, rng=rng)  # fmt: skip
        return Choice(result, chosen)


# --------------------------------------------------------------------------- the surface-cell index


def _cell_keys(points: np.ndarray, cell: float) -> np.ndarray:
    """int64 key of the cube of side ``cell`` holding each of (..., 3) points: 3 x 16 bits, clipped at the edges."""
    q = np.floor(points / np.float32(cell)).astype(np.int64) + (1 << (_BITS - 1))
    np.clip(q, 0, (1 << _BITS) - 1, out=q)
    return (q[..., 0] << (2 * _BITS)) | (q[..., 1] << _BITS) | q[..., 2]


def _view_cells(keys: np.ndarray, lo: int, counts: bool) -> tuple[np.ndarray, ...]:
    """``(views, cells[, counts])`` of the distinct (view, cell) pairs in chunk keys (view in the high bits)."""
    k = np.sort(keys)  # (np.unique hashes int64 keys without counts: many times slower than a sort)
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, np.int64)
    views = (k[first] >> _VIEW_SHIFT).astype(np.int32) + np.int32(lo)
    cells = k[first] & ((1 << _VIEW_SHIFT) - 1)
    if not counts:
        return views, cells
    return views, cells, np.diff(np.r_[first, len(k)]).astype(np.float32)


@dataclass(frozen=True, eq=False)
class SurfaceIndex:
    """The pairs of views that share a surface cell, with the estimate of their covisibility.

    Attributes
    ----------
    pairs : (Q, 2) int64
        Every pair ``(a, b)``, ``a < b``, whose points and shells share a
        cell in both directions, sorted by ``(a, b)``.
    estimate_ab, estimate_ba : (Q,) float32
        ``est(a in b) = (W @ M.T)[a, b] / S`` and ``est(b in a)`` (module docstring).
    views : int
        ``N``.
    cells : int
        Distinct cells of the scene (points and shells).
    """

    pairs: np.ndarray
    estimate_ab: np.ndarray
    estimate_ba: np.ndarray
    views: int
    cells: int

    @property
    def estimate(self) -> np.ndarray:
        """(Q,) float32: the pairs' estimate, the minimum of both directions."""
        return pair_covisibility(self.estimate_ab, self.estimate_ba)

    @classmethod
    def build(cls, depths, Ks: np.ndarray, poses: np.ndarray, *, cell: float = CELL,
              samples: int = SAMPLES, shell: tuple[float, ...] = SHELL) -> SurfaceIndex:  # fmt: skip
        """Index one scene's views.

        Parameters
        ----------
        depths : (N, H, W) float32 metres or uint16 millimetres (or :class:`MillimetreDepths`)
        Ks : (N, 3, 3), poses : (N, 4, 4)
        cell : float
            Side of a cell, metres.
        samples : int
            Grid samples a side (the stride is ``min(H, W) // samples``).
        shell : tuple of float
            Offsets along each ray, in units of the kernel's depth tolerance.
        """
        from scipy import sparse

        source = depth_source(depths)
        n, h, w = source.shape
        step = max(1, min(h, w) // samples)
        offset = step // 2
        n_samples = len(range(offset, h, step)) * len(range(offset, w, step))
        f = np.asarray(shell, np.float32)[None, :, None]  # (1, F, 1)
        rays: dict[bytes, np.ndarray] = {}
        points: list[tuple[np.ndarray, ...]] = []  # per chunk: (views, cells, counts) of the views' samples
        shells: list[tuple[np.ndarray, ...]] = []  # per chunk: (views, cells) of the views' shells
        for lo in range(0, n, _CHUNK):
            idx = np.arange(lo, min(n, lo + _CHUNK))
            if isinstance(source, MillimetreDepths):
                z = source.grid(idx, offset, step)
            else:
                z = np.asarray(source[idx, offset::step, offset::step], np.float32)
            z = z.reshape(len(idx), -1)  # (m, S)
            r = np.empty((len(idx), z.shape[1], 3), np.float32)  # (m, S, 3) rays at the samples
            for i, v in enumerate(idx):
                K = np.asarray(Ks[v], np.float64)
                key = K.tobytes()
                if key not in rays:
                    rays[key] = pixel_rays(K, w, h)[offset::step, offset::step].reshape(-1, 3).astype(np.float32)
                r[i] = rays[key]
            R = np.asarray(poses[idx, :3, :3], np.float32).transpose(0, 2, 1)  # (m, 3, 3) R^T
            t = np.asarray(poses[idx, :3, 3], np.float32)[:, None, :]  # (m, 1, 3)
            valid = z > 0
            local = (np.arange(len(idx), dtype=np.int64) << _VIEW_SHIFT)[:, None]  # (m, 1)
            keys = _cell_keys((r * z[..., None]) @ R + t, cell) | local  # (m, S)
            points.append(_view_cells(keys[valid], lo, counts=True))
            tol = np.float32(DEPTH_ABS_TOL) + np.float32(DEPTH_REL_TOL) * z
            zz = z[:, None, :] + f * tol[:, None, :]  # (m, F, S)
            cam = r[:, None, :, :] * zz[..., None]  # (m, F, S, 3)
            keys = _cell_keys(cam @ R[:, None] + t[:, None], cell) | local[:, :, None]  # (m, F, S)
            shells.append(_view_cells(keys[np.broadcast_to(valid[:, None, :], keys.shape)], lo, counts=False))
        cells = np.sort(np.concatenate([c for _, c, *_ in points + shells])) if n else np.zeros(0, np.int64)
        cells = cells[np.r_[True, cells[1:] != cells[:-1]]] if len(cells) else cells

        def matrix(parts: list[tuple[np.ndarray, ...]], weights: bool):
            """(N, C) CSR of the chunks' (view, cell) pairs: sorted by view, then cell, so built directly."""
            views = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
            indices = np.concatenate([np.searchsorted(cells, p[1]).astype(np.int32) for p in parts]) if parts \
                else np.zeros(0, np.int32)  # fmt: skip
            data = (np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32)) if weights \
                else np.ones(len(indices), np.float32)  # fmt: skip
            indptr = np.zeros(n + 1, np.int64)
            np.cumsum(np.bincount(views, minlength=n), out=indptr[1:])
            return sparse.csr_matrix((data, indices, indptr), shape=(n, len(cells)))

        W = matrix(points, weights=True)
        del points
        M = matrix(shells, weights=False)
        del shells
        E = (W @ M.T).tocsr()  # E[a, b] = a's samples in b's shell
        E.data /= np.float32(n_samples)
        pair = sparse.triu(E.minimum(E.T), k=1).tocoo()  # non-zero where both directions share a cell
        keep = pair.data > 0
        pairs = np.stack([pair.row[keep], pair.col[keep]], axis=1).astype(np.int64).reshape(-1, 2)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        E.sum_duplicates()  # canonical: sorted column indices, so (row, col) keys ascend
        keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(E.indptr)) * n + E.indices
        ab = E.data[np.searchsorted(keys, pairs[:, 0] * n + pairs[:, 1])].astype(np.float32)
        ba = E.data[np.searchsorted(keys, pairs[:, 1] * n + pairs[:, 0])].astype(np.float32)
        return cls(pairs=pairs, estimate_ab=ab, estimate_ba=ba, views=n, cells=len(cells))

    def candidates(self, min_covis: float, max_covis: float, *, low_margin: float = LOW_MARGIN,
                   high_margin: float = HIGH_MARGIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """``(pairs (C, 2) int64, estimate_ab, estimate_ba (C,) float32)``: pairs estimated in the widened band.

        Sorted by ``(a, b)``. When ``min_covis - low_margin <= 0`` pairs that
        share no cell (estimate 0) qualify too: then every pair of the scene
        not estimated above ``max_covis + high_margin``.
        """
        lo, hi = min_covis - low_margin, max_covis + high_margin
        if lo <= 0:
            pairs = all_pairs(self.views)
            ab, ba = np.zeros(len(pairs), np.float32), np.zeros(len(pairs), np.float32)
            if len(self.pairs):
                n = self.views
                at = np.searchsorted(pairs[:, 0] * n + pairs[:, 1], self.pairs[:, 0] * n + self.pairs[:, 1])
                ab[at], ba[at] = self.estimate_ab, self.estimate_ba
            keep = pair_covisibility(ab, ba) <= hi
            return pairs[keep], ab[keep], ba[keep]
        estimate = self.estimate
        keep = (estimate >= lo) & (estimate <= hi)
        return self.pairs[keep], self.estimate_ab[keep], self.estimate_ba[keep]


# --------------------------------------------------------------------------- the index search


def _in_band_chance(c: np.ndarray, sd: np.ndarray, min_covis: float, max_covis: float) -> np.ndarray:
    """The chance a pair whose sampled covisibility is ``c`` (error ``sd``) is in the band exactly; at least 0.02.

    Sizes the exact batches only (how many of the queue to compute for the pairs still needed).
    """
    from scipy.special import ndtr

    p = ndtr((c - min_covis) / sd) * ndtr((max_covis - c) / sd)
    return np.clip(p, 0.02, 1.0)



@register_search
class IndexSearch(Search):
    """Candidates from a surface-cell index, exact values in a seeded order until the target is met."""

    name = "index"
    description = ("candidates from the views' shared surface cells, exact values in a seeded order until the "
                   "target is met; reprojection only")  # fmt: skip

    measures = ("reprojection",)
    chunk = 8  # targets a source handles at once (memory: about chunk * H * W * 16 bytes)
    max_batch = 4096  # pairs a batch, at most

    def choose(self, depths, Ks, poses, *, measure, min_covis, max_covis, target, max_per_view, rng) -> Choice:
        get_measure(measure)  # an unknown name: the registry's message
        if not self.supports(measure):
            raise ValueError(f"search {self.name!r} supports the measure(s) {', '.join(self.measures)}, "
                             f"not {measure!r}: use the search 'exhaustive' with {measure!r}")  # fmt: skip
        source = depth_source(depths)
        _check(source, Ks, poses, target, max_per_view)
        Ks, poses = np.asarray(Ks), np.asarray(poses)
        index = SurfaceIndex.build(source, Ks, poses)
        cand, ab, ba = index.candidates(min_covis, max_covis)
        perm = rng.permutation(len(cand))
        walk = _Walk(source, Ks, poses, cand[perm], ab[perm] <= ba[perm], min_covis=min_covis, max_covis=max_covis,
                     target=target, max_per_view=max_per_view, chunk=self.chunk, max_batch=self.max_batch)  # fmt: skip
        while walk.step():
            pass
        n = len(source)
        pairs = np.concatenate([d[0] for d in walk.done]) if walk.done else np.zeros((0, 2), np.int64)
        ab = np.concatenate([d[1] for d in walk.done]) if walk.done else np.zeros(0, np.float32)
        ba = np.concatenate([d[2] for d in walk.done]) if walk.done else np.zeros(0, np.float32)
        by_ab = np.lexsort((pairs[:, 1], pairs[:, 0]))
        pairs, ab, ba = pairs[by_ab], ab[by_ab], ba[by_ab]
        stats = {"cells": index.cells, "index_pairs": len(index.pairs), **walk.counts}
        result = PairCovisibility(pairs=pairs, covis_1in2=ab, covis_2in1=ba, candidates=len(cand),
                                  computed=len(pairs), stats=stats)  # fmt: skip
        chosen = np.zeros(0, np.int64)
        if walk.taken:
            t = np.array(walk.taken, np.int64)
            chosen = np.sort(np.searchsorted(pairs[:, 0] * n + pairs[:, 1], t[:, 0] * n + t[:, 1]))
        return Choice(result, chosen.astype(np.int64))


class _Queue:
    """Candidates past the sampled passes, in the walk's order, not yet decided (columns of equal length)."""

    def __init__(self, pairs=None, p=None, low=None, ab=None, ba=None, dead=None) -> None:
        self.pairs = np.zeros((0, 2), np.int64) if pairs is None else pairs
        k = len(self.pairs)
        self.p = np.zeros(k) if p is None else p  # chance of being in the band (batch sizing)
        self.low = np.zeros(k, np.int8) if low is None else low  # 1: a in b, 2: b in a first (sampled below)
        self.ab = np.full(k, np.nan, np.float32) if ab is None else ab  # exact values, NaN until computed
        self.ba = np.full(k, np.nan, np.float32) if ba is None else ba
        self.dead = np.zeros(k, bool) if dead is None else dead  # proven below the band by one direction

    def __len__(self) -> int:
        return len(self.pairs)

    def take(self, rows) -> _Queue:
        return _Queue(self.pairs[rows], self.p[rows], self.low[rows], self.ab[rows], self.ba[rows], self.dead[rows])

    def __add__(self, other: _Queue) -> _Queue:
        return _Queue(*(np.concatenate([getattr(self, c), getattr(other, c)])
                        for c in ("pairs", "p", "low", "ab", "ba", "dead")))  # fmt: skip


class _Walk:
    """The ``index`` search after the index: candidates in the rng's order, walked as :func:`select_pairs` does.

    :meth:`step` refills the queue through the sampled passes, computes the
    exact values of the queue's head and walks it. A pair whose decision
    could depend on one not yet decided (a pair not computed yet because one
    of its views is about to be full, or a pair sharing a view with one
    waiting) waits, in order, at the queue's head: every decision is the one
    the walk one pair at a time would make.
    """

    def __init__(self, source, Ks, poses, order, ab_first, *, min_covis, max_covis, target, max_per_view, chunk,
                 max_batch) -> None:  # fmt: skip
        self.source, self.Ks, self.poses = source, Ks, poses
        self.order, self.ab_first = order, ab_first
        self.min_covis, self.max_covis = min_covis, max_covis
        self.target, self.cap, self.chunk, self.max_batch = target, max_per_view, chunk, max_batch
        self.sampled = min_covis > 0 or max_covis < 1  # as covisibility_pairs: no coarse pass for the band [0, 1]
        h, w = source.shape[1:]
        # binomial standard error, at covisibility 0.5, of a pair sampled every COARSE_STRIDE / FINE_STRIDE pixels
        self.coarse_se, self.fine_se = (0.5 / math.sqrt(len(range(0, h, s)) * len(range(0, w, s)))
                                        for s in (COARSE_STRIDE, FINE_STRIDE))  # fmt: skip
        self.uses = np.zeros(len(source), np.int64)
        self.taken: list[tuple[int, int]] = []
        self.done: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (pairs, ab, ba) computed exactly
        self.queue = _Queue()
        self.pos = 0  # candidates visited
        self.expected = 0.0  # summed chance of the sampled survivors so far
        self.counts = {name: 0 for name in ("visited", "cap_skipped", "coarse", "coarse_pruned", "fine", "fine_pruned",
                                            "one_way", "one_way_pruned", "exact", "exact_in_band", "waited")}

    def directed(self, src: np.ndarray, dst: np.ndarray, step: int) -> np.ndarray:
        return directed_covisibility(src, dst, self.source, self.Ks, self.poses, step=step, chunk=self.chunk)

    def free(self, pairs: np.ndarray) -> np.ndarray:
        return (self.uses[pairs[:, 0]] < self.cap) & (self.uses[pairs[:, 1]] < self.cap)

    def in_band(self, c: np.ndarray) -> np.ndarray:
        return in_band(c, self.min_covis, self.max_covis)

    def refill(self, goal: float) -> None:
        """Pass candidates through the sampled passes until the queue's chance sums to ``goal`` or they run out."""
        lo, hi = self.min_covis, self.max_covis
        while self.queue.p.sum() < goal and self.pos < len(self.order):
            per_candidate = (self.expected + 0.3 * 8) / (self.counts["coarse"] + 8) if self.sampled else 1.0
            size = min(self.max_batch, math.ceil((goal - self.queue.p.sum()) / per_candidate) + 16)
            block, ab_first = self.order[self.pos : self.pos + size], self.ab_first[self.pos : self.pos + size]
            self.pos += len(block)
            self.counts["visited"] += len(block)
            ok = self.free(block)
            self.counts["cap_skipped"] += int((~ok).sum())
            block, ab_first = block[ok], ab_first[ok]
            if not self.sampled:
                self.queue = self.queue + _Queue(block, np.ones(len(block)))
                continue
            # coarse, the direction estimated lower first: below min_covis - COARSE_MARGIN, the pair is out
            src = np.where(ab_first, block[:, 0], block[:, 1])
            dst = np.where(ab_first, block[:, 1], block[:, 0])
            one = self.directed(src, dst, COARSE_STRIDE)
            other = np.zeros(len(block))
            alive = one >= lo - COARSE_MARGIN
            other[alive] = self.directed(dst[alive], src[alive], COARSE_STRIDE)
            ab, ba = np.where(ab_first, one, other), np.where(ab_first, other, one)
            c = pair_covisibility(ab, ba)
            keep = coarse_keeps(c, lo, hi)  # covisibility_pairs' coarse test
            self.counts["coarse"] += len(block)
            self.counts["coarse_pruned"] += int((~keep).sum())
            block, c, ab, ba = block[keep], c[keep], ab[keep], ba[keep]
            sd = np.full(len(c), self.coarse_se * SIZING_SES)
            edge = np.flatnonzero(~in_band(c, lo, hi))  # mostly out: a closer look first
            if len(edge):
                f = self.directed(np.r_[block[edge, 0], block[edge, 1]], np.r_[block[edge, 1], block[edge, 0]],
                                  FINE_STRIDE)  # fmt: skip
                ab[edge], ba[edge] = f[: len(edge)], f[len(edge) :]
                c[edge] = pair_covisibility(ab[edge], ba[edge])
                sd[edge] = self.fine_se * SIZING_SES
                margin = FINE_SES * self.fine_se
                out = np.zeros(len(c), bool)
                out[edge] = (c[edge] < lo - margin) | (c[edge] > hi + margin)
                self.counts["fine"] += len(edge)
                self.counts["fine_pruned"] += int(out.sum())
                block, c, ab, ba, sd = block[~out], c[~out], ab[~out], ba[~out], sd[~out]
            low = np.where(c < lo, np.where(ab <= ba, 1, 2), 0).astype(np.int8)
            p = _in_band_chance(c, sd, lo, hi)
            self.expected += float(p.sum())
            self.queue = self.queue + _Queue(block, p, low)

    def exact(self, q: _Queue, rows: np.ndarray) -> None:
        """Compute the exact values of ``q``'s ``rows`` (in place): sampled-below pairs their lower direction first."""
        pairs, low = q.pairs[rows], q.low[rows]
        first = np.flatnonzero(low)
        ab_first = low[first] == 1
        src = np.where(ab_first, pairs[first, 0], pairs[first, 1])
        dst = np.where(ab_first, pairs[first, 1], pairs[first, 0])
        one = self.directed(src, dst, 1).astype(np.float32)
        dead = np.zeros(len(rows), bool)
        dead[first] = one < self.min_covis  # then so is the pair's minimum: out of the band exactly
        self.counts["one_way"] += len(first)
        self.counts["one_way_pruned"] += int(dead.sum())
        ab = np.full(len(rows), np.nan, np.float32)
        ba = np.full(len(rows), np.nan, np.float32)
        ab[first[ab_first]], ba[first[~ab_first]] = one[ab_first], one[~ab_first]
        todo_ab, todo_ba = np.flatnonzero(~dead & np.isnan(ab)), np.flatnonzero(~dead & np.isnan(ba))
        rest = self.directed(np.r_[pairs[todo_ab, 0], pairs[todo_ba, 1]], np.r_[pairs[todo_ab, 1], pairs[todo_ba, 0]],
                             1).astype(np.float32)  # fmt: skip
        ab[todo_ab], ba[todo_ba] = rest[: len(todo_ab)], rest[len(todo_ab) :]
        q.ab[rows], q.ba[rows], q.dead[rows] = ab, ba, dead
        kept = ~dead
        self.counts["exact"] += int(kept.sum())
        self.counts["exact_in_band"] += int(self.in_band(pair_covisibility(ab[kept], ba[kept])).sum())
        self.done.append((pairs[kept], ab[kept], ba[kept]))

    def step(self) -> bool:
        """One batch: refill, compute the head's exact values, walk it. False once nothing is left to do."""
        if len(self.taken) >= self.target:
            return False
        need = self.target - len(self.taken)
        goal = need * 1.02 + 2  # in-band pairs the batch should hold
        self.refill(goal)
        if not len(self.queue):
            return False
        cut = min(len(self.queue), int(np.searchsorted(np.cumsum(self.queue.p), goal)) + 1)
        batch, self.queue = self.queue.take(slice(0, cut)), self.queue.take(slice(cut, None))
        ok = self.free(batch.pairs)
        self.counts["cap_skipped"] += int((~ok).sum())
        batch = batch.take(ok)
        if not len(batch):
            return True
        # pairs a view of which is expected full by their turn wait uncomputed (never the first: progress)
        tent = self.uses.astype(float)
        risky = np.zeros(len(batch), bool)
        for k, ((a, b), p) in enumerate(zip(batch.pairs.tolist(), batch.p.tolist())):
            if k and max(tent[a], tent[b]) + p > self.cap:
                risky[k] = True
            else:
                tent[a] += p
                tent[b] += p
        todo = np.flatnonzero(~risky & np.isnan(batch.ab) & ~batch.dead)
        if len(todo):
            self.exact(batch, todo)
        computed = ~np.isnan(batch.ab) | batch.dead
        good = ~batch.dead & self.in_band(pair_covisibility(batch.ab, batch.ba))  # NaN: False
        blocked: set[int] = set()
        wait: list[int] = []
        for k, (a, b) in enumerate(batch.pairs.tolist()):
            if computed[k] and not good[k]:
                continue  # out of the band: not taken, whatever the uses
            if not computed[k] or a in blocked or b in blocked or len(self.taken) + len(wait) >= self.target:
                wait.append(k)  # its decision hangs on one not made yet
                blocked.update((a, b))
                continue
            if self.uses[a] < self.cap and self.uses[b] < self.cap:
                self.uses[a] += 1
                self.uses[b] += 1
                self.taken.append((a, b))
        self.counts["waited"] += len(wait)
        if wait:
            self.queue = batch.take(np.array(wait, np.int64)) + self.queue
        return len(self.taken) < self.target
