"""``pairgen export --format croco``: ``OUT/pairs`` as CroCo's ``habitat_release`` folder.

The folder CroCo's ``datasets/pairs_dataset.py`` reads (docs/design.md, CroCo
interchange): per scene the pairs' JPEGs, half-float depth EXRs, camera
parameters and a ``metadata.json`` in CroCo's format, and ``pairs.txt``.
The view files and the export's state (resume, refusal) are those every
export shares (:mod:`pairgen.interchange.files`).
"""

from __future__ import annotations


import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.codecs import decode_depth
from manifests.io import OutputError, atomic_path, remove_stale_temporaries, write_json_atomic
from manifests.layout import name_problem
from manifests.lock import folder_lock
from manifests.manifest import PairsManifest, ViewsManifest
from pairgen.interchange.croco.cameras import cam2world_to_habitat, croco_intrinsics
from pairgen.interchange.croco.metadata import METADATA_NAME
from pairgen.interchange.files import (EXPORT_STATE, ExportState, camera_params, exportable, read_depth_exr,
                                      refuse_dest_inside, verified_shards, write_view)  # fmt: skip
from manifests.store import local

__all__ = ["EXPORT_STATE", "ExportSummary", "export_croco"]

_PAIR_SUFFIX = re.compile(r"^(?P<label>.+)_(?P<o1>[0-9]+)-(?P<o2>[0-9]+)$")
# the metadata keys CroCo's generate_from_metadata.py passes on to MultiviewHabitatSimGenerator (an
# export writes only these, besides multiviews and generate_depth, so their code runs on it unchanged)
GENERATOR_KEYS = ("scene_dataset_config_file", "scene", "navmesh", "resolution", "views_count", "hfov", "size")


@dataclass
class ExportSummary:
    pairs: int = 0
    scenes: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    up_to_date: bool = False
    dest: str = ""

    def line(self) -> str:
        if self.up_to_date:
            return f"already complete: {self.pairs} pairs of {self.scenes} scenes in {self.dest}"
        return (f"{self.pairs} pairs of {self.scenes} scenes exported to {self.dest} "
                f"({self.shards_written} shards read, {self.shards_skipped} done before)")  # fmt: skip


def _label(pair_id: str) -> str:
    """The CroCo label a pair is written under: its pair id's last part, ``<label>_1-2`` giving ``<label>``."""
    last = pair_id.rsplit("/", 1)[-1]
    m = _PAIR_SUFFIX.fullmatch(last)
    return m["label"] if m and (m["o1"], m["o2"]) == ("1", "2") else last


def _croco_paths(entry: dict, dataset: str) -> dict:
    """The metadata's scene paths of a views entry: as imported, or the rendered mesh under its dataset label."""
    if isinstance(entry.get("croco"), dict):
        return {k: str(entry["croco"].get(k, "")) for k in ("scene", "navmesh", "scene_dataset_config_file")}
    source = Path(str(entry.get("source", "")))
    parts = source.parts
    rest = Path(*parts[len(parts) - parts[::-1].index(dataset):]) if dataset in parts else Path(source.name)
    return {"scene": f"{dataset}/{rest.as_posix()}", "navmesh": "", "scene_dataset_config_file": ""}


LIGHT_COLUMNS = ["pair_id", "dataset", "scene_id", "K1", "K2", "cam2world1", "cam2world2", "covis_1in2",
                 "covis_2in1", "covisibility", "width", "height"]  # fmt: skip


