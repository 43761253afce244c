"""Dataset descriptors: where each dataset keeps its scenes, and how to read them.

A dataset lives under ``<data-root>/<name>`` in the layout its release uses
(DESIGN.md); :func:`discover` walks that layout and answers one
:class:`SceneRecord` per scene, with every problem found (missing mesh, empty
file) recorded on the scene rather than raised, so that one bad scene never
hides the others. Only a missing data root or dataset folder raises
:class:`DatasetError`.

=========  ==============================================================  ======  =====
dataset    layout under ``<data-root>/<name>``                             source  up
=========  ==============================================================  ======  =====
hm3d       ``{train,val,minival}/NNNNN-<hash>/<hash>.glb`` (or             gltf    z
           ``<hash>.basis.glb``, + ``<hash>.basis.navmesh``)
scannet    ``scans/sceneXXXX_XX/sceneXXXX_XX_vh_clean_2.ply``              ply     z
replica    ``<room>/mesh.ply`` (+ ``habitat/mesh_semantic.navmesh``)        ply     z
mp3d       ``<scan>/<scan>.glb`` + ``<scan>.navmesh``                      gltf    z
gibson     ``<Name>.glb`` + ``<Name>.navmesh``                             gltf    z
synthetic  none: procedural apartments built from a seed                   synth.  y
=========  ==============================================================  ======  =====
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "SceneRecord",
    "SyntheticOptions",
    "discover",
    "get_dataset",
    "parse_dataset_list",
]

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset cannot be discovered at all (missing root or folder, unknown name)."""


@dataclass
class SceneRecord:
    """One scene found in a dataset.

    Attributes
    ----------
    dataset, split, scene_id : str
        ``split`` is ``""`` for datasets without splits.
    mesh : str or None
        The mesh file (or, for synthetic scenes, the recipe ``"<preset>/<seed>"``).
    navmesh : str or None
        The navmesh file, when the dataset ships one for this scene.
    source : str
        The scene source (loader) name in ``renderers.sources``.
    up : {"y", "z"}
        The mesh file's up axis.
    problems : list of str
        Why this scene cannot be used; empty when it can.
    """

    dataset: str
    split: str
    scene_id: str
    mesh: str | None
    navmesh: str | None
    source: str
    up: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def key(self) -> str:
        """``dataset/scene_id``: unique within a run, the stem of its output files."""
        return f"{self.dataset}/{self.scene_id}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SyntheticOptions:
    """How many procedural apartments the ``synthetic`` dataset holds, and how big."""

    count: int = 4
    preset: str = "medium"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise DatasetError(f"the synthetic scene count (--synthetic-count) must be >= 0, got {self.count}")


