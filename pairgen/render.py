"""``pairgen render``: scenes in, one views file a scene out.

:func:`render_scene` is the unit of work: a pure function from one scene
record to one ``views/<dataset>/<scene_id>.parquet`` plus a
:class:`SceneViews` result; it never raises (a bad file, a scene without
floor, too few usable views are results with a reason). :class:`RenderStage`
is the rest: the lifecycle of :mod:`pairgen.stage` (config hash,
``OUT/views.manifest.json``, resume, refusal of another config, progress) with
render's plan: a scene whose views file is complete with this config's hash
(in its own metadata, found where the record's views belong, never where a
manifest says) is skipped; one of the older ``pairgen-views/1`` format is
rewritten in the current one (:func:`manifests.views.upgrade_views`: the scene
columns added, nothing rendered again).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from manifests import SceneRecord
from manifests.codecs import IMAGE_FORMATS, encode_depth, encode_rgb
from manifests.card import write_card
from manifests.io import OutputError
from manifests.layout import is_safe_name, temporaries_dir
from manifests.manifest import ViewsManifest, sha256_file
from manifests.options import check, option
from manifests.views import VIEWS_FORMAT, ViewsFileMeta, read_views_meta, upgrade_views, views_table, write_views
from pairgen.stage import Stage, StageSummary, UnitResult, run_unit
from renderers.backends import ANTIALIAS, LIGHTING, available_backends, describe_backends
from renderers.floor import FloorConfig, NoFloorError, find_floor
from renderers.scene import SceneFormatError
from renderers.viewpoints import SamplingStats, ViewConfig, sample_views

__all__ = ["ImageConfig", "RenderConfig", "RenderStage", "SceneViews", "render_scene", "scene_rng", "store_views", "views_path"]

log = logging.getLogger(__name__)

MIN_KEPT = 0.5  # a scene yielding fewer than this share of the requested views fails


class TooFewViews(ValueError):
    """A scene where too few candidate views passed the checks."""


@dataclass(frozen=True)
class ImageConfig:
    """How views are rendered and encoded: the part of a config that ``render`` and ``import croco`` share."""

    backend: str = option("raycast", choices=available_backends, help=lambda: "renderer: " + describe_backends())
    antialias: str = option("full", choices=ANTIALIAS,
                            help="colour anti-aliasing: off (one ray per pixel centre, textures at full resolution), "
                                 "textures (mip-mapped, trilinear, level from each pixel's footprint), full (textures, "
                                 "and extra samples in pixels on an edge); depth is always the pixel-centre sample "
                                 "(habitat: the GPU filters textures at every level and does not supersample edges)")
    lighting: str = option("baked", choices=LIGHTING,
                           help="light of the synthetic apartments: baked (ceiling lights, door openings, ambient "
                                "occlusion; baked per scene) or flat (unlit albedo); real scans keep their colours")
    image_format: str = option("jpeg", choices=IMAGE_FORMATS, help="encoding of the RGB images")
    jpeg_quality: int = option(95, min=1, max=100, help="JPEG quality, 1-100")

    def __post_init__(self) -> None:
        check(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def image_ext(self) -> str:
        return {"jpeg": "jpg", "png": "png"}[self.image_format]

    def open(self, scene):
        """A renderer of ``scene`` with this config's backend, anti-aliasing and light (a context manager)."""
        from renderers.backends import get_backend

        return get_backend(self.backend).open(scene, antialias=self.antialias, lighting=self.lighting)


@dataclass(frozen=True)
class RenderConfig(ImageConfig):
    """Everything that decides what a scene's views file holds (hashed)."""

    seed: int = option(0, min=0, max=2**32 - 1, cli=False, help="seed of the viewpoint sampling (the --seed flag)")
    sampling: ViewConfig = field(default_factory=ViewConfig)
    floor: FloorConfig = field(default_factory=FloorConfig)


@dataclass
class SceneViews(UnitResult):
    """One scene's render: the file written and how its views were found."""

    file: str | None = None  # relative to views/
    views: int = 0
    sha256: str | None = None
    candidates: int | None = None
    walks: int | None = None
    rejected: dict | None = None  # reason -> candidates rejected for it
    floor: str | None = None  # navmesh or geometry
    floor_m2: float | None = None


def scene_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one scene: depends on the run's seed and the scene's key only."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def views_path(views_dir: Path, record: SceneRecord) -> Path:
    """``views_dir/<dataset>/<scene_id>.parquet``; refuses names that would leave the folder."""
    for part in (record.dataset, record.scene_id):
        if not is_safe_name(part):
            raise OutputError(f"scene name {part!r} is not a safe file name (letters, digits, '.', '_', '-')")
    return views_dir / record.dataset / f"{record.scene_id}.parquet"


