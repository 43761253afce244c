"""CroCo interchange: ``pairgen import croco`` and ``pairgen export --format croco``.

CroCo's habitat release (naver/croco, ``datasets/habitat_sim/``) describes
its pairs with one ``metadata.json`` a scene, as ``generate_multiview_images.py``
writes it, ``pack_metadata_files.py`` packs it (scene paths rewritten to start
with a dataset label such as ``hm3d/`` or ``scannet/``) and
``generate_from_metadata.py`` reads it back::

    {"scene": "hm3d/val/00800-TEEsavR23oF/TEEsavR23oF.basis.glb",
     "navmesh": "hm3d/val/...navmesh", "scene_dataset_config_file": "",
     "resolution": [256, 256], "hfov": 60, "views_count": 2, "size": 1000,
     "generate_depth": true,
     "multiviews": {"00000000": {"positions": [[x, y, z], [x, y, z]],
                                 "orientations": [[w, x, y, z], [w, x, y, z]], ...}, ...}}

A view is habitat's agent state: the sensor sits at the agent's position
(CroCo's sensors have no offset), turned by the quaternion (w first); the
habitat camera looks down -Z with +Y up in habitat's world, which is ours (Y
up, metres). CroCo's own conversion to an OpenCV camera
(``multiview_habitat_sim_generator.py``) is ``R_cam2world = R(q) @
R_OPENCV2HABITAT`` with ``R_OPENCV2HABITAT`` the rows habitat RIGHT, -UP and
FRONT, i.e. ``diag(1, -1, -1)``; ``t_cam2world`` is the position.
:func:`habitat_to_cam2world` is that, and :func:`cam2world_to_habitat` its
inverse.

Intrinsics: CroCo writes ``f = (W/2) / tan(hfov/2)`` and the principal point
``(W/2, H/2)``, the centre of the image in the convention where pixel ``i``
covers ``[i, i + 1)``: habitat renders a symmetric frustum. Ours puts pixel
``i``'s centre at ``i`` (docs/design.md, Conventions), so the same frustum has
its principal point at ``((W-1)/2, (H-1)/2)``: the two ``K`` differ by half a
pixel in ``cx`` and ``cy`` and describe the same image. Export writes CroCo's
form (ours + 0.5), import builds ours from ``hfov``. (CroCo's point-map code,
``compute_pointmap``, unprojects integer pixel indices with ``cu = W/2``: half
a pixel off its own images; we reproduce neither that nor anything else of its
point clouds, only its cameras.)

Import is two stages of :mod:`pairgen.stage`, so resume, refusal of another
config and per-scene failures behave as ``render`` and ``filter``:
:class:`ImportStage` (unit: one CroCo scene; renders exactly its cameras with
a render backend into ``OUT/views``) and :class:`CrocoPairsStage` (a
:class:`~pairgen.filter.FilterStage` whose unit computes the covisibility of
the scene's listed pairs by our measure instead of searching for pairs, then
the filter's shards into ``OUT/pairs``). Export (:func:`export_croco`) writes
the ``habitat_release`` folder CroCo's ``datasets/pairs_dataset.py`` reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests import SceneRecord
from manifests.codecs import decode_depth, decode_rgb, encode_rgb
from manifests.io import OutputError, atomic_path, read_json, remove_stale_temporaries, write_json_atomic
from manifests.layout import is_safe_name
from manifests.lock import folder_lock
from manifests.manifest import PairsManifest, ViewsManifest, sha256_file
from manifests.options import option
from pairgen.filter import ChosenPair, FilterStage, PairsConfig, ScenePairs, checked_views
from pairgen.render import ImageConfig, SceneViews, _complete_meta, store_views, views_path
from pairgen.stage import Stage, StageSummary, run_unit
from renderers.camera import intrinsics_from_hfov
from renderers.scene import SceneFormatError

__all__ = [
    "CROCO_LABELS",
    "CrocoPairsConfig",
    "CrocoPairsStage",
    "CrocoScene",
    "ExportSummary",
    "ImportConfig",
    "ImportStage",
    "MetadataError",
    "R_OPENCV2HABITAT",
    "cam2world_to_habitat",
    "croco_intrinsics",
    "export_croco",
    "find_metadata",
    "habitat_to_cam2world",
    "import_tasks",
    "parse_dataset_map",
    "read_metadata",
]

log = logging.getLogger(__name__)

#: habitat_sim.geo RIGHT, -UP, FRONT as rows (CroCo's R_OPENCV2HABITAT): OpenCV camera axes -> habitat's
R_OPENCV2HABITAT = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])

#: CroCo's dataset labels (datasets/habitat_sim/paths.py SCENES_DATASET); each maps to the data root's
#: folder of the same name unless ``--dataset-map label=folder`` says otherwise
CROCO_LABELS = ("hm3d", "gibson", "habitat-test-scenes", "replica_cad_baked_lighting", "replica_cad", "replica",
                "scannet")  # fmt: skip
Y_UP_LABELS = ("replica_cad_baked_lighting", "replica_cad")  # ReplicaCAD's glTF stages are Y-up
METADATA_NAME = "metadata.json"
MAX_SIZE = 8192  # largest image side accepted from a metadata file
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_PAIR_SUFFIX = re.compile(r"^(?P<label>.+)_(?P<o1>[0-9]+)-(?P<o2>[0-9]+)$")
EXPORT_STATE = ".pairgen-export.json"  # in DEST: which pairs folder the export is of, and the shards done
# the metadata keys CroCo's generate_from_metadata.py passes on to MultiviewHabitatSimGenerator (an
# export writes only these, besides multiviews and generate_depth, so their code runs on it unchanged)
GENERATOR_KEYS = ("scene_dataset_config_file", "scene", "navmesh", "resolution", "views_count", "hfov", "size")


class MetadataError(OutputError):
    """A CroCo metadata file that cannot be used; the message names the file and the key."""


# -- cameras ---------------------------------------------------------------------------


def habitat_to_cam2world(position, orientation_wxyz) -> np.ndarray:
    """OpenCV ``cam2world`` (4, 4) of a habitat agent state (position, quaternion w, x, y, z).

    The quaternion is normalised (as numpy-quaternion's ``as_rotation_matrix``
    does); ``R_cam2world = R(q) @ R_OPENCV2HABITAT``, ``t_cam2world = position``.
    """
    from scipy.spatial.transform import Rotation

    q = np.asarray(orientation_wxyz, np.float64)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(q, scalar_first=True).as_matrix() @ R_OPENCV2HABITAT
    pose[:3, 3] = np.asarray(position, np.float64)
    return pose


def cam2world_to_habitat(cam2world: np.ndarray) -> tuple[list[float], list[float]]:
    """The habitat agent state ``(position, [w, x, y, z])`` of an OpenCV ``cam2world``; ``w >= 0``."""
    from scipy.spatial.transform import Rotation

    pose = np.asarray(cam2world, np.float64).reshape(4, 4)
    q = Rotation.from_matrix(pose[:3, :3] @ R_OPENCV2HABITAT.T).as_quat(scalar_first=True)
    if q[0] < 0:
        q = -q
    return pose[:3, 3].tolist(), q.tolist()


def croco_intrinsics(K: np.ndarray) -> np.ndarray:
    """Our ``K`` in CroCo's convention (pixel ``i`` covering ``[i, i + 1)``): the principal point + 0.5."""
    K = np.array(K, np.float64).reshape(3, 3)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


