"""Dataset descriptors: where each dataset keeps its scenes, and how to read them.

A dataset lives under ``<data-root>/<name>`` in the layout its release uses
(docs/design.md); :func:`discover` walks that layout and answers one
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

import abc
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from manifests.io import resolve_inside
from manifests.layout import name_problem
from manifests.options import check, option
from manifests.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetError",
    "Dataset",
    "Licence",
    "SceneRecord",
    "SyntheticOptions",
    "available_datasets",
    "describe_datasets",
    "discover",
    "get_dataset",
    "parse_dataset_list",
    "register_dataset",
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
        Why this scene cannot be used; empty when it can. A dataset or scene
        id that cannot name a file (:func:`manifests.layout.name_problem`:
        unsafe characters, too long) is one, found here, before any work.
    """

    dataset: str
    split: str
    scene_id: str
    mesh: str | None
    navmesh: str | None
    source: str
    up: str
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for what, name in (("dataset", self.dataset), ("scene id", self.scene_id)):
            problem = name_problem(name, what)  # its files are named after it: views, selections, exports
            if problem is not None and problem not in self.problems:
                self.problems.append(problem)

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
class Licence:
    """The terms a dataset is used under: its name, where to read it, and the Hugging Face ``license`` id.

    Renders of a scene are derived from it: the dataset card (``OUT/README.md``)
    names each scene's licence, and whoever publishes the views or pairs is
    bound by it.
    """

    name: str
    url: str
    hf_id: str = "other"  # a Hugging Face licence identifier (https://huggingface.co/docs/hub/repositories-licenses)


UNKNOWN_LICENCE = Licence("unknown: the source dataset's own terms", "")


@dataclass(frozen=True)
class SyntheticOptions:
    """How many procedural apartments the ``synthetic`` dataset holds, and how big."""

    count: int = option(4, min=0, max=1_000_000, flag="--synthetic-count", metavar="N",
                        help="how many procedural apartments 'synthetic' holds")
    preset: str = option("medium", flag="--synthetic-preset", choices=("small", "medium", "large"),
                         help="size of the procedural apartments (large: about 1 M triangles)")
    seed: int = option(0, min=0, max=2**32 - 1,
                       help="seed of the first procedural apartment (and, for render, of the viewpoint sampling)")

    def __post_init__(self) -> None:
        check(self)


