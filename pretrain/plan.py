"""The plan: which pairs, in which batch, on which rank and lane.

Computed from the row groups' row counts alone (:class:`pretrain.shards.ShardIndex`),
identically on every rank. The ``N`` pairs get a *canonical index* (shards in
order, row groups in order, rows in order). For an epoch:

1. The row groups are permuted by ``default_rng([seed, epoch])``; their
   rows, laid end to end in that order, give each pair an *epoch position*
   ``0 .. N-1``.
2. Every rank takes ``n = N // (world_size * batch_size)`` batches
   (:meth:`pretrain.data.PairStream.batches_per_epoch`, the same on every
   rank and every epoch): rank ``r`` owns positions ``[r n B, (r+1) n B)``.
   The last ``N - world_size n B < world_size B`` positions are dropped; as
   the row group order changes each epoch, so do the dropped pairs.
3. A rank's range is cut into ``lanes`` contiguous chunks (lane ``l`` holds
   the rank's batches ``j`` with ``j % lanes == l``, so chunk sizes differ by
   at most one batch). A lane is shuffled in windows of ``shuffle_buffer``
   rows (rounded down to whole batches; each window permuted by
   ``default_rng([seed, epoch, WINDOW_SALT, window start])``) and cut into batches:
   lane ``l``'s ``q``-th batch is the rank's batch ``j = q * lanes + l``.

How DataLoader workers share a rank's plan, and resuming mid-epoch, are
:mod:`pretrain.data`'s.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EpochPlan"]

WINDOW_SALT = 0x5EED  # separates the window shuffles' seeds from the row group permutation's


class EpochPlan:
    """One rank's batches for one epoch, as canonical pair indices (the module docstring).

    ``batch(j)`` is a ``(batch_size,)`` int64 array, for ``0 <= j <
    batches``; computed on demand from row counts, O(row groups + buffer).
    """

    def __init__(self, group_rows: np.ndarray, group_start: np.ndarray, *, batch_size: int, seed: int,
                 epoch: int, rank: int, world_size: int, lanes: int, shuffle_buffer: int, shuffle: bool):  # fmt: skip
        B = batch_size
        self.B, self.lanes = B, lanes
        self.seed, self.epoch = seed, epoch
        self.shuffle = shuffle
        self.batches = int(group_rows.sum()) // (world_size * B)
        self.window = max(1, shuffle_buffer // B) * B
        groups = len(group_rows)
        order = np.random.default_rng([seed, epoch]).permutation(groups) if shuffle else np.arange(groups)
        self._order_start = group_start[order]  # canonical start of the k-th group in epoch order
        self._epoch_start = np.concatenate([[0], np.cumsum(group_rows[order])[:-1]]).astype(np.int64)
        self._rank_start = rank * self.batches * B
        self._cache: tuple[int, np.ndarray] | None = None

    def lane_span(self, lane: int) -> tuple[int, int]:
        """(first epoch position, rows) of a lane."""
        n, L = self.batches, self.lanes
        first_batch = lane * (n // L) + min(lane, n % L)
        count = n // L + (lane < n % L)
        return self._rank_start + first_batch * self.B, count * self.B

    def batch(self, j: int) -> np.ndarray:
        if not 0 <= j < self.batches:
            raise IndexError(f"batch {j} outside 0..{self.batches - 1}")
        lane, q = j % self.lanes, j // self.lanes
        start, rows = self.lane_span(lane)
        offset = q * self.B
        w0 = offset // self.window * self.window
        perm = self._window(start + w0, min(self.window, rows - w0))
        positions = start + w0 + perm[offset - w0 : offset - w0 + self.B]
        k = np.searchsorted(self._epoch_start, positions, side="right") - 1
        return self._order_start[k] + (positions - self._epoch_start[k])

    def _window(self, start: int, length: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(length)
        if self._cache is None or self._cache[0] != start:
            rng = np.random.default_rng([self.seed, self.epoch, WINDOW_SALT, start])
            self._cache = (start, rng.permutation(length))
        return self._cache[1]
