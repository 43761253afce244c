"""``pairgen filter``: views in, covisible pairs out as Parquet shards.

Two parts:

1. per scene (:func:`select_scene_pairs`, the unit of work, one Ray task a
   scene, never raises): decode the views' depth, compute the covisibility
   of the pairs that can reach ``[min_covis, max_covis]`` with the chosen
   :class:`covisibility.Measure`, and choose up to ``pairs_per_scene`` of
   those in the band, in a seeded random order, with no view in more than
   ``max_pairs_per_view`` pairs (:func:`covisibility.select_pairs`). The
   result (:class:`ScenePairs`) is a small record (indices and values), not
   images.
2. in the driver (:meth:`FilterStage.finish`, :func:`write_shards`): scenes
   sorted by key are taken ``scenes_per_block`` at a time; each block's pairs
   are shuffled together and cut into shards of ``shard_size`` pairs, so
   consecutive pairs (and so every row group) come from many scenes. Image
   and depth bytes are copied from the views files as they are, without
   re-encoding.

``OUT/pairs.manifest.json`` (:class:`manifests.manifest.PairsManifest`) holds the
config and its hash (over the filter config and the views' config hash),
each shard with its pair count and SHA-256, totals, the covisibility
histogram of the kept pairs, each scene's statistics, and ``complete``. The
lifecycle is :mod:`pairgen.stage`'s: a rerun of a complete folder does
nothing; after a crash the missing shards are written (each is
deterministic); another config refuses unless told to overwrite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.card import write_card
from manifests.io import CHECKSUMS_KEY, OutputError, path_inside, write_json_atomic, write_parquet_atomic
from manifests.layout import CONTACT_SHEET, is_safe_name, selections_dir, temporaries_dir
from manifests.manifest import PairsManifest, ViewsManifest, file_stat, has_checksum, sha256_file
from manifests.options import ConfigError, check, option
from manifests.pairs import PAIRS_SCHEMA, SHARD_GLOB, pairs_metadata, shard_name
from manifests.views import CHECKED_COLUMNS, SCENE_COLUMNS, CheckedViews, check_views, read_views
from pairgen.stage import Stage, StageSummary, UnitResult, run_unit
from manifests import store
from manifests.store import local, ranged

__all__ = ["ChosenPair", "FilterConfig", "PairsConfig", "checked_views", "FilterStage", "ScenePairs", "select_scene_pairs", "write_shards"]

log = logging.getLogger(__name__)

HISTOGRAM_BINS = np.round(np.linspace(0.0, 1.0, 21), 2)
LEGACY_SELECTIONS = "scenes"  # pairgen 0.1's pairs/scenes/<dataset>/<scene_id>.json, now OUT/_pairgen/selections


def _safe_key(key: str) -> bool:
    """A ``dataset/scene_id`` key that names a file inside the pairs folder."""
    parts = key.split("/")
    return len(parts) == 2 and all(is_safe_name(p) for p in parts)


def _measures() -> list[str]:
    from covisibility import available_measures

    return available_measures()


def _measures_help() -> str:
    from covisibility import describe_measures

    return "covisibility measure: " + describe_measures()


def _searches() -> list[str]:
    from covisibility import available_searches

    return available_searches()


def _searches_help() -> str:
    from covisibility import describe_searches

    return "how candidate pairs are found: " + describe_searches()


@dataclass(frozen=True)
class PairsConfig:
    """Which measured pairs are kept and how they are sharded: what ``filter`` and ``import croco`` share (hashed)."""

    min_covis: float = option(0.5, min=0, max=1, help="least covisibility of a kept pair")
    max_covis: float = option(0.8, min=0, max=1, help="greatest covisibility of a kept pair (drops near-duplicate views)")
    measure: str = option("reprojection", choices=_measures, help=_measures_help)
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the pair choice and the shard order")
    shard_size: int = option(1000, min=1, max=1_000_000, metavar="PAIRS", help="pairs a shard")
    row_group_size: int = option(256, min=1, max=1_000_000, cli=False, help="pairs a Parquet row group")
    scenes_per_block: int = option(16, min=1, max=100_000, cli=False, help="scenes whose pairs are interleaved together")

    def __post_init__(self) -> None:
        check(self)
        if self.min_covis > self.max_covis:
            raise ConfigError("min_covis", f"{self.min_covis} is above max_covis {self.max_covis}: no pair can qualify",
                              related=("max_covis",))  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FilterConfig(PairsConfig):
    """Everything that decides which pairs are kept and how they are written (hashed)."""

    pairs_per_scene: int = option(1000, min=1, max=10_000_000, metavar="N", help="pairs kept per scene, at most (CroCo's: 1,000)")
    max_pairs_per_view: int = option(10, min=1, max=1_000_000, metavar="N", help="pairs one view may join, at most")
    search: str = option("index", choices=_searches, help=_searches_help)

    def __post_init__(self) -> None:
        super().__post_init__()
        from covisibility import get_search

        search = get_search(self.search)
        if not search.supports(self.measure):
            raise ConfigError("search", f"{self.search} works only with --measure {' or '.join(search.measures)}, "
                              f"not {self.measure}; pass --search exhaustive")  # fmt: skip


class ChosenPair(NamedTuple):
    """One kept pair of a scene: its views' ids and covisibilities (``covisibility`` is the measure's min)."""

    view1: int
    view2: int
    covis_1in2: float
    covis_2in1: float
    covisibility: float


@dataclass
class ScenePairs(UnitResult):
    """One scene's chosen pairs and how they were found."""

    pairs: list[ChosenPair] = field(default_factory=list)
    views: int | None = None
    candidates: int | None = None  # pairs considered
    computed: int | None = None  # pairs computed exactly on every pixel
    in_band: int | None = None

    def entry(self) -> dict:
        return {**super().entry(), "pairs": len(self.pairs)}