# -- metadata --------------------------------------------------------------------------


@dataclass(frozen=True)
class CrocoScene:
    """One CroCo metadata file, checked.

    ``multiviews`` holds ``(label, positions (n, 3), orientations (n, 4) w first)``
    in the file's order; ``views()`` numbers the views of all of them in that
    order, which is the ``view_id`` of the views file.
    """

    path: Path
    scene: str
    navmesh: str
    scene_dataset_config_file: str
    height: int
    width: int
    hfov: float
    generate_depth: bool
    multiviews: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    sha256: str

    def views(self) -> list[tuple[str, int, np.ndarray]]:
        """``(label, o, cam2world)`` of every view, ``o`` CroCo's 1-based index within its entry."""
        return [(label, o + 1, habitat_to_cam2world(p, q))
                for label, positions, orientations in self.multiviews
                for o, (p, q) in enumerate(zip(positions, orientations))]  # fmt: skip

    def pairs(self) -> list[tuple[int, int, str]]:
        """``(view1_id, view2_id, pair name)`` of every pair: each entry's views two by two.

        The name is ``<label>_<o1>-<o2>`` (CroCo's file stem and its 1-based
        view indices), so a pair's ``pair_id`` ``<dataset>/<scene_id>/<label>_<o1>-<o2>``
        leads back to CroCo's ``<label>_<o1>.jpeg`` and ``<label>_<o2>.jpeg``.
        """
        pairs, start = [], 0
        for label, positions, _ in self.multiviews:
            n = len(positions)
            pairs += [(start + i, start + j, f"{label}_{i + 1}-{j + 1}") for i in range(n) for j in range(i + 1, n)]
            start += n
        return pairs


