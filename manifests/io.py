"""Files that appear under their final name only when complete.

Every output of the pipeline goes through here: written to a temporary name in
the destination folder, flushed and fsynced, renamed over the final name
(atomic on POSIX file systems), then the folder is fsynced so the rename
itself survives a crash. A reader therefore sees either the old complete file
or the new complete one, never a truncated one; a crash leaves at most a
``.tmp-<host>-<pid>-*`` file. Files bound for a data folder (which must hold
Parquet only: ``manifests.layout``) pass ``tmp_dir``, a folder on the same file
system, so that even a crash's leftover stays out of it. :func:`remove_stale_temporaries` clears those of
processes that are gone (on this host: the PID no longer runs; from another
host: older than a day), never another live run's.

A Parquet file written with ``checksums=True`` (every shard) carries in its
footer a CRC-32 of each row group's values, column by column
(:func:`parquet_checksums`), so it can be checked with nothing beside it
(:func:`check_parquet`; docs/design.md "What is verified on read").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from isal import isal_zlib

__all__ = [
    "CHECKSUMS_KEY",
    "DiskFull",
    "OutputError",
    "atomic_path",
    "check_parquet",
    "copy_atomic",
    "one_line",
    "output_error",
    "path_inside",
    "read_json",
    "read_parquet_checked",
    "remove_stale_temporaries",
    "resolve_inside",
    "write_json_atomic",
    "write_parquet_atomic",
]

TMP_PREFIX = ".tmp-"
STALE_FOREIGN_S = 86_400.0  # a temporary of another host is stale after a day (its process cannot be asked)
CHECKSUMS_KEY = "pairgen.checksums"  # footer key: CRC-32 of each row group's values, column by column
CHECKSUMS_FORMAT = "pairgen-checksums/1"


def _tmp_prefix(name: str) -> str:
    """``.tmp-<host>-<pid>-<name>.``: whose temporary it is, so no run removes another's."""
    return f"{TMP_PREFIX}{socket.gethostname().replace('-', '_')}-{os.getpid()}-{name}."