def select_scene_pairs(task: tuple[str, dict], views_dir: str | Path, config: FilterConfig) -> ScenePairs:
    """Covisibility and pair choice for one scene's views file. Never raises.

    ``task`` is ``(key, entry)``, the scene's record in ``OUT/views.manifest.json``
    (``file`` relative to ``views_dir``, resolved inside it). The views are
    checked before use (:func:`manifests.views.check_views`: the file's own
    scene, unique view ids, finite cameras, depth of the image's size, two
    views at least); a file that fails a check fails the scene, naming it.
    """

    def body(result: ScenePairs) -> None:
        key, entry = task
        path, views = checked_views(views_dir, key, entry)
        choose_pairs(result, path, views, config, search=config.search, target=config.pairs_per_scene,
                     max_per_view=config.max_pairs_per_view)  # fmt: skip
        result.status = "ok"

    return run_unit(ScenePairs(), body)


def views_rng(seed: int, path: Path) -> np.random.Generator:
    """The generator of one scene's choice: the run's seed and the views file's name."""
    return np.random.default_rng([seed, int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)])


def choose_pairs(result, path: Path, views: CheckedViews, config: PairsConfig, *, search: str, target: int,
                 max_per_view: int) -> None:  # fmt: skip
    """Choose one scene's pairs by ``search`` into ``result`` (``pairs`` and the statistics of a :class:`ScenePairs`)."""
    from covisibility import MillimetreDepths, get_search

    choice = get_search(search).choose(
        MillimetreDepths(views.depth_mm), views.K, views.cam2world, measure=config.measure, min_covis=config.min_covis,
        max_covis=config.max_covis, target=target, max_per_view=max_per_view, rng=views_rng(config.seed, path),
    )  # fmt: skip
    found, chosen = choice.result, choice.chosen
    ids = views.view_ids
    c = found.covisibility
    result.pairs = [ChosenPair(int(ids[found.pairs[k, 0]]), int(ids[found.pairs[k, 1]]), float(found.covis_1in2[k]),
                               float(found.covis_2in1[k]), float(c[k])) for k in chosen]  # fmt: skip
    result.views, result.candidates, result.computed = len(ids), found.candidates, found.computed
    result.in_band = len(found.band(config.min_covis, config.max_covis))


def checked_views(views_dir: str | Path, key: str, entry: dict, made_by: str = "pairgen render") -> tuple[Path, CheckedViews]:
    """The views file of a views-manifest entry, read and checked; ``(path, views)``.

    Checked by :func:`manifests.views.check_views` (its own scene, ids,
    cameras, depth and image sizes), then its SHA-256 against the one
    ``made_by`` recorded in the entry (a sound file, but not the one written).
    """
    dataset, scene_id = _entry_scene(views_dir, key, entry)
    path = path_inside(views_dir, str(entry.get("file", "")))
    table, meta = read_views(path, columns=[*CHECKED_COLUMNS, "image", *SCENE_COLUMNS])
    views = check_views(table, meta, path, dataset, scene_id)
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise OutputError(f"{path}: its SHA-256 differs from the views manifest's (changed after it was written); "
                          f"run `{made_by}` again")  # fmt: skip
    return path, views