def _bad(path: Path, key: str, problem: str) -> MetadataError:
    return MetadataError(f"{path}: key {key!r}: {problem}")


def _numbers(path: Path, key: str, value, n: int, what: str) -> np.ndarray:
    if (not isinstance(value, list) or len(value) != n
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):  # fmt: skip
        raise _bad(path, key, f"expected {n} numbers {what}, got {json.dumps(value)[:80]}")
    array = np.asarray(value, np.float64)
    if not np.all(np.isfinite(array)):
        raise _bad(path, key, f"not finite: {value}")
    return array


def read_metadata(path: str | Path) -> CrocoScene:
    """Read and check one CroCo ``metadata.json``.

    Raises
    ------
    MetadataError
        Not JSON, or a key missing or malformed; the message names the file and the key.
    """
    path = Path(path)
    try:
        doc = read_json(path)
    except OutputError as e:
        raise MetadataError(str(e)) from None
    if not isinstance(doc, dict):
        raise MetadataError(f"{path}: not a JSON object")
    strings = {}
    for key in ("scene", "navmesh", "scene_dataset_config_file"):
        value = doc.get(key, "" if key != "scene" else None)
        if not isinstance(value, str) or (key == "scene" and not value):
            raise _bad(path, key, "missing or not a string" if key == "scene" else "not a string")
        strings[key] = value
    res = doc.get("resolution")
    if (not isinstance(res, list) or len(res) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIZE for v in res)):
        raise _bad(path, "resolution", f"expected [height, width], two integers in 1..{MAX_SIZE}, got {json.dumps(res)}")
    hfov = doc.get("hfov")
    if not isinstance(hfov, (int, float)) or isinstance(hfov, bool) or not 0 < hfov < 180:
        raise _bad(path, "hfov", f"expected degrees in (0, 180), got {json.dumps(hfov)}")
    depth = doc.get("generate_depth", False)
    if not isinstance(depth, (bool, int)):
        raise _bad(path, "generate_depth", f"expected true or false, got {json.dumps(depth)}")
    multiviews = doc.get("multiviews")
    if not isinstance(multiviews, dict) or not multiviews:
        raise _bad(path, "multiviews", "missing, not an object or empty")
    entries = []
    for label, entry in multiviews.items():
        key = f"multiviews/{label}"
        if not is_safe_name(label):
            raise _bad(path, key, "a label must be letters, digits, '.', '_' or '-' (it names files)")
        if not isinstance(entry, dict):
            raise _bad(path, key, "not an object")
        positions, orientations = entry.get("positions"), entry.get("orientations")
        for name, value in (("positions", positions), ("orientations", orientations)):
            if not isinstance(value, list) or len(value) < 2:
                raise _bad(path, f"{key}/{name}", "expected a list of two views or more")
        if len(positions) != len(orientations):
            raise _bad(path, f"{key}/orientations", f"{len(orientations)} orientations for {len(positions)} positions")
        p = np.stack([_numbers(path, f"{key}/positions/{i}", v, 3, "[x, y, z]") for i, v in enumerate(positions)])
        q = np.stack([_numbers(path, f"{key}/orientations/{i}", v, 4, "[w, x, y, z]")
                      for i, v in enumerate(orientations)])  # fmt: skip
        norms = np.linalg.norm(q, axis=1)
        if np.any(norms < 1e-6):
            raise _bad(path, f"{key}/orientations/{int(np.argmin(norms))}", "a zero quaternion is no rotation")
        entries.append((label, p, q))
    return CrocoScene(path=path, height=res[0], width=res[1], hfov=float(hfov), generate_depth=bool(depth),
                      multiviews=tuple(entries), sha256=sha256_file(path), **strings)  # fmt: skip


