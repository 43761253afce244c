"""Object storage (``s3://``, ``gs://``, ...) behind the pipeline's folders: a local mirror, written through.

Every command reads and writes folders (:mod:`manifests.io`'s atomic files,
:mod:`manifests.layout`'s places). A folder given as a URI (``--out
s3://bucket/run``, ``--data-root gs://bucket/scene_datasets``, ``--shards``,
``--views``, an export's ``DEST``) is *mounted*: a local folder, the mirror,
stands for the store's prefix, so every stage runs on paths as on a shared
file system, with four rules (docs/design.md, "Object storage"):

* **listing without bytes.** :func:`mount` lists the prefix and puts a *stub*
  in the mirror for each object: a file of the object's size, whose mtime is
  the object's, that begins with :data:`STUB_MAGIC` (the rest a hole).
  ``is_file``, ``glob``, ``stat`` (size, mtime) answer as for the store; what
  was the same object when listed again is left alone, what changed becomes
  a stub again, what the store no longer holds (asked with a HEAD) goes.
* **bytes on first read.** Every reader of bytes calls :func:`local` on the
  path first (the loaders' ``open_regular``, ``read_json``, the Parquet
  readers, ``sha256_file``): a stub is fetched whole (to a temporary, then
  renamed), so a reader never sees a partial file; :func:`ranged` reads a
  footer in place. Fetched files count against a bound
  (``PAIRGEN_CACHE_GB``, default 50): :func:`trim` turns the least recently
  read back into stubs.
* **writes go to the store before the mirror.** :func:`manifests.io.atomic_path`
  hands each finished temporary to :func:`publish` before its local rename:
  the whole file is uploaded in one request (or one multipart upload that
  S3 completes only when every part arrived, and that boto3 aborts on an
  error), so no object is ever incomplete under its final name; a killed
  upload leaves an unfinished multipart upload, never an object. Checksums
  are taken from the bytes written, as on a folder.
* **one run per folder** is a lease object (:func:`lease`), since ``flock``
  cannot reach a store: ``_pairgen/<folder>.lease.json`` (holder, host, PID,
  command, heartbeat), taken with S3's conditional write (``If-None-Match:
  *``), renewed with ``If-Match`` every :data:`HEARTBEAT_S`; a lease older
  than :data:`LEASE_TTL_S` by the store's clock is taken over (its holder is
  gone), and a run that lost its lease uploads nothing more. On stores without conditional writes (``gs://`` through pyarrow) the
  lease is written and read back: two runs that start within the same second
  may both think they hold it.

Workers on other nodes mount the same URIs (:func:`in_mounts` wraps the unit
of work) at the driver's mirror path (``$PAIRGEN_CACHE``, default
``~/.cache/pairgen``, ``/store/<digest of the URI>``, made on each node's
own disk), so the paths a stage ships to its workers mean the same place
everywhere, with each node's own bytes.

Credentials and endpoints come from where each library looks (``AWS_*``
variables such as ``AWS_ENDPOINT_URL`` for MinIO or Ceph, ``~/.aws``,
instance roles; Google's application default credentials), never from an
option: nothing secret reaches a config hash or a manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from manifests.io import TMP_PREFIX, OutputError, one_line

__all__ = [
    "CACHE_ENV",
    "LEASE_TTL_S",
    "StoreError",
    "abort_uploads",
    "environment",
    "in_mounts",
    "is_stub",
    "is_uri",
    "lease",
    "local",
    "local_path",
    "location",
    "mount",
    "mounted",
    "mounts",
    "path_of",
    "process_space",
    "publish",
    "ranged",
    "remount",
    "remove",
    "resolve_args",
    "shown",
    "trim",
    "unmount_all",
]

log = logging.getLogger(__name__)

SCHEMES = ("s3", "gs", "gcs", "abfs", "az", "hdfs", "viewfs")
CACHE_ENV = "PAIRGEN_CACHE"
CACHE_GB_ENV = "PAIRGEN_CACHE_GB"
DEFAULT_CACHE_GB = 50.0
LEASE_SUFFIX = ".lease.json"
LEASE_TTL_S = 120.0  # a lease not renewed for this long is taken over: its holder is gone
HEARTBEAT_S = 30.0
RECENT_S = 60.0  # a file read this recently is never turned back into a stub (a reader may be about to open it)
LOCAL_ONLY_SUFFIXES = (".lock", ".lock-holder.json", LEASE_SUFFIX)  # this machine's own, never uploaded
CHUNK = 8 << 20
STUB_MAGIC = b"\x00pairgen-stub/1\n"  # how a stub begins (docs/design.md, Object storage)
STUB_BYTES = 4096  # a stub's disk: the block holding its magic
TRIM_EVERY_S = 5.0  # fetches check the cache bound at most this often
REQUESTS_IN_FLIGHT = 16  # a mount's lookups and small fetches, in parallel
GCS_RETRY_S = 60.0  # how long pyarrow's GCS layer retries a failing request (its default: 15 minutes)


class StoreError(OutputError):
    """A store that cannot be reached, listed, read or written; the message names the URI."""


def is_uri(text: object) -> bool:
    """Whether ``text`` names a store (``s3://bucket/prefix``...) rather than a local path."""
    if not isinstance(text, str) or "://" not in text:
        return False
    return urlparse(text).scheme.lower() in SCHEMES


def _uri_like(text: str) -> str | None:
    """The scheme ``text`` starts with when it looks like a URI (``s3://``, ``ftp://``) or a store's URI missing a
    slash (``s3:/b/run``), else None."""
    scheme, sep, _ = text.partition(":/")
    if not sep or not scheme.isascii() or not scheme.replace("+", "").isalnum() or len(scheme) < 2:
        return None  # C:/data is a Windows drive, not a scheme
    return scheme.lower() if text.startswith(f"{scheme}://") or scheme.lower() in SCHEMES else None


def location(text: str) -> Path | str:
    """argparse ``type`` of a folder option: a ``Path``, or a store's URI (mounted later by :func:`resolve_args`).

    Raises
    ------
    argparse.ArgumentTypeError
        A URI of a scheme pairgen does not read (``ftp://``, ``http://``), one naming no bucket (``s3://``), or a
        store's URI missing a slash (``s3:/b/run``).
    """
    import argparse

    scheme = _uri_like(text)
    if scheme is None:
        return Path(text)
    if scheme not in SCHEMES:
        raise argparse.ArgumentTypeError(f"{text}: pairgen reads folders on disk or in a store "
                                         f"({', '.join(s + '://' for s in SCHEMES)}), not {scheme}://")  # fmt: skip
    rest = text.partition(":/")[2]
    if not rest.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text}: did you mean {scheme}:/{rest.rstrip('/')}? (a store's URI is "
                                         f"{scheme}://BUCKET/PREFIX)")  # fmt: skip
    uri = f"{scheme}://{rest.strip('/')}"
    if not urlparse(uri).netloc:
        raise argparse.ArgumentTypeError(f"{text}: names no bucket ({scheme}://BUCKET/PREFIX)")
    return uri