def _entry_scene(views_dir: str | Path, key: str, entry: dict) -> tuple[str, str]:
    """``(dataset, scene_id)`` of a views manifest entry: its key's, which its own fields must repeat."""
    dataset, _, scene_id = str(key).partition("/")
    for name, value in (("dataset", dataset), ("scene_id", scene_id)):
        if name in entry and entry[name] != value:
            raise OutputError(f"{ViewsManifest.path_in(views_dir)}: entry {key!r} says {name} {entry[name]!r}")
    if not dataset or not scene_id:
        raise OutputError(f"{ViewsManifest.path_in(views_dir)}: entry {key!r} is not named dataset/scene_id")
    return dataset, scene_id


def default_pair_id(key: str, pair: ChosenPair) -> str:
    """``<dataset>/<scene_id>/<view1>-<view2>``, the filter's pair ids."""
    return f"{key}/{pair.view1:06d}-{pair.view2:06d}"


def _shard_table(rows: list[tuple[str, ChosenPair]], views: dict[str, dict], pair_id=default_pair_id) -> pa.Table:
    """One shard's rows, (scene key, pair) each, bytes taken from the views tables."""
    cols: dict[str, list] = {name: [] for name in PAIRS_SCHEMA.names}
    for key, pair in rows:
        v1, v2, c12, c21, c = pair
        meta = views[key]
        r1, r2 = meta["index"][v1], meta["index"][v2]
        dataset, scene_id = key.split("/", 1)
        cols["pair_id"].append(pair_id(key, pair))
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
        cols["covisibility"].append(c)
        cols["width"].append(meta["width"][r1])
        cols["height"].append(meta["height"][r1])
    return pa.table(cols, schema=PAIRS_SCHEMA)


def _load_views(path: Path) -> dict:
    table, _ = read_views(path, columns=["view_id", "image", "depth", "K", "cam2world", "width", "height"])
    meta = {name: table.column(name).to_pylist() for name in ("image", "depth", "K", "cam2world", "width", "height")}
    meta["index"] = {v: i for i, v in enumerate(table.column("view_id").to_pylist())}
    return meta


def _rows_digest(rows: list[tuple[str, ChosenPair]]) -> str:
    """16 hex digits naming a shard's rows: which pairs, in which order, with which values."""
    h = hashlib.sha256()
    for key, p in rows:
        h.update(f"{key}/{p.view1}-{p.view2}:{p.covis_1in2!r}:{p.covis_2in1!r}\n".encode())
    return h.hexdigest()[:16]


def _shard_is_current(path: Path, metadata: dict[str, str]) -> bool:
    """Whether the shard at ``path`` holds what it would be written with: the same ``pairgen`` metadata (digest too),
    and its checksums (a shard written before shards carried them is written again)."""
    try:
        written = pq.read_schema(ranged(path)).metadata or {}
        raw = written.get(b"pairgen")
        current = raw is not None and json.loads(raw) == json.loads(metadata["pairgen"])
        return current and CHECKSUMS_KEY.encode() in written
    except (OSError, pa.ArrowException, ValueError):
        return False


@dataclass(frozen=True)
class ShardRows:
    """How a stage turns its kept items into shard rows: the table of a shard, the digest of its rows, its metadata."""

    table: Callable[[list[tuple[str, Any]], dict[str, dict]], pa.Table]  # (rows, views by scene) -> table
    digest: Callable[[list[tuple[str, Any]]], str]
    metadata: Callable[[str, int, str], dict[str, str]]  # (config hash, rows, digest) -> schema metadata
    load: Callable[[Path], dict] | None  # a views file's columns the rows take; None: the rows need no views
    name: str = "pairs"  # what a row is, as the manifest's shard entries count them


def pair_rows(pair_id=default_pair_id) -> ShardRows:
    """The pairs shards' rows (:data:`manifests.pairs.PAIRS_SCHEMA`), each pair's ``pair_id(key, pair)``."""
    return ShardRows(table=lambda rows, views: _shard_table(rows, views, pair_id), digest=_rows_digest,
                     metadata=pairs_metadata, load=_load_views)  # fmt: skip


