"""Covisibility measures: one interface, a registry, one result type, and pair selection.

A measure takes one scene's views and returns the covisibility of its view
pairs (those that can fall in the band of interest; it may prune the
others)::

    from covisibility import get_measure, select_pairs
    result = get_measure("reprojection").pairs(depths, Ks, poses, min_covis=0.5, max_covis=0.8)
    result.pairs          # (P, 2) int64, a < b
    result.covisibility   # (P,) float32, min of both directions
    chosen = select_pairs(result, min_covis=0.5, max_covis=0.8, target=1000, max_per_view=10,
                          rng=np.random.default_rng(0))

Registered here: ``reprojection`` (:mod:`covisibility.reprojection`, pruned depth
reprojection) and ``croco`` (:mod:`covisibility.croco_overlap`, CroCo's k-d tree).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from manifests.registry import Registry

__all__ = [
    "Measure",
    "PairCovisibility",
    "all_pairs",
    "available_measures",
    "PAIR_RULES",
    "check_view_arrays",
    "combine_directions",
    "describe_measures",
    "get_measure",
    "in_band",
    "pair_covisibility",
    "register_measure",
    "select_pairs",
]


def pair_covisibility(covis_1in2: np.ndarray, covis_2in1: np.ndarray) -> np.ndarray:
    """A pair's covisibility from its two directions: their minimum (the one place this rule is written)."""
    return np.minimum(covis_1in2, covis_2in1)


PAIR_RULES = ("min", "mean")


def combine_directions(covis_1in2, covis_2in1, rule: str = "min"):
    """A pair's covisibility from its two directions by ``rule``: ``min`` (:func:`pair_covisibility`, ours)
    or ``mean`` (MV-DUSt3R+'s). float32 in, float32 out, arrays or scalars.

    ``min`` asks that each view sees the other's share; ``mean`` lets a wide
    view that sees all of a narrow one pass with half its own pixels unseen.
    """
    if rule == "min":
        return pair_covisibility(covis_1in2, covis_2in1)
    if rule == "mean":
        return (np.float32(0.5) * (np.asarray(covis_1in2, np.float32) + np.asarray(covis_2in1, np.float32)))
    raise ValueError(f"unknown pair rule {rule!r}; known: {', '.join(PAIR_RULES)}")


def in_band(covisibility: np.ndarray, min_covis: float, max_covis: float) -> np.ndarray:
    """bool, the shape of ``covisibility``: ``min_covis <= c <= max_covis`` (NaN: False). The one band test."""
    return (covisibility >= min_covis) & (covisibility <= max_covis)


def all_pairs(n: int) -> np.ndarray:
    """(n (n - 1) / 2, 2) int64: every pair ``(a, b)`` of ``n`` views, ``a < b``, in lexicographic order."""
    a, b = np.triu_indices(n, k=1)
    return np.stack([a, b], axis=1).astype(np.int64)


def check_view_arrays(depths: np.ndarray, Ks: np.ndarray, poses: np.ndarray) -> None:
    """Raise ValueError unless ``depths`` (N, H, W), ``Ks`` (N, 3, 3) and ``poses`` (N, 4, 4) agree."""
    depths, Ks, poses = np.asarray(depths), np.asarray(Ks), np.asarray(poses)
    n = len(depths)
    if depths.ndim != 3 or Ks.shape != (n, 3, 3) or poses.shape != (n, 4, 4):
        raise ValueError(
            f"views must be depths (N, H, W), Ks (N, 3, 3), poses (N, 4, 4); "
            f"got {depths.shape}, {Ks.shape}, {poses.shape}"
        )