def find_metadata(folder: str | Path) -> list[Path]:
    """Every ``metadata.json`` under ``folder`` (as CroCo's ``**/metadata.json``), sorted."""
    folder = Path(folder)
    if folder.is_file() and folder.name == METADATA_NAME:
        return [folder]
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder of CroCo metadata files")
    found = sorted(p for p in folder.rglob(METADATA_NAME) if p.is_file())
    if not found:
        raise OutputError(f"{folder}: no {METADATA_NAME} under it")
    return found


# -- CroCo paths onto the data root ----------------------------------------------------


def parse_dataset_map(items: Iterable[str]) -> dict[str, str]:
    """``["label=folder", ...]`` -> ``{label: folder}``; :class:`ValueError` names a bad item."""
    mapping = {}
    for item in items or ():
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder or "/" in label:
            raise ValueError(f"--dataset-map {item!r}: expected LABEL=FOLDER (a CroCo label such as hm3d)")
        mapping[label] = folder
    return mapping


def _split_label(value: str, labels: Iterable[str]) -> tuple[str, str] | None:
    """``(label, path under it)`` of a CroCo path, the longest label first; None without one."""
    for label in sorted(labels, key=len, reverse=True):
        if value == label or value.startswith(label + "/"):
            return label, value[len(label) + 1 :]
    return None


def _inside(path: Path, key: str, value: str, rest: str) -> str:
    parts = Path(rest).parts
    if Path(rest).is_absolute() or ".." in parts:
        raise _bad(path, key, f"{value!r} leads out of its dataset folder")
    return rest


def _scene_id(rest: str) -> str:
    """A file-name-safe scene id from the path under the label: folders joined by ``__``, suffixes dropped."""
    for suffix in (".basis.glb", ".glb", ".gltf", ".ply"):
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
            break
    text = "__".join(_UNSAFE_CHARS.sub("_", part) for part in Path(rest).parts if part not in ("", "."))
    return text if is_safe_name(text) else "scene_" + text


@dataclass
class CrocoTask:
    """One CroCo scene to import: its record (what to load) and its cameras."""

    record: SceneRecord
    metadata: str  # the metadata file
    metadata_sha256: str
    croco: dict  # the metadata's scene, navmesh and scene_dataset_config_file, as written
    width: int
    height: int
    hfov: float
    views: int  # the cameras are read again by the unit (a release's would take ~0.5 GB held here)

    @property
    def key(self) -> str:
        return self.record.key


def _record_for(scene: CrocoScene, data_root: Path, dataset_map: dict[str, str]) -> SceneRecord:
    labels = set(CROCO_LABELS) | set(dataset_map)
    split = _split_label(scene.scene, labels)
    config = _split_label(scene.scene_dataset_config_file, labels) if scene.scene_dataset_config_file else None
    if split is None and config is None:
        raise _bad(scene.path, "scene", f"{scene.scene!r} starts with no dataset label ({', '.join(sorted(labels))}); "
                   "add --dataset-map LABEL=FOLDER")  # fmt: skip

    def folder_of(label: str) -> Path:
        folder = Path(dataset_map.get(label, label))
        return folder if folder.is_absolute() else data_root / folder

    problems: list[str] = []
    if split is not None:
        label, rest = split
        mesh = folder_of(label) / _inside(scene.path, "scene", scene.scene, rest)
        scene_id = _scene_id(rest)
    else:  # a scene instance of a scene dataset config (ReplicaCAD): its stage, stages/<name>.glb beside the config
        label, rest = config
        cfg = folder_of(label) / _inside(scene.path, "scene_dataset_config_file", scene.scene_dataset_config_file, rest)
        name = _inside(scene.path, "scene", scene.scene, scene.scene)
        mesh = cfg.parent / "stages" / f"{name}.glb"
        scene_id = _scene_id(name)
    navmesh = None
    if scene.navmesh:
        nav = _split_label(scene.navmesh, labels)
        if nav is None:
            raise _bad(scene.path, "navmesh", f"{scene.navmesh!r} starts with no dataset label")
        candidate = folder_of(nav[0]) / _inside(scene.path, "navmesh", scene.navmesh, nav[1])
        navmesh = str(candidate) if candidate.is_file() else None  # not needed to render given cameras
    suffix = mesh.suffix.lower()
    source = {".glb": "gltf", ".gltf": "gltf", ".ply": "ply"}.get(suffix)
    if source is None:
        problems.append(f"{mesh}: no scene loader reads {suffix or 'files without a suffix'} (glb, gltf, ply)")
    elif not mesh.is_file():
        problems.append(f"{mesh}: not found under the data root (CroCo scene {scene.scene!r}, "
                        f"dataset folder {folder_of(label)})")  # fmt: skip
    return SceneRecord(dataset=label, split="", scene_id=scene_id, mesh=str(mesh), navmesh=navmesh,
                       source=source or "gltf", up="y" if label in Y_UP_LABELS else "z", problems=problems)  # fmt: skip


