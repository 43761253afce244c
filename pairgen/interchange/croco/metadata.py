"""CroCo's ``metadata.json``: read and checked, and its scene paths mapped onto a data root.

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

:func:`read_metadata` checks one file (:class:`MetadataError` names the file
and the key); :func:`import_tasks` reads them all and maps each scene onto
the data root (:class:`CrocoTask`), before any work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests import SceneRecord
from manifests.io import OutputError, resolve_inside
from manifests.layout import is_safe_name, name_problem
from manifests.manifest import sha256_file
from manifests.options import check, option
from pairgen.interchange.croco.cameras import habitat_to_cam2world
from manifests.store import local

__all__ = [
    "CROCO_LABELS",
    "METADATA_NAME",
    "CrocoScene",
    "CrocoTask",
    "ImportLimits",
    "MetadataError",
    "find_metadata",
    "import_tasks",
    "parse_dataset_map",
    "read_metadata",
]

#: CroCo's dataset labels (datasets/habitat_sim/paths.py SCENES_DATASET); each maps to the data root's
#: folder of the same name unless ``--dataset-map label=folder`` says otherwise
CROCO_LABELS = ("hm3d", "gibson", "habitat-test-scenes", "replica_cad_baked_lighting", "replica_cad", "replica",
                "scannet")  # fmt: skip
Y_UP_LABELS = ("replica_cad_baked_lighting", "replica_cad")  # ReplicaCAD's glTF stages are Y-up
METADATA_NAME = "metadata.json"
MAX_SIZE = 8192  # largest image side accepted from a metadata file
# metres from the origin: a camera further out is a damaged value, no camera of an indoor scene (HM3D's largest
# buildings span about 100 m); cameras within this but outside the scene are refused once it is loaded (stages.py)
MAX_COORDINATE = 1e5
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class MetadataError(OutputError):
    """A CroCo metadata file that cannot be used; the message names the file and the key."""

    @classmethod
    def at(cls, path: str | Path, key: str, problem: str) -> MetadataError:
        """``<path>: key '<key>': <problem>``, the one form of every message about a metadata file's key."""
        return cls(f"{path}: key {key!r}: {problem}")


@dataclass(frozen=True)
class ImportLimits:
    """What ``pairgen import croco`` accepts of a metadata file and of the views it renders (not hashed: they
    decide what is refused, never what is written; a scene imported earlier is not checked again)."""

    max_views_per_entry: int = option(
        32, min=2, max=100_000, metavar="N",
        help="most views one multiviews entry may list: its pairs are every two of them, n(n-1)/2 (400 views give "
        "79,800). CroCo's release lists 2 an entry, DUSt3R's Habitat stars 5, MV-DUSt3R+'s generator 15 (--n_v); "
        "a file with a larger entry is refused, naming it")  # fmt: skip
    min_valid: float = option(
        0.3, min=0, max=1,
        help="least share of a rendered view's pixels with valid depth; a view below it fails its scene, naming "
        "the entry and view (the scene is not the one the metadata was made for, or a camera is off). CroCo's and "
        "MV-DUSt3R+'s generators kept views in pairs of at least 0.5 and 0.3 covisibility, so theirs see a surface "
        "in at least that share of their pixels")  # fmt: skip

    def __post_init__(self) -> None:
        check(self)