def local_path(text: str) -> Path:
    """argparse ``type`` of a path that must be on this machine (a run folder, a checkpoint): a URI, or what looks
    like one, is refused rather than made a local folder named ``s3:``."""
    import argparse

    if _uri_like(text) is not None:
        raise argparse.ArgumentTypeError(f"{text}: takes a path on this machine, not a store's URI (a run's "
                                         "checkpoints, logs and results are written in place)")  # fmt: skip
    return Path(text)


def _cache_root() -> Path:
    """``$PAIRGEN_CACHE/store`` (``~`` expanded, made absolute: workers run in other folders), default
    ``~/.cache/pairgen/store``."""
    given = os.environ.get(CACHE_ENV)
    return Path(os.path.abspath(os.path.expanduser(given) if given else Path.home() / ".cache" / "pairgen")) / "store"


def _cache_limit() -> int:
    try:
        gb = float(os.environ.get(CACHE_GB_ENV) or DEFAULT_CACHE_GB)
    except ValueError:
        gb = DEFAULT_CACHE_GB
    return int(gb * (1 << 30))


def _seconds(ns: int) -> int:
    """An mtime cut to whole seconds, in ns: what every store lists (S3's listings and HEADs are to the second)."""
    return ns // 1_000_000_000 * 1_000_000_000


def _local_only(name: str) -> bool:
    return name.startswith(TMP_PREFIX) or name.endswith(LOCAL_ONLY_SUFFIXES)


