"""``pairgen filter``: views in, covisible pairs out as Parquet shards.

Two stages:

1. per scene (:func:`select_scene_pairs`, one Ray task a scene, never
   raises): decode the views' depth, compute the covisibility of the pairs
   that can reach ``[min_covis, max_covis]`` (:mod:`covisibility.batch`; or
   CroCo's k-d-tree measure with ``measure="croco"``), and pick up to
   ``pairs_per_scene`` of those in the band, in a seeded random order, with
   no view in more than ``max_pairs_per_view`` pairs. The result is a small
   record (indices and values), not images.
2. in the driver (:func:`write_shards`): scenes sorted by key are taken
   ``scenes_per_block`` at a time; each block's pairs are shuffled together
   and cut into shards of ``shard_size`` pairs, so consecutive pairs (and so
   every row group) come from many scenes. Image and depth bytes are copied
   from the views files as they are, without re-encoding.

``pairs/manifest.json`` is written last: the config and its hash, the views'
config hash, each shard with its pair count and SHA-256, totals, the
covisibility histogram of the kept pairs and each scene's statistics. A
rerun with the same config and a complete manifest does nothing; a rerun
after a crash rewrites only missing shards (each is deterministic); a rerun
with another config refuses unless told to overwrite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.codecs import decode_depth
from manifests.config import config_changes
from manifests.config import config_hash as hash_config  # `config_hash` names the hash value below
from manifests.io import (
    OutputError,
    path_inside,
    read_json,
    remove_stale_temporaries,
    write_json_atomic,
    write_parquet_atomic,
)
from manifests.pairs import PAIRS_SCHEMA, pairs_metadata, shard_name
from manifests.views import read_views
from pairgen import __version__

__all__ = ["FilterConfig", "FilterSummary", "run_filter", "select_scene_pairs", "write_shards"]

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "pairgen-pairs-manifest/1"
MEASURES = ("reprojection", "croco")
HISTOGRAM_BINS = np.round(np.linspace(0.0, 1.0, 21), 2)


@dataclass(frozen=True)
class FilterConfig:
    """Everything that decides which pairs are kept and how they are written (hashed)."""

    min_covis: float = 0.5
    max_covis: float = 0.8  # above: near-duplicate views
    pairs_per_scene: int = 1000  # CroCo's
    max_pairs_per_view: int = 10
    measure: str = "reprojection"
    seed: int = 0
    shard_size: int = 1000  # pairs a shard
    row_group_size: int = 256
    scenes_per_block: int = 16  # scenes whose pairs are interleaved together

    def __post_init__(self) -> None:
        problems = [
            (not 0 <= self.min_covis <= 1 or not 0 <= self.max_covis <= 1,
             f"covisibility bounds must lie in [0, 1], got {self.min_covis} and {self.max_covis}"),
            (self.min_covis > self.max_covis,
             f"--min-covis {self.min_covis} is above --max-covis {self.max_covis}: no pair can qualify"),
            (self.pairs_per_scene < 1, f"pairs per scene must be at least 1, got {self.pairs_per_scene}"),
            (self.max_pairs_per_view < 1, f"pairs per view must be at least 1, got {self.max_pairs_per_view}"),
            (self.measure not in MEASURES, f"measure must be one of {', '.join(MEASURES)}, got {self.measure!r}"),
            (self.shard_size < 1 or self.row_group_size < 1, "shard and row group sizes must be at least 1"),
            (self.scenes_per_block < 1, f"scenes per block must be at least 1, got {self.scenes_per_block}"),
        ]  # fmt: skip
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def select_scene_pairs(entry: dict, views_dir: str | Path, config: FilterConfig) -> dict:
    """Covisibility and pair choice for one scene's views file. Never raises.

    ``entry`` is the scene's record in ``views/manifest.json`` (``file``,
    ``dataset``, ``scene_id``). Returns ``status``, ``reason`` when failed,
    ``pairs`` as ``[view1, view2, covis_1in2, covis_2in1]`` rows, and
    statistics (``views``, ``candidates``, ``computed``, ``in_band``,
    ``seconds``).
    """
    from covisibility.batch import covisibility_pairs
    from covisibility.croco import croco_overlap_pairs

    start = time.perf_counter()
    result: dict = {"status": "failed", "pairs": []}
    try:
        path = path_inside(Path(views_dir), entry["file"])
        table, meta = read_views(path, columns=["view_id", "depth", "K", "cam2world"])
        n = table.num_rows
        depths = np.stack([decode_depth(d["bytes"]) for d in table.column("depth").to_pylist()]) if n else None
        Ks = np.asarray(table.column("K").to_pylist(), np.float64).reshape(-1, 3, 3)
        poses = np.asarray(table.column("cam2world").to_pylist(), np.float64).reshape(-1, 4, 4)
        if n < 2:
            raise OutputError(f"{path}: {n} view(s), a pair needs two")
        if config.measure == "croco":
            pairs = np.array([(a, b) for a in range(n) for b in range(a + 1, n)], np.int64)
            ab, ba = croco_overlap_pairs(depths, Ks, poses, pairs)
            computed, candidates = len(pairs), len(pairs)
        else:
            res = covisibility_pairs(depths, Ks, poses, min_covis=config.min_covis, max_covis=config.max_covis)
            pairs, ab, ba = res.pairs, res.a_in_b, res.b_in_a
            computed, candidates = len(pairs), res.candidates
        c = np.minimum(ab, ba)
        band = np.flatnonzero((c >= config.min_covis) & (c <= config.max_covis))
        rng = np.random.default_rng([config.seed, int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)])
        chosen, uses = [], np.zeros(n, np.int64)
        for k in rng.permutation(band):
            a, b = pairs[k]
            if uses[a] < config.max_pairs_per_view and uses[b] < config.max_pairs_per_view:
                uses[a] += 1
                uses[b] += 1
                chosen.append(k)
                if len(chosen) == config.pairs_per_scene:
                    break
        chosen = np.array(sorted(chosen, key=lambda k: tuple(pairs[k])), np.int64)
        table_ids = np.asarray(table.column("view_id").to_pylist())
        result.update(
            status="ok",
            pairs=[[int(table_ids[pairs[k, 0]]), int(table_ids[pairs[k, 1]]), float(ab[k]), float(ba[k])]
                   for k in chosen],
            views=n, candidates=candidates, computed=computed, in_band=int(len(band)),
        )  # fmt: skip
    except OutputError as e:
        result["reason"] = str(e)
    except Exception as e:  # one bad scene never stops the run
        log.debug("%s failed", entry.get("file"), exc_info=True)
        result["reason"] = f"{type(e).__name__}: {e}"
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


@dataclass
class FilterSummary:
    scenes_ok: int = 0
    scenes_failed: int = 0
    pairs: int = 0
    shards: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    failures: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        if self.up_to_date:
            return f"already complete: {self.pairs} pairs in {self.shards} shards"
        return (
            f"{self.pairs} pairs from {self.scenes_ok} scenes ({self.scenes_failed} failed) "
            f"in {self.shards} shards, {self.seconds:.1f} s"
        )


def _shard_table(rows: list[tuple[str, list]], views: dict[str, tuple[pa.Table, dict]]) -> pa.Table:
    """One shard's rows: (scene key, [v1, v2, c12, c21]) each, bytes taken from the views tables."""
    cols: dict[str, list] = {name: [] for name in PAIRS_SCHEMA.names}
    for key, (v1, v2, c12, c21) in rows:
        table, meta = views[key]
        index = meta["index"]
        r1, r2 = index[v1], index[v2]
        dataset, scene_id = key.split("/", 1)
        cols["pair_id"].append(f"{key}/{v1:06d}-{v2:06d}")
        cols["dataset"].append(dataset)
        cols["scene_id"].append(scene_id)
        cols["view1_id"].append(v1)
        cols["view2_id"].append(v2)
        for suffix, r in (("1", r1), ("2", r2)):
            cols["image" + suffix].append(meta["image"][r])
            cols["depth" + suffix].append(meta["depth"][r])
            cols["K" + suffix].append(meta["K"][r])
            cols["cam2world" + suffix].append(meta["cam2world"][r])
        cols["covis_1in2"].append(c12)
        cols["covis_2in1"].append(c21)
        cols["covisibility"].append(min(c12, c21))
        cols["width"].append(meta["width"][r1])
        cols["height"].append(meta["height"][r1])
    return pa.table(cols, schema=PAIRS_SCHEMA)


