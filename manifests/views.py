"""The views file: ``views/<dataset>/<scene_id>.parquet``, one row a rendered view (docs/design.md).

The schema, the Hugging Face ``datasets`` features that make ``image`` and
``depth`` decode as images, the file metadata, and a reader that checks all
three and names the file when something is off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.io import OutputError, read_parquet_checked, write_parquet_atomic

__all__ = [
    "IMAGE_STRUCT",
    "VIEWS_FORMAT",
    "VIEWS_SCHEMA",
    "ViewsFileMeta",
    "huggingface_metadata",
    "read_views",
    "read_views_meta",
    "views_table",
    "write_views",
]

VIEWS_FORMAT = "pairgen-views/1"
META_KEY = "pairgen"

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # Hugging Face Image layout
MAT3 = pa.list_(pa.float32(), 9)
MAT4 = pa.list_(pa.float32(), 16)

VIEWS_SCHEMA = pa.schema(
    [
        ("view_id", pa.int32()),
        ("image", IMAGE_STRUCT),
        ("depth", IMAGE_STRUCT),
        ("K", MAT3),
        ("cam2world", MAT4),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("valid_fraction", pa.float32()),
    ]
)


def huggingface_metadata(schema: pa.Schema, image_columns: tuple[str, ...]) -> dict[str, str]:
    """Schema metadata under ``huggingface`` declaring ``image_columns`` as ``Image`` features.

    ``datasets.load_dataset("parquet", ...)`` reads it and decodes those
    columns to PIL images; the others get their plain Arrow-derived features.
    """
    dtypes = {pa.int32(): "int32", pa.float32(): "float32", pa.string(): "string", pa.int64(): "int64"}
    features = {}
    for field in schema:
        if field.name in image_columns:
            features[field.name] = {"_type": "Image"}
        elif pa.types.is_fixed_size_list(field.type):
            features[field.name] = {
                "feature": {"dtype": dtypes[field.type.value_type], "_type": "Value"},
                "length": field.type.list_size,
                "_type": "Sequence",
            }
        else:
            features[field.name] = {"dtype": dtypes[field.type], "_type": "Value"}
    return {"huggingface": json.dumps({"info": {"features": features}})}


@dataclass(frozen=True)
class ViewsFileMeta:
    """What a views file says about itself (its ``pairgen`` schema metadata)."""

    dataset: str
    scene_id: str
    source: str
    backend: str
    config_hash: str
    views: int
    format: str = VIEWS_FORMAT

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def views_table(
    view_ids: list[int],
    images: list[bytes],
    depths: list[bytes],
    Ks: list[np.ndarray],
    poses: list[np.ndarray],
    width: int,
    height: int,
    valid_fractions: list[float],
    *,
    image_ext: str,
    scene_id: str,
) -> pa.Table:
    """Assemble the rows of one scene's views file."""
    n = len(view_ids)
    return pa.table(
        {
            "view_id": pa.array(view_ids, pa.int32()),
            "image": pa.array(
                [{"bytes": b, "path": f"{scene_id}/{i:06d}.{image_ext}"} for i, b in zip(view_ids, images)],
                IMAGE_STRUCT,
            ),
            "depth": pa.array(
                [{"bytes": b, "path": f"{scene_id}/{i:06d}.depth.png"} for i, b in zip(view_ids, depths)],
                IMAGE_STRUCT,
            ),
            "K": pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray(Ks, np.float32).reshape(-1) if n else np.zeros(0, np.float32)), 9
            ),
            "cam2world": pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray(poses, np.float32).reshape(-1) if n else np.zeros(0, np.float32)), 16
            ),
            "width": pa.array([width] * n, pa.int32()),
            "height": pa.array([height] * n, pa.int32()),
            "valid_fraction": pa.array(valid_fractions, pa.float32()),
        },
        schema=VIEWS_SCHEMA,
    )


def write_views(path: str | Path, table: pa.Table, meta: ViewsFileMeta) -> None:
    """Write one scene's views file atomically, its metadata in the schema."""
    metadata = {META_KEY: meta.to_json(), **huggingface_metadata(VIEWS_SCHEMA, ("image", "depth"))}
    write_parquet_atomic(path, table, metadata=metadata, row_group_size=128)


def read_views_meta(path: str | Path) -> ViewsFileMeta:
    """The ``pairgen`` metadata of a views file (reads the footer only).

    Raises
    ------
    OutputError
        Not a readable Parquet file, or not a views file of this format.
    """
    path = Path(path)
    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY.encode())
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"{path}: not a readable Parquet file ({e})") from e
    if raw is None:
        raise OutputError(f"{path}: not a pairgen views file (no '{META_KEY}' metadata)")
    try:
        fields = json.loads(raw)
        meta = ViewsFileMeta(**fields)
    except (ValueError, TypeError) as e:
        raise OutputError(f"{path}: damaged '{META_KEY}' metadata ({e})") from e
    if meta.format != VIEWS_FORMAT:
        raise OutputError(f"{path}: views format {meta.format!r}, this pairgen reads {VIEWS_FORMAT!r}")
    return meta


def read_views(path: str | Path, columns: list[str] | None = None) -> tuple[pa.Table, ViewsFileMeta]:
    """Read a views file after checking its metadata and schema."""
    meta = read_views_meta(path)
    table = read_parquet_checked(path, VIEWS_SCHEMA, columns=columns)
    if table.num_rows != meta.views:
        raise OutputError(f"{path}: holds {table.num_rows} views, its metadata says {meta.views}")
    return table, meta
