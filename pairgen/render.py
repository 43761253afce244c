"""``pairgen render``: scenes in, one views file a scene out.

:func:`render_scene` is the unit of work: a pure function from one scene
record to one ``views/<dataset>/<scene_id>.parquet`` plus a
:class:`SceneViews` result; it never raises (a bad file, a scene without
floor, too few usable views are results with a reason). :class:`RenderStage`
is the rest: the lifecycle of :mod:`pairgen.stage` (config hash,
``OUT/views.manifest.json``, resume, refusal of another config, progress) with
the plan every views stage shares (:class:`pairgen.views_stage.ViewsStage`): a
scene whose views file is complete with this config's hash and the current
format (in its own metadata, found where the record's views belong, never
where a manifest says) is skipped; one of the older ``pairgen-views/1``
format is rewritten in the current one by the unit
(:func:`manifests.views.upgrade_views`: the scene columns added, nothing
rendered again).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from manifests import SceneRecord
from manifests.io import OutputError
from manifests.layout import temporaries_dir
from manifests.manifest import sha256_file
from manifests.options import option
from manifests.views import VIEWS_FORMAT, upgrade_views
from pairgen.stage import StageSummary, run_unit
from pairgen.views_stage import ImageConfig, SceneViews, ViewsStage, complete_views_meta, store_views, views_path
from renderers.floor import FloorConfig, NoFloorError, find_floor
from renderers.scene import SceneFormatError
from renderers.viewpoints import SamplingStats, ViewConfig, sample_views

__all__ = ["RenderConfig", "RenderStage", "render_scene", "scene_rng"]

log = logging.getLogger(__name__)

MIN_KEPT = 0.5  # a scene yielding fewer than this share of the requested views fails


class TooFewViews(ValueError):
    """A scene where too few candidate views passed the checks."""


@dataclass(frozen=True)
class RenderConfig(ImageConfig):
    """Everything that decides what a scene's views file holds (hashed)."""

    seed: int = option(0, min=0, max=2**32 - 1, cli=False, help="seed of the viewpoint sampling (the --seed flag)")
    sampling: ViewConfig = field(default_factory=ViewConfig)
    floor: FloorConfig = field(default_factory=FloorConfig)


def scene_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one scene: depends on the run's seed and the scene's key only."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def render_scene(record: SceneRecord, views_dir: str | Path, config: RenderConfig, config_hash: str) -> SceneViews:
    """Render one scene's views into its views file. Never raises."""

    def body(result: SceneViews) -> None:
        from pairgen.scenes import load_record
        path = views_path(Path(views_dir), record)
        result.file = path.relative_to(views_dir).as_posix()
        done = complete_views_meta(path, config_hash, record)
        if done is not None:
            if done.format != VIEWS_FORMAT:  # an older format's file of this config: the new columns added
                done = upgrade_views(path, tmp_dir=temporaries_dir(views_dir))
            # its checksum for the manifest: the plan skips the scenes it has one for, so this one's entry has none
            # (a run killed before recording it, a damaged manifest replaced by --overwrite)
            result.sha256 = sha256_file(path)
            result.status, result.views = "skipped", done.views
            return
        scene = load_record(record)
        stats = SamplingStats()
        with config.open(scene) as renderer:
            raycaster = renderer.raycaster()
            rng = scene_rng(config.seed, record.key)
            try:
                floor = find_floor(scene, raycaster, config.floor, rng)
            except NoFloorError as e:
                raise SceneFormatError(record.mesh, f"no navigable floor: {e}") from None
            views = list(sample_views(renderer.render, floor, raycaster, config.sampling, rng, stats,
                                      screen=renderer.screening))  # fmt: skip
        result.views, result.candidates, result.walks = stats.kept, stats.candidates, stats.walks
        result.rejected, result.floor, result.floor_m2 = dict(stats.rejected), floor.source, round(floor.area, 2)
        wanted = config.sampling.views_per_scene
        if stats.kept < max(1, int(np.ceil(MIN_KEPT * wanted))):
            rejected = ", ".join(f"{n} {why}" for why, n in stats.rejected.most_common()) or "none"
            raise TooFewViews(
                f"only {stats.kept} of {wanted} views passed the checks after {stats.candidates} candidates "
                f"(rejected: {rejected})"
            )
        result.sha256 = store_views(path, Path(views_dir), record, [v.render for v in views],
                                    [v.K for v in views], [v.cam2world for v in views], config, config_hash)
        result.status = "ok"

    return run_unit(SceneViews(), body, expected=(SceneFormatError, TooFewViews, OutputError))


class RenderStage(ViewsStage):
    """``pairgen render``: every record's views under ``OUT/views``, and its manifest.

    ``RenderStage(records, out_dir, config, ...)``: ``records`` the scenes (:class:`manifests.SceneRecord`),
    ``config`` a :class:`RenderConfig`.
    """

    name = "render"
    what = "views rendered"
    progress_desc = "rendering"
    work = staticmethod(render_scene)

    def postfix(self) -> dict:
        return {"views_per_s": f"{self.views_per_s(self.summary):.1f}", "failed": self.summary.failed}

    def line(self, summary: StageSummary) -> str:
        return (
            f"{summary.ok} scenes rendered, {summary.skipped} already done, {summary.failed} failed; "
            f"{summary.counts['views']} views in {summary.seconds:.1f} s ({self.views_per_s(summary):.1f} views/s)"
        )
