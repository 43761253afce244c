"""Samples of N views: ``OUT/<shape><N>/shard-NNNNN.parquet``, one row a sample, and the one reader of them.

A sample is N views of one scene chosen by their covisibility (docs/design.md,
"Samples of N views"): a ``star`` (view 1, the reference, overlaps every
other view), a ``chain`` (view k overlaps view k-1) or a ``tree`` (view k
overlaps its parent, an earlier view), or a ``pair``. A row names its views
(``dataset``, ``scene_id``, ``view_ids``) and holds no image bytes: the views
files hold each view once (**referenced**). ``--embed`` adds the views'
bytes and cameras to every row instead (**embedded**), so that one file
carries everything.

Columns of both kinds (:data:`SAMPLES_SCHEMA`):

``sample_id``
    ``<dataset>/<scene_id>/<v1>-<v2>-...`` (view ids, 6 digits): unique, stable.
``dataset``, ``scene_id``
    The scene; its views file is ``views/<dataset>/<scene_id>.parquet``.
``shape``
    ``pair``, ``star``, ``chain`` or ``tree``.
``view_ids``
    (N,) int32, in the sample's order: view 1 first (the star's reference,
    the chain's or tree's root).
``parents``
    (N,) int32: the position (0-based, in ``view_ids``) of each view's parent,
    -1 for view 1 (a star's views all have parent 0; a chain's view k, k-1).
``covis``
    (N * N,) float32, row-major: ``covis[i * N + j]`` is the share of view
    i's pixels seen in view j, by the configured measure on every pixel; the
    diagonal holds each view's valid fraction (its own valid pixels see
    themselves).
``width``, ``height``
    int32, the views' size.
``views_sha256``
    The views file's SHA-256 when the sample was drawn: a reader refuses a
    views file that changed since (the ids could name other views).

Embedded rows add ``images``, ``depths`` (lists of the Hugging Face Image
struct, bytes as the views file holds them), ``K`` and ``cam2world`` (lists
of the views' 9 and 16 floats).

:class:`ViewsLookup` opens a scene's views file once, checked against the
sample's ``views_sha256``, and keeps the last few; :func:`read_samples`
iterates samples with decoded RGB, depth in metres, ``K`` and ``cam2world``,
a row group of samples at a time, each views file read once a row group.
Torch-free: ``pretrain`` reads the same through :class:`ViewsLookup`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.codecs import decode_depth, decode_rgb
from manifests.io import OutputError, one_line
from manifests.layout import name_problem
from manifests.manifest import sha256_file
from manifests.views import IMAGE_STRUCT, MAT3, MAT4, read_views, views_folder_problem
from manifests.store import local

__all__ = [
    "EMBEDDED_COLUMNS",
    "SAMPLES_FORMAT",
    "SAMPLES_SCHEMA",
    "SHAPES",
    "Sample",
    "SampleError",
    "ResolvedViews",
    "ViewsLookup",
    "is_samples_schema",
    "read_samples",
    "sample_id",
    "samples_metadata",
    "samples_schema",
]

SAMPLES_FORMAT = "pairgen-samples/1"
SHAPES = ("pair", "star", "chain", "tree")
META_KEY = "pairgen"
REFERENCE_COLUMNS = ("dataset", "scene_id", "view_ids")  # what a row must hold to be resolved

SAMPLES_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("dataset", pa.string()),
        ("scene_id", pa.string()),
        ("shape", pa.string()),
        ("view_ids", pa.list_(pa.int32())),
        ("parents", pa.list_(pa.int32())),
        ("covis", pa.list_(pa.float32())),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("views_sha256", pa.string()),
    ]
)
#: what ``--embed`` adds to each row: every view's bytes and camera
EMBEDDED_COLUMNS = pa.schema(
    [
        ("images", pa.list_(IMAGE_STRUCT)),
        ("depths", pa.list_(IMAGE_STRUCT)),
        ("K", pa.list_(MAT3)),
        ("cam2world", pa.list_(MAT4)),
    ]
)


class SampleError(OutputError):
    """A samples shard or a views file it names that cannot be used; the message names the file (and scene, view)."""


def samples_schema(embed: bool) -> pa.Schema:
    """The columns of a samples shard: references only, or with every view's bytes and camera."""
    return pa.schema([*SAMPLES_SCHEMA, *EMBEDDED_COLUMNS]) if embed else SAMPLES_SCHEMA


def is_samples_schema(schema: pa.Schema) -> bool:
    """Whether a Parquet schema is a samples shard's (by its reference columns)."""
    return all(name in schema.names for name in (*REFERENCE_COLUMNS, "covis", "views_sha256"))


def sample_id(dataset: str, scene_id: str, view_ids: Sequence[int]) -> str:
    """``<dataset>/<scene_id>/<v1>-<v2>-...``, the view ids zero-padded to 6 digits (as pairs' ids)."""
    return f"{dataset}/{scene_id}/" + "-".join(f"{int(v):06d}" for v in view_ids)