def _load_views(path: Path) -> tuple[pa.Table, dict]:
    table, _ = read_views(path, columns=["view_id", "image", "depth", "K", "cam2world", "width", "height"])
    meta = {name: table.column(name).to_pylist() for name in ("image", "depth", "K", "cam2world", "width", "height")}
    meta["index"] = {v: i for i, v in enumerate(table.column("view_id").to_pylist())}
    return table, meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _shard_is_current(path: Path, config_hash: str, pairs: int) -> bool:
    try:
        raw = (pq.read_schema(path).metadata or {}).get(b"pairgen")
        meta = json.loads(raw) if raw else {}
    except (OSError, pa.ArrowException, ValueError):
        return False
    return meta.get("config_hash") == config_hash and meta.get("pairs") == pairs


def write_shards(
    selections: dict[str, dict], views_dir: Path, pairs_dir: Path, config: FilterConfig, config_hash: str,
    progress=None,
) -> list[dict]:  # fmt: skip
    """Write the shards of every scene's chosen pairs; return ``[{file, pairs, sha256}]``."""
    keys = sorted(k for k, s in selections.items() if s["status"] == "ok" and s["pairs"])
    shards: list[dict] = []
    for block_start in range(0, len(keys), config.scenes_per_block):
        block = keys[block_start : block_start + config.scenes_per_block]
        rows = [(key, p) for key in block for p in selections[key]["pairs"]]
        order = np.random.default_rng([config.seed, block_start]).permutation(len(rows))
        rows = [rows[i] for i in order]
        views = None
        for start in range(0, len(rows), config.shard_size):
            part = rows[start : start + config.shard_size]
            path = pairs_dir / shard_name(len(shards))
            if not _shard_is_current(path, config_hash, len(part)):
                if views is None:  # each views file of the block is read once
                    views = {key: _load_views(path_inside(views_dir, selections[key]["file"])) for key in block}
                write_parquet_atomic(path, _shard_table(part, views), metadata=pairs_metadata(config_hash, len(part)),
                                     row_group_size=config.row_group_size)  # fmt: skip
            shards.append({"file": path.name, "pairs": len(part), "sha256": _sha256(path)})
            if progress is not None:
                progress.update(len(part))
    return shards