class _Object(dict):
    """A JSON object that remembers its repeated keys (``json`` keeps a repeated key's last value, silently)."""

    repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.repeated = tuple(dict.fromkeys(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def _first_repeated(value, key: str = "") -> str | None:
    """The key path (``multiviews/00000012``) of the first key repeated in its object under ``value``, or None."""
    if not isinstance(value, dict):
        return None  # CroCo's lists hold numbers and lists of numbers only
    for name in getattr(value, "repeated", ()):
        return f"{key}/{name}" if key else name
    for name, item in value.items():
        found = _first_repeated(item, f"{key}/{name}" if key else name)
        if found is not None:
            return found
    return None



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
    return MetadataError.at(path, key, problem)


def _numbers(path: Path, key: str, value, n: int, what: str) -> np.ndarray:
    if (not isinstance(value, list) or len(value) != n
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):  # fmt: skip
        raise _bad(path, key, f"expected {n} numbers {what}, got {json.dumps(value)[:80]}")
    array = np.asarray(value, np.float64)
    if not np.all(np.isfinite(array)):
        raise _bad(path, key, f"not finite: {value}")
    return array


def read_metadata(path: str | Path, max_views: int | None = None) -> CrocoScene:
    """Read and check one CroCo ``metadata.json``.

    ``max_views`` bounds the views of one ``multiviews`` entry (None: no
    bound; :class:`ImportLimits`' ``max_views_per_entry`` when importing).

    Raises
    ------
    MetadataError
        Not JSON, a key repeated in its object (JSON would keep the last one
        only), a key missing or malformed, a camera position more than
        :data:`MAX_COORDINATE` metres out, or an entry of more than
        ``max_views`` views; the message names the file and the key.
    """
    path = Path(path)
    try:
        doc = json.loads(local(path).read_text(), object_pairs_hook=_object)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetadataError(f"{path}: cannot be read as JSON ({e})") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"{path}: not a JSON object")
    repeated = _first_repeated(doc)
    if repeated is not None:  # a label twice in 'multiviews': one entry's views would vanish
        entry = repeated.startswith("multiviews/") and repeated.count("/") == 1
        lost = "the first entry's views" if entry else "the first value"
        raise _bad(path, repeated, f"repeated in its object: JSON keeps only the last, so {lost} would be lost "
                   "silently; give each its own key")  # fmt: skip
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
        if (problem := name_problem(label, "label")) is not None:
            raise _bad(path, key, f"{problem} (it names files)")
        if not isinstance(entry, dict):
            raise _bad(path, key, "not an object")
        positions, orientations = entry.get("positions"), entry.get("orientations")
        for name, value in (("positions", positions), ("orientations", orientations)):
            if not isinstance(value, list) or len(value) < 2:
                raise _bad(path, f"{key}/{name}", "expected a list of two views or more")
        if len(positions) != len(orientations):
            raise _bad(path, f"{key}/orientations", f"{len(orientations)} orientations for {len(positions)} positions")
        if max_views is not None and len(positions) > max_views:
            n = len(positions)
            raise _bad(path, f"{key}/positions", f"{n} views in one entry, {n * (n - 1) // 2:,} pairs: more than "
                       f"--max-views-per-entry {max_views} allows (raise it to import this entry)")  # fmt: skip
        p = np.stack([_numbers(path, f"{key}/positions/{i}", v, 3, "[x, y, z]") for i, v in enumerate(positions)])
        far = np.flatnonzero(np.abs(p).max(axis=1) > MAX_COORDINATE)
        if far.size:
            raise _bad(path, f"{key}/positions/{far[0]}", f"{positions[far[0]]}: more than {MAX_COORDINATE:g} m from "
                       "the origin, no camera of an indoor scene")  # fmt: skip
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


def _inside(path: Path, key: str, value: str, folder: Path, rest: str) -> str:
    """``rest`` when ``folder / rest`` stays inside ``folder`` (:func:`manifests.io.resolve_inside`: links too).

    ``..`` is refused even where it stays inside: the scene id is made of the
    path's parts, and ``a/../room.ply`` would give a second id to one mesh.
    """
    parts = Path(rest).parts
    if Path(rest).is_absolute() or ".." in parts or resolve_inside(folder, rest) is None:
        raise _bad(path, key, f"{value!r} leads out of its dataset folder")
    return rest


def _scene_id(rest: str) -> str:
    """A file-name-safe scene id from the path under the label: folders joined by ``__``, suffixes dropped."""
    for suffix in (".basis.glb", ".glb", ".gltf", ".ply"):
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
            break
    text = "__".join(_UNSAFE_CHARS.sub("_", part) for part in Path(rest).parts if part not in ("", "."))
    # a leading '.', '_' or '-' is prefixed away; a name too long stays so, and its record says why
    return "scene_" + text if not is_safe_name(text) and is_safe_name("scene_" + text) else text


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
        mesh = folder_of(label) / _inside(scene.path, "scene", scene.scene, folder_of(label), rest)
        scene_id = _scene_id(rest)
    else:  # a scene instance of a scene dataset config (ReplicaCAD): its stage, stages/<name>.glb beside the config
        label, rest = config
        cfg = folder_of(label) / _inside(scene.path, "scene_dataset_config_file", scene.scene_dataset_config_file,
                                         folder_of(label), rest)  # fmt: skip
        stages = cfg.parent / "stages"
        mesh = stages / _inside(scene.path, "scene", scene.scene, stages, f"{scene.scene}.glb")
        scene_id = _scene_id(scene.scene)
    navmesh = None
    if scene.navmesh:
        nav = _split_label(scene.navmesh, labels)
        if nav is None:
            raise _bad(scene.path, "navmesh", f"{scene.navmesh!r} starts with no dataset label")
        candidate = folder_of(nav[0]) / _inside(scene.path, "navmesh", scene.navmesh, folder_of(nav[0]), nav[1])
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
                 dataset_map: dict[str, str] | None = None, progress=None,
                 max_views: int = ImportLimits.max_views_per_entry) -> list[CrocoTask]:  # fmt: skip
    """Read every metadata file (``max_views`` views an entry at most) and map its scene onto the data root.

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
        scene = read_metadata(path, max_views)
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
