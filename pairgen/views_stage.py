"""What every stage that writes ``OUT/views`` shares: the image config, the views file, the stage base.

Two stages write views files: ``pairgen render`` (:class:`pairgen.render.RenderStage`:
viewpoints it samples) and ``pairgen import croco``
(:class:`pairgen.interchange.croco.ImportStage`: cameras a CroCo metadata file
lists). Both are a :class:`ViewsStage`, so both write the same views files
(:func:`store_views`, at :func:`views_path`), the same manifest entries
(:class:`SceneViews`), reuse a complete views file by the same rule
(:meth:`ViewsStage.plan`: the manifest says ok, the file's own metadata has
this config's hash and the current format, and the subclass's
:meth:`ViewsStage.reusable` agrees), and write the dataset card at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from manifests import SceneRecord, store
from manifests.card import write_card
from manifests.codecs import IMAGE_FORMATS, encode_depth, encode_rgb
from manifests.io import OutputError, path_inside
from manifests.layout import name_problem, temporaries_dir
from manifests.manifest import ViewsManifest, file_stat, has_checksum, sha256_file
from manifests.options import check, option
from manifests.views import VIEWS_FORMAT, ViewsFileMeta, read_views_meta, views_table, write_views
from pairgen.stage import Stage, StageSummary, UnitResult
from renderers.backends import ANTIALIAS, LIGHTING, RENDER_REVISION, available_backends, describe_backends

__all__ = ["ImageConfig", "SceneViews", "ViewsStage", "complete_views_meta", "store_views", "views_path"]

log = logging.getLogger(__name__)


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


@dataclass
class SceneViews(UnitResult):
    """One scene's views file, as a views stage's unit returns it and its manifest entry holds it."""

    file: str | None = None  # relative to views/
    views: int = 0
    sha256: str | None = None
    candidates: int | None = None
    walks: int | None = None
    rejected: dict | None = None  # reason -> candidates rejected for it
    floor: str | None = None  # navmesh or geometry
    floor_m2: float | None = None


def views_path(views_dir: Path, record: SceneRecord) -> Path:
    """``views_dir/<dataset>/<scene_id>.parquet``; refuses names that would leave the folder."""
    for what, part in (("dataset", record.dataset), ("scene id", record.scene_id)):
        problem = name_problem(part, what)
        if problem is not None:
            raise OutputError(problem)
    return views_dir / record.dataset / f"{record.scene_id}.parquet"


def complete_views_meta(path: Path, config_hash: str, record: SceneRecord) -> ViewsFileMeta | None:
    """The metadata of ``path`` when it is a complete views file of this config and of ``record``'s scene (any
    format read), else None."""
    if not path.is_file():
        return None
    try:
        meta = read_views_meta(path)
    except OutputError as e:
        log.warning("%s: will render again (%s)", path, e)
        return None
    if (meta.dataset, meta.scene_id) != (record.dataset, record.scene_id):
        log.warning("%s: the views of %s/%s, not of this scene (a file put in its place?); will render again", path,
                    meta.dataset, meta.scene_id)  # fmt: skip
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
    meta = ViewsFileMeta(dataset=record.dataset, scene_id=record.scene_id, source=store.shown(str(record.mesh)),
                         backend=config.backend, config_hash=config_hash, views=len(images))  # fmt: skip
    write_views(path, table, meta, tmp_dir=temporaries_dir(views_dir))
    return sha256_file(path)


class ViewsStage(Stage):
    """A stage whose unit writes one scene's views file into ``OUT/views``; subclasses say where tasks come from.

    Subclasses set ``name``, ``what``, ``progress_desc``, ``work`` (called as
    ``work(task, views_dir=, config=, config_hash=)``) and :meth:`record`;
    they may add to :meth:`describe` and narrow :meth:`reusable`.

    The reuse decision is the plan's. A unit may also skip a file it finds
    complete (``render``'s does, and rewrites an older format in place: its
    file is decided by its config and scene alone); ``import``'s does not, as
    its file also depends on the metadata file, which the plan checks.
    """

    folder_name = "views"
    manifest_cls = ViewsManifest
    result_cls = SceneViews

    def __init__(self, tasks: list, out_dir, config: ImageConfig, **kw) -> None:
        super().__init__(out_dir, config, **kw)
        self.tasks = tasks

    def identity(self) -> dict:
        """The config and the backends' revision (:data:`renderers.backends.RENDER_REVISION`): views of the same
        options that the backends now render otherwise are another config's, refused, never reused."""
        return {**self.config.to_dict(), "render_revision": RENDER_REVISION}

    def record(self, task) -> SceneRecord:
        """The scene a task renders."""
        return task

    def reusable(self, task, entry: dict) -> bool:
        """Whether an earlier run's complete views file of this config still stands for ``task``, besides its hash."""
        return True

    def key(self, task) -> str:
        return self.record(task).key

    def describe(self, task) -> dict:
        r = self.record(task)
        return {"dataset": r.dataset, "split": r.split, "scene_id": r.scene_id,
                "source": store.shown(r.mesh) if r.mesh else r.mesh}  # a store's scene: its URI

    def common(self) -> dict:
        return {"views_dir": self.folder, "config": self.config, "config_hash": self.manifest.config_hash}

    def plan(self) -> tuple[list, list[tuple[Any, SceneViews]]]:
        """A task whose record has problems fails; one whose views file is complete and current is skipped."""
        todo, decided = [], []
        for task in self.tasks:
            record = self.record(task)
            entry = self.manifest.scenes.get(record.key, {})
            if not record.ok:
                decided.append((task, SceneViews(reason="; ".join(record.problems))))
            elif entry.get("status") == "ok" and self.reusable(task, entry) and (
                meta := complete_views_meta(path := views_path(self.folder, record), self.manifest.config_hash, record)
            ) and meta.format == VIEWS_FORMAT and self.recorded(path, entry):
                decided.append((task, SceneViews(status="skipped", views=meta.views, file=entry.get("file"),
                                                 sha256=entry.get("sha256"), seconds=entry.get("seconds", 0.0))))
            else:
                todo.append(task)
        return todo, decided

    @staticmethod
    def recorded(path: Path, entry: dict) -> bool:
        """Whether the views file at ``path`` is the one ``entry`` records (its SHA-256): hashed only when its size
        or modification time differ from the entry's ``stat``. A file replaced by another valid one of this scene
        and config goes to the unit, which takes it and records its checksum, never keeping the old one; an entry
        without a checksum is taken at its word."""
        return not entry.get("sha256") or has_checksum(path, entry["sha256"], [entry.get("stat")])

    def on_result(self, task, result: SceneViews) -> None:
        if result.status == "ok":
            self.summary.counts["views"] += result.views
        entry = self.manifest.scenes.get(self.key(task), {})
        if result.ok and result.file and entry.get("sha256"):  # the file as its checksum was taken (or checked)
            stat = file_stat(path_inside(self.folder, str(result.file)))
            if stat is not None:
                entry["stat"] = stat

    def publish(self) -> None:
        write_card(self.out_dir)  # OUT/README.md, the dataset card (manifests/card.py)

    @staticmethod
    def views_per_s(summary: StageSummary) -> float:
        return summary.counts["views"] / summary.seconds if summary.seconds > 0 else 0.0
