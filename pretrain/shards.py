"""The shards as the loader sees them: files, footers, row groups; pairs and samples alike.

Two formats, read with pyarrow: pairs shards (``manifests.pairs``,
docs/design.md ``pairs/shard-NNNNN.parquet``: each row one pair, its two
views' bytes in ``image1``/``image2``), and samples shards
(``manifests.samples``: ``OUT/star5``, ``OUT/pair2``, ...: each row N views
of one scene, named by ``(dataset, scene_id, view_ids)`` and resolved through
the views files, or embedded in its ``images`` list).

:func:`find_shards` takes a folder (the shards its manifest lists, the
sibling ``<folder>.manifest.json``, or else its ``shard-*.parquet`` sorted by
name), a file, a glob pattern, or a list of files.
:meth:`ShardIndex.build` opens every footer (cheap: no data is read) and
checks that the file is Parquet and that ``image1`` and ``image2`` are
structs with binary ``bytes`` (``pair_id``, when present, a string), or, in
a samples shard (:func:`manifests.samples.is_samples_schema`), the reference
columns and, embedded, ``images``; the row counts of the row groups are all
the plan (:mod:`pretrain.plan`) needs.
:func:`read_group` reads one row group's image bytes and pair ids. A shard
that fails, then or when one of its row groups is read, raises
:class:`ShardError` naming the file and the problem.

Samples
-------
A samples row gives the loader one pair, so a samples folder trains as a
pairs folder of as many pairs as it has samples, with the same plan, workers
and resume. Which pair, the same rule for every shape: view ``k`` and its
parent (``parents[k]``) with ``k`` drawn uniformly from ``1 .. N-1`` by a
counter-based hash of ``(seed, epoch, canonical index)``
(:func:`pick_views`); the parent is view 1, CroCo's masked target, view
``k`` the context. A star thus gives its reference and one other view, as
DUSt3R pairs its views, a chain or tree a view and its parent, and a pair
(``OUT/pair2``) its view 1 and view 2, exactly the pair and order of the
pairs shards. The pair depends on nothing but the seed, the epoch and the
sample's place, so a resumed epoch draws the same pairs; each epoch draws
anew (a star of 5 views gives each of its 4 pairs in a quarter of the
epochs, on average). The batch's ``pair_id`` names the pair as
the pairs shards do, ``<dataset>/<scene_id>/<view1>-<view2>``.

Embedded rows (``--embed``) give their views' bytes from ``images``;
referenced rows through :class:`manifests.samples.ViewsLookup`, which opens
a scene's views file once, checked against the row's ``views_sha256``, and
keeps the last ``keep`` scenes (:class:`SampleViews`, one a process: their
image bytes only, ``keep`` x a scene's encoded images: with the default 32,
41 MiB for 200 views of 128 px a scene, 325 MiB for 500 views of 256 px,
per DataLoader worker). A row
group's rows are resolved scene by scene, so each views file is opened at
most once a row group. The views folder is the samples folder's sibling
``views/`` (the pipeline's ``OUT`` layout) unless given; a views file that
is missing, changed since the samples were drawn, or lacks a view raises
:class:`ShardError` naming the shard, row, sample, views file, scene and view.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.io import OutputError, check_parquet, one_line, read_json, write_json_atomic
from manifests.manifest import ManifestError, PairsManifest, SamplesManifest
from manifests.pairs import ID_COLUMN, IMAGE_COLUMNS, SHARD_GLOB, SIZE_COLUMNS
from manifests.samples import ResolvedViews, SampleError, ViewsLookup, is_samples_schema
from manifests.views import first_null_row
from pretrain.augment import sample_uniforms
from manifests.store import local, ranged

__all__ = ["VIEWS_KEEP", "RowGroup", "SampleViews", "ShardError", "ShardIndex", "find_shards", "folder_manifest",
           "pick_views", "read_group", "verify_shards"]

log = logging.getLogger(__name__)

VIEWS_KEEP = 32  # scenes whose views (image bytes) a process keeps for referenced samples
PICK_SALT = 0x9A1B  # keys the pair drawn from a sample apart from every seed (seeds are below 2**32)


class ShardError(ValueError):
    """A shard that cannot be read, does not follow the pairs or samples schema, or names views that cannot be
    resolved; the message names the file (and row, sample, views file, scene, view).

    Raised in a DataLoader worker, it reaches the trainer as torch rebuilds
    it, ``ShardError("Caught ShardError in DataLoader worker process N.\n
    Original Traceback ...\npretrain.shards.ShardError: <message>")``: the
    message is taken back out of that, so the command line still prints one
    line naming the file, not the worker's traceback.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message)
        marker = f"\n{ShardError.__module__}.{ShardError.__qualname__}: "
        if text.startswith(f"Caught {ShardError.__qualname__} in DataLoader worker") and marker in text:
            text = text.rpartition(marker)[2].strip()
        super().__init__(text)


def find_shards(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The shard files of ``path``.

    Parameters
    ----------
    path
        A folder: the shards its manifest lists (``<folder>.manifest.json``
        beside it, or pairgen 0.1's ``<folder>/manifest.json``; each shard
        must exist), or without a manifest its ``shard-*.parquet`` sorted by
        name. A single ``.parquet`` file. A glob pattern
        (``data/pairgen/pairs/shard-*.parquet``, matches sorted by name), or
        several files or patterns separated by commas. Or a list of files,
        kept in the given order.

    Raises
    ------
    ValueError
        Nothing there, no shard in it, a listed shard missing, an unreadable
        manifest; the message names the path.
    """
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        if not files:
            raise ValueError("no shard files given")
        for f in files:
            if not f.is_file():
                raise ValueError(f"{f}: shard file not found")
        return files
    text = str(path)
    if not Path(text).exists() and ("," in text or glob.has_magic(text)):
        files = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
            if not matches:
                raise ValueError(f"{part}: no shard file matches")
            files.extend(matches)
        return find_shards(files)
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path}: no such shard folder or file")
    if PairsManifest.exists(path):
        kind = _manifest_class(path).KIND
        try:
            manifest = folder_manifest(path)
            files = []
            for entry, file in manifest.shard_paths():  # resolved inside the folder: manifests are data
                if not file.is_file():
                    raise ValueError(f"{manifest.path}: lists {entry['file']}, which is missing from {path}")
                files.append(path / entry["file"])
        except ManifestError as e:
            raise ValueError(f"not a readable {kind} manifest: {e}") from None
        if not files:
            incomplete = (" (marked incomplete: its `pairgen filter` was interrupted; run it again)"
                          if manifest.body.get("complete") is False else "")  # fmt: skip
            raise ValueError(f"{manifest.path}: lists no shard{incomplete}")
        return files
    files = sorted(path.glob(SHARD_GLOB))
    if not files:
        raise ValueError(f"{path}: no {SHARD_GLOB} files (and no {PairsManifest.path_in(path).name} beside it)")
    return files


def _manifest_class(folder: Path) -> type[PairsManifest]:
    """The manifest class of a data folder: samples for a ``pairgen-samples-manifest``, else pairs."""
    found = PairsManifest.find(folder)
    try:
        fmt = read_json(found).get("format") if found is not None else None
    except (OutputError, AttributeError):
        fmt = None  # unreadable: the pairs reader says why
    samples = SamplesManifest.format_name().rpartition("/")[0] + "/"
    return SamplesManifest if str(fmt).startswith(samples) else PairsManifest


def folder_manifest(folder: str | Path) -> PairsManifest:
    """The manifest of a pairs or samples folder (a :class:`SamplesManifest` is a :class:`PairsManifest`).

    Raises
    ------
    ManifestError
        None there, not readable, or of another kind.
    """
    return _manifest_class(Path(folder)).read(folder)


@dataclass(frozen=True)
class ShardIndex:
    """The row groups of a list of shards, from their footers.

    ``group_file[g]``, ``group_index[g]``, ``group_rows[g]`` and
    ``group_start[g]`` (canonical index of the group's first row) describe the
    ``g``-th row group in canonical order (shards in order, then row groups).
    Per file, ``kinds`` says what it is: ``"pairs"``, or samples,
    ``"embedded"`` (``images_paths``: the Parquet path of their image bytes)
    or ``"referenced"`` (``views_dirs``: the views folder their rows name).
    """

    files: tuple[Path, ...]
    has_ids: tuple[bool, ...]  # per file: a pair_id column to read
    group_file: np.ndarray  # (G,) int64
    group_index: np.ndarray  # (G,) int64, row group within its file
    group_rows: np.ndarray  # (G,) int64
    group_start: np.ndarray  # (G,) int64
    min_sizes: tuple[tuple[int, int] | None, ...]  # per file: smallest (width, height) in the footer statistics
    kinds: tuple[str, ...] = ()  # per file: "pairs", "embedded" or "referenced" (samples); empty: all pairs
    images_paths: tuple[str | None, ...] = ()  # per file: embedded samples' image bytes column path
    views_dirs: tuple[Path | None, ...] = ()  # per file: the views folder of referenced samples

    @property
    def pairs(self) -> int:
        return int(self.group_rows.sum())

    def kind(self, file: int) -> str:
        """``"pairs"``, ``"embedded"`` or ``"referenced"``: what shard ``file`` holds."""
        return self.kinds[file] if self.kinds else "pairs"

    @classmethod
    def build(cls, files: Sequence[Path], views: str | Path | None = None) -> ShardIndex:
        """Check every footer and schema (reads no data).

        ``views`` is the views folder that referenced samples name (None: each
        samples folder's sibling ``views/``, the ``OUT`` layout).

        Raises
        ------
        ShardError
            A file that is not Parquet (or is truncated: the footer is at
            the end), whose image columns (pairs) or reference columns
            (samples) are missing or of another type, or referenced samples
            without their views folder.
        """
        has_ids, sizes, gf, gi, gr, kinds, images, dirs = [], [], [], [], [], [], [], []
        for k, path in enumerate(files):
            try:
                with pq.ParquetFile(ranged(path)) as pf:  # the footer only: a store's shard is not fetched for it
                    schema, meta = pf.schema_arrow, pf.metadata
            except (OSError, pa.ArrowException) as e:
                raise ShardError(f"{path}: not a readable Parquet file ({one_line(e)})") from e
            if is_samples_schema(schema):
                kind, image_path, folder = _samples_shard(Path(path), schema, meta, views)
                ids = True
            else:
                for name in IMAGE_COLUMNS:
                    problem = _image_column_problem(schema, name)
                    if problem:
                        raise ShardError(f"{path}: {problem}; not a pairs shard")
                ids = ID_COLUMN in schema.names
                if ids and not (pa.types.is_string(t := schema.field(ID_COLUMN).type) or pa.types.is_large_string(t)):
                    raise ShardError(f"{path}: column {ID_COLUMN!r} is {t}, expected string")
                kind, image_path, folder = "pairs", None, None
            kinds.append(kind)
            images.append(image_path)
            dirs.append(folder)
            has_ids.append(ids)
            sizes.append(_footer_min(meta, SIZE_COLUMNS))
            for g in range(meta.num_row_groups):
                gf.append(k)
                gi.append(g)
                gr.append(meta.row_group(g).num_rows)
        rows = np.asarray(gr, np.int64)
        return cls(
            files=tuple(Path(f) for f in files),
            has_ids=tuple(has_ids),
            group_file=np.asarray(gf, np.int64),
            group_index=np.asarray(gi, np.int64),
            group_rows=rows,
            group_start=np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64) if len(rows) else rows,
            min_sizes=tuple(sizes),
            kinds=tuple(kinds),
            images_paths=tuple(images),
            views_dirs=tuple(dirs),
        )

    def locate(self, canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row group, row within it) of each canonical index."""
        g = np.searchsorted(self.group_start, canonical, side="right") - 1
        return g, canonical - self.group_start[g]

    def where(self, g: int, r: int) -> str:
        """Row ``r`` of row group ``g``, for messages: file, row group within it, row."""
        return f"{self.files[self.group_file[g]]}: row group {self.group_index[g]}, row {r}"


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_int_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)


def _samples_shard(path: Path, schema: pa.Schema, meta: pq.FileMetaData,
                   views: str | Path | None) -> tuple[str, str | None, Path | None]:  # fmt: skip
    """(kind, image bytes path, views folder) of a samples shard, after checking the columns the loader reads."""
    needed = [(name, _is_string, "string") for name in ("dataset", "scene_id", "sample_id", "views_sha256")]
    needed += [(name, _is_int_list, "list<int32>") for name in ("view_ids", "parents")]
    for name, ok, expected in needed:
        if name not in schema.names:
            raise ShardError(f"{path}: column {name!r} is missing; not a samples shard")
        if not ok(t := schema.field(name).type):
            raise ShardError(f"{path}: column {name!r} is {t}, expected {expected}; not a samples shard")
    if "images" in schema.names:
        t = schema.field("images").type
        item = t.value_type if (pa.types.is_list(t) or pa.types.is_large_list(t)) else None
        if item is None or not pa.types.is_struct(item) or item.get_field_index("bytes") < 0 or not (
            pa.types.is_binary(b := item.field("bytes").type) or pa.types.is_large_binary(b)
        ):
            raise ShardError(f"{path}: column 'images' is {t}, expected list<struct<bytes: binary, path: string>>")
        found = [p for p in (meta.schema.column(i).path for i in range(meta.num_columns))
                 if p.startswith("images.") and p.endswith(".bytes")]  # fmt: skip
        return "embedded", found[0], None
    folder = Path(views) if views is not None else path.parent.parent / "views"
    if not folder.is_dir():
        raise ShardError(f"{path}: its samples name their views, in views files under {folder}, which is not a "
                         "folder; give the views folder they were drawn from (pretrain run --views)")  # fmt: skip
    return "referenced", None, folder


def _image_column_problem(schema: pa.Schema, name: str) -> str | None:
    if name not in schema.names:
        return f"column {name!r} is missing"
    t = schema.field(name).type
    if not pa.types.is_struct(t) or t.get_field_index("bytes") < 0:
        return f"column {name!r} is {t}, expected struct<bytes: binary, path: string>"
    b = t.field("bytes").type
    if not (pa.types.is_binary(b) or pa.types.is_large_binary(b)):
        return f"column {name!r}.bytes is {b}, expected binary"
    return None


def _footer_min(meta: pq.FileMetaData, names: tuple[str, ...]) -> tuple[int, ...] | None:
    """Minimum of each integer column over the file, from the row group statistics; None if any is unknown."""
    if meta.num_row_groups == 0:
        return None
    where = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    if not all(n in where for n in names):
        return None
    mins = []
    for n in names:
        values = []
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(where[n]).statistics
            if st is None or not st.has_min_max or not isinstance(st.min, int):
                return None
            values.append(st.min)
        mins.append(min(values))
    return tuple(mins)


@dataclass
class RowGroup:
    """One row group's image bytes and pair ids (pairs: the Arrow buffers as numpy, no copy; samples: the bytes of
    each sample's two drawn views, gathered)."""

    data: tuple[np.ndarray, np.ndarray]  # per view: all the JPEG bytes end to end
    offsets: tuple[np.ndarray, np.ndarray]  # per view: (rows + 1,) offsets into data
    ids: list[str]

    def image(self, view: int, row: int) -> np.ndarray:
        o = self.offsets[view]
        return self.data[view][o[row] : o[row + 1]]


class SampleViews:
    """The views files that referenced samples name, for one process: one :class:`ViewsLookup` a views folder.

    Each keeps the image bytes (no depth) of the last ``keep`` scenes it
    opened, each file checked against the samples' ``views_sha256`` when it
    is opened. Not shared between processes: a DataLoader worker makes its
    own (:class:`pretrain.data.PairStream` leaves it out of the copy it sends).
    """

    def __init__(self, keep: int = VIEWS_KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 scene, got {keep}")
        self.keep = int(keep)
        self.lookups: dict[Path, ViewsLookup] = {}

    def lookup(self, folder: Path) -> ViewsLookup:
        if folder not in self.lookups:
            self.lookups[folder] = ViewsLookup(folder, keep=self.keep, columns=("image",))
        return self.lookups[folder]

    @property
    def reads(self) -> int:
        """Views files opened so far (each hashed and read)."""
        return sum(lookup.reads for lookup in self.lookups.values())


def pick_views(views: np.ndarray, seed: int, epoch: int, canonical: np.ndarray) -> np.ndarray:
    """The view each sample pairs with its parent: position ``k`` in ``1 .. N-1`` (the module docstring).

    ``views`` holds each sample's N (at least 2), ``canonical`` its canonical
    index; ``k = 1 + floor(u (N - 1))``, ``u`` uniform from ``(seed, epoch,
    canonical index)`` alone (:func:`pretrain.augment.sample_uniforms`, keyed
    apart from the augmentation's numbers). A pair (N = 2) always gives 1.
    """
    u = sample_uniforms(seed + (PICK_SALT << 32), epoch, np.asarray(canonical, np.int64), 1)[:, 0]
    n = np.asarray(views, np.int64)
    return 1 + np.minimum((u * (n - 1)).astype(np.int64), n - 2)


def read_group(index: ShardIndex, g: int, *, views_cache: SampleViews | None = None, seed: int = 0,
               epoch: int = 0) -> RowGroup:  # fmt: skip
    """Row group ``g`` (canonical order) of ``index``: its images' bytes and pair ids.

    Pair ids are ``file name#canonical index`` in pairs shards without a
    pair_id column. A samples row group gives each sample's pair of the
    epoch (:func:`pick_views` with ``seed`` and ``epoch``); referenced
    samples are resolved through ``views_cache`` (None: a
    :class:`SampleViews` for this call only).

    Raises
    ------
    ShardError
        The row group cannot be read, holds another number of rows than its
        footer said, or has a row without image bytes; a sample's views file
        is missing, changed since, or lacks a view it names.
    """
    if index.kind(int(index.group_file[g])) != "pairs":
        return _read_samples(index, g, views_cache if views_cache is not None else SampleViews(), seed, epoch)
    path, rg = index.files[index.group_file[g]], int(index.group_index[g])
    ids = index.has_ids[index.group_file[g]]
    columns = [f"{c}.bytes" for c in IMAGE_COLUMNS] + ([ID_COLUMN] if ids else [])
    table = _read(path, rg, columns, int(index.group_rows[g]))
    data, offsets = [], []
    for name in IMAGE_COLUMNS:
        arr = pc.struct_field(table.column(name).combine_chunks(), "bytes")
        if arr.null_count:
            raise ShardError(f"{path}: row group {rg}, row {first_null_row(arr)}: {name} has no image bytes")
        o, d = _binary_buffers(arr)
        offsets.append(o)
        data.append(d)
    if ids:
        pair_ids = table.column(ID_COLUMN).to_pylist()
    else:
        start = int(index.group_start[g])
        pair_ids = [f"{path.name}#{start + r}" for r in range(table.num_rows)]
    return RowGroup(tuple(data), tuple(offsets), pair_ids)


def _read(path: Path, rg: int, columns: list[str], expected: int) -> pa.Table:
    try:
        with pq.ParquetFile(local(path)) as pf:
            table = pf.read_row_group(rg, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{path}: row group {rg} could not be read ({one_line(e)})") from e  # one line
    if table.num_rows != expected:
        raise ShardError(f"{path}: row group {rg} holds {table.num_rows} rows, its footer said {expected}")
    return table


def _binary_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a binary array as numpy views of its Arrow buffers (no copy)."""
    _, off_buf, data_buf = arr.buffers()
    kind = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(off_buf, kind)[arr.offset : arr.offset + len(arr) + 1]
    return offsets, np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)


def _list_values(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(offsets, values) of an integer list column as numpy, and the column (for its nulls)."""
    arr = table.column(name).combine_chunks()
    offsets = arr.offsets.to_numpy().astype(np.int64)
    return offsets, arr.values.to_numpy(zero_copy_only=False).astype(np.int64), arr


def _read_samples(index: ShardIndex, g: int, views: SampleViews, seed: int, epoch: int) -> RowGroup:
    """A samples row group as pairs: each sample's pair of the epoch, its two views' bytes resolved."""
    k = int(index.group_file[g])
    path, rg, kind = index.files[k], int(index.group_index[g]), index.kind(k)
    columns = ["sample_id", "dataset", "scene_id", "view_ids", "parents"]
    columns += [index.images_paths[k]] if kind == "embedded" else ["views_sha256"]
    table = _read(path, rg, columns, int(index.group_rows[g]))
    sample_ids = table.column("sample_id").to_pylist()
    datasets, scenes = table.column("dataset").to_pylist(), table.column("scene_id").to_pylist()

    pair: list[np.ndarray] = []  # view ids of view 1 and view 2, per row, once drawn

    def fail(r: int, problem: str) -> ShardError:
        named = f", its pair's views {pair[0][r]} and {pair[1][r]}" if pair else ""
        return ShardError(f"{path}: row group {rg}, row {r} (sample {sample_ids[r]!r}{named}): {problem}")

    v_off, v_ids, v_arr = _list_values(table, "view_ids")
    p_off, p_val, p_arr = _list_values(table, "parents")
    n = np.diff(v_off)
    for name, arr in (("view_ids", v_arr), ("parents", p_arr)):
        if arr.null_count:
            raise fail(first_null_row(arr), f"no {name}")
    for r in np.flatnonzero((n < 2) | (np.diff(p_off) != n)).tolist():
        raise fail(r, f"{n[r]} view ids and {p_off[r + 1] - p_off[r]} parents; a sample has 2 views or more, "
                   "a parent each")  # fmt: skip
    canonical = int(index.group_start[g]) + np.arange(len(n), dtype=np.int64)
    second = pick_views(n, seed, epoch, canonical)  # position of view 2 in each sample, its parent is view 1
    first = p_val[p_off[:-1] + second]
    for r in np.flatnonzero((first < 0) | (first >= n) | (first == second)).tolist():
        raise fail(r, f"view {second[r] + 1} has parent {first[r]}, not another view's position 0..{n[r] - 1}")
    positions = (first, second)
    pair += [v_ids[v_off[:-1] + p] for p in positions]
    ids = [f"{d}/{s}/{a:06d}-{b:06d}" for d, s, a, b in zip(datasets, scenes, pair[0].tolist(), pair[1].tolist())]
    if kind == "embedded":
        images = table.column("images").combine_chunks()
        i_off = images.offsets.to_numpy().astype(np.int64)
        for r in np.flatnonzero(np.diff(i_off) != n).tolist():
            raise fail(r, f"{i_off[r + 1] - i_off[r]} images for {n[r]} view ids")
        flat = pc.struct_field(images.values, "bytes")
        arrays = [flat.take(pa.array(i_off[:-1] + p)) for p in positions]
    else:
        arrays = _resolve(table, views.lookup(index.views_dirs[k]), datasets, scenes, pair, fail)
    data, offsets = [], []
    for view, arr in enumerate(arrays):
        if arr.null_count:
            r = first_null_row(arr)
            raise fail(r, f"view {pair[view][r]} has no image bytes")
        o, d = _binary_buffers(arr)
        offsets.append(o)
        data.append(d)
    return RowGroup(tuple(data), tuple(offsets), ids)


def _resolve(table: pa.Table, lookup: ViewsLookup, datasets: list[str], scenes: list[str], pair: list[np.ndarray],
             fail) -> list[pa.Array]:  # fmt: skip
    """Both views' image bytes of every row through the views files, each opened once (scene by scene)."""
    digests = table.column("views_sha256").to_pylist()
    by_scene: dict[tuple[str, str, str], list[int]] = {}
    for r, key in enumerate(zip(datasets, scenes, digests)):
        by_scene.setdefault(key, []).append(r)
    parts: list[list[pa.Array]] = [[], []]
    order: list[int] = []
    for (dataset, scene, digest), rows in by_scene.items():
        try:
            resolved: ResolvedViews = lookup.get(dataset, scene, digest)
        except SampleError as e:
            raise fail(rows[0], str(e)) from None
        for view in (0, 1):
            at = []
            for r in rows:
                try:
                    at.append(resolved.row(int(pair[view][r]), f"{dataset}/{scene}"))
                except SampleError as e:
                    raise fail(r, str(e)) from None
            parts[view].append(resolved.image.take(pa.array(at, pa.int64())))
        order += rows
    back = pa.array(np.argsort(np.asarray(order, np.int64), kind="stable"))
    arrays = []
    for chunks in parts:
        if len({c.type for c in chunks}) > 1:
            chunks = [c.cast(pa.large_binary()) for c in chunks]
        arrays.append(pa.concat_arrays(chunks).take(back) if chunks else pa.array([], pa.binary()))
    return arrays


def verify_shards(path: str | Path | Sequence[str | Path], record: Path | None = None) -> int:
    """Check the shards of ``path`` once a run; return how many were hashed against a manifest's SHA-256.

    A folder with its manifest beside it: each shard's SHA-256 against the
    manifest's (which covers every byte, the footer's checksums too). A
    folder without one (copied without ``<folder>.manifest.json``), a file,
    a glob or a list of files, and a listed shard without a recorded
    SHA-256: each shard against the checksums in its own footer
    (:func:`manifests.io.check_parquet`: every row group's values, column by
    column). Shards that carry neither are trained on as they are, and one
    warning says how many. ``record`` (a JSON file in the run folder)
    remembers the shards already verified, by name, checksum, size and
    modification time, so a resumed run does not check them again.

    Raises
    ------
    ShardError
        A shard whose bytes differ from the manifest's checksum, or whose
        values differ from its own checksums (altered or truncated after
        the filter wrote it); the message names it (and the row group and
        column). (A referenced sample's views file is checked against its
        ``views_sha256`` when the loader opens it.)
    """
    manifest = None
    if not isinstance(path, (list, tuple)) and Path(path).is_dir() and PairsManifest.exists(path):
        manifest = folder_manifest(path)
        shards = [(file, entry.get("sha256")) for entry, file in manifest.shard_paths()]
    else:
        shards = [(file, None) for file in find_shards(path)]
    seen: dict = {}
    if record is not None and record.is_file():
        try:
            seen = json.loads(local(record).read_text())
        except (OSError, ValueError):
            seen = {}
    hashed = checked = 0
    unverified: list[Path] = []
    for file, recorded in shards:
        if manifest is not None and not file.is_file():
            raise ShardError(f"{Path(path) / manifest.missing_shard(file.name)}")
        stat = file.stat()
        key = f"{file.name}:{recorded or 'checksums'}:{stat.st_size}:{stat.st_mtime_ns}"
        if seen.get(str(file)) == key:
            continue
        if recorded:
            problem = manifest.verify_shard({"sha256": recorded}, file)
            if problem:
                raise ShardError(f"{Path(path) / problem}; run `pairgen filter` again to rewrite it, or pass --no-verify")
            hashed += 1
        else:
            try:
                carried = check_parquet(file)
            except OutputError as e:
                raise ShardError(f"{e}; copy or write it again, or pass --no-verify") from None
            if not carried:
                unverified.append(file)
                continue
            checked += 1
        seen[str(file)] = key
    if checked:
        log.info("verified %d shard(s) against the checksums in their footers", checked)
    if unverified:
        log.warning("%d shard(s) cannot be verified: no manifest beside them and no checksums inside (written before "
                    "shards carried them), e.g. %s; training on them as they are", len(unverified), unverified[0])  # fmt: skip
    if record is not None and (hashed or checked):
        write_json_atomic(record, seen)
    return hashed
