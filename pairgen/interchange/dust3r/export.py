"""``pairgen export --format dust3r``: 5-view stars as DUSt3R's processed Habitat folder.

The folder naver/dust3r's ``dust3r/datasets/habitat.py`` (class ``Habitat``)
reads, as its ``datasets_preprocess/habitat`` scripts write it (docs/design.md,
DUSt3R export)::

    DEST/
      Habitat_all_scenes.txt             # every sample "<dataset>/<scene_id>/<key>", sorted, no final newline
      Habitat_<n>_scenes_train.txt       # the n samples of the train scenes (the list Habitat(n, split='train') opens)
      Habitat_<m>_scenes_val.txt         # with --val-share, the m samples of the val scenes, if any
      .pairgen-export.json               # the samples exported (config hash, shard SHA-256s), shards done, complete
      <dataset>/<scene_id>/
        <key>_<i>.jpeg                   # i = 1..5, view 1 the star's reference
        <key>_<i>_depth.exr              # one half-float channel Y, planar depth in metres, 0 = no surface
        <key>_<i>_camera_params.json     # camera_intrinsics (ours), size [W, H], R_cam2world, t_cam2world

``<key>`` is the sample id's last part, the five view ids (``000002-000007-...``),
so a file leads back to its sample. DUSt3R's loader splits a list line into
the folder and the key (``os.path.split``), reads views ``_1`` to ``_5``
(view index ``0`` and one of ``1..4``, indices taken modulo 5: it reads
stars of exactly 5 views, view 1 overlapping every other), the JPEG with
PIL, the depth with ``cv2.imread(..., IMREAD_GRAYSCALE | IMREAD_ANYDEPTH)``
and ``camera_intrinsics``, ``R_cam2world``, ``t_cam2world`` from the JSON.

Cameras: DUSt3R's intrinsics put pixel ``i``'s centre at ``i`` (its
preprocessing writes ``colmap_to_opencv_intrinsics`` of habitat's frustum,
``(W/2 - 0.5, H/2 - 0.5)`` for a centred one; its cropping converts to
COLMAP's ``+0.5`` and back), which is our convention: ``K`` is written as
stored, unlike CroCo's (ours + 0.5). The pose is the OpenCV ``cam2world``,
as ours. ``size`` is ``[W, H]``, as its ``perspective_projection_to_dict``
writes (its loader does not read it).

The split: DUSt3R's ``find_scenes.py`` puts a seeded 10 % of the scenes in
val; here a scene is in val when the hash of ``<dataset>/<scene_id>`` falls
under ``--val-share`` (default 0: every sample in train), so a scene's split
does not depend on what else is exported. ``Habitat_all_scenes.txt`` is the
cache ``find_scenes.py`` reads first, so their own script can draw their
split and sizes from ``DEST`` as it is.
"""

from __future__ import annotations


import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from manifests.codecs import decode_depth
from manifests.io import OutputError, atomic_path, remove_stale_temporaries
from manifests.layout import name_problem
from manifests.lock import folder_lock
from manifests.manifest import SamplesManifest
from manifests.options import ConfigError, check, option
from manifests.samples import ViewsLookup
from pairgen.interchange.files import (ExportState, camera_params, exportable, refuse_dest_inside, verified_shards,
                                       write_view)  # fmt: skip
from manifests import store
from manifests.store import local

__all__ = ["ALL_SCENES", "SHAPE", "VIEWS", "Dust3rOptions", "Dust3rSummary", "export_dust3r", "sample_key",
           "scenes_list_name", "split_of"]  # fmt: skip

SHAPE, VIEWS = "star", 5  # what DUSt3R's Habitat reads: files _1 to _5, view 1 overlapping every other
ALL_SCENES = "Habitat_all_scenes.txt"  # every sample: find_scenes.py's cache of the folder
SPLITS = ("train", "val")
LIGHT_COLUMNS = ["sample_id", "dataset", "scene_id", "shape", "view_ids", "width", "height", "views_sha256"]
EMBEDDED_COLUMNS = ["images", "depths", "K", "cam2world"]


def scenes_list_name(size: int, split: str) -> str:
    """The scene list ``Habitat(size, split=split, ROOT=DEST)`` opens: ``Habitat_<size>_scenes_<split>.txt``."""
    return f"Habitat_{size}_scenes_{split}.txt"


def sample_key(sample_id: str) -> str:
    """The key a sample's files are named by: its id's last part, the view ids (``000002-000007-...``)."""
    return sample_id.rsplit("/", 1)[-1]


def split_of(dataset: str, scene_id: str, val_share: float) -> str:
    """``val`` for the scenes whose key's SHA-256, as a fraction of 2**64, is under ``val_share``, else ``train``."""
    h = int(hashlib.sha256(f"{dataset}/{scene_id}".encode()).hexdigest()[:16], 16) / 2**64
    return "val" if h < val_share else "train"