def write_shards(selections: dict[str, list], files: dict[str, Path], out_dir: Path, config: PairsConfig,
                 config_hash: str, progress=None, rows: ShardRows | None = None) -> list[dict]:  # fmt: skip
    """Write the shards of every scene's kept items; return ``[{file, pairs, bytes, sha256}]``.

    ``selections`` maps each scene key to its kept items (pairs, samples),
    ``files`` each scene key to its views file. Scenes sorted by key are taken
    ``scenes_per_block`` at a time, each block's items shuffled together and
    cut into shards of ``shard_size``. A shard already on disk with the same
    rows (its footer's digest) is kept as it is; only shards whose rows
    changed, or that are missing or damaged, are written. Every shard carries
    its checksums in its footer (``write_parquet_atomic(checksums=True)``),
    so it can be verified without the manifest. ``rows`` makes the
    rows (default: :func:`pair_rows`).
    """
    rows_of = rows or pair_rows()
    keys = sorted(k for k, items in selections.items() if items)
    shards: list[dict] = []
    for block_start in range(0, len(keys), config.scenes_per_block):
        block = keys[block_start : block_start + config.scenes_per_block]
        rows = [(key, p) for key in block for p in selections[key]]
        order = np.random.default_rng([config.seed, block_start]).permutation(len(rows))
        rows = [rows[i] for i in order]
        views = None
        for start in range(0, len(rows), config.shard_size):
            part = rows[start : start + config.shard_size]
            path = out_dir / shard_name(len(shards))
            metadata = rows_of.metadata(config_hash, len(part), rows_of.digest(part))
            if not _shard_is_current(path, metadata):
                if views is None:  # each views file of the block is read once
                    views = {key: rows_of.load(files[key]) for key in block} if rows_of.load else {}
                write_parquet_atomic(path, rows_of.table(part, views), metadata=metadata, checksums=True,
                                     row_group_size=config.row_group_size, tmp_dir=temporaries_dir(out_dir))
            shards.append({"file": path.name, rows_of.name: len(part), "bytes": path.stat().st_size,
                           "sha256": sha256_file(path)})  # fmt: skip
            if progress is not None:
                progress.update(len(part))
    for stale in sorted(out_dir.glob(SHARD_GLOB))[len(shards):]:  # fewer shards than an earlier run wrote
        store.remove(stale)
    return shards