@dataclass
class Mount:
    """A store prefix (``uri``) and the local folder standing for it (``local``)."""

    uri: str
    local: Path
    fs: object = field(repr=False, default=None)  # pyarrow.fs.FileSystem
    root: str = ""  # the prefix in ``fs``'s terms (``bucket/prefix``)
    synced: str | None = None  # the run (generation) whose listing the mirror holds

    def key(self, path: Path) -> str:
        """The object's path in ``fs`` for the mirror's ``path``."""
        return f"{self.root}/{path.relative_to(self.local).as_posix()}".rstrip("/")

    def describe(self, path: Path) -> str:
        return f"{self.uri}/{path.relative_to(self.local).as_posix()}"


_MOUNTS: dict[Path, Mount] = {}
_TRIMMED = 0.0  # monotonic time of the last trim a fetch made
_LOCK = threading.Lock()


def _mirror_of(uri: str) -> Path:
    return _cache_root() / hashlib.sha256(uri.encode()).hexdigest()[:16]


def _open_fs(uri: str):
    """pyarrow's filesystem for ``uri`` and the prefix in its terms; the bucket must exist (pairgen makes none)."""
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        if isinstance(fs, getattr(pafs, "GcsFileSystem", ())):  # its default retries a failing store for 15 min
            fs = pafs.GcsFileSystem(retry_time_limit=timedelta(seconds=GCS_RETRY_S))
        root = root.rstrip("/")
        bucket = fs.get_file_info(root.split("/")[0])
    except Exception as e:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError, ValueError by scheme)
        raise StoreError(f"{uri}: cannot open the store ({one_line(e)})") from e
    if bucket.type == pafs.FileType.NotFound:
        raise StoreError(f"{uri}: the bucket {bucket.path!r} does not exist (pairgen makes none: create it, or check "
                         "the URI and the endpoint, AWS_ENDPOINT_URL)")  # fmt: skip
    return fs, root


def mount(uri: str, generation: str | None = None, at: str | Path | None = None) -> Path:
    """The local mirror of ``uri``, listed (stubs for what it holds); listed again when ``generation`` changes.

    A URI inside one already mounted is that mount's subfolder. A command
    mounts with a fresh ``generation`` (:func:`resolve_args`), a worker with
    its driver's (:func:`in_mounts`), so each lists the store once a command.
    ``at``: the mirror's folder (a worker: its driver's, so that the paths a
    stage ships mean the same place on every node); default
    ``$PAIRGEN_CACHE/store/<digest of the URI>``.

    Raises
    ------
    StoreError
        The store cannot be reached or listed (credentials, endpoint, a missing bucket).
    """
    uri = uri.rstrip("/")
    folder = Path(os.path.abspath(at)) if at is not None else _mirror_of(uri)
    with _LOCK:
        for m in _MOUNTS.values():
            if (uri == m.uri or uri.startswith(m.uri + "/")) and (m.local == folder if at is not None
                                                                    else m.local == _mirror_of(m.uri)):
                if generation is not None and m.synced != generation:
                    _sync(m)
                    m.synced = generation
                return m.local / uri[len(m.uri):].lstrip("/")
        fs, root = _open_fs(uri)
        m = Mount(uri, folder, fs, root)
        _sync(m)
        m.synced = generation or uuid.uuid4().hex
        _MOUNTS[m.local] = m
        log.info("mounted %s at %s", uri, m.local)
        return m.local


def unmount_all() -> None:
    """Forget this process's mounts (the end of a command: its mirrors stay on disk as a cache)."""
    with _LOCK:
        _MOUNTS.clear()


def shown(text: str) -> str:
    """``text`` with each mirror's local path written as the URI it stands for (messages, summary lines)."""
    for m in sorted(_MOUNTS.values(), key=lambda m: -len(str(m.local))):
        text = text.replace(str(m.local), m.uri)
    return text


def mounts() -> dict[str, tuple[str, str]]:
    """``{uri: (generation, mirror folder)}`` of this process's mounts: what a worker mounts (:func:`in_mounts`)."""
    return {m.uri: (m.synced, str(m.local)) for m in _MOUNTS.values()}


STORE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")  # where boto3 and pyarrow's filesystems look


