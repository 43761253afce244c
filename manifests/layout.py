"""Where each file of an output folder lives (docs/design.md, "On-disk layout").

The data folders (``OUT/views/<dataset>/`` and ``OUT/pairs/``) hold nothing
but Parquet, so that every Parquet reader opens them by name: pyarrow's
``dataset()``, ``polars.scan_parquet``, Hugging Face ``datasets``
(``data_dir=``), DuckDB, Ray Data. None of them ignores every other file:
Polars 2 refuses a folder holding any other extension, hidden files
included; ``datasets`` reads ``_``-prefixed files as Parquet; pyarrow reads
``manifest.json`` as Parquet. Everything else therefore sits beside the data
folders::

    OUT/
      README.md                  dataset card (Hugging Face configs: views, pairs)
      views.manifest.json        render's manifest (one entry a scene)
      pairs.manifest.json        filter's manifest (shards, checksums, statistics)
      contact_sheet.png          pairgen inspect's default --sheet
      views/<dataset>/<scene_id>.parquet
      pairs/shard-NNNNN.parquet
      _pairgen/                  working state, never data
        views.lock, pairs.lock   while a run holds the folder (+ .lock-holder.json)
        views.tmp/, pairs.tmp/   temporaries of atomic writes, renamed into the data folder
        selections/<dataset>/<scene_id>.json   filter's per-scene choices (a cache)

The rule is generic: the manifest of a data folder ``X`` is its sibling
``X.manifest.json``, its state ``X/../_pairgen``. Version 0.1 of pairgen kept
``manifest.json`` (and ``scenes/``, ``contact_sheet.png``) inside the data
folder: :func:`legacy_manifest_path` names it; readers still read it, and the
next ``render``/``filter`` moves it out (the stages migrate the folder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from manifests.io import OutputError

__all__ = [
    "CARD_NAME",
    "CONTACT_SHEET",
    "LEGACY_MANIFEST",
    "MANIFEST_SUFFIX",
    "MAX_NAME_BYTES",
    "NAME_MAX_BYTES",
    "SAFE_NAME_RULE",
    "STATE_DIR",
    "is_safe_name",
    "legacy_manifest_path",
    "manifest_path",
    "data_folder_around",
    "name_problem",
    "refuse_inside_data",
    "selections_dir",
    "state_dir",
    "temporaries_dir",
]

STATE_DIR = "_pairgen"
MANIFEST_SUFFIX = ".manifest.json"
LEGACY_MANIFEST = "manifest.json"  # inside the data folder, before pairgen 0.2
CARD_NAME = "README.md"
CONTACT_SHEET = "contact_sheet.png"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: the one wording of the name rule, for every message that refuses a name
SAFE_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or a digit"
NAME_MAX_BYTES = 255  # a file name's limit on Linux file systems (ext4, XFS, Btrfs, NFS)
#: what pairgen adds to a name it writes: an atomic write's temporary ``.tmp-<host, up to 64>-<pid, up to 7>-``
#: and ``.<8 random>`` (87 bytes), and the longest suffix (``<label>_1_camera_params.json``: 24 with room)
NAME_ROOM_BYTES = 87 + 24
MAX_NAME_BYTES = NAME_MAX_BYTES - NAME_ROOM_BYTES  # 144: the longest dataset, scene id or label pairgen takes


def name_problem(name: object, what: str = "name") -> str | None:
    """Why ``name`` may not name a file or folder of the output (``what``: ``scene id``, ``dataset``...), or None.

    The rule (:data:`SAFE_NAME_RULE`): letters, digits, ``.``, ``_`` and
    ``-``, not starting with ``.``, ``_`` or ``-``: no separator, no
    traversal, no hidden or state name, no option-like name, no newline
    (matched whole, so a trailing ``\\n`` is refused too); and at most
    :data:`MAX_NAME_BYTES` bytes in UTF-8, so that every file named after it,
    and its temporary, fit the file system's 255 bytes a name (ENAMETOOLONG
    otherwise, which would look like the output folder's problem).
    """
    if not isinstance(name, str):
        return f"{what} {name!r} is not a string"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        shown = name[:40] + ("..." if len(name) > 40 else "")
        return (f"{what} {shown!r} is too long for a file name ({size} bytes; the file system allows "
                f"{NAME_MAX_BYTES} a name, and pairgen's file names and temporaries add up to {NAME_ROOM_BYTES} "
                f"to it: at most {MAX_NAME_BYTES})")  # fmt: skip
    if _SAFE_NAME.fullmatch(name) is None:
        lead = f"starts with {name[0]!r}; " if name and _SAFE_NAME.fullmatch("a" + name) else ""
        return f"{what} {name!r} is not a safe file name ({lead}a name is {SAFE_NAME_RULE})"
    return None


def is_safe_name(name: object) -> bool:
    """Whether ``name`` may name a file or folder of the output (a dataset, a scene id, a CroCo label):
    :func:`name_problem` finds nothing."""
    return name_problem(name) is None


def _named(folder: str | Path) -> Path:
    """``folder`` with a name of its own (``.`` or ``..`` made absolute, so its parent and name mean something)."""
    folder = Path(folder)
    return Path(os.path.abspath(folder)) if folder.name in ("", ".", "..") else folder


def manifest_path(folder: str | Path) -> Path:
    """``OUT/<name>.manifest.json``, the manifest of the data folder ``OUT/<name>``."""
    folder = _named(folder)
    return folder.parent / f"{folder.name}{MANIFEST_SUFFIX}"


def legacy_manifest_path(folder: str | Path) -> Path:
    """``OUT/<name>/manifest.json``, where pairgen 0.1 kept it."""
    return Path(folder) / LEGACY_MANIFEST


def state_dir(folder: str | Path) -> Path:
    """``OUT/_pairgen``: locks, temporaries and caches of the data folder ``OUT/<name>``."""
    return _named(folder).parent / STATE_DIR


def temporaries_dir(folder: str | Path) -> Path:
    """``OUT/_pairgen/<name>.tmp``: where files bound for ``OUT/<name>`` are written before their rename."""
    folder = _named(folder)
    return state_dir(folder) / f"{folder.name}.tmp"


def selections_dir(pairs_folder: str | Path) -> Path:
    """``OUT/_pairgen/selections``: the filter's per-scene choices, ``<dataset>/<scene_id>.json``."""
    return state_dir(pairs_folder) / "selections"


def data_folder_around(path: str | Path) -> Path | None:
    """The pipeline folder ``path`` is, or lies in, that must hold nothing of another's: a data folder (one with
    its ``<name>.manifest.json`` beside it, or pairgen 0.1's ``manifest.json`` inside) or a ``_pairgen`` state
    folder; None when there is none (links resolved)."""
    path = Path(os.path.realpath(path))
    for folder in (path, *path.parents):
        if folder.name == STATE_DIR or manifest_path(folder).is_file() or legacy_manifest_path(folder).is_file():
            return folder
    return None


def refuse_inside_data(path: str | Path, what: str) -> None:
    """Raise ``OutputError`` when ``path`` (where a command would write ``what``) is or lies in a pipeline folder
    (:func:`data_folder_around`): a data folder holds Parquet only, and every Parquet reader fails on another file
    there; the state folder is pairgen's own."""
    folder = data_folder_around(path)
    if folder is not None:
        kind = "working state" if folder.name == STATE_DIR else "Parquet only"
        raise OutputError(f"{path}: inside pairgen's folder {folder} ({kind}: another file there breaks its "
                          f"readers); write {what} outside it")