def import_tasks(metadata_files: Iterable[str | Path], data_root: str | Path,
                 dataset_map: dict[str, str] | None = None, progress=None) -> list[CrocoTask]:  # fmt: skip
    """Read every metadata file and map its scene onto the data root.

    Raises
    ------
    MetadataError
        A malformed metadata file (the first; its message names the file and
        the key). Nothing is written before every file has been read.
    """
    data_root, dataset_map = Path(data_root), dict(dataset_map or {})
    tasks: list[CrocoTask] = []
    seen: dict[str, str] = {}
    for path in metadata_files:
        scene = read_metadata(path)
        record = _record_for(scene, data_root, dataset_map)
        if record.key in seen:  # one metadata file a scene: two would write one views file
            raise _bad(scene.path, "scene", f"{scene.scene!r} is {record.key}, the scene of {seen[record.key]} too")
        seen[record.key] = str(path)
        croco = {"scene": scene.scene, "navmesh": scene.navmesh,
                 "scene_dataset_config_file": scene.scene_dataset_config_file}  # fmt: skip
        views = sum(len(p) for _, p, _ in scene.multiviews)
        tasks.append(CrocoTask(record, str(path), scene.sha256, croco, scene.width, scene.height, scene.hfov, views))
        if progress is not None:
            progress.update(1)
    return tasks


# -- the import: views ------------------------------------------------------------------


@dataclass(frozen=True)
class ImportConfig(ImageConfig):
    """What decides an imported scene's views file, besides its metadata (hashed): as ``render``'s images."""


def import_scene(task: CrocoTask, views_dir: str | Path, config: ImportConfig, config_hash: str) -> SceneViews:
    """Render a CroCo scene's cameras into its views file. Never raises."""

    def body(result: SceneViews) -> None:
        from pairgen.scenes import load_record

        record = task.record
        path = views_path(Path(views_dir), record)
        result.file = path.relative_to(views_dir).as_posix()
        croco = read_metadata(task.metadata)
        if croco.sha256 != task.metadata_sha256:
            raise MetadataError(f"{task.metadata}: changed while the import ran; run the command again")
        poses = [pose for _, _, pose in croco.views()]
        K = intrinsics_from_hfov(task.width, task.height, task.hfov)
        with config.open(load_record(record)) as renderer:  # encoded one by one (store_views): a view's bytes kept
            renders = (renderer.render(K, pose, width=task.width, height=task.height) for pose in poses)
            result.sha256 = store_views(path, Path(views_dir), record, renders, [K] * len(poses), poses, config,
                                        config_hash)  # fmt: skip
        result.views, result.status = len(poses), "ok"

    return run_unit(SceneViews(), body, expected=(SceneFormatError, OutputError))