def environment() -> dict[str, str]:
    """The variables that say how to reach a store (endpoint, region, credentials): what a process of this
    machine that was started earlier (a DataLoader's forkserver) needs to read the same store."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORE_ENV_PREFIXES)}


def remount(mounted_: dict[str, tuple[str, str]], env: dict[str, str] | None = None) -> None:
    """Mount here what :func:`mounts` gave in another process (a worker: the driver's mounts, at its mirror
    folders, listed once for the driver's generation). ``env``: :func:`environment` of the process that mounted
    them, set here first (a worker of this machine only: Ray workers take each node's own)."""
    if env:
        os.environ.update(env)
    for uri, (generation, folder) in mounted_.items():
        mount(uri, generation, at=folder)


def in_mounts(fn, mounted_: dict[str, tuple[str, str]], task, **common):
    """Run ``fn(task, **common)`` after mounting the driver's stores here (:func:`remount`: a worker on any
    node), then trim the cache."""
    remount(mounted_)
    try:
        return fn(task, **common)
    finally:
        trim()


def resolve_args(args, inside: tuple[str, ...] = ("shards", "views", "sheet", "metadata_dir")) -> None:
    """Replace every URI among ``args``' values by its mirror (mounting it).

    An option in ``inside`` names a data folder or a file inside an output
    folder (``s3://b/run/pairs``, a single shard, ``--sheet``): its parent is
    mounted, so the manifest beside it is in the mirror too. The shortest URIs are mounted first, so one inside
    another is the other's subfolder (an export's ``DEST`` inside ``--out``
    is refused as on disk).
    """
    generation = uuid.uuid4().hex  # a command lists each store once, even one an earlier command here mounted
    found = [(name, i, v) for name, value in vars(args).items()
             for i, v in (enumerate(value) if isinstance(value, list) else [(None, value)]) if is_uri(v)]  # fmt: skip
    for name, _, value in sorted(found, key=lambda f: len(_prefix(f[2], f[0] in inside)[0])):
        mount(_prefix(value, name in inside)[0], generation)
    for name, i, value in found:
        uri, leaf = _prefix(value, name in inside)
        resolved = mount(uri, generation) / leaf
        if i is None:
            setattr(args, name, resolved)
        else:
            getattr(args, name)[i] = resolved


def _prefix(uri: str, inside: bool) -> tuple[str, str]:
    """``(the URI to mount, the path under it)``: a data folder or file in a prefix (``inside``) is its prefix's
    (``s3://b/run/pairs``: ``s3://b/run`` and ``pairs``); a folder, or a bucket, is its own (and ``""``)."""
    if inside and urlparse(uri).path.strip("/"):
        parent, _, leaf = uri.rpartition("/")
        return parent, leaf
    return uri, ""


def path_of(text: str | None, inside: bool = True) -> str | None:
    """A folder recorded by its URI (a run's config), as the path of this process's mirror of it; other text as
    it is. ``inside``: as for :func:`resolve_args` (a data folder or file: its prefix's mirror)."""
    if not is_uri(text):
        return text
    uri, leaf = _prefix(text, inside)
    return str(mount(uri) / leaf)


def mounted(path: str | Path) -> Mount | None:
    """The mount ``path`` lies in, or None (a plain local path)."""
    if not _MOUNTS:
        return None
    path = Path(os.path.abspath(path))
    for parent in (path, *path.parents):
        m = _MOUNTS.get(parent)
        if m is not None:
            return m
    return None


# -- stubs ------------------------------------------------------------------------------------


def is_stub(path: Path, st: os.stat_result | None = None) -> bool:
    """A stub: a file of the object's size that begins with :data:`STUB_MAGIC` (the rest a hole), standing for an
    object not fetched yet. The magic, not the hole, says so: a copy that fills holes (``cp``, ``tar``, ``rsync``
    without ``-S``) keeps stubs stubs."""
    try:
        st = st or path.stat()
        if st.st_size < len(STUB_MAGIC):
            return False
        with open(path, "rb") as f:
            return f.read(len(STUB_MAGIC)) == STUB_MAGIC
    except OSError:
        return False


def _put_stub(m: Mount, path: Path, size: int, mtime_ns: int) -> None:
    """``path`` becomes a stub of an object of ``size`` bytes and ``mtime_ns``; an object too small to hold the
    magic is fetched instead (a few bytes)."""
    if size < len(STUB_MAGIC):
        _fetch(m, path, mtime_ns)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}stub-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(STUB_MAGIC)
        f.truncate(size)  # the rest a hole: no disk
    os.utime(tmp, ns=(time.time_ns(), mtime_ns))
    os.replace(tmp, path)


def _exists(m: Mount, path: Path) -> bool:
    """Whether the store holds the object ``path`` stands for now (a HEAD)."""
    import pyarrow.fs as pafs

    try:
        return m.fs.get_file_info(m.key(path)).type == pafs.FileType.File
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"{m.describe(path)}: cannot be looked up in the store ({one_line(e)})") from e


