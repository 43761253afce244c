"""One run per output folder: an advisory lock held by every stage that writes the folder.

``with folder_lock(folder):`` takes ``folder/.lock`` with ``filelock`` (an
``fcntl.flock`` on POSIX: the kernel drops it when its process dies, so a lock
left by a killed run is simply taken over) and records who holds it in
``folder/.lock-holder.json`` (PID, host, command, start time); both files go
when the run ends, and so does the folder if the run created it and wrote
nothing. ``folder_lock(folder, at=state)`` keeps both files in ``state``
instead, as ``<folder name>.lock`` and ``<folder name>.lock-holder.json``: the
stages lock a data folder that way, since it holds Parquet only
(``manifests.layout``; a killed run's lock file would stay behind). A second run
into the same folder fails at once with :class:`FolderBusy`, whose message
names the holder; the command lines exit with status 2.

``flock`` is local to one machine on most network file systems: on a cluster,
run each stage's driver on one node (the head), as the README says; workers
never take the lock. A folder that stands for an object store's prefix
(:mod:`manifests.store`) is held by a lease object in the store as well
(``<state>/<folder name>.lease.json``), which a run on any machine respects.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from manifests import store
from manifests.io import OutputError, output_error, write_json_atomic

__all__ = ["FolderBusy", "command_line", "folder_lock"]

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock-holder.json"


class FolderBusy(OutputError):
    """Another live run holds the folder's lock."""


def command_line(argv: list[str] | None = None) -> str:
    """The command as its user typed it, for a holder record: ``pairgen render ...``, not the path of
    ``pairgen/__main__.py`` or of the console script."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        first = Path(argv[0])
        argv[0] = first.parent.name if first.name == "__main__.py" else first.name
    return " ".join(argv)


def _holder(record: Path) -> str:
    try:
        h = json.loads(record.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(h["since"])))
        return f"PID {h['pid']} on {h['host']}, `{h['command']}`, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no holder record)"


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str | None = None, *, at: str | Path | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (the folder holding the lock files is created if needed).

    ``at``: the folder of the lock files (default: ``folder`` itself, as
    ``.lock`` and ``.lock-holder.json``).

    Raises
    ------
    FolderBusy
        Another live process holds it; the message names that process.
    OutputError
        The folder cannot be created or the lock file written.
    """
    from filelock import FileLock, Timeout

    command = command or command_line()
    folder = Path(folder)
    where = folder if at is None else Path(at)
    lock_file, holder = (where / LOCK_NAME, where / HOLDER_NAME) if at is None else (
        where / f"{folder.name}{LOCK_NAME}", where / f"{folder.name}{HOLDER_NAME}")  # fmt: skip
    created = [p for p in (where, where.parent) if not p.exists()]
    try:
        where.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_file, timeout=0)
        lock.acquire()
    except Timeout:
        raise FolderBusy(f"{folder}: in use by another run ({_holder(holder)}); wait for it to finish, "
                         "or use another output folder") from None  # fmt: skip
    except OSError as e:
        raise output_error(lock_file, e) from e
    try:
        write_json_atomic(holder, {"pid": os.getpid(), "host": socket.gethostname(),
                                   "command": command, "since": time.time()})  # fmt: skip
        with store.lease(where / f"{folder.name}{store.LEASE_SUFFIX}", command):  # a store's prefix: any machine's
            yield
    finally:
        with contextlib.suppress(OSError):  # removed while held: a later run makes its own (timeout 0: none waits)
            holder.unlink()
            lock_file.unlink()
        lock.release()
        for made in created:  # a run refused before writing anything leaves no trace
            with contextlib.suppress(OSError):
                made.rmdir()