def export_croco(out_dir: str | Path, dest: str | Path, progress=None, *, sync_each_file: bool = False) -> ExportSummary:
    """Write ``OUT/pairs`` as CroCo's ``habitat_release`` folder ``dest``.

    Per scene ``dest/<dataset>/<scene_id>/``: ``<label>_1.jpeg``,
    ``<label>_2.jpeg``, ``<label>_{1,2}_depth.exr`` (half float, metres, 0 =
    invalid), ``<label>_{1,2}_camera_params.json`` (``camera_intrinsics``
    with CroCo's principal point, ``R_cam2world``, ``t_cam2world``) and
    ``metadata.json`` in CroCo's format; then ``dest/pairs.txt``, the cache
    ``datasets/pairs_dataset.py`` reads (``<image 1> <image 2>`` relative to
    ``dest``, one pair a line). Every file is written atomically; a shard's
    pairs are recorded in ``dest/.pairgen-export.json`` once written, so a
    rerun continues, and a complete export is left as it is.

    The pair files are written without an fsync each (six small files a
    pair, 1.8 M pairs in CroCo's release: an fsync each took 70 % of the
    export's time): a shard's files are synced together (``os.sync``) before
    the shard is recorded as done, and a shard not recorded is written again
    by the next run. ``sync_each_file`` fsyncs every file as
    :func:`manifests.io.atomic_path` does by default (the benchmark's baseline).

    Raises
    ------
    OutputError
        No pairs, a damaged shard, or ``dest`` holds an export of other pairs.
    """
    import pyarrow.parquet as pq

    out_dir, dest = Path(out_dir), Path(dest)
    pairs = exportable(PairsManifest.read(out_dir / "pairs"))
    views = ViewsManifest.read(out_dir / "views") if ViewsManifest.exists(out_dir / "views") else None
    source = {"pairs_config_hash": pairs.config_hash, "shards": [s.get("sha256") for s in pairs.shards]}
    summary = ExportSummary(dest=str(dest))
    refuse_dest_inside(dest, out_dir)  # pairs/ holds Parquet only; OUT holds the pipeline's files
    with folder_lock(dest):
        state = ExportState.open(dest, source, "pairs")
        if state.complete:  # done: nothing read again
            summary.pairs, summary.scenes, summary.up_to_date = state.get("pairs"), state.get("scenes"), True
            return summary
        remove_stale_temporaries(dest)  # an interrupted export's
        # (dataset, scene_id) -> label -> (19,) position, quaternion of both views, covisibilities, valid fractions
        scenes: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
        sizes: dict[tuple[str, str], tuple[float, int, int]] = {}  # fx, width, height
        shard_paths = verified_shards(pairs)
        bar = progress(sum(int(e.get("pairs", 0)) for e, _ in shard_paths), "exporting", "pair") if progress else None
        try:
            for entry, path in shard_paths:
                done = state.done(entry["file"])
                light = pq.read_table(local(path), columns=LIGHT_COLUMNS).to_pylist()
                full = None if done else pq.read_table(path, columns=["image1", "image2", "depth1", "depth2"]).to_pylist()
                for i, row in enumerate(light):
                    label = _label(row["pair_id"])
                    for what, name in (("dataset", row["dataset"]), ("scene id", row["scene_id"]),
                                       ("label", label)):  # each names a file or folder of DEST
                        if (problem := name_problem(name, what)) is not None:
                            raise OutputError(f"{path}: pair {row['pair_id']!r}: {problem}")
                    folder = dest / row["dataset"] / row["scene_id"]
                    if label in scenes[(row["dataset"], row["scene_id"])]:
                        raise OutputError(f"{path}: pair {row['pair_id']!r} would be written under the label "
                                          f"{label!r} of another pair of its scene")  # fmt: skip
                    cams, valid = [], []
                    for o in ("1", "2"):
                        K = np.asarray(row["K" + o], np.float64).reshape(3, 3)
                        pose = np.asarray(row["cam2world" + o], np.float64).reshape(4, 4)
                        cams.append((K, pose))
                        if full is not None:
                            depth = decode_depth(full[i]["depth" + o]["bytes"])
                            valid.append(float(np.count_nonzero(depth) / depth.size))
                            write_view(folder, f"{label}_{o}", full[i]["image" + o]["bytes"], depth,
                                       camera_params(croco_intrinsics(K), pose), sync_each_file)  # fmt: skip
                    (p1, q1), (p2, q2) = (cam2world_to_habitat(p) for _, p in cams)
                    v1, v2 = valid if valid else (math.nan, math.nan)  # nan: read back from the EXRs at the end
                    key = (row["dataset"], row["scene_id"])
                    scenes[key][label] = np.array([*p1, *q1, *p2, *q2, row["covis_1in2"], row["covis_2in1"],
                                                   row["covisibility"], v1, v2])  # fmt: skip
                    sizes.setdefault(key, (float(cams[0][0][0, 0]), int(row["width"]), int(row["height"])))
                if not done:
                    state.record(entry["file"])  # after os.sync: the shard's files on disk first
                    summary.shards_written += 1
                else:
                    summary.shards_skipped += 1
                if bar is not None:
                    bar.update(len(light))
        finally:
            if bar is not None:
                bar.close()
        summary.pairs = sum(len(v) for v in scenes.values())
        summary.scenes = len(scenes)
        lines = []
        for (dataset, scene_id), labels in sorted(scenes.items()):
            folder = dest / dataset / scene_id
            entry = (views.scenes.get(f"{dataset}/{scene_id}", {}) if views is not None else {})
            fx, width, height = sizes[(dataset, scene_id)]
            hfov = math.degrees(2 * math.atan((width / 2) / fx))
            multiviews = {}
            # the order of CroCo's own parse_and_cache_all_pairs (os.walk, folders and files sorted by name)
            for label, values in sorted(labels.items(), key=lambda item: f"{item[0]}_1.jpeg"):
                multiviews[label] = _multiview_entry(values, folder, label)
                lines.append(f"{dataset}/{scene_id}/{label}_1.jpeg {dataset}/{scene_id}/{label}_2.jpeg")
            metadata = {**_croco_paths(entry, dataset), "resolution": [int(height), int(width)], "hfov": hfov,
                        "views_count": 2, "size": len(multiviews), "generate_depth": True,
                        "multiviews": multiviews}  # fmt: skip
            write_json_atomic(folder / METADATA_NAME, metadata)
        with atomic_path(dest / "pairs.txt") as tmp:  # as CroCo's write_cache_file: no newline after the last line
            tmp.write_text("\n".join(lines))
        state.finish(pairs=summary.pairs, scenes=summary.scenes)
    return summary


def _multiview_entry(values: np.ndarray, folder: Path, label: str) -> dict:
    """One ``multiviews`` entry in CroCo's form; its ratios are our measure's (valid fractions read back if need be)."""
    v = values.tolist()
    c12, c21, c, v1, v2 = v[14:19]
    if math.isnan(v1):
        v1, v2 = (_exr_valid_fraction(folder / f"{label}_{o}_depth.exr") for o in ("1", "2"))
    return {"positions": [v[0:3], v[7:10]], "orientations": [v[3:7], v[10:14]], "covisibility_ratios": [v1, c],
            "valid_fractions": [v1, v2], "pairwise_visibility_ratios": [[v1, c12], [c21, v2]]}


def _exr_valid_fraction(path: Path) -> float:
    depth = read_depth_exr(path)
    return float(np.count_nonzero(depth) / depth.size)