class FilterStage(Stage):
    """``pairgen filter``: pairs of ``OUT/views`` into ``OUT/pairs``.

    Raises
    ------
    OutputError
        No views (render first) or no rendered scene.
    """

    name = "filter"
    folder_name = "pairs"
    manifest_cls = PairsManifest
    result_cls = ScenePairs
    what = "pairs"
    progress_desc = "pairing"
    work = staticmethod(select_scene_pairs)

    def __init__(self, out_dir, config: FilterConfig, **kw) -> None:
        super().__init__(out_dir, config, **kw)
        self.views_dir = self.out_dir / "views"
        if not ViewsManifest.exists(self.views_dir):
            raise OutputError(f"{ViewsManifest.path_in(self.views_dir)}: not found; "
                              f"run `pairgen render --out {self.out_dir}` first")  # fmt: skip
        self.views = ViewsManifest.read(self.views_dir)
        self.scenes = self.views.ok_scenes()
        if not self.scenes:
            raise OutputError(f"{self.views.path}: no rendered scene to pair")
        self.selections: dict[str, ScenePairs] = {}
        self._unchanged: dict[str, bool] = {}  # scene key -> its views file is the one the views manifest records

    def identity(self) -> dict:
        return {"filter": self.config.to_dict(), "views_config_hash": self.views.config_hash}

    def key(self, task: tuple[str, dict]) -> str:
        return task[0]

    def describe(self, task: tuple[str, dict]) -> dict:
        return {"file": task[1]["file"]} if task[1].get("file") else {}  # none: render failed it before any work

    def common(self) -> dict:
        return {"views_dir": self.views_dir, "config": self.config}

    def outputs(self, manifest: PairsManifest) -> list[str]:
        """The shards (the selections, outside the folder, name their config: another's are never reused)."""
        return [s["file"] for s in manifest.shards]

    def pair_id(self, key: str, pair: ChosenPair) -> str:
        """The ``pair_id`` of a kept pair (a stage that imports pairs names them its own way)."""
        return default_pair_id(key, pair)

    # -- what a scene keeps: pairs here, samples in a subclass ---------------------------

    #: the name of a scene's kept items: its selection file's key, its manifest entry's count, the totals'
    items: ClassVar[str] = "pairs"
    #: the unit result's statistics kept with a scene's selection
    stats: ClassVar[tuple[str, ...]] = ("views", "candidates", "computed", "in_band")

    def kept(self, result) -> list:
        """A scene's kept items (a result's ``pairs``)."""
        return getattr(result, self.items)

    def encode(self, item) -> list:
        """One kept item as JSON (the selection file)."""
        return list(item)

    def decode(self, value) -> ChosenPair:
        """One kept item read back from the selection file."""
        return ChosenPair(*value)

    def shard_rows(self) -> ShardRows:
        """How the kept items become shard rows."""
        return pair_rows(self.pair_id)

    def covisibilities(self) -> np.ndarray:
        """The kept items' covisibility, for the manifest's histogram."""
        return np.array([p.covisibility for s in self.selections.values() if s.ok for p in s.pairs], np.float64)

    def selection_path(self, key: str) -> Path:
        """``OUT/_pairgen/selections/<dataset>/<scene_id>.json``: one scene's chosen pairs, kept so a rerun need not
        redo it (outside ``pairs/``, which holds Parquet only)."""
        return selections_dir(self.folder) / f"{key}.json"

    def migrate(self, manifest: PairsManifest) -> None:
        """pairgen 0.1's ``pairs/scenes/`` (the selections) and ``pairs/contact_sheet.png`` move out of ``pairs/``."""
        super().migrate(manifest)
        if manifest.legacy and "views_manifest" in manifest.body:
            manifest.body["views_manifest"] = os.path.relpath(self.views.path, self.out_dir)
        for old, new in ((self.folder / LEGACY_SELECTIONS, selections_dir(self.folder)),
                         (self.folder / CONTACT_SHEET, self.out_dir / CONTACT_SHEET)):  # fmt: skip
            if not old.exists():
                continue
            if new.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            else:
                new.parent.mkdir(parents=True, exist_ok=True)
                os.replace(old, new)
            log.info("moved %s out of the pairs folder (to %s)", old, new)

    def _inputs(self) -> dict[str, str | None]:
        """What the pairs are made of: each rendered scene's views file checksum (None: not rendered)."""
        return {k: (e.get("sha256") if e.get("status") == "ok" and e.get("file") else None)
                for k, e in sorted(self.views.scenes.items())}  # fmt: skip

    def _views_stat(self, key: str) -> list[int] | None:
        """``[size, mtime_ns]`` of a rendered scene's views file, or None when it cannot be read."""
        try:
            return file_stat(path_inside(self.views_dir, str(self.scenes[key]["file"])))
        except (OSError, KeyError):
            return None

    def _views_files(self, keys) -> dict[str, list]:
        """``{key: [size, mtime_ns, sha256]}`` of the views files of ``keys`` (the manifest's ``views_files``)."""
        return {key: [*stat, self.scenes[key]["sha256"]] for key in sorted(keys)
                if self.scenes.get(key, {}).get("sha256") and (stat := self._views_stat(key))}  # fmt: skip

    def views_unchanged(self, key: str) -> bool:
        """Whether scene ``key``'s views file on disk is still the one the views manifest records (its SHA-256).

        A file replaced by another, even a valid one, is not: the pairs of
        that scene are made again (and its unit then says the file differs
        from the views manifest's). The file is hashed only when its size or
        modification time differ from those this manifest recorded when the
        pairs were made of it (``views_files``, as ``render`` records the
        checksum), or those ``render`` recorded with it (the entry's ``stat``), once a run.
        """
        if key not in self._unchanged:
            entry, seen = self.scenes.get(key, {}), self.manifest.body.get("views_files", {})
            stat = self._views_stat(key)
            if stat is None or not entry.get("sha256"):
                self._unchanged[key] = stat is not None  # no checksum to compare: as before, by the manifest's word
            else:
                path = path_inside(self.views_dir, str(entry["file"]))
                ours = seen.get(key) or []
                known = [entry.get("stat"), ours[:2] if ours[2:] == [entry["sha256"]] else None]
                self._unchanged[key] = has_checksum(path, entry["sha256"], known)
                if not self._unchanged[key]:
                    log.warning("%s: not the views file the views manifest records (replaced?); its pairs are made "
                                "again", path)  # fmt: skip
        return self._unchanged[key]

    def up_to_date(self, manifest: PairsManifest) -> bool:
        """Complete, made of the views there are now (the manifest's checksums, and the files on disk those), and
        every shard present at its recorded size."""
        if not manifest.complete or manifest.body.get("inputs") != self._inputs():
            return False
        if not all(self.views_unchanged(key) for key in sorted(self.scenes)):
            return False
        for entry, path in manifest.shard_paths():
            try:
                if path.stat().st_size != entry.get("bytes", path.stat().st_size):
                    return False
            except OSError:
                return False
        self.summary.counts.update({self.items: int(manifest.body.get("totals", {}).get(self.items, 0)),
                                    "shards": len(manifest.shards)})  # fmt: skip
        files = self._views_files(self.scenes)
        if manifest.body.get("views_files") != files:  # hashed now (a manifest of before views_files, a touched file)
            manifest.body["views_files"] = files
            manifest.write()
        return True

    def _reusable(self, key: str, entry: dict) -> ScenePairs | None:
        """The scene's selection of an earlier run, when made by this config from this very views file."""
        path = self.selection_path(key)
        if not _safe_key(key) or not entry.get("sha256") or not path.is_file() or not self.views_unchanged(key):
            return None
        try:
            kept = json.loads(local(path).read_text())
            if kept["config_hash"] != self.manifest.config_hash or kept["views_sha256"] != entry["sha256"]:
                return None
            return self.result_cls(status="skipped", **{self.items: [self.decode(p) for p in kept[self.items]]},
                                   **{k: kept["stats"].get(k) for k in self.stats})  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            return None  # damaged: computed again

    def plan(self):
        self.manifest.body.update(complete=False, shards=[])
        todo, decided = [], []
        for key, entry in sorted(self.views.scenes.items()):
            if entry.get("status") != "ok" or not entry.get("file"):
                reason = entry.get("reason") or "no views file"
                decided.append(((key, entry), self.result_cls(status="absent", reason=f"not rendered: {reason}")))
            elif (kept := self._reusable(key, entry)) is not None:
                decided.append(((key, entry), kept))
            else:
                todo.append((key, entry))
        return todo, decided

    def publish(self) -> None:
        write_card(self.out_dir)  # OUT/README.md, the dataset card (manifests/card.py)

    def on_result(self, task, result: ScenePairs) -> None:
        key, entry = task
        if result.status == "absent":
            self.summary.counts["not rendered"] += 1
            return
        self.selections[key] = result
        if result.status == "ok" and _safe_key(key):
            write_json_atomic(self.selection_path(key), {
                "config_hash": self.manifest.config_hash, "views_sha256": entry.get("sha256"),
                self.items: [self.encode(p) for p in self.kept(result)],
                "stats": {k: getattr(result, k) for k in self.stats},
            })  # fmt: skip
        elif result.status == "skipped":
            self.summary.counts["reused"] += 1

    def finish(self, manifest: PairsManifest) -> None:
        summary = self.summary
        kept = {key: self.kept(s) for key, s in self.selections.items() if s.ok}
        total = sum(len(items) for items in kept.values())
        files = {key: path_inside(self.views_dir, self.scenes[key]["file"]) for key in kept}
        bar = self.progress(total, "writing shards", self.items[:-1]) if self.progress else None
        try:
            shards = write_shards(kept, files, self.folder, self.config, manifest.config_hash, progress=bar,
                                  rows=self.shard_rows())  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
        hist, _ = np.histogram(self.covisibilities(), bins=HISTOGRAM_BINS)
        summary.counts.update({self.items: total, "shards": len(shards)})
        datasets = sorted({k.split("/", 1)[0] for k, items in kept.items() if items})
        manifest.body.update(
            complete=True,
            views_manifest=os.path.relpath(self.views.path, self.out_dir),
            inputs=self._inputs(),
            views_files=self._views_files(kept),
            totals={self.items: total, "shards": len(shards), "scenes": summary.ok + summary.skipped,
                    "scenes_failed": summary.failed, "scenes_not_rendered": summary.counts["not rendered"],
                    "datasets": datasets},  # fmt: skip
            histogram={"bins": HISTOGRAM_BINS.tolist(), "counts": hist.tolist()},
            shards=shards,
        )

    def line(self, summary: StageSummary) -> str:
        if summary.up_to_date:
            return f"already complete: {summary.counts['pairs']} pairs in {summary.counts['shards']} shards"
        reused = f", {summary.counts['reused']} reused" if summary.counts["reused"] else ""
        absent = f", {summary.counts['not rendered']} not rendered" if summary.counts["not rendered"] else ""
        return (
            f"{summary.counts['pairs']} pairs from {summary.ok + summary.skipped} scenes ({summary.failed} failed"
            f"{absent}{reused}) in {summary.counts['shards']} shards, {summary.seconds:.1f} s"
        )
