"""``pairgen import croco``: two stages of the common lifecycle, into the usual ``OUT/views`` and ``OUT/pairs``.

:class:`ImportStage` (a :class:`~pairgen.views_stage.ViewsStage`, unit: one
CroCo scene) renders exactly the cameras of its metadata file with a render
backend; :class:`CrocoPairsStage` (a :class:`~pairgen.filter.FilterStage`)
measures the scene's listed pairs with the configured covisibility measure
(:meth:`covisibility.Measure.exact`) instead of searching for pairs, then
writes the filter's shards. Resume, refusal of another config and per-scene
failures behave as ``render`` and ``filter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.io import OutputError
from manifests.manifest import ViewsManifest
from manifests.options import option
from pairgen.filter import ChosenPair, FilterStage, PairsConfig, ScenePairs, checked_views
from pairgen.interchange.croco.metadata import CrocoScene, CrocoTask, ImportLimits, MetadataError, read_metadata
from pairgen.stage import StageSummary, run_unit
from pairgen.views_stage import ImageConfig, SceneViews, ViewsStage, store_views, views_path
from renderers.camera import intrinsics_from_hfov
from renderers.scene import SceneFormatError

__all__ = ["OUTSIDE_MARGIN", "CrocoPairsConfig", "CrocoPairsStage", "ImportConfig", "ImportStage", "check_cameras",
           "import_scene", "measure_croco_pairs"]  # fmt: skip


# metres: a camera further than this outside the loaded scene's bounding box fails the scene (the metadata was
# made for another scene, another version of it, or other axes); CroCo's cameras stand on its navmesh, inside
OUTSIDE_MARGIN = 2.0


@dataclass(frozen=True)
class ImportConfig(ImageConfig):
    """What decides an imported scene's views file, besides its metadata (hashed): as ``render``'s images."""


def check_cameras(croco: CrocoScene, lower: np.ndarray, upper: np.ndarray) -> None:
    """Refuse a camera more than :data:`OUTSIDE_MARGIN` metres outside the scene's bounds ``lower``, ``upper`` (3,).

    Raises
    ------
    MetadataError
        Naming the metadata file, the entry and view, the camera and the bounds.
    """
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    for label, positions, _ in croco.multiviews:
        outside = np.maximum(np.maximum(lower - positions, positions - upper), 0.0).max(axis=1)  # (n,) metres
        far = np.flatnonzero(outside > OUTSIDE_MARGIN)
        if far.size:
            i = int(far[0])
            raise MetadataError.at(croco.path, f"multiviews/{label}/positions/{i}", (
                f"camera at {np.round(positions[i], 2).tolist()} m, {outside[i]:.1f} m outside the scene's bounds "
                f"{np.round(lower, 2).tolist()} .. {np.round(upper, 2).tolist()}: is this the scene the metadata "
                "was made for?"))  # fmt: skip


def import_scene(task: CrocoTask, views_dir: str | Path, config: ImportConfig, config_hash: str,
                 min_valid: float = ImportLimits.min_valid) -> SceneViews:  # fmt: skip
    """Render a CroCo scene's cameras into its views file. Never raises.

    The scene fails (nothing written) when a camera lies far outside it
    (:func:`check_cameras`) or a view has less than ``min_valid`` of its
    pixels with valid depth (``render``'s rule for the views it keeps: "too
    little valid depth"): the listed pairs would hold views of nothing.
    """

    def body(result: SceneViews) -> None:
        from pairgen.scenes import load_record

        record = task.record
        path = views_path(Path(views_dir), record)
        result.file = path.relative_to(views_dir).as_posix()
        croco = read_metadata(task.metadata)
        if croco.sha256 != task.metadata_sha256:
            raise MetadataError(f"{task.metadata}: changed while the import ran; run the command again")
        views = croco.views()
        poses = [pose for _, _, pose in views]
        K = intrinsics_from_hfov(task.width, task.height, task.hfov)
        scene = load_record(record)
        check_cameras(croco, *scene.bounds)

        def checked(renders):
            for (label, o, _), r in zip(views, renders):
                if r.valid_fraction < min_valid:
                    raise MetadataError.at(task.metadata, f"multiviews/{label}/positions/{o - 1}", (
                        f"too little valid depth: {r.valid_fraction:.0%} of its pixels see a surface, below "
                        f"--min-valid {min_valid:g}: is this the scene the metadata was made for?"))  # fmt: skip
                yield r

        with config.open(scene) as renderer:  # encoded one by one (store_views): a view's bytes kept
            renders = (renderer.render(K, pose, width=task.width, height=task.height) for pose in poses)
            result.sha256 = store_views(path, Path(views_dir), record, checked(renders), [K] * len(poses), poses,
                                        config, config_hash)  # fmt: skip
        result.views, result.status = len(poses), "ok"

    return run_unit(SceneViews(), body, expected=(SceneFormatError, OutputError))


class ImportStage(ViewsStage):
    """``pairgen import croco``, first part: each CroCo scene's cameras rendered into ``OUT/views``.

    ``ImportStage(tasks, out_dir, config, ...)``: ``tasks`` are :func:`~pairgen.interchange.croco.import_tasks`'
    :class:`CrocoTask`, ``config`` an :class:`ImportConfig`.
    """

    name = "import"
    what = "views"
    progress_desc = "importing"
    work = staticmethod(import_scene)

    def __init__(self, tasks: list, out_dir, config: ImportConfig, *, min_valid: float = ImportLimits.min_valid,
                 **kw) -> None:  # fmt: skip
        super().__init__(tasks, out_dir, config, **kw)
        self.min_valid = min_valid  # ImportLimits': what a rendered view must show, not hashed

    def common(self) -> dict:
        return {**super().common(), "min_valid": self.min_valid}

    def identity(self) -> dict:
        return {"import": "croco", **super().identity()}

    def record(self, task: CrocoTask):
        return task.record

    def describe(self, task: CrocoTask) -> dict:
        return {**super().describe(task), "metadata": task.metadata, "metadata_sha256": task.metadata_sha256,
                "croco": task.croco}  # fmt: skip

    def reusable(self, task: CrocoTask, entry: dict) -> bool:
        """The same metadata file, and the same scene file (another --data-root or --dataset-map: again)."""
        return entry.get("metadata_sha256") == task.metadata_sha256 and entry.get("source") == str(task.record.mesh)

    def line(self, summary: StageSummary) -> str:
        return (f"{summary.ok} CroCo scenes imported, {summary.skipped} already done, {summary.failed} failed; "
                f"{summary.counts['views']} views rendered in {summary.seconds:.1f} s")  # fmt: skip


@dataclass(frozen=True)
class CrocoPairsConfig(PairsConfig):
    """How the imported pairs are measured, kept and sharded (hashed): as the filter's, but no band unless given."""

    min_covis: float = option(0.0, min=0, max=1, help="least covisibility of a kept pair (0: keep every pair)")
    max_covis: float = option(1.0, min=0, max=1, help="greatest covisibility of a kept pair (1: keep every pair)")
    measure: str = option("reprojection", cli=False, help="covisibility measure of the listed pairs (every pixel)")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the shard order")


def _metadata_of(views_dir: Path, key: str, entry: dict) -> CrocoScene:
    """The metadata file an imported scene's entry names, unchanged since the import."""
    path = entry.get("metadata")
    if not isinstance(path, str):
        raise OutputError(f"{ViewsManifest.path_in(views_dir)}: entry {key!r} was not imported from CroCo metadata")
    scene = read_metadata(path)
    if scene.sha256 != entry.get("metadata_sha256"):
        raise OutputError(f"{path}: changed since its views were imported; run `pairgen import croco` again")
    return scene


def measure_croco_pairs(task: tuple[str, dict], views_dir: str | Path, config: CrocoPairsConfig) -> ScenePairs:
    """The covisibility of one imported scene's CroCo pairs (``config.measure``, every pixel). Never raises."""

    def body(result: ScenePairs) -> None:
        from covisibility import MillimetreDepths, get_measure, in_band

        key, entry = task
        path, views = checked_views(views_dir, key, entry, made_by="pairgen import croco")
        pairs = _metadata_of(Path(views_dir), key, entry).pairs()
        row = {int(v): i for i, v in enumerate(views.view_ids)}
        try:
            a = np.array([row[v1] for v1, _, _ in pairs], np.int64)
            b = np.array([row[v2] for _, v2, _ in pairs], np.int64)
        except KeyError as e:
            raise OutputError(f"{path}: no view {e} that the metadata's pairs need") from None
        swap = a > b  # a measure takes (a, b) with a < b: rows in another order than the views' ids are turned
        lo, hi = np.where(swap, b, a), np.where(swap, a, b)
        measured = get_measure(config.measure).exact(MillimetreDepths(views.depth_mm), views.K, views.cam2world,
                                                     np.stack([lo, hi], axis=1))  # fmt: skip
        c12 = np.where(swap, measured.covis_2in1, measured.covis_1in2)
        c21 = np.where(swap, measured.covis_1in2, measured.covis_2in1)
        c = measured.covisibility
        keep = np.flatnonzero(in_band(c, config.min_covis, config.max_covis))
        result.pairs = [ChosenPair(pairs[k][0], pairs[k][1], float(c12[k]), float(c21[k]), float(c[k])) for k in keep]
        result.views, result.candidates, result.computed = len(views.view_ids), len(pairs), len(pairs)
        result.in_band = len(keep)
        result.status = "ok"

    return run_unit(ScenePairs(), body)


class CrocoPairsStage(FilterStage):
    """``pairgen import croco``, second part: the CroCo pairs of ``OUT/views`` into ``OUT/pairs``.

    The filter's lifecycle, selections and shards; only the unit of work (the
    listed pairs measured instead of searched) and the pair ids differ.
    """

    name = "import-pairs"
    progress_desc = "measuring pairs"
    work = staticmethod(measure_croco_pairs)

    def __init__(self, out_dir, config: CrocoPairsConfig, **kw) -> None:
        super().__init__(out_dir, config, **kw)
        self._names: dict[str, dict[tuple[int, int], str]] = {}

    def identity(self) -> dict:
        return {"import-pairs": self.config.to_dict(), "views_config_hash": self.views.config_hash}

    def pair_id(self, key: str, pair: ChosenPair) -> str:
        if key not in self._names:
            scene = _metadata_of(self.views_dir, key, self.views.scenes[key])
            self._names[key] = {(v1, v2): name for v1, v2, name in scene.pairs()}
        return f"{key}/{self._names[key][(pair.view1, pair.view2)]}"