def run_filter(
    out_dir: str | Path,
    config: FilterConfig,
    *,
    distributor: Callable[..., None],
    overwrite: bool = False,
    progress_factory=None,
) -> FilterSummary:
    """Select pairs from ``out_dir/views`` and write ``out_dir/pairs``.

    Raises
    ------
    OutputError
        No views (render first), or the folder cannot be written.
    ValueError
        ``out_dir/pairs`` holds another config's pairs and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    views_dir, pairs_dir = out_dir / "views", out_dir / "pairs"
    views_manifest_path = views_dir / "manifest.json"
    if not views_manifest_path.is_file():
        raise OutputError(f"{views_manifest_path}: not found; run `pairgen render --out {out_dir}` first")
    views_manifest = read_json(views_manifest_path)
    scenes = {k: e for k, e in views_manifest.get("scenes", {}).items() if e.get("status") == "ok" and e.get("file")}
    if not scenes:
        raise OutputError(f"{views_manifest_path}: no rendered scene to pair")
    identity = {"filter": config.to_dict(), "views_config_hash": views_manifest.get("config_hash")}
    config_hash = hash_config(identity)
    manifest_path = pairs_dir / "manifest.json"
    summary = FilterSummary()
    if manifest_path.exists():
        old = read_json(manifest_path)
        if old.get("config_hash") == config_hash and old.get("complete"):
            if all((pairs_dir / s["file"]).is_file() for s in old.get("shards", [])):
                summary.up_to_date = True
                summary.pairs, summary.shards = old["totals"]["pairs"], len(old["shards"])
                return summary
        elif old.get("config_hash") != config_hash:
            if not overwrite:
                raise ValueError(
                    f"{manifest_path}: this folder holds pairs of another config "
                    f"({_diff(old.get('identity', {}), identity)}). Use another --out, or --overwrite."
                )
            for s in old.get("shards", []):
                (pairs_dir / Path(s["file"]).name).unlink(missing_ok=True)
            manifest_path.unlink()
    pairs_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(pairs_dir)
    start = time.perf_counter()

    selections: dict[str, dict] = {}
    bar = progress_factory(len(scenes), "pairing", "scene") if progress_factory else None

    def on_result(key: str, result: dict) -> None:
        selections[key] = {**result, "file": scenes[key]["file"]}
        if result["status"] == "ok":
            summary.scenes_ok += 1
        else:
            summary.scenes_failed += 1
            summary.failures[key] = result.get("reason", "unknown")
            log.warning("%s failed: %s", key, result.get("reason"))
        if bar is not None:
            bar.update(1)

    def on_error(key: str, error: BaseException) -> dict:
        return {"status": "failed", "pairs": [], "reason": f"worker failed: {type(error).__name__}: {error}"}

    entries = sorted(scenes)
    distributor(_select_by_key, entries, on_result, on_error,
                {"scenes": scenes, "views_dir": views_dir, "config": config})  # fmt: skip
    if bar is not None:
        bar.close()
    total = sum(len(s["pairs"]) for s in selections.values())
    bar = progress_factory(total, "writing shards", "pair") if progress_factory else None
    shards = write_shards(selections, views_dir, pairs_dir, config, config_hash, progress=bar)
    if bar is not None:
        bar.close()
    covis = np.array([min(p[2], p[3]) for s in selections.values() for p in s["pairs"]], np.float64)
    hist, _ = np.histogram(covis, bins=HISTOGRAM_BINS)
    summary.pairs, summary.shards = total, len(shards)
    summary.seconds = time.perf_counter() - start
    write_json_atomic(manifest_path, {
        "format": MANIFEST_FORMAT,
        "pairgen_version": __version__,
        "complete": True,
        "config_hash": config_hash,
        "config": config.to_dict(),
        "identity": identity,
        "views_manifest": "../views/manifest.json",
        "totals": {"pairs": total, "shards": len(shards), "scenes": summary.scenes_ok,
                   "scenes_failed": summary.scenes_failed,
                   "datasets": sorted({k.split("/", 1)[0] for k, s in selections.items() if s["pairs"]})},
        "histogram": {"bins": HISTOGRAM_BINS.tolist(), "counts": hist.tolist()},
        "shards": shards,
        "scenes": {k: {key: v for key, v in s.items() if key != "pairs"} | {"pairs": len(s["pairs"])}
                   for k, s in sorted(selections.items())},
        "seconds": round(summary.seconds, 2),
    })  # fmt: skip
    return summary


def _select_by_key(key: str, scenes: dict, views_dir: Path, config: FilterConfig) -> dict:
    return select_scene_pairs(scenes[key], views_dir, config)


def _diff(old: dict, new: dict) -> str:
    diffs = config_changes(old.get("filter", {}), new.get("filter", {}))
    if old.get("views_config_hash") != new.get("views_config_hash"):
        diffs.append("the views were rendered again with another config")
    return "; ".join(diffs) or "unknown difference"