def _is_stale(tmp: Path) -> bool:
    parts = tmp.name[len(TMP_PREFIX):].split("-", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return True  # an older pairgen's, or not ours: no owner to wait for
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname().replace("-", "_"):
        try:
            return time.time() - tmp.stat().st_mtime > STALE_FOREIGN_S
        except OSError:
            return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class OutputError(OSError):
    """An output folder or file that cannot be written or read back."""


class DiskFull(OutputError):
    """A write that ran out of space or quota; the message names the file and the space left.

    Every writer goes through :func:`atomic_path`, so a full disk leaves
    nothing under a final name, and a rerun with space finishes the work.
    """


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NEARLY_FULL_BYTES = 1 << 20  # a writer's error without an errno (torch.save's) on a file system this close to full


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _is_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` (or what caused it) is a full disk or quota, writing into ``folder``."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, RuntimeError) or (isinstance(error, OSError) and error.errno is None):
        # some writers (torch.save) lose the errno on the way
        free = _free_bytes(folder)
        return free is not None and free < NEARLY_FULL_BYTES
    return False


def _mount_point(folder: Path) -> Path:
    """The folder where ``folder``'s file system is mounted (what ``df`` names)."""
    folder = folder.resolve()
    try:
        device = folder.stat().st_dev
        while folder.parent != folder and folder.parent.stat().st_dev == device:
            folder = folder.parent
    except OSError:
        pass
    return folder


def output_error(
    path: str | Path, error: BaseException, folder: str | Path | None = None, *, full: bool | None = None
) -> OutputError:
    """The one message for a write of ``path`` that failed with ``error``.

    A full disk or quota becomes :class:`DiskFull`, naming the file and the
    space left on its file system; any other ``OSError`` an :class:`OutputError` naming the folder
    that cannot be written. ``folder`` is where the bytes went (a
    temporary's folder), default ``path``'s. ``full``: whether the caller
    already knows it was a full disk (decided before the file was removed).
    """
    path = Path(path)
    folder = Path(folder) if folder is not None else path.parent
    if full if full is not None else _is_full(error, folder):
        free = _free_bytes(folder)
        left = f"{_size(free)} free" if free is not None else "free space unknown"
        return DiskFull(f"{path}: no space left on the device ({left} on {_mount_point(folder)} now); "
                        "free space, then run the command again: what was finished is kept")
    if isinstance(error, OutputError):
        return error
    return OutputError(f"{folder}: cannot write here ({getattr(error, 'strerror', None) or error})")


def one_line(error: BaseException) -> str:
    """An exception's message on one line (pyarrow's and botocore's span several)."""
    return " ".join(str(error).split())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | Path, tmp_dir: str | Path | None = None, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path; on success it becomes ``path``.

    The temporary lies in ``tmp_dir`` (created if needed) when given and on
    the same file system as ``path``'s folder (a rename across file systems
    is no rename), else beside ``path``. The caller writes the temporary file
    completely (and closes it); on a clean exit it is fsynced and renamed, on
    an exception it is removed. ``sync=False`` skips both fsyncs, for callers
    that write many small files and sync them together before recording them
    as done (``os.sync``): the rename still keeps a half-written file from
    appearing under the final name.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        where = path.parent
        if tmp_dir is not None:
            Path(tmp_dir).mkdir(parents=True, exist_ok=True)
            if _same_device(Path(tmp_dir), path.parent):
                where = Path(tmp_dir)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), dir=where)
    except OSError as e:
        raise output_error(path, e) from e
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide outputs from the user's group
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        from manifests import store  # (imports this module)

        store.publish(tmp, path)  # a folder standing for a store: the object first, whole, then the local name
        try:
            os.replace(tmp, path)
        except IsADirectoryError as e:
            raise OutputError(f"{path}: is a folder, where this file goes; move it away and run again") from e
        except OSError as e:
            if _is_full(e, tmp.parent):
                raise
            raise output_error(path, e, full=False) from e
    except BaseException as e:
        full = isinstance(e, Exception) and not isinstance(e, OutputError) and _is_full(e, tmp.parent)
        tmp.unlink(missing_ok=True)
        if full:
            raise output_error(path, e, tmp.parent, full=True) from e
        raise
    if sync:
        _fsync_dir(path.parent)


def copy_atomic(source: str | Path, path: str | Path) -> None:
    """Copy ``source`` to ``path`` atomically (a kill leaves the old file or none, never a truncated copy)."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def write_json_atomic(path: str | Path, obj, tmp_dir: str | Path | None = None) -> None:
    """Write ``obj`` as indented JSON, atomically (``tmp_dir``: as :func:`atomic_path`'s)."""
    with atomic_path(path, tmp_dir) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> dict:
    """Read a JSON object; a damaged file raises :class:`OutputError` naming it."""
    from manifests.store import local

    path = Path(path)
    try:
        obj = json.loads(local(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputError(f"{path}: cannot be read as JSON ({e})") from e
    if not isinstance(obj, dict):
        raise OutputError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def path_inside(folder: str | Path, relative: str) -> Path:
    """``folder/relative`` resolved, refused if it lies outside ``folder`` (manifests are data, not trusted paths).

    Raises
    ------
    OutputError
        The path escapes ``folder`` (``..``, an absolute path, a link out).
    """
    folder = Path(folder)
    target = resolve_inside(folder, relative)
    if target is None or target == folder.resolve():
        raise OutputError(f"manifest entry {relative!r} points outside {folder}")
    return target


def resolve_inside(folder: str | Path, relative: str | Path) -> Path | None:
    """``folder / relative`` with ``..`` and symlinks resolved, or None when that leaves ``folder``.

    The one containment rule of every path read from data (manifest entries,
    scene files and their references, CroCo metadata): lexical escapes and
    links out alike. An absolute ``relative`` is resolved as itself, so it is
    inside only if it leads into ``folder``; ``folder`` itself is inside. A
    path that cannot be resolved (a symlink loop, a NUL) is not inside either.
    """
    try:
        base = Path(folder).resolve()
        target = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL
        return None
    return target if target.is_relative_to(base) else None


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the ``.tmp-*`` leftovers of interrupted writes under ``folder``; return how many.

    Only those of processes that are gone: a live run's temporaries (another
    stage's, ``pairgen inspect``'s contact sheet) are left alone.
    """
    folder = Path(folder)
    count = 0
    if folder.is_dir():
        for tmp in folder.rglob(TMP_PREFIX + "*"):
            if tmp.is_file() and _is_stale(tmp):
                tmp.unlink(missing_ok=True)
                count += 1
    return count


def _leaf_paths(field: pa.Field, prefix: str = "") -> Iterator[tuple[str, pa.DataType]]:
    """Parquet column paths (``image.bytes``, ``K.list.element``) of an Arrow field."""
    name = prefix + field.name
    t = field.type
    if pa.types.is_struct(t):
        for child in t:
            yield from _leaf_paths(child, name + ".")
    elif pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        yield from _leaf_paths(pa.field("element", t.value_type), name + ".list.")
    else:
        yield name, t


def write_parquet_atomic(
    path: str | Path,
    table: pa.Table,
    *,
    metadata: dict[str, str] | None = None,
    row_group_size: int = 256,
    tmp_dir: str | Path | None = None,
    checksums: bool = False,
) -> None:
    """Write ``table`` to ``path`` atomically (``tmp_dir``: as :func:`atomic_path`'s).

    Binary columns (already-encoded images and depth) are stored uncompressed
    and without dictionary encoding; every other column uses zstd.
    ``metadata`` (str -> str, usually JSON) joins the schema's key-value
    metadata. ``checksums``: the footer also holds, under
    :data:`CHECKSUMS_KEY`, the CRC-32 of each row group's values column by
    column (:func:`parquet_checksums`), so the file can be verified without
    anything beside it (:func:`check_parquet`).
    """
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in (metadata or {}).items()})
    if checksums:
        merged[CHECKSUMS_KEY.encode()] = json.dumps(parquet_checksums(table, row_group_size)).encode()
    else:
        merged.pop(CHECKSUMS_KEY.encode(), None)  # a table read from a file that had them: they may not hold here
    if merged != dict(table.schema.metadata or {}):
        table = table.replace_schema_metadata(merged)
    leaves = [leaf for f in table.schema for leaf in _leaf_paths(f)]
    blob = {p for p, t in leaves if pa.types.is_binary(t) or pa.types.is_large_binary(t)}
    compression = {p: ("none" if p in blob else "zstd") for p, _ in leaves}
    with atomic_path(path, tmp_dir) as tmp:
        pq.write_table(
            table,
            tmp,
            compression=compression,
            use_dictionary=[p for p, _ in leaves if p not in blob],
            row_group_size=row_group_size,
            write_statistics=[p for p, _ in leaves if p not in blob],
        )


def read_parquet_checked(path: str | Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file that must carry ``schema``'s fields (extra fields are allowed).

    Raises
    ------
    OutputError
        The file cannot be read, or a field is missing or has another type;
        the message names the file and the field.
    """
    from manifests.store import local

    path = local(path)
    try:
        found = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"{path}: not a readable Parquet file ({e})") from e
    for field in schema:
        if field.name not in found.names:
            raise OutputError(f"{path}: column {field.name!r} is missing (expected {field.type})")
        got = found.field(field.name).type
        if not got.equals(field.type):
            raise OutputError(f"{path}: column {field.name!r} is {got}, expected {field.type}")
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"{path}: cannot be read ({e})") from e


def _crc_values(arr: pa.Array, crc: int) -> int:
    """``crc`` carried over ``arr``'s values: validity, lengths, bytes, children (not how they are encoded or sliced)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _crc_values(arr.dictionary_decode(), crc)
    if arr.null_count:
        crc = isal_zlib.crc32(arr.is_valid().to_numpy(zero_copy_only=False).tobytes(), crc)
    if pa.types.is_struct(t):
        for child in arr.flatten():  # the struct's own offset and nulls applied
            crc = _crc_values(child, crc)
        return crc
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return _crc_values(arr.flatten(), isal_zlib.crc32(lengths.tobytes(), crc))
    if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        arr = arr.drop_null() if arr.null_count else arr
        _, off_buf, data_buf = arr.buffers()
        kind = np.int64 if pa.types.is_large_binary(t) or pa.types.is_large_string(t) else np.int32
        offsets = np.frombuffer(off_buf, kind)[arr.offset : arr.offset + len(arr) + 1] if len(arr) else np.zeros(1, kind)
        crc = isal_zlib.crc32(np.diff(offsets).astype(np.int64).tobytes(), crc)
        if data_buf is None or offsets[-1] == offsets[0]:
            return crc
        return isal_zlib.crc32(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])], crc)
    return isal_zlib.crc32(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).tobytes(), crc)


def column_crc(column: pa.Array | pa.ChunkedArray) -> int:
    """CRC-32 (ISA-L's) of a column's values: equal for equal values however they are chunked, sliced or stored."""
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return _crc_values(column, 0)


def parquet_checksums(table: pa.Table, row_group_size: int) -> dict:
    """What :func:`write_parquet_atomic` puts under :data:`CHECKSUMS_KEY`: each row group's rows and column CRCs.

    ``{"format", "algorithm": "crc32", "columns": [top-level names],
    "rows": [rows per row group], "crc32": [[one per column] per row
    group]}``; row group ``g`` holds rows ``g * row_group_size`` onwards, as
    ``pyarrow.parquet.write_table`` cuts them.
    """
    starts = range(0, table.num_rows, row_group_size)
    parts = [table.slice(start, row_group_size) for start in starts]
    return {"format": CHECKSUMS_FORMAT, "algorithm": "crc32", "columns": table.column_names,
            "rows": [part.num_rows for part in parts],
            "crc32": [[column_crc(c) for c in part.columns] for part in parts]}  # fmt: skip


def _checksums_of(path: Path, raw: bytes) -> dict:
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    ok = isinstance(found, dict) and found.get("format") == CHECKSUMS_FORMAT and found.get("algorithm") == "crc32"
    columns, rows, crcs = (found.get(k) for k in ("columns", "rows", "crc32")) if ok else (None, None, None)
    ok = ok and isinstance(columns, list) and all(isinstance(c, str) for c in columns) and isinstance(rows, list)
    ok = ok and isinstance(crcs, list) and len(crcs) == len(rows) and all(isinstance(r, int) for r in rows)
    ok = ok and all(isinstance(g, list) and len(g) == len(columns) and all(isinstance(c, int) for c in g) for g in crcs)
    if not ok:
        raise OutputError(f"{path}: its footer's checksums ({CHECKSUMS_KEY}) cannot be read: the footer is damaged, "
                          f"or was written by a newer pairgen")  # fmt: skip
    return found


def check_parquet(path: str | Path) -> bool:
    """Check a Parquet file against the checksums in its own footer; False when it carries none.

    Every row group is read, every column, and each column's values hashed
    as :func:`write_parquet_atomic` hashed them: a byte changed in the
    file, a value rewritten by another tool (which keeps the footer's
    metadata, not the values it was written for), rows lost or added all
    differ. CRC-32 finds accidental damage (disks, copies, edits), not a
    forger: a manifest's SHA-256 is the stronger check where there is one.

    Raises
    ------
    OutputError
        The file cannot be read, its checksums cannot be read, or they do
        not hold; the message names the file, row group and column.
    """
    from manifests.store import local

    path = local(path)
    try:
        with pq.ParquetFile(path) as pf:
            raw = (pf.metadata.metadata or {}).get(CHECKSUMS_KEY.encode())
            if raw is None:
                return False
            written = _checksums_of(path, raw)
            found = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            if sum(found) != sum(written["rows"]):
                raise OutputError(f"{path}: {sum(found)} rows, its checksums were written for {sum(written['rows'])} "
                                  "(rows lost or added since)")  # fmt: skip
            missing = [c for c in written["columns"] if c not in pf.schema_arrow.names]
            if missing:
                raise OutputError(f"{path}: column {missing[0]!r} is missing, its checksums name it")
            regrouped = found != written["rows"]  # the same rows cut otherwise (another writer): hashed as written
            whole = pf.read(columns=written["columns"]) if regrouped else None
            start = 0
            for g, (rows, crcs) in enumerate(zip(written["rows"], written["crc32"])):
                table = whole.slice(start, rows) if regrouped else pf.read_row_group(g, columns=written["columns"])
                where = f"rows {start}-{start + rows - 1}" if regrouped else f"row group {g}"
                for name, crc in zip(written["columns"], crcs):
                    if column_crc(table.column(name)) != crc:
                        raise OutputError(f"{path}: {where}, column {name!r}: its values differ from the "
                                          "checksum written with the file (altered or damaged since)")  # fmt: skip
                start += rows
    except (OSError, pa.ArrowException) as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"{path}: not a readable Parquet file ({one_line(e)})") from e
    return True