@dataclass(frozen=True)
class Dust3rOptions:
    """What ``export --format dust3r`` exports, and how its scene lists split the samples."""

    samples: str = option("star5", metavar="NAME",
                          help="--format dust3r: the samples folder OUT/NAME exported, stars of 5 views "
                               "(`pairgen filter --views 5 --shape star`)")  # fmt: skip
    val_share: float = option(0.0, min=0, max=1, metavar="SHARE",
                              help="--format dust3r: the share of scenes (by a hash of dataset/scene_id) whose "
                                   "samples go to Habitat_<m>_scenes_val.txt; the others to ..._train.txt")  # fmt: skip

    def __post_init__(self) -> None:
        check(self)
        if (problem := name_problem(self.samples, "folder name")) is not None:
            raise ConfigError("samples", f"must name a folder of OUT: {problem}")


@dataclass
class Dust3rSummary:
    samples: int = 0
    scenes: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    lists: dict[str, int] = field(default_factory=dict)  # scene list file -> samples it lists
    up_to_date: bool = False
    dest: str = ""

    def line(self) -> str:
        lists = ", ".join(self.lists)
        what = f"{self.samples} stars of {VIEWS} views of {self.scenes} scenes"
        if self.up_to_date:
            return f"already complete: {what} in {self.dest} ({lists})"
        return (f"{what} exported to {self.dest} ({self.shards_written} shards read, {self.shards_skipped} done "
                f"before; {lists})")  # fmt: skip


def export_dust3r(out_dir: str | Path, dest: str | Path, options: Dust3rOptions = Dust3rOptions(), progress=None, *,
                  sync_each_file: bool = False) -> Dust3rSummary:  # fmt: skip
    """Write the stars of ``OUT/<options.samples>`` as DUSt3R's Habitat folder ``dest`` (the module docstring).

    Referenced samples are resolved through a :class:`~manifests.samples.ViewsLookup`
    of ``OUT/views`` (a shard's samples taken scene by scene: each views
    file read once a shard, its SHA-256 checked against the one the samples
    recorded); embedded ones carry their views. Every file is written under
    a temporary name and renamed; a shard's files are synced together
    (``os.sync``) before the shard is recorded in ``dest/.pairgen-export.json``
    (``sync_each_file``: an fsync each instead), so a rerun writes exactly
    the shards not recorded. A complete export is left as it is; one whose
    ``val_share`` differs gets its scene lists rewritten, nothing else.

    Raises
    ------
    OutputError
        No such samples folder, samples not complete or not stars of 5
        views, a damaged shard or views file, ``dest`` inside ``OUT`` or
        holding an export of other samples.
    """
    out_dir, dest = Path(out_dir), Path(dest)
    folder = out_dir / options.samples
    if not SamplesManifest.exists(folder):
        raise OutputError(f"{SamplesManifest.path_in(folder)}: not found; write the stars with `pairgen filter "
                          f"--views {VIEWS} --shape {SHAPE} --out {out_dir}` first")  # fmt: skip
    manifest = exportable(SamplesManifest.read(folder))
    shape, views = manifest.config.get("shape"), manifest.config.get("views")
    if (shape, views) != (SHAPE, VIEWS):
        raise OutputError(f"{folder}: {shape}s of {views} views; DUSt3R's Habitat loader reads stars of {VIEWS} views "
                          f"(`pairgen filter --views {VIEWS} --shape {SHAPE}`)")  # fmt: skip
    total = sum(int(s.get("samples", 0)) for s in manifest.shards)
    if total == 0:
        raise OutputError(f"{manifest.path}: no samples to export")
    refuse_dest_inside(dest, out_dir)
    source = {"format": "dust3r-habitat", "samples_config_hash": manifest.config_hash,
              "shards": [s.get("sha256") for s in manifest.shards]}  # fmt: skip
    summary = Dust3rSummary(dest=str(dest))
    with folder_lock(dest):
        state = ExportState.open(dest, source, "samples")
        if state.complete and state.get("val_share") == options.val_share:  # done: nothing read again
            summary.samples, summary.scenes, summary.lists = (state.get(k) for k in ("samples", "scenes", "lists"))
            summary.up_to_date = True
            return summary
        if state.complete:  # only the scene lists change: rewritten from the shards' light columns
            state.reopen()
        remove_stale_temporaries(dest)  # an interrupted export's
        shards = verified_shards(manifest)
        lookup = ViewsLookup(out_dir / "views")
        keys: dict[tuple[str, str], set[str]] = {}  # (dataset, scene_id) -> the keys of its samples
        bar = progress(total, "exporting", "sample") if progress else None
        try:
            for entry, path in shards:
                done = state.done(entry["file"])
                count = _export_shard(path, dest, lookup, keys, write=not done, sync=sync_each_file)
                if not done:
                    state.record(entry["file"])  # after os.sync: the shard's files on disk first
                    summary.shards_written += 1
                else:
                    summary.shards_skipped += 1
                if bar is not None:
                    bar.update(count)
        finally:
            if bar is not None:
                bar.close()
        summary.samples = sum(len(v) for v in keys.values())
        summary.scenes = len(keys)
        summary.lists = _write_lists(dest, keys, options.val_share, stale=state.get("lists") or {})
        state.finish(samples=summary.samples, scenes=summary.scenes, val_share=options.val_share, lists=summary.lists)
    return summary