class ImportStage(Stage):
    """``pairgen import croco``, first part: each CroCo scene's cameras rendered into ``OUT/views``."""

    name = "import"
    folder_name = "views"
    manifest_cls = ViewsManifest
    result_cls = SceneViews
    what = "views"
    progress_desc = "importing"
    work = staticmethod(import_scene)

    def __init__(self, tasks: list[CrocoTask], out_dir, config: ImportConfig, **kw) -> None:
        super().__init__(out_dir, config, **kw)
        self.tasks = tasks

    def identity(self) -> dict:
        return {"import": "croco", **self.config.to_dict()}

    def key(self, task: CrocoTask) -> str:
        return task.key

    def describe(self, task: CrocoTask) -> dict:
        r = task.record
        return {"dataset": r.dataset, "split": r.split, "scene_id": r.scene_id, "source": r.mesh,
                "metadata": task.metadata, "metadata_sha256": task.metadata_sha256,
                "croco": task.croco}  # fmt: skip

    def common(self) -> dict:
        return {"views_dir": self.folder, "config": self.config, "config_hash": self.manifest.config_hash}

    def plan(self):
        todo, decided = [], []
        for task in self.tasks:
            entry = self.manifest.scenes.get(task.key, {})
            if not task.record.ok:
                decided.append((task, SceneViews(reason="; ".join(task.record.problems))))
            elif (entry.get("status") == "ok" and entry.get("metadata_sha256") == task.metadata_sha256
                  and entry.get("source") == str(task.record.mesh)  # another --data-root or --dataset-map: again
                  and (meta := _complete_meta(views_path(self.folder, task.record), self.manifest.config_hash))):
                decided.append((task, SceneViews(status="skipped", views=meta.views, file=entry.get("file"),
                                                 sha256=entry.get("sha256"), seconds=entry.get("seconds", 0.0))))
            else:
                todo.append(task)
        return todo, decided

    def on_result(self, task, result: SceneViews) -> None:
        if result.status == "ok":
            self.summary.counts["views"] += result.views

    def line(self, summary: StageSummary) -> str:
        return (f"{summary.ok} CroCo scenes imported, {summary.skipped} already done, {summary.failed} failed; "
                f"{summary.counts['views']} views rendered in {summary.seconds:.1f} s")  # fmt: skip


# -- the import: pairs ------------------------------------------------------------------


@dataclass(frozen=True)
class CrocoPairsConfig(PairsConfig):
    """How the imported pairs are measured, kept and sharded (hashed): as the filter's, but no band unless given."""

    min_covis: float = option(0.0, min=0, max=1, help="least covisibility of a kept pair (0: keep every pair)")
    max_covis: float = option(1.0, min=0, max=1, help="greatest covisibility of a kept pair (1: keep every pair)")
    measure: str = option("reprojection", cli=False, help="covisibility measure (docs/design.md, Conventions)")
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
    """The covisibility of one imported scene's CroCo pairs (our measure, every pixel). Never raises."""

    def body(result: ScenePairs) -> None:
        from covisibility import MillimetreDepths
        from covisibility.batch import directed_covisibility
        key, entry = task
        path, views = checked_views(views_dir, key, entry, made_by="pairgen import croco")
        pairs = _metadata_of(Path(views_dir), key, entry).pairs()
        row = {int(v): i for i, v in enumerate(views.view_ids)}
        try:
            a = np.array([row[v1] for v1, _, _ in pairs], np.int64)
            b = np.array([row[v2] for _, v2, _ in pairs], np.int64)
        except KeyError as e:
            raise OutputError(f"{path}: no view {e} that the metadata's pairs need") from None
        depths = MillimetreDepths(views.depth_mm)
        c12 = directed_covisibility(a, b, depths, views.K, views.cam2world).astype(np.float32)
        c21 = directed_covisibility(b, a, depths, views.K, views.cam2world).astype(np.float32)
        c = np.minimum(c12, c21)
        keep = np.flatnonzero((c >= config.min_covis) & (c <= config.max_covis))
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


# -- export ------------------------------------------------------------------------------


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


def _unsynced(path: Path):
    """:func:`manifests.io.atomic_path` without its fsyncs.

    Six small files a pair, 1.8 M pairs in CroCo's release: an fsync each took
    70 % of the export's time. The files of a shard are synced together
    (``os.sync``) before the shard is recorded as done, and a shard not
    recorded is written again by the next run.
    """
    return atomic_path(path, sync=False)


def _write_bytes(path: Path, data: bytes) -> None:
    with _unsynced(path) as tmp:
        tmp.write_bytes(data)