def samples_metadata(config_hash: str, samples: int, shape: str, views: int, embed: bool,
                     digest: str | None = None) -> dict[str, str]:  # fmt: skip
    """Schema metadata ``pairgen`` of a samples shard: format, config hash, count, shape, views a sample, embedded."""
    meta = {"format": SAMPLES_FORMAT, "config_hash": config_hash, "samples": samples, "shape": shape,
            "views": views, "embedded": embed}  # fmt: skip
    if digest is not None:
        meta["rows_digest"] = digest
    return {META_KEY: json.dumps(meta, sort_keys=True)}


# -- resolving references -------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedViews:
    """One scene's views file, read once: what a sample's references resolve to.

    ``rows[view_id]`` is the view's row; ``image`` and ``depth`` are the
    Arrow arrays of encoded bytes (``image.value(row)`` without a copy: see
    :meth:`image_bytes`); ``K`` (V, 3, 3) and ``cam2world`` (V, 4, 4) float32 (no rows when not read).
    """

    path: Path
    rows: dict[int, int]
    image: pa.Array
    depth: pa.Array
    K: np.ndarray
    cam2world: np.ndarray
    width: int
    height: int

    def row(self, view_id: int, scene: str) -> int:
        try:
            return self.rows[int(view_id)]
        except KeyError:
            raise SampleError(f"{self.path}: scene {scene} has no view {int(view_id)} that a sample names") from None

    def image_bytes(self, row: int) -> bytes:
        return self.image[row].as_py()

    def depth_bytes(self, row: int) -> bytes:
        return self.depth[row].as_py()


class ViewsLookup:
    """Scenes' views files under ``views_dir``, each read once and checked, the last ``keep`` kept in memory.

    ``columns`` are what is read besides ids and sizes: the encoded ``image``
    and ``depth``, the cameras ``K`` and ``cam2world`` (a loader that wants
    image bytes only reads ``("image",)``).

    :meth:`get` checks the file's SHA-256 against the one a sample recorded
    (hashed once per file while it is kept) and its views' size, so a sample
    never resolves to views other than those it was drawn from.
    """

    def __init__(self, views_dir: str | Path, keep: int = 16,
                 columns: Sequence[str] = ("image", "depth", "K", "cam2world")) -> None:  # fmt: skip
        self.views_dir = Path(views_dir)
        self.keep = max(1, int(keep))
        self.columns = tuple(columns)
        self._kept: OrderedDict[tuple[str, str], tuple[str, ResolvedViews]] = OrderedDict()
        self.reads = 0  # views files read (for benchmarks and tests)

    def path(self, dataset: str, scene_id: str) -> Path:
        for what, name in (("dataset", dataset), ("scene id", scene_id)):
            if (problem := name_problem(name, what)) is not None:
                raise SampleError(f"{self.views_dir}: a sample names scene {dataset}/{scene_id}: {problem}")
        return self.views_dir / dataset / f"{scene_id}.parquet"

    def _matrices(self, table: pa.Table, name: str, n: int) -> np.ndarray:
        """(V, n, n) float32 of a fixed-size list column; (0, n, n) when this lookup does not read it."""
        if name not in self.columns:
            return np.zeros((0, n, n), np.float32)
        return table.column(name).combine_chunks().flatten().to_numpy().astype(np.float32).reshape(-1, n, n)

    def get(self, dataset: str, scene_id: str, sha256: str | None) -> ResolvedViews:
        """The scene's views; :class:`SampleError` names the file and scene when missing, changed or unreadable."""
        key = (dataset, scene_id)
        if key in self._kept:
            digest, views = self._kept[key]
            self._kept.move_to_end(key)
            if sha256 is None or digest == sha256:
                return views
        path = self.path(dataset, scene_id)
        scene = f"{dataset}/{scene_id}"
        if not path.is_file():
            if (problem := views_folder_problem(self.views_dir)) is not None:  # not the file's problem: the folder's
                raise SampleError(f"{problem}; it should hold the views file of scene {scene}, which samples name")
            raise SampleError(f"{path}: missing: the views file of scene {scene}, which samples name")
        digest = sha256_file(path)
        if sha256 is not None and digest != sha256:
            raise SampleError(f"{path}: changed since its samples were drawn (SHA-256 {digest[:12]}..., the samples "
                              f"name {sha256[:12]}...): scene {scene}; run the command that made them again")  # fmt: skip
        try:
            table, _ = read_views(path, columns=["view_id", *self.columns, "width", "height"])
        except OutputError as e:
            raise SampleError(f"{e} (scene {scene})") from None
        ids = table.column("view_id").to_numpy()
        width, height = table.column("width").to_numpy(), table.column("height").to_numpy()
        empty = pa.array([], IMAGE_STRUCT.field("bytes").type)
        views = ResolvedViews(
            path=path,
            rows={int(v): i for i, v in enumerate(ids)},
            image=table.column("image").combine_chunks().field("bytes") if "image" in self.columns else empty,
            depth=table.column("depth").combine_chunks().field("bytes") if "depth" in self.columns else empty,
            K=self._matrices(table, "K", 3),
            cam2world=self._matrices(table, "cam2world", 4),
            width=int(width[0]) if len(width) else 0,
            height=int(height[0]) if len(height) else 0,
        )
        self.reads += 1
        self._kept[key] = (digest, views)
        while len(self._kept) > self.keep:
            self._kept.popitem(last=False)
        return views