def _export_shard(path: Path, dest: Path, lookup: ViewsLookup, keys: dict[tuple[str, str], set[str]], *,
                  write: bool, sync: bool) -> int:  # fmt: skip
    """Check one shard's samples and add their keys to ``keys``; with ``write``, write their views' files.

    Returns the shard's sample count. Referenced samples are taken scene by
    scene (each views file read once); embedded ones a row group at a time.
    """
    with pq.ParquetFile(local(path)) as pf:
        embedded = all(name in pf.schema_arrow.names for name in EMBEDDED_COLUMNS)
        rows = pf.read(columns=LIGHT_COLUMNS).to_pylist()
        for row in rows:
            _check(path, row)
            scene = keys.setdefault((row["dataset"], row["scene_id"]), set())
            key = sample_key(row["sample_id"])
            if key in scene:
                raise OutputError(f"{path}: sample {row['sample_id']!r} would be written over another sample's files")
            scene.add(key)
        if not write:
            return len(rows)
        if embedded:
            for g in range(pf.metadata.num_row_groups):
                for row in pf.read_row_group(g, columns=[*LIGHT_COLUMNS, *EMBEDDED_COLUMNS]).to_pylist():
                    size = (row["width"], row["height"])
                    views = [(image["bytes"], depth["bytes"], camera_params(K, pose, size))
                             for image, depth, K, pose in zip(row["images"], row["depths"], row["K"], row["cam2world"])]
                    _write_sample(dest, row, views, sync)
            return len(rows)
    for row in sorted(rows, key=lambda r: (r["dataset"], r["scene_id"])):  # each views file read once a shard
        resolved = lookup.get(row["dataset"], row["scene_id"], row["views_sha256"])
        scene = f"{row['dataset']}/{row['scene_id']}"
        size = (resolved.width, resolved.height)
        views = []
        for view_id in row["view_ids"]:
            r = resolved.row(view_id, scene)
            views.append((resolved.image_bytes(r), resolved.depth_bytes(r),
                          camera_params(resolved.K[r], resolved.cam2world[r], size)))  # fmt: skip
        _write_sample(dest, row, views, sync)
    return len(rows)


def _check(path: Path, row: dict) -> None:
    """A row is a star of 5 views whose dataset, scene id and key are safe file names, or :class:`OutputError`."""
    if row["shape"] != SHAPE or len(row["view_ids"]) != VIEWS:
        raise OutputError(f"{path}: sample {row['sample_id']!r} is a {row['shape']} of {len(row['view_ids'])} views, "
                          f"not a {SHAPE} of {VIEWS}")  # fmt: skip
    for what, name in (("dataset", row["dataset"]), ("scene id", row["scene_id"]),
                       ("key", sample_key(row["sample_id"]))):  # each names a file or folder of DEST
        if (problem := name_problem(name, what)) is not None:
            raise OutputError(f"{path}: sample {row['sample_id']!r}: {problem}")


def _write_sample(dest: Path, row: dict, views: list[tuple[bytes, bytes, bytes]], sync: bool) -> None:
    """A sample's views ``(image bytes, depth PNG bytes, camera JSON)`` as ``<key>_1`` to ``<key>_5``."""
    folder = dest / row["dataset"] / row["scene_id"]
    key = sample_key(row["sample_id"])
    for i, (image, depth, params) in enumerate(views, start=1):
        write_view(folder, f"{key}_{i}", image, decode_depth(depth), params, sync)


def _write_lists(dest: Path, keys: dict[tuple[str, str], set[str]], val_share: float, stale: dict) -> dict[str, int]:
    """``Habitat_all_scenes.txt`` and a ``Habitat_<n>_scenes_<split>.txt`` a non-empty split; lists of an earlier
    split (``stale``) no longer written are removed. Returns each split list's name and line count."""
    lines = {split: [] for split in SPLITS}
    for (dataset, scene_id), scene in keys.items():
        lines[split_of(dataset, scene_id, val_share)] += [f"{dataset}/{scene_id}/{key}" for key in scene]
    names = {scenes_list_name(len(v), split): sorted(v) for split, v in lines.items() if v}
    for name, content in [(ALL_SCENES, sorted(x for v in lines.values() for x in v)), *names.items()]:
        with atomic_path(dest / name) as tmp:  # as find_scenes.py writes: "\n".join, no newline after the last
            tmp.write_text("\n".join(content))
    for name in set(stale) - set(names):
        store.remove(dest / name)
    return {name: len(content) for name, content in names.items()}
