"""Pairs for CroCo pre-training, streamed from the Parquet pair (or samples) shards that pairgen writes.

:class:`PairStream` is a ``torch.utils.data.IterableDataset`` that yields
whole batches; use it with ``DataLoader(stream, batch_size=None,
num_workers=W)``. A batch is ``{"img1": (B, 3, S, S) float32, "img2": (B, 3,
S, S) float32, "pair_id": list[str]}`` (uint8 images with ``output="uint8"``);
view 1 is CroCo's masked target, view 2 the context. It reads only the shard
formats (docs/design.md; their schemas are declared in ``manifests.pairs``
and ``manifests.samples``) and imports nothing of pairgen's rendering.
A samples folder (``OUT/star5``, ``OUT/pair2``) gives one pair a sample
each epoch, drawn by :func:`pretrain.shards.pick_views` (the parent view
masked, as view 1); referenced samples' views are read through the views
files (:mod:`pretrain.shards`, "Samples").

The concerns live apart: :mod:`pretrain.shards` (finding shards, checking
footers, reading row groups), :mod:`pretrain.plan` (which pairs in which
batch on which rank), :mod:`pretrain.augment` (crops, colour jitter,
normalisation, decoding) and :mod:`pretrain.memory` (batch tensors). This
module puts them together and splits a rank's plan among DataLoader workers.

Workers
-------
DataLoader worker ``w`` of ``W`` yields the rank's batches ``position + w,
position + w + W, ...``; the DataLoader hands out batch ``t`` from worker
``t % W`` (its in-order round robin; workers with a higher id never hold more
batches than lower ones, so running out changes nothing), so the loader's
sequence *is* the plan from ``position`` on, whatever ``W``. ``lanes``
defaults to ``W``: then each worker reads the row groups of one lane only
(one contiguous slice of the epoch's row group order), each row group is read
once, and a worker holds about ``shuffle_buffer / rows per row group + 2``
row groups (about 15 MB each for 256 pairs of 256x256 JPEGs). The plan, and
so the batch order, depends on ``lanes``: pass ``lanes`` explicitly to make
it independent of ``num_workers``.

Resume
------
:meth:`PairStream.set_position` with the number of batches this rank
already consumed in the epoch makes the next iteration yield exactly the
batches the uninterrupted epoch would have yielded from there on, pixels
included (same ``lanes``, i.e. the same ``num_workers`` unless ``lanes`` is
fixed). Set the epoch first: :meth:`PairStream.set_epoch` sets the position
back to 0. The DataLoader must start its workers afresh for each epoch
(``persistent_workers=False``, the default), as they receive a copy of the
stream, epoch and position included, when iteration begins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from manifests import store
from manifests.pairs import IMAGE_COLUMNS
from pretrain.augment import JITTER_RANGE, Augment, decode_bgr, sample_uniforms
from pretrain.memory import BatchMemory
from pretrain.plan import EpochPlan
from pretrain.shards import (
    VIEWS_KEEP,
    RowGroup,
    SampleViews,
    ShardError,
    ShardIndex,
    find_shards,
    read_group,
)

__all__ = ["VIEW2_MODES", "PairStream", "ShardError", "other_scene_rows", "other_scene_view2", "worker_context"]

VIEW2_MODES = ("pair", "other-scene")  # pretrain run --view2: the pair's own view 2, or (the control) another scene's


def worker_context():
    """The start method of loader workers (``DataLoader(..., multiprocessing_context=worker_context())``).

    A forked worker inherits the parent's native thread pools in whatever
    state the fork caught them: OpenCV's pthreads pool, driven from several
    threads by the renderer's shading or by the trainer's image writing, then
    deadlocks the worker's first OpenCV call (seen in ``cv2.setNumThreads``).
    ``forkserver`` workers are forked from a clean server process, started
    once with this module imported, so they start nearly as fast as forked ones.
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pretrain.data"])
    return context

log = logging.getLogger(__name__)