def _parallel(fn, items: list) -> list:
    """``fn`` over ``items`` on a few threads (each a request to the store, mostly waiting)."""
    if len(items) < 2:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(REQUESTS_IN_FLIGHT, len(items))) as pool:
        return list(pool.map(fn, items))


def _sync(m: Mount) -> None:
    """Bring the mirror's listing in line with the store's (stubs for new or changed objects).

    A key that cannot name a file inside the mirror (``..``, an empty part)
    is skipped with a warning: a shared bucket must not write outside it.
    """
    import pyarrow.fs as pafs

    try:
        m.local.mkdir(parents=True, exist_ok=True)
        (m.local.parent / f"{m.local.name}.uri").write_text(m.uri + "\n")  # which store a mirror stands for
    except OSError as e:
        raise OutputError(f"{m.local}: cannot make the local mirror of {m.uri} here ({e.strerror or e}); "
                          f"set {CACHE_ENV} to a writable folder") from e  # fmt: skip
    try:
        infos = m.fs.get_file_info(pafs.FileSelector(m.root, recursive=True, allow_not_found=True))
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"{m.uri}: cannot list the store ({one_line(e)})") from e
    listed: set[Path] = set()
    tiny: list[tuple[Path, int]] = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(m.root):].lstrip("/")
        parts = relative.split("/")
        if not relative or any(part in ("", ".", "..") for part in parts):
            log.warning("%s/%s: skipped (a key that names no file inside the mirror)", m.uri, relative)
            continue
        if any(_local_only(part) for part in parts):
            continue
        path = m.local / relative
        listed.add(path)
        mtime = _seconds(info.mtime_ns or 0)
        try:
            st = path.stat()
            if st.st_size == info.size and st.st_mtime_ns == mtime:
                continue  # the same object: a stub, or its bytes fetched or written from here
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputError(f"{path}: cannot mirror {m.describe(path)} ({e.strerror or e})") from e
        if info.size < len(STUB_MAGIC):
            tiny.append((path, mtime))  # too small to hold the magic: fetched, below
        else:
            _put_stub(m, path, info.size, mtime)

    def fetch_tiny(item: tuple[Path, int]) -> None:
        try:
            _fetch(m, *item)
        except OutputError as e:  # the reader of it names it; the others' mount goes on
            log.warning("%s", e)

    _parallel(fetch_tiny, tiny)
    unlisted = []
    for folder, _, names in os.walk(m.local):
        for name in names:
            path = Path(folder) / name
            if path in listed or _local_only(name):
                continue
            if is_stub(path):  # made from an earlier listing: gone from the store
                path.unlink(missing_ok=True)
            else:  # bytes here: removed from the store, or written there (from here) after the listing began
                unlisted.append(path)
    for path, there in zip(unlisted, _parallel(lambda p: _exists(m, p), unlisted)):
        if not there:
            path.unlink(missing_ok=True)
    for folder, subfolders, names in os.walk(m.local, topdown=False):  # folders left empty: a scene gone, say
        if Path(folder) != m.local and not names and not subfolders:
            with contextlib.suppress(OSError):  # another process writing into it now
                os.rmdir(folder)


def local(path: str | Path) -> Path:
    """``path``, with its bytes here: a stub of a mounted store is fetched first (whole, then renamed).

    A path outside every mount is returned as it is.

    Raises
    ------
    StoreError
        The object cannot be read from the store.
    """
    path = Path(path)
    m = mounted(path)
    if m is None:
        return path
    try:
        st = path.stat()
    except OSError:
        return path  # not there: the caller's own message
    if is_stub(path, st):
        _fetch(m, path, st.st_mtime_ns)  # the object's mtime kept
    with contextlib.suppress(OSError):  # read now: the last to go back to a stub
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
    return path


def ranged(path: str | Path):
    """What a reader of a few parts of ``path`` opens (a Parquet footer, one row group): a stub's object itself,
    opened in the store (each read a ranged request: a footer costs two small ones, not the whole file); the
    path otherwise. Use it with readers that take a file (``pq.read_schema``, ``pq.ParquetFile``)."""
    path = Path(path)
    m = mounted(path)
    if m is None or not is_stub(path):
        return path
    try:
        return m.fs.open_input_file(m.key(path))
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"{m.describe(path)}: cannot be read from the store ({one_line(e)})") from e


