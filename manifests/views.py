"""The views file: ``views/<dataset>/<scene_id>.parquet``, one row a rendered view (docs/design.md).

Format ``pairgen-views/2``: every row names its scene (``dataset``,
``scene_id``, dictionary-encoded strings), so the files of many scenes read
as one table (``pyarrow.dataset``, Polars, DuckDB, ``datasets``, Ray) have
unique ``(dataset, scene_id, view_id)``. Files of ``pairgen-views/1`` (no such
columns) are still read (:data:`VIEWS_FORMATS_READ`); ``pairgen render``
rewrites them as version 2 (:func:`upgrade_views`, no re-rendering).

The schema, the Hugging Face ``datasets`` features that make ``image`` and
``depth`` decode as images, the file metadata, a reader that checks all
three and names the file when something is off, and :func:`check_views`, the
checks of the rows themselves that a reader runs before trusting them (unique
view ids, the file's own scene, finite cameras with a rotation, depth maps of
the declared size, at least two views).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.io import OutputError, read_parquet_checked, write_parquet_atomic
from manifests.store import ranged

__all__ = [
    "CHECKED_COLUMNS",
    "CheckedViews",
    "IMAGE_STRUCT",
    "ROTATION_TOLERANCE",
    "SCENE_COLUMNS",
    "VIEWS_FORMAT",
    "VIEWS_FORMATS_READ",
    "VIEWS_SCHEMA",
    "VIEWS_SCHEMA_V1",
    "ViewsFileMeta",
    "check_views",
    "first_null_row",
    "huggingface_metadata",
    "read_views",
    "read_views_meta",
    "upgrade_views",
    "views_folder_problem",
    "views_table",
    "write_views",
]

VIEWS_FORMAT = "pairgen-views/2"
VIEWS_FORMATS_READ = ("pairgen-views/1", VIEWS_FORMAT)  # 1: without the dataset, scene_id columns
META_KEY = "pairgen"

#: How far a stored pose's rotation may be from orthonormal (max |R^T R - I|, |det R - 1|, and the
#: bottom row's distance from (0, 0, 0, 1)): float32 storage is within ~1e-6, a damaged pose far beyond.
ROTATION_TOLERANCE = 1e-4

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # Hugging Face Image layout
MAT3 = pa.list_(pa.float32(), 9)
MAT4 = pa.list_(pa.float32(), 16)
NAME = pa.dictionary(pa.int32(), pa.string())  # one value a file: dictionary-encoded, a few bytes on disk
SCENE_COLUMNS = ("dataset", "scene_id")

VIEWS_SCHEMA_V1 = pa.schema(
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
VIEWS_SCHEMA = pa.schema([(name, NAME) for name in SCENE_COLUMNS] + list(VIEWS_SCHEMA_V1))


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
        elif pa.types.is_dictionary(field.type):  # decoded to its values' type
            features[field.name] = {"dtype": dtypes[field.type.value_type], "_type": "Value"}
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
    dataset: str,
    scene_id: str,
) -> pa.Table:
    """Assemble the rows of one scene's views file (``dataset``, ``scene_id``: the scene, on every row)."""
    n = len(view_ids)
    return pa.table(
        {
            **_scene_columns(dataset, scene_id, n),
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


def _scene_columns(dataset: str, scene_id: str, n: int) -> dict[str, pa.DictionaryArray]:
    """The ``dataset`` and ``scene_id`` columns of ``n`` rows: one dictionary value each, repeated."""
    zeros = pa.array(np.zeros(n, np.int32))
    return {name: pa.DictionaryArray.from_arrays(zeros, pa.array([value], pa.string()))
            for name, value in zip(SCENE_COLUMNS, (dataset, scene_id))}  # fmt: skip


def write_views(path: str | Path, table: pa.Table, meta: ViewsFileMeta, tmp_dir: str | Path | None = None) -> None:
    """Write one scene's views file atomically, its metadata in the schema (``tmp_dir``: where the temporary goes)."""
    metadata = {META_KEY: meta.to_json(), **huggingface_metadata(VIEWS_SCHEMA, ("image", "depth"))}
    write_parquet_atomic(path, table, metadata=metadata, row_group_size=128, tmp_dir=tmp_dir)


def views_folder_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be a views folder (``OUT/views``, ``--views``), or None: the one wording of every reader.

    ``<folder>: is a file, not a views folder`` (a views file given for its
    folder, say), ``<folder>: no such views folder``, or ``<folder>: is not a
    folder``.
    """
    folder = Path(folder)
    if folder.is_dir():
        return None
    if folder.is_file():
        return f"{folder}: is a file, not a views folder (the folder of <dataset>/<scene_id>.parquet views files)"
    if not folder.exists():
        return f"{folder}: no such views folder"
    return f"{folder}: is not a folder, so not a views folder"


def read_views_meta(path: str | Path) -> ViewsFileMeta:
    """The ``pairgen`` metadata of a views file (reads the footer only).

    Raises
    ------
    OutputError
        Not a readable Parquet file, or not a views file of this format.
    """
    path = Path(path)
    try:
        raw = (pq.read_schema(ranged(path)).metadata or {}).get(META_KEY.encode())
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"{path}: not a readable Parquet file ({_one_line(e)})") from e
    if raw is None:
        raise OutputError(f"{path}: not a pairgen views file (no '{META_KEY}' metadata)")
    try:
        fields = json.loads(raw)
        meta = ViewsFileMeta(**fields)
    except (ValueError, TypeError) as e:
        raise OutputError(f"{path}: damaged '{META_KEY}' metadata ({_one_line(e)})") from e
    if meta.format not in VIEWS_FORMATS_READ:
        raise OutputError(f"{path}: views format {meta.format!r}, this pairgen reads {', '.join(VIEWS_FORMATS_READ)} "
                          "(a newer pairgen wrote it: upgrade pairgen)")  # fmt: skip
    return meta


def read_views(path: str | Path, columns: list[str] | None = None) -> tuple[pa.Table, ViewsFileMeta]:
    """Read a views file after checking its metadata and schema."""
    meta = read_views_meta(path)
    schema = VIEWS_SCHEMA if meta.format == VIEWS_FORMAT else VIEWS_SCHEMA_V1
    if columns is not None:  # a version 1 file has no scene columns: asked for, they are left out
        columns = [c for c in columns if c in schema.names or c not in SCENE_COLUMNS]
    try:
        table = read_parquet_checked(path, schema, columns=columns)
    except OutputError as e:  # pyarrow's messages run over several lines: one line, for the manifest and the log
        raise OutputError(_one_line(e)) from e
    if table.num_rows != meta.views:
        raise OutputError(f"{path}: holds {table.num_rows} views, its metadata says {meta.views}")
    return table, meta


def upgrade_views(path: str | Path, tmp_dir: str | Path | None = None) -> ViewsFileMeta:
    """Rewrite a ``pairgen-views/1`` file as the current format (its rows, plus ``dataset`` and ``scene_id``).

    The bytes of every image and depth are kept; the file is replaced
    atomically. Returns the new metadata (a current file is left as it is).
    """
    table, meta = read_views(path)
    if meta.format == VIEWS_FORMAT:
        return meta
    table = pa.table({**_scene_columns(meta.dataset, meta.scene_id, table.num_rows),
                      **{name: table.column(name) for name in VIEWS_SCHEMA_V1.names}}, schema=VIEWS_SCHEMA)  # fmt: skip
    meta = ViewsFileMeta(**{**meta.__dict__, "format": VIEWS_FORMAT})
    write_views(path, table, meta, tmp_dir=tmp_dir)
    return meta


@dataclass(frozen=True)
class CheckedViews:
    """One scene's views after :func:`check_views`: the arrays a reader computes with."""

    view_ids: np.ndarray  # (N,) int64, unique
    depth_mm: np.ndarray  # (N, H, W) uint16 millimetres, 0 = invalid (decode_depth's metres: / 1000 in float32)
    K: np.ndarray  # (N, 3, 3) float64
    cam2world: np.ndarray  # (N, 4, 4) float64
    width: int
    height: int


CHECKED_COLUMNS = ["view_id", "depth", "K", "cam2world", "width", "height"]  # what check_views needs
# (it checks dataset and scene_id too when they are read: every row names the file's own scene)


def first_null_row(column: pa.ChunkedArray | pa.Array) -> int | None:
    """The first row where ``column`` (or a struct's ``bytes``, or a list's element) is null, else None."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    masks = [arr.is_null()]
    if pa.types.is_struct(arr.type) and arr.type.get_field_index("bytes") >= 0:
        masks.append(arr.field("bytes").is_null())
    elif pa.types.is_fixed_size_list(arr.type) and not arr.null_count:
        size = arr.type.list_size
        masks.append(pa.array(arr.flatten().is_null().to_numpy(zero_copy_only=False).reshape(-1, size).any(axis=1)))
    for mask in masks:
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(rows):
            return int(rows[0])
    return None


def check_views(table: pa.Table, meta: ViewsFileMeta, path: str | Path, dataset: str, scene_id: str) -> CheckedViews:
    """Check one scene's views (``table`` read from ``path``, with ``meta`` its metadata) before they are used.

    ``dataset`` and ``scene_id`` are the scene the caller expects (its
    manifest entry). The table must hold :data:`CHECKED_COLUMNS`; an
    ``image`` column, when read, is checked too (bytes present, a header of
    the image's size; its pixels are not decoded).

    Returns
    -------
    CheckedViews
        The view ids, decoded depth maps and cameras.

    Raises
    ------
    OutputError
        Naming the file and the problem: the metadata names another scene
        than the file's path or the manifest entry; fewer than two views; a
        missing value; a repeated view id; a camera that is not finite, has a
        focal length that is not positive or a pose whose rotation is not
        orthonormal (:data:`ROTATION_TOLERANCE`); a depth PNG that is not
        readable or not of the image's size (``width``, ``height``); an
        image whose header is not an image's or names another size.
    """
    path = Path(path)
    said, found = f"{meta.dataset}/{meta.scene_id}", f"{path.parent.name}/{path.stem}"
    if said != found:
        raise OutputError(f"{path}: its metadata says it holds scene {said!r}, but it is the file of "
                          f"{found!r} (a views file of another scene under this name?)")  # fmt: skip
    if said != f"{dataset}/{scene_id}":
        raise OutputError(f"{path}: holds scene {said!r}, but the views manifest's entry is for "
                          f"{dataset + '/' + scene_id!r}")  # fmt: skip
    n = table.num_rows
    for name, value in zip(SCENE_COLUMNS, (meta.dataset, meta.scene_id)):
        if name in table.column_names:
            column = table.column(name).cast(pa.string()).combine_chunks()
            bad = np.flatnonzero(~np.asarray(column.to_numpy(zero_copy_only=False) == value, bool))
            if len(bad):
                r = int(bad[0])
                raise OutputError(f"{path}: row {r}: {name} is {column[r].as_py()!r}, the file's metadata says "
                                  f"{value!r}")  # fmt: skip
    if n < 2:
        raise OutputError(f"{path}: {n} view(s), a pair needs two")
    for name in [*CHECKED_COLUMNS, *(["image"] if "image" in table.column_names else [])]:
        row = first_null_row(table.column(name))
        if row is not None:
            raise OutputError(f"{path}: row {row}: {name} is missing (null)")

    ids = table.column("view_id").to_numpy().astype(np.int64)
    if (ids < 0).any():
        raise OutputError(f"{path}: row {int(np.flatnonzero(ids < 0)[0])}: negative view_id {int(ids[ids < 0][0])}")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        v = int(unique[counts > 1][0])
        rows = ", ".join(str(int(r)) for r in np.flatnonzero(ids == v)[:5])
        raise OutputError(f"{path}: view_id {v} appears {int(counts[counts > 1][0])} times (rows {rows}); "
                          f"view ids must be unique ({int((counts > 1).sum())} repeated)")  # fmt: skip

    widths, heights = table.column("width").to_numpy(), table.column("height").to_numpy()
    for name, values in (("width", widths), ("height", heights)):
        bad = np.flatnonzero((values <= 0) | (values != values[0]))
        if len(bad):
            r = int(bad[0])
            raise OutputError(f"{path}: row {r} (view {ids[r]}): {name} {int(values[r])}, expected a positive size "
                              f"shared by every view (row 0: {int(values[0])})")  # fmt: skip
    width, height = int(widths[0]), int(heights[0])

    K = table.column("K").combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, 3, 3)
    poses = (table.column("cam2world").combine_chunks().flatten().to_numpy(zero_copy_only=False)
             .astype(np.float64).reshape(n, 4, 4))  # fmt: skip
    for name, m in (("K", K), ("cam2world", poses)):
        bad = np.flatnonzero(~np.isfinite(m).reshape(n, -1).all(axis=1))
        if len(bad):
            r = int(bad[0])
            raise OutputError(f"{path}: row {r} (view {ids[r]}): {name} holds NaN or infinite values "
                              f"({len(bad)} view(s) so)")  # fmt: skip
    focal = np.minimum(K[:, 0, 0], K[:, 1, 1])
    bad = np.flatnonzero(~(focal > 0))
    if len(bad):
        r = int(bad[0])
        raise OutputError(f"{path}: row {r} (view {ids[r]}): K's focal length (fx {K[r, 0, 0]:g}, fy {K[r, 1, 1]:g}) "
                          "is not positive")  # fmt: skip
    off = np.abs(K[:, 2] - [0.0, 0.0, 1.0]).max(axis=1)
    bad = np.flatnonzero(off > ROTATION_TOLERANCE)
    if len(bad):
        r = int(bad[0])
        raise OutputError(f"{path}: row {r} (view {ids[r]}): K's last row is {K[r, 2].tolist()}, "
                          "not a pinhole's (0, 0, 1)")  # fmt: skip
    R = poses[:, :3, :3]
    orth = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
    det = np.abs(np.linalg.det(R) - 1.0)
    bottom = np.abs(poses[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1)
    bad = np.flatnonzero((orth > ROTATION_TOLERANCE) | (det > ROTATION_TOLERANCE) | (bottom > ROTATION_TOLERANCE))
    if len(bad):
        r = int(bad[0])
        raise OutputError(f"{path}: row {r} (view {ids[r]}): cam2world is not a rigid pose (rotation off "
                          f"orthonormal by {orth[r]:.2g}, det {np.linalg.det(R[r]):.4g}, bottom row "
                          f"{poses[r, 3].tolist()}; tolerance {ROTATION_TOLERANCE:g})")  # fmt: skip

    from manifests.codecs import decode_depth_mm

    depths = np.empty((n, height, width), np.uint16)
    for r, item in enumerate(table.column("depth").to_pylist()):
        try:
            depth = decode_depth_mm(item["bytes"])
        except Exception as e:  # noqa: BLE001 -- PIL raises OSError, ValueError, SyntaxError, zlib.error...
            raise OutputError(f"{path}: row {r} (view {ids[r]}): depth is not a readable 16-bit PNG "
                              f"({type(e).__name__}: {_first_line(e)})") from None  # fmt: skip
        if depth.shape != (height, width):
            raise OutputError(f"{path}: row {r} (view {ids[r]}): depth PNG is {depth.shape[1]}x{depth.shape[0]}, "
                              f"the image is {width}x{height} (width, height columns)")  # fmt: skip
        depths[r] = depth
    if "image" in table.column_names:
        _check_image_sizes(table.column("image"), ids, path, width, height)
    return CheckedViews(ids, depths, K, poses, width, height)


def _check_image_sizes(column: pa.ChunkedArray, ids: np.ndarray, path: Path, width: int, height: int) -> None:
    """Each encoded image's header (not its pixels) names an image of ``width`` x ``height``."""
    from PIL import Image, UnidentifiedImageError

    for r, item in enumerate(column.to_pylist()):
        try:
            with Image.open(io.BytesIO(item["bytes"])) as image:
                size = image.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise OutputError(f"{path}: row {r} (view {ids[r]}): image is not a readable image "
                              f"({type(e).__name__}: {_first_line(e)})") from None  # fmt: skip
        if size != (width, height):
            raise OutputError(f"{path}: row {r} (view {ids[r]}): image is {size[0]}x{size[1]}, "
                              f"the width, height columns say {width}x{height}")  # fmt: skip


def _one_line(e: BaseException | str) -> str:
    """A message on one line (pyarrow's run over several)."""
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip()).replace("; )", ")")


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message, without PIL's ``<_io.BytesIO object at 0x...>``."""
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e)).strip()
    return text.splitlines()[0] if text else "no detail"
