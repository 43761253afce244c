"""Does a checkpoint's encoder know 3D? Frozen-encoder probes on held-out scenes: depth and correspondence.

``pretrain probe`` freezes the encoder of a ``pretrain run`` checkpoint and
runs its tasks (``--task``, a comma list):

* ``depth`` (the default): a small head trained on its patch features to
  predict depth on the views of training scenes, evaluated on the views of
  held-out scenes. The same head, trained the same way (same seed, same
  steps, same views), is trained on a randomly initialised encoder of the
  same architecture: the baseline, in the same call.
* ``correspondence``: held-out pairs chosen by covisibility, each patch of
  view 1 matched to its nearest patch of view 2 in feature space, scored
  against the true position from depth and poses, by covisibility band
  (:mod:`pretrain.correspondence`); baselines in the same call: the
  random-init encoder, raw pixels, the patch at the same place, chance.

Views
    Every ``**/*.parquet`` under the ``--views`` folders that is a views
    file (``manifests.views``); each file's dataset and scene id come from its
    ``pairgen`` schema metadata, never from its path or a manifest. At most
    ``views_per_scene`` views of a scene are used (a seeded choice), each
    resized so that its shorter side is the model's ``img_size`` (area
    interpolation for RGB, nearest for depth, so invalid pixels stay invalid)
    and centre-cropped to a square.
Head
    Per patch token (B, N, E) -> a ``head_cells`` x ``head_cells`` grid of
    log depths for that patch (a linear map, or an MLP with ``head_hidden``
    units), upsampled bilinearly to the pixels; trained with AdamW (a linear
    warm-up and a half cosine, as ``pretrain run``) on the L1 error of log
    depth over valid pixels, on features computed once (the encoder is
    frozen: no augmentation).
Metrics (NYUv2 protocol)
    Per held-out image: valid pixels are those with ground truth in
    ``(MIN_DEPTH, max_depth]``; the prediction is scale-aligned by the median
    ratio (``s = median(gt) / median(pred)`` over the valid pixels), then
    clipped to ``[MIN_DEPTH, max_depth]``; AbsRel ``mean |p - g| / g``, RMSE
    ``sqrt(mean (p - g)^2)``, RMSE(log) ``sqrt(mean (ln p - ln g)^2)`` and
    δ < 1.25 ``mean(max(p/g, g/p) < 1.25)`` are computed per image, then
    averaged over the images (as the NYUv2 evaluation code of Eigen et al.,
    BTS and AdaBins does).
Cross-view completion loss on held-out pairs
    Pairs are formed from the held-out views' cameras: each chosen view's
    partner is the view of the same scene (among all of the file's views)
    with the nearest camera centre at least ``PAIR_MIN_DISTANCE`` away whose
    optical axis is within ``PAIR_MAX_ANGLE`` degrees, at most
    ``PAIR_MAX_DISTANCE`` away (covisibility is pairgen's, which this package
    cannot import). The masked loss of ``pretrain run`` (90 % masked, the
    same seeded masks for every model) with the true view 2 and with a view 2
    of another scene: the gap measures how much the model uses view 2.

Correspondence pairs
    Each held-out scene's chosen views (view 1) against every view of its
    file (view 2): the pair covisibility of :func:`pretrain.correspondence.covisibility_of`
    (pairgen's measure, on a grid of about 32 x 32 pixels a view), a pair
    once; in each band of ``corr_bands`` up to ``corr_pairs`` pairs, a
    seeded choice that takes one pair of each view 1 before a second of any.

Everything is deterministic from ``seed``: the scene split, the views, the
correspondence pairs, the random-init encoder (drawn as ``pretrain run`` draws its initial weights, so
with the run's own ``--seed`` it is exactly the model that run started from), the head's initialisation and batches, the masks.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from manifests.codecs import decode_depth, decode_rgb
from manifests.io import atomic_path, write_json_atomic
from manifests.options import ConfigError, check, option
from manifests.views import read_views, read_views_meta
from pretrain.correspondence import (
    RADII,
    chance_recall,
    covisibility_of,
    fit_transform,
    nearest_patches,
    pair_recall,
    patch_errors,
    patch_features,
    patch_matches,
)
from manifests.store import ranged

__all__ = ["MIN_HELDOUT_VIEWS", "PROBE_FORMAT", "TASKS", "HeldPairs", "ProbeConfig", "ProbeError", "ProbeOptionError",
           "ProbeViews", "band_of", "correspondence_lines", "correspondence_scores", "depth_metrics", "find_views",
           "held_pairs", "load_probe_views", "partner_rows", "probe", "split_scenes", "summary_line",
           "summary_lines"]  # fmt: skip

log = logging.getLogger(__name__)

PROBE_FORMAT = "pretrain-probe/2"  # 2: tasks; correspondence; depth only when asked for
MIN_DEPTH = 1e-3  # metres: the NYUv2 evaluation's lower cap
DELTA = 1.25  # the δ threshold
PAIR_MIN_DISTANCE, PAIR_MAX_DISTANCE, PAIR_MAX_ANGLE = 0.1, 1.5, 30.0  # metres, metres, degrees
SPLIT_SALT, VIEW_SALT, HEAD_SALT, PAIR_SALT, CORR_SALT = 0x5C1, 0x71E, 0x4EAD, 0xFA1, 0xC0CC  # separate the draws
VIEW_COLUMNS = ["view_id", "image", "depth", "cam2world", "width", "height"]
PAIR_COLUMNS = ["view_id", "image", "depth", "K", "cam2world"]  # what the correspondence pairs read
TASKS = ("depth", "correspondence")
# fewer held-out views than this, and the probe warns: the standard error of a mean over n images is the per-image
# spread over sqrt(n), so below 32 it exceeds a sixth of that spread, about the gaps the probe is read for
MIN_HELDOUT_VIEWS = 32


class ProbeError(ValueError):
    """An input the probe cannot use (a checkpoint, a views folder or file: exit status 1); the message names it."""


class ProbeOptionError(ProbeError):
    """Options the views cannot satisfy (an unknown scene, overlapping or empty splits: exit status 2, as a bad
    option value); the message names the option."""


@dataclass
class ProbeConfig:
    """A probe's settings; each field is a ``pretrain probe`` flag, stored in the results."""

    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the scene split, the views chosen, the random-init "
                       "encoder, the head's training and the masks, and the correspondence pairs and ties")  # fmt: skip
    holdout: str | None = option(None, metavar="SCENES", help="held-out scenes: a comma list of SCENE_ID or "
                                 "DATASET/SCENE_ID (None: a seeded split by scene, --holdout-fraction)")
    train_scenes: str | None = option(None, metavar="SCENES", help="scenes the head trains on, a comma list as "
                                      "--holdout (None: every scene not held out)")
    holdout_fraction: float = option(0.25, above=0, below=1, help="share of the scenes held out when --holdout "
                                     "is not given (at least one)")
    views_per_scene: int = option(64, min=1, max=1_000_000, help="views used per scene, at most (a seeded choice); "
                                  "under 32 held-out views in all, the probe warns that its numbers mean little")
    head_steps: int = option(300, min=1, max=10**7, help="optimizer steps of the depth head")
    head_batch: int = option(16, min=1, max=65_536, help="views per step of the depth head")
    head_lr: float = option(1e-3, above=0, max=10, help="peak learning rate of the depth head (AdamW)")
    head_cells: int = option(4, min=1, max=64, help="log depths the head predicts per patch side, upsampled "
                             "bilinearly to the pixels (the patch size: one per pixel)")
    head_hidden: int = option(256, min=0, max=65_536, help="hidden units of the head's MLP (0: a linear head)")
    max_depth: float = option(10.0, above=0, max=65.535, help="metres: deeper ground truth is not evaluated, "
                              "predictions are clipped to it (NYUv2's 10 m)")
    cvc_pairs: int = option(64, min=0, max=1_000_000, help="held-out pairs for the cross-view completion loss "
                            "(0: skip it)")
    batch_size: int = option(32, min=1, max=65_536, help="views per forward pass of the encoder")
    task: str = option("depth", metavar="TASKS", help="what to probe, a comma list: depth (a head on the frozen "
                       "features predicts depth, NYUv2 metrics; with the held-out CVC loss), correspondence (each "
                       "patch of view 1 of held-out pairs matched to its nearest patch of view 2 in feature space, "
                       "recall within 1, 2, 4 patches of the true position from depth and poses, by covisibility "
                       "band)")  # fmt: skip
    corr_pairs: int = option(32, min=1, max=1_000_000, help="held-out pairs a covisibility band for --task "
                             "correspondence, at most (a seeded choice)")
    corr_bands: str = option("0.1,0.3,0.5,0.8,1.0", metavar="EDGES", help="covisibility band edges for --task "
                             "correspondence: bands [a, b), the last [a, b]")

    def __post_init__(self) -> None:
        check(self)
        names = [t.strip() for t in str(self.task).split(",")]
        if not all(t in TASKS for t in names) or len(set(names)) != len(names):
            raise ConfigError("task", f"must be a comma list of {', '.join(TASKS)}, each once, got {self.task!r}")
        try:
            edges = [float(e) for e in str(self.corr_bands).split(",")]
        except ValueError:
            edges = []
        if len(edges) < 2 or not all(0 <= a < b <= 1 for a, b in zip(edges, edges[1:])):
            raise ConfigError("corr_bands", "must be two or more increasing covisibilities in [0, 1], comma "
                              f"separated (0.1,0.3,0.5,0.8,1.0), got {self.corr_bands!r}")  # fmt: skip
        if 16 % self.head_cells:  # pretrain.train.PATCH, the presets' 16-pixel patch
            raise ConfigError("head_cells", f"must divide the 16-pixel patch, got {self.head_cells}")
        for name in ("holdout", "train_scenes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(name, f"must be a comma list of scenes, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks asked for, in :data:`TASKS` order."""
        names = {t.strip() for t in self.task.split(",")}
        return tuple(t for t in TASKS if t in names)

    @property
    def bands(self) -> list[tuple[float, float]]:
        """The correspondence probe's covisibility bands, ``[lo, hi)`` (the last ``[lo, hi]``)."""
        edges = [float(e) for e in self.corr_bands.split(",")]
        return list(zip(edges, edges[1:]))


def band_label(band: tuple[float, float], last: bool) -> str:
    """``[0.1, 0.3)``, or ``[0.8, 1]`` for the last band (closed)."""
    return f"[{band[0]:g}, {band[1]:g}{']' if last else ')'}"


# ---- views


def find_views(folders: list[Path]) -> dict[str, Path]:
    """``dataset/scene_id`` -> views file, for every views file under ``folders`` (metadata, not paths).

    Parquet files that are not views files (pairs shards, say) are skipped.

    Raises
    ------
    ProbeError
        A folder that does not exist (or is a file), no views file at all, a views file without a depth
        column, or one scene in two files.
    """
    import pyarrow.parquet as pq

    found: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            raise ProbeError(f"{folder}: a file, not a views folder (give the folder holding the views files, "
                             "OUT/views)")  # fmt: skip
        if not folder.is_dir():
            raise ProbeError(f"{folder}: no such views folder")
        for path in sorted(folder.glob("**/*.parquet")):
            try:
                meta = read_views_meta(path)
            except OSError as e:
                log.info("skipping %s: %s", path, e)
                continue
            key = f"{meta.dataset}/{meta.scene_id}"
            if "depth" not in pq.read_schema(ranged(path)).names:
                raise ProbeError(f"{path}: no depth column: the probe needs views with depth")
            if key in found:
                raise ProbeError(f"scene {key!r} is in two views files: {found[key]} and {path}")
            found[key] = path
    if not found:
        raise ProbeError(f"{', '.join(map(str, folders))}: no views files (**/*.parquet with pairgen views metadata)")
    return found


def _resolve(names: str, keys: list[str], flag: str) -> list[str]:
    """A comma list of SCENE_ID or DATASET/SCENE_ID -> scene keys; an unknown or ambiguous name raises."""
    out = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        hits = [k for k in keys if k == name or k.split("/", 1)[1] == name]
        if len(hits) != 1:
            shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
            what = "no scene" if not hits else f"{len(hits)} scenes ({', '.join(hits)}) for"
            raise ProbeOptionError(f"{flag}: {what} {name!r} in the views (found: {shown})")
        if hits[0] not in out:
            out.append(hits[0])
    return out


def split_scenes(keys: list[str], config: ProbeConfig) -> tuple[list[str], list[str]]:
    """(training scenes, held-out scenes), sorted: ``--holdout``/``--train-scenes``, or a seeded split.

    Raises
    ------
    ProbeOptionError
        An unknown scene, overlapping lists, or a side the options leave empty.
    ProbeError
        The views hold one scene only (no option given): nothing to hold out.
    """
    keys = sorted(keys)
    train = _resolve(config.train_scenes, keys, "--train-scenes") if config.train_scenes is not None else None
    if config.holdout is not None:
        held = _resolve(config.holdout, keys, "--holdout")
    else:
        pool = [k for k in keys if train is None or k not in train]
        order = np.random.default_rng([config.seed, SPLIT_SALT]).permutation(len(pool))
        count = max(1, round(config.holdout_fraction * len(keys))) if len(keys) > 1 else 0
        held = [pool[i] for i in order[: min(count, len(pool))]]
    if train is not None:
        both = sorted(set(train) & set(held))
        if both:
            raise ProbeOptionError(f"--train-scenes and --holdout overlap: {', '.join(both)} (a held-out scene must "
                                   "not train the head)")  # fmt: skip
    else:
        train = [k for k in keys if k not in held]
    if not held:
        chosen = config.holdout is not None or config.train_scenes is not None  # the options emptied it, not the views
        error = ProbeOptionError if chosen else ProbeError
        raise error(f"the held-out split is empty ({len(keys)} scene(s) in the views: the probe needs one scene to "
                    "train the head and one held out)")  # fmt: skip
    if not train:
        raise ProbeOptionError(f"no scene left to train the head: all {len(keys)} scene(s) are held out (--holdout, "
                               "--holdout-fraction)")  # fmt: skip
    return sorted(train), sorted(held)


def _fit(image: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Resize so the shorter side is ``size``, then crop the centre square: (H, W[, C]) -> (size, size[, C])
    (:func:`pretrain.correspondence.fit_transform`, the one rule)."""
    new_w, new_h, left, top = fit_transform(*image.shape[:2], size)
    if (new_h, new_w) != image.shape[:2]:
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return image[top : top + size, left : left + size]


@dataclass
class ProbeViews:
    """The views of one scene the probe uses, decoded at the model's size (:func:`load_probe_views`)."""

    key: str  # dataset/scene_id
    path: Path
    view_ids: np.ndarray  # (V,) int64
    rows: np.ndarray  # (V,) int64: their rows in the views file
    images: np.ndarray  # (V, S, S, 3) uint8 RGB
    depth: np.ndarray  # (V, S, S) float32 metres, 0 = invalid
    partners: np.ndarray | None = None  # (V, S, S, 3) uint8: each view's nearby-camera partner (held-out scenes)
    has_partner: np.ndarray | None = None  # (V,) bool


def partner_rows(poses: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each chosen view's partner for the held-out cross-view completion pairs.

    Parameters
    ----------
    poses : (N, 4, 4) float
        Every view's ``cam2world`` (camera looking along its +z axis).
    rows : (V,) int
        The chosen views, rows of ``poses``.

    Returns
    -------
    (V,) int64
        For each of ``rows``, the row of the nearest camera centre at least
        ``PAIR_MIN_DISTANCE`` and at most ``PAIR_MAX_DISTANCE`` away whose
        optical axis is within ``PAIR_MAX_ANGLE`` degrees of the view's, or
        -1 when no camera qualifies.
    """
    centres, axes = poses[:, :3, 3], poses[:, :3, 2]  # (N, 3) each: camera centres, optical axes (+z)
    out = np.full(len(rows), -1, np.int64)
    cos_max = math.cos(math.radians(PAIR_MAX_ANGLE))
    for k, r in enumerate(rows):
        dist = np.linalg.norm(centres - centres[r], axis=1)  # (N,)
        ok = (dist >= PAIR_MIN_DISTANCE) & (dist <= PAIR_MAX_DISTANCE) & (axes @ axes[r] >= cos_max)
        if ok.any():
            out[k] = int(np.flatnonzero(ok)[np.argmin(dist[ok])])
    return out


def _matrices(table, column: str, path: Path) -> np.ndarray:
    """Every view's ``cam2world`` (N, 4, 4) or ``K`` (N, 3, 3) float64; a null or non-finite one is a ProbeError."""
    values = table.column(column).combine_chunks()
    what = "pose" if column == "cam2world" else "intrinsics"
    if values.null_count:
        row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise ProbeError(f"{path}: row {row}: no {what} ({column} is null): the probe pairs views by their cameras")
    side = 4 if column == "cam2world" else 3
    out = np.asarray(values.flatten(), np.float64).reshape(len(values), side, side)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))
    if len(bad):
        raise ProbeError(f"{path}: row {int(bad[0])}: {column} is not finite: the probe pairs views by their cameras")
    return out


def _image(table, row: int, path: Path) -> np.ndarray:
    """The decoded RGB of ``row`` of a views table (H, W, 3) uint8; a null one is a ProbeError."""
    item = table.column("image")[row].as_py()
    if item is None or item.get("bytes") is None:
        raise ProbeError(f"{path}: row {row}: no image (null)")
    return decode_rgb(item["bytes"])


def load_probe_views(key: str, path: Path, config: ProbeConfig, size: int, partners: bool) -> ProbeViews:
    """Read and decode ``views_per_scene`` seeded views of the scene ``key`` from its views file ``path``, at
    ``size`` pixels (and each one's :func:`partner_rows` view when ``partners``).

    Raises
    ------
    ProbeError
        A views file without depth (a missing value, or no valid pixel in any chosen view).
    """
    table, _ = read_views(path, columns=VIEW_COLUMNS)
    n = table.num_rows
    rng = np.random.default_rng([config.seed, VIEW_SALT, zlib.crc32(key.encode())])
    rows = np.sort(rng.choice(n, size=min(n, config.views_per_scene), replace=False))
    column = table.column("depth")
    images, depths = [], []
    for r in rows.tolist():
        item = column[r].as_py()
        if item is None or item.get("bytes") is None:
            raise ProbeError(f"{path}: row {r}: no depth (null): the probe needs views with depth")
        depth, rgb = decode_depth(item["bytes"]), _image(table, r, path)
        if depth.shape != rgb.shape[:2]:
            raise ProbeError(f"{path}: row {r}: depth of {depth.shape[1]}x{depth.shape[0]} for an image of "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")  # fmt: skip
        depths.append(_fit(depth, size, cv2.INTER_NEAREST))
        images.append(_fit(rgb, size, cv2.INTER_AREA))
    depth = np.stack(depths)  # (V, S, S)
    if not (depth > 0).any():
        raise ProbeError(f"{path}: no valid depth in any of its {len(rows)} chosen views (all zero)")
    scene = ProbeViews(key, path, table.column("view_id").to_numpy()[rows].astype(np.int64), rows.astype(np.int64),
                       np.stack(images), depth)  # fmt: skip
    if partners:
        mates = partner_rows(_matrices(table, "cam2world", path), rows)
        scene.has_partner = mates >= 0
        scene.partners = np.zeros_like(scene.images)
        for k, m in enumerate(mates.tolist()):
            if m >= 0:
                scene.partners[k] = _fit(_image(table, m, path), size, cv2.INTER_AREA)
    return scene


# ---- correspondence pairs


@dataclass
class HeldPairs:
    """The correspondence probe's held-out pairs (:func:`held_pairs`), band by band."""

    images: np.ndarray  # (U, S, S, 3) uint8 RGB: every view the pairs use, once, at the model's size
    first: np.ndarray  # (P,) int64: view 1's row of images
    second: np.ndarray  # (P,) int64: view 2's row of images
    target: np.ndarray  # (P, N, 2) float64: where view 1's patches are in view 2 (x, y patches), NaN unmatched
    covisibility: np.ndarray  # (P,) float64
    band: np.ndarray  # (P,) int64: index into ProbeConfig.bands
    ids: list[str]  # dataset/scene_id/VIEW1-VIEW2 (view ids)


def _depth(table, row: int, path: Path) -> np.ndarray:
    """The decoded depth of ``row`` of a views table (H, W) float32 metres; a null one is a ProbeError."""
    item = table.column("depth")[row].as_py()
    if item is None or item.get("bytes") is None:
        raise ProbeError(f"{path}: row {row}: no depth (null): the probe needs views with depth")
    return decode_depth(item["bytes"])


def band_of(covisibility: np.ndarray, bands: list[tuple[float, float]]) -> np.ndarray:
    """(P,) int64: the band of each covisibility, ``[lo, hi)`` (the last ``[lo, hi]``); -1 in none."""
    c = np.asarray(covisibility, np.float64)
    out = np.full(c.shape, -1, np.int64)
    for i, (lo, hi) in enumerate(bands):
        out[(c >= lo) & ((c < hi) | ((c == hi) & (i == len(bands) - 1)))] = i
    return out


def held_pairs(held: list[ProbeViews], config: ProbeConfig, size: int, patch: int, progress=None) -> HeldPairs | None:
    """Up to ``corr_pairs`` held-out pairs a covisibility band (module docstring, "Correspondence pairs"),
    with their images at the model's ``size`` and the true positions of view 1's patches in view 2
    (:func:`pretrain.correspondence.patch_matches`); None when no pair falls in any band.

    Raises
    ------
    ProbeError
        A views file whose views lack depth, intrinsics or a pose.
    """
    bands = config.bands
    cands, files = [], []  # (scene, k: view 1 among the scene's chosen views, row of view 2, covisibility)
    for s, scene in enumerate(held):
        table, _ = read_views(scene.path, columns=PAIR_COLUMNS)
        Ks, poses = _matrices(table, "K", scene.path), _matrices(table, "cam2world", scene.path)
        depth_of = functools.partial(_depth, table, path=scene.path)
        covis = covisibility_of(depth_of, Ks, poses, scene.rows, keep_from=bands[0][0])  # (V, N)
        chosen = set(scene.rows.tolist())
        for k, a in enumerate(scene.rows.tolist()):
            for b in np.flatnonzero(band_of(covis[k], bands) >= 0).tolist():
                if not (b in chosen and b < a):  # a pair of two chosen views once
                    cands.append((s, k, b, float(covis[k, b])))
        files.append((table, Ks, poses, depth_of))
        if progress is not None:
            progress.update(1)
    which = band_of(np.array([c[3] for c in cands]), bands)
    picked = []
    for i in range(len(bands)):
        mine = [cands[j] for j in np.flatnonzero(which == i)]
        order = np.random.default_rng([config.seed, CORR_SALT, i]).permutation(len(mine))
        uses: dict[tuple[int, int], int] = {}  # one pair of each view 1 before a second of any
        keyed = []
        for pos, j in enumerate(order.tolist()):
            view1 = mine[j][:2]
            uses[view1] = uses.get(view1, 0) + 1
            keyed.append((uses[view1], pos, j))
        picked += [mine[j] for _, _, j in sorted(keyed)[: config.corr_pairs]]
    if not picked:
        return None
    rows: dict[tuple[int, int], int] = {}  # (scene, file row) -> row of images: each view decoded once
    images, first, second, targets, ids = [], [], [], [], []
    for s, k, b, _ in picked:
        scene, (table, Ks, poses, depth_of) = held[s], files[s]
        a = int(scene.rows[k])
        if (s, a) not in rows:
            rows[(s, a)] = len(images)
            images.append(scene.images[k])  # view 1: one of the scene's chosen views, already at the model's size
        if (s, b) not in rows:
            rows[(s, b)] = len(images)
            images.append(_fit(_image(table, b, scene.path), size, cv2.INTER_AREA))
        first.append(rows[(s, a)])
        second.append(rows[(s, b)])
        targets.append(patch_matches(depth_of(a), Ks[a], poses[a], depth_of(b), Ks[b], poses[b], size, patch))
        view_ids = table.column("view_id")
        ids.append(f"{scene.key}/{view_ids[a].as_py()}-{view_ids[b].as_py()}")
    covis = np.array([c[3] for c in picked])
    return HeldPairs(np.stack(images), np.array(first, np.int64), np.array(second, np.int64), np.stack(targets),
                     covis, band_of(covis, bands), ids)  # fmt: skip


def _recalls(per_pair: np.ndarray, pairs: HeldPairs, config: ProbeConfig) -> dict:
    """(P, R) per-pair values -> ``{band label: {radius: mean over the band's pairs} or None, "all": ...}``."""
    out = {}
    bands = config.bands
    for i, band in enumerate([*bands, None]):
        mine = per_pair[pairs.band == i] if band is not None else per_pair
        mine = mine[~np.isnan(mine[:, 0])]
        label = band_label(band, i == len(bands) - 1) if band is not None else "all"
        out[label] = {str(r): float(v) for r, v in zip(RADII, mine.mean(axis=0))} if len(mine) else None
    return out


def correspondence_scores(feats: torch.Tensor | None, pairs: HeldPairs, config: ProbeConfig, grid: int) -> dict:
    """Recall within ``RADII`` patches by band (:mod:`pretrain.correspondence`): each matched patch of view 1
    takes the nearest patch of view 2 in ``feats`` (U, N, E) (cosine; None: the patch at the same place)."""
    g = torch.Generator().manual_seed(config.seed + CORR_SALT)  # ties: the same draws for every encoder
    per_pair = np.full((len(pairs.first), len(RADII)), np.nan)
    for p, (i, j) in enumerate(zip(pairs.first.tolist(), pairs.second.tolist())):
        q = np.flatnonzero(~np.isnan(pairs.target[p, :, 0]))
        if len(q):
            chosen = q if feats is None else nearest_patches(feats[i][q], feats[j], g).numpy()
            per_pair[p] = pair_recall(patch_errors(chosen, pairs.target[p, q], grid))
    return _recalls(per_pair, pairs, config)


def pairs_record(pairs: HeldPairs, config: ProbeConfig, grid: int) -> dict:
    """What the results say of the pairs: per band the pairs, their matched patches and chance recall."""
    matched = (~np.isnan(pairs.target[..., 0])).sum(axis=1)  # (P,)
    chance = np.full((len(matched), len(RADII)), np.nan)
    for p in np.flatnonzero(matched).tolist():
        chance[p] = chance_recall(pairs.target[p][~np.isnan(pairs.target[p, :, 0])], grid)
    bands = config.bands
    counts = {}
    for i, band in enumerate([*bands, None]):
        sel = pairs.band == i if band is not None else np.ones(len(matched), bool)
        label = band_label(band, i == len(bands) - 1) if band is not None else "all"
        counts[label] = {"pairs": int(sel.sum()), "matched_pairs": int((matched[sel] > 0).sum()),
                         "patches": int(matched[sel].sum())}  # fmt: skip
    return {
        "radii": list(RADII),
        "grid": grid,
        "bands": counts,
        "chance": _recalls(chance, pairs, config),
        "pairs": [{"id": pid, "covisibility": round(float(c), 4), "matched_patches": int(m)}
                  for pid, c, m in zip(pairs.ids, pairs.covisibility, matched)],  # fmt: skip
    }


# ---- features, head, metrics


def _to_model(images: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 RGB -> (B, 3, S, S) float32, ImageNet-normalised as in training."""
    from pretrain.augment import to_float

    return to_float(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))


@torch.no_grad()
def encode(model, images: np.ndarray, batch_size: int, progress=None) -> torch.Tensor:
    """Frozen-encoder patch features: (V, S, S, 3) uint8 -> (V, N, E) float32."""
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model.forward_encoder(_to_model(images[i : i + batch_size])).float())
        if progress is not None:
            progress.update(min(batch_size, len(images) - i))
    return torch.cat(out)


class DepthHead(nn.Module):
    """Patch tokens (B, N, E) -> log depth (B, S, S): per token a ``cells`` x ``cells`` grid of log depths
    (a linear map, or an MLP with ``hidden`` units), the grids laid out as the patches, upsampled bilinearly
    to the image's pixels (a low-capacity head: the features, not the head, must carry the depth)."""

    def __init__(self, dim: int, grid: int, patch: int, cells: int, hidden: int = 0):
        super().__init__()
        self.grid, self.patch, self.cells = grid, patch, cells
        out = cells * cells
        self.net = (nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out)) if hidden
                    else nn.Linear(dim, out))  # fmt: skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, g, c = tokens.shape[0], self.grid, self.cells
        x = self.net(tokens).reshape(B, g, g, c, c)  # (B, gh, gw, c, c)
        x = x.permute(0, 1, 3, 2, 4).reshape(B, 1, g * c, g * c)  # (B, 1, g c, g c)
        if c != self.patch:
            x = nn.functional.interpolate(x, scale_factor=self.patch / c, mode="bilinear", align_corners=False)
        return x[:, 0]  # (B, S, S)

    @property
    def last(self) -> nn.Linear:
        return self.net[-1] if isinstance(self.net, nn.Sequential) else self.net


def _valid(depth: torch.Tensor, max_depth: float) -> torch.Tensor:
    return (depth > MIN_DEPTH) & (depth <= max_depth)


def train_head(model, feats: torch.Tensor, depth: torch.Tensor, config: ProbeConfig, progress=None) -> DepthHead:
    """Fit a :class:`DepthHead` to ``feats`` (V, N, E) and ``depth`` (V, S, S) metres, seeded by ``config.seed``."""
    from pretrain.engine import lr_at

    valid = _valid(depth, config.max_depth)  # (V, S, S)
    log_target = torch.where(valid, depth.clamp_min(MIN_DEPTH).log(), torch.zeros(()))
    torch.manual_seed(config.seed + HEAD_SALT)
    head = DepthHead(feats.shape[-1], model.grid_size, model.patch_size, config.head_cells, config.head_hidden)
    with torch.no_grad():
        head.last.bias.fill_(float(log_target[valid].mean()) if valid.any() else 0.0)  # start at the mean log depth
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.head_lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(config.seed + HEAD_SALT)
    warmup = max(1, config.head_steps // 20)
    for step in range(config.head_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.head_steps, config.head_lr, warmup, 0.0)
        idx = torch.randint(len(feats), (min(config.head_batch, len(feats)),), generator=g)
        m = valid[idx]
        err = (head(feats[idx]) - log_target[idx]).abs()  # (B, S, S)
        loss = (err * m).sum() / m.sum().clamp_min(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress.update(1)
    return head


@torch.no_grad()
def predict(head: DepthHead, feats: torch.Tensor, batch_size: int) -> np.ndarray:
    """(V, N, E) features -> (V, S, S) float32 depth in metres (before alignment)."""
    return torch.cat([head(feats[i : i + batch_size]).exp() for i in range(0, len(feats), batch_size)]).numpy()


def depth_metrics(pred: np.ndarray, gt: np.ndarray, max_depth: float = 10.0) -> dict:
    """NYUv2 depth metrics with per-image median scale alignment (module docstring).

    Parameters
    ----------
    pred, gt : (V, H, W) float
        Predicted and true depth, metres; ``gt`` 0 (or outside ``(MIN_DEPTH, max_depth]``) is not evaluated.

    Returns
    -------
    dict
        ``abs_rel``, ``rmse``, ``rmse_log``, ``delta1`` (each the mean over images of the per-image
        value) and ``images`` (images with at least one valid pixel; the others are left out).
    """
    rows = []
    for p, g in zip(np.asarray(pred, np.float64), np.asarray(gt, np.float64)):
        v = (g > MIN_DEPTH) & (g <= max_depth)
        if not v.any():
            continue
        p, g = p[v], g[v]
        p = np.clip(p * (np.median(g) / max(np.median(p), 1e-12)), MIN_DEPTH, max_depth)
        ratio = np.maximum(p / g, g / p)
        rows.append((np.mean(np.abs(p - g) / g), np.sqrt(np.mean((p - g) ** 2)),
                     np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)), np.mean(ratio < DELTA)))  # fmt: skip
    if not rows:
        return {"abs_rel": None, "rmse": None, "rmse_log": None, "delta1": None, "images": 0}
    m = np.mean(rows, axis=0)
    return {"abs_rel": float(m[0]), "rmse": float(m[1]), "rmse_log": float(m[2]), "delta1": float(m[3]),
            "images": len(rows)}  # fmt: skip


@torch.no_grad()
def cvc_losses(model, view1: np.ndarray, view2: np.ndarray, shuffled: np.ndarray, seed: int, batch_size: int) -> dict:
    """Held-out masked cross-view completion loss with the true view 2 and with another scene's (seeded masks)."""
    from pretrain.engine import step_mask
    from pretrain.model import masked_patch_loss

    sums = {"true": 0.0, "shuffled": 0.0}
    for b, i in enumerate(range(0, len(view1), batch_size)):
        img1 = _to_model(view1[i : i + batch_size])
        mask = step_mask(len(img1), model.num_patches, model.mask_ratio, (seed, "probe", b))
        for name, other in (("true", view2), ("shuffled", shuffled)):
            out, mask, target = model(img1, _to_model(other[i : i + batch_size]), mask=mask)
            sums[name] += float(masked_patch_loss(out.float(), target.float(), mask)) * len(img1)
    return {"pairs": len(view1), **{name: s / len(view1) for name, s in sums.items()}}


def _held_pairs(held: list[ProbeViews], others: list[ProbeViews], config: ProbeConfig):
    """(view 1, true view 2, other-scene view 2) uint8 arrays of up to ``cvc_pairs`` held-out pairs, seeded."""
    rng = np.random.default_rng([config.seed, PAIR_SALT])
    cands = [(s, k) for s, scene in enumerate(held) for k in np.flatnonzero(scene.has_partner).tolist()]
    if not cands or not config.cvc_pairs:
        return None
    chosen = [cands[i] for i in np.sort(rng.choice(len(cands), size=min(len(cands), config.cvc_pairs), replace=False))]
    pool = held + others
    v1 = np.stack([held[s].images[k] for s, k in chosen])
    v2 = np.stack([held[s].partners[k] for s, k in chosen])
    shuffled = []
    for s, _ in chosen:  # a view of any other scene
        choices = [scene for scene in pool if scene.key != held[s].key]
        scene = choices[int(rng.integers(len(choices)))]
        shuffled.append(scene.images[int(rng.integers(len(scene.images)))])
    return v1, v2, np.stack(shuffled)


def _colour(depth: np.ndarray, top: float) -> np.ndarray:
    """(S, S) metres -> (S, S, 3) uint8 RGB, turbo from 0 to ``top``; invalid (0) black."""
    scaled = np.clip(depth / max(top, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)[..., ::-1]
    return np.where((depth > 0)[..., None], rgb, 0).astype(np.uint8)


def depth_png(path: Path, images: np.ndarray, gt: np.ndarray, preds: list[np.ndarray], max_depth: float) -> None:
    """Rows ``RGB | true depth | prediction per encoder`` (scale-aligned, same colour scale per row)."""
    rows = []
    for i in range(len(images)):
        v = (gt[i] > MIN_DEPTH) & (gt[i] <= max_depth)
        top = float(gt[i][v].max()) if v.any() else max_depth
        panels = [images[i], _colour(gt[i] * v, top)]
        for pred in preds:
            p = pred[i] * (np.median(gt[i][v]) / max(np.median(pred[i][v]), 1e-12) if v.any() else 1.0)
            panels.append(_colour(np.clip(p, MIN_DEPTH, max_depth), top))
        rows.append(np.concatenate(panels, axis=1))
    ok, data = cv2.imencode(".png", np.concatenate(rows, axis=0)[..., ::-1])
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


# ---- the probe


def _load_checkpoint(path: Path) -> dict:
    from pretrain.checkpoint import load_checkpoint
    from pretrain.engine import TrainingError

    try:
        return load_checkpoint(path)
    except TrainingError as e:
        raise ProbeError(str(e)) from None


def probe(checkpoint: Path, views: list[Path], config: ProbeConfig, out: Path | None = None,
          progress_stream=None) -> tuple[dict, Path]:  # fmt: skip
    """Probe ``checkpoint``'s encoder for ``config.tasks`` against its baselines; write ``probe-*.json`` (and,
    for depth, ``.png``) under ``out``.

    Returns the results and the JSON's path. Raises :class:`ProbeError` on an input it cannot use.
    """
    from manifests.progress import Progress
    from pretrain.checkpoint import checkpoint_model_args, model_from_checkpoint
    from pretrain.model import CroCoNet

    start = time.perf_counter()
    depth_task, corr_task = "depth" in config.tasks, "correspondence" in config.tasks
    ckpt = _load_checkpoint(Path(checkpoint))
    name, size = ckpt["config"]["model"], ckpt["config"]["img_size"]
    files = find_views([Path(v) for v in views])
    train_keys, held_keys = split_scenes(list(files), config)
    # no total: a bad scene's message is then not followed by a closing progress line (periodic lines remain)
    with Progress(None, "probe: reading views", "scene", stream=progress_stream) as bar:
        scenes = {}
        for key in (train_keys if depth_task else []) + held_keys:  # correspondence uses held-out scenes only
            scenes[key] = load_probe_views(key, files[key], config, size,
                                           partners=depth_task and config.cvc_pairs > 0 and key in held_keys)
            bar.update(1)
    train_s, held_s = [scenes[k] for k in train_keys if k in scenes], [scenes[k] for k in held_keys]
    held_img, held_depth = np.concatenate([s.images for s in held_s]), np.concatenate([s.depth for s in held_s])
    if depth_task and len(held_img) < MIN_HELDOUT_VIEWS:  # (correspondence counts pairs: it says per band)
        log.warning("only %d held-out view(s) (%d scene(s), --views-per-scene %d): too few for the metrics to tell "
                    "encoders apart (at least %d); hold out more scenes or views", len(held_img), len(held_keys),
                    config.views_per_scene, MIN_HELDOUT_VIEWS)  # fmt: skip
    model_args = checkpoint_model_args(ckpt)
    patch, grid = model_args["patch_size"], model_args["img_size"] // model_args["patch_size"]
    pairs, corr = None, None
    if depth_task:
        train_img = np.concatenate([s.images for s in train_s])
        train_depth = torch.from_numpy(np.concatenate([s.depth for s in train_s]))
        pairs = _held_pairs(held_s, train_s, config)
    if corr_task:
        with Progress(None, "probe: choosing pairs", "scene", stream=progress_stream) as bar:  # no total: as above
            corr = held_pairs(held_s, config, size, patch, bar)
        if corr is None:
            raise ProbeOptionError(f"no held-out pair with a covisibility in [{config.bands[0][0]:g}, "
                                   f"{config.bands[-1][1]:g}] (--corr-bands) among the {len(held_img)} chosen view(s) "
                                   f"of {', '.join(held_keys)} and the other views of their scene: widen "
                                   "--corr-bands, or hold out scenes whose views overlap")  # fmt: skip
        empty = [band_label(b, i == len(config.bands) - 1) for i, b in enumerate(config.bands)
                 if not (corr.band == i).any()]  # fmt: skip
        if empty:
            log.warning("no held-out pair in the covisibility band(s) %s: no correspondence recall there",
                        ", ".join(empty))  # fmt: skip

    torch.manual_seed(config.seed)  # as pretrain run: with the run's --seed, the baseline is the run's initial weights
    baseline = CroCoNet(**model_args)  # the checkpoint's architecture, freshly initialised
    encoders = {"pretrained": model_from_checkpoint(ckpt), "random_init": baseline}
    results, preds = {}, []
    for label, model in encoders.items():
        model.eval().requires_grad_(False)
        results[label] = {}
        work = ((len(train_img) + len(held_img) + config.head_steps if depth_task else 0)
                + (len(corr.images) if corr is not None else 0))  # fmt: skip
        with Progress(work, f"probe: {label}", "item", stream=progress_stream) as bar:
            if depth_task:
                feats = encode(model, train_img, config.batch_size, bar)
                head = train_head(model, feats, train_depth, config, bar)
                pred = predict(head, encode(model, held_img, config.batch_size, bar), config.batch_size)
                results[label]["depth"] = depth_metrics(pred, held_depth, config.max_depth)
                preds.append(pred)
            if corr is not None:
                feats = encode(model, corr.images, config.batch_size, bar)
                results[label]["correspondence"] = correspondence_scores(feats, corr, config, grid)
        if pairs is not None:
            results[label]["cvc_loss"] = cvc_losses(model, *pairs, config.seed, config.batch_size)
    if corr is not None:  # the baselines that know nothing of learning: raw pixels, the same place, chance
        results["pixels"] = {"correspondence": correspondence_scores(patch_features(corr.images, patch), corr, config,
                                                                     grid)}  # fmt: skip
        results["same_place"] = {"correspondence": correspondence_scores(None, corr, config, grid)}

    out = Path(out) if out is not None else Path(checkpoint).parent
    stem = f"probe-{ckpt['step']:07d}-seed{config.seed}"
    record = {
        "format": PROBE_FORMAT,
        "checkpoint": str(checkpoint),
        "model": name,
        "img_size": size,
        "step": ckpt["step"],
        "config": config.to_dict(),
        "tasks": list(config.tasks),
        "train_scenes": train_keys,
        "heldout_scenes": held_keys,
        "views": {"train": len(train_img) if depth_task else 0, "heldout": len(held_img)},
    }
    if depth_task:
        rng = np.random.default_rng([config.seed, PAIR_SALT + 1])
        shown = np.sort(rng.choice(len(held_img), size=min(4, len(held_img)), replace=False))
        depth_png(out / f"{stem}.png", held_img[shown], held_depth[shown], [p[shown] for p in preds], config.max_depth)
        record["alignment"] = "per-image median ratio, then clipped to [0.001, max_depth]; valid pixels only"
        record["png"] = f"{stem}.png"
    if corr is not None:
        record["correspondence"] = pairs_record(corr, config, grid)
    record.update(results)
    record["seconds"] = round(time.perf_counter() - start, 2)
    path = out / f"{stem}.json"
    write_json_atomic(path, record)
    return record, path


def _f(x: float | None) -> str:  # None: no held-out pixel within max_depth, no pair in a band
    return "n/a" if x is None else f"{x:.3f}"


def summary_line(record: dict) -> str:
    """One line: the pretrained encoder's depth probe against the random-init one."""
    a, b = record["pretrained"], record["random_init"]
    text = (f"probe of step {record['step']} (seed {record['config']['seed']}, {len(record['heldout_scenes'])} held-out "
            f"scene(s), {record['views']['heldout']} views): AbsRel {_f(a['depth']['abs_rel'])} vs random-init "
            f"{_f(b['depth']['abs_rel'])}, δ<1.25 {_f(a['depth']['delta1'])} vs {_f(b['depth']['delta1'])}")  # fmt: skip
    if "cvc_loss" in a:
        text += f"; held-out CVC loss {a['cvc_loss']['true']:.3f} (other-scene view 2: {a['cvc_loss']['shuffled']:.3f})"
    return text


CORR_COLUMNS = {"pretrained": "pretrained", "random_init": "random-init", "pixels": "pixels",
                "same_place": "same place"}  # fmt: skip


def correspondence_lines(record: dict) -> list[str]:
    """A heading and a line a covisibility band (and all pairs): recall within 1/2/4 patches of each encoder,
    the baselines and chance."""
    c = record["correspondence"]
    radii = [str(r) for r in c["radii"]]

    def cell(values: dict | None) -> str:
        return "n/a" if values is None else "/".join(_f(values[r]) for r in radii)

    lines = [f"correspondence of step {record['step']} (seed {record['config']['seed']}, "
             f"{len(record['heldout_scenes'])} held-out scene(s), {c['bands']['all']['pairs']} pairs, "
             f"{c['grid']}x{c['grid']} patches a view): recall within {'/'.join(radii)} patches, "
             + " | ".join(CORR_COLUMNS.values()) + " | chance"]  # fmt: skip
    for label, n in c["bands"].items():
        cells = [cell(record[key]["correspondence"][label]) for key in CORR_COLUMNS] + [cell(c["chance"][label])]
        lines.append(f"  {label}: {n['pairs']} pairs, {n['patches']:,} patches: " + " | ".join(cells))
    return lines


def summary_lines(record: dict) -> list[str]:
    """What ``pretrain probe`` prints: the depth line and the correspondence lines, as the tasks ran."""
    lines = [summary_line(record)] if "depth" in record["pretrained"] else []
    return lines + (correspondence_lines(record) if "correspondence" in record else [])
