"""The pairs shards as the loader sees them: files, footers, row groups.

The format is ``manifests.pairs``' (docs/design.md, ``pairs/shard-NNNNN.parquet``),
read with pyarrow.

:func:`find_shards` takes a folder (the shards its manifest lists, the
sibling ``<folder>.manifest.json``, or else its ``shard-*.parquet`` sorted by
name), a file, a glob pattern, or a list of files.
:meth:`ShardIndex.build` opens every footer (cheap: no data is read) and
checks that the file is Parquet and that ``image1`` and ``image2`` are
structs with binary ``bytes`` (``pair_id``, when present, a string); the row
counts of the row groups are all the plan (:mod:`pretrain.plan`) needs.
:func:`read_group` reads one row group's image bytes and pair ids. A shard
that fails, then or when one of its row groups is read, raises
:class:`ShardError` naming the file and the problem.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.io import write_json_atomic
from manifests.manifest import ManifestError, PairsManifest
from manifests.pairs import ID_COLUMN, IMAGE_COLUMNS, SHARD_GLOB, SIZE_COLUMNS

__all__ = ["RowGroup", "ShardError", "ShardIndex", "find_shards", "read_group", "verify_shards"]


class ShardError(ValueError):
    """A shard that cannot be read, or does not follow the pairs schema; the message names the file."""


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
        try:
            manifest = PairsManifest.read(path)
            files = []
            for entry, file in manifest.shard_paths():  # resolved inside the folder: manifests are data
                if not file.is_file():
                    raise ValueError(f"{manifest.path}: lists {entry['file']}, which is missing from {path}")
                files.append(path / entry["file"])
        except ManifestError as e:
            raise ValueError(f"not a readable pairs manifest: {e}") from None
        if not files:
            raise ValueError(f"{manifest.path}: lists no shard")
        return files
    files = sorted(path.glob(SHARD_GLOB))
    if not files:
        raise ValueError(f"{path}: no {SHARD_GLOB} files (and no {PairsManifest.path_in(path).name} beside it)")
    return files


@dataclass(frozen=True)
class ShardIndex:
    """The row groups of a list of shards, from their footers.

    ``group_file[g]``, ``group_index[g]``, ``group_rows[g]`` and
    ``group_start[g]`` (canonical index of the group's first row) describe the
    ``g``-th row group in canonical order (shards in order, then row groups).
    """

    files: tuple[Path, ...]
    has_ids: tuple[bool, ...]  # per file: a pair_id column to read
    group_file: np.ndarray  # (G,) int64
    group_index: np.ndarray  # (G,) int64, row group within its file
    group_rows: np.ndarray  # (G,) int64
    group_start: np.ndarray  # (G,) int64
    min_sizes: tuple[tuple[int, int] | None, ...]  # per file: smallest (width, height) in the footer statistics

    @property
    def pairs(self) -> int:
        return int(self.group_rows.sum())

    @classmethod
    def build(cls, files: Sequence[Path]) -> ShardIndex:
        """Check every footer and schema (reads no data).

        Raises
        ------
        ShardError
            A file that is not Parquet (or is truncated: the footer is at
            the end), or whose image columns are missing or of another type.
        """
        has_ids, sizes, gf, gi, gr = [], [], [], [], []
        for k, path in enumerate(files):
            try:
                with pq.ParquetFile(path) as pf:
                    schema, meta = pf.schema_arrow, pf.metadata
            except (OSError, pa.ArrowException) as e:
                raise ShardError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})") from e
            for name in IMAGE_COLUMNS:
                problem = _image_column_problem(schema, name)
                if problem:
                    raise ShardError(f"{path}: {problem}; not a pairs shard")
            ids = ID_COLUMN in schema.names
            if ids and not (pa.types.is_string(t := schema.field(ID_COLUMN).type) or pa.types.is_large_string(t)):
                raise ShardError(f"{path}: column {ID_COLUMN!r} is {t}, expected string")
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
        )

    def locate(self, canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row group, row within it) of each canonical index."""
        g = np.searchsorted(self.group_start, canonical, side="right") - 1
        return g, canonical - self.group_start[g]

    def where(self, g: int, r: int) -> str:
        """Row ``r`` of row group ``g``, for messages: file, row group within it, row."""
        return f"{self.files[self.group_file[g]]}: row group {self.group_index[g]}, row {r}"


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
    """One row group's image bytes (Arrow buffers as numpy, no copy) and pair ids."""

    data: tuple[np.ndarray, np.ndarray]  # per view: all the JPEG bytes end to end
    offsets: tuple[np.ndarray, np.ndarray]  # per view: (rows + 1,) offsets into data
    ids: list[str]

    def image(self, view: int, row: int) -> np.ndarray:
        o = self.offsets[view]
        return self.data[view][o[row] : o[row + 1]]


def read_group(index: ShardIndex, g: int) -> RowGroup:
    """Row group ``g`` (canonical order) of ``index``: its images' bytes and pair ids.

    Pair ids are ``file name#canonical index`` in shards without a pair_id column.

    Raises
    ------
    ShardError
        The row group cannot be read, holds another number of rows than its
        footer said, or has a row without image bytes.
    """
    path, rg = index.files[index.group_file[g]], int(index.group_index[g])
    ids = index.has_ids[index.group_file[g]]
    columns = [f"{c}.bytes" for c in IMAGE_COLUMNS] + ([ID_COLUMN] if ids else [])
    try:
        with pq.ParquetFile(path) as pf:
            table = pf.read_row_group(rg, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise ShardError(f"{path}: row group {rg} could not be read ({' '.join(str(e).split())})") from e  # one line
    expected = int(index.group_rows[g])
    if table.num_rows != expected:
        raise ShardError(f"{path}: row group {rg} holds {table.num_rows} rows, its footer said {expected}")
    data, offsets = [], []
    for name in IMAGE_COLUMNS:
        arr = pc.struct_field(table.column(name).combine_chunks(), "bytes")
        if arr.null_count:
            row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise ShardError(f"{path}: row group {rg}, row {row}: {name} has no image bytes")
        _, off_buf, data_buf = arr.buffers()
        kind = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
        offsets.append(np.frombuffer(off_buf, kind)[arr.offset : arr.offset + len(arr) + 1])
        data.append(np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8))
    if ids:
        pair_ids = table.column(ID_COLUMN).to_pylist()
    else:
        start = int(index.group_start[g])
        pair_ids = [f"{path.name}#{start + r}" for r in range(expected)]
    return RowGroup(tuple(data), tuple(offsets), pair_ids)


def verify_shards(path: str | Path | Sequence[str | Path], record: Path | None = None) -> int:
    """Check the shards of a pairs folder against its manifest's SHA-256; return how many were hashed.

    Only a folder with a manifest has recorded checksums (a list of files or
    a single shard is taken as it is). ``record`` (a JSON file in the run
    folder) remembers the shards already verified, by name, checksum, size
    and modification time, so a resumed run does not hash them again.

    Raises
    ------
    ShardError
        A shard whose bytes differ from the manifest's checksum (altered or
        truncated after the filter wrote it); the message names it.
    """
    if isinstance(path, (list, tuple)) or not Path(path).is_dir() or not PairsManifest.exists(path):
        return 0
    manifest = PairsManifest.read(path)
    seen: dict = {}
    if record is not None and record.is_file():
        try:
            seen = json.loads(record.read_text())
        except (OSError, ValueError):
            seen = {}
    hashed = 0
    for entry, file in manifest.shard_paths():
        recorded = entry.get("sha256")
        if not recorded:
            continue
        stat = file.stat()
        key = f"{file.name}:{recorded}:{stat.st_size}:{stat.st_mtime_ns}"
        if seen.get(str(file)) == key:
            continue
        problem = manifest.verify_shard(entry, file)
        if problem:
            raise ShardError(f"{Path(path) / problem}; run `pairgen filter` again to rewrite it, or pass --no-verify")
        seen[str(file)] = key
        hashed += 1
    if record is not None and hashed:
        write_json_atomic(record, seen)
    return hashed