def _complete_meta(path: Path, config_hash: str) -> ViewsFileMeta | None:
    """The metadata of ``path`` when it is a complete views file of this config, else None."""
    if not path.is_file():
        return None
    try:
        meta = read_views_meta(path)
    except OutputError as e:
        log.warning("%s: will render again (%s)", path, e)
        return None
    return meta if meta.config_hash == config_hash else None


def store_views(
    path: Path,
    views_dir: Path,
    record: SceneRecord,
    renders: Iterable,
    Ks: list[np.ndarray],
    poses: list[np.ndarray],
    config: ImageConfig,
    config_hash: str,
) -> str:
    """Encode ``renders`` (RenderedView, one a camera, any iterable) and write them as ``path``, the scene's views file.

    Each render is encoded as it comes, so a generator of renders holds one
    view's pixels at a time. Returns the file's SHA-256 (for the manifest).
    """
    images, depths, valid, size = [], [], [], None
    for r in renders:
        size = size or (r.rgb.shape[1], r.rgb.shape[0])
        images.append(encode_rgb(r.rgb, config.image_format, config.jpeg_quality))
        depths.append(encode_depth(r.depth))
        valid.append(r.valid_fraction)
    if size is None:
        raise OutputError(f"{path}: no views to write")
    table = views_table(list(range(len(images))), images, depths, Ks, poses, *size, valid,
                        image_ext=config.image_ext, dataset=record.dataset, scene_id=record.scene_id)  # fmt: skip
    meta = ViewsFileMeta(dataset=record.dataset, scene_id=record.scene_id, source=str(record.mesh),
                         backend=config.backend, config_hash=config_hash, views=len(images))  # fmt: skip
    write_views(path, table, meta, tmp_dir=temporaries_dir(views_dir))
    return sha256_file(path)


def render_scene(record: SceneRecord, views_dir: str | Path, config: RenderConfig, config_hash: str) -> SceneViews:
    """Render one scene's views into its views file. Never raises."""

    def body(result: SceneViews) -> None:
        from pairgen.scenes import load_record
        path = views_path(Path(views_dir), record)
        result.file = path.relative_to(views_dir).as_posix()
        done = _complete_meta(path, config_hash)
        if done is not None:
            if done.format != VIEWS_FORMAT:  # an older format's file of this config: the new columns added
                done = upgrade_views(path, tmp_dir=temporaries_dir(views_dir))
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


class RenderStage(Stage):
    """``pairgen render``: every record's views under ``OUT/views``, and its manifest."""

    name = "render"
    folder_name = "views"
    manifest_cls = ViewsManifest
    result_cls = SceneViews
    what = "views rendered"
    progress_desc = "rendering"
    work = staticmethod(render_scene)

    def __init__(self, records: list[SceneRecord], out_dir, config: RenderConfig, **kw) -> None:
        super().__init__(out_dir, config, **kw)
        self.records = records

    def key(self, record: SceneRecord) -> str:
        return record.key

    def describe(self, record: SceneRecord) -> dict:
        return {"dataset": record.dataset, "split": record.split, "scene_id": record.scene_id, "source": record.mesh}

    def common(self) -> dict:
        return {"views_dir": self.folder, "config": self.config, "config_hash": self.manifest.config_hash}

    def plan(self):
        todo, decided = [], []
        for record in self.records:
            entry = self.manifest.scenes.get(record.key, {})
            if not record.ok:
                decided.append((record, SceneViews(reason="; ".join(record.problems))))
            elif entry.get("status") == "ok" and (
                meta := _complete_meta(views_path(self.folder, record), self.manifest.config_hash)
            ) and meta.format == VIEWS_FORMAT:
                decided.append((record, SceneViews(status="skipped", views=meta.views, file=entry.get("file"),
                                                   seconds=entry.get("seconds", 0.0))))  # fmt: skip
            else:
                todo.append(record)
        return todo, decided

    def publish(self) -> None:
        write_card(self.out_dir)  # OUT/README.md, the dataset card (manifests/card.py)

    def on_result(self, record: SceneRecord, result: SceneViews) -> None:
        if result.status == "ok":
            self.summary.counts["views"] += result.views

    def postfix(self) -> dict:
        return {"views_per_s": f"{self.views_per_s(self.summary):.1f}", "failed": self.summary.failed}

    @staticmethod
    def views_per_s(summary: StageSummary) -> float:
        return summary.counts["views"] / summary.seconds if summary.seconds > 0 else 0.0

    def line(self, summary: StageSummary) -> str:
        return (
            f"{summary.ok} scenes rendered, {summary.skipped} already done, {summary.failed} failed; "
            f"{summary.counts['views']} views in {summary.seconds:.1f} s ({self.views_per_s(summary):.1f} views/s)"
        )