@dataclass
class Sample:
    """One sample with its views decoded: N views of one scene.

    ``rgb`` (N, H, W, 3) uint8; ``depth`` (N, H, W) float32 metres, 0 =
    invalid; ``K`` (N, 3, 3) and ``cam2world`` (N, 4, 4) float32 (OpenCV
    camera, Y-up world); ``covis`` (N, N) float32, ``covis[i, j]`` the share
    of view i's pixels seen in view j; ``parents`` (N,) int32, -1 for view 1.
    """

    sample_id: str
    dataset: str
    scene_id: str
    shape: str
    view_ids: np.ndarray
    parents: np.ndarray
    covis: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    cam2world: np.ndarray


def _shards(source: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(source, (str, Path)):
        source = Path(source)
        files = sorted(source.glob("shard-*.parquet")) if source.is_dir() else [source]
    else:
        files = [Path(p) for p in source]
    if not files:
        raise SampleError(f"{source}: no samples shards (shard-*.parquet)")
    return files


def read_samples(source: str | Path | Sequence[str | Path], views_dir: str | Path | None = None, *,
                 keep: int = 16) -> Iterator[Sample]:  # fmt: skip
    """Every sample of a samples folder (or shard files), in order, with its views decoded.

    ``views_dir`` defaults to the samples folder's sibling ``views/`` (the
    pipeline's layout). Referenced rows are resolved through a
    :class:`ViewsLookup` (each views file read once per row group, ``keep``
    kept across row groups); embedded rows carry their own bytes.

    Raises
    ------
    SampleError
        A shard that is not a samples shard, or a views file that is
        missing, changed since, or lacks a view (named: file, scene, view).
    """
    files = _shards(source)
    if views_dir is None:
        views_dir = files[0].parent.parent / "views"
    lookup = ViewsLookup(views_dir, keep=keep)
    for path in files:
        try:
            pf = pq.ParquetFile(local(path))
        except (OSError, pa.ArrowException) as e:
            raise SampleError(f"{path}: not a readable Parquet file ({one_line(e)})") from e
        with pf:
            if not is_samples_schema(pf.schema_arrow):
                raise SampleError(f"{path}: not a samples shard (no {', '.join(REFERENCE_COLUMNS)} columns)")
            embedded = "images" in pf.schema_arrow.names
            for g in range(pf.metadata.num_row_groups):
                try:
                    rows = pf.read_row_group(g).to_pylist()
                except (OSError, pa.ArrowException) as e:
                    raise SampleError(f"{path}: row group {g} could not be read ({one_line(e)})") from e
                for row in rows:
                    yield _embedded(row) if embedded else _resolved(row, lookup)


def _sample(row: dict, rgb, depth, K, cam2world) -> Sample:
    n = len(row["view_ids"])
    return Sample(sample_id=row["sample_id"], dataset=row["dataset"], scene_id=row["scene_id"], shape=row["shape"],
                  view_ids=np.asarray(row["view_ids"], np.int32), parents=np.asarray(row["parents"], np.int32),
                  covis=np.asarray(row["covis"], np.float32).reshape(n, n), rgb=np.stack(rgb), depth=np.stack(depth),
                  K=np.asarray(K, np.float32).reshape(n, 3, 3),
                  cam2world=np.asarray(cam2world, np.float32).reshape(n, 4, 4))  # fmt: skip


def _resolved(row: dict, lookup: ViewsLookup) -> Sample:
    views = lookup.get(row["dataset"], row["scene_id"], row["views_sha256"])
    scene = f"{row['dataset']}/{row['scene_id']}"
    rows = [views.row(v, scene) for v in row["view_ids"]]
    rgb = [decode_rgb(views.image_bytes(r)) for r in rows]
    depth = [decode_depth(views.depth_bytes(r)) for r in rows]
    return _sample(row, rgb, depth, views.K[rows], views.cam2world[rows])


def _embedded(row: dict) -> Sample:
    rgb = [decode_rgb(image["bytes"]) for image in row["images"]]
    depth = [decode_depth(d["bytes"]) for d in row["depths"]]
    return _sample(row, rgb, depth, row["K"], row["cam2world"])