class Dataset(abc.ABC):
    """A dataset's descriptor: where it keeps its scenes and which scene source reads them.

    Subclasses set the class attributes and implement :meth:`find`, and are
    registered with :func:`register_dataset`; adding a dataset is one class
    here (plus a scene source in ``renderers.sources`` if its format is new).

    Attributes
    ----------
    name : str
        The ``--scenes`` name and the folder under the data root.
    description : str
    source : str
        Scene source (loader) for its meshes, a ``renderers.sources`` name.
    up : {"y", "z"}
        Up axis of its mesh files.
    splits : tuple of str
        Sub-folders that are splits (HM3D's ``train``/``val``/``minival``);
        empty when the dataset has none.
    licence : Licence
        The terms its scenes (and so their renders) are used under.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    source: ClassVar[str]
    licence: ClassVar[Licence] = UNKNOWN_LICENCE
    up: ClassVar[str] = "z"
    splits: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def find(self, folder: Path) -> Iterator[SceneRecord]:
        """The scenes under one split folder (or the dataset folder when there are no splits)."""

    def discover(
        self, data_root: str | Path | None, split: str | None, synthetic: SyntheticOptions
    ) -> list[SceneRecord]:
        """Every scene under ``data_root``, sorted by split then id (see :func:`discover`)."""
        if data_root is None:
            raise DatasetError(f"{self.name} needs --data-root")
        root = Path(data_root)
        if not root.is_dir():
            raise DatasetError(f"data root {root} does not exist (or is not a folder)")
        folder = root / self.name
        if not folder.is_dir():
            raise DatasetError(f"dataset folder {folder} does not exist; expected {self.name} under the data root {root}")
        if not self.splits:
            return list(self.find(folder))
        if split is not None and split not in self.splits:
            raise DatasetError(f"{self.name} has splits {', '.join(self.splits)}; got {split!r}")
        wanted = [split] if split else list(self.splits)
        present = [s for s in wanted if (folder / s).is_dir()]
        if not present:
            raise DatasetError(f"{folder} has none of the split folders {', '.join(wanted)}")
        return [record for s in present for record in self.find(folder / s)]


_REGISTRY: Registry[Dataset] = Registry("dataset")
register_dataset = _REGISTRY.register  # class decorator: add a dataset under cls.name
available_datasets = _REGISTRY.names
describe_datasets = _REGISTRY.summary


def _record(spec: Dataset, split: str, scene_id: str, mesh: Path | None,
            navmesh: Path | None, problems: list[str] | None = None) -> SceneRecord:
    """A record for ``mesh`` (the expected file); a missing, empty or foreign one is its problem.

    Neither file is followed out of the dataset folder (``<data-root>/<name>``,
    resolved, so a dataset folder that is itself a link is fine): a mesh or
    navmesh that is a symlink leading outside it, or that is not a regular
    file (a FIFO, a device, a folder), is recorded as the scene's problem and
    not read. A missing navmesh is no problem (it is optional).
    """
    problems = list(problems or [])
    if mesh is not None:
        if not os.path.lexists(mesh):
            problems.append(f"{mesh.parent}: no {mesh.name}")
            mesh = None
        else:
            problem = _file_problem(mesh, _dataset_folder(spec, mesh), empty_ok=False)
            if problem is not None:
                problems.append(f"{mesh}: {problem}")
    if navmesh is not None:
        if not os.path.lexists(navmesh):
            navmesh = None
        else:
            problem = _file_problem(navmesh, _dataset_folder(spec, navmesh), empty_ok=True)
            if problem is not None:
                problems.append(f"{navmesh}: {problem}")
                navmesh = None
    return SceneRecord(
        dataset=spec.name,
        split=split,
        scene_id=scene_id,
        mesh=str(mesh) if mesh is not None else None,
        navmesh=str(navmesh) if navmesh is not None else None,
        source=spec.source,
        up=spec.up,
        problems=problems,
    )


def _dataset_folder(spec: Dataset, path: Path) -> Path:
    """The dataset folder a discovered ``path`` lies in: its nearest ancestor named after the dataset."""
    return next((parent for parent in path.parents if parent.name == spec.name), path.parent)


def _file_problem(path: Path, folder: Path, *, empty_ok: bool) -> str | None:
    """Why ``path`` (which exists, maybe as a link) must not be read as a scene file, or None."""
    if resolve_inside(folder, path.absolute()) is None:
        try:  # why: a link that cannot be followed, or one that leads out
            path.resolve()
        except (OSError, RuntimeError) as e:  # a symlink loop
            return f"cannot resolve: {getattr(e, 'strerror', None) or e}"
        return f"leads outside the dataset folder {folder.resolve()} (through a symlink): refused, not followed"
    try:
        st = path.stat()
    except FileNotFoundError:
        return "a broken symlink"
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, device or socket)"
    if st.st_size == 0 and not empty_ok:
        return "file is empty"
    return None


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@register_dataset
class HM3D(Dataset):
    """``NNNNN-<hash>/<hash>.glb`` (preferred) or ``<hash>.basis.glb``."""

    name, description, source, splits = "hm3d", "Habitat-Matterport 3D v0.2", "gltf", ("train", "val", "minival")
    licence = Licence("Matterport End User License Agreement for Academic Use of Model Data",
                      "https://matterport.com/legal/matterport-end-user-license-agreement-academic-use-model-data")

    def find(self, folder: Path) -> Iterator[SceneRecord]:
        for scene_dir in _subfolders(folder):
            hash_ = scene_dir.name.split("-", 1)[-1]
            plain, basis = scene_dir / f"{hash_}.glb", scene_dir / f"{hash_}.basis.glb"
            navmesh = next(
                (p for p in (scene_dir / f"{hash_}.basis.navmesh", scene_dir / f"{hash_}.navmesh") if p.is_file()), None
            )
            mesh = plain if plain.is_file() else basis if basis.is_file() else None
            problems = [] if mesh else [f"{scene_dir}: no {plain.name} or {basis.name}"]
            yield _record(self, folder.name, scene_dir.name, mesh, navmesh, problems)


@register_dataset
class ScanNet(Dataset):
    """``sceneXXXX_XX/sceneXXXX_XX_vh_clean_2.ply``."""

    name, description, source, splits = "scannet", "ScanNet v2 reconstructions", "ply", ("scans", "scans_test")
    licence = Licence("ScanNet Terms of Use", "http://kaldir.vc.in.tum.de/scannet/ScanNet_TOS.pdf")

    def find(self, folder: Path) -> Iterator[SceneRecord]:
        for scene_dir in _subfolders(folder):
            yield _record(self, folder.name, scene_dir.name, scene_dir / f"{scene_dir.name}_vh_clean_2.ply", None)


@register_dataset
class Replica(Dataset):
    """``<room>/mesh.ply`` with ``<room>/habitat/mesh_semantic.navmesh`` when present."""

    name, description, source = "replica", "Replica rooms (vertex colours)", "ply"
    licence = Licence("Replica Dataset Research Terms",
                      "https://github.com/facebookresearch/Replica-Dataset/blob/main/LICENSE")

    def find(self, folder: Path) -> Iterator[SceneRecord]:
        for room in _subfolders(folder):
            yield _record(self, "", room.name, room / "mesh.ply", room / "habitat" / "mesh_semantic.navmesh")


@register_dataset
class MP3D(Dataset):
    """``<scan>/<scan>.glb`` + ``<scan>/<scan>.navmesh``."""

    name, description, source = "mp3d", "Matterport3D (Habitat glb)", "gltf"
    licence = Licence("Matterport3D Terms of Use", "http://kaldir.vc.in.tum.de/matterport/MP_TOS.pdf")

    def find(self, folder: Path) -> Iterator[SceneRecord]:
        for scan in _subfolders(folder):
            yield _record(self, "", scan.name, scan / f"{scan.name}.glb", scan / f"{scan.name}.navmesh")


@register_dataset
class Gibson(Dataset):
    """``<Name>.glb`` + ``<Name>.navmesh``, all in one folder."""

    name, description, source = "gibson", "Gibson (Habitat glb)", "gltf"
    licence = Licence("Gibson Database of 3D Spaces License Agreement",
                      "https://storage.googleapis.com/gibson_material/Agreement%20GDS%2006-04-18.pdf")

    def find(self, folder: Path) -> Iterator[SceneRecord]:
        for mesh in sorted(folder.glob("*.glb")):
            yield _record(self, "", mesh.stem, mesh, mesh.with_suffix(".navmesh"))
        for navmesh in sorted(folder.glob("*.navmesh")):
            if not navmesh.with_suffix(".glb").exists():
                yield _record(self, "", navmesh.stem, None, navmesh, [f"{navmesh}: no {navmesh.stem}.glb beside it"])


@register_dataset
class Synthetic(Dataset):
    """Procedural apartments built from a seed: no data root, no files."""

    name, description, source, up = "synthetic", "procedural apartments (built in, no data root)", "synthetic", "y"
    licence = Licence("MIT (pairgen's own licence: the apartments are built by its code from a seed)",
                      "https://opensource.org/license/mit", hf_id="mit")

    def find(self, folder: Path) -> Iterator[SceneRecord]:
        return iter(())

    def discover(self, data_root, split, synthetic: SyntheticOptions) -> list[SceneRecord]:
        return [
            SceneRecord("synthetic", "", f"apartment_{synthetic.seed + i:04d}", f"{synthetic.preset}/{synthetic.seed + i}",
                        None, self.source, self.up)
            for i in range(synthetic.count)
        ]


DATASETS: dict[str, Dataset] = {name: _REGISTRY.get(name) for name in available_datasets()}


def get_dataset(name: str) -> Dataset:
    try:
        return _REGISTRY.get(name)
    except ValueError as e:
        raise DatasetError(str(e)) from None


def parse_dataset_list(text: str) -> list[Dataset]:
    """``"hm3d,scannet"`` -> their specs, in order, without repeats."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise DatasetError("no dataset named; use e.g. --scenes hm3d or --scenes hm3d,scannet")
    return [get_dataset(n) for n in dict.fromkeys(names)]


def discover(
    spec: Dataset,
    data_root: str | Path | None,
    split: str | None = None,
    synthetic: SyntheticOptions = SyntheticOptions(),
) -> list[SceneRecord]:
    """Every scene of one dataset, sorted by split then id.

    Parameters
    ----------
    spec : Dataset
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
    return spec.discover(data_root, split, synthetic)