def _fetch(m: Mount, path: Path, mtime_ns: int) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}fetch-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with m.fs.open_input_stream(m.key(path)) as source, open(tmp, "wb") as out:
            while block := source.read(CHUNK):
                out.write(block)
        os.utime(tmp, ns=(time.time_ns(), mtime_ns))
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:
            from manifests.io import output_error

            raise output_error(path, e) from e
        raise StoreError(f"{m.describe(path)}: cannot be read from the store ({one_line(e)})") from e
    log.debug("fetched %s", m.describe(path))
    global _TRIMMED
    if time.monotonic() - _TRIMMED > TRIM_EVERY_S:  # every command that reads a store keeps the cache bound
        _TRIMMED = time.monotonic()
        trim()


def trim(limit: int | None = None) -> int:
    """Turn the least recently read fetched files back into stubs until the mirrors use at most ``limit`` bytes
    of disk (default ``PAIRGEN_CACHE_GB``); files read in the last minute stay. Return the bytes freed."""
    limit = _cache_limit() if limit is None else limit
    files = []
    for m in list(_MOUNTS.values()):
        for folder, _, names in os.walk(m.local):
            for name in names:
                if _local_only(name):
                    continue
                path = Path(folder) / name
                with contextlib.suppress(OSError):
                    st = path.stat()
                    files.append((st.st_atime_ns, st.st_blocks * 512, st, path, m))
    used = sum(f[1] for f in files)
    freed = 0
    recent = time.time_ns() - int(RECENT_S * 1e9)
    for atime, size, st, path, m in sorted(files, key=lambda f: f[0]):
        if used - freed <= limit:
            break
        if atime > recent or size <= STUB_BYTES or is_stub(path, st):
            continue
        with contextlib.suppress(OSError):
            _put_stub(m, path, st.st_size, st.st_mtime_ns)
            freed += size - STUB_BYTES
    return freed


# -- writes -----------------------------------------------------------------------------------


_CLIENTS: dict[tuple, object] = {}


def _s3_client():
    """boto3's S3 client, one a process and configuration (making one takes tens of milliseconds)."""
    import boto3

    key = tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                            "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"))  # fmt: skip
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client("s3")
    return _CLIENTS[key]


def _bucket_key(m: Mount, path: Path) -> tuple[str, str]:
    bucket, _, key = m.key(path).partition("/")
    return bucket, key


def publish(tmp: Path, path: Path) -> None:
    """Upload the finished temporary ``tmp`` to the object ``path`` stands for (nothing for a local path).

    Called by :func:`manifests.io.atomic_path` before its local rename, so
    the store holds every file the mirror does. ``tmp``'s mtime becomes the
    object's, so the renamed file is the same object to the next listing.
    """
    m = mounted(path)
    if m is None or _local_only(path.name):
        return
    where = m.describe(path)
    lost = _lost_lease(m)
    if lost:
        raise StoreError(f"{where}: not written: {lost}; two runs must not write one prefix")
    try:
        if urlparse(m.uri).scheme == "s3":
            bucket, key = _bucket_key(m, path)
            client = _s3_client()
            client.upload_file(str(tmp), bucket, key)  # multipart above 8 MiB: completed only whole, aborted on error
            head = client.head_object(Bucket=bucket, Key=key)
            mtime = int(head["LastModified"].timestamp()) * 1_000_000_000
        else:
            _upload_stream(m, tmp, path)
            mtime = m.fs.get_file_info(m.key(path)).mtime_ns or 0
    except OutputError:
        raise
    except Exception as e:  # noqa: BLE001  (botocore, pyarrow: one message naming the object)
        raise StoreError(f"{where}: cannot be written to the store ({one_line(e)})") from e
    os.utime(tmp, ns=(time.time_ns(), _seconds(mtime)))
    log.debug("uploaded %s", where)


def _upload_stream(m: Mount, tmp: Path, path: Path) -> None:
    """Upload through pyarrow (stores other than S3). Its stream completes the upload when closed, even by an
    error: on one, the object is removed again (a reader may have seen it meanwhile; S3 goes through boto3)."""
    key = m.key(path)
    try:
        with open(tmp, "rb") as source, m.fs.open_output_stream(key) as out:
            while block := source.read(CHUNK):
                out.write(block)
    except BaseException:
        with contextlib.suppress(Exception):
            m.fs.delete_file(key)
        raise


