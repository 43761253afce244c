"""The scene-source interface and its registry: what every loader and its callers share.

Kept apart from the package's ``__init__`` so that the loaders import it while the
package imports them to register them: no import cycle. The package re-exports
every name here.
"""

from __future__ import annotations

import abc
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, ClassVar

from manifests.io import resolve_inside  # the one containment rule, re-exported for the loaders
from manifests.registry import Registry
from renderers.scene import Scene, SceneFormatError
from manifests.store import local

__all__ = [
    "SceneSource",
    "available_sources",
    "get_source",
    "open_regular",
    "read_bytes",
    "register_source",
    "resolve_inside",
]


UP_AXES = ("y", "z")


class SceneSource(abc.ABC):
    """Reads one format into a :class:`Scene`.

    Subclasses set ``name`` (the registry key) and implement :meth:`load`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""  # one line, for help texts
    # File suffixes this source reads, lower case, for messages and discovery.
    suffixes: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def load(self, location: str, *, scene_id: str, up: str) -> Scene:
        """Read ``location`` into a validated Scene.

        Parameters
        ----------
        location : str
            A file path, or a source-specific recipe (synthetic scenes).
        scene_id : str
            The id the scene is known by in its dataset.
        up : {"y", "z"}
            The file's up axis; a Z-up file is rotated with ``(x, z, -y)``.
        """


_REGISTRY: Registry[SceneSource] = Registry("scene source")
register_source = _REGISTRY.register  # class decorator: add a source under cls.name
available_sources = _REGISTRY.names
get_source = _REGISTRY.get


FailFn = Callable[[str], SceneFormatError]

_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")


def open_regular(path: str | Path, fail: FailFn | None = None) -> BinaryIO:
    """Open ``path`` for binary reading, only if it is a regular file.

    Folders, FIFOs, devices and sockets are refused before anything reads from
    them: the type is checked before the open, the open itself is non-blocking
    (a FIFO without a writer would otherwise wait forever) and the type is
    checked again on the opened descriptor, so a file swapped in between is
    refused too. Symlinks are followed; callers that must stay inside a folder
    check the target with :func:`resolve_inside` first.

    Parameters
    ----------
    path : str or Path
    fail : callable, optional
        Turns a problem (``"file not found"``, ``"is not a regular file (a
        FIFO)"``, ...) into the SceneFormatError to raise; by default one naming
        ``path``.

    Returns
    -------
    BinaryIO
        The open file; the caller closes it.
    """
    if fail is None:
        fail = lambda problem: SceneFormatError(path, problem)

    def check(mode: int) -> None:
        if stat.S_ISDIR(mode):
            raise fail("is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise fail(f"is not a regular file ({_kind(mode)})")

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        path = local(path)  # a store's scene file: fetched into the bounded cache first
        check(os.stat(path).st_mode)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    except ValueError as e:  # a NUL in the path
        raise fail(f"cannot read: {e}") from None
    stream = os.fdopen(fd, "rb")
    try:
        check(os.fstat(fd).st_mode)
    except BaseException:
        stream.close()
        raise
    return stream


def read_bytes(path: str | Path, fail: FailFn | None = None, *, limit: int | None = None) -> bytes:
    """Read a whole regular file (see :func:`open_regular`), refusing an empty one.

    Parameters
    ----------
    path : str or Path
    fail : callable, optional
        As for :func:`open_regular`.
    limit : int, optional
        Refuse a file larger than this many bytes, before reading it.

    Raises
    ------
    SceneFormatError
        Missing, not a regular file, unreadable, empty or over ``limit``; the
        message names the file.
    """
    if fail is None:
        fail = lambda problem: SceneFormatError(path, problem)
    with open_regular(path, fail) as stream:
        size = os.fstat(stream.fileno()).st_size
        if limit is not None and size > limit:
            raise fail(f"{size} bytes, more than the {limit} allowed")
        try:
            data = stream.read() if limit is None else stream.read(limit + 1)
        except OSError as e:
            raise fail(f"cannot read: {e.strerror or e}") from None
    if not data:
        raise fail("file is empty")
    if limit is not None and len(data) > limit:
        raise fail(f"more than the {limit} bytes allowed")
    return data