@dataclass(frozen=True, eq=False)
class PairCovisibility:
    """The covisibility of one scene's view pairs, as every measure returns it.

    Attributes
    ----------
    pairs : (P, 2) int64
        View indices ``(a, b)`` with ``a < b``.
    covis_1in2, covis_2in1 : (P,) float32
        ``covis(a in b)`` and ``covis(b in a)``, exact (every pixel).
    candidates : int
        Pairs considered (the others were never candidates).
    computed : int
        Pairs whose values were computed exactly: ``P``. A measure that
        prunes drops the pairs it proves outside the band instead of
        returning estimates for them.
    stats : dict[str, int]
        The measure's own counts (``reprojection``: ``bound_pruned``,
        ``coarse_pruned``).
    """

    pairs: np.ndarray
    covis_1in2: np.ndarray
    covis_2in1: np.ndarray
    candidates: int
    computed: int
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = len(self.pairs)
        problems = [
            (self.pairs.dtype != np.int64 or self.pairs.shape != (p, 2),
             f"pairs must be (P, 2) int64, got {self.pairs.shape} {self.pairs.dtype}"),
            (any(c.dtype != np.float32 or c.shape != (p,) for c in (self.covis_1in2, self.covis_2in1)),
             f"covis_1in2 and covis_2in1 must be ({p},) float32, got {self.covis_1in2.shape} {self.covis_1in2.dtype} "
             f"and {self.covis_2in1.shape} {self.covis_2in1.dtype}"),
            (p and not bool(np.all(self.pairs[:, 0] < self.pairs[:, 1])), "every pair (a, b) must have a < b"),
            (self.computed != p, f"computed ({self.computed}) must equal the number of pairs ({p})"),
            (self.candidates < p, f"candidates ({self.candidates}) below the number of pairs ({p})"),
        ]  # fmt: skip
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    @property
    def covisibility(self) -> np.ndarray:
        """(P,) float32: each pair's covisibility, the minimum of both directions."""
        return pair_covisibility(self.covis_1in2, self.covis_2in1)

    def band(self, min_covis: float, max_covis: float) -> np.ndarray:
        """(K,) int64 indices into :attr:`pairs` of those with ``min_covis <= covisibility <= max_covis``."""
        return np.flatnonzero(in_band(self.covisibility, min_covis, max_covis))


class Measure(abc.ABC):
    """A covisibility measure. Subclasses set ``name``, ``description`` and implement :meth:`pairs` and :meth:`exact`."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, for --help

    @abc.abstractmethod
    def pairs(
        self, depths: np.ndarray, Ks: np.ndarray, poses: np.ndarray, *, min_covis: float, max_covis: float
    ) -> PairCovisibility:
        """The covisibility of one scene's view pairs.

        Parameters
        ----------
        depths : (N, H, W) float32
            Planar depth in metres, 0 = invalid; one size for all views.
        Ks : (N, 3, 3) float
        poses : (N, 4, 4) float
            ``cam2world``.
        min_covis, max_covis : float
            The band of interest. A measure may leave out pairs that cannot
            fall in it; every pair it returns has exact values.
        """

    @abc.abstractmethod
    def exact(self, depths, Ks: np.ndarray, poses: np.ndarray, pairs: np.ndarray,
              cache: dict | None = None) -> PairCovisibility:  # fmt: skip
        """The exact covisibility of the given pairs, every one of them, in their order (no search, no pruning).

        Parameters
        ----------
        depths : (N, H, W)
            float32 metres, or anything with ``shape`` and ``depths[i]``
            giving them (:class:`covisibility.MillimetreDepths`).
        Ks : (N, 3, 3) float
        poses : (N, 4, 4) float
        pairs : (P, 2) int
            View indices ``(a, b)``, ``a < b``.
        cache : dict, optional
            A dict the caller keeps across calls on the same scene's arrays,
            where the measure may keep per-view work (the same values either way).
        """


_REGISTRY: Registry[Measure] = Registry("covisibility measure")
register_measure = _REGISTRY.register  # class decorator: add a measure under cls.name
available_measures = _REGISTRY.names
describe_measures = _REGISTRY.summary  # "name (description), ..." for --help
get_measure = _REGISTRY.get


def select_pairs(
    result: PairCovisibility,
    *,
    min_covis: float,
    max_covis: float,
    target: int,
    max_per_view: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Choose up to ``target`` pairs in the band, no view in more than ``max_per_view`` of them.

    The pairs in ``[min_covis, max_covis]`` are visited in the order of
    ``rng.permutation`` and each is taken while both its views have been
    used fewer than ``max_per_view`` times, until ``target`` are taken. A
    pure function of its arguments (and ``rng``'s state).

    Returns
    -------
    (K,) int64
        Indices into ``result.pairs`` of the chosen pairs, sorted by ``(a, b)``.
    """
    if target < 1 or max_per_view < 1:
        raise ValueError(f"target and max_per_view must be at least 1, got {target} and {max_per_view}")
    pairs = result.pairs
    uses = np.zeros(int(pairs.max()) + 1 if len(pairs) else 0, np.int64)
    chosen: list[int] = []
    for k in rng.permutation(result.band(min_covis, max_covis)):
        a, b = pairs[k]
        if uses[a] < max_per_view and uses[b] < max_per_view:
            uses[a] += 1
            uses[b] += 1
            chosen.append(k)
            if len(chosen) == target:
                break
    chosen_ = np.array(chosen, np.int64)
    return chosen_[np.lexsort((pairs[chosen_, 1], pairs[chosen_, 0]))]