Finder = Callable[[Path, "DatasetSpec"], Iterator[SceneRecord]]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's descriptor.

    Attributes
    ----------
    name : str
        The ``--scenes`` name and the folder under the data root.
    description : str
    source : str
        Scene source (loader) for its meshes.
    up : {"y", "z"}
        Up axis of its mesh files.
    splits : tuple of str
        Sub-folders that are splits (HM3D's ``train``/``val``/``minival``);
        empty when the dataset has none.
    finder : callable
        ``finder(folder, spec)`` yields the scenes under one split folder (or
        the dataset folder when there are no splits).
    """

    name: str
    description: str
    source: str
    up: str
    splits: tuple[str, ...]
    finder: Finder | None


def _record(spec: DatasetSpec, split: str, scene_id: str, mesh: Path | None,
            navmesh: Path | None, problems: list[str] | None = None) -> SceneRecord:
    """A record for ``mesh`` (the expected file); a missing or empty one is its problem."""
    problems = list(problems or [])
    if mesh is not None:
        try:
            if not mesh.is_file():
                problems.append(f"{mesh.parent}: no {mesh.name}")
                mesh = None
            elif mesh.stat().st_size == 0:
                problems.append(f"{mesh}: file is empty")
        except OSError as e:
            problems.append(f"{mesh}: cannot read: {e.strerror or e}")
    return SceneRecord(
        dataset=spec.name,
        split=split,
        scene_id=scene_id,
        mesh=str(mesh) if mesh is not None else None,
        navmesh=str(navmesh) if navmesh is not None and navmesh.is_file() else None,
        source=spec.source,
        up=spec.up,
        problems=problems,
    )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_hm3d(folder: Path, spec: DatasetSpec) -> Iterator[SceneRecord]:
    """``NNNNN-<hash>/<hash>.glb`` (preferred) or ``<hash>.basis.glb``."""
    for scene_dir in _subfolders(folder):
        hash_ = scene_dir.name.split("-", 1)[-1]
        plain, basis = scene_dir / f"{hash_}.glb", scene_dir / f"{hash_}.basis.glb"
        navmesh = next(
            (p for p in (scene_dir / f"{hash_}.basis.navmesh", scene_dir / f"{hash_}.navmesh") if p.is_file()), None
        )
        mesh = plain if plain.is_file() else basis if basis.is_file() else None
        problems = [] if mesh else [f"{scene_dir}: no {plain.name} or {basis.name}"]
        yield _record(spec, folder.name, scene_dir.name, mesh, navmesh, problems)


def _find_scannet(folder: Path, spec: DatasetSpec) -> Iterator[SceneRecord]:
    """``sceneXXXX_XX/sceneXXXX_XX_vh_clean_2.ply``."""
    for scene_dir in _subfolders(folder):
        yield _record(spec, folder.name, scene_dir.name, scene_dir / f"{scene_dir.name}_vh_clean_2.ply", None)


def _find_replica(folder: Path, spec: DatasetSpec) -> Iterator[SceneRecord]:
    """``<room>/mesh.ply`` with ``<room>/habitat/mesh_semantic.navmesh`` when present."""
    for room in _subfolders(folder):
        yield _record(spec, "", room.name, room / "mesh.ply", room / "habitat" / "mesh_semantic.navmesh")


def _find_mp3d(folder: Path, spec: DatasetSpec) -> Iterator[SceneRecord]:
    """``<scan>/<scan>.glb`` + ``<scan>/<scan>.navmesh``."""
    for scan in _subfolders(folder):
        yield _record(spec, "", scan.name, scan / f"{scan.name}.glb", scan / f"{scan.name}.navmesh")


def _find_gibson(folder: Path, spec: DatasetSpec) -> Iterator[SceneRecord]:
    """``<Name>.glb`` + ``<Name>.navmesh``, all in one folder."""
    for mesh in sorted(folder.glob("*.glb")):
        yield _record(spec, "", mesh.stem, mesh, mesh.with_suffix(".navmesh"))
    for navmesh in sorted(folder.glob("*.navmesh")):
        if not navmesh.with_suffix(".glb").exists():
            yield _record(spec, "", navmesh.stem, None, navmesh, [f"{navmesh}: no {navmesh.stem}.glb beside it"])


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("hm3d", "Habitat-Matterport 3D v0.2", "gltf", "z", ("train", "val", "minival"), _find_hm3d),
        DatasetSpec("scannet", "ScanNet v2 reconstructions", "ply", "z", ("scans", "scans_test"), _find_scannet),
        DatasetSpec("replica", "Replica rooms (vertex colours)", "ply", "z", (), _find_replica),
        DatasetSpec("mp3d", "Matterport3D (Habitat glb)", "gltf", "z", (), _find_mp3d),
        DatasetSpec("gibson", "Gibson (Habitat glb)", "gltf", "z", (), _find_gibson),
        DatasetSpec("synthetic", "procedural apartments (built in, no data root)", "synthetic", "y", (), None),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def parse_dataset_list(text: str) -> list[DatasetSpec]:
    """``"hm3d,scannet"`` -> their specs, in order, without repeats."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise DatasetError("no dataset named; use e.g. --scenes hm3d or --scenes hm3d,scannet")
    return [get_dataset(n) for n in dict.fromkeys(names)]


def discover(
    spec: DatasetSpec,
    data_root: str | Path | None,
    split: str | None = None,
    synthetic: SyntheticOptions = SyntheticOptions(),
) -> list[SceneRecord]:
    """Every scene of one dataset, sorted by split then id.

    Parameters
    ----------
    spec : DatasetSpec
    data_root : path or None
        Holds one folder per dataset; unused for ``synthetic``.
    split : str or None
        Only this split, for datasets that have splits (ignored by the others).

    Raises
    ------
    DatasetError
        The data root or the dataset's folder does not exist, or ``split``
        is not one of the dataset's splits.
    """
    if spec.finder is None:
        return [
            SceneRecord("synthetic", "", f"apartment_{synthetic.seed + i:04d}", f"{synthetic.preset}/{synthetic.seed + i}",
                        None, spec.source, spec.up)
            for i in range(synthetic.count)
        ]
    if data_root is None:
        raise DatasetError(f"{spec.name} needs --data-root")
    root = Path(data_root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist (or is not a folder)")
    folder = root / spec.name
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist; expected {spec.name} under the data root {root}")
    if not spec.splits:
        return list(spec.finder(folder, spec))
    if split is not None and split not in spec.splits:
        raise DatasetError(f"{spec.name} has splits {', '.join(spec.splits)}; got {split!r}")
    wanted = [split] if split else list(spec.splits)
    present = [s for s in wanted if (folder / s).is_dir()]
    if not present:
        raise DatasetError(f"{folder} has none of the split folders {', '.join(wanted)}")
    records: list[SceneRecord] = []
    for s in present:
        records.extend(spec.finder(folder / s, spec))
    return records
