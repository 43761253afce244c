"""Dataset descriptors (where each dataset keeps its scenes) and manifest schemas."""

from manifests.datasets import (
    DATASETS,
    DatasetError,
    DatasetSpec,
    SceneRecord,
    SyntheticOptions,
    discover,
    get_dataset,
    parse_dataset_list,
)

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
