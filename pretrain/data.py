"""Pairs for CroCo pre-training, streamed from pairgen's Parquet shards.

:class:`PairStream` is a ``torch.utils.data.IterableDataset`` that yields
whole batches; use it with ``DataLoader(stream, batch_size=None,
num_workers=W)``. A batch is ``{"img1": (B, 3, S, S) float32, "img2": (B, 3,
S, S) float32, "pair_id": list[str]}`` (uint8 images with ``output="uint8"``);
view 1 is CroCo's masked target, view 2 the context. This module reads only the shard format (DESIGN.md,
``pairs/shard-NNNNN.parquet``) with pyarrow; it imports nothing else of the
project.

Shards
------
:func:`find_shards` takes a folder (the shards ``manifest.json`` lists, or
else its ``shard-*.parquet`` sorted by name) or a list of files. Building a
stream opens every footer (cheap: no data is read) and checks that the file
is Parquet and that ``image1`` and ``image2`` are structs with binary
``bytes`` (``pair_id``, when present, a string); the row counts of the row
groups are all the plan needs. A shard that fails, then or when one of its
row groups is read, raises :class:`ShardError` naming the file and the
problem.

Plan: which pairs, in which batch, on which rank and worker
-----------------------------------------------------------
Computed from the row groups' row counts alone, identically on every rank.
The ``N`` pairs get a *canonical index* (shards in order, row groups in
order, rows in order). For an epoch:

1. The row groups are permuted by ``default_rng([seed, epoch])``; their
   rows, laid end to end in that order, give each pair an *epoch position*
   ``0 .. N-1``.
2. Every rank takes ``n = N // (world_size * batch_size)`` batches
   (:meth:`PairStream.batches_per_epoch`, the same on every rank and every
   epoch): rank ``r`` owns positions ``[r n B, (r+1) n B)``. The last ``N -
   world_size n B < world_size B`` positions are dropped; as the row group
   order changes each epoch, so do the dropped pairs.
3. A rank's range is cut into ``lanes`` contiguous chunks (lane ``l`` holds
   the rank's batches ``j`` with ``j % lanes == l``, so chunk sizes differ by
   at most one batch). A lane is shuffled in windows of ``shuffle_buffer``
   rows (rounded down to whole batches; each window permuted by
   ``default_rng([seed, epoch, SALT, window start])``) and cut into batches:
   lane ``l``'s ``q``-th batch is the rank's batch ``j = q * lanes + l``.

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

Resume: :meth:`PairStream.set_position` with the number of batches this rank
already consumed in the epoch makes the next iteration yield exactly the
batches the uninterrupted epoch would have yielded from there on, pixels
included (same ``lanes``, i.e. the same ``num_workers`` unless ``lanes`` is
fixed). Set the epoch first: :meth:`PairStream.set_epoch` sets the position
back to 0. The DataLoader must start its workers afresh for each epoch
(``persistent_workers=False``, the default), as they receive a copy of the
stream, epoch and position included, when iteration begins.

Augmentation (CroCo's ``crop224+acolor``, then ``ToTensor`` and ``Normalize``)
------------------------------------------------------------------------------
Every random number of a pair is a counter-based hash (splitmix64) of
``(seed, epoch, canonical index, slot)``: the same pair gets the same crops
and colours in an epoch whatever the rank, worker, lane or resume point.

* **crop**: each view an independent random ``crop x crop`` window (images
  smaller than the crop are an error); ``crop=None`` keeps the full image.
* **colour jitter**, asymmetric: brightness ``b``, contrast ``c`` and
  saturation ``s`` factors uniform in ``jitter_range`` (0.6--1.4), drawn
  independently for each view; hue untouched. The operations are
  torchvision's: brightness multiplies by ``b``; contrast blends with the
  mean ``m`` of the greyscale image (``c x + (1 - c) m``); saturation blends
  with the greyscale image (``s x + (1 - s) grey(x)``), greyscale being
  ITU-R 601 luma (0.299, 0.587, 0.114). The three are linear maps that
  commute (saturation keeps the grey mean), so **the order does not matter**
  and they are applied as one per-pixel map, ``y = b (c (s x + (1 - s)
  grey(x)) + (1 - c) m)``, clamped to 0..255 and rounded to uint8 once at the
  end, as CroCo's PIL images are. torchvision (random order) also clamps
  after each operation; the two agree exactly up to that rounding wherever no
  intermediate value leaves the 0..255 range, and differ only on pixels that
  saturate midway.
* **normalisation**: ``(y / 255 - mean) / std`` with ImageNet's mean and
  std; off, the output is ``y / 255``. With everything off the output is the
  decoded image divided by 255, exactly.

Speed
-----
JPEGs are decoded with ``cv2.imdecode`` (libjpeg-turbo; faster than Pillow,
see ``benchmarks/loader.py``) straight from the Arrow buffers, in OpenCV's
BGR order, which the colour code indexes rather than converts. A view is
then processed while it is in cache, with a handful of OpenCV SIMD calls on
the uint8 crop (greyscale, three channel blends) and one uint8-to-float32
pass per channel written straight into the batch tensor; whole-batch numpy
or torch passes over float32 were several times slower (a batch of float32
views does not fit in cache). Batch memory (:class:`BatchMemory`) is reused
in the main process and allocated in shared memory in workers: fresh pages
cost as much as the transforms. Decoding is most of what remains. Handing
float32 batches from worker processes to the main process costs 1.2 MB of
shared memory a pair; ``output="uint8"`` hands over a quarter of that and
leaves the float conversion and normalisation to the GPU (:func:`to_float`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augment",
    "BatchMemory",
    "EpochPlan",
    "PairStream",
    "ShardError",
    "ShardIndex",
    "decode_bgr",
    "find_shards",
    "sample_uniforms",
    "to_float",
]

log = logging.getLogger(__name__)

# The shard format (DESIGN.md), re-declared: this package does not import manifests.
IMAGE_COLUMNS = ("image1", "image2")
ID_COLUMN = "pair_id"
SIZE_COLUMNS = ("width", "height")
SHARD_GLOB = "shard-*.parquet"
MANIFEST = "manifest.json"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 greyscale weights (R, G, B), as OpenCV, PIL and torchvision
JITTER_RANGE = (0.6, 1.4)  # CroCo's acolor: brightness, contrast and saturation factors
SLOTS = 10  # random numbers a pair uses: (top, left, brightness, contrast, saturation) per view
WINDOW_SALT = 0x5EED  # separates the window shuffles' seeds from the row group permutation's


class ShardError(ValueError):
    """A shard that cannot be read, or does not follow the pairs schema; the message names the file."""


# --------------------------------------------------------------------------- shards


def find_shards(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The shard files of ``path``.

    Parameters
    ----------
    path
        A folder: the shards its ``manifest.json`` lists (each must exist), or
        without a manifest its ``shard-*.parquet`` sorted by name. A single
        ``.parquet`` file. Or a list of files, kept in the given order.

    Raises
    ------
    ValueError
        Nothing there, no shard in it, a listed shard missing, an unreadable
        manifest; the message names the path.
    """
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        if not files:
            raise ValueError("no shard files given")
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f}: shard file not found")
        return files
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path}: no such shard folder or file")
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())["shards"]
            names = [e["file"] for e in entries]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{manifest}: not a readable pairs manifest ({type(e).__name__}: {e})") from e
        if not names:
            raise ValueError(f"{manifest}: lists no shard")
        files = []
        for name in names:
            if Path(name).is_absolute() or ".." in Path(name).parts:  # manifests are data, not trusted paths
                raise ValueError(f"{manifest}: shard entry {name!r} points outside {path}")
            if not (path / name).is_file():
                raise ValueError(f"{manifest}: lists {name}, which is missing from {path}")
            files.append(path / name)
        return files
    files = sorted(path.glob(SHARD_GLOB))
    if not files:
        raise ValueError(f"{path}: no {SHARD_GLOB} files (and no {MANIFEST})")
    return files