class PairStream(IterableDataset):
    """Batches of CroCo pairs from pairs or samples shards, for ``DataLoader(stream, batch_size=None, num_workers=W)``.

    Parameters
    ----------
    shards
        A shards folder (pairs or samples), a shard file, or a list of shard files (:func:`find_shards`).
    batch_size
        Pairs a batch (per rank).
    crop
        Side of the random square crop of each view; None keeps the whole image.
    seed
        Seeds the order and the augmentation; with the epoch, they fix every batch.
    rank, world_size
        This process's place among the DDP ranks.
    jitter, normalize
        Colour jitter (``jitter_range``, CroCo's 0.6--1.4) and ImageNet normalisation on or off.
    shuffle
        Off: row groups and rows in canonical order (evaluation).
    shuffle_buffer
        Rows shuffled together within a lane (rounded down to whole batches).
    lanes
        Streams a rank's plan is cut into; None: the DataLoader's worker count.
    output
        ``"float32"``: finished images. ``"uint8"``: the cropped, jittered
        views as uint8, a quarter of the bytes to hand over and copy to the
        GPU; :func:`to_float` there gives the float32 images (normalised if
        ``normalize``).
    views
        The views folder that referenced samples name (None: the samples
        folder's sibling ``views/``, the ``OUT`` layout).
    views_keep
        Scenes whose views' image bytes each process keeps (referenced samples).

    Raises
    ------
    ValueError
        No shards, bad arguments, or fewer pairs than one batch on every rank.
    ShardError
        A shard that is not readable Parquet or does not follow the pairs or
        samples schema (checked on the footers here), whose images are smaller
        than the crop (when the footers carry width/height statistics), or
        referenced samples without their views folder.
    """

    def __init__(
        self,
        shards: str | Path | Sequence[str | Path],
        batch_size: int,
        crop: int | None = 224,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        jitter: bool = True,
        normalize: bool = True,
        jitter_range: tuple[float, float] = JITTER_RANGE,
        shuffle: bool = True,
        shuffle_buffer: int = 1024,
        lanes: int | None = None,
        output: str = "float32",
        views: str | Path | None = None,
        views_keep: int = VIEWS_KEEP,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if lanes is not None and lanes < 1:
            raise ValueError(f"lanes must be at least 1 (or None), got {lanes}")
        if output not in ("float32", "uint8"):
            raise ValueError(f"output must be 'float32' or 'uint8', got {output!r}")
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle buffer must be at least 1 row, got {shuffle_buffer}")
        if views_keep < 1:
            raise ValueError(f"views_keep must be at least 1 scene, got {views_keep}")
        self.augment = Augment(crop=crop, jitter=jitter, normalize=normalize, jitter_range=jitter_range)
        self.index = ShardIndex.build(find_shards(shards), views=views)
        self.views_keep = views_keep
        self._views: SampleViews | None = None  # made in the process that iterates (its own views files)
        self._mounts = store.mounts()  # shards or views in a store: a worker mounts them too (manifests.store),
        self._store_env = store.environment() if self._mounts else {}  # reached as this process reaches them
        for path, size in zip(self.index.files, self.index.min_sizes):
            if crop is not None and size is not None and min(size) < crop:
                raise ShardError(f"{path}: images as small as {size[0]}x{size[1]} (width x height, footer "
                                 f"statistics), smaller than the {crop}x{crop} crop")  # fmt: skip
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.shuffle, self.shuffle_buffer, self.lanes = shuffle, shuffle_buffer, lanes
        self.output = output
        self.epoch = 0
        self.position = 0
        n = self.index.pairs // (world_size * batch_size)
        if n == 0:
            raise ValueError(
                f"{self.index.pairs} pairs in {len(self.index.files)} shard(s) do not fill one batch of "
                f"{batch_size} on each of {world_size} rank(s)"
            )
        self._batches = n
        log.debug("%d pairs in %d shards, %d row groups: %d batches of %d a rank, %d pairs dropped an epoch",
                  self.index.pairs, len(self.index.files), len(self.index.group_rows), n, batch_size,
                  self.dropped_per_epoch())  # fmt: skip

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_views"] = None  # a worker opens the views files it needs itself
        return state

    # ---- epoch bookkeeping

    def batches_per_epoch(self) -> int:
        """Batches every rank yields in an epoch: ``pairs // (world_size * batch_size)``."""
        return self._batches

    def dropped_per_epoch(self) -> int:
        """Pairs left out of each epoch so that every rank gets the same number of whole batches."""
        return self.index.pairs - self._batches * self.world_size * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (order and augmentation); sets the position back to 0."""
        self.epoch, self.position = int(epoch), 0

    def set_position(self, batches_done: int) -> None:
        """Resume mid-epoch: skip the ``batches_done`` batches this rank already consumed."""
        if not 0 <= batches_done <= self._batches:
            raise ValueError(f"position {batches_done} is not in 0..{self._batches}")
        self.position = int(batches_done)

    def __len__(self) -> int:
        """Batches the next iteration yields."""
        return self._batches - self.position

    def plan(self, lanes: int = 1) -> EpochPlan:
        """This rank's plan for the current epoch with ``lanes`` lanes (``self.lanes`` wins when set)."""
        return EpochPlan(self.index.group_rows, self.index.group_start, batch_size=self.batch_size,
                         seed=self.seed, epoch=self.epoch, rank=self.rank, world_size=self.world_size,
                         lanes=self.lanes or lanes, shuffle_buffer=self.shuffle_buffer,
                         shuffle=self.shuffle)  # fmt: skip

    # ---- iteration

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        if info is not None:
            cv2.setNumThreads(1)  # one core a worker
            store.remount(self._mounts, self._store_env)
        plan = self.plan(lanes=workers)
        mine = [plan.batch(j) for j in range(self.position + worker, plan.batches, workers)]
        located = [self.index.locate(c) for c in mine]
        last_use: dict[int, int] = {}
        for i, (groups, _) in enumerate(located):
            for g in np.unique(groups).tolist():
                last_use[g] = i
        cache: dict[int, RowGroup] = {}
        memory = BatchMemory(shared=info is not None)
        if self._views is None:
            self._views = SampleViews(self.views_keep)
        for i, (canonical, (groups, rows)) in enumerate(zip(mine, located)):
            for g in np.unique(groups).tolist():
                if g not in cache:
                    cache[g] = read_group(self.index, g, views_cache=self._views, seed=self.seed,
                                          epoch=self.epoch)
            yield self._make_batch(canonical, groups, rows, cache, memory)
            for g in [g for g in cache if last_use[g] == i]:
                del cache[g]

    def _make_batch(self, canonical: np.ndarray, groups: np.ndarray, rows: np.ndarray,
                    cache: dict[int, RowGroup], memory: BatchMemory) -> dict:  # fmt: skip
        u = sample_uniforms(self.seed, self.epoch, canonical)  # (B, SLOTS)
        dtype = torch.uint8 if self.output == "uint8" else torch.float32
        outs: list[torch.Tensor] = []  # img1, img2: (B, 3, S, S), allocated once the first image gives S
        arrays: list[np.ndarray] = []
        ids = []
        for i, (g, r) in enumerate(zip(groups.tolist(), rows.tolist())):
            group = cache[g]
            ids.append(group.ids[r])
            for view in (0, 1):
                bgr = decode_bgr(group.image(view, r))
                if bgr is None:
                    raise ShardError(f"{self.index.where(g, r)}: {self._image(g, view)} of pair {group.ids[r]!r} "
                                     "is not a decodable image")  # fmt: skip
                if not outs:
                    S = self.augment.out_size(*bgr.shape[:2])
                    outs = [memory.empty((len(canonical), 3, *S), dtype) for _ in (0, 1)]
                    arrays = [o.numpy() for o in outs]
                self._check_size(bgr, S, g, r, group.ids[r], view)
                self.augment.apply(bgr, arrays[view][i], u[i, 5 * view : 5 * view + 5])
        return {"img1": outs[0], "img2": outs[1], "pair_id": ids}

    def _check_size(self, bgr: np.ndarray, S: tuple[int, int], g: int, r: int, pair: str, view: int) -> None:
        H, W = bgr.shape[:2]
        crop = self.augment.crop
        if crop is not None and (H < crop or W < crop):
            raise ShardError(f"{self.index.where(g, r)}: {self._image(g, view)} of pair {pair!r} is {W}x{H}, "
                             f"smaller than the {crop}x{crop} crop")  # fmt: skip
        if crop is None and (H, W) != S:
            raise ShardError(f"{self.index.where(g, r)}: {self._image(g, view)} of pair {pair!r} is {W}x{H}, "
                             f"the batch's first image {S[1]}x{S[0]}; without a crop all images must have one "
                             "size")  # fmt: skip

    def _image(self, g: int, view: int) -> str:
        """What a message calls view ``view`` (0, 1) of row group ``g``: its column, or the sample's view."""
        if self.index.kind(int(self.index.group_file[g])) == "pairs":
            return IMAGE_COLUMNS[view]
        return f"the image of view {view + 1}"


# ---- the control: view 2 from another scene (pretrain run --view2 other-scene)


def other_scene_rows(scenes: Sequence[str]) -> np.ndarray:
    """For each pair of a batch, the batch row whose view 2 it takes instead of its own: always a pair of
    another scene, and each view 2 used once whenever the batch allows.

    The rows are sorted by scene (stably) and each takes the view 2 half the batch further along that order
    (``floor(B / 2)``, cyclically): a permutation in which no pair meets its own scene whenever no scene holds
    more than half the batch. A pair of a scene holding more than that (rare with shuffled, interleaved
    shards) takes, in turn, the view 2 of the other scenes' rows, some of them twice. It depends on the
    scene names and their order only, so a resumed run draws the same.

    Parameters
    ----------
    scenes : (B,) str
        Each pair's ``dataset/scene_id``.

    Returns
    -------
    (B,) int64

    Raises
    ------
    ValueError
        Every pair of the batch is of one scene: there is no other scene to take view 2 from.
    """
    n = len(scenes)
    if len(set(scenes)) < 2:
        raise ValueError(f"a batch of {n} pair(s) of one scene ({scenes[0] if n else 'none'}): --view2 other-scene "
                         "needs batches of two scenes at least (a larger --batch-size, or shards of more scenes)")
    order = sorted(range(n), key=lambda i: (scenes[i], i))
    src = np.empty(n, np.int64)
    for k, i in enumerate(order):
        src[i] = order[(k + n // 2) % n]
    same = [i for i in order if scenes[src[i]] == scenes[i]]
    for k, i in enumerate(same):  # a scene of more than half the batch: the other scenes' view 2, in turn
        others = [j for j in order if scenes[j] != scenes[i]]
        src[i] = others[k % len(others)]
    return src


def other_scene_view2(batch: dict) -> dict:
    """``batch`` with each pair's view 2 replaced by another scene's (:func:`other_scene_rows`, from the
    ``pair_id`` values, ``dataset/scene_id/...``); ``view2_of`` names the pair each view 2 came from."""
    unnamed = [pid for pid in batch["pair_id"] if not isinstance(pid, str) or "/" not in pid]
    if unnamed:  # a shard without pair_id (its rows named <file>#<row>): no scene to tell apart
        raise ValueError(f"--view2 other-scene needs each pair's scene, from its pair_id (dataset/scene_id/...); "
                         f"pair {unnamed[0]!r} has none (a shard without a pair_id column, or a null one)")
    scenes = [pid.rsplit("/", 1)[0] for pid in batch["pair_id"]]
    src = other_scene_rows(scenes)
    return {**batch, "img2": batch["img2"][torch.from_numpy(src)],
            "view2_of": [batch["pair_id"][j] for j in src.tolist()]}  # fmt: skip
