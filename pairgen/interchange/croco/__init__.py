"""CroCo interchange: ``pairgen import croco`` and ``pairgen export --format croco``.

* :mod:`~pairgen.interchange.croco.cameras`: habitat agent states and CroCo's intrinsics, to and from ours;
* :mod:`~pairgen.interchange.croco.metadata`: ``metadata.json`` read, checked, and mapped onto a data root;
* :mod:`~pairgen.interchange.croco.stages`: the import's two stages;
* :mod:`~pairgen.interchange.croco.export`: the ``habitat_release`` folder written from ``OUT/pairs``.

CroCo's habitat release (naver/croco, ``datasets/habitat_sim/``) describes its pairs
with one ``metadata.json`` a scene (its format: :mod:`~pairgen.interchange.croco.metadata`).

Import is two stages of :mod:`pairgen.stage`, so resume, refusal of another
config and per-scene failures behave as ``render`` and ``filter``:
:class:`ImportStage` (a :class:`~pairgen.views_stage.ViewsStage`, unit: one CroCo scene; renders exactly its cameras with
a render backend into ``OUT/views``) and :class:`CrocoPairsStage` (a
:class:`~pairgen.filter.FilterStage` whose unit computes the covisibility of
the scene's listed pairs by our measure instead of searching for pairs, then
the filter's shards into ``OUT/pairs``). Export (:func:`export_croco`) writes
the ``habitat_release`` folder CroCo's ``datasets/pairs_dataset.py`` reads.
"""

from pairgen.interchange.croco.cameras import (
    R_OPENCV2HABITAT,
    cam2world_to_habitat,
    croco_intrinsics,
    habitat_to_cam2world,
)
from pairgen.interchange.croco.export import EXPORT_STATE, ExportSummary, export_croco
from pairgen.interchange.croco.metadata import (
    CROCO_LABELS,
    METADATA_NAME,
    CrocoScene,
    CrocoTask,
    ImportLimits,
    MetadataError,
    find_metadata,
    import_tasks,
    parse_dataset_map,
    read_metadata,
)
from pairgen.interchange.croco.stages import CrocoPairsConfig, CrocoPairsStage, ImportConfig, ImportStage

__all__ = [
    "CROCO_LABELS",
    "EXPORT_STATE",
    "METADATA_NAME",
    "R_OPENCV2HABITAT",
    "CrocoPairsConfig",
    "CrocoPairsStage",
    "CrocoScene",
    "CrocoTask",
    "ExportSummary",
    "ImportConfig",
    "ImportLimits",
    "ImportStage",
    "MetadataError",
    "cam2world_to_habitat",
    "croco_intrinsics",
    "export_croco",
    "find_metadata",
    "habitat_to_cam2world",
    "import_tasks",
    "parse_dataset_map",
    "read_metadata",
]