@dataclass(frozen=True)
class ShardIndex:
    """The row groups of a list of shards, from their footers.

    ``group_file[g]``, ``group_index[g]``, ``group_rows[g]`` and
    ``group_start[g]`` (canonical index of the group's first row) describe the
    ``g``-th row group in canonical order (shards in order, then row groups).
    """

    files: tuple[Path, ...]
    has_ids: tuple[bool, ...]  # per file: a pair_id column to read
    group_file: np.ndarray  # (G,) int64
    group_index: np.ndarray  # (G,) int64, row group within its file
    group_rows: np.ndarray  # (G,) int64
    group_start: np.ndarray  # (G,) int64
    min_sizes: tuple[tuple[int, int] | None, ...]  # per file: smallest (width, height) in the footer statistics

    @property
    def pairs(self) -> int:
        return int(self.group_rows.sum())

    @classmethod
    def build(cls, files: Sequence[Path]) -> ShardIndex:
        """Check every footer and schema (reads no data).

        Raises
        ------
        ShardError
            A file that is not Parquet (or is truncated: the footer is at
            the end), or whose image columns are missing or of another type.
        """
        has_ids, sizes, gf, gi, gr = [], [], [], [], []
        for k, path in enumerate(files):
            try:
                with pq.ParquetFile(path) as pf:
                    schema, meta = pf.schema_arrow, pf.metadata
            except (OSError, pa.ArrowException) as e:
                raise ShardError(f"{path}: not a readable Parquet file ({e})") from e
            for name in IMAGE_COLUMNS:
                problem = _image_column_problem(schema, name)
                if problem:
                    raise ShardError(f"{path}: {problem}; not a pairs shard")
            ids = ID_COLUMN in schema.names
            if ids and not (pa.types.is_string(t := schema.field(ID_COLUMN).type) or pa.types.is_large_string(t)):
                raise ShardError(f"{path}: column {ID_COLUMN!r} is {t}, expected string")
            has_ids.append(ids)
            sizes.append(_footer_min(meta, SIZE_COLUMNS))
            for g in range(meta.num_row_groups):
                gf.append(k)
                gi.append(g)
                gr.append(meta.row_group(g).num_rows)
        rows = np.asarray(gr, np.int64)
        return cls(
            files=tuple(Path(f) for f in files),
            has_ids=tuple(has_ids),
            group_file=np.asarray(gf, np.int64),
            group_index=np.asarray(gi, np.int64),
            group_rows=rows,
            group_start=np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64) if len(rows) else rows,
            min_sizes=tuple(sizes),
        )

    def locate(self, canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row group, row within it) of each canonical index."""
        g = np.searchsorted(self.group_start, canonical, side="right") - 1
        return g, canonical - self.group_start[g]


def _image_column_problem(schema: pa.Schema, name: str) -> str | None:
    if name not in schema.names:
        return f"column {name!r} is missing"
    t = schema.field(name).type
    if not pa.types.is_struct(t) or t.get_field_index("bytes") < 0:
        return f"column {name!r} is {t}, expected struct<bytes: binary, path: string>"
    b = t.field("bytes").type
    if not (pa.types.is_binary(b) or pa.types.is_large_binary(b)):
        return f"column {name!r}.bytes is {b}, expected binary"
    return None


def _footer_min(meta: pq.FileMetaData, names: tuple[str, ...]) -> tuple[int, ...] | None:
    """Minimum of each integer column over the file, from the row group statistics; None if any is unknown."""
    if meta.num_row_groups == 0:
        return None
    where = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    if not all(n in where for n in names):
        return None
    mins = []
    for n in names:
        values = []
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(where[n]).statistics
            if st is None or not st.has_min_max or not isinstance(st.min, int):
                return None
            values.append(st.min)
        mins.append(min(values))
    return tuple(mins)


# --------------------------------------------------------------------------- plan


class EpochPlan:
    """One rank's batches for one epoch, as canonical pair indices (see the module docstring).

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