def _write_exr(path: Path, depth: np.ndarray) -> None:
    """Depth as a one-channel (``Y``) half-float EXR, what ``cv2.imwrite(..., IMWRITE_EXR_TYPE_HALF)`` writes."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with _unsynced(path) as tmp:
        with OpenEXR.File(header, {"Y": np.ascontiguousarray(depth, np.float16)}) as f:
            f.write(str(tmp))


def _jpeg(data: bytes, quality: int = 95) -> bytes:
    """The image as JPEG bytes: a JPEG as it is, anything else re-encoded."""
    if data[:3] == b"\xff\xd8\xff":
        return data
    return encode_rgb(decode_rgb(data), "jpeg", quality)


LIGHT_COLUMNS = ["pair_id", "dataset", "scene_id", "K1", "K2", "cam2world1", "cam2world2", "covis_1in2",
                 "covis_2in1", "covisibility", "width", "height"]  # fmt: skip


def export_croco(out_dir: str | Path, dest: str | Path, progress=None) -> ExportSummary:
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

    Raises
    ------
    OutputError
        No pairs, a damaged shard, or ``dest`` holds an export of other pairs.
    """
    import pyarrow.parquet as pq

    out_dir, dest = Path(out_dir), Path(dest)
    pairs = PairsManifest.read(out_dir / "pairs")
    if not pairs.complete:
        raise OutputError(f"{pairs.path}: the pairs are not complete; run the command that made them again")
    views = ViewsManifest.read(out_dir / "views") if ViewsManifest.exists(out_dir / "views") else None
    source = {"pairs_config_hash": pairs.config_hash, "shards": [s.get("sha256") for s in pairs.shards]}
    summary = ExportSummary(dest=str(dest))
    with folder_lock(dest):
        state_path = dest / EXPORT_STATE
        state = read_json(state_path) if state_path.is_file() else {"source": source, "done": [], "complete": False}
        if state.get("source") != source:
            raise OutputError(f"{dest}: holds an export of other pairs ({state_path}); export into another folder")
        if state.get("complete"):  # done: nothing read again
            summary.pairs, summary.scenes, summary.up_to_date = state["pairs"], state["scenes"], True
            return summary
        remove_stale_temporaries(dest)  # an interrupted export's
        # (dataset, scene_id) -> label -> (19,) position, quaternion of both views, covisibilities, valid fractions
        scenes: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
        sizes: dict[tuple[str, str], tuple[float, int, int]] = {}  # fx, width, height
        shard_paths = list(pairs.shard_paths())
        for entry, path in shard_paths:
            if (why := pairs.verify_shard(entry, path)) is not None:
                raise OutputError(f"{pairs.folder}/{why}")
        bar = progress(sum(int(e.get("pairs", 0)) for e, _ in shard_paths), "exporting", "pair") if progress else None
        try:
            for entry, path in shard_paths:
                done = entry["file"] in state["done"]
                light = pq.read_table(path, columns=LIGHT_COLUMNS).to_pylist()
                full = None if done else pq.read_table(path, columns=["image1", "image2", "depth1", "depth2"]).to_pylist()
                for i, row in enumerate(light):
                    label = _label(row["pair_id"])
                    for name in (row["dataset"], row["scene_id"], label):  # each names a file or folder of DEST
                        if not is_safe_name(name):
                            raise OutputError(f"{path}: pair {row['pair_id']!r}: {name!r} is not a safe file name")
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
                            _write_bytes(folder / f"{label}_{o}.jpeg", _jpeg(full[i]["image" + o]["bytes"]))
                            _write_exr(folder / f"{label}_{o}_depth.exr", depth)
                            _write_bytes(folder / f"{label}_{o}_camera_params.json", json.dumps({
                                "camera_intrinsics": croco_intrinsics(K).tolist(),
                                "R_cam2world": pose[:3, :3].tolist(), "t_cam2world": pose[:3, 3].tolist()}).encode())
                    (p1, q1), (p2, q2) = (cam2world_to_habitat(p) for _, p in cams)
                    v1, v2 = valid if valid else (math.nan, math.nan)  # nan: read back from the EXRs at the end
                    key = (row["dataset"], row["scene_id"])
                    scenes[key][label] = np.array([*p1, *q1, *p2, *q2, row["covis_1in2"], row["covis_2in1"],
                                                   row["covisibility"], v1, v2])  # fmt: skip
                    sizes.setdefault(key, (float(cams[0][0][0, 0]), int(row["width"]), int(row["height"])))
                if not done:
                    os.sync()  # the shard's files on disk before it is recorded as done
                    state["done"].append(entry["file"])
                    write_json_atomic(state_path, state)
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
        state.update(complete=True, pairs=summary.pairs, scenes=summary.scenes)
        write_json_atomic(state_path, state)
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
    import OpenEXR

    try:
        with OpenEXR.File(str(path)) as f:
            depth = f.channels()["Y"].pixels
    except Exception as e:  # noqa: BLE001  (any damage: one message naming the file)
        raise OutputError(f"{path}: not a readable depth EXR ({e}); remove {EXPORT_STATE} and export again") from None
    return float(np.count_nonzero(depth) / depth.size)