def _delete(m: Mount, path: Path) -> None:
    """Delete the object ``path`` stands for (on S3 through boto3: pyarrow's delete leaves a folder marker)."""
    if urlparse(m.uri).scheme == "s3":
        bucket, key = _bucket_key(m, path)
        _s3_client().delete_object(Bucket=bucket, Key=key)
    else:
        m.fs.delete_file(m.key(path))


def abort_uploads(folder: str | Path) -> int:
    """Abort the unfinished multipart uploads under ``folder``'s prefix (a killed run's); return how many.

    Only for a folder whose lease this run holds: no live run uploads there.
    An unfinished upload is no object (nothing lists or reads it), but the
    store keeps and bills its parts until it is aborted. S3 only (other
    stores: nothing; a lifecycle rule clears them).
    """
    folder = Path(folder)
    m = mounted(folder)
    if m is None or urlparse(m.uri).scheme != "s3":
        return 0
    bucket, prefix = _bucket_key(m, folder)
    client, count = _s3_client(), 0
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                count += 1
    except Exception as e:  # noqa: BLE001  (not allowed to list them: left to a lifecycle rule)
        log.warning("%s: unfinished uploads not cleared (%s)", m.describe(folder), e)
    return count


def remove(path: str | Path) -> None:
    """Delete the file at ``path`` and, in a mount, its object (missing either way: nothing)."""
    path = Path(path)
    m = mounted(path)
    if m is not None and not _local_only(path.name):
        try:
            _delete(m, path)
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"{m.describe(path)}: cannot be removed from the store ({one_line(e)})") from e
    path.unlink(missing_ok=True)


# -- the lease --------------------------------------------------------------------------------


def process_space() -> str:
    """This machine's boot and PID namespace: where a PID names one process (containers sharing a host name do not
    share it), so a lease's holder can be asked whether it lives."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return f"{socket.gethostname()}/unknown"


def _holder_line(record: dict, age: float | None) -> str:
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record["since"])))
        beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
        return f"PID {record['pid']} on {record['host']}, `{record['command']}`, since {since}{beat}"
    except (KeyError, TypeError, ValueError):
        return "another process (an unreadable lease)"


_HELD: list[_Lease] = []  # the leases this process holds (publish refuses to write where one was lost)


class _Lease:
    """The lease object's state and its heartbeat thread."""

    def __init__(self, m: Mount, path: Path, command: str) -> None:
        self.m, self.path, self.where = m, path, m.describe(path)
        self.record = {"holder": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                       "space": process_space(), "command": command, "since": time.time(),
                       "heartbeat": time.time()}  # fmt: skip
        self.s3 = urlparse(m.uri).scheme == "s3"
        self.etag: str | None = None
        self.lost: str | None = None
        self.renewed = time.monotonic()  # the last write of the lease the store acknowledged
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps(self.record, indent=2).encode()

    def _read(self) -> tuple[dict | None, str | None, float | None]:
        """The lease found (None: none), its ETag, and its age in seconds: on S3 by the store's own clock (its
        ``Date`` less the object's ``Last-Modified``), elsewhere by the heartbeat it records."""
        age = None
        if self.s3:
            bucket, key = _bucket_key(self.m, self.path)
            try:
                got = _s3_client().get_object(Bucket=bucket, Key=key)
            except Exception as e:  # noqa: BLE001
                if _code(e) in ("NoSuchKey", "404"):
                    return None, None, None
                raise
            raw, etag = got["Body"].read(), got["ETag"]
            now = got.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
            with contextlib.suppress(TypeError, ValueError):
                from email.utils import parsedate_to_datetime

                age = (parsedate_to_datetime(now) - got["LastModified"]).total_seconds()
        else:
            try:
                with self.m.fs.open_input_stream(self.m.key(self.path)) as f:
                    raw, etag = f.read(), None
            except FileNotFoundError:
                return None, None, None
        try:
            record = json.loads(raw)
        except ValueError:
            record = {}
        record = record if isinstance(record, dict) else {}
        if age is None and isinstance(record.get("heartbeat"), (int, float)):
            age = time.time() - record["heartbeat"]
        return record, etag, age

    def _put(self, if_match: str | None = None, create: bool = False) -> bool:
        """Write the record; False when the condition failed (another holder, or none to match)."""
        self.record["heartbeat"] = time.time()
        if self.s3:
            bucket, key = _bucket_key(self.m, self.path)
            extra = {"IfNoneMatch": "*"} if create else {"IfMatch": if_match} if if_match else {}
            try:
                self.etag = _s3_client().put_object(Bucket=bucket, Key=key, Body=self._body(), **extra)["ETag"]
            except Exception as e:  # noqa: BLE001
                if _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"):
                    return False
                raise
            self.renewed = time.monotonic()
            return True
        with self.m.fs.open_output_stream(self.m.key(self.path)) as out:  # no conditional write: read back
            out.write(self._body())
        time.sleep(1.0)
        found, _, _ = self._read()
        ours = bool(found) and found.get("holder") == self.record["holder"]
        if ours:
            self.renewed = time.monotonic()
        return ours

    def take(self) -> None:
        if self._put(create=True):
            return
        found, etag, age = self._read()
        if found is None:  # released meanwhile
            if self._put(create=True):
                return
            found, etag, age = self._read()
        why = _stale(found or {}, age)
        if found is not None and why and self._put(if_match=etag):
            log.warning("%s: took over the lease of %s (%s)", self.where, _holder_line(found, age), why)
            return
        from manifests.lock import FolderBusy

        raise FolderBusy(f"{self.where}: in use by another run ({_holder_line(found or {}, age)}); wait for it to "
                         f"finish, or use another output prefix (a lease not renewed for {LEASE_TTL_S:.0f} s is "
                         "taken over)")  # fmt: skip

    def beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                if self._put(if_match=self.etag):
                    continue
                found, etag, age = self._read()
                if found is not None and found.get("holder") == self.record["holder"]:
                    self.etag = etag  # our own write, whose answer was lost on the way: still ours
                    continue
                if found is None and self._put(create=True):  # removed by hand: held again
                    continue
                self.lost = f"taken over by {_holder_line(found or {}, age)}"
                log.error("%s: this run's lease was %s; its writes into the prefix stop", self.where, self.lost)
                return
            except Exception as e:  # noqa: BLE001  (a network blip: try again at the next beat)
                log.warning("%s: the lease's heartbeat failed (%s); trying again", self.where, e)

    def release(self) -> None:
        self.stop.set()
        if self.thread is not None:  # a beat in flight ends before the lease goes (it would make it again)
            self.thread.join()
        with contextlib.suppress(Exception):
            found, _, _ = self._read()
            if found is not None and found.get("holder") == self.record["holder"]:
                _delete(self.m, self.path)