# --------------------------------------------------------------------------- augmentation

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_uniforms(seed: int, epoch: int, index: np.ndarray, slots: int = SLOTS) -> np.ndarray:
    """Uniform numbers in [0, 1) that depend on ``(seed, epoch, index, slot)`` only.

    Returns ``(len(index), slots)`` float64: splitmix64 at counter ``index *
    slots + slot`` of a stream keyed by ``(seed, epoch)``.
    """
    with np.errstate(over="ignore"):
        key = _splitmix(np.array([seed % 2**64], np.uint64) + _GOLDEN)
        key = _splitmix(key ^ np.array([epoch % 2**64], np.uint64))
        counter = np.asarray(index, np.uint64)[:, None] * np.uint64(slots) + np.arange(slots, dtype=np.uint64)
        z = _splitmix(key + counter * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def decode_bgr(buffer: np.ndarray | bytes) -> np.ndarray | None:
    """A JPEG (or PNG) as ``(H, W, 3)`` uint8 in OpenCV's BGR order; None if it does not decode."""
    return cv2.imdecode(np.frombuffer(buffer, np.uint8), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class Augment:
    """CroCo's per-view transforms: random crop, colour jitter, normalisation (module docstring)."""

    crop: int | None = 224  # None: keep the whole image
    jitter: bool = True
    normalize: bool = True
    jitter_range: tuple[float, float] = JITTER_RANGE

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop must be at least 1 pixel (or None for no crop), got {self.crop}")
        lo, hi = self.jitter_range
        if not 0 <= lo <= hi:
            raise ValueError(f"jitter range must satisfy 0 <= low <= high, got {self.jitter_range}")

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        return (height, width) if self.crop is None else (self.crop, self.crop)

    def apply(self, bgr: np.ndarray, out: np.ndarray, u: np.ndarray) -> None:
        """Transform one decoded view into ``out``.

        Parameters
        ----------
        bgr : (H, W, 3) uint8
            The decoded image, BGR (OpenCV's order).
        out : (3, S, S) float32 or uint8
            Written in place, RGB; each ``out[c]`` must be C-contiguous.
            uint8 receives the cropped, jittered view before normalisation.
        u : (5,) float
            Uniforms in [0, 1): crop top, crop left, brightness, contrast, saturation.
        """
        H, W = bgr.shape[:2]
        if self.crop is not None:
            S = self.crop
            top = min(int(u[0] * (H - S + 1)), H - S)
            left = min(int(u[1] * (W - S + 1)), W - S)
            bgr = bgr[top : top + S, left : left + S]
        planes = cv2.split(bgr)[::-1]  # R, G, B; each (S, S) uint8, contiguous
        if self.jitter:
            lo, hi = self.jitter_range
            b, c, s = lo + (hi - lo) * np.asarray(u[2:5], np.float64)
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            means = cv2.mean(bgr)  # (B, G, R, 0)
            m = LUMA[0] * means[2] + LUMA[1] * means[1] + LUMA[2] * means[0]
            # y = b (c (s x + (1 - s) grey) + (1 - c) m): saturating, rounding uint8 (module docstring)
            planes = [cv2.addWeighted(p, b * c * s, grey, b * c * (1 - s), b * (1 - c) * m) for p in planes]
        if out.dtype == np.uint8:  # normalised later, on the device (to_float)
            for k, p in enumerate(planes):
                np.copyto(out[k], p)
            return
        for k, p in enumerate(planes):
            dst = out[k]
            if self.normalize:
                scale, shift = 1.0 / (255.0 * IMAGENET_STD[k]), -IMAGENET_MEAN[k] / IMAGENET_STD[k]
                if cv2.addWeighted(p, scale, p, 0.0, shift, dst=dst, dtype=cv2.CV_32F).ctypes.data != dst.ctypes.data:
                    raise ValueError("output planes must be C-contiguous float32")  # OpenCV wrote elsewhere
            else:
                np.divide(p, np.float32(255.0), out=dst)  # exactly the decoded value / 255


def to_float(images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """uint8 batches (``output="uint8"``) to what the float32 output holds, on their device.

    ``images`` is ``(B, 3, S, S)`` uint8, RGB; returns float32 ``images /
    255``, normalised with ImageNet's mean and std when ``normalize``.
    """
    x = images.to(torch.float32).div_(255.0)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
    return x


# --------------------------------------------------------------------------- batch memory


class BatchMemory:
    """Where a batch's tensors live: chosen to be cheap to fill and to hand over.

    * In a DataLoader worker (``shared``): shared memory from the start, so
      that handing the batch to the main process sends a file descriptor
      instead of copying it there (what the DataLoader otherwise does).
    * In the main process: ordinary memory, *reused* once nothing refers to
      it any more (no tensor, view or numpy array of an earlier batch alive,
      by the storage's reference count). A fresh 38 MB float32 batch costs
      the kernel about 10,000 page faults and zeroed pages before a pixel is
      written, about as long as cropping and jittering it.
    """

    KEEP = 6  # storages kept for reuse: a few batches of two views

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self._pool: list[torch.UntypedStorage] = []
        self._can_reuse = hasattr(torch._C, "_storage_Use_Count")  # else every batch is new memory

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if self.shared:
            if hasattr(torch.UntypedStorage, "_new_shared"):
                nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
                return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, shape)
            return torch.empty(shape, dtype=dtype).share_memory_()
        nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
        for storage in self._pool:
            if storage.nbytes() == nbytes and torch._C._storage_Use_Count(storage._cdata) == 1:  # only the pool
                return torch.empty(0, dtype=dtype).set_(storage, 0, shape)
        tensor = torch.empty(shape, dtype=dtype)
        if self._can_reuse and len(self._pool) < self.KEEP:
            self._pool.append(tensor.untyped_storage())
        return tensor


# --------------------------------------------------------------------------- reading


@dataclass
class _Group:
    """One row group's image bytes (Arrow buffers as numpy, no copy) and pair ids."""

    data: tuple[np.ndarray, np.ndarray]  # per view: all the JPEG bytes end to end
    offsets: tuple[np.ndarray, np.ndarray]  # per view: (rows + 1,) offsets into data
    ids: list[str]

    def image(self, view: int, row: int) -> np.ndarray:
        o = self.offsets[view]
        return self.data[view][o[row] : o[row + 1]]


def _read_group(index: ShardIndex, g: int) -> _Group:
    path, rg = index.files[index.group_file[g]], int(index.group_index[g])
    ids = index.has_ids[index.group_file[g]]
    columns = [f"{c}.bytes" for c in IMAGE_COLUMNS] + ([ID_COLUMN] if ids else [])
    try:
        with pq.ParquetFile(path) as pf:
            table = pf.read_row_group(rg, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{path}: row group {rg} could not be read ({e})") from e
    expected = int(index.group_rows[g])
    if table.num_rows != expected:
        raise ShardError(f"{path}: row group {rg} holds {table.num_rows} rows, its footer said {expected}")
    data, offsets = [], []
    for name in IMAGE_COLUMNS:
        arr = pc.struct_field(table.column(name).combine_chunks(), "bytes")
        if arr.null_count:
            row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise ShardError(f"{path}: row group {rg}, row {row}: {name} has no image bytes")
        _, off_buf, data_buf = arr.buffers()
        kind = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
        offsets.append(np.frombuffer(off_buf, kind)[arr.offset : arr.offset + len(arr) + 1])
        data.append(np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8))
    if ids:
        pair_ids = table.column(ID_COLUMN).to_pylist()
    else:
        start = int(index.group_start[g])
        pair_ids = [f"{path.name}#{start + r}" for r in range(expected)]
    return _Group(tuple(data), tuple(offsets), pair_ids)


# --------------------------------------------------------------------------- dataset


class PairStream(IterableDataset):
    """Batches of CroCo pairs from pairs shards, for ``DataLoader(stream, batch_size=None, num_workers=W)``.

    Parameters
    ----------
    shards
        A shards folder, a shard file, or a list of shard files (:func:`find_shards`).
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

    Raises
    ------
    ValueError
        No shards, bad arguments, or fewer pairs than one batch on every rank.
    ShardError
        A shard that is not readable Parquet or does not follow the pairs
        schema (checked on the footers here), or whose images are smaller
        than the crop (when the footers carry width/height statistics).
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
        self.augment = Augment(crop=crop, jitter=jitter, normalize=normalize, jitter_range=jitter_range)
        self.index = ShardIndex.build(find_shards(shards))
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
        plan = self.plan(lanes=workers)
        mine = [plan.batch(j) for j in range(self.position + worker, plan.batches, workers)]
        located = [self.index.locate(c) for c in mine]
        last_use: dict[int, int] = {}
        for i, (groups, _) in enumerate(located):
            for g in np.unique(groups).tolist():
                last_use[g] = i
        cache: dict[int, _Group] = {}
        memory = BatchMemory(shared=info is not None)
        for i, (canonical, (groups, rows)) in enumerate(zip(mine, located)):
            for g in np.unique(groups).tolist():
                if g not in cache:
                    cache[g] = _read_group(self.index, g)
            yield self._make_batch(canonical, groups, rows, cache, memory)
            for g in [g for g in cache if last_use[g] == i]:
                del cache[g]

    def _make_batch(self, canonical: np.ndarray, groups: np.ndarray, rows: np.ndarray,
                    cache: dict[int, _Group], memory: BatchMemory) -> dict:  # fmt: skip
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
                    raise ShardError(f"{self._where(g, r)}: {IMAGE_COLUMNS[view]} of pair {group.ids[r]!r} "
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
            raise ShardError(f"{self._where(g, r)}: {IMAGE_COLUMNS[view]} of pair {pair!r} is {W}x{H}, "
                             f"smaller than the {crop}x{crop} crop")  # fmt: skip
        if crop is None and (H, W) != S:
            raise ShardError(f"{self._where(g, r)}: {IMAGE_COLUMNS[view]} of pair {pair!r} is {W}x{H}, the batch's "
                             f"first image {S[1]}x{S[0]}; without a crop all images must have one size")  # fmt: skip

    def _where(self, g: int, r: int) -> str:
        return f"{self.index.files[self.index.group_file[g]]}: row group {self.index.group_index[g]}, row {r}"
