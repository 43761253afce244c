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

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "DiskFull",
    "OutputError",
    "atomic_path",
    "copy_atomic",
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
        os.replace(tmp, path)
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
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
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
) -> None:
    """Write ``table`` to ``path`` atomically (``tmp_dir``: as :func:`atomic_path`'s).

    Binary columns (already-encoded images and depth) are stored uncompressed
    and without dictionary encoding; every other column uses zstd.
    ``metadata`` (str -> str, usually JSON) joins the schema's key-value
    metadata.
    """
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
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
    path = Path(path)
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