def _stale(record: dict, age: float | None) -> str | None:
    """Why a lease's holder is gone (no heartbeat for :data:`LEASE_TTL_S`; on this machine, its process
    ended), or None while it may live."""
    if age is None or age > LEASE_TTL_S:
        return f"no heartbeat for over {LEASE_TTL_S:.0f} s"
    pid = record.get("pid")
    if record.get("space") == process_space() and isinstance(pid, int) and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"its process {pid} on this machine has ended"
        except OSError:
            pass
    return None


def _lost_lease(m: Mount) -> str | None:
    """Why this process may no longer write into ``m`` (a lease of it taken over by another run, or not renewed
    for so long that another run may take it over), or None."""
    for held in _HELD:
        if held.m is not m:
            continue
        if held.lost:
            return f"{held.where}: {held.lost}"
        silent = time.monotonic() - held.renewed
        if silent > LEASE_TTL_S - HEARTBEAT_S:
            return (f"{held.where}: the lease was not renewed for {silent:.0f} s (the store did not take its "
                    f"heartbeats), and another run may take it over after {LEASE_TTL_S:.0f} s")  # fmt: skip
    return None


def _code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    return None


@contextlib.contextmanager
def lease(path: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold the lease object ``path`` (in a mount) for the block; nothing outside a mount.

    Raises
    ------
    FolderBusy
        Another run holds it and renewed it within :data:`LEASE_TTL_S`; the message names the holder.
    StoreError
        The store cannot be written.
    """
    path = Path(path)
    m = mounted(path)
    if m is None:
        yield
        return
    from manifests.lock import command_line

    held = _Lease(m, path, command or command_line())
    try:
        held.take()
    except OutputError:
        raise
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"{held.where}: cannot take the lease ({one_line(e)})") from e
    with _LOCK:  # listed again now that no other run writes here: what a run that just ended wrote is in it
        _sync(m)
        m.synced = uuid.uuid4().hex
    _HELD.append(held)
    held.thread = threading.Thread(target=held.beat, name="pairgen-lease", daemon=True)
    held.thread.start()
    try:
        yield
    finally:
        held.release()
        _HELD.remove(held)
