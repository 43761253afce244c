"""``pairgen render``: scenes in, one views file a scene out.

:func:`render_scene` is the unit of work: a pure function from one scene
record to one ``views/<dataset>/<scene_id>.parquet`` plus a status record; it
never raises (a bad file, a scene without floor, too few usable views are
records with a reason). :func:`run_render` hands scenes to a distributor
(Ray by default) and keeps ``views/manifest.json``: the config, its hash and
each scene's status, rewritten atomically as scenes finish, so a run killed at
any moment resumes where it stopped.

A rerun with the same config skips scenes whose views file is complete (its
metadata carries the config hash); a rerun with another config refuses,
unless told to overwrite.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from manifests import SceneRecord
from manifests.codecs import IMAGE_FORMATS, encode_depth, encode_rgb
from manifests.config import config_changes, config_hash
from manifests.io import OutputError, path_inside, read_json, remove_stale_temporaries, write_json_atomic
from manifests.views import ViewsFileMeta, read_views_meta, views_table, write_views
from pairgen import __version__
from renderers.floor import FloorConfig, NoFloorError, find_floor
from renderers.scene import SceneFormatError
from renderers.viewpoints import SamplingStats, ViewConfig, sample_views

__all__ = [
    "ConfigMismatch",
    "RenderConfig",
    "RenderSummary",
    "render_scene",
    "run_render",
    "scene_rng",
    "views_path",
]

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "pairgen-views-manifest/1"
MIN_KEPT = 0.5  # a scene yielding fewer than this share of the requested views fails
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigMismatch(ValueError):
    """An output folder holds results of another config."""


class TooFewViews(ValueError):
    """A scene where too few candidate views passed the checks."""


@dataclass(frozen=True)
class RenderConfig:
    """Everything that decides what a scene's views file holds (hashed)."""

    backend: str = "raycast"
    seed: int = 0
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    views: ViewConfig = field(default_factory=ViewConfig)
    floor: FloorConfig = field(default_factory=FloorConfig)

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of the config."""
        return config_hash(self.to_dict())

    @property
    def image_ext(self) -> str:
        return {"jpeg": "jpg", "png": "png"}[self.image_format]


def scene_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one scene: depends on the run's seed and the scene's key only."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def views_path(views_dir: Path, record: SceneRecord) -> Path:
    """``views_dir/<dataset>/<scene_id>.parquet``; refuses names that would leave the folder."""
    for part in (record.dataset, record.scene_id):
        if not _SAFE_NAME.match(part):
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


def render_scene(record: SceneRecord, views_dir: str | Path, config: RenderConfig) -> dict:
    """Render one scene's views into its views file. Never raises.

    Returns
    -------
    dict
        ``status`` (``ok``/``skipped``/``failed``), ``reason`` when failed,
        ``views``, ``candidates``, ``rejected`` (by reason), ``walks``,
        ``seconds``, ``file`` (relative to ``views_dir``).
    """
    from pairgen.scenes import load_record
    from renderers.backends import get_backend

    start = time.perf_counter()
    views_dir = Path(views_dir)
    result: dict = {"status": "failed", "views": 0}
    try:
        path = views_path(views_dir, record)
        result["file"] = path.relative_to(views_dir).as_posix()
        done = _complete_meta(path, config.hash)
        if done is not None:
            return {**result, "status": "skipped", "views": done.views}
        scene = load_record(record)
        stats = SamplingStats()
        rows: dict[str, list] = {k: [] for k in ("images", "depths", "Ks", "poses", "valid")}
        with get_backend(config.backend).open(scene) as renderer:
            raycaster = renderer.raycaster()
            rng = scene_rng(config.seed, record.key)
            floor = find_floor(scene, raycaster, config.floor, rng)
            views = sample_views(renderer.render, floor, raycaster, config.views, rng, stats, screen=renderer.screening)
            for view in views:
                rows["images"].append(encode_rgb(view.render.rgb, config.image_format, config.jpeg_quality))
                rows["depths"].append(encode_depth(view.render.depth))
                rows["Ks"].append(view.K)
                rows["poses"].append(view.cam2world)
                rows["valid"].append(view.render.valid_fraction)
        result.update(views=stats.kept, candidates=stats.candidates, walks=stats.walks,
                      rejected=dict(stats.rejected), floor=floor.source, floor_m2=round(floor.area, 2))  # fmt: skip
        wanted = config.views.views
        if stats.kept < max(1, int(np.ceil(MIN_KEPT * wanted))):
            rejected = ", ".join(f"{n} {why}" for why, n in stats.rejected.most_common()) or "none"
            raise TooFewViews(
                f"only {stats.kept} of {wanted} views passed the checks after {stats.candidates} candidates "
                f"(rejected: {rejected})"
            )
        table = views_table(
            list(range(stats.kept)), rows["images"], rows["depths"], rows["Ks"], rows["poses"],
            config.views.width, config.views.height, rows["valid"],
            image_ext=config.image_ext, scene_id=record.scene_id,
        )  # fmt: skip
        meta = ViewsFileMeta(
            dataset=record.dataset, scene_id=record.scene_id, source=str(record.mesh), backend=config.backend,
            config_hash=config.hash, views=stats.kept,
        )  # fmt: skip
        write_views(path, table, meta)
        result["status"] = "ok"
    except NoFloorError as e:
        result["reason"] = f"{record.mesh}: no navigable floor: {e}"
    except (SceneFormatError, TooFewViews, OutputError) as e:
        result["reason"] = str(e)
    except Exception as e:  # one bad scene never stops the run
        log.debug("%s failed", record.key, exc_info=True)
        result["reason"] = f"{type(e).__name__}: {e}"
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


@dataclass
class RenderSummary:
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    views: int = 0  # rendered in this run
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # scene key -> reason

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.ok} scenes rendered, {self.skipped} already done, {self.failed} failed; "
            f"{self.views} views in {self.seconds:.1f} s ({self.views_per_s:.1f} views/s)"
        )


class _Manifest:
    """``views/manifest.json``: config, hash, and one status per scene."""

    def __init__(self, views_dir: Path, config: RenderConfig, *, overwrite: bool) -> None:
        self.path = views_dir / "manifest.json"
        self.config = config
        self.scenes: dict[str, dict] = {}
        if self.path.exists():
            old = read_json(self.path)
            if old.get("config_hash") != config.hash:
                if not overwrite:
                    raise ConfigMismatch(_mismatch_message(self.path, old.get("config", {}), config.to_dict()))
                log.warning("%s: overwriting the views of config %s", self.path, old.get("config_hash"))
                for entry in old.get("scenes", {}).values():
                    if entry.get("file"):
                        _remove_inside(views_dir, entry["file"])
            else:
                self.scenes = dict(old.get("scenes", {}))

    def record(self, key: str, entry: dict) -> None:
        self.scenes[key] = entry

    def write(self, summary: RenderSummary | None = None) -> None:
        counts = {s: sum(1 for e in self.scenes.values() if e.get("status") == s) for s in ("ok", "failed")}
        write_json_atomic(self.path, {
            "format": MANIFEST_FORMAT,
            "pairgen_version": __version__,
            "config_hash": self.config.hash,
            "config": self.config.to_dict(),
            "totals": {
                "scenes_ok": counts["ok"],
                "scenes_failed": counts["failed"],
                "views": sum(e.get("views", 0) for e in self.scenes.values() if e.get("status") == "ok"),
            },
            "last_run": None if summary is None else dataclasses.asdict(summary),
            "scenes": dict(sorted(self.scenes.items())),
        })  # fmt: skip


def _remove_inside(folder: Path, relative: str) -> None:
    """Delete ``folder/relative`` if it resolves inside ``folder`` (a manifest never points outside)."""
    try:
        path_inside(folder, relative).unlink(missing_ok=True)
    except OutputError as e:
        log.warning("ignoring %s", e)


def _mismatch_message(path: Path, old: dict, new: dict) -> str:
    diffs = config_changes(old, new)
    shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    return (
        f"{path}: this folder holds views rendered with another config ({shown}). "
        "Use another --out, or pass --overwrite to replace them."
    )


def run_render(
    records: Sequence[SceneRecord],
    out_dir: str | Path,
    config: RenderConfig,
    *,
    distributor: Callable[..., None],
    overwrite: bool = False,
    progress=None,
) -> RenderSummary:
    """Render every record's views under ``out_dir/views`` and keep the manifest.

    ``distributor(fn, tasks, on_result, on_error, common)`` is :func:`pairgen.distribute.run_local`
    or :func:`~pairgen.distribute.run_ray` with its options bound.

    Raises
    ------
    ConfigMismatch
        ``out_dir/views`` holds another config's views and ``overwrite`` is False.
    OutputError
        The folder cannot be written.
    """
    views_dir = Path(out_dir) / "views"
    manifest = _Manifest(views_dir, config, overwrite=overwrite)
    stale = remove_stale_temporaries(views_dir)
    if stale:
        log.info("removed %d unfinished temporary file(s) of an interrupted run", stale)
    manifest.write()  # fails early, with one message, if the folder is not writable
    summary = RenderSummary()
    start = time.perf_counter()
    todo = []
    for record in records:
        entry = manifest.scenes.get(record.key, {})
        if not record.ok:
            _count(summary, record, {"status": "failed", "reason": "; ".join(record.problems), "views": 0}, manifest)
        elif entry.get("status") == "ok" and _complete_meta(views_path(views_dir, record), config.hash) is not None:
            # the file is found where this record's views belong, never where a manifest says
            summary.skipped += 1
            if progress is not None:
                progress.update(1)
        else:
            todo.append(record)

    def on_result(record: SceneRecord, result: dict) -> None:
        _count(summary, record, result, manifest)
        summary.seconds = time.perf_counter() - start
        manifest.write(summary)
        if progress is not None:
            progress.set_postfix(views_per_s=f"{summary.views_per_s:.1f}", failed=summary.failed, refresh=False)
            progress.update(1)

    def on_error(record: SceneRecord, error: BaseException) -> dict:
        return {"status": "failed", "views": 0, "reason": f"worker failed: {type(error).__name__}: {error}"}

    distributor(render_scene, todo, on_result, on_error, {"views_dir": views_dir, "config": config})
    summary.seconds = time.perf_counter() - start
    manifest.write(summary)
    return summary


def _count(summary: RenderSummary, record: SceneRecord, result: dict, manifest: _Manifest) -> None:
    status = result.get("status")
    entry = {"dataset": record.dataset, "split": record.split, "scene_id": record.scene_id,
             "source": record.mesh, **result}  # fmt: skip
    if status == "skipped":
        summary.skipped += 1
        entry["status"] = "ok"
    elif status == "ok":
        summary.ok += 1
        summary.views += int(result.get("views", 0))
    else:
        summary.failed += 1
        summary.failures[record.key] = result.get("reason", "unknown")
        log.warning("%s failed: %s", record.key, result.get("reason"))
    manifest.record(record.key, entry)
